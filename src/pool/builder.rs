//! Building a [`Pool`]: its settings and their documented defaults.

use std::fmt;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use super::Pool;
use crate::config::ConnectionConfig;
use crate::connector::{Connector, ConnectorOptions, default_cluster};
use crate::error::{Error, Problems};
use crate::manager::Manager;
use crate::refresher::{TokenRefresher, TokenRefresherBuilder};

/// Builds a [`Pool`]. Defaults:
///
/// | setting | default |
/// |---|---|
/// | [`max_size`](Self::max_size) | 10 connections |
/// | [`min_idle`](Self::min_idle) | none kept open |
/// | [`connection_timeout`](Self::connection_timeout) | 30 s waiting in [`Pool::get`] |
/// | [`connect_timeout`](Self::connect_timeout) | 10 s per attempt (TCP, TLS, authentication) |
/// | [`response_timeout`](Self::response_timeout) | 1 s per command, plus its block time for blocking commands |
/// | [`idle_timeout`](Self::idle_timeout) | 10 min |
/// | [`max_concurrent_connects`](Self::max_concurrent_connects) | 4 attempts at once |
/// | [`reconnect_spread`](Self::reconnect_spread) | replacements after a loss spread over 20 s, the first within 2 s |
/// | [`cluster_mode`](Self::cluster_mode) | on for serverless caches and MemoryDB, off otherwise |
/// | credentials (IAM) | the AWS default chain |
///
/// Token rotation, re-authentication and the connection deadline come from the
/// configuration's [`Lifecycle`](crate::Lifecycle).
#[must_use]
pub struct PoolBuilder {
    config: ConnectionConfig,
    max_size: u32,
    min_idle: Option<u32>,
    connection_timeout: Duration,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_concurrent_connects: usize,
    reconnect_spread: Duration,
    #[cfg(feature = "test-util")]
    fake: Option<crate::test_util::Transport>,
    cluster: Option<bool>,
    refresher: Option<TokenRefresher>,
    refresher_builder: TokenRefresherBuilder,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("config", &self.config)
            .field("max_size", &self.max_size)
            .field("min_idle", &self.min_idle)
            .field("connection_timeout", &self.connection_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_concurrent_connects", &self.max_concurrent_connects)
            .field("reconnect_spread", &self.reconnect_spread)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    /// Connections in the pool at most, by default.
    pub const DEFAULT_MAX_SIZE: u32 = 10;
    /// How long [`Pool::get`] waits for a connection, by default.
    pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long one connection attempt (TCP, TLS, authentication) may take,
    /// by default.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long a command may wait for its reply, by default (plus its
    /// block time, for blocking commands).
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
    /// An idle connection is closed after this long, by default.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
    /// Connection attempts in flight at once, by default.
    pub const DEFAULT_MAX_CONCURRENT_CONNECTS: usize = 4;
    /// ElastiCache's limit of client connections per node (`maxclients`):
    /// the largest `max_size`.
    pub const MAX_SIZE_LIMIT: u32 = 65_000;

    pub(super) fn new(config: ConnectionConfig) -> Self {
        Self {
            config,
            max_size: Self::DEFAULT_MAX_SIZE,
            min_idle: None,
            connection_timeout: Self::DEFAULT_CONNECTION_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Some(Self::DEFAULT_RESPONSE_TIMEOUT),
            idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
            max_concurrent_connects: Self::DEFAULT_MAX_CONCURRENT_CONNECTS,
            reconnect_spread: crate::connector::DEFAULT_RECONNECT_SPREAD,
            #[cfg(feature = "test-util")]
            fake: None,
            cluster: None,
            refresher: None,
            refresher_builder: TokenRefresher::builder(),
        }
    }

    /// Connections in the pool at most (1 to 65,000). Defaults to 10.
    pub fn max_size(mut self, max_size: u32) -> Self {
        self.max_size = max_size;
        self
    }

    /// Idle connections kept open (at most `max_size`). Defaults to none.
    pub fn min_idle(mut self, min_idle: Option<u32>) -> Self {
        self.min_idle = min_idle;
        self
    }

    /// How long [`Pool::get`] waits for a connection. Defaults to 30 s.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long one connection attempt may take. Defaults to 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a command waits for its reply (`None`: forever); blocking
    /// commands wait their block time on top. Defaults to 1 s.
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Idle connections are closed after this long (`None`: never). Defaults
    /// to 10 minutes.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
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

    /// Cluster mode (redis-rs's cluster client) or standalone. Defaults to
    /// cluster mode for serverless caches and MemoryDB clusters, standalone
    /// otherwise (cluster-mode-enabled replication groups need `true`).
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

    /// IAM: use this refresher (shared with other pools or clients) instead
    /// of making one. It must sign for the configuration's target, user id
    /// and region. Its own token refresh interval applies, and in cluster
    /// mode its re-auth time too (redis-rs takes re-auth tokens from it).
    pub fn refresher(mut self, refresher: TokenRefresher) -> Self {
        self.refresher = Some(refresher);
        self
    }

    /// Validates the settings, makes the refresher (IAM) and the TLS
    /// configuration, and opens one connection, so that a misconfiguration
    /// fails here, with its precise error, rather than at the first command.
    pub async fn build(self) -> Result<Pool, Error> {
        let pool = self.build_lazy().await?;
        let conn = bb8::ManageConnection::connect(&pool.manager).await?;
        // Capacity is at least one, so this only fails if a concurrent get()
        // filled the pool first; the connection is then not needed.
        let _ = pool.inner.add(conn);
        Ok(pool)
    }

    /// [`build`](Self::build) without the first connection: connections
    /// open when first needed. Every problem in the settings is reported at
    /// once (see [`Error::parameters`]).
    pub async fn build_lazy(self) -> Result<Pool, Error> {
        let mut problems = Problems::default();
        self.check(&mut problems);
        let options = ConnectorOptions {
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            max_concurrent_connects: self.max_concurrent_connects,
            reconnect_spread: self.reconnect_spread,
            #[cfg(feature = "test-util")]
            fake: self.fake,
            holder: "pool",
            cluster: self
                .cluster
                .unwrap_or_else(|| default_cluster(&self.config)),
        };
        let connector = Connector::build(
            self.config,
            options,
            self.refresher,
            self.refresher_builder,
            problems,
        )
        .await?;
        let manager = Manager::new(connector);
        let inner = bb8::Pool::builder()
            .max_size(self.max_size)
            .min_idle(self.min_idle)
            .connection_timeout(self.connection_timeout)
            .idle_timeout(self.idle_timeout)
            // Connections have their own, jittered deadlines.
            .max_lifetime(None)
            .reaper_rate(
                self.idle_timeout
                    .unwrap_or(Duration::MAX)
                    .clamp(Duration::from_millis(100), Duration::from_secs(30)),
            )
            .build_unchecked(manager.clone());
        Ok(Pool { inner, manager })
    }

    /// Every value bb8 or the server would refuse (or panic on); the
    /// connector checks its own (`max_concurrent_connects`, TLS, cluster).
    fn check(&self, problems: &mut Problems) {
        if self.max_size == 0 || self.max_size > Self::MAX_SIZE_LIMIT {
            problems.push(Error::config(
                "max_size",
                format!(
                    "max_size must be 1 to {} (a node's connection limit); got {}",
                    Self::MAX_SIZE_LIMIT,
                    self.max_size
                ),
            ));
        }
        if let Some(min_idle) = self.min_idle
            && min_idle > self.max_size
        {
            problems.push(Error::config(
                "min_idle",
                format!(
                    "min_idle ({min_idle}) must not be more than max_size ({})",
                    self.max_size
                ),
            ));
        }
        problems.check_positive(&[
            ("connection_timeout", Some(self.connection_timeout)),
            ("connect_timeout", Some(self.connect_timeout)),
            ("response_timeout", self.response_timeout),
            ("idle_timeout", self.idle_timeout),
        ]);
    }
}
