//! The kernel-facing policy as one value: how long the kernel may keep each kind of answer,
//! which open and INIT flags it gets, whether it may skip OPEN, and the mount options. It is
//! chosen at run time from the kernel's platform, the transport and the routing, so a Linux
//! test can build the macFUSE policy and run it through the real [`Adapter`].
//!
//! DESIGN.md §4 rule 3 becomes numbers here: names directly under the root differ per caller
//! in the shared layout, so their entries are never cached ([`Scope::Root`]); below the root
//! a read-only view never changes, an editable one changes only through the kernel (which
//! updates its caches as it passes each change on), and node ids are never reused, so a cached
//! answer can only ever be right ([`Scope::Below`]). The adapter decides which scope an answer
//! has, in one function (and gives a file with several names no attribute caching, since a
//! change through one name leaves the others' stale); this module says what each scope costs.
//! Rule 7's caching follows: created names under the root are [`Scope::Root`] entries too.
//!
//! Who reaches the mount is the one input from the service besides these three: a mount that
//! serves users other than the service's own (the system service, any service run as root)
//! lets them in on macFUSE with `allow_other` and `default_permissions`; a per-user service's
//! mount does not, so macFUSE never refuses it ([`KernelPolicy::serving_other_users`] has the
//! rule and the kext's reasons).
//!
//! Flags that exist only in the Linux ABI of `fuse-backend-rs` (`CACHE_DIR`,
//! `ZERO_MESSAGE_OPEN`, ...) are named only in `platform/linux.rs`.
//!
//! [`Adapter`]: crate::adapter::Adapter

use std::time::Duration;

use fuse_backend_rs::api::filesystem::{FsOptions, OpenOptions};
use spfs_router::Routing;

use crate::platform;
use crate::session::Transport;

/// How long the kernel may keep an answer that can only ever be right: a read-only view never
/// changes, and every change of an editable one passes through the kernel, which updates its
/// caches on the way.
const LONG: Duration = Duration::from_secs(24 * 60 * 60);

/// The kernel a session talks to, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Linux FUSE (`/dev/fuse`, FUSE over io_uring).
    Linux,
    /// macOS: the macFUSE kernel extension, or FUSE-T's NFS server.
    MacOs,
}

impl Platform {
    /// The platform this binary was built for.
    pub fn current() -> Platform {
        platform::CURRENT
    }
}

/// Whether the mount routes its root by caller: the shared layout does; a per-runtime volume
/// serves one fixed view (DESIGN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingKind {
    /// One mount whose root shows each caller its own view.
    Shared,
    /// A mount showing one view to everyone (per-runtime volumes).
    Fixed,
}

impl RoutingKind {
    /// The kind of a filesystem serving `routing`.
    pub fn of(routing: &Routing) -> RoutingKind {
        match routing {
            Routing::Shared(_) => RoutingKind::Shared,
            Routing::Fixed(_) => RoutingKind::Fixed,
        }
    }
}

/// Where an answer sits, which is what decides whether the kernel may keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The root itself, or a name directly under it.
    Root,
    /// Anything deeper.
    Below,
}

/// What the kernel may keep of the answers of one [`Scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caching {
    /// How long a name's entry (name to node id) may be kept.
    pub entry_ttl: Duration,
    /// How long a node's attributes may be kept.
    pub attr_ttl: Duration,
    /// How long "no such name" may be kept as a negative entry; `None` answers a plain
    /// `ENOENT`, which the kernel never caches.
    pub negative_ttl: Option<Duration>,
    /// The open flags of a directory's OPENDIR reply.
    pub dir_open: OpenOptions,
}

