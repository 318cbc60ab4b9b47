//! Opening one authenticated connection, whatever holds it (the pool today;
//! nothing here knows of bb8).
//!
//! A [`Connector`] is built once from a validated [`ConnectionConfig`],
//! first checked (`checked`: the TLS files read, cluster settings and a given
//! refresher checked, every problem at once, nothing started), then made
//! with the refresher whose tokens authenticate (with IAM). Each [`connect`](Connector::connect) goes through the
//! [`Gate`], is bounded by the connect timeout, and is recorded in
//! [`Attempts`]:
//!
//! * **standalone** (`standalone`): TCP, TLS, `HELLO 3 AUTH <user> <token>`
//!   (`AUTH` on servers without `HELLO`): one IAM authentication per
//!   connection;
//! * **cluster**: redis-rs's cluster client, with the refresher as its
//!   credentials provider.
//!
//! After a refused authentication, a new token is signed for the next
//! attempt (bursts of refusals share one signing).
//!
//! A connection comes back idle, as a pool holds it between borrowers: its
//! holder checks it out (`Life::check_out`) before the first command, and
//! its error texts speak to a pool's borrower ("get another connection").

mod attempts;
mod checked;
mod standalone;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, TlsCertificates};

pub(crate) use attempts::Attempts;
pub(crate) use checked::Checked;
use checked::CheckedTransport;
use standalone::Refusal;

use crate::clock::monotonic_now;
use crate::config::{Auth, ConnectionConfig, IamAuth};
use crate::connection::{ClusterSlot, Connection, Inner, Settings, cluster_upkeep};
use crate::counters::{Counters, bump};
use crate::error::{Error, ErrorKind, Problems, display_chain};
use crate::gate::Gate;
use crate::life::Life;
use crate::reauth::Reauthenticator;
use crate::redis_auth::InitialAuthOnly;
use crate::refresher::{TokenRefresher, TokenRefresherBuilder};
use crate::replies;
use crate::socket;
use crate::target::TargetKind;
use crate::telemetry::{self, Telemetry};
use crate::tls::TlsConnector;

/// How long replacements after a loss are spread over, by default (see
/// `gate`).
pub(crate) const DEFAULT_RECONNECT_SPREAD: Duration = Duration::from_secs(20);
/// The longest reconnect spread.
pub(crate) const MAX_RECONNECT_SPREAD: Duration = Duration::from_secs(300);

/// How connections are opened and timed, beside the configuration.
#[derive(Clone, Debug)]
pub(crate) struct ConnectorOptions {
    /// One attempt: TCP, TLS and authentication.
    pub(crate) connect_timeout: Duration,
    /// A reply to a command that does not block.
    pub(crate) response_timeout: Option<Duration>,
    /// Attempts in flight at once.
    pub(crate) max_concurrent_connects: usize,
    /// Replacements after a loss are spread over this long (see `gate`).
    pub(crate) reconnect_spread: Duration,
    /// In-memory connections to a fake server instead of TCP and TLS.
    #[cfg(feature = "test-util")]
    pub(crate) fake: Option<crate::test_util::Transport>,
    /// What holds the connections (`pool`, `shared`, `subscriber`,
    /// `blocking`), named in metrics.
    pub(crate) holder: &'static str,
    /// redis-rs's cluster client, or one standalone connection. With IAM,
    /// redis-rs authenticates each node connection it opens; re-authentication
    /// is the holder's (`AUTH` to every node on the lifecycle's schedule,
    /// each answer counted).
    pub(crate) cluster: bool,
}

/// A connection just opened and authenticated, not yet in any holder.
pub(crate) struct Opened {
    pub(crate) raw: Raw,
    pub(crate) life: Arc<Life>,
    /// It speaks RESP3.
    pub(crate) resp3: bool,
}

/// Where a connection's pushes go.
pub(crate) type Pushes = tokio::sync::mpsc::UnboundedSender<redis::PushInfo>;

