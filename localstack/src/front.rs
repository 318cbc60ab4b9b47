//! The ElastiCache front: TLS listener and RESP proxy that authenticates every
//! connection as ElastiCache does before passing commands to the upstream.
//!
//! Per connection, the reader task parses client commands, answers the ones the
//! front owns (`AUTH`, `HELLO ... AUTH`, `CLUSTER SLOTS|SHARDS|NODES`,
//! `READONLY`, `READWRITE`, `QUIT`, and everything before authentication) and
//! forwards the rest. A writer task (`writer`) sends replies back in command
//! order, RESP3 pushes as they arrive.

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
use crate::shared::Shared;
use crate::topology::Node;
use crate::verify::{Refusal, verify};
use crate::writer::{Confirmation, Slot, write_replies};

/// Unauthenticated commands tolerated before the connection is closed.
const MAX_UNAUTHENTICATED: u32 = 10;
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NOAUTH: &str = "NOAUTH Authentication required.";

/// What the front does with one command.
enum Action {
    /// Nothing: an empty command (`*0`) has no reply.
    Ignore,
    Reply(Vec<u8>),
    ReplyAndClose(Vec<u8>),
    /// Send these bytes upstream instead of the command (a rewritten `HELLO`).
    Forward(Vec<u8>),
    /// Forward the command as is, its answer read as this slot says
    /// (subscriptions, `RESET`).
    ForwardAs(Slot),
}

/// Serves front number `front` of `shared.fronts` on `listener`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    front: usize,
) {
    let redirects = shared
        .clustered()
        .then(|| Arc::new(shared.addresses.clone()));
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
            let (client_r, client_w) = tokio::io::split(tls);
            let resp2_subscribed = Arc::new(AtomicBool::new(false));
            let writer = tokio::spawn(write_replies(
                client_w,
                slots_rx,
                redirects,
                resp2_subscribed.clone(),
            ));
            let connection = Connection::new(shared.clone(), front, peer, slots, resp2_subscribed);
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
    authenticated: bool,
    /// When the connection is closed unless it re-authenticates first.
    deadline: Option<Instant>,
    in_multi: bool,
    resp3: bool,
    /// Whether the connection is in RESP2 subscribed mode, as the writer
    /// saw the server confirm it.
    resp2_subscribed: Arc<AtomicBool>,
    unauthenticated: u32,
    upstream: Option<tokio::net::tcp::OwnedWriteHalf>,
}

impl Connection {
    fn new(
        shared: Arc<Shared>,
        front: usize,
        peer: SocketAddr,
        slots: mpsc::UnboundedSender<Slot>,
        resp2_subscribed: Arc<AtomicBool>,
    ) -> Self {
        Self {
            shared,
            front,
            peer,
            slots,
            authenticated: false,
            deadline: None,
            in_multi: false,
            resp3: false,
            resp2_subscribed,
            unauthenticated: 0,
            upstream: None,
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
            let _ = self.slots.send(Slot::Close);
            drop(self);
            drop(writer_alive);
            let _ = writer.await;
        }
    }