/// A mount option, spelled by each session the way its mount helper wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOption {
    /// Read-only (`ro`; FUSE-T's `-r`; `MS_RDONLY` on Linux).
    ReadOnly,
    /// macFUSE: no `._` AppleDouble files, which a read-only view could never store and which
    /// would only litter an editable one's scratch (the kext refuses them with `EPERM`).
    NoAppleDouble,
    /// macFUSE: no `com.apple.*` extended attributes, likewise.
    NoAppleXattr,
    /// FUSE-T: no NFS named attributes (`--namedattr=false`).
    NoNamedAttr,
    /// FUSE-T: the NFS read and write size in bytes (`--rwsize=`).
    RwSize(usize),
    /// macFUSE: enter no name in the kernel's name cache (`novncache`). The kext ignores entry
    /// timeouts and keeps every looked-up name until the vnode goes (osxfuse/kext
    /// `fuse_node.c`, `fuse_vget_i`), so a routed root needs every lookup to reach us.
    NoVnCache,
    /// Keep the volume out of Finder's sidebar and browsing (`MNT_DONTBROWSE`): macFUSE's
    /// `nobrowse`, FUSE-T's `--dontbrowse=true`.
    NoBrowse,
    /// macFUSE: let users other than the mounter in (`allow_other`). Without it the kext
    /// answers every request of another uid, or of the mounter's uid under another primary
    /// gid, with `EPERM` (osxfuse/kext `fuse_internal.h`, `fuse_blanket_deny` and
    /// `fuse_match_cred`). A mounter that is not root needs the admin group for it
    /// (`fuse_vfsops.c`, `fuse_vfsop_mount`), or mount(2) fails with `EPERM`.
    AllowOther,
    /// macFUSE: the kernel checks permissions against the attributes we answer
    /// (`default_permissions`: the kext clears the mount's opaque authorisation,
    /// `fuse_vfsops.c`), instead of asking us with ACCESS requests.
    DefaultPermissions,
}

/// FUSE-T's read and write size: 256 KiB is much faster than its 32 KiB default.
pub const FUSE_T_RWSIZE: usize = 262_144;

/// The kernel-facing policy of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPolicy {
    /// The root and the names directly under it.
    pub root: Caching,
    /// Everything below.
    pub below: Caching,
    /// The open flags of a file's OPEN reply.
    pub file_open: OpenOptions,
    /// The INIT flags to ask for (the kernel grants what it has of them).
    pub init: FsOptions,
    /// Whether to answer read-only OPENs with `ENOSYS` where the kernel granted no-open
    /// support, so it sends no OPEN or RELEASE for files and reads by node id.
    pub no_open: bool,
    /// The mount options, besides the names (`fsname`, `volname`) each session passes. On
    /// Linux `fuse-backend-rs` adds `default_permissions`, `allow_other`, `nosuid`, `nodev`
    /// and `noatime` itself.
    pub mount_options: Vec<MountOption>,
    /// Whether the helper is macFUSE's, the one that takes `allow_other`.
    macfuse: bool,
    /// Whether the helper is FUSE-T's, the one that takes `--namedattr`.
    fuse_t: bool,
}

impl KernelPolicy {
    /// The policy for `transport` on `platform` with `routing`. [`Transport::Nfs`] is FUSE-T
    /// whatever the platform (a Linux build runs its session against a stand-in server).
    pub fn new(platform: Platform, transport: Transport, routing: RoutingKind) -> KernelPolicy {
        let fuse_t = transport == Transport::Nfs;
        let linux = platform == Platform::Linux && !fuse_t;
        // Rule 3 for the shared layout. The fixed layout routes nothing, so caching its root's
        // names would be safe, but its root has always been answered like the shared one;
        // that is kept until a change measures the relaxation.
        let root = match routing {
            RoutingKind::Shared | RoutingKind::Fixed => Caching {
                entry_ttl: Duration::ZERO,
                // A root child's node id belongs to one view, and the root's own attributes
                // are identical in every view: both may be kept.
                attr_ttl: LONG,
                negative_ttl: None,
                dir_open: OpenOptions::empty(),
            },
        };
        let below = Caching {
            entry_ttl: LONG,
            attr_ttl: LONG,
            // An NFS client keeps no FUSE negative entries, and `fuse-backend-rs` itself never
            // sends node id 0 to FUSE-T.
            negative_ttl: (!fuse_t).then_some(LONG),
            dir_open: OpenOptions::KEEP_CACHE
                | if linux {
                    platform::linux_dir_cache()
                } else {
                    OpenOptions::empty()
                },
        };
        // Both ABIs have these; macFUSE's has few of Linux's others.
        let common = FsOptions::ASYNC_READ | FsOptions::BIG_WRITES;
        // Both macOS helpers keep the volume out of Finder's sidebar. The kext enters every
        // looked-up name in the name cache, entry timeout or not, and answers from it without
        // asking (osxfuse/kext `fuse_node.c`, `fuse_vnops.c`): a routed root must forbid
        // that, or runtime B gets runtime A's `/spfs/bin`. A per-runtime volume serves one
        // view and keeps the cache.
        // Every mount is read-write: a read-only view answers writes with `EROFS` itself
        // (DESIGN.md §4 rule 7), and the one mount serves editable runtimes next to them.
        let mount_options = if fuse_t {
            vec![
                MountOption::NoNamedAttr,
                MountOption::RwSize(FUSE_T_RWSIZE),
                MountOption::NoBrowse,
            ]
        } else if linux {
            Vec::new()
        } else {
            let mut macfuse = vec![
                MountOption::NoAppleDouble,
                MountOption::NoAppleXattr,
                MountOption::NoBrowse,
            ];
            if routing == RoutingKind::Shared {
                macfuse.push(MountOption::NoVnCache);
            }
            macfuse
        };
        KernelPolicy {
            root,
            below,
            // A file changes only through this kernel (an editable view's writes pass it), so
            // the page cache survives reopening.
            file_open: OpenOptions::KEEP_CACHE,
            init: if linux {
                common | platform::linux_init()
            } else {
                common
            },
            no_open: linux,
            mount_options,
            macfuse: !linux && !fuse_t,
            fuse_t,
        }
    }

