//! Counters, readable in-process ([`Stats::snapshot`]) and at `GET /stats`:
//! totals, and the same per front (per node in cluster modes).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters of the stack.
#[derive(Debug, Default)]
pub struct Stats {
    total: Counters,
    fronts: Vec<(String, Counters)>,
    credentials_issued: AtomicU64,
    accepted_keys: Mutex<HashSet<String>>,
}

/// The counters kept both in total and per front.
#[derive(Debug, Default)]
struct Counters {
    auth_ok: AtomicU64,
    reauth_ok: AtomicU64,
    auth_failed: Mutex<BTreeMap<String, u64>>,
    forced_disconnects: AtomicU64,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    commands: AtomicU64,
}

/// A point-in-time copy of the counters (the `GET /stats` body).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Successful authentications, first or re-authentication.
    pub auth_ok: u64,
    /// Successful re-authentications of an already authenticated connection.
    pub reauth_ok: u64,
    /// Refused authentications, by reason.
    pub auth_failed: BTreeMap<String, u64>,
    /// Connections closed by the 12-hour (max auth age) rule.
    pub forced_disconnects: u64,
    /// Client connections open now.
    pub connections_open: u64,
    /// Client connections accepted since start.
    pub connections_total: u64,
    /// Commands received from authenticated clients.
    pub commands: u64,
    /// Temporary credentials issued by the mock endpoints.
    pub credentials_issued: u64,
    /// Distinct sets of credentials (access key ids) that signed at least
    /// one accepted token.
    pub credentials_accepted: u64,
    /// The same counters per front, in the order of `LOCALSTACK_NODES`
    /// (one entry when there is one front).
    #[serde(default)]
    pub nodes: Vec<NodeStats>,
}

/// One front's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NodeStats {
    /// The front's address (`host:port`).
    pub address: String,
    /// Successful authentications, first or re-authentication.
    pub auth_ok: u64,
    /// Successful re-authentications.
    pub reauth_ok: u64,
    /// Refused authentications, by reason.
    pub auth_failed: BTreeMap<String, u64>,
    /// Connections closed by the 12-hour rule.
    pub forced_disconnects: u64,
    /// Client connections open now.
    pub connections_open: u64,
    /// Client connections accepted since start.
    pub connections_total: u64,
    /// Commands received from authenticated clients.
    pub commands: u64,
}

impl StatsSnapshot {
    /// Refusals counted for `reason`.
    pub fn failed(&self, reason: &str) -> u64 {
        self.auth_failed.get(reason).copied().unwrap_or(0)
    }

    /// All refusals.
    pub fn failed_total(&self) -> u64 {
        self.auth_failed.values().sum()
    }
}

impl NodeStats {
    /// Refusals counted for `reason`.
    pub fn failed(&self, reason: &str) -> u64 {
        self.auth_failed.get(reason).copied().unwrap_or(0)
    }

    /// All refusals.
    pub fn failed_total(&self) -> u64 {
        self.auth_failed.values().sum()
    }
}

impl Counters {
    fn read(&self) -> NodeStats {
        NodeStats {
            address: String::new(),
            auth_ok: self.auth_ok.load(Ordering::Relaxed),
            reauth_ok: self.reauth_ok.load(Ordering::Relaxed),
            auth_failed: self.auth_failed.lock().unwrap().clone(),
            forced_disconnects: self.forced_disconnects.load(Ordering::Relaxed),
            connections_open: self.connections_open.load(Ordering::Relaxed),
            connections_total: self.connections_total.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
        }
    }
}

impl Stats {
    /// Counters for fronts at these addresses.
    pub(crate) fn new(fronts: impl IntoIterator<Item = String>) -> Self {
        Self {
            fronts: fronts
                .into_iter()
                .map(|addr| (addr, Counters::default()))
                .collect(),
            ..Self::default()
        }
    }

    /// `f` on the totals and on front `front`'s counters.
    fn count(&self, front: usize, f: impl Fn(&Counters)) {
        f(&self.total);
        if let Some((_, counters)) = self.fronts.get(front) {
            f(counters);
        }
    }

    pub(crate) fn auth_ok(&self, front: usize, reauth: bool, access_key_id: Option<&str>) {
        self.count(front, |c| {
            c.auth_ok.fetch_add(1, Ordering::Relaxed);
            if reauth {
                c.reauth_ok.fetch_add(1, Ordering::Relaxed);
            }
        });
        if let Some(key) = access_key_id {
            let mut keys = self.accepted_keys.lock().unwrap();
            if !keys.contains(key) {
                keys.insert(key.to_owned());
            }
        }
    }

    pub(crate) fn auth_failed(&self, front: usize, reason: &str) {
        self.count(front, |c| {
            *c.auth_failed
                .lock()
                .unwrap()
                .entry(reason.to_owned())
                .or_default() += 1;
        });
    }

    pub(crate) fn forced_disconnect(&self, front: usize) {
        self.count(front, |c| {
            c.forced_disconnects.fetch_add(1, Ordering::Relaxed);
        });
    }

    pub(crate) fn connection_opened(&self, front: usize) {
        self.count(front, |c| {
            c.connections_open.fetch_add(1, Ordering::Relaxed);
            c.connections_total.fetch_add(1, Ordering::Relaxed);
        });
    }

    pub(crate) fn connection_closed(&self, front: usize) {
        self.count(front, |c| {
            c.connections_open.fetch_sub(1, Ordering::Relaxed);
        });
    }

    pub(crate) fn commands(&self, front: usize, n: u64) {
        if n > 0 {
            self.count(front, |c| {
                c.commands.fetch_add(n, Ordering::Relaxed);
            });
        }
    }

    pub(crate) fn credentials_issued(&self) {
        self.credentials_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let total = self.total.read();
        StatsSnapshot {
            auth_ok: total.auth_ok,
            reauth_ok: total.reauth_ok,
            auth_failed: total.auth_failed,
            forced_disconnects: total.forced_disconnects,
            connections_open: total.connections_open,
            connections_total: total.connections_total,
            commands: total.commands,
            credentials_issued: self.credentials_issued.load(Ordering::Relaxed),
            credentials_accepted: self.accepted_keys.lock().unwrap().len() as u64,
            nodes: self
                .fronts
                .iter()
                .map(|(address, counters)| NodeStats {
                    address: address.clone(),
                    ..counters.read()
                })
                .collect(),
        }
    }
}
