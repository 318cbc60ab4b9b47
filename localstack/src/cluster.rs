//! A real Valkey cluster upstream: `shards` × (1 + `replicas`)
//! `valkey-server` processes with `cluster-enabled yes`, put together by the
//! stack itself, as `valkey-cli --cluster create` would, with no other tool:
//! every primary gets an even share of the 16,384 slots
//! (`CLUSTER ADDSLOTSRANGE`), the nodes meet (`CLUSTER MEET`), each replica
//! follows its shard's primary (`CLUSTER REPLICATE`), and the cluster is
//! ready once every node reports `cluster_state:ok` and every replica's link
//! to its primary is up.
//!
//! The nodes listen on loopback ports of their own, with their cluster bus on
//! another free port (the default, port + 10,000, may not exist). Failover
//! settings are short, as a stand-in wants: a node is failed after 2 s without
//! an answer, and a replica may always take over.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::clock::monotonic_now;
use crate::resp;
use crate::topology;
use crate::upstream::{Engine, Upstream, UpstreamError, find_binary, free_ports};

/// How many slots a cluster has.
pub const SLOTS: u16 = 16_384;

/// How long a cluster may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(15);

/// How long one set-up command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Slots marked and moved together in a migration.
const MIGRATION_BATCH: usize = 100;

/// How often a forming cluster is looked at.
const POLL: Duration = Duration::from_millis(20);

/// A running cluster of real servers.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    /// One failover or slot migration at a time (a node's server can be
    /// killed or restarted meanwhile).
    changing: tokio::sync::Mutex<()>,
}

/// One server of a [`Cluster`].
#[derive(Debug)]
struct Node {
    /// Its process (locked while stopped or started).
    upstream: tokio::sync::Mutex<Upstream>,
    addr: SocketAddr,
    bus_port: u16,
    id: String,
    shard: usize,
    primary: bool,
}

/// What a client may know of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// The server's cluster node id.
    pub id: String,
    /// Its shard, from 0.
    pub shard: usize,
    /// Whether it started as its shard's primary.
    pub primary: bool,
    /// The slots its shard started with, inclusive.
    pub slots: (u16, u16),
}

impl Cluster {
    /// Starts `shards` × (1 + `replicas`) servers of `engine` (the binary at
    /// `binary`, else on `PATH`) and forms the cluster; returns once it is
    /// ready.
    pub async fn start(
        engine: Engine,
        binary: Option<&Path>,
        shards: usize,
        replicas: usize,
    ) -> Result<Self, UpstreamError> {
        if shards == 0 || usize::from(SLOTS) < shards {
            return Err(UpstreamError(format!(
                "a cluster needs 1 to {SLOTS} shards, not {shards}"
            )));
        }
        let binary = find_binary(engine, binary)?;
        let count = shards * (1 + replicas);
        // Every port at once, so that no two are the same.
        let ports = free_ports(2 * count)?;
        let mut starting = JoinSet::new();
        for (index, pair) in ports.chunks_exact(2).enumerate() {
            let (binary, port, bus_port) = (binary.clone(), pair[0], pair[1]);
            starting.spawn(async move {
                let options = cluster_options(port, bus_port);
                let upstream = Upstream::start_at(binary, port, options).await?;
                Ok::<_, UpstreamError>((index, upstream, bus_port))
            });
        }
        let mut started = Vec::new();
        while let Some(result) = starting.join_next().await {
            let (index, upstream, bus_port) = result
                .map_err(|e| UpstreamError(format!("starting a cluster node failed: {e}")))??;
            started.push((index, upstream, bus_port));
        }
        started.sort_by_key(|(index, _, _)| *index);
        let mut nodes = Vec::new();
        for (index, upstream, bus_port) in started {
            let id = text(call(upstream.addr(), &["CLUSTER", "MYID"]).await?)?;
            nodes.push(Node {
                addr: upstream.addr(),
                upstream: tokio::sync::Mutex::new(upstream),
                bus_port,
                id,
                // Primaries first: node i < shards is shard i's primary.
                shard: index % shards,
                primary: index < shards,
            });
        }
        let cluster = Self {
            nodes,
            changing: tokio::sync::Mutex::new(()),
        };
        cluster.form(shards).await?;
        Ok(cluster)
    }

