//! An in-process server for simulations: it speaks as much RESP as this
//! crate's standalone connections use (`HELLO 3 AUTH`, `AUTH`, `PING`; any
//! other command is answered `OK`), over in-memory streams instead of TCP and
//! TLS, so that thousands of real pools or shared handles run in one test
//! with tokio's paused clock. It records when each authentication arrived,
//! counts the live connections of each tag, and drops every connection on
//! demand (a failover, as a fleet sees it).
//!
//! It checks no token: it stands in for the network and the server's
//! timing, not for ElastiCache's verification (the local stack does that).
//! It answers one command at a time per connection, each `latency` after
//! the previous, and answers `OK` to everything but `HELLO` and `PING`: it is
//! for connection set-up and plain commands, not for subscriptions, blocking
//! commands or `INFO`. Cluster mode cannot use it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::monotonic_now;
use crate::lock::lock;

/// Opens in-memory connections to a [`FakeServer`], in place of TCP and
/// TLS: give it to a builder's `transport` (feature `test-util`).
#[derive(Clone)]
pub struct Transport {
    server: FakeServer,
    tag: u64,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A new connection to the server: the client's end of the stream.
    pub(crate) fn connect(&self) -> DuplexStream {
        self.server.accept(self.tag)
    }
}

/// An in-process RESP server over in-memory streams (see the module
/// documentation).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use elasticache_iam::test_util::FakeServer;
///
/// let server = FakeServer::new(Duration::from_millis(1));
/// let transport = server.transport(7); // connections tagged 7
/// # let _ = transport;
/// assert_eq!(server.live(7), 0);
/// assert!(server.auths().is_empty());
/// # }
/// ```
#[derive(Clone)]
pub struct FakeServer {
    inner: Arc<Inner>,
}

struct Inner {
    /// Each reply is written this long after its command arrived.
    latency: Duration,
    started: Instant,
    state: Mutex<State>,
    /// Bumped to drop every connection.
    drops: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// When each authentication arrived, since the server started.
    auths: Vec<Duration>,
    /// Authenticated connections still open, by tag.
    live: HashMap<u64, usize>,
}

impl fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeServer")
            .field("latency", &self.inner.latency)
            .finish_non_exhaustive()
    }
}

impl FakeServer {
    /// A server that answers each command `latency` after it is read (the
    /// round trip a simulated connection set-up pays per step; a
    /// connection's commands are answered one after another).
    pub fn new(latency: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                latency,
                started: monotonic_now(),
                state: Mutex::new(State::default()),
                drops: watch::Sender::new(0),
            }),
        }
    }

    /// Connections to this server, counted under `tag` (a simulated
    /// process, say).
    pub fn transport(&self, tag: u64) -> Transport {
        Transport {
            server: self.clone(),
            tag,
        }
    }

    /// When each authentication (`HELLO ... AUTH` or `AUTH`) arrived, as the
    /// time since the server was made, in order.
    pub fn auths(&self) -> Vec<Duration> {
        lock(&self.inner.state).auths.clone()
    }

    /// The connections tagged `tag` that authenticated and are still open.
    pub fn live(&self, tag: u64) -> usize {
        lock(&self.inner.state).live.get(&tag).copied().unwrap_or(0)
    }

    /// The time since the server was made.
    pub fn elapsed(&self) -> Duration {
        monotonic_now().saturating_duration_since(self.inner.started)
    }

    /// Closes every open connection at once.
    pub fn drop_all(&self) {
        self.inner.drops.send_modify(|n| *n += 1);
    }

    fn accept(&self, tag: u64) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let this = self.clone();
        let mut drops = self.inner.drops.subscribe();
        drops.mark_unchanged();
        tokio::spawn(async move {
            let mut authenticated = false;
            tokio::select! {
                () = this.serve(server, tag, &mut authenticated) => {}
                _ = drops.changed() => {}
            }
            if authenticated && let Some(n) = lock(&this.inner.state).live.get_mut(&tag) {
                *n -= 1;
            }
        });
        client
    }

    /// Answers commands until the client goes away or sends garbage.
    async fn serve(&self, stream: DuplexStream, tag: u64, authenticated: &mut bool) {
        let (read, mut write) = tokio::io::split(stream);
        let mut read = BufReader::new(read);
        while let Some(command) = read_command(&mut read).await {
            let name = command
                .first()
                .map(|w| w.to_ascii_uppercase())
                .unwrap_or_default();
            let auth = (name == b"HELLO"
                && command.iter().any(|w| w.eq_ignore_ascii_case(b"AUTH")))
                || name == b"AUTH";
            if auth {
                let at = self.elapsed();
                let mut state = lock(&self.inner.state);
                state.auths.push(at);
                if !*authenticated {
                    *authenticated = true;
                    *state.live.entry(tag).or_default() += 1;
                }
            }
            let reply: &[u8] = match name.as_slice() {
                b"HELLO" => {
                    b"%3\r\n$6\r\nserver\r\n$6\r\nvalkey\r\n$7\r\nversion\r\n$5\r\n9.0.0\r\n$5\r\nproto\r\n:3\r\n"
                }
                b"PING" => b"+PONG\r\n",
                _ => b"+OK\r\n",
            };
            tokio::time::sleep(self.inner.latency).await;
            if write.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}

/// One command (a RESP array of bulk strings), or `None` at the end of the
/// stream or on anything else.
async fn read_command<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R) -> Option<Vec<Vec<u8>>> {
    let count = read_header(read, b'*').await?;
    let mut words = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_header(read, b'$').await?;
        let mut word = vec![0; len + 2];
        read.read_exact(&mut word).await.ok()?;
        word.truncate(len);
        words.push(word);
    }
    Some(words)
}

/// A `<kind><number>\r\n` line's number.
async fn read_header<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R, kind: u8) -> Option<usize> {
    let mut line = Vec::new();
    read.read_until(b'\n', &mut line).await.ok()?;
    let text = line.strip_prefix(&[kind])?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(text).ok()?.parse().ok()
}
