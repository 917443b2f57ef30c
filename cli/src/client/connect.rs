//! Reaching the service: the endpoint, the connection, deadlines on every call, and starting a
//! service when none answers.
//!
//! A connection is made by hand (a `UnixStream` or `TcpStream`) and then handed to tonic, so
//! "nobody is there" (no socket file, connection refused) is told apart from every other failure
//! without digging through transport errors. Only that case is retried, and only after this
//! client started a service itself; an error status from the service is never retried.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use spfs_probe::Backend;
use spfs_probe::socket::{answers, log_path, prepare_socket_dir};
use spfs_proto::v1::vfs_client::VfsClient;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Response, Status};

use super::{AutoStartArgs, EndpointArgs};
use crate::endpoint::absolute;

/// A client of the `Vfs` service.
pub(crate) type Client = VfsClient<Channel>;

/// The deadline of a `Mount` call (registration can take a while on a busy host).
pub(crate) const MOUNT_DEADLINE: Duration = Duration::from_secs(30);
/// The deadline of every other call.
pub(crate) const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// How long connecting (including the HTTP/2 handshake) may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// How long to wait for a service this client started to answer.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// The first and the longest pause between connection attempts while a service starts.
const BACKOFF_FIRST: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// A service log bigger than this is moved to `<log>.old` before a new service is started.
const LOG_ROTATE_BYTES: u64 = 1 << 20;
/// How many lines of a dead service's log an error shows.
const LOG_TAIL_LINES: usize = 20;

/// Where the service is.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A Unix socket (absolute path).
    Unix(PathBuf),
    /// A TCP address (`host:port`).
    Tcp(String),
}

impl Target {
    /// The endpoint the arguments name: `--connect` wins over `--socket` / `SPFS_FUSE_SOCKET`;
    /// with neither, the client's own socket or the system service's
    /// ([`SocketArgs::client_path`](crate::endpoint::SocketArgs::client_path)).
    pub(crate) fn from_args(args: &EndpointArgs) -> anyhow::Result<Target> {
        match &args.connect {
            Some(addr) => Ok(Target::Tcp(addr.clone())),
            None => Ok(Target::Unix(args.socket.client_path()?)),
        }
    }

    /// Whether something accepts connections there.
    pub(crate) fn answers(&self) -> bool {
        match self {
            Target::Unix(path) => answers(path),
            Target::Tcp(addr) => std::net::TcpStream::connect(addr).is_ok(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "{}", path.display()),
            Target::Tcp(addr) => write!(f, "tcp {addr}"),
        }
    }
}

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Nothing is there: no socket file, or nothing accepts on it.
    #[error("no spfs-fuse service answers at {target} ({err}); start one with `spfs-fuse service`")]
    Absent {
        /// The endpoint.
        target: String,
        /// What the connection attempt said.
        err: io::Error,
    },
    /// Something is there, but the connection failed.
    #[error("cannot connect to the spfs-fuse service at {target}: {err:#}")]
    Failed {
        /// The endpoint.
        target: String,
        /// What failed.
        err: anyhow::Error,
    },
}

/// Connects to the service at `target`.
pub(crate) async fn connect(target: &Target) -> Result<Client, ConnectError> {
    let failed = |err: anyhow::Error| ConnectError::Failed {
        target: target.to_string(),
        err,
    };
    let refused = |err: io::Error| match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ConnectError::Absent {
            target: target.to_string(),
            err,
        },
        _ => failed(err.into()),
    };
    let channel = match target {
        Target::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(refused)?;
            over(stream).await
        }
        Target::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map_err(refused)?;
            over(stream).await
        }
    };
    Ok(VfsClient::new(channel.map_err(failed)?))
}

