//! The system service (a root LaunchDaemon: `sudo brew services start spfs-fuse`): root running
//! `spfs-fuse service` with no socket named listens on the system socket, mode 0666 in a
//! root-owned directory, where every user connects and the peer credentials decide. A client
//! with no socket named tries its own socket, then the system one, and starts only a per-user
//! service of its own. `SPFS_FUSE_SYSTEM_SOCKET` moves the system socket into the test's
//! directory.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

mod support;
use spfs_testkit::require_fuse;
use support::mounts::put;
use support::{BIN, OTHER_UID, READY, Sleeper, eventually, ok, stderr};

/// A test's directory: the system socket's place, each user's runtime directory (where their
/// own sockets go), mount points and a layer every user may read.
struct Host {
    dir: tempfile::TempDir,
    services: Vec<Child>,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        put(&dir.path().join("layer"), "hello", b"hi\n");
        Host {
            dir,
            services: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn system_socket(&self) -> PathBuf {
        self.path("system/spfs-fuse.sock")
    }

    /// `uid`'s own default socket, in the runtime directory the test gives it.
    fn own_socket(&self, uid: u32) -> PathBuf {
        self.path(&format!("run-{uid}/spfs-fuse/spfs-fuse.sock"))
    }

    fn layer(&self) -> String {
        self.path("layer").to_str().unwrap().to_owned()
    }

    /// `spfs-fuse ARGS` as `uid`, with no socket named.
    fn cmd(&self, uid: u32, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("SPFS_FUSE_SOCKET")
            .env_remove("RUST_LOG")
            .env("SPFS_FUSE_SYSTEM_SOCKET", self.system_socket())
            .env("XDG_RUNTIME_DIR", self.path(&format!("run-{uid}")))
            .current_dir(self.dir.path());
        if uid != 0 {
            cmd.uid(uid).gid(uid);
        }
        cmd
    }

    fn run(&self, uid: u32, args: &[&str]) -> Output {
        self.cmd(uid, args).output().unwrap()
    }

    /// Starts `spfs-fuse service ARGS` as root with no socket named, and waits until `socket`
    /// answers.
    fn service(&mut self, args: &[&str], socket: &Path) {
        let log = std::fs::File::create(self.path("service.log")).unwrap();
        let child = self
            .cmd(0, &["service", "--threads", "2"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.services.push(child);
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            let log = std::fs::read_to_string(self.path("service.log")).unwrap_or_default();
            assert!(started.elapsed() < READY, "no service on {socket:?}: {log}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A host whose root service serves the system socket (returned) on `system-mnt`
    /// (returned).
    fn with_system_service() -> (Host, PathBuf, PathBuf) {
        let mut host = Host::new();
        let system = host.system_socket();
        let mnt = host.path("system-mnt");
        host.service(&["--mountpoint", mnt.to_str().unwrap()], &system);
        (host, system, mnt)
    }

    fn status(&self, uid: u32) -> serde_json::Value {
        serde_json::from_str(&ok(&self.run(uid, &["status", "--json"]))).unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for child in &mut self.services {
            let _ = child.kill();
            let _ = child.wait();
        }
        for mnt in ["system-mnt", "own-mnt"] {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.path(mnt))
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn a_root_service_with_no_socket_named_serves_every_user_on_the_system_socket() {
    if !require_fuse() {
        return;
    }
    let (mut host, system, mnt) = Host::with_system_service();

    let socket = std::fs::metadata(&system).unwrap();
    assert!(socket.file_type().is_socket());
    assert_eq!(socket.mode() & 0o777, 0o666, "every user may connect");
    let dir = std::fs::metadata(system.parent().unwrap()).unwrap();
    assert_eq!(
        (dir.uid(), dir.mode() & 0o777),
        (0, 0o755),
        "no one else may write there"
    );
    assert!(!host.own_socket(0).exists(), "not on root's own socket");

    // Another user, whose own socket does not answer, reaches it and registers its own process.
    let theirs = Sleeper::as_uid(OTHER_UID);
    let registered = ok(&host.run(
        OTHER_UID,
        &["mount", "--root-process", &theirs.pid(), &host.layer()],
    ));
    assert_eq!(registered.trim(), mnt.to_str().unwrap());
    let seen = host.status(OTHER_UID);
    assert_eq!(seen["runtimes"].as_array().unwrap().len(), 1, "{seen}");
    // The peer credentials still decide: it may not stop root's service.
    let refused = host.run(OTHER_UID, &["shutdown"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("permission denied"),
        "{}",
        stderr(&refused)
    );

    ok(&host.run(0, &["shutdown"]));
    assert_eq!(host.services[0].wait().unwrap().code(), Some(0));
    assert!(!system.exists(), "the socket went with the service");
}

#[test]
fn a_client_tries_its_own_socket_then_the_system_one_and_starts_only_its_own_service() {
    if !require_fuse() {
        return;
    }
    let mut host = Host::new();
    let (system_mnt, own_mnt) = (host.path("system-mnt"), host.path("own-mnt"));
    let own = host.own_socket(0);
    host.service(
        &["--mountpoint", system_mnt.to_str().unwrap()],
        &host.system_socket(),
    );
    let mount = |host: &Host| {
        host.run(
            0,
            &[
                "mount",
                "--mountpoint",
                own_mnt.to_str().unwrap(),
                &host.layer(),
            ],
        )
    };

    // Nothing on the client's own socket: the system service registers the runtime.
    let out = mount(&host);
    assert_eq!(ok(&out).trim(), system_mnt.to_str().unwrap());
    assert!(
        !stderr(&out).contains("started a service"),
        "{}",
        stderr(&out)
    );

    // With a service of its own, the client talks to that one.
    host.service(
        &[
            "--socket",
            own.to_str().unwrap(),
            "--mountpoint",
            own_mnt.to_str().unwrap(),
        ],
        &own,
    );
    assert_eq!(
        host.status(0)["mount_points"],
        serde_json::json!([own_mnt]),
        "its own service comes first"
    );
    ok(&host.run(0, &["shutdown"]));
    ok(&host.run(0, &["shutdown"]));
    eventually("the system service to go", || {
        !host.system_socket().exists()
    });

    // With neither, the client starts a service of its own, never the system one.
    let out = mount(&host);
    assert_eq!(ok(&out).trim(), own_mnt.to_str().unwrap());
    assert!(
        stderr(&out).contains("started a service") && stderr(&out).contains(own.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    assert!(!host.system_socket().exists());
    ok(&host.run(0, &["shutdown"]));
}

/// Regression: with the shared root at 01777 (sticky, like /tmp), the kernel refused the owner
/// of an editable runtime, a user other than root, the removal or renaming of a lower entry
/// directly under the root that the view shows as another user's (`EPERM`, the sticky rule),
/// which overlayfs lets the runtime's owner do. The root is 0777: the service alone decides.
#[test]
fn another_users_editable_runtime_changes_lower_entries_under_the_shared_root() {
    if !require_fuse() {
        return;
    }
    let (host, _, mnt) = Host::with_system_service();
    put(&host.path("layer"), "renamed", b"root's\n");
    let changed = host.run(
        OTHER_UID,
        &[
            "run",
            "--edit",
            &host.layer(),
            "--",
            "sh",
            "-c",
            "rm \"$SPFS_ROOT/hello\" && mv \"$SPFS_ROOT/renamed\" \"$SPFS_ROOT/moved\" \
             && echo x > \"$SPFS_ROOT/new\" && ls \"$SPFS_ROOT\"",
        ],
    );
    assert_eq!(ok(&changed), "moved\nnew\n", "{}", stderr(&changed));
    // Outside every runtime, the same root answers EROFS.
    let outsider = host.run(OTHER_UID, &["status"]);
    assert!(outsider.status.success());
    let refused = Command::new("sh")
        .arg("-c")
        .arg(format!("echo x > {}/outsider", mnt.display()))
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .output()
        .unwrap();
    assert!(
        stderr(&refused).contains("Read-only file system"),
        "{}",
        stderr(&refused)
    );
}
