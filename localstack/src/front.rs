//! The ElastiCache front: TLS listener and RESP proxy that authenticates every
//! connection as ElastiCache does before passing commands to the upstream.
//!
//! Per connection, the reader task parses client commands, answers the ones the
//! front owns (`AUTH`, `HELLO ... AUTH`, `CLUSTER SLOTS|SHARDS|NODES`,
//! `READONLY`, `READWRITE`, `QUIT`, and everything before authentication) and
//! forwards the rest. A writer task (`writer`) sends replies back in command
//! order, RESP3 pushes as they arrive.
//!
//! A node's front has one upstream connection, to its server. The serverless
//! fronts open one per cluster server they need and route each command
//! (`serverless`, `router`). A new upstream connection is set up as the
//! client's others are (`HELLO 3`, `READONLY`) before its first command.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::clock::monotonic_now;
use crate::cluster;
use crate::config::Mode;
use crate::resp::{self, Command};
use crate::serverless::{Decision, Forward, Routed, Routing};
use crate::shared::Shared;
use crate::topology::{Addresses, Node};
use crate::verify::{Refusal, verify};
use crate::writer::{Chunk, Confirmation, Redirects, Slot, read_upstream, write_replies};

/// Unauthenticated commands tolerated before the connection is closed.
const MAX_UNAUTHENTICATED: u32 = 10;
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NOAUTH: &str = "NOAUTH Authentication required.";
/// Chunks read from upstream that may wait for the writer.
const CHUNKS: usize = 64;

/// What the front does with one command.
enum Action {
    /// Nothing: an empty command (`*0`) has no reply.
    Ignore,
    Reply(Vec<u8>),
    ReplyAndClose(Vec<u8>),
    /// Send these bytes upstream instead of the command (a rewritten
    /// `HELLO`), then the connection speaks RESP3 (`Some(true)`) or RESP2.
    Forward(Vec<u8>, Option<bool>),
    /// Forward the command as is, to where it routes, its answer read as
    /// this says (subscriptions, `RESET`).
    ForwardAs(Expect),
    /// Forward the command as is, as this says (a serverless transaction's
    /// server).
    ForwardHow(Forward),
    /// Send `DISCARD` to this upstream connection, and answer the command
    /// with this (an `EXEC` after a refused command).
    DiscardAndReply(usize, Vec<u8>),
    /// Send the command to every open upstream connection (answers not
    /// passed on), and answer it with this (serverless `READONLY`).
    ToAllAndReply(Vec<u8>),
}

/// What answers a forwarded command.
#[derive(Clone, Copy)]
enum Expect {
    Reply,
    Confirmation(Confirmation),
    Reset,
}

impl Expect {
    fn slot(self, upstream: usize) -> Slot {
        match self {
            Self::Reply => Slot::Upstream(upstream),
            Self::Confirmation(c) => Slot::Confirmation(c, upstream),
            Self::Reset => Slot::Reset(upstream),
        }
    }
}

/// Serves front number `front` of `shared.fronts` on `listener`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    front: usize,
) {
    let redirects = match &shared.router {
        // The serverless endpoint is the only address clients know.
        Some(router) => Redirects {
            addresses: Some(Arc::new(Addresses::new(
                &shared.config.advertised_host,
                (0..router.len()).filter_map(|i| {
                    Some((router.server(i)?.port(), shared.fronts[front].addr.port()))
                }),
            ))),
            router: Some(router.clone()),
        },
        None => Redirects {
            addresses: shared
                .clustered()
                .then(|| Arc::new(shared.addresses.clone())),
            router: None,
        },
    };
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let redirects = redirects.clone();
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
            let Ok(Ok(tls)) = handshake else {
                tracing::debug!(%peer, "TLS handshake failed");
                return;
            };
            shared.stats.connection_opened(front);
            let (slots, slots_rx) = mpsc::unbounded_channel();
            let (chunks, chunks_rx) = mpsc::channel(CHUNKS);
            let (client_r, client_w) = tokio::io::split(tls);
            let resp2_subscribed = Arc::new(AtomicBool::new(false));
            let writer = tokio::spawn(write_replies(
                client_w,
                slots_rx,
                chunks_rx,
                redirects,
                resp2_subscribed.clone(),
            ));
            let connection =
                Connection::new(shared.clone(), front, peer, slots, chunks, resp2_subscribed);
            connection.run(client_r, writer).await;
            shared.stats.connection_closed(front);
        });
    }
}

