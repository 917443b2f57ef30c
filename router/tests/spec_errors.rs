//! Every env-spec error, by its message.

use spfs_router::{EnvSpec, SpecError};

fn check(spec: &str) -> Result<EnvSpec, SpecError> {
    let parsed = EnvSpec::parse(spec)?;
    parsed.check()?;
    Ok(parsed)
}

#[test]
fn empty_spec() {
    assert_eq!(
        check("").unwrap_err().to_string(),
        "the env spec is empty; use '-' for the empty view"
    );
}

#[test]
fn empty_component() {
    assert_eq!(
        check("/a++/b").unwrap_err().to_string(),
        "env spec \"/a++/b\" has an empty layer at position 2"
    );
    assert_eq!(
        check("/a+").unwrap_err().to_string(),
        "env spec \"/a+\" has an empty layer at position 2"
    );
}

#[test]
fn relative_path() {
    assert_eq!(
        check("/tmp+./lib/x").unwrap_err().to_string(),
        "layer \"./lib/x\" is a relative path; the service takes absolute paths only"
    );
}

#[test]
fn parent_component() {
    assert_eq!(
        check("/tmp/../etc").unwrap_err().to_string(),
        "layer \"/tmp/../etc\" contains a '..' component"
    );
}

#[test]
fn missing_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = check(missing.to_str().unwrap()).unwrap_err();
    assert_eq!(err.to_string(), format!("layer {missing:?} does not exist"));
}

#[test]
fn not_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = check(file.to_str().unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("layer {file:?} is not a directory")
    );
}

/// Runs `f` with this thread's filesystem uid set to an unprivileged user, so that even a
/// root test run meets permission checks (Linux's fsuid is per thread).
#[cfg(target_os = "linux")]
fn as_nobody<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: setfsuid only changes this thread's filesystem credentials.
    let before = unsafe { libc::setfsuid(65534) };
    let out = f();
    // SAFETY: as above; restores the previous filesystem uid.
    unsafe { libc::setfsuid(before as libc::uid_t) };
    out
}

#[cfg(target_os = "linux")]
#[test]
fn unreadable_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("locked");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = as_nobody(|| check(dir.to_str().unwrap())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("layer {dir:?} cannot be read: Permission denied (os error 13)")
    );
}

#[test]
fn too_many_layers() {
    let spec = vec!["/tmp"; 2000].join("+");
    assert_eq!(
        check(&spec).unwrap_err().to_string(),
        "env spec has 2000 layers; at most 1024 are allowed"
    );
}