/// A channel over an already connected stream. The channel cannot reconnect: a client command
/// is short-lived, and a service that went away is an error to report, not to hide.
async fn over<S>(stream: S) -> anyhow::Result<Channel>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let slot = Arc::new(Mutex::new(Some(stream)));
    let connector = tower::service_fn(move |_: Uri| {
        let stream = slot.lock().ok().and_then(|mut slot| slot.take());
        async move {
            stream.map(TokioIo::new).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the connection to the service was closed",
                )
            })
        }
    });
    // The authority is never resolved: the connector above is the only way out.
    let endpoint =
        Endpoint::from_static("http://spfs-fuse.localhost").connect_timeout(CONNECT_DEADLINE);
    let connecting = endpoint.connect_with_connector(connector);
    match tokio::time::timeout(CONNECT_DEADLINE, connecting).await {
        Ok(channel) => Ok(channel?),
        Err(_) => bail!(
            "it accepted the connection but did not answer within {} s",
            CONNECT_DEADLINE.as_secs()
        ),
    }
}

/// The backend that the service on `socket` reports, or `None` when none answers in time.
pub(crate) fn backend_of(socket: &Path) -> Option<Backend> {
    let target = Target::Unix(socket.to_owned());
    let status = super::block_on(async {
        let mut client = connect(&target).await?;
        call(
            CALL_DEADLINE,
            client.status(request(spfs_proto::v1::StatusRequest {}, CALL_DEADLINE)),
        )
        .await
    });
    status.ok()?.backend.parse().ok()
}

/// An error status the service answered with, as the client reports it: a short word for the
/// kind, then the service's own message, verbatim.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", kind(*code))]
pub(crate) struct Refusal {
    /// The gRPC code.
    pub(crate) code: Code,
    /// The service's message.
    pub(crate) message: String,
}

impl From<Status> for Refusal {
    fn from(status: Status) -> Self {
        let message = if status.message().is_empty() {
            status.code().description().to_owned()
        } else {
            status.message().to_owned()
        };
        Refusal {
            code: status.code(),
            message,
        }
    }
}

/// The word the client puts before the service's message, by code (the reverse of the
/// service's table from host errors to codes, plus what the transport itself can answer).
fn kind(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "invalid argument",
        Code::AlreadyExists => "already exists",
        Code::NotFound => "not found",
        Code::FailedPrecondition => "busy",
        Code::PermissionDenied => "permission denied",
        Code::Internal => "service error",
        Code::Unavailable => "service unavailable",
        Code::DeadlineExceeded => "timed out",
        Code::Cancelled => "cancelled",
        Code::ResourceExhausted => "too large",
        Code::Unimplemented => "not supported by this service",
        Code::Unauthenticated
        | Code::Ok
        | Code::Unknown
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => "error",
    }
}

/// A request that carries `deadline` to the service too.
pub(crate) fn request<T>(message: T, deadline: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(deadline);
    request
}

/// Awaits a call for at most `deadline`; an error status becomes a [`Refusal`] that
/// keeps the service's message.
pub(crate) async fn call<T>(
    deadline: Duration,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Refusal::from(status).into()),
        Err(_) => bail!(
            "the spfs-fuse service did not answer within {} s",
            deadline.as_secs()
        ),
    }
}

/// Connects to the service at `target`; if nothing answers on a Unix socket, starts a service
/// on it and waits until it answers.
pub(crate) async fn connect_or_start(
    target: &Target,
    auto: &AutoStartArgs,
) -> anyhow::Result<Client> {
    match (connect(target).await, target) {
        (Ok(client), _) => Ok(client),
        (Err(ConnectError::Absent { .. }), Target::Unix(socket)) => {
            start_service(target, socket, auto).await
        }
        (Err(err), _) => Err(err.into()),
    }
}