struct Connection {
    shared: Arc<Shared>,
    /// Which of `shared.fronts` this connection came to.
    front: usize,
    peer: SocketAddr,
    slots: mpsc::UnboundedSender<Slot>,
    /// Where the upstream connections' readers send what they read.
    chunks: mpsc::Sender<Chunk>,
    authenticated: bool,
    /// When the connection is closed unless it re-authenticates first.
    deadline: Option<Instant>,
    in_multi: bool,
    resp3: bool,
    /// Whether the connection is in RESP2 subscribed mode, as the writer
    /// saw the server confirm it.
    resp2_subscribed: Arc<AtomicBool>,
    unauthenticated: u32,
    /// The upstream connections, by server: the node's server (0), or for
    /// the serverless fronts the router's servers.
    upstreams: Vec<Option<Link>>,
    /// The number the next upstream connection gets.
    next_link: usize,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// The serverless fronts' routing.
    routing: Option<Routing>,
}

/// One upstream connection of a client connection.
struct Link {
    /// Its number for the writer (a server's new connection gets a new one).
    id: usize,
    writer: tokio::net::tcp::OwnedWriteHalf,
    /// Set when the server closed it: the server's next command opens
    /// another.
    closed: Arc<AtomicBool>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

impl Connection {
    fn new(
        shared: Arc<Shared>,
        front: usize,
        peer: SocketAddr,
        slots: mpsc::UnboundedSender<Slot>,
        chunks: mpsc::Sender<Chunk>,
        resp2_subscribed: Arc<AtomicBool>,
    ) -> Self {
        let routing = shared
            .router
            .clone()
            .map(|router| Routing::new(router, shared.fronts[front].reader));
        Self {
            shared,
            front,
            peer,
            slots,
            chunks,
            authenticated: false,
            deadline: None,
            in_multi: false,
            resp3: false,
            resp2_subscribed,
            unauthenticated: 0,
            upstreams: Vec::new(),
            next_link: 0,
            readers: Vec::new(),
            routing,
        }
    }

