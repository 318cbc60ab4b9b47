//! The serverless front's routing: one endpoint for every slot, in front of
//! a real cluster, as an ElastiCache Serverless cache's proxy.
//!
//! Each command goes to the primary that owns the slot of its first key
//! ([`KeyTable`]); commands without keys go to the primary of slot 0 (the
//! "home" server). On the replica-read endpoint, after `READONLY`, commands
//! that only read go to a replica of that shard.
//!
//! The slot map is read from the cluster's own `CLUSTER NODES` and kept up
//! to date from what the servers answer: a `-MOVED` names the slot's new
//! owner (and makes the map be read again before the next command), a
//! `-ASK` names where a migrating slot's key is now (the front sends the
//! client's next `ASKING` command there).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::monotonic_now;
use crate::cluster::{self, SLOTS};
use crate::keys::{KeyTable, slot};
use crate::topology::Node;
use crate::upstream::UpstreamError;

/// How long after a reading of the slot map the next may be: after one that
/// worked, and after one that failed.
const REREAD: Duration = Duration::from_millis(100);
const RETRY: Duration = Duration::from_secs(1);

/// Where the serverless fronts send commands.
#[derive(Debug)]
pub(crate) struct Router {
    keys: KeyTable,
    /// The cluster's servers; routes are indexes into this.
    servers: Vec<SocketAddr>,
    map: RwLock<SlotMap>,
    /// The map is read again before the next command.
    stale: AtomicBool,
    /// One reading of the map at a time; when the last one was, and whether
    /// it worked.
    refreshing: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Slots being migrated: the server a `-ASK` named, by slot.
    asks: Mutex<HashMap<u16, usize>>,
}

/// Who serves each slot.
#[derive(Clone, Debug)]
struct SlotMap {
    /// The primary that owns each slot.
    owner: Vec<usize>,
    /// Each primary's replicas, by server index.
    replicas: Vec<Vec<usize>>,
}

/// Where one command goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The server's index.
    pub(crate) server: usize,
    /// Whether the server is a replica (its connection needs `READONLY`).
    pub(crate) replica: bool,
}

impl Router {
    /// Reads the command table and the slot map from the cluster `servers`.
    pub(crate) async fn load(servers: Vec<SocketAddr>) -> Result<Self, UpstreamError> {
        let first = *servers
            .first()
            .ok_or_else(|| UpstreamError("a cluster without servers".to_owned()))?;
        let table = cluster::call_frame(first, &["COMMAND"]).await?;
        let keys = KeyTable::parse(&table).map_err(UpstreamError)?;
        let empty = SlotMap {
            owner: vec![0; usize::from(SLOTS)],
            replicas: vec![Vec::new(); servers.len()],
        };
        let router = Self {
            keys,
            servers,
            map: RwLock::new(empty),
            stale: AtomicBool::new(false),
            refreshing: tokio::sync::Mutex::new(None),
            asks: Mutex::new(HashMap::new()),
        };
        let map = router.read_map().await?;
        *router.map.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(router)
    }

    /// Server `index`'s address.
    pub(crate) fn server(&self, index: usize) -> Option<SocketAddr> {
        self.servers.get(index).copied()
    }

    /// How many servers there are.
    pub(crate) fn len(&self) -> usize {
        self.servers.len()
    }

