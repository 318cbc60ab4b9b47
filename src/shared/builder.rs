//! Building a [`SharedConnection`]: its settings and their documented
//! defaults.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::watch;

use super::link::Link;
use super::slot::{Slot, upkeep};
use super::{Shared, SharedConnection};
use crate::blocking::BlockingConnection;
use crate::config::ConnectionConfig;
use crate::connector::{Connector, ConnectorOptions, default_cluster};
use crate::error::{Error, ErrorKind, Problems};
use crate::refresher::{TokenRefresher, TokenRefresherBuilder};
use crate::subscriber::Subscriber;

/// Builds a [`SharedConnection`]. Defaults:
///
/// | setting | default |
/// |---|---|
/// | [`connections`](Self::connections) | 1 multiplexed connection per node |
/// | [`connect_timeout`](Self::connect_timeout) | 10 s per attempt (TCP, TLS, authentication) |
/// | [`response_timeout`](Self::response_timeout) | 1 s per request |
/// | [`max_concurrent_connects`](Self::max_concurrent_connects) | 4 attempts at once |
/// | [`reconnect_spread`](Self::reconnect_spread) | replacements after a loss spread over 20 s, the first within 2 s |
/// | [`cluster_mode`](Self::cluster_mode) | on for serverless caches and MemoryDB, off otherwise |
/// | credentials (IAM) | the AWS default chain |
///
/// Token rotation, re-authentication and the connection deadline come from the
/// configuration's [`Lifecycle`](crate::Lifecycle).
#[must_use]
pub struct SharedConnectionBuilder {
    config: ConnectionConfig,
    connections: usize,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
    max_concurrent_connects: usize,
    reconnect_spread: Duration,
    #[cfg(feature = "test-util")]
    fake: Option<crate::test_util::Transport>,
    cluster: Option<bool>,
    refresher: Option<TokenRefresher>,
    refresher_builder: TokenRefresherBuilder,
}

