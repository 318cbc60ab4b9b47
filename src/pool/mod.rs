//! The pool: a bb8 pool of authenticated connections, its builder and its
//! documented defaults.

use std::fmt;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use bb8::{PooledConnection, RunError};
use redis::ProtocolVersion;
use redis::cluster::ClusterClientBuilder;

use crate::config::{Auth, ConnectionConfig};
use crate::error::{Error, ErrorKind, display_chain};
use crate::health::{self, Counts, Health};
use crate::manager::{AuthSource, Manager, Shared, Transport};
use crate::refresher::{TokenRefresher, TokenRefresherBuilder};
use crate::socket;
use crate::target::TargetKind;
use crate::tls::{self, TlsConnector};

/// Connections in the pool at most, by default.
pub const DEFAULT_MAX_SIZE: u32 = 10;
/// How long [`Pool::get`] waits for a connection, by default.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one connection attempt (TCP, TLS, authentication) may take, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a command may wait for its reply, by default.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// An idle connection is closed after this long, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Connection attempts in flight at once, by default.
pub const DEFAULT_MAX_CONCURRENT_CONNECTS: usize = 4;

/// ElastiCache's limit of client connections per node (`maxclients`): no
/// pool can use more.
const MAX_CONNECTIONS: u32 = 65_000;

/// A pool of connections that are always authenticated and never meet the
/// 12-hour cut. Cheap to clone; clones share the pool.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use elasticache_iam::{ConnectionConfig, Pool};
/// use redis::AsyncCommands;
///
/// let config = ConnectionConfig::from_env()?; // REDIS_URL, USE_IAM_AUTH, ...
/// let pool = Pool::builder(config).build().await?;
/// let mut conn = pool.get().await?;
/// let _: () = conn.set_ex("greeting", "hello", 60).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    pub(crate) inner: bb8::Pool<Manager>,
    pub(crate) manager: Manager,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("manager", &self.manager)
            .field("state", &self.inner.state())
            .finish()
    }
}

impl Pool {
    /// A builder for a pool connecting as `config` says.
    pub fn builder(config: ConnectionConfig) -> PoolBuilder {
        PoolBuilder::new(config)
    }

    /// A connection, authenticated, within its lifetime, and clean (as a new
    /// one would be).
    ///
    /// Waits for a free connection or a new one, up to the connection timeout.
    /// A caller that needs a new connection (none idle, room for one) gets a
    /// failure that waiting will not fix (authentication refused, TLS,
    /// credentials, configuration) at once; otherwise, at the timeout, the
    /// last attempt's error (kind [`Throttled`](ErrorKind::Throttled) or
    /// [`Io`](ErrorKind::Io)). A caller that found every connection in use
    /// waits for one to be given back, whatever new connections do meanwhile
    /// (unless none is left in use), and at the timeout is told the pool was
    /// busy (kind [`Io`](ErrorKind::Io)).
    pub async fn get(&self) -> Result<PooledConnection<'_, Manager>, Error> {
        let shared = &self.manager.shared;
        let max_size = self.inner.config().max_size;
        let mut failures = shared.failures.subscribe();
        let seen = *failures.borrow_and_update();
        let state = self.inner.state();
        // Every connection in use: this caller waits for one to be given back,
        // and connection failures do not concern it while some are in use.
        let waits_for_busy_pool = state.idle_connections == 0 && state.connections >= max_size;
        // A caller that needs a new connection while the last attempt failed
        // hopelessly gets that error at once; its get() still asks bb8 for a
        // connection, so attempts (paced by the backoff) go on and the pool
        // recovers by itself.
        let already = shared
            .failing()
            .filter(|e| hopeless(e) && !waits_for_busy_pool && needs_new(&state, max_size));
        let hopeless_failure = async {
            if let Some(err) = already {
                return err;
            }
            loop {
                if failures.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let Some(err) = shared.last_failure().filter(hopeless) else {
                    continue;
                };
                let now = self.inner.state();
                let in_use = now.connections.saturating_sub(now.idle_connections);
                let concerns_caller = if waits_for_busy_pool {
                    // Nothing left that could be given back.
                    in_use == 0
                } else {
                    needs_new(&now, max_size)
                };
                if concerns_caller {
                    return err;
                }
            }
        };
        tokio::select! {
            biased;
            got = self.inner.get() => match got {
                Ok(conn) => Ok(conn),
                Err(RunError::User(err)) => Err(err),
                Err(RunError::TimedOut) => Err(self.timed_out(seen, waits_for_busy_pool)),
            },
            err = hopeless_failure => Err(err),
        }
    }

    fn timed_out(&self, seen: u64, waited_for_busy_pool: bool) -> Error {
        let shared = &self.manager.shared;
        let failed_meanwhile = (*shared.failures.borrow() != seen)
            .then(|| shared.last_failure())
            .flatten();
        if !waited_for_busy_pool && let Some(err) = failed_meanwhile {
            return err;
        }
        let state = self.inner.state();
        let also = failed_meanwhile
            .map(|err| {
                format!(
                    "; opening a new one failed meanwhile: {}",
                    display_chain(&err)
                )
            })
            .unwrap_or_default();
        Error::new(
            ErrorKind::Io,
            format!(
                "the pool was busy: no connection to {} became free within the connection \
                 timeout ({} of {} connections in use{also}): raise max_size, or give \
                 connections back sooner",
                shared.endpoint,
                state.connections.saturating_sub(state.idle_connections),
                self.inner.config().max_size,
            ),
        )
    }

    /// The pool's counts since it started (connections opened, re-auths,
    /// recycles, ...), read without I/O: cheap enough for a metrics scrape
    /// or a tight loop. [`health`](Self::health) includes them.
    pub fn counts(&self) -> Counts {
        health::counts(self)
    }

    /// The pool's, the token's and the server's state, for a `/health`
    /// endpoint: it runs `PING` and `INFO server` on a pooled
    /// connection, waiting at most 5 s for one. Contains no secret.
    pub async fn health(&self) -> Health {
        health::report(self).await
    }

    /// The token refresher, with IAM authentication.
    pub fn refresher(&self) -> Option<&TokenRefresher> {
        match &self.manager.shared.auth {
            AuthSource::Iam { refresher, .. } => Some(refresher),
            _ => None,
        }
    }

    /// The configuration the pool connects with.
    pub fn config(&self) -> &ConnectionConfig {
        &self.manager.shared.config
    }

    /// Whether connections are cluster-mode connections.
    pub fn is_cluster(&self) -> bool {
        matches!(self.manager.shared.transport, Transport::Cluster(_))
    }

    /// bb8's view: connections open and idle, and its statistics.
    pub fn state(&self) -> bb8::State {
        self.inner.state()
    }
}