    /// The primary of slot 0: where commands without keys go.
    pub(crate) fn home(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).owner[0]
    }

    /// The slot of the first key of the command in `args`, if it has one.
    pub(crate) fn slot_of(&self, args: &[&[u8]]) -> Option<u16> {
        self.keys.first_key(args).map(slot)
    }

    /// Where the command in `args`, whose first key is in `slot`
    /// ([`slot_of`](Self::slot_of)), goes; `replica_reads`: a read may go
    /// to a replica.
    pub(crate) fn route(&self, args: &[&[u8]], slot: Option<u16>, replica_reads: bool) -> Route {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let primary = map.owner[usize::from(slot.unwrap_or(0))];
        let replica = (replica_reads && self.keys.readonly(args))
            .then(|| map.replicas.get(primary).and_then(|r| r.first().copied()))
            .flatten();
        Route {
            server: replica.unwrap_or(primary),
            replica: replica.is_some(),
        }
    }

    /// The primary that owns `slot`.
    pub(crate) fn owner(&self, slot: u16) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).owner[usize::from(slot)]
    }

    /// Where a `-ASK` for `slot` sent its keys, if one did.
    pub(crate) fn asked(&self, slot: u16) -> Option<usize> {
        self.asks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&slot)
            .copied()
    }

    /// Learns from a server's error reply `frame`: `-MOVED slot addr` (the
    /// slot's owner; the whole map is read again) or `-ASK slot addr`.
    pub(crate) fn observe(&self, frame: &[u8]) {
        let Some(line) = frame
            .strip_prefix(b"-")
            .and_then(|l| l.strip_suffix(b"\r\n"))
            .and_then(|l| std::str::from_utf8(l).ok())
        else {
            return;
        };
        let mut parts = line.split(' ');
        let (Some(kind), Some(slot), Some(addr)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let (Ok(slot), Some(port)) = (
            slot.parse::<u16>(),
            addr.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok()),
        ) else {
            return;
        };
        let Some(server) = self.servers.iter().position(|s| s.port() == port) else {
            return;
        };
        if slot >= SLOTS {
            return;
        }
        match kind {
            "MOVED" => {
                self.map.write().unwrap_or_else(|e| e.into_inner()).owner[usize::from(slot)] =
                    server;
                self.asks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&slot);
                self.stale.store(true, Ordering::Relaxed);
            }
            "ASK" => {
                self.asks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(slot, server);
            }
            _ => {}
        }
    }

    /// The map is read again before the next command (a server was not
    /// reachable).
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// Reads the map again if something showed it changed, unless another
    /// connection is reading it (this one routes as before meanwhile), and
    /// not more often than every 100 ms (every second while the servers do
    /// not answer).
    pub(crate) async fn refresh_if_stale(&self) {
        if !self.stale.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut last) = self.refreshing.try_lock() else {
            return;
        };
        let now = monotonic_now();
        if let Some((at, worked)) = *last
            && now < at + if worked { REREAD } else { RETRY }
        {
            return;
        }
        if !self.stale.swap(false, Ordering::Relaxed) {
            return; // (read meanwhile)
        }
        let worked = match self.read_map().await {
            Ok(map) => {
                *self.map.write().unwrap_or_else(|e| e.into_inner()) = map;
                true
            }
            Err(e) => {
                tracing::info!(error = %e, "cluster topology unavailable; routing as before");
                self.stale.store(true, Ordering::Relaxed);
                false
            }
        };
        *last = Some((monotonic_now(), worked));
    }

    /// The map from the first server that answers `CLUSTER NODES`.
    async fn read_map(&self) -> Result<SlotMap, UpstreamError> {
        let mut last = UpstreamError("no server answered CLUSTER NODES".to_owned());
        for &addr in &self.servers {
            match cluster::call_text(addr, &["CLUSTER", "NODES"]).await {
                Ok(text) => return Ok(self.map_of(&Node::parse_all(&text))),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The map `nodes` show (slots no primary owns keep their owner).
    fn map_of(&self, nodes: &[Node]) -> SlotMap {
        let mut map = self.map.read().unwrap_or_else(|e| e.into_inner()).clone();
        let index = |node: &Node| self.servers.iter().position(|s| s.port() == node.port);
        for replicas in &mut map.replicas {
            replicas.clear();
        }
        for primary in nodes.iter().filter(|n| n.is_primary()) {
            let Some(p) = index(primary) else { continue };
            for &(first, last) in &primary.slots {
                for slot in first..=last.min(SLOTS - 1) {
                    map.owner[usize::from(slot)] = p;
                }
            }
            map.replicas[p] = nodes
                .iter()
                .filter(|n| !n.failed() && n.replica_of(primary))
                .filter_map(index)
                .collect();
        }
        map
    }
}