    async fn run<R: AsyncRead + Unpin>(
        mut self,
        mut client: R,
        writer: tokio::task::JoinHandle<()>,
    ) {
        let mut drop_all = self.shared.drop_generation.subscribe();
        let mut drop_front = self.shared.fronts[self.front].drop_generation.subscribe();
        let mut buf = Vec::with_capacity(16 * 1024);
        let mut chunk = vec![0u8; 16 * 1024];
        // A handle on the reply channel just to notice when the writer ends.
        let writer_alive = self.slots.clone();
        let forced = loop {
            let deadline = self.deadline;
            tokio::select! {
                read = client.read(&mut chunk) => {
                    let n = match read {
                        Ok(0) | Err(_) => break false,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    match self.process(&mut buf).await {
                        Ok(true) => {}
                        Ok(false) | Err(()) => break false,
                    }
                }
                () = sleep_until_opt(deadline) => {
                    self.shared.stats.forced_disconnect(self.front);
                    tracing::info!(peer = %self.peer, "closing connection: max auth age reached (the 12-hour rule)");
                    break true;
                }
                _ = drop_all.changed() => {
                    tracing::info!(peer = %self.peer, "closing connection: dropped by fault injection");
                    break true;
                }
                _ = drop_front.changed() => {
                    tracing::info!(peer = %self.peer, "closing connection: its node's connections dropped");
                    break true;
                }
                () = writer_alive.closed() => break false, // the writer ended: upstream or client gone
            }
        };
        if forced {
            writer.abort();
        } else {
            // The writer passes on what is still to come, then closes: the
            // readers stay until it is done (upstream sees the connection's
            // end when the write halves go).
            let _ = self.slots.send(Slot::Close);
            let readers = std::mem::take(&mut self.readers);
            drop(self);
            drop(writer_alive);
            let _ = writer.await;
            for reader in readers {
                reader.abort();
            }
        }
    }

    /// Handle every complete command in `buf`. `Ok(false)`: close the connection.
    async fn process(&mut self, buf: &mut Vec<u8>) -> Result<bool, ()> {
        if let Some(routing) = &self.routing
            && self.authenticated
        {
            routing.router().refresh_if_stale().await;
        }
        let mut consumed = 0;
        // Commands forwarded as they are, written together: where they
        // start in `buf`, their server and its connection's number.
        let mut batch: Option<(usize, usize, usize)> = None;
        let mut forwarded = 0u64;
        let mut keep_open = true;
        loop {
            let cmd = match resp::parse_command(&buf[consumed..]) {
                Ok(Some(cmd)) => cmd,
                Ok(None) => break,
                Err(e) => {
                    let reply = resp::error(&format!("ERR Protocol error: {}", e.0));
                    let _ = self.slots.send(Slot::Local(reply));
                    keep_open = false;
                    break;
                }
            };
            let at = consumed;
            consumed += cmd.len;
            let bytes = &buf[at..consumed];
            // (An ASKING goes with the command after it, whatever that is.)
            let asking = self.routing.as_mut().is_some_and(Routing::take_asking);
            let action = if cmd.args.is_empty() {
                Action::Ignore
            } else {
                self.own_reply(bytes, &cmd, asking)
                    .await
                    .unwrap_or(Action::ForwardAs(Expect::Reply))
            };
            let routed = match action {
                Action::ForwardAs(expect) => self.route(bytes, &cmd, expect, asking),
                Action::ForwardHow(forward) => Ok((forward, Expect::Reply)),
                action => Err(action),
            };
            let (forward, expect) = match routed {
                Ok(forward) => forward,
                Err(action) => {
                    // The batch so far goes first.
                    if let Some((from, upstream, link)) = batch.take() {
                        self.send_batch(upstream, link, &buf[from..at]).await?;
                    }
                    match self.act(action, bytes).await? {
                        Some(sent) => forwarded += sent,
                        None => {
                            keep_open = false;
                            break;
                        }
                    }
                    continue;
                }
            };
            // Forwarded as is, in one write with its neighbours for the same
            // upstream connection (what goes before it goes first).
            let open = self.is_open(forward.upstream);
            if let Some((from, upstream, link)) = batch
                && (upstream != forward.upstream || !forward.prelude.is_empty() || !open)
            {
                self.send_batch(upstream, link, &buf[from..at]).await?;
                batch = None;
            }
            if !open && self.holds_state(forward.upstream) {
                // Its subscriptions or transaction went with it.
                return Err(());
            }
            if !open && self.open(forward.upstream, forward.replica).await.is_err() {
                let in_multi = self.in_multi;
                if let Some(routing) = &mut self.routing {
                    routing.not_sent(in_multi);
                }
                let reply = resp::error("TRYAGAIN the server for this slot is unavailable");
                let _ = self.slots.send(Slot::Local(reply));
                continue;
            }
            let link = self.link(forward.upstream);
            for command in &forward.prelude {
                let _ = self.slots.send(Slot::Discard(link));
                self.send_to(forward.upstream, command).await?;
            }
            if matches!(expect, Expect::Reset) {
                // (Serverless) every connection is reset, one answers.
                self.send_to_the_others(forward.upstream, bytes).await?;
            }
            let _ = self.slots.send(expect.slot(link));
            batch.get_or_insert((at, forward.upstream, link));
            forwarded += 1;
            if let Some(routing) = &mut self.routing {
                routing.commit(&forward);
            }
        }
        if let Some((from, upstream, link)) = batch {
            self.send_batch(upstream, link, &buf[from..consumed])
                .await?;
        }
        self.shared.stats.commands(self.front, forwarded);
        buf.drain(..consumed);
        Ok(keep_open)
    }

    /// Carries out an action that is not a command forwarded as is (`bytes`):
    /// the number of commands sent upstream, or `None` to close.
    async fn act(&mut self, action: Action, bytes: &[u8]) -> Result<Option<u64>, ()> {
        match action {
            Action::Reply(reply) => {
                let _ = self.slots.send(Slot::Local(reply));
            }
            Action::ReplyAndClose(reply) => {
                let _ = self.slots.send(Slot::Local(reply));
                return Ok(None);
            }
            Action::Forward(hello, resp3) => {
                // (A rewritten HELLO: every connection switches, one answers.)
                if self.open_home().await.is_err() {
                    let reply = resp::error("TRYAGAIN the server is unavailable");
                    let _ = self.slots.send(Slot::Local(reply));
                    return Ok(Some(0));
                }
                let home = self.home();
                self.send_to_the_others(home, &hello).await?;
                let _ = self.slots.send(Slot::Upstream(self.link(home)));
                self.send_to(home, &hello).await?;
                if let Some(resp3) = resp3 {
                    self.resp3 = resp3;
                }
                return Ok(Some(1));
            }
            Action::DiscardAndReply(upstream, reply) => {
                // (Nothing to discard where the server closed the connection.)
                let sent = self.is_open(upstream);
                if sent {
                    let discard = resp::array(&[resp::bulk(b"DISCARD")]);
                    let _ = self.slots.send(Slot::Discard(self.link(upstream)));
                    self.send_to(upstream, &discard).await?;
                }
                let _ = self.slots.send(Slot::Local(reply));
                return Ok(Some(u64::from(sent)));
            }
            Action::ToAllAndReply(reply) => {
                self.send_to_the_others(usize::MAX, bytes).await?;
                let _ = self.slots.send(Slot::Local(reply));
            }
            Action::Ignore | Action::ForwardAs(_) | Action::ForwardHow(_) => {}
        }
        Ok(Some(0))
    }

    /// The upstream connection commands without keys go to.
    fn home(&self) -> usize {
        self.routing.as_ref().map_or(0, Routing::home)
    }

    /// Where the command `cmd` in `bytes` goes (serverless: by its key's
    /// slot), or the front's own answer.
    fn route(
        &mut self,
        bytes: &[u8],
        cmd: &Command,
        expect: Expect,
        asking: bool,
    ) -> Result<(Forward, Expect), Action> {
        let in_multi = self.in_multi;
        let open = (0..self.upstreams.len()).find(|&i| self.is_open(i));
        let Some(routing) = &mut self.routing else {
            return Ok((Forward::to(0), expect));
        };
        if matches!(expect, Expect::Reset) {
            // To a connection there is, the others follow.
            return Ok((Forward::to(open.unwrap_or_else(|| routing.home())), expect));
        }
        let args: Vec<&[u8]> = (0..cmd.args.len())
            .filter_map(|i| cmd.arg(bytes, i))
            .collect();
        let name = args
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        let reply = matches!(expect, Expect::Reply);
        match routing.route(bytes, &args, &name, reply, in_multi, asking) {
            Routed::Forward(forward) => Ok((forward, expect)),
            Routed::Reply(reply) => Err(Action::Reply(reply)),
        }
    }

    /// Sends `bytes` to every open upstream connection but `upstream`, each
    /// answer not passed on.
    async fn send_to_the_others(&mut self, upstream: usize, bytes: &[u8]) -> Result<(), ()> {
        for other in 0..self.upstreams.len() {
            if other != upstream && self.is_open(other) {
                let _ = self.slots.send(Slot::Discard(self.link(other)));
                self.send_to(other, bytes).await?;
            }
        }
        Ok(())
    }

    /// Whether the connection to server `upstream` is open: opened, and
    /// (serverless, where a new one may replace it) not closed by the server.
    fn is_open(&self, upstream: usize) -> bool {
        match self.upstreams.get(upstream) {
            Some(Some(link)) => self.routing.is_none() || !link.closed.load(Ordering::Relaxed),
            _ => false,
        }
    }

    /// Whether a connection to server `upstream` that closed had state a new
    /// one would not have (serverless): subscriptions, a transaction.
    fn holds_state(&self, upstream: usize) -> bool {
        self.upstreams.get(upstream).is_some_and(Option::is_some)
            && self
                .routing
                .as_ref()
                .is_some_and(|routing| routing.holds_state_on(upstream))
    }

    /// Writes a batch of commands whose slots name connection `link` of
    /// server `upstream`; if that connection was replaced meanwhile, their
    /// answers cannot come: the client connection closes.
    async fn send_batch(&mut self, upstream: usize, link: usize, data: &[u8]) -> Result<(), ()> {
        if self.link(upstream) != link {
            return Err(());
        }
        self.send_to(upstream, data).await
    }

    /// The writer's number of the connection to server `upstream` (one
    /// that is not open has a number no reply comes from).
    fn link(&self, upstream: usize) -> usize {
        match self.upstreams.get(upstream) {
            Some(Some(link)) => link.id,
            _ => usize::MAX,
        }
    }

    async fn send_to(&mut self, upstream: usize, data: &[u8]) -> Result<(), ()> {
        match self.upstreams.get_mut(upstream) {
            Some(Some(link)) => link.writer.write_all(data).await.map_err(|_| ()),
            _ => Err(()),
        }
    }

    /// Opens upstream connection `upstream`, set up as the others are: the
    /// client's protocol, and `READONLY` on a `replica` (serverless, after
    /// the client's `READONLY` on the replica-read endpoint: on every one).
    async fn open(&mut self, upstream: usize, replica: bool) -> Result<(), ()> {
        let addr = match &self.routing {
            Some(routing) => routing.server(upstream).ok_or(())?,
            None => self.shared.fronts[self.front].upstream,
        };
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| ())?
            .map_err(|_| ())?;
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        if self.upstreams.len() <= upstream {
            self.upstreams.resize_with(upstream + 1, || None);
        }
        self.readers.retain(|reader| !reader.is_finished());
        let (id, closed) = (self.next_link, Arc::new(AtomicBool::new(false)));
        self.next_link += 1;
        self.upstreams[upstream] = Some(Link {
            id,
            writer: w,
            closed: closed.clone(),
        });
        let _ = self.slots.send(Slot::Opened(id));
        self.readers.push(tokio::spawn(read_upstream(
            r,
            id,
            self.chunks.clone(),
            closed,
        )));
        let mut setup = Vec::new();
        if self.resp3 {
            setup.push(resp::array(&[resp::bulk(b"HELLO"), resp::bulk(b"3")]));
        }
        if replica || self.routing.as_ref().is_some_and(Routing::replica_reads) {
            setup.push(resp::array(&[resp::bulk(b"READONLY")]));
        }
        for command in setup {
            let _ = self.slots.send(Slot::Discard(id));
            self.send_to(upstream, &command).await?;
        }
        Ok(())
    }