/// Builds a [`Pool`]. Defaults:
///
/// | setting | default |
/// |---|---|
/// | [`max_size`](Self::max_size) | 10 connections |
/// | [`min_idle`](Self::min_idle) | none kept open |
/// | [`connection_timeout`](Self::connection_timeout) | 30 s waiting in [`Pool::get`] |
/// | [`connect_timeout`](Self::connect_timeout) | 10 s per attempt (TCP, TLS, authentication) |
/// | [`response_timeout`](Self::response_timeout) | 1 s per command |
/// | [`idle_timeout`](Self::idle_timeout) | 10 min |
/// | [`max_concurrent_connects`](Self::max_concurrent_connects) | 4 attempts at once |
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
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    fn new(config: ConnectionConfig) -> Self {
        Self {
            config,
            max_size: DEFAULT_MAX_SIZE,
            min_idle: None,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_concurrent_connects: DEFAULT_MAX_CONCURRENT_CONNECTS,
            cluster: None,
            refresher: None,
            refresher_builder: TokenRefresher::builder(),
        }
    }

    /// Connections in the pool at most. Defaults to 10.
    pub fn max_size(mut self, max_size: u32) -> Self {
        self.max_size = max_size;
        self
    }

    /// Idle connections kept open. Defaults to none.
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

    /// How long a command waits for its reply (`None`: forever). Defaults to 1 s.
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

    /// Cluster mode (redis-rs's cluster client) or standalone. Defaults to
    /// cluster mode for serverless caches and MemoryDB clusters, standalone
    /// otherwise (cluster-mode-enabled replication groups need `true`).
    pub fn cluster_mode(mut self, on: bool) -> Self {
        self.cluster = Some(on);
        self
    }

    /// IAM: the credentials that sign tokens, instead of the default chain.
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.refresher_builder = self.refresher_builder.credentials_provider(provider);
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
    /// and region. Its own rotation interval applies, and in cluster mode its
    /// re-auth time too (redis-rs takes re-auth tokens from it).
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
    /// open when first needed.
    pub async fn build_lazy(self) -> Result<Pool, Error> {
        if self.max_size == 0 || self.max_size > MAX_CONNECTIONS {
            return Err(Error::config(
                "max_size",
                format!(
                    "max_size must be 1 to {MAX_CONNECTIONS} (a node's connection limit); got {}",
                    self.max_size
                ),
            ));
        }
        if self.max_concurrent_connects == 0
            || self.max_concurrent_connects > tokio::sync::Semaphore::MAX_PERMITS
        {
            return Err(Error::config(
                "max_concurrent_connects",
                format!(
                    "max_concurrent_connects must be at least 1 and at most {}; got {}",
                    tokio::sync::Semaphore::MAX_PERMITS,
                    self.max_concurrent_connects
                ),
            ));
        }
        if let Some(min_idle) = self.min_idle
            && min_idle > self.max_size
        {
            return Err(Error::config(
                "min_idle",
                format!(
                    "min_idle ({min_idle}) must not be more than max_size ({})",
                    self.max_size
                ),
            ));
        }
        for (parameter, value) in [
            ("connection_timeout", Some(self.connection_timeout)),
            ("connect_timeout", Some(self.connect_timeout)),
            ("response_timeout", self.response_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value == Some(Duration::ZERO) {
                return Err(Error::config(
                    parameter,
                    format!("{parameter} must be more than zero"),
                ));
            }
        }
        let config = self.config;
        let cluster = self.cluster.unwrap_or(match config.auth() {
            Auth::Iam(iam) => matches!(
                iam.target.kind(),
                TargetKind::ServerlessCache | TargetKind::MemoryDbCluster
            ),
            _ => false,
        });
        if self.refresher.is_some() && !matches!(config.auth(), Auth::Iam(_)) {
            return Err(Error::config(
                "refresher",
                "a token refresher was given, but the configuration does not use IAM \
                 authentication (USE_IAM_AUTH=true, or an iam_* builder method)",
            ));
        }
        let auth = match config.auth() {
            Auth::None => AuthSource::None,
            Auth::Password { username, password } => AuthSource::Password {
                username: username.clone(),
                password: password.clone(),
            },
            Auth::Iam(iam) => {
                let refresher = match self.refresher {
                    Some(refresher) => {
                        check_refresher(&refresher, iam)?;
                        refresher
                    }
                    None => {
                        self.refresher_builder
                            .target(iam.target.clone())
                            .user_id(iam.user_id.as_str())
                            .region(iam.region.as_str())
                            .rotation_interval(config.lifecycle().token_refresh_interval)
                            .reauth_after(config.lifecycle().reauth_after)
                            .build()
                            .await?
                    }
                };
                AuthSource::Iam {
                    refresher,
                    iam: iam.clone(),
                }
            }
        };
        let transport = if cluster {
            cluster_transport(&config, &auth, self.connect_timeout)?
        } else {
            Transport::Standalone {
                tls: config.tls().map(TlsConnector::new).transpose()?,
                resp2: Default::default(),
            }
        };
        let manager = Manager::new(Shared::new(
            config,
            auth,
            transport,
            self.connect_timeout,
            self.response_timeout,
            self.max_concurrent_connects,
        ));
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
}

/// Whether a caller can only be served by a new connection: none idle, and
/// room to open one.
fn needs_new(state: &bb8::State, max_size: u32) -> bool {
    state.idle_connections == 0 && state.connections < max_size
}

/// Failures that waiting for another attempt will not fix soon.
fn hopeless(err: &Error) -> bool {
    !matches!(err.kind(), ErrorKind::Throttled | ErrorKind::Io)
}

fn check_refresher(refresher: &TokenRefresher, iam: &crate::config::IamAuth) -> Result<(), Error> {
    let signer = refresher.signer();
    if signer.target() != &iam.target
        || signer.user_id() != &iam.user_id
        || signer.region() != iam.region.as_str()
    {
        return Err(Error::config(
            "refresher",
            format!(
                "the refresher signs for {} as {} in {}, but the configuration is for {} as {} \
                 in {}",
                signer.target(),
                signer.user_id(),
                signer.region(),
                iam.target,
                iam.user_id,
                iam.region
            ),
        ));
    }
    Ok(())
}

fn cluster_transport(
    config: &ConnectionConfig,
    auth: &AuthSource,
    connect_timeout: Duration,
) -> Result<Transport, Error> {
    if config.db() != 0 {
        return Err(Error::config(
            "db",
            "cluster mode has only database 0: remove the database number (REDIS_DB or the URL's \
             path), or use standalone mode",
        ));
    }
    let scheme = if config.tls().is_some() {
        "rediss"
    } else {
        "redis"
    };
    let node = format!("{scheme}://{}:{}", config.host(), config.port());
    // No response timeout here: each pooled connection times its commands
    // itself (blocking commands get their block time).
    let mut builder = ClusterClientBuilder::new(vec![node])
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(connect_timeout)
        .tcp_settings(socket::redis_settings());
    if let Some(options) = config.tls() {
        builder = builder.certs(tls::redis_certificates(options)?);
    }
    builder = match auth {
        AuthSource::None => builder,
        AuthSource::Password { username, password } => {
            let builder = builder.password(password.as_str());
            match username {
                Some(username) => builder.username(username),
                None => builder,
            }
        }
        AuthSource::Iam { refresher, .. } => builder.set_credentials_provider(refresher.clone()),
    };
    let client = builder.build().map_err(|e| {
        Error::config("host", "redis-rs refused the cluster settings").with_source(e)
    })?;
    Ok(Transport::Cluster(Box::new(client)))
}
