//! What a commit asks for and what it leaves behind: the job as the control plane received
//! it, the runtime's stack pinned to digests, and the stack it carries on from afterwards.
//!
//! A runtime registered with tags (`base/tools`) carries on after a commit from what those
//! tags named at the commit, not from what they name at a later restart: the stack is pinned
//! to the digests of its layers, as spfs's own runtime keeps its stack as digests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spfs_proto::status::{CommitKind, CommitProgress, RuntimeStatus};
use spfs_router::{EnvSpec, LayerSource};
use spfs_storage::{Digest, Repositories};

use crate::host::HostError;

/// A commit as the control plane received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitJob {
    /// A layer, or a platform of the runtime's layers plus the new one.
    pub kind: CommitKind,
    /// The repository to write into (absolute).
    pub repo: PathBuf,
    /// The tag to point at the result, if any.
    pub tag: Option<String>,
    /// The encoding of new objects, as spfs spells `SPFS_STORAGE__ENCODING_FORMAT`; empty:
    /// spfs's default.
    pub encoding_format: String,
    /// The digest strategy of new objects, as spfs spells `SPFS_STORAGE__DIGEST_STRATEGY`;
    /// empty: spfs's default.
    pub digest_strategy: String,
    /// Who the tag record names (`name@domain`).
    pub user: String,
    /// Who every file written belongs to, the caller's uid and gid; `None` for the service's
    /// own user, whose files are its own already.
    pub owner: Option<(u32, u32)>,
}

/// What a commit wrote, and the runtime afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The digest of the new layer or platform.
    pub digest: Digest,
    /// What it is.
    pub kind: CommitKind,
    /// The tag pointed at it, if one was asked for.
    pub tag: Option<String>,
    /// The runtime, carrying on from the committed stack.
    pub runtime: RuntimeStatus,
}

/// A sink for a commit's running totals; called from the writer's threads.
pub type ProgressSink<'a> = &'a (dyn Fn(CommitProgress) + Sync);

/// One layer of a runtime's stack, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pinned {
    /// A host directory.
    Directory(PathBuf),
    /// An spfs layer by digest.
    Spfs(Digest),
}

/// The layers of `env_spec`, bottom first, platforms expanded and spfs references pinned to
/// their digests, resolved against `repos`. Reads the manifests of its spfs layers.
pub(crate) fn pin_stack(env_spec: &str, repos: &[PathBuf]) -> Result<Vec<Pinned>, HostError> {
    let spec = EnvSpec::parse(env_spec).map_err(|err| HostError::InvalidSpec(err.to_string()))?;
    let opened = Repositories::open(repos).map_err(|err| {
        HostError::InvalidSpec(format!("cannot open the runtime's repositories: {err}"))
    })?;
    let resolved = spec
        .resolve(Arc::new(opened))
        .map_err(|err| HostError::InvalidSpec(err.to_string()))?;
    Ok(resolved
        .layers
        .iter()
        .map(|layer| match layer {
            LayerSource::Directory(path) => Pinned::Directory(path.clone()),
            LayerSource::Spfs { digest, .. } => Pinned::Spfs(*digest),
        })
        .collect())
}

/// The spfs layers of `stack`, bottom first, for a platform; a directory layer is refused
/// (a platform holds spfs objects only).
pub(crate) fn platform_layers(stack: &[Pinned]) -> Result<Vec<Digest>, HostError> {
    stack
        .iter()
        .map(|layer| match layer {
            Pinned::Spfs(digest) => Ok(*digest),
            Pinned::Directory(path) => Err(HostError::Refused(format!(
                "cannot commit a platform: the layer {} is a directory, and a platform holds \
                 spfs layers only; commit a layer instead, or register the runtime with spfs \
                 layers alone",
                path.display()
            ))),
        })
        .collect()
}

/// The env spec a runtime carries on from after committing `digest` on top of `stack`: a
/// platform alone (it names the whole stack), or the pinned stack plus the new layer.
pub(crate) fn committed_spec(stack: &[Pinned], kind: CommitKind, digest: Digest) -> String {
    if kind == CommitKind::Platform {
        return digest.to_string();
    }
    stack
        .iter()
        .map(|layer| match layer {
            Pinned::Directory(path) => path.display().to_string(),
            Pinned::Spfs(digest) => digest.to_string(),
        })
        .chain([digest.to_string()])
        .collect::<Vec<_>>()
        .join("+")
}

