//! Bad input through the real client and service: each case gets a clear error that names what
//! is wrong, and the service goes on serving afterwards (a runtime registered before the bad
//! call still reads through the mount, and the control plane still answers).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::*;

/// A service with one healthy runtime (this test process, over the test's layer) to check that
/// it keeps serving.
struct Healthy {
    env: Env,
    _service: Service,
}

impl Healthy {
    fn start() -> Healthy {
        Healthy::start_with(|_| {})
    }

    /// Like [`Healthy::start`], with more files put in the layer first.
    fn start_with(fill: impl FnOnce(&Path)) -> Healthy {
        let env = Env::new();
        fill(Path::new(&env.layer()));
        let service = env.service();
        ok(&env.run(&["mount", &env.layer()]));
        let healthy = Healthy {
            env,
            _service: service,
        };
        healthy.assert_serving();
        healthy
    }

    /// The control plane answers and the healthy runtime still reads its file.
    #[track_caller]
    fn assert_serving(&self) {
        let status = status_json(&self.env);
        assert_eq!(status["runtimes"].as_array().unwrap().len(), 1, "{status}");
        let hello = std::fs::read_to_string(self.env.mountpoint().join("hello"));
        assert_eq!(hello.ok().as_deref(), Some("hi\n"));
    }

    /// Runs a client command that must fail; returns its stderr after checking the service.
    #[track_caller]
    fn refused(&self, args: &[&OsStr]) -> String {
        let out: Output = Command::new(env!("CARGO_BIN_EXE_spfs-fuse"))
            .args(args)
            .env("SPFS_FUSE_SOCKET", self.env.socket())
            .current_dir(self.env.path())
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{args:?} succeeded: {}",
            stdout(&out)
        );
        self.assert_serving();
        stderr(&out)
    }

    /// `mount --root-process <sleeper> SPEC`, which must fail.
    #[track_caller]
    fn refused_spec(&self, spec: &OsStr) -> String {
        let root = Sleeper::as_uid(0);
        let pid = root.pid();
        self.refused(&[
            "mount".as_ref(),
            "--root-process".as_ref(),
            pid.as_ref(),
            spec,
        ])
    }

    /// `mount --root-process PID LAYER`, which must fail.
    #[track_caller]
    fn refused_root(&self, pid: &str) -> String {
        let layer = self.env.layer();
        self.refused(&[
            "mount".as_ref(),
            "--root-process".as_ref(),
            pid.as_ref(),
            layer.as_ref(),
        ])
    }
}

#[track_caller]
fn assert_mentions(err: &str, words: &[&str]) {
    for word in words {
        assert!(err.contains(word), "{word:?} is not in: {err}");
    }
}

#[test]
fn an_empty_spec() {
    let service = Healthy::start();
    let err = service.refused_spec("".as_ref());
    assert_mentions(&err, &["empty"]);
}

#[test]
fn a_relative_layer_that_does_not_exist() {
    let service = Healthy::start();
    let err = service.refused_spec("no/such/layer".as_ref());
    assert_mentions(&err, &["no/such/layer"]);
}

#[test]
fn a_layer_with_a_parent_component() {
    let service = Healthy::start();
    let spec = format!("{}/../layer", service.env.layer());
    let err = service.refused_spec(spec.as_ref());
    assert_mentions(&err, &[&spec, ".."]);
}

#[test]
fn a_layer_that_names_a_file() {
    let service = Healthy::start();
    let spec = format!("{}/hello", service.env.layer());
    let err = service.refused_spec(spec.as_ref());
    assert_mentions(&err, &[&spec, "not a directory"]);
}

#[test]
fn a_missing_layer_directory() {
    let service = Healthy::start();
    let spec = service.env.path().join("missing");
    let err = service.refused_spec(spec.as_os_str());
    assert_mentions(&err, &[spec.to_str().unwrap()]);
}

#[test]
fn a_spec_that_is_not_utf8() {
    let service = Healthy::start();
    let err = service.refused_spec(OsStr::from_bytes(b"/tmp/\xff\xfe"));
    assert_mentions(&err, &["UTF-8"]);
}

#[test]
fn ten_thousand_layers() {
    let service = Healthy::start();
    // Relative items keep the argument short; the client makes each absolute.
    let spec = vec!["./layer"; 10_000].join("+");
    let err = service.refused_spec(spec.as_ref());
    assert_mentions(&err, &["10000", "layers"]);
}