    /// The front's own handling of a command, or `None` to forward it as is.
    async fn own_reply(&mut self, buf: &[u8], cmd: &Command, asking: bool) -> Option<Action> {
        let name = cmd.arg(buf, 0).unwrap_or_default().to_ascii_uppercase();
        match name.as_slice() {
            b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE"
            | b"SUNSUBSCRIBE" | b"PING" | b"QUIT" | b"RESET" => {}
            _ if self.resp2_subscribed() && self.routing.is_some() => {
                // (Serverless: the other servers would run it.)
                return Some(Action::Reply(resp2_subscribed_refusal(&name)));
            }
            _ => {}
        }
        match name.as_slice() {
            b"AUTH" | b"HELLO" if self.resp2_subscribed() => {
                Some(Action::Reply(resp2_subscribed_refusal(&name)))
            }
            b"HELLO" if self.in_multi && self.routing.is_some() => Some(Action::Reply(
                resp::error("ERR HELLO inside MULTI is not supported by this serverless endpoint"),
            )),
            b"AUTH" | b"HELLO" => {
                let action = if name == b"AUTH" {
                    self.auth(buf, cmd).await
                } else {
                    self.hello(buf, cmd).await
                };
                // A failed AUTH or HELLO counts as an unauthenticated command.
                Some(if self.authenticated {
                    action
                } else {
                    self.unauthenticated(action)
                })
            }
            b"QUIT" => Some(Action::ReplyAndClose(resp::simple("OK"))),
            // Allowed before authentication, as in Valkey.
            b"RESET" if !self.authenticated => Some(Action::Reply(resp::simple("RESET"))),
            b"RESET" => {
                // The server resets its side (MULTI, WATCH, database,
                // subscriptions, protocol); the connection is no longer
                // authenticated, and no 12-hour clock runs.
                self.authenticated = false;
                self.deadline = None;
                self.in_multi = false;
                self.resp3 = false;
                if let Some(routing) = &mut self.routing {
                    routing.reset();
                }
                Some(Action::ForwardAs(Expect::Reset))
            }
            _ if !self.authenticated => {
                Some(self.unauthenticated(Action::Reply(resp::error(NOAUTH))))
            }
            b"MULTI" | b"EXEC" | b"DISCARD" | b"UNWATCH" | b"ASKING" if self.routing.is_some() => {
                let routing = self.routing.as_mut()?;
                Some(
                    match routing.transaction(&name, &mut self.in_multi, asking)? {
                        Decision::Reply(reply) => Action::Reply(reply),
                        Decision::Forward(forward) => Action::ForwardHow(forward),
                        Decision::DiscardAndReply(upstream, reply) => {
                            Action::DiscardAndReply(upstream, reply)
                        }
                    },
                )
            }
            b"MULTI" => {
                self.in_multi = true;
                None
            }
            b"EXEC" | b"DISCARD" => {
                self.in_multi = false;
                None
            }
            b"READONLY" | b"READWRITE" if self.shared.config.mode == Mode::Serverless => {
                let ok = resp::simple("OK");
                let routing = self.routing.as_mut()?;
                let servers_follow = routing.set_readonly(name == b"READONLY");
                Some(if self.in_multi {
                    // (Queued, as the server queues it.)
                    Action::ForwardAs(Expect::Reply)
                } else if servers_follow {
                    Action::ToAllAndReply(ok)
                } else {
                    Action::Reply(ok)
                })
            }
            b"CLUSTER" if self.shared.clustered() => self.cluster_topology(buf, cmd).await,
            b"CLUSTER" if self.shared.config.mode == Mode::Serverless => self.cluster(buf, cmd),
            _ => {
                let confirmation = Confirmation::of(&name, cmd.args.len() - 1, self.resp3)?;
                Some(Action::ForwardAs(Expect::Confirmation(confirmation)))
            }
        }
    }