/// redis-rs's handle of an opened connection.
pub(crate) enum Raw {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Opens authenticated connections to one endpoint.
pub(crate) struct Connector {
    config: ConnectionConfig,
    /// With IAM: signs the tokens.
    refresher: Option<TokenRefresher>,
    endpoint: String,
    transport: Transport,
    connect_timeout: Duration,
    gate: Arc<Gate>,
    #[cfg(feature = "test-util")]
    fake: Option<crate::test_util::Transport>,
    counters: Arc<Counters>,
    /// What every connection shares: reply deadlines, the database,
    /// re-authentication.
    settings: Arc<Settings>,
    attempts: Attempts,
}

enum Transport {
    Standalone {
        tls: Option<TlsConnector>,
        /// Set once a server refused `HELLO`: authenticate with `AUTH`.
        resp2: AtomicBool,
    },
    Cluster(Box<ClusterClient>),
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth_mode())
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// The connector for checked settings, with `refresher`: required with
    /// IAM, refused without (see [`Checked::new`]).
    pub(crate) fn new(checked: Checked, refresher: Option<TokenRefresher>) -> Result<Self, Error> {
        let Checked {
            config,
            options,
            transport,
        } = checked;
        match (config.auth(), &refresher) {
            (Auth::Iam(_), None) => {
                return Err(Error::config(
                    "refresher",
                    "IAM authentication needs a token refresher",
                ));
            }
            (auth, Some(refresher)) => check_refresher(refresher, auth)?,
            (_, None) => {}
        }
        let transport = match transport {
            CheckedTransport::Standalone(tls) => Transport::Standalone {
                tls,
                resp2: AtomicBool::new(false),
            },
            CheckedTransport::Cluster(certificates) => {
                Transport::Cluster(Box::new(cluster_client(
                    &config,
                    certificates,
                    refresher.as_ref(),
                    options.connect_timeout,
                )?))
            }
        };
        let endpoint = config.endpoint();
        let counters = Arc::new(Counters::new(Telemetry::connections(
            options.holder,
            config.host(),
            config.port(),
        )));
        let reauthenticator = match (config.auth(), &refresher) {
            (Auth::Iam(iam), Some(refresher)) => Some(Reauthenticator::new(
                refresher.clone(),
                iam.clone(),
                endpoint.clone(),
                *config.lifecycle(),
                Arc::clone(&counters),
            )),
            _ => None,
        };
        let settings = Arc::new(Settings {
            response_timeout: options.response_timeout,
            auth_timeout: options.connect_timeout,
            db: config.db(),
            reauthenticator,
            counters: Arc::clone(&counters),
            lifecycle: *config.lifecycle(),
        });
        Ok(Self {
            config,
            refresher,
            endpoint,
            transport,
            connect_timeout: options.connect_timeout,
            gate: Arc::new(Gate::new(
                options.max_concurrent_connects,
                options.reconnect_spread,
            )),
            #[cfg(feature = "test-util")]
            fake: options.fake,
            counters,
            settings,
            attempts: Attempts::default(),
        })
    }

    /// What every connection shares: reply deadlines, the database,
    /// re-authentication.
    pub(crate) fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// The connector a holder's builder asks for: `config` and `options`
    /// checked (beside the holder's own `problems`, all reported at once),
    /// then the refresher, given or made with `refresher_builder` for the
    /// configuration's target, user id, region and lifecycle, started only
    /// for settings that passed.
    pub(crate) async fn build(
        config: ConnectionConfig,
        options: ConnectorOptions,
        given: Option<TokenRefresher>,
        refresher_builder: TokenRefresherBuilder,
        mut problems: Problems,
    ) -> Result<Self, Error> {
        let (given, to_start) = match (config.auth(), given) {
            (_, Some(refresher)) => (Some(refresher), None),
            (Auth::Iam(iam), None) => (
                None,
                refresher_builder
                    .target(iam.target.clone())
                    .user_id(iam.user_id.as_str())
                    .region(iam.region.as_str())
                    .token_refresh_interval(config.lifecycle().token_refresh_interval)
                    .reauth_after(config.lifecycle().reauth_after)
                    .check(&mut problems),
            ),
            (_, None) => (None, None),
        };
        let checked = Checked::new(config, given.as_ref(), options, &mut problems);
        let checked = problems.finish(checked)?;
        let refresher = match to_start {
            Some(checked) => Some(checked.start().await),
            None => given,
        };
        Connector::new(checked, refresher)
    }