    /// Handle every complete command in `buf`. `Ok(false)`: close the connection.
    async fn process(&mut self, buf: &mut Vec<u8>) -> Result<bool, ()> {
        let mut consumed = 0;
        let mut batch_from: Option<usize> = None;
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
            let action = if cmd.args.is_empty() {
                Some(Action::Ignore)
            } else {
                self.own_reply(&buf[at..consumed], &cmd).await
            };
            let action = match action {
                None => Err(Slot::Upstream),
                Some(Action::ForwardAs(slot)) => Err(slot),
                Some(action) => Ok(action),
            };
            let action = match action {
                Ok(action) => action,
                Err(slot) => {
                    // Forwarded as is, in one write with its neighbours.
                    batch_from.get_or_insert(at);
                    forwarded += 1;
                    let _ = self.slots.send(slot);
                    continue;
                }
            };
            if let Some(from) = batch_from.take() {
                self.send_upstream(&buf[from..at]).await?;
            }
            match action {
                Action::Ignore => {}
                Action::Reply(reply) => {
                    let _ = self.slots.send(Slot::Local(reply));
                }
                Action::ReplyAndClose(reply) => {
                    let _ = self.slots.send(Slot::Local(reply));
                    keep_open = false;
                    break;
                }
                Action::Forward(bytes) => {
                    let _ = self.slots.send(Slot::Upstream);
                    self.send_upstream(&bytes).await?;
                    forwarded += 1;
                }
                Action::ForwardAs(_) => {} // (passed on above)
            }
        }
        if let Some(from) = batch_from {
            self.send_upstream(&buf[from..consumed]).await?;
        }
        self.shared.stats.commands(self.front, forwarded);
        buf.drain(..consumed);
        Ok(keep_open)
    }

    async fn send_upstream(&mut self, data: &[u8]) -> Result<(), ()> {
        match &mut self.upstream {
            Some(up) => up.write_all(data).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    /// The front's own handling of a command, or `None` to forward it as is.
    async fn own_reply(&mut self, buf: &[u8], cmd: &Command) -> Option<Action> {
        let name = cmd.arg(buf, 0).unwrap_or_default().to_ascii_uppercase();
        match name.as_slice() {
            b"AUTH" | b"HELLO" if self.resp2_subscribed() => {
                // Valkey allows only a few commands in RESP2 subscribed mode.
                let name = String::from_utf8_lossy(&name).to_ascii_lowercase();
                Some(Action::Reply(resp::error(&format!(
                    "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING \
                     / QUIT / RESET are allowed in this context"
                ))))
            }
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
                Some(Action::ForwardAs(Slot::Reset))
            }
            _ if !self.authenticated => {
                Some(self.unauthenticated(Action::Reply(resp::error(NOAUTH))))
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
                Some(Action::Reply(resp::simple("OK")))
            }
            b"CLUSTER" if self.shared.clustered() => self.cluster_topology(buf, cmd).await,
            b"CLUSTER" if self.shared.config.mode == Mode::Serverless => self.cluster(buf, cmd),
            _ => {
                let confirmation = Confirmation::of(&name, cmd.args.len() - 1, self.resp3)?;
                Some(Action::ForwardAs(Slot::Confirmation(confirmation)))
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
        if self.upstream.is_none() && self.connect_upstream().await.is_err() {
            return Action::ReplyAndClose(resp::error("ERR upstream server unavailable"));
        }
        shared.stats.auth_ok(self.front, reauth, signer.as_deref());
        self.authenticated = true;
        self.unauthenticated = 0;
        self.deadline = Some(monotonic_now() + shared.config.max_auth_age);
        match hello {
            Some(forward) => Action::Forward(forward),
            None => Action::Reply(resp::simple("OK")),
        }
    }

    async fn connect_upstream(&mut self) -> Result<(), ()> {
        let stream = TcpStream::connect(self.shared.fronts[self.front].upstream)
            .await
            .map_err(|_| ())?;
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        self.upstream = Some(w);
        let _ = self.slots.send(Slot::UpstreamConnected(r));
        Ok(())
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
        let mut credentials: Option<(&[u8], &[u8])> = None;
        let mut i = 1;
        while i < cmd.args.len() {
            if i > 1 && cmd.arg_is(buf, i, "AUTH") {
                let (Some(user), Some(pass)) = (cmd.arg(buf, i + 1), cmd.arg(buf, i + 2)) else {
                    return Action::Reply(resp::error("ERR Syntax error in HELLO option 'auth'"));
                };
                credentials = Some((user, pass));
                i += 3;
            } else {
                forward.push(cmd.arg(buf, i).unwrap_or_default());
                i += 1;
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
            None => Action::Forward(encoded),
        };
        if matches!(action, Action::Forward(_))
            && let Some(proto) = proto
        {
            self.resp3 = proto == b"3";
        }
        action
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
    /// one shard, slots 0-16383, at the front's address.
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
        } else {
            return None;
        };
        Some(Action::Reply(reply))
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