    /// Whether the connection is in RESP2 subscribed mode.
    fn resp2_subscribed(&self) -> bool {
        self.resp2_subscribed.load(Ordering::Relaxed)
    }

    /// `action` for one more unauthenticated command: the connection closes
    /// (after the reply) once there were too many.
    fn unauthenticated(&mut self, action: Action) -> Action {
        self.unauthenticated += 1;
        match action {
            Action::Reply(reply) if self.unauthenticated >= MAX_UNAUTHENTICATED => {
                Action::ReplyAndClose(reply)
            }
            action => action,
        }
    }

    /// `AUTH [user] token`.
    async fn auth(&mut self, buf: &[u8], cmd: &Command) -> Action {
        let (user, token) = match cmd.args.len() {
            2 => (None, cmd.arg(buf, 1)),
            3 => (cmd.arg(buf, 1), cmd.arg(buf, 2)),
            _ => {
                return Action::Reply(resp::error(
                    "ERR wrong number of arguments for 'auth' command",
                ));
            }
        };
        let user = user.map(|u| String::from_utf8_lossy(u).into_owned());
        let token = String::from_utf8_lossy(token.unwrap_or_default()).into_owned();
        self.authenticate(user.as_deref(), &token, None).await
    }

    async fn authenticate(
        &mut self,
        user: Option<&str>,
        token: &str,
        hello: Option<Vec<u8>>,
    ) -> Action {
        let shared = self.shared.clone();
        let reauth = self.authenticated;
        if reauth && self.in_multi {
            shared.stats.auth_failed(self.front, "reauth_in_multi");
            return Action::Reply(resp::error(
                "ERR AUTH is not allowed inside MULTI (IAM re-authentication)",
            ));
        }
        if let Some(reply) = shared.faults.auth_throttled(reauth) {
            shared.stats.auth_failed(self.front, "throttled");
            return Action::Reply(resp::error(reply));
        }
        let outcome = if shared.faults.take_rejection() {
            Err(Refusal::FaultInjected)
        } else if let Some(password) = shared
            .config
            .password_user
            .as_ref()
            .filter(|(u, _)| Some(u.as_str()) == user)
        {
            if password.1 == token {
                Ok(None)
            } else {
                Err(Refusal::SignatureMismatch)
            }
        } else {
            verify(
                &shared.config.expect,
                &shared.registry,
                user,
                token,
                shared.clock.now(),
            )
            .map(|verified| Some(verified.access_key_id))
        };
        let signer = match outcome {
            Ok(signer) => signer,
            Err(refusal) => {
                shared.stats.auth_failed(self.front, refusal.as_str());
                tracing::info!(peer = %self.peer, reason = refusal.as_str(), "authentication refused");
                return Action::Reply(resp::error(WRONGPASS));
            }
        };
        // (Serverless: the others open as commands need them.)
        if self.open_home().await.is_err() {
            return Action::ReplyAndClose(resp::error("ERR upstream server unavailable"));
        }
        shared.stats.auth_ok(self.front, reauth, signer.as_deref());
        self.authenticated = true;
        self.unauthenticated = 0;
        self.deadline = Some(monotonic_now() + shared.config.max_auth_age);
        match hello {
            Some(forward) => Action::Forward(forward, None),
            None => Action::Reply(resp::simple("OK")),
        }
    }