    pub(crate) fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// How long one connection attempt may take.
    pub(crate) fn connect_timeout(&self) -> std::time::Duration {
        self.connect_timeout
    }

    /// `host:port`.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// With IAM, the refresher that signs the tokens.
    pub(crate) fn refresher(&self) -> Option<&TokenRefresher> {
        self.refresher.as_ref()
    }

    /// The refresher, for an IAM authentication ([`new`](Self::new) made sure
    /// there is one).
    fn iam_refresher(&self) -> Result<&TokenRefresher, Error> {
        self.refresher
            .as_ref()
            .ok_or_else(|| Error::config("refresher", "IAM authentication needs a token refresher"))
    }

    /// With IAM, what tokens are signed for (named in refusals' checklist).
    pub(crate) fn iam(&self) -> Option<&IamAuth> {
        match self.config.auth() {
            Auth::Iam(iam) => Some(iam),
            _ => None,
        }
    }

    /// `none`, `password` or `iam`.
    pub(crate) fn auth_mode(&self) -> &'static str {
        match self.config.auth() {
            Auth::None => "none",
            Auth::Password { .. } => "password",
            Auth::Iam(_) => "iam",
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.transport, Transport::Cluster(_))
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The labels of its metrics.
    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.counters.telemetry
    }

    /// A connection was closed by the server or the network: counted, and
    /// the attempts that replace connections in the next while are spread
    /// (see `gate`).
    pub(crate) fn lost(&self) {
        bump(&self.counters.closed_by_server);
        self.gate.lost();
    }

    pub(crate) fn attempts(&self) -> &Attempts {
        &self.attempts
    }

    /// One connection attempt for the pool, through the gate, recorded.
    pub(crate) async fn connect(&self) -> Result<Connection, Error> {
        let opened = self.open_connection().await?;
        let inner = match opened.raw {
            Raw::Standalone(c) => Inner::Standalone(c),
            Raw::Cluster(c) => {
                let slot = ClusterSlot::new(c, self.config.lifecycle());
                tokio::spawn(cluster_upkeep(
                    slot.clone(),
                    Arc::clone(&opened.life),
                    Arc::clone(&self.settings),
                ));
                Inner::Cluster(slot)
            }
        };
        Ok(Connection::new(
            inner,
            opened.life,
            Arc::clone(&self.settings),
            opened.resp3,
        ))
    }

    /// One connection attempt, through the gate, recorded.
    pub(crate) async fn open_connection(&self) -> Result<Opened, Error> {
        self.open_connection_with(None).await
    }

    /// One connection attempt, through the gate, recorded; the server's
    /// pushes (pub/sub messages, disconnection notices) go to `pushes`.
    pub(crate) async fn open_connection_with(
        &self,
        pushes: Option<Pushes>,
    ) -> Result<Opened, Error> {
        let permit = self.gate.enter().await;
        let started = telemetry::ENABLED.then(monotonic_now);
        let attempt = tokio::time::timeout(self.connect_timeout, self.open(pushes));
        let result = match attempt.await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Io,
                format!(
                    "connecting to {} timed out after {:?}: check the endpoint, port and \
                     network path (security groups)",
                    self.endpoint, self.connect_timeout
                ),
            )),
        };
        drop(permit);
        match &result {
            Ok(_) => {
                self.gate.succeeded();
                bump(&self.counters.connects);
                if let Some(started) = started {
                    self.counters.telemetry.time(
                        telemetry::CREATE_TIME,
                        &[],
                        monotonic_now().saturating_duration_since(started),
                    );
                }
                self.attempts.succeeded();
                tracing::debug!(endpoint = %self.endpoint, "connection opened");
            }
            Err(err) => {
                tracing::warn!(endpoint = %self.endpoint, error = %display_chain(err), "connection attempt failed");
                self.gate.failed();
                bump(&self.counters.connect_failures);
                // Wakes callers waiting on attempts: after the log line.
                self.attempts.failed(err);
                if err.kind() == ErrorKind::AuthenticationRefused
                    && let Some(refresher) = &self.refresher
                {
                    // The next attempt uses a newly signed token; bursts of
                    // refusals share one signing.
                    let _ = refresher.refresh_now().await;
                }
            }
        }
        result
    }

    async fn open(&self, pushes: Option<Pushes>) -> Result<Opened, Error> {
        match &self.transport {
            Transport::Cluster(client) => {
                // redis-rs takes the token from the refresher's stream and
                // would report a missing one as an I/O error: ask first, so
                // that a credentials failure is reported as one.
                if let Some(refresher) = &self.refresher {
                    refresher.token().await?;
                }
                let inner = match pushes {
                    Some(pushes) => {
                        let config = redis::cluster::ClusterConfig::new().set_push_sender(pushes);
                        client.get_async_connection_with_config(config).await
                    }
                    None => client.get_async_connection().await,
                }
                .map_err(|e| replies::to_error(e, self.iam(), &self.endpoint))?;
                Ok(Opened {
                    raw: Raw::Cluster(inner),
                    life: Arc::new(Life::new(self.config.lifecycle())),
                    resp3: true,
                })
            }
            Transport::Standalone { tls, resp2 } => {
                let protocol = if resp2.load(Ordering::Relaxed) {
                    ProtocolVersion::RESP2
                } else {
                    ProtocolVersion::RESP3
                };
                match self
                    .open_standalone(tls.as_ref(), protocol, pushes.clone())
                    .await
                {
                    Err(Refusal::NoHello) => {
                        tracing::info!(endpoint = %self.endpoint, "server has no HELLO; authenticating with AUTH");
                        resp2.store(true, Ordering::Relaxed);
                        self.open_standalone(tls.as_ref(), ProtocolVersion::RESP2, pushes)
                            .await
                            .map_err(Refusal::into_error)
                    }
                    other => other.map_err(Refusal::into_error),
                }
            }
        }
    }
}