impl fmt::Debug for SharedConnectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedConnectionBuilder")
            .field("config", &self.config)
            .field("connections", &self.connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("max_concurrent_connects", &self.max_concurrent_connects)
            .field("reconnect_spread", &self.reconnect_spread)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl SharedConnectionBuilder {
    /// Multiplexed connections per node, by default.
    pub const DEFAULT_CONNECTIONS: usize = 1;
    /// The most multiplexed connections per node.
    pub const MAX_CONNECTIONS: usize = 64;
    /// How long one connection attempt may take, by default.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long a request may wait for its reply, by default.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
    /// Connection attempts in flight at once, by default.
    pub const DEFAULT_MAX_CONCURRENT_CONNECTS: usize = 4;

    pub(super) fn new(config: ConnectionConfig) -> Self {
        Self {
            config,
            connections: Self::DEFAULT_CONNECTIONS,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Some(Self::DEFAULT_RESPONSE_TIMEOUT),
            max_concurrent_connects: Self::DEFAULT_MAX_CONCURRENT_CONNECTS,
            reconnect_spread: crate::connector::DEFAULT_RECONNECT_SPREAD,
            #[cfg(feature = "test-util")]
            fake: None,
            cluster: None,
            refresher: None,
            refresher_builder: TokenRefresher::builder(),
        }
    }

    /// Multiplexed connections per node (1 to 64); requests are spread over
    /// them in turn. In cluster mode each is a cluster connection (one
    /// connection to every node). Defaults to 1, which carries well over
    /// 100,000 small commands a second; more help when large values make
    /// one socket the bottleneck.
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }

    /// How long one connection attempt may take. Defaults to 10 s. Requests
    /// that find their connection lost wait this long for its successor.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request waits for its reply (`None`: forever). Defaults
    /// to 1 s. A request that gives up does not disturb the others (redis-rs
    /// matches the late reply to it and drops it), but has its connection
    /// checked: one that does not answer `PING` within twice this time is
    /// replaced. With `None`, a hung (not closed) connection is only noticed
    /// by TCP keepalive.
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connection attempts in flight at once. Defaults to 4.
    pub fn max_concurrent_connects(mut self, n: usize) -> Self {
        self.max_concurrent_connects = n;
        self
    }

    /// After a connection is lost (closed by the server or the network), the
    /// attempts that replace connections are spread over this long: the
    /// first at a random time within its first tenth, each later one at a
    /// random time in the rest. A failover drops every connection of every
    /// process at once; spread this way, the fleet's new authentications
    /// reach IAM at a low, even rate, while each process has a connection
    /// back within a tenth of the spread (`docs/fleet.md`). Defaults to 20 s;
    /// at most 5 minutes; zero replaces connections at once.
    pub fn reconnect_spread(mut self, spread: Duration) -> Self {
        self.reconnect_spread = spread;
        self
    }

    /// Connections go to an in-process [`FakeServer`](crate::test_util::FakeServer)
    /// over memory instead of TCP and TLS (feature `test-util`): for
    /// simulations of many processes with tokio's paused clock.
    #[cfg(feature = "test-util")]
    pub fn transport(mut self, transport: crate::test_util::Transport) -> Self {
        self.fake = Some(transport);
        self
    }

    /// Cluster mode (redis-rs's cluster connection) or standalone. Defaults
    /// to cluster mode for serverless caches and MemoryDB clusters,
    /// standalone otherwise (cluster-mode-enabled replication groups need
    /// `true`).
    pub fn cluster_mode(mut self, on: bool) -> Self {
        self.cluster = Some(on);
        self
    }

    /// IAM: the credentials that sign tokens, instead of the default chain.
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.set_credentials_provider(Some(SharedCredentialsProvider::new(provider)));
        self
    }

    /// IAM: the credentials that sign tokens, or the default chain (`None`).
    pub fn set_credentials_provider(
        &mut self,
        provider: Option<SharedCredentialsProvider>,
    ) -> &mut Self {
        self.refresher_builder.set_credentials_provider(provider);
        self
    }

    /// IAM: credentials provider and time source from an `SdkConfig`. The
    /// configuration's region still decides where tokens are for.
    pub fn sdk_config(mut self, config: &SdkConfig) -> Self {
        self.refresher_builder = self.refresher_builder.sdk_config(config);
        self
    }

    /// IAM: use this refresher (shared with pools or other clients) instead
    /// of making one. It must sign for the configuration's target, user id
    /// and region. Its own token refresh interval applies.
    pub fn refresher(mut self, refresher: TokenRefresher) -> Self {
        self.refresher = Some(refresher);
        self
    }

    /// Validates the settings, makes the refresher (IAM) and the TLS
    /// configuration, and opens every connection, so that a misconfiguration
    /// fails here, with its precise error (every problem in the settings at
    /// once, see [`Error::parameters`]), rather than at the first command.
    pub async fn build(self) -> Result<SharedConnection, Error> {
        let connections = self.connections;
        let response_timeout = self.response_timeout;
        let connector = self.connector("shared").await?;
        let mut slots = Vec::with_capacity(connections);
        for _ in 0..connections {
            let link = Link::new(connector.open_connection().await?);
            slots.push(Arc::new(Slot::new(link, None)));
        }
        let (stop, stopped) = watch::channel(());
        for slot in &slots {
            spawn_upkeep(&connector, slot, response_timeout, &stopped);
        }
        Ok(SharedConnection {
            inner: Arc::new(Shared {
                connect_timeout: connector.connect_timeout(),
                connector,
                slots,
                next: AtomicUsize::new(0),
                response_timeout,
                _stop: stop,
            }),
        })
    }

    /// A dedicated [`Subscriber`] with these settings (`connections` does
    /// not apply): one RESP3 connection (a cluster connection in cluster
    /// mode), opened here, re-authenticated in the background while
    /// subscribed, and re-subscribed to everything on a new connection when
    /// it must be replaced.
    pub async fn build_subscriber(self) -> Result<Subscriber, Error> {
        let response_timeout = self.response_timeout;
        let connector = self.connector("subscriber").await?;
        let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
        let opened = connector.open_connection_with(Some(pushes.clone())).await?;
        if !opened.resp3 {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{} does not speak RESP3 (HELLO 3): a subscriber needs it to \
                     re-authenticate while subscribed",
                    connector.endpoint()
                ),
            ));
        }
        let link = Link::new(opened);
        let (stop, stopped) = watch::channel(());
        let spawned = Arc::clone(&connector);
        Ok(Subscriber::new(
            connector,
            link,
            (pushes, received),
            stop,
            |slot| spawn_upkeep(&spawned, &slot, response_timeout, &stopped),
        ))
    }

    /// A dedicated [`BlockingConnection`] with these settings
    /// (`connections` does not apply), for blocking consumers: opened here.
    pub async fn build_blocking(self) -> Result<BlockingConnection, Error> {
        let response_timeout = self.response_timeout;
        let connector = self.connector("blocking").await?;
        let link = Link::new(connector.open_connection().await?);
        Ok(BlockingConnection::new(connector, link, response_timeout))
    }

    /// The settings checked, the refresher made: the connector, for a
    /// `holder` (named in metrics).
    async fn connector(self, holder: &'static str) -> Result<Arc<Connector>, Error> {
        let mut problems = Problems::default();
        if !(1..=Self::MAX_CONNECTIONS).contains(&self.connections) {
            problems.push(Error::config(
                "connections",
                format!(
                    "connections must be 1 to {}; got {}",
                    Self::MAX_CONNECTIONS,
                    self.connections
                ),
            ));
        }
        problems.check_positive(&[
            ("connect_timeout", Some(self.connect_timeout)),
            ("response_timeout", self.response_timeout),
        ]);
        let options = ConnectorOptions {
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            max_concurrent_connects: self.max_concurrent_connects,
            reconnect_spread: self.reconnect_spread,
            #[cfg(feature = "test-util")]
            fake: self.fake,
            holder,
            cluster: self
                .cluster
                .unwrap_or_else(|| default_cluster(&self.config)),
        };
        Ok(Arc::new(
            Connector::build(
                self.config,
                options,
                self.refresher,
                self.refresher_builder,
                problems,
            )
            .await?,
        ))
    }
}

/// The task that keeps `slot` authenticated and live until `stopped`'s
/// sender drops; it checks a link that stopped answering within twice the
/// response timeout.
fn spawn_upkeep(
    connector: &Arc<Connector>,
    slot: &Arc<Slot>,
    response_timeout: Option<Duration>,
    stopped: &watch::Receiver<()>,
) {
    tokio::spawn(upkeep(
        Arc::clone(connector),
        Arc::clone(slot),
        2 * response_timeout.unwrap_or(SharedConnectionBuilder::DEFAULT_RESPONSE_TIMEOUT),
        stopped.clone(),
    ));
}