    /// Opens the upstream connection commands without keys go to, if it is
    /// not open (serverless: once more after reading the slot map again, if
    /// that server is down).
    async fn open_home(&mut self) -> Result<(), ()> {
        let home = self.home();
        if self.is_open(home) || self.open(home, false).await.is_ok() {
            return Ok(());
        }
        let Some(routing) = &self.routing else {
            return Err(());
        };
        routing.router().mark_stale();
        routing.router().refresh_if_stale().await;
        let home = self.home();
        if self.is_open(home) {
            return Ok(());
        }
        self.open(home, false).await
    }

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`: authenticate here,
    /// forward the rest (protocol switch, SETNAME) so the reply is the server's.
    async fn hello(&mut self, buf: &[u8], cmd: &Command) -> Action {
        // The protocol version is checked first, before any authentication.
        if let Some(proto) = cmd.arg(buf, 1) {
            // As Valkey's string2ll: no plus sign, no leading zeros.
            let canonical = std::str::from_utf8(proto)
                .ok()
                .and_then(|p| p.parse::<i64>().ok().filter(|n| n.to_string() == p));
            match canonical {
                Some(2 | 3) => {}
                Some(_) => {
                    return Action::Reply(resp::error("NOPROTO unsupported protocol version"));
                }
                None => {
                    return Action::Reply(resp::error(
                        "ERR Protocol version is not an integer or out of range",
                    ));
                }
            }
        }
        let mut forward: Vec<&[u8]> = vec![b"HELLO"];
        forward.extend(cmd.arg(buf, 1));
        let mut credentials: Option<(&[u8], &[u8])> = None;
        // Every option is read (and a bad one refused) before authentication,
        // as Valkey does.
        let mut i = 2;
        while i < cmd.args.len() {
            let option = cmd.arg(buf, i).unwrap_or_default();
            let more = cmd.args.len() - i - 1;
            if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                credentials = cmd.arg(buf, i + 1).zip(cmd.arg(buf, i + 2));
                i += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                let name = cmd.arg(buf, i + 1).unwrap_or_default();
                if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                    return Action::Reply(resp::error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    ));
                }
                forward.extend([option, name]);
                i += 2;
            } else {
                return Action::Reply(resp::error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(option)
                )));
            }
        }
        let proto = cmd.arg(buf, 1);
        let encoded = resp::array(&forward.iter().map(|a| resp::bulk(a)).collect::<Vec<_>>());
        let action = match credentials {
            Some((user, pass)) => {
                let user = String::from_utf8_lossy(user).into_owned();
                let pass = String::from_utf8_lossy(pass).into_owned();
                self.authenticate(Some(&user), &pass, Some(encoded)).await
            }
            None if !self.authenticated => {
                return Action::Reply(resp::error(
                    "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                     the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                     client and select the RESP protocol version at the same time",
                ));
            }
            None => Action::Forward(encoded, None),
        };
        match action {
            // (The protocol changes once the HELLO is sent.)
            Action::Forward(bytes, _) => Action::Forward(bytes, proto.map(|p| p == b"3")),
            action => action,
        }
    }

    /// `CLUSTER SLOTS | SHARDS | NODES | REPLICAS | SLAVES` in cluster modes:
    /// the server's view, with the fronts' addresses.
    async fn cluster_topology(&self, buf: &[u8], cmd: &Command) -> Option<Action> {
        let sub = cmd.arg(buf, 1).unwrap_or_default().to_ascii_uppercase();
        if !matches!(
            sub.as_slice(),
            b"SLOTS" | b"SHARDS" | b"NODES" | b"REPLICAS" | b"SLAVES"
        ) {
            return None;
        }
        let upstream = self.shared.fronts[self.front].upstream;
        let text = match cluster::call_text(upstream, &["CLUSTER", "NODES"]).await {
            Ok(text) => text,
            Err(e) => {
                // (The reason names the server's address: logged, not shown.)
                tracing::info!(peer = %self.peer, error = %e, "cluster topology unavailable");
                return Some(Action::Reply(resp::error(
                    "CLUSTERDOWN The node cannot read the cluster's topology now",
                )));
            }
        };
        let fronts = &self.shared.addresses;
        let nodes = Node::parse_all(&text);
        let reply = match sub.as_slice() {
            b"SLOTS" => fronts.slots(&nodes),
            b"SHARDS" => fronts.shards(&nodes, self.resp3),
            b"NODES" => resp::bulk(fronts.nodes_text(&text).as_bytes()),
            _ => {
                let id = String::from_utf8_lossy(cmd.arg(buf, 2).unwrap_or_default());
                if !nodes.iter().any(|n| n.id == id) {
                    resp::error(&format!("ERR Unknown node {id}"))
                } else {
                    let lines: Vec<Vec<u8>> = fronts
                        .nodes_text(&text)
                        .lines()
                        .filter(|line| line.split(' ').nth(3) == Some(&*id))
                        .map(|line| resp::bulk(line.as_bytes()))
                        .collect();
                    resp::array(&lines)
                }
            }
        };
        Some(Action::Reply(reply))
    }

    /// `CLUSTER SLOTS | SHARDS | NODES | INFO | MYID` for the serverless topology:
    /// one shard, slots 0-16383, at the front's address; `KEYSLOT` is the
    /// servers'; the rest is refused.
    fn cluster(&self, buf: &[u8], cmd: &Command) -> Option<Action> {
        let host = self.shared.config.advertised_host.as_bytes();
        let port = i64::from(self.shared.fronts[self.front].addr.port());
        let id = b"0000000000000000000000000000000000000001";
        let reply = if cmd.arg_is(buf, 1, "SLOTS") {
            let node = resp::array(&[resp::bulk(host), resp::int(port), resp::bulk(id)]);
            resp::array(&[resp::array(&[resp::int(0), resp::int(16383), node])])
        } else if cmd.arg_is(buf, 1, "SHARDS") {
            let node = resp::map(
                &[
                    (resp::bulk(b"id"), resp::bulk(id)),
                    (resp::bulk(b"endpoint"), resp::bulk(host)),
                    (resp::bulk(b"ip"), resp::bulk(host)),
                    (resp::bulk(b"port"), resp::int(port)),
                    (resp::bulk(b"role"), resp::bulk(b"master")),
                    (resp::bulk(b"replication-offset"), resp::int(0)),
                    (resp::bulk(b"health"), resp::bulk(b"online")),
                ],
                self.resp3,
            );
            let shard = resp::map(
                &[
                    (
                        resp::bulk(b"slots"),
                        resp::array(&[resp::int(0), resp::int(16383)]),
                    ),
                    (resp::bulk(b"nodes"), resp::array(&[node])),
                ],
                self.resp3,
            );
            resp::array(&[shard])
        } else if cmd.arg_is(buf, 1, "NODES") {
            let line = format!(
                "{} {}:{port}@{port} myself,master - 0 0 1 connected 0-16383\n",
                std::str::from_utf8(id).unwrap_or_default(),
                String::from_utf8_lossy(host)
            );
            resp::bulk(line.as_bytes())
        } else if cmd.arg_is(buf, 1, "INFO") {
            resp::bulk(b"cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_known_nodes:1\r\ncluster_size:1\r\n")
        } else if cmd.arg_is(buf, 1, "MYID") {
            resp::bulk(id)
        } else if cmd.arg_is(buf, 1, "KEYSLOT") {
            return None; // (any server knows)
        } else {
            // Not the servers' own cluster behind the endpoint.
            let sub = String::from_utf8_lossy(cmd.arg(buf, 1).unwrap_or_default()).to_uppercase();
            resp::error(&format!(
                "ERR CLUSTER {sub} is not available on a serverless cache"
            ))
        };
        Some(Action::Reply(reply))
    }
}

/// Valkey's refusal of command `name` in RESP2 subscribed mode.
fn resp2_subscribed_refusal(name: &[u8]) -> Vec<u8> {
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    resp::error(&format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
         RESET are allowed in this context"
    ))
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