    /// Every node, primaries first (in shard order), then the replicas.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        let shards = self.nodes.iter().filter(|n| n.primary).count();
        self.nodes
            .iter()
            .map(|node| ClusterNode {
                addr: node.addr,
                id: node.id.clone(),
                shard: node.shard,
                primary: node.primary,
                slots: slot_range(node.shard, shards),
            })
            .collect()
    }

    /// Slots, meeting, replicas; then waits until the cluster is ready.
    async fn form(&self, shards: usize) -> Result<(), UpstreamError> {
        for node in self.nodes.iter().filter(|n| n.primary) {
            let (first, last) = slot_range(node.shard, shards);
            ok(call(
                node.addr,
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &first.to_string(),
                    &last.to_string(),
                ],
            )
            .await?)?;
        }
        let first = &self.nodes[0];
        for node in &self.nodes[1..] {
            let addr = node.addr;
            ok(call(
                first.addr,
                &[
                    "CLUSTER",
                    "MEET",
                    &addr.ip().to_string(),
                    &addr.port().to_string(),
                    &node.bus_port.to_string(),
                ],
            )
            .await?)?;
        }
        let deadline = monotonic_now() + FORM_TIMEOUT;
        // A replica can follow a primary once it knows it.
        self.wait(deadline, "every node to know every other", |nodes| {
            let known = nodes.lines().filter(|l| !l.trim().is_empty()).count();
            known == self.nodes.len() && !nodes.contains("handshake")
        })
        .await?;
        for node in self.nodes.iter().filter(|n| !n.primary) {
            let primary = self
                .nodes
                .iter()
                .find(|p| p.primary && p.shard == node.shard)
                .ok_or_else(|| UpstreamError("a shard without a primary".to_owned()))?;
            ok(call(node.addr, &["CLUSTER", "REPLICATE", &primary.id]).await?)?;
        }
        self.wait_ready(deadline).await
    }

    /// Until every node says `cluster_state:ok` and knows every replica as
    /// one, and every replica's link to its primary is up.
    async fn wait_ready(&self, deadline: Instant) -> Result<(), UpstreamError> {
        let replicas = self.nodes.iter().filter(|n| !n.primary).count();
        self.wait(deadline, "every replica to be known as one", |nodes| {
            nodes.lines().filter(|line| is_replica(line)).count() == replicas
        })
        .await?;
        loop {
            let mut ready = true;
            for node in &self.nodes {
                let info = text(call(node.addr, &["CLUSTER", "INFO"]).await?)?;
                ready &= info.contains("cluster_state:ok");
                if !node.primary {
                    let replication = text(call(node.addr, &["INFO", "replication"]).await?)?;
                    ready &= replication.contains("master_link_status:up");
                }
            }
            if ready {
                return Ok(());
            }
            if monotonic_now() >= deadline {
                return Err(UpstreamError(format!(
                    "the cluster did not become ready within {FORM_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Until `done` holds for every node's `CLUSTER NODES`.
    async fn wait(
        &self,
        deadline: Instant,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> Result<(), UpstreamError> {
        loop {
            let mut all = true;
            for node in &self.nodes {
                let nodes = text(call(node.addr, &["CLUSTER", "NODES"]).await?)?;
                all &= done(&nodes);
            }
            if all {
                return Ok(());
            }
            if monotonic_now() >= deadline {
                return Err(UpstreamError(format!(
                    "the cluster did not form within {FORM_TIMEOUT:?}: waiting for {what}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The server of node `index` (in [`nodes`](Self::nodes) order).
    pub(crate) fn upstream(&self, index: usize) -> Option<&tokio::sync::Mutex<Upstream>> {
        self.nodes.get(index).map(|node| &node.upstream)
    }

    /// How many shards the cluster started with.
    pub(crate) fn shards(&self) -> usize {
        self.nodes.iter().filter(|n| n.primary).count()
    }

    /// How many nodes the cluster has.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// `CLUSTER NODES` as node `index` sees it now.
    async fn view_of(&self, index: usize) -> Result<Vec<topology::Node>, UpstreamError> {
        let text = call_text(self.nodes[index].addr, &["CLUSTER", "NODES"]).await?;
        Ok(topology::Node::parse_all(&text))
    }

    /// The node index of the server a view line names.
    fn index_of(&self, node: &topology::Node) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == node.id)
    }

    /// The node now serving shard `shard` as its primary, as the shard's
    /// running members see it.
    async fn primary_of(&self, shard: usize) -> Result<usize, UpstreamError> {
        for (index, node) in self.nodes.iter().enumerate() {
            if node.shard != shard || !node.upstream.lock().await.is_running() {
                continue;
            }
            let Ok(view) = self.view_of(index).await else {
                continue;
            };
            if let Some(primary) = view.iter().find(|n| {
                n.is_primary()
                    && self
                        .index_of(n)
                        .is_some_and(|i| self.nodes[i].shard == shard)
            }) {
                return self.index_of(primary).ok_or_else(|| {
                    UpstreamError(format!("shard {shard}'s primary is no node of the stack"))
                });
            }
        }
        Err(UpstreamError(format!("shard {shard} has no primary now")))
    }

    /// Fails over shard `shard` as ElastiCache's test failover does: one of
    /// its replicas takes over (`CLUSTER FAILOVER`, coordinated with the
    /// primary, so nothing written is lost). Returns once the replica serves
    /// the slots and the old primary follows it: (old primary, new primary)
    /// node indexes.
    pub(crate) async fn fail_over(&self, shard: usize) -> Result<(usize, usize), UpstreamError> {
        if shard >= self.shards() {
            return Err(UpstreamError(format!("there is no shard {shard}")));
        }
        let _one = self.changing.lock().await;
        let old = self.primary_of(shard).await?;
        let view = self.view_of(old).await?;
        let old_id = &self.nodes[old].id;
        let new = view
            .iter()
            .filter(|n| !n.failed() && n.master_id() == Some(old_id.as_str()))
            .find_map(|n| self.index_of(n))
            .ok_or_else(|| UpstreamError(format!("shard {shard} has no replica to take over")))?;
        ok(call(self.nodes[new].addr, &["CLUSTER", "FAILOVER"]).await?)?;
        let deadline = monotonic_now() + FORM_TIMEOUT;
        loop {
            let new_view = self.view_of(new).await?;
            let promoted = new_view
                .iter()
                .any(|n| n.id == self.nodes[new].id && n.is_primary());
            let old_follows = self.view_of(old).await?.iter().any(|n| {
                n.id == self.nodes[old].id && n.master_id() == Some(self.nodes[new].id.as_str())
            });
            if promoted && old_follows {
                return Ok((old, new));
            }
            if monotonic_now() >= deadline {
                return Err(UpstreamError(format!(
                    "shard {shard}'s failover did not complete within {FORM_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Moves `count` slots (the last ones it owns) from shard `from` to shard
    /// `to` while the cluster serves, as a resharding does: each slot is
    /// marked importing and migrating, its keys are moved with `MIGRATE`
    /// (clients asking for a key already moved get `-ASK`), then the slot is
    /// given to the new owner (clients get `-MOVED`). Returns the slots
    /// moved.
    pub(crate) async fn migrate_slots(
        &self,
        from: usize,
        to: usize,
        count: usize,
    ) -> Result<Vec<u16>, UpstreamError> {
        if from == to {
            return Err(UpstreamError(
                "slots move between two different shards".to_owned(),
            ));
        }
        let _one = self.changing.lock().await;
        let (src, dst) = (self.primary_of(from).await?, self.primary_of(to).await?);
        let owned: Vec<u16> = self
            .view_of(src)
            .await?
            .iter()
            .find(|n| n.id == self.nodes[src].id)
            .map(|n| n.slots.iter().flat_map(|&(a, b)| a..=b).collect())
            .unwrap_or_default();
        if owned.len() < count {
            return Err(UpstreamError(format!(
                "shard {from} owns {} slots, fewer than {count}",
                owned.len()
            )));
        }
        let slots = owned[owned.len() - count..].to_vec();
        let (src_id, dst_id) = (&self.nodes[src].id, &self.nodes[dst].id);
        let dst_addr = self.nodes[dst].addr;
        let (host, port) = (dst_addr.ip().to_string(), dst_addr.port().to_string());
        let mut source = Session::open(self.nodes[src].addr).await?;
        let mut target = Session::open(dst_addr).await?;
        let mut others = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            if index != src && index != dst && node.upstream.lock().await.is_running() {
                others.push(Session::open(node.addr).await?);
            }
        }
        // A batch at a time: marked, emptied, given (each step pipelined).
        for batch in slots.chunks(MIGRATION_BATCH) {
            let moved = async {
                let each = |args: &dyn Fn(&str) -> Vec<String>| -> Vec<Vec<String>> {
                    batch.iter().map(|slot| args(&slot.to_string())).collect()
                };
                let setslot = |slot: &str, how: &str, id: &str| {
                    ["CLUSTER", "SETSLOT", slot, how, id]
                        .map(str::to_owned)
                        .to_vec()
                };
                all_ok(
                    target
                        .pipeline(&each(&|s| setslot(s, "IMPORTING", src_id)))
                        .await?,
                )?;
                all_ok(
                    source
                        .pipeline(&each(&|s| setslot(s, "MIGRATING", dst_id)))
                        .await?,
                )?;
                // Every key of the batch's slots, until they are empty.
                let get_keys = each(&|s| {
                    ["CLUSTER", "GETKEYSINSLOT", s, "1000"]
                        .map(str::to_owned)
                        .to_vec()
                });
                loop {
                    // One MIGRATE per slot with keys left (MIGRATE takes one slot's keys).
                    let mut migrations = Vec::new();
                    for reply in source.pipeline(&get_keys).await? {
                        match reply {
                            Reply::List(keys) if keys.is_empty() => {}
                            Reply::List(keys) => {
                                let mut migrate: Vec<Vec<u8>> =
                                    [&b"MIGRATE"[..], host.as_bytes(), port.as_bytes(), b"", b"0"]
                                        .into_iter()
                                        .chain([&b"5000"[..], b"KEYS"])
                                        .map(<[u8]>::to_vec)
                                        .collect();
                                migrate.extend(keys);
                                migrations.push(migrate);
                            }
                            other => {
                                return Err(UpstreamError(format!("GETKEYSINSLOT: {other:?}")));
                            }
                        }
                    }
                    if migrations.is_empty() {
                        break;
                    }
                    // NOKEY: the keys went (deleted, expired) since they were listed.
                    for reply in source.pipeline(&migrations).await? {
                        match reply {
                            Reply::Text(text) if text == "OK" || text == "NOKEY" => {}
                            other => return Err(UpstreamError(format!("MIGRATE: {other:?}"))),
                        }
                    }
                }
                let assign = each(&|s| setslot(s, "NODE", dst_id));
                all_ok(target.pipeline(&assign).await?)?;
                all_ok(source.pipeline(&assign).await?)?;
                for other in &mut others {
                    // A replica refuses; gossip tells it.
                    other.pipeline(&assign).await?;
                }
                Ok::<(), UpstreamError>(())
            }
            .await;
            if let Err(e) = moved {
                // Leave no slot half-moved: whoever owns it keeps it.
                let stable: Vec<Vec<String>> = batch
                    .iter()
                    .map(|slot| {
                        ["CLUSTER", "SETSLOT", &slot.to_string(), "STABLE"]
                            .map(str::to_owned)
                            .to_vec()
                    })
                    .collect();
                for index in [src, dst] {
                    if let Ok(mut session) = Session::open(self.nodes[index].addr).await {
                        let _ = session.pipeline(&stable).await;
                    }
                }
                return Err(e);
            }
        }
        Ok(slots)
    }

    /// Kills every server without waiting (for `Drop`; a server being
    /// started or stopped right now is left to its own `Drop`).
    pub(crate) fn kill_now(&self) {
        for node in &self.nodes {
            if let Ok(mut upstream) = node.upstream.try_lock() {
                upstream.kill_now();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Whether a `CLUSTER NODES` line is a replica's: its flags (the third
/// field, such as `myself,slave`) say `slave` (or `replica`).
fn is_replica(line: &str) -> bool {
    line.split(' ')
        .nth(2)
        .is_some_and(|flags| flags.split(',').any(|f| f == "slave" || f == "replica"))
}

/// Shard `shard`'s even share of the slots, inclusive.
fn slot_range(shard: usize, shards: usize) -> (u16, u16) {
    let slots = usize::from(SLOTS);
    let first = shard * slots / shards;
    let last = (shard + 1) * slots / shards - 1;
    // Both below SLOTS.
    (first as u16, last as u16)
}

/// A cluster node's options: its bus port, short failure detection, and
/// replicas that sync at once.
fn cluster_options(port: u16, bus_port: u16) -> Vec<String> {
    [
        ("--cluster-enabled", "yes".to_owned()),
        ("--cluster-port", bus_port.to_string()),
        ("--cluster-config-file", format!("nodes-{port}.conf")),
        ("--cluster-node-timeout", "2000".to_owned()),
        ("--cluster-replica-validity-factor", "0".to_owned()),
        ("--repl-diskless-sync-delay", "0".to_owned()),
    ]
    .into_iter()
    .flat_map(|(name, value)| [name.to_owned(), value])
    .collect()
}

/// One command on a new connection, and its reply, within [`CALL_TIMEOUT`].
async fn call(addr: SocketAddr, args: &[&str]) -> Result<Reply, UpstreamError> {
    Session::open(addr).await?.call(args).await
}

/// The text reply to one command on a new connection (`CLUSTER NODES`).
pub(crate) async fn call_text(addr: SocketAddr, args: &[&str]) -> Result<String, UpstreamError> {
    text(call(addr, args).await?)
}

/// The reply to one command on a new connection, as the server wrote it
/// (`COMMAND`), within [`CALL_TIMEOUT`].
pub(crate) async fn call_frame(addr: SocketAddr, args: &[&str]) -> Result<Vec<u8>, UpstreamError> {
    let mut session = Session::open(addr).await?;
    let items: Vec<Vec<u8>> = args.iter().map(|a| resp::bulk(a.as_bytes())).collect();
    let run = async {
        session
            .stream
            .write_all(&resp::array(&items))
            .await
            .map_err(|e| UpstreamError(format!("{addr}: {} failed: {e}", args.join(" "))))?;
        session.read_frame(&args.join(" ")).await
    };
    tokio::time::timeout(CALL_TIMEOUT, run)
        .await
        .map_err(|_| UpstreamError(format!("{addr}: no reply within {CALL_TIMEOUT:?}")))?
}

/// A connection to one server for a series of set-up commands.
struct Session {
    addr: SocketAddr,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Session {
    async fn open(addr: SocketAddr) -> Result<Self, UpstreamError> {
        let connect = tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect(addr));
        let stream = connect
            .await
            .map_err(|_| UpstreamError(format!("{addr}: no connection within {CALL_TIMEOUT:?}")))?
            .map_err(|e| UpstreamError(format!("{addr}: cannot connect: {e}")))?;
        Ok(Self {
            addr,
            stream,
            buf: Vec::new(),
        })
    }

    /// Several commands sent at once, and their replies, within
    /// [`CALL_TIMEOUT`].
    async fn pipeline<A: AsRef<[u8]>>(
        &mut self,
        commands: &[Vec<A>],
    ) -> Result<Vec<Reply>, UpstreamError> {
        let addr = self.addr;
        let mut bytes = Vec::new();
        for args in commands {
            let items: Vec<Vec<u8>> = args.iter().map(|a| resp::bulk(a.as_ref())).collect();
            bytes.extend(resp::array(&items));
        }
        let run = async {
            self.stream
                .write_all(&bytes)
                .await
                .map_err(|e| UpstreamError(format!("{addr}: pipeline failed: {e}")))?;
            let mut replies = Vec::with_capacity(commands.len());
            for _ in commands {
                replies.push(self.read_reply("a pipeline").await?);
            }
            Ok(replies)
        };
        tokio::time::timeout(CALL_TIMEOUT, run).await.map_err(|_| {
            UpstreamError(format!(
                "{addr}: no reply to a pipeline within {CALL_TIMEOUT:?}"
            ))
        })?
    }

    /// One command and its reply, within [`CALL_TIMEOUT`].
    async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, UpstreamError> {
        let addr = self.addr;
        let name =
            String::from_utf8_lossy(args.first().map_or(&b""[..], AsRef::as_ref)).into_owned();
        tokio::time::timeout(CALL_TIMEOUT, self.call_once(args, &name))
            .await
            .map_err(|_| {
                UpstreamError(format!(
                    "{addr}: no reply to {name} within {CALL_TIMEOUT:?}"
                ))
            })?
    }

    async fn call_once<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        name: &str,
    ) -> Result<Reply, UpstreamError> {
        let addr = self.addr;
        let failed = |e: std::io::Error| UpstreamError(format!("{addr}: {name} failed: {e}"));
        let items: Vec<Vec<u8>> = args.iter().map(|a| resp::bulk(a.as_ref())).collect();
        self.stream
            .write_all(&resp::array(&items))
            .await
            .map_err(failed)?;
        self.read_reply(name).await
    }

    /// The next reply.
    async fn read_reply(&mut self, name: &str) -> Result<Reply, UpstreamError> {
        Ok(Reply::parse(&self.read_frame(name).await?))
    }

    /// The next reply, as the server wrote it.
    async fn read_frame(&mut self, name: &str) -> Result<Vec<u8>, UpstreamError> {
        let addr = self.addr;
        loop {
            if let Some(len) = resp::reply_len(&self.buf)
                .map_err(|e| UpstreamError(format!("{addr}: unreadable reply: {}", e.0)))?
            {
                return Ok(self.buf.drain(..len).collect());
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| UpstreamError(format!("{addr}: {name} failed: {e}")))?;
            if n == 0 {
                return Err(UpstreamError(format!(
                    "{addr}: connection closed before the reply to {name}"
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The replies set-up reads.
#[derive(Debug)]
enum Reply {
    Text(String),
    Error(String),
    /// An array of strings (or integers).
    List(Vec<Vec<u8>>),
    Other,
}

impl Reply {
    fn parse(frame: &[u8]) -> Self {
        let line_end = frame
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(frame.len());
        let line = String::from_utf8_lossy(&frame[1.min(frame.len())..line_end]).into_owned();
        match frame.first() {
            Some(b'+') => Self::Text(line),
            Some(b'-') => Self::Error(line),
            Some(b'$' | b'=') => {
                let body = frame.get(line_end + 2..frame.len().saturating_sub(2));
                Self::Text(String::from_utf8_lossy(body.unwrap_or_default()).into_owned())
            }
            Some(b'*') => match resp::array_items(frame) {
                Some(items) => Self::List(
                    items
                        .into_iter()
                        .map(|item| item.unwrap_or_default().to_vec())
                        .collect(),
                ),
                None => Self::Other,
            },
            _ => Self::Other,
        }
    }
}

fn text(reply: Reply) -> Result<String, UpstreamError> {
    match reply {
        Reply::Text(text) => Ok(text),
        Reply::Error(error) => Err(UpstreamError(format!("the server refused: {error}"))),
        Reply::List(_) | Reply::Other => Err(UpstreamError("unexpected reply".to_owned())),
    }
}

fn all_ok(replies: Vec<Reply>) -> Result<(), UpstreamError> {
    replies.into_iter().try_for_each(ok)
}

fn ok(reply: Reply) -> Result<(), UpstreamError> {
    match text(reply)? {
        text if text == "OK" => Ok(()),
        other => Err(UpstreamError(format!("expected OK, got {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_evenly_and_all_covered() {
        for shards in [1, 2, 3, 5, 16] {
            let ranges: Vec<_> = (0..shards).map(|s| slot_range(s, shards)).collect();
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges[shards - 1].1, SLOTS - 1);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0, "{ranges:?}");
            }
            let sizes: Vec<u16> = ranges.iter().map(|(a, b)| b - a + 1).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{sizes:?}");
        }
    }

    #[test]
    fn replica_lines() {
        let line = "07c3 127.0.0.1:30004@31004 myself,slave e7d1 0 0 4 connected";
        assert!(is_replica(line));
        let line = "e7d1 127.0.0.1:30001@31001 master - 0 1426238316232 1 connected 0-5460";
        assert!(!is_replica(line));
    }

    #[test]
    fn replies_set_up_reads() {
        assert!(matches!(Reply::parse(b"+OK\r\n"), Reply::Text(t) if t == "OK"));
        assert!(matches!(Reply::parse(b"-ERR no\r\n"), Reply::Error(e) if e == "ERR no"));
        assert!(matches!(Reply::parse(b"$5\r\nab\r\nc\r\n"), Reply::Text(t) if t == "ab\r\nc"));
        assert!(matches!(Reply::parse(b":1\r\n"), Reply::Other));
    }
}
