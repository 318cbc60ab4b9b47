//! What the front's connections, the HTTP endpoints and the [`Stack`](crate::Stack)
//! share: the front's rules, known credentials, counters, faults, the
//! clock, and the addresses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::WallClock;
use crate::config::Mode;
use crate::faults::Faults;
use crate::registry::Registry;
use crate::stats::Stats;
use crate::upstream;
use crate::verify::Expectations;

pub(crate) struct FrontConfig {
    pub(crate) mode: Mode,
    pub(crate) expect: Expectations,
    pub(crate) max_auth_age: Duration,
    pub(crate) advertised_host: String,
    pub(crate) password_user: Option<(String, String)>,
}

/// State shared by the front's connections and the HTTP endpoints.
pub(crate) struct Shared {
    pub(crate) config: FrontConfig,
    pub(crate) registry: Registry,
    pub(crate) stats: Stats,
    pub(crate) faults: Faults,
    pub(crate) clock: Arc<dyn WallClock>,
    pub(crate) drop_generation: watch::Sender<u64>,
    pub(crate) upstream_addr: SocketAddr,
    pub(crate) upstream: tokio::sync::Mutex<upstream::Upstream>,
    pub(crate) front_addr: SocketAddr,
}

impl Shared {
    /// Close every client connection: each one watches this generation.
    pub(crate) fn drop_all_connections(&self) {
        self.drop_generation.send_modify(|g| *g += 1);
    }
}