#[test]
fn root_pid_0() {
    let service = Healthy::start();
    let err = service.refused_root("0");
    assert_mentions(&err, &["0"]);
}

#[test]
fn root_pid_1() {
    let service = Healthy::start();
    let err = service.refused_root("1");
    assert_mentions(&err, &["pid 1", "everybody"]);
}

#[test]
fn a_dead_root_pid() {
    let service = Healthy::start();
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id().to_string();
    child.wait().unwrap();
    let err = service.refused_root(&pid);
    assert_mentions(&err, &[&pid]);
}

#[test]
fn a_duplicate_registration() {
    let service = Healthy::start();
    let me = std::process::id().to_string();
    let err = service.refused_root(&me);
    assert_mentions(&err, &[&me, "already"]);
}

#[test]
fn unmounting_an_unknown_root() {
    let service = Healthy::start();
    let err = service.refused(&[
        "unmount".as_ref(),
        "--root-process".as_ref(),
        "999999".as_ref(),
    ]);
    assert_mentions(&err, &["999999"]);
}

#[test]
fn a_layer_file_deleted_or_truncated_after_registration() {
    let service = Healthy::start_with(|layer| {
        std::fs::write(layer.join("gone"), "soon gone\n").unwrap();
        std::fs::write(layer.join("short"), vec![b'x'; 1 << 20]).unwrap();
    });
    let layer = service.env.path().join("layer");
    let mount = service.env.mountpoint();
    std::fs::remove_file(layer.join("gone")).unwrap();
    let err = std::fs::read(mount.join("gone")).unwrap_err();
    assert!(
        [Some(libc::ENOENT), Some(libc::EIO)].contains(&err.raw_os_error()),
        "{err}"
    );
    service.assert_serving();

    std::fs::OpenOptions::new()
        .write(true)
        .open(layer.join("short"))
        .unwrap()
        .set_len(10)
        .unwrap();
    // The view still says 1 MiB; the read ends where the file now does.
    let read = std::fs::read(mount.join("short")).unwrap();
    assert_eq!(read, vec![b'x'; 10]);
    service.assert_serving();
}

#[test]
fn a_message_over_the_size_limit() {
    let service = Healthy::start();
    let socket = service.env.socket();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = runtime.block_on(async move {
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        let channel = tonic::transport::Endpoint::from_static("http://spfs-fuse.localhost")
            .connect_with_connector(connector)
            .await
            .unwrap();
        let mut client = spfs_proto::v1::vfs_client::VfsClient::new(channel)
            .max_encoding_message_size(usize::MAX);
        let request = spfs_proto::v1::MountRequest {
            root_pid: std::process::id(),
            env_spec: "/".repeat(5 << 20),
            ..Default::default()
        };
        client.mount(request).await.unwrap_err()
    });
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    assert_mentions(refused.message(), &["too large"]);
    service.assert_serving();
}

/// Lazily unmounts a path when dropped, so a failed test leaves no stale mount behind.
struct UnmountOnDrop(std::path::PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_layer_directory_the_service_cannot_read_is_skipped() {
    let service = Healthy::start();
    // A directory that even root cannot read: a FUSE mount whose server was killed answers
    // every request with ENOTCONN (ECONNABORTED or ECANCELED if it served through io_uring).
    let layer = service.env.path().join("layer2");
    let broken = layer.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(layer.join("fine"), "fine\n").unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_spfs-fuse"))
        .arg("service")
        .arg("--mountpoint")
        .arg(&broken)
        .arg("--socket")
        .arg(service.env.path().join("broken.sock"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _cleanup = UnmountOnDrop(broken.clone());
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(broken.to_str().unwrap())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !mounted() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never mounted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let err = std::fs::read_dir(&broken).unwrap_err();
    assert_dead_mount(&err, "the killed server's mount");

    let out = service.env.run(&[
        "run",
        layer.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "ls -A \"$SPFS_ROOT\"; cat \"$SPFS_ROOT/fine\"",
    ]);
    assert_eq!(ok(&out), "fine\nfine\n");
    service.assert_serving();
    let log = std::fs::read_to_string(service.env.path().join("service.stderr")).unwrap();
    assert!(
        log.contains("broken"),
        "no log line names the skipped entry:\n{log}"
    );
}