/// The repositories a runtime resolves against after a commit into `repo`: its own, then
/// `repo` when it is not one of them already.
pub(crate) fn repos_after(repos: &[PathBuf], repo: &Path) -> Vec<PathBuf> {
    let mut after = repos.to_vec();
    if !after.iter().any(|r| r == repo) {
        after.push(repo.to_path_buf());
    }
    after
}

/// spfs's variables naming who a tag record names (spfs's `user.name`, `user.domain`).
pub const USER_NAME_ENV: &str = "SPFS_USER__NAME";
/// See [`USER_NAME_ENV`].
pub const USER_DOMAIN_ENV: &str = "SPFS_USER__DOMAIN";

/// Who a tag record names, `name@domain`, as spfs writes it: `SPFS_USER__NAME` and
/// `SPFS_USER__DOMAIN` from `env`, else the login name of `uid` and the host name, and no
/// `@domain` when there is no host name. spfs's `impl Default for User` takes
/// `whoami::username()` and `whoami::fallible::hostname()`, and `Tag::new` writes the user's
/// `Display` (spkenv/spk crates/spfs/src/config.rs, crates/spfs/src/tracking/tag.rs).
pub fn tag_user(env: impl Fn(&str) -> Option<String>, uid: u32) -> String {
    let name = env(USER_NAME_ENV)
        .filter(|name| !name.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(uid.into())
                .ok()
                .flatten()
                .map(|user| user.name)
        })
        .unwrap_or_else(|| uid.to_string());
    match env(USER_DOMAIN_ENV).or_else(host_name) {
        Some(domain) if !domain.is_empty() => format!("{name}@{domain}"),
        _ => name,
    }
}

/// This host's name, if it has one.
fn host_name() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8) -> Digest {
        Digest::from_slice(&[byte; spfs_storage::DIGEST_SIZE]).unwrap()
    }

    #[test]
    fn a_layer_goes_on_top_of_the_pinned_stack_and_a_platform_replaces_it() {
        let stack = [
            Pinned::Directory("/layers/a".into()),
            Pinned::Spfs(digest(1)),
        ];
        let spec = committed_spec(&stack, CommitKind::Layer, digest(2));
        assert_eq!(spec, format!("/layers/a+{}+{}", digest(1), digest(2)));
        EnvSpec::parse(&spec).unwrap();
        assert_eq!(
            committed_spec(&[Pinned::Spfs(digest(1))], CommitKind::Platform, digest(3)),
            digest(3).to_string()
        );
        assert_eq!(
            committed_spec(&[], CommitKind::Layer, digest(2)),
            digest(2).to_string()
        );
    }

    #[test]
    fn a_platform_of_a_directory_layer_is_refused_naming_it() {
        let err = platform_layers(&[Pinned::Spfs(digest(1)), Pinned::Directory("/l/x".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/l/x") && err.contains("platform"), "{err}");
        assert_eq!(
            platform_layers(&[Pinned::Spfs(digest(1))]).unwrap(),
            [digest(1)]
        );
    }

    #[test]
    fn the_tag_user_comes_from_spfs_variables_else_the_login_and_host_names() {
        let env = |name: &str| match name {
            USER_NAME_ENV => Some("ada".to_owned()),
            USER_DOMAIN_ENV => Some("lab.example".to_owned()),
            _ => None,
        };
        assert_eq!(tag_user(env, 4242), "ada@lab.example");
        let root = tag_user(|_| None, 0);
        assert!(root.starts_with("root"), "{root}");
        assert_eq!(root, format!("root@{}", host_name().unwrap()));
        let no_domain = |name: &str| (name == USER_DOMAIN_ENV).then(String::new);
        assert_eq!(tag_user(no_domain, 0), "root");
    }

    #[test]
    fn the_commits_repository_joins_the_runtimes_once() {
        let repos = vec![PathBuf::from("/r1")];
        assert_eq!(
            repos_after(&repos, Path::new("/r2")),
            [PathBuf::from("/r1"), PathBuf::from("/r2")]
        );
        assert_eq!(repos_after(&repos, Path::new("/r1")), repos);
    }
}