    /// This policy for a mount that users other than the service's own reach (`true`), or
    /// the service's user alone (`false`, what [`KernelPolicy::new`] gives).
    ///
    /// Who that is, is the service's rule: the system service (root, on the system socket)
    /// and any service run as root serve every user, so their mounts take `other_users`; a
    /// per-user service serves its own user only, and its mounts do not. That keeps a
    /// per-user service of a user outside the admin group mounting, since macFUSE refuses
    /// `allow_other` to a non-root mounter outside it (mount(2) `EPERM`, osxfuse/kext
    /// `fuse_vfsops.c`); root is never refused.
    ///
    /// What it changes per helper:
    /// - macFUSE: `allow_other`, or the kext denies every uid but the mounter's, and the
    ///   mounter's uid under another primary gid too (`fuse_internal.h`, `fuse_blanket_deny`,
    ///   `fuse_match_cred`), so root and other users would see nothing, not even the empty
    ///   view. With it `default_permissions`: the kext then leaves permission checks to the
    ///   kernel, against the attributes we answer (`fuse_vfsops.c` clears the mount's opaque
    ///   authorisation). That is right for views: they are read-only and their permission
    ///   bits are the layers'. Without it the kext asks us with ACCESS, which checks no bits
    ///   (`Vfs::access`), and every user would read every file. `defer_permissions`, the
    ///   kext's third way (allow at the check, let each operation's reply decide;
    ///   `fuse_internal.c`), would be the same hole.
    /// - FUSE-T: nothing. libfuse-t parses `allow_other` and `default_permissions` into
    ///   kernel options it never hands to `go-nfsv4` (macos-fuse-t/libfuse
    ///   `lib/mount_darwin.c`), and `go-nfsv4` takes no such flag: the NFS mount is visible
    ///   to every user, and what each may do is what the NFS server answers for the RPC's
    ///   credentials (closed source: an open question for the macOS workflow).
    /// - Linux: nothing. `fuse-backend-rs` mounts with `allow_other` and
    ///   `default_permissions` always.
    pub fn serving_other_users(mut self, other_users: bool) -> KernelPolicy {
        self.mount_options
            .retain(|o| !matches!(o, MountOption::AllowOther | MountOption::DefaultPermissions));
        if other_users && self.macfuse {
            self.mount_options
                .extend([MountOption::AllowOther, MountOption::DefaultPermissions]);
        }
        self
    }

    /// This policy for a volume whose runtime is `editable` (`true`) or not (`false`, what
    /// [`KernelPolicy::new`] gives). What it changes per helper:
    /// - FUSE-T: named attributes on (no `--namedattr=false`), so the NFS client passes
    ///   extended attributes to a view that can keep them; a read-only view has none to show.
    /// - macFUSE and Linux: nothing; extended attributes always reach the server.
    pub fn editable(mut self, editable: bool) -> KernelPolicy {
        self.mount_options
            .retain(|o| *o != MountOption::NoNamedAttr);
        if !editable && self.fuse_t {
            // Kept where it was, so a policy made editable and back is the one it was.
            self.mount_options.insert(0, MountOption::NoNamedAttr);
        }
        self
    }

    /// What the kernel may keep of answers in `scope`.
    pub fn caching(&self, scope: Scope) -> &Caching {
        match scope {
            Scope::Root => &self.root,
            Scope::Below => &self.below,
        }
    }

    /// Whether the mount is read-only: no policy asks for it since views answer `EROFS`
    /// themselves, but a session still spells the option if one does.
    pub fn read_only(&self) -> bool {
        self.mount_options.contains(&MountOption::ReadOnly)
    }

