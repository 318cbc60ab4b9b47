//! What the front's connections, the HTTP endpoints and the [`Stack`](crate::Stack)
//! share: the fronts' rules, known credentials, counters, faults, the
//! clock, the servers and the fronts before them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::WallClock;
use crate::cluster::Cluster;
use crate::config::Mode;
use crate::faults::Faults;
use crate::registry::Registry;
use crate::router::Router;
use crate::stats::Stats;
use crate::topology::Addresses;
use crate::upstream::Upstream;
use crate::verify::Expectations;

pub(crate) struct FrontConfig {
    pub(crate) mode: Mode,
    pub(crate) expect: Expectations,
    pub(crate) max_auth_age: Duration,
    pub(crate) advertised_host: String,
    pub(crate) password_user: Option<(String, String)>,
}

/// The real servers behind the fronts.
pub(crate) enum Backend {
    /// One server (cluster mode disabled, or the serverless front's).
    Single(Box<tokio::sync::Mutex<Upstream>>),
    /// A real cluster, one front per node (serverless: behind its two).
    Cluster(Cluster),
}

/// One TLS front: where it listens and the server it passes commands to.
pub(crate) struct Front {
    pub(crate) addr: SocketAddr,
    /// The server's plain-TCP address (serverless: the first server's;
    /// the router picks one per command).
    pub(crate) upstream: SocketAddr,
    /// The serverless replica-read endpoint.
    pub(crate) reader: bool,
    /// Its connections close when this changes.
    pub(crate) drop_generation: watch::Sender<u64>,
}

/// State shared by the front's connections and the HTTP endpoints.
pub(crate) struct Shared {
    pub(crate) config: FrontConfig,
    pub(crate) registry: Registry,
    pub(crate) stats: Stats,
    pub(crate) faults: Faults,
    pub(crate) clock: Arc<dyn WallClock>,
    /// Every connection of every front closes when this changes.
    pub(crate) drop_generation: watch::Sender<u64>,
    pub(crate) backend: Backend,
    /// The fronts; the first is the endpoint clients are given (for a
    /// cluster, the configuration endpoint: a primary's front).
    pub(crate) fronts: Vec<Front>,
    /// The fronts' addresses by server (cluster modes).
    pub(crate) addresses: Addresses,
    /// Every server, in the order of [`Cluster::nodes`].
    pub(crate) servers: Vec<SocketAddr>,
    /// The serverless fronts' routing to the cluster behind them.
    pub(crate) router: Option<Arc<Router>>,
}

impl Shared {
    /// Close every client connection: each one watches this generation.
    pub(crate) fn drop_all_connections(&self) {
        self.drop_generation.send_modify(|g| *g += 1);
    }

    /// Close every client connection of front `front`.
    pub(crate) fn drop_connections_of(&self, front: usize) {
        if let Some(front) = self.fronts.get(front) {
            front.drop_generation.send_modify(|g| *g += 1);
        }
    }

    /// Whether the fronts show a cluster of their own servers, one front
    /// per server (not serverless, whose fronts show themselves).
    pub(crate) fn clustered(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_)) && self.router.is_none()
    }
}