/// Starts `spfs-fuse service` on `socket`, detached and logging next to the socket, then
/// connects with a capped backoff for up to [`START_DEADLINE`].
async fn start_service(
    target: &Target,
    socket: &Path,
    auto: &AutoStartArgs,
) -> anyhow::Result<Client> {
    prepare_socket_dir(socket)?;
    let log = log_path(socket);
    let (mut child, log_start) = spawn_service(socket, &log, auto)?;
    eprintln!(
        "spfs-fuse: started a service (pid {}) on {}; its log: {}",
        child.id(),
        socket.display(),
        log.display()
    );
    let deadline = Instant::now() + START_DEADLINE;
    let mut pause = BACKOFF_FIRST;
    loop {
        match connect(target).await {
            Ok(client) => return Ok(client),
            Err(ConnectError::Absent { .. }) => {}
            Err(err) => return Err(err.into()),
        }
        if let Some(status) = child
            .try_wait()
            .context("cannot check the started service")?
        {
            // It may have stepped aside for a service that another client started at the
            // same moment: that one answers now.
            if let Ok(client) = connect(target).await {
                return Ok(client);
            }
            bail!(
                "the spfs-fuse service this command started (pid {}) exited ({status}) before \
                 answering on {}{}\nits log: {}",
                child.id(),
                socket.display(),
                log_tail(&log, log_start),
                log.display()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "the spfs-fuse service this command started (pid {}) is running but did not \
                 answer on {} within {} s{}\nits log: {}",
                child.id(),
                socket.display(),
                START_DEADLINE.as_secs(),
                log_tail(&log, log_start),
                log.display()
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(BACKOFF_MAX);
    }
}

/// Spawns the service: this executable, `service --socket <socket>` plus the passthrough
/// options, in a new session (no terminal, so it outlives the shell), stdin from /dev/null,
/// stdout and stderr appended to `log`, working directory `/`. Returns the child and where this
/// start's part of the log begins.
fn spawn_service(socket: &Path, log: &Path, auto: &AutoStartArgs) -> anyhow::Result<(Child, u64)> {
    if fs::metadata(log).is_ok_and(|meta| meta.len() > LOG_ROTATE_BYTES) {
        let mut old = log.as_os_str().to_owned();
        old.push(".old");
        fs::rename(log, &old)
            .with_context(|| format!("cannot rotate the service log {}", log.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("cannot open the service log {}", log.display()))?;
    let start = file.seek(SeekFrom::End(0)).unwrap_or(0);
    writeln!(
        file,
        "--- spfs-fuse service started by pid {} ---",
        std::process::id()
    )
    .with_context(|| format!("cannot write to {}", log.display()))?;

    let exe = std::env::current_exe().context("cannot find the spfs-fuse executable")?;
    let mut command = Command::new(&exe);
    command.arg("service").arg("--socket").arg(socket);
    if let Some(mountpoint) = &auto.mountpoint {
        command.arg("--mountpoint").arg(absolute(mountpoint)?);
    }
    if let Some(backend) = auto.backend {
        command.arg("--backend").arg(backend.as_str());
    }
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone().context("cannot share the log file")?)
        .stderr(file)
        .current_dir("/");
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which
    // is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {} service", exe.display()))?;
    Ok((child, start))
}

/// The last lines the service wrote to `log` since `start`, indented, or "" if none.
fn log_tail(log: &Path, start: u64) -> String {
    let mut text = String::new();
    let read = File::open(log).and_then(|mut file| {
        file.seek(SeekFrom::Start(start))?;
        file.read_to_string(&mut text)
    });
    if read.is_err() {
        return String::new();
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("--- spfs-fuse service started"))
        .collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        return String::new();
    }
    format!(":\n    {}", tail.join("\n    "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_the_services_text_after_a_word_for_its_code() {
        let refusal = Refusal::from(Status::new(
            Code::AlreadyExists,
            "a runtime is already registered for root process 42",
        ));
        assert_eq!(
            refusal.to_string(),
            "already exists: a runtime is already registered for root process 42"
        );
        for (code, word) in [
            (Code::InvalidArgument, "invalid argument"),
            (Code::NotFound, "not found"),
            (Code::FailedPrecondition, "busy"),
            (Code::PermissionDenied, "permission denied"),
            (Code::Internal, "service error"),
        ] {
            let refusal = Refusal::from(Status::new(code, "boom"));
            assert_eq!(refusal.to_string(), format!("{word}: boom"));
        }
        assert_eq!(
            Refusal::from(Status::new(Code::NotFound, "")).to_string(),
            "not found: Some requested entity was not found"
        );
    }
}