    /// Whether the kernel, having granted `enabled` at INIT, goes without OPEN and RELEASE
    /// for files when this policy asks it to.
    pub fn skips_open(&self, enabled: FsOptions) -> bool {
        self.no_open && platform::grants_no_open(enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTINGS: [RoutingKind; 2] = [RoutingKind::Shared, RoutingKind::Fixed];

    fn every_policy() -> Vec<KernelPolicy> {
        let mut all = Vec::new();
        for platform in [Platform::Linux, Platform::MacOs] {
            for transport in [Transport::Device, Transport::Nfs] {
                for routing in ROUTINGS {
                    all.push(KernelPolicy::new(platform, transport, routing));
                }
            }
        }
        all
    }

    #[test]
    fn the_root_names_are_never_cached_under_any_policy() {
        for policy in every_policy() {
            assert_eq!(policy.root.entry_ttl, Duration::ZERO, "{policy:?}");
            assert_eq!(policy.root.negative_ttl, None, "{policy:?}");
            assert_eq!(policy.root.dir_open, OpenOptions::empty(), "{policy:?}");
        }
    }

    /// Rule 7: read-only views answer `EROFS` themselves, so every mount is read-write and
    /// can serve editable runtimes.
    #[test]
    fn every_mount_is_read_write() {
        for policy in every_policy() {
            assert!(!policy.read_only(), "{policy:?}");
            assert!(
                !policy.mount_options.contains(&MountOption::ReadOnly),
                "{policy:?}"
            );
            assert!(!policy.clone().editable(true).read_only(), "{policy:?}");
        }
    }

    #[test]
    fn below_the_root_every_layout_may_cache() {
        for policy in every_policy() {
            assert_eq!(policy.below.entry_ttl, LONG);
            assert_eq!(policy.below.attr_ttl, LONG);
            assert!(policy.below.dir_open.contains(OpenOptions::KEEP_CACHE));
            assert!(policy.file_open.contains(OpenOptions::KEEP_CACHE));
        }
        let linux = KernelPolicy::new(Platform::Linux, Transport::Device, RoutingKind::Fixed);
        assert_eq!(linux.below.negative_ttl, Some(LONG));
    }

    #[test]
    fn the_macfuse_policy_asks_for_no_linux_only_flag() {
        for routing in ROUTINGS {
            for transport in [Transport::Device, Transport::Nfs] {
                let mac = KernelPolicy::new(Platform::MacOs, transport, routing);
                assert_eq!(mac.init, FsOptions::ASYNC_READ | FsOptions::BIG_WRITES);
                assert_eq!(mac.below.dir_open, OpenOptions::KEEP_CACHE);
                assert!(!mac.no_open);
                assert!(!mac.skips_open(FsOptions::all()));
            }
        }
    }

    #[test]
    fn linux_asks_for_no_open_and_directory_caching() {
        let linux = KernelPolicy::new(Platform::Linux, Transport::Device, RoutingKind::Shared);
        assert!(linux.no_open);
        assert!(
            linux
                .init
                .contains(FsOptions::ASYNC_READ | FsOptions::BIG_WRITES)
        );
        assert!(!linux.skips_open(FsOptions::ASYNC_READ));
        if cfg!(target_os = "linux") {
            assert!(linux.skips_open(linux.init));
            assert_ne!(linux.below.dir_open, OpenOptions::KEEP_CACHE);
        }
    }

    #[test]
    fn fuse_t_sends_no_negative_entries() {
        for platform in [Platform::Linux, Platform::MacOs] {
            let fuse_t = KernelPolicy::new(platform, Transport::Nfs, RoutingKind::Fixed);
            assert_eq!(fuse_t.below.negative_ttl, None);
        }
    }

    #[test]
    fn each_helper_gets_its_own_mount_options() {
        use MountOption::*;
        let of = |platform, transport| {
            KernelPolicy::new(platform, transport, RoutingKind::Shared).mount_options
        };
        assert_eq!(of(Platform::Linux, Transport::Device), []);
        assert_eq!(
            of(Platform::MacOs, Transport::Device),
            [NoAppleDouble, NoAppleXattr, NoBrowse, NoVnCache]
        );
        assert_eq!(
            of(Platform::MacOs, Transport::Nfs),
            [NoNamedAttr, RwSize(FUSE_T_RWSIZE), NoBrowse]
        );
    }

    /// An editable FUSE-T volume takes extended attributes through NFS named attributes; a
    /// read-only one keeps them off, and every other helper is unchanged.
    #[test]
    fn an_editable_fuse_t_volume_turns_named_attributes_on() {
        for routing in ROUTINGS {
            for platform in [Platform::Linux, Platform::MacOs] {
                let fuse_t = KernelPolicy::new(platform, Transport::Nfs, routing);
                let editable = fuse_t.clone().editable(true);
                assert!(
                    !editable.mount_options.contains(&MountOption::NoNamedAttr),
                    "{editable:?}"
                );
                assert_eq!(
                    editable.mount_options,
                    [MountOption::RwSize(FUSE_T_RWSIZE), MountOption::NoBrowse]
                );
                assert_eq!(fuse_t.clone().editable(false), fuse_t, "the default");
                assert_eq!(editable.clone().editable(false), fuse_t, "undone");
                assert_eq!(editable.clone().editable(true), editable, "twice");
            }
            for (platform, transport) in [
                (Platform::Linux, Transport::Device),
                (Platform::MacOs, Transport::Device),
            ] {
                let policy = KernelPolicy::new(platform, transport, routing);
                assert_eq!(policy.clone().editable(true), policy);
            }
        }
    }

    /// Defect 1 of issue 14: the kext ignores entry timeouts, so only `novncache` keeps one
    /// view's names from answering another's lookups on a routed root.
    #[test]
    fn only_the_routed_macfuse_mount_turns_the_name_cache_off() {
        let has = |platform, transport, routing| {
            KernelPolicy::new(platform, transport, routing)
                .mount_options
                .contains(&MountOption::NoVnCache)
        };
        assert!(has(Platform::MacOs, Transport::Device, RoutingKind::Shared));
        // A per-runtime volume serves one view: its names may be cached.
        assert!(!has(Platform::MacOs, Transport::Device, RoutingKind::Fixed));
        // Linux honours entry timeouts; FUSE-T's NFS client has no such option.
        for routing in ROUTINGS {
            assert!(!has(Platform::Linux, Transport::Device, routing));
            for platform in [Platform::Linux, Platform::MacOs] {
                assert!(!has(platform, Transport::Nfs, routing));
            }
        }
    }

    /// Defect 6 of issue 14: without `allow_other` the kext denies root and every other user
    /// (and the mounter under another primary gid) everything, so the system service's mount
    /// must ask for it, with the kernel checking the layers' permission bits.
    #[test]
    fn a_macfuse_mount_serving_other_users_lets_them_in_and_checks_their_permissions() {
        use MountOption::{AllowOther, DefaultPermissions};
        for routing in ROUTINGS {
            let system = KernelPolicy::new(Platform::MacOs, Transport::Device, routing)
                .serving_other_users(true);
            assert!(system.mount_options.contains(&AllowOther), "{system:?}");
            assert!(
                system.mount_options.contains(&DefaultPermissions),
                "{system:?}"
            );
            // Asked twice, still once each.
            let twice = system.clone().serving_other_users(true);
            assert_eq!(twice.mount_options, system.mount_options);
        }
    }

    /// A per-user service serves its own user: no `allow_other`, so a user outside the admin
    /// group can still mount.
    #[test]
    fn a_mount_for_its_own_user_asks_for_no_allow_other() {
        use MountOption::{AllowOther, DefaultPermissions};
        for routing in ROUTINGS {
            let per_user = KernelPolicy::new(Platform::MacOs, Transport::Device, routing);
            assert_eq!(
                per_user.clone().serving_other_users(false),
                per_user,
                "serving its own user is the default"
            );
            let undone = per_user
                .clone()
                .serving_other_users(true)
                .serving_other_users(false);
            assert_eq!(undone, per_user);
            assert!(!per_user.mount_options.contains(&AllowOther));
            assert!(!per_user.mount_options.contains(&DefaultPermissions));
        }
    }

    /// FUSE-T's server and Linux's `fuse-backend-rs` take no such option from us.
    #[test]
    fn only_macfuse_is_told_about_other_users() {
        for routing in ROUTINGS {
            for (platform, transport) in [
                (Platform::Linux, Transport::Device),
                (Platform::Linux, Transport::Nfs),
                (Platform::MacOs, Transport::Nfs),
            ] {
                let policy = KernelPolicy::new(platform, transport, routing);
                assert_eq!(policy.clone().serving_other_users(true), policy);
            }
        }
    }

    #[test]
    fn both_macos_backends_stay_out_of_finders_sidebar() {
        for routing in ROUTINGS {
            for transport in [Transport::Device, Transport::Nfs] {
                let mac = KernelPolicy::new(Platform::MacOs, transport, routing);
                assert!(
                    mac.mount_options.contains(&MountOption::NoBrowse),
                    "{mac:?}"
                );
            }
            let linux = KernelPolicy::new(Platform::Linux, Transport::Device, routing);
            assert!(!linux.mount_options.contains(&MountOption::NoBrowse));
        }
    }
}