/// Cluster mode by default: for serverless caches and MemoryDB clusters.
pub(crate) fn default_cluster(config: &ConnectionConfig) -> bool {
    match config.auth() {
        Auth::Iam(iam) => matches!(
            iam.target.kind(),
            TargetKind::ServerlessCache | TargetKind::MemoryDbCluster
        ),
        _ => false,
    }
}

/// A refresher must sign for the configuration's target, user and region,
/// and is only for IAM authentication.
fn check_refresher(refresher: &TokenRefresher, auth: &Auth) -> Result<(), Error> {
    let Auth::Iam(iam) = auth else {
        return Err(Error::config(
            "refresher",
            "a token refresher was given, but the configuration does not use IAM \
             authentication (USE_IAM_AUTH=true, or a target builder method)",
        ));
    };
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

/// redis-rs's cluster client for `config`: the endpoint as its seed node,
/// RESP3, the connect timeout, TLS with the same roots and client
/// certificate (read when checked), the socket settings, and the refresher
/// (or password) as its credentials (the refresher only authenticates new
/// node connections: their holder re-authenticates them). No response timeout: each pooled
/// connection times its commands itself (blocking commands get their block
/// time).
fn cluster_client(
    config: &ConnectionConfig,
    certificates: Option<TlsCertificates>,
    refresher: Option<&TokenRefresher>,
    connect_timeout: Duration,
) -> Result<ClusterClient, Error> {
    let scheme = if config.tls().is_some() {
        "rediss"
    } else {
        "redis"
    };
    let node = format!("{scheme}://{}:{}", config.host(), config.port());
    let mut builder = ClusterClientBuilder::new(vec![node])
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(connect_timeout)
        .tcp_settings(socket::redis_settings());
    if let Some(certificates) = certificates {
        builder = builder.certs(certificates);
    }
    builder = match (config.auth(), refresher) {
        (Auth::Password { username, password }, _) => {
            let builder = builder.password(password.as_str());
            match username {
                Some(username) => builder.username(username),
                None => builder,
            }
        }
        (Auth::Iam(_), Some(refresher)) => {
            builder.set_credentials_provider(InitialAuthOnly(refresher.clone()))
        }
        _ => builder,
    };
    builder.build().map_err(|e| {
        Error::config(
            config.sources().host,
            "redis-rs refused the cluster settings",
        )
        .with_source(e)
    })
}
