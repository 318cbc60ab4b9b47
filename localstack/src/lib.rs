//! A local Amazon ElastiCache stand-in, for testing IAM authentication end to
//! end on one machine with no AWS account.
//!
//! A [`Stack`] runs, in one process:
//!
//! - an **upstream** `valkey-server` (or `redis-server`) on a free loopback port;
//! - the **front**: a TLS listener (certificate made at start-up, CA written to a
//!   file) and RESP proxy that authenticates every connection as ElastiCache
//!   does: `AUTH`/`HELLO ... AUTH` first, the IAM token's SigV4 signature
//!   recomputed from the stack's known credentials, every claim checked (see
//!   [`verify::Refusal`] for the reasons counted), connections closed once their
//!   last authentication is older than the max auth age (the 12-hour rule,
//!   scalable to seconds), and the serverless cluster topology;
//! - **mock AWS credential endpoints** (ECS container credentials, EKS Pod
//!   Identity, STS `AssumeRoleWithWebIdentity`) issuing temporary credentials the
//!   front accepts until they expire, and an **admin endpoint** for counters and
//!   faults.
//!
//! | module | concern |
//! |---|---|
//! | `upstream` | the real server process |
//! | `tls` | CA and server certificate, rustls configuration |
//! | `resp` | command and reply framing |
//! | `verify` | IAM token verification |
//! | `registry` | known credentials and allowed principals |
//! | `front` | the TLS RESP proxy: authentication, 12-hour rule, topology |
//! | `stats`, `faults` | counters and injected faults |
//! | `clock` | the wall clock, injectable |

#![forbid(unsafe_code)]

pub mod clock;
mod faults;
mod front;
pub mod http;
pub mod registry;
pub mod resp;
mod stats;
mod tls;
mod upstream;
pub mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use clock::{ManualClock, SystemClock, WallClock};
pub use faults::Faults;
pub use registry::{KnownCredentials, Registry};
pub use stats::{Stats, StatsSnapshot};
pub use upstream::{Engine, UpstreamError};
use verify::Expectations;

/// The access key id of the stack's static test credentials.
pub const STATIC_ACCESS_KEY_ID: &str = "AKIALOCALSTACKEXAMPLE";
/// The secret access key of the stack's static test credentials (a test value,
/// accepted only by this stack).
pub const STATIC_SECRET_ACCESS_KEY: &str = "localstack/static/secret/EXAMPLEKEY0000000000";
/// The principal of the static test credentials.
pub const STATIC_PRINCIPAL: &str = "arn:aws:iam::000000000000:user/localstack-test";

/// What kind of cache the front pretends to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An ElastiCache Serverless cache: cluster protocol, one shard at the front,
    /// tokens must carry `ResourceType=ServerlessCache`.
    Serverless,
    /// A node-based replication group with cluster mode disabled.
    ReplicationGroup,
}

/// How to run a [`Stack`]. Start from [`StackConfig::serverless`] or
/// [`StackConfig::replication_group`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StackConfig {
    /// The kind of cache.
    pub mode: Mode,
    /// The cache name (serverless) or replication group id, which tokens sign.
    pub cache_name: String,
    /// The IAM-enabled user id (== user name).
    pub user_id: String,
    /// The region tokens must be signed for. Defaults to `us-east-1`.
    pub region: String,
    /// The upstream server. Defaults to Valkey.
    pub engine: Engine,
    /// The upstream binary; defaults to the engine's binary on `PATH`.
    pub server_binary: Option<PathBuf>,
    /// The front's port; 0 (the default) picks a free one.
    pub port: u16,
    /// Connections are closed once their last authentication is older than this.
    /// Defaults to 12 hours.
    pub max_auth_age: Duration,
    /// Lifetime of the temporary credentials the mock endpoints issue. Defaults to 1 hour.
    pub credential_lifetime: Duration,
    /// How far in the future a token's signing time may be. Defaults to 5 minutes.
    pub clock_skew: Duration,
    /// Accept TLS 1.3 only, as public endpoints do. Defaults to false (1.2 and 1.3).
    pub tls13_only: bool,
    /// The host name the topology advertises. Defaults to `127.0.0.1`.
    pub advertised_host: String,
    /// A password (ACL) user `(name, password)` accepted besides IAM, for
    /// side-by-side comparisons. Defaults to none.
    pub password_user: Option<(String, String)>,
    /// The wall clock for token checks. Defaults to the system clock.
    pub clock: Arc<dyn WallClock>,
}

impl StackConfig {
    fn new(mode: Mode, cache_name: &str) -> Self {
        Self {
            mode,
            cache_name: cache_name.to_owned(),
            user_id: "iam-user-01".to_owned(),
            region: "us-east-1".to_owned(),
            engine: Engine::Valkey,
            server_binary: None,
            port: 0,
            max_auth_age: Duration::from_secs(12 * 3600),
            credential_lifetime: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(300),
            tls13_only: false,
            advertised_host: "127.0.0.1".to_owned(),
            password_user: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// An ElastiCache Serverless cache named `name`, user `iam-user-01`, region `us-east-1`.
    pub fn serverless(name: &str) -> Self {
        Self::new(Mode::Serverless, name)
    }

    /// A node-based replication group `id`, user `iam-user-01`, region `us-east-1`.
    pub fn replication_group(id: &str) -> Self {
        Self::new(Mode::ReplicationGroup, id)
    }

    /// The IAM user id. Defaults to `iam-user-01`.
    #[must_use]
    pub fn user_id(mut self, user_id: &str) -> Self {
        self.user_id = user_id.to_owned();
        self
    }

    /// The region. Defaults to `us-east-1`.
    #[must_use]
    pub fn region(mut self, region: &str) -> Self {
        self.region = region.to_owned();
        self
    }

    /// The max auth age (the 12-hour rule). Defaults to 12 hours.
    #[must_use]
    pub fn max_auth_age(mut self, age: Duration) -> Self {
        self.max_auth_age = age;
        self
    }

    /// The upstream engine. Defaults to Valkey.
    #[must_use]
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// The wall clock. Defaults to the system clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    /// A password user besides IAM. Defaults to none.
    #[must_use]
    pub fn password_user(mut self, user: &str, password: &str) -> Self {
        self.password_user = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Lifetime of the temporary credentials the mock endpoints issue. Defaults to 1 hour.
    #[must_use]
    pub fn credential_lifetime(mut self, lifetime: Duration) -> Self {
        self.credential_lifetime = lifetime;
        self
    }

    /// The front's port; 0 picks a free one. Defaults to 0.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The upstream binary. Defaults to the engine's binary on `PATH`.
    #[must_use]
    pub fn server_binary(mut self, path: PathBuf) -> Self {
        self.server_binary = Some(path);
        self
    }

    /// TLS 1.3 only. Defaults to false.
    #[must_use]
    pub fn tls13_only(mut self, on: bool) -> Self {
        self.tls13_only = on;
        self
    }
}

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

/// Why a stack could not start.
#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A running local stack. Dropping it stops everything, upstream included.
pub struct Stack {
    shared: Arc<Shared>,
    dir: tempfile::TempDir,
    http_addr: SocketAddr,
    mode: Mode,
    cache_name: String,
    user_id: String,
    region: String,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("front", &self.shared.front_addr)
            .field("upstream", &self.shared.upstream_addr)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Start the upstream, the front and the HTTP endpoints.
    pub async fn start(config: StackConfig) -> Result<Self, StartError> {
        let binary = upstream::find_binary(config.engine, config.server_binary.as_deref())
            .map_err(|e| StartError(e.to_string()))?;
        let upstream = upstream::Upstream::start(binary)
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let dir =
            tempfile::tempdir().map_err(|e| StartError(format!("temporary directory: {e}")))?;
        let tls = tls::server_config(&dir.path().join("ca.pem"), config.tls13_only)
            .map_err(StartError)?;
        let listener = TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|e| StartError(format!("cannot listen on 127.0.0.1:{}: {e}", config.port)))?;
        let front_addr = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let http_listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| StartError(format!("cannot listen for HTTP on 127.0.0.1: {e}")))?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let pod_identity_token = format!("pod-identity-token-{}", rand::random::<u64>());
        let web_identity_token = format!(
            "eyJhbGciOiJSUzI1NiJ9.localstack-web-identity.{}",
            rand::random::<u64>()
        );
        for (name, content) in [
            ("pod-identity-token", &pod_identity_token),
            ("web-identity-token", &web_identity_token),
        ] {
            std::fs::write(dir.path().join(name), content)
                .map_err(|e| StartError(format!("writing {name}: {e}")))?;
        }

        let service = "elasticache".to_owned();
        let shared = Arc::new(Shared {
            config: FrontConfig {
                mode: config.mode,
                expect: Expectations {
                    service,
                    region: config.region.clone(),
                    cache_name: config.cache_name.clone(),
                    user_id: config.user_id.clone(),
                    serverless: config.mode == Mode::Serverless,
                    clock_skew: config.clock_skew,
                },
                max_auth_age: config.max_auth_age,
                advertised_host: config.advertised_host.clone(),
                password_user: config.password_user.clone(),
            },
            registry: Registry::default(),
            stats: Stats::default(),
            faults: Faults::default(),
            clock: config.clock.clone(),
            drop_generation: watch::channel(0).0,
            upstream_addr: upstream.addr(),
            upstream: tokio::sync::Mutex::new(upstream),
            front_addr,
        });
        shared.registry.insert(KnownCredentials {
            access_key_id: STATIC_ACCESS_KEY_ID.to_owned(),
            secret_access_key: STATIC_SECRET_ACCESS_KEY.to_owned(),
            session_token: None,
            expires: None,
            principal: STATIC_PRINCIPAL.to_owned(),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let app = http::router(Arc::new(http::HttpState {
            shared: shared.clone(),
            credential_lifetime: config.credential_lifetime,
            pod_identity_token,
            web_identity_token,
        }));
        let tasks = vec![
            tokio::spawn(front::accept_loop(listener, acceptor, shared.clone())),
            tokio::spawn(async move {
                if let Err(e) = axum::serve(http_listener, app).await {
                    tracing::error!(error = %e, "HTTP endpoints stopped");
                }
            }),
        ];
        tracing::info!(front = %front_addr, http = %http_addr, upstream = %shared.upstream_addr, "local stack ready");
        Ok(Self {
            shared,
            dir,
            http_addr,
            mode: config.mode,
            cache_name: config.cache_name,
            user_id: config.user_id,
            region: config.region,
            tasks,
        })
    }

    /// The admin endpoint's base URL (`GET /stats`, `POST /faults`).
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The ECS task role credentials URL (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
    pub fn container_credentials_uri(&self) -> String {
        format!("http://{}/ecs/credentials", self.http_addr)
    }

    /// The EKS Pod Identity credentials URL (`AWS_CONTAINER_CREDENTIALS_FULL_URI`,
    /// with [`pod_identity_token_file`](Self::pod_identity_token_file)).
    pub fn pod_identity_uri(&self) -> String {
        format!("http://{}/pod-identity/credentials", self.http_addr)
    }

    /// The file holding the Pod Identity authorization token
    /// (`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`).
    pub fn pod_identity_token_file(&self) -> PathBuf {
        self.dir.path().join("pod-identity-token")
    }

    /// The STS endpoint (`AWS_ENDPOINT_URL_STS`).
    pub fn sts_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The role the web identity may assume (`AWS_ROLE_ARN`).
    pub fn role_arn(&self) -> &'static str {
        http::IRSA_ROLE_ARN
    }

    /// The web identity token file (`AWS_WEB_IDENTITY_TOKEN_FILE`).
    pub fn web_identity_token_file(&self) -> PathBuf {
        self.dir.path().join("web-identity-token")
    }

    /// The environment a service needs to reach this stack with IAM auth and the
    /// static test credentials: the keys of the binary's env file.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        let target = match self.mode {
            Mode::Serverless => "ELASTICACHE_SERVERLESS_CACHE",
            Mode::ReplicationGroup => "ELASTICACHE_REPLICATION_GROUP",
        };
        vec![
            ("REDIS_HOST", self.shared.config.advertised_host.clone()),
            ("REDIS_PORT", self.shared.front_addr.port().to_string()),
            ("REDIS_SSL", "true".to_owned()),
            ("REDIS_SSL_CA_CERTS", self.ca_file().display().to_string()),
            ("USE_IAM_AUTH", "true".to_owned()),
            (target, self.cache_name.clone()),
            ("ELASTICACHE_USER_ID", self.user_id.clone()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_ACCESS_KEY_ID", STATIC_ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET_ACCESS_KEY.to_owned()),
            ("LOCALSTACK_ADMIN_URL", self.admin_url()),
            (
                "LOCALSTACK_CONTAINER_CREDENTIALS_URI",
                self.container_credentials_uri(),
            ),
            ("LOCALSTACK_STS_ENDPOINT", self.sts_endpoint()),
            ("LOCALSTACK_ROLE_ARN", self.role_arn().to_owned()),
            (
                "LOCALSTACK_WEB_IDENTITY_TOKEN_FILE",
                self.web_identity_token_file().display().to_string(),
            ),
        ]
    }

    /// The kind of cache the front pretends to be.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The cache name or replication group id that tokens must sign.
    pub fn cache_name(&self) -> &str {
        &self.cache_name
    }

    /// The IAM user id the front accepts.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The region tokens must be signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The front's address (TLS).
    pub fn endpoint(&self) -> SocketAddr {
        self.shared.front_addr
    }

    /// The PEM file of the CA that signed the front's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The directory the stack keeps its files in (CA, web identity token).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The upstream server's plain-TCP address (for reference measurements).
    pub fn upstream_addr(&self) -> SocketAddr {
        self.shared.upstream_addr
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The credentials the front accepts.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Fault injection.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Close every client connection now.
    pub fn drop_all_connections(&self) {
        self.shared.drop_all_connections();
    }

    /// Stop the upstream server (clients' connections close; new ones are refused).
    pub async fn stop_upstream(&self) {
        self.shared.upstream.lock().await.stop().await;
    }

    /// Start the upstream server again on the same port.
    pub async fn start_upstream(&self) -> Result<(), UpstreamError> {
        self.shared.upstream.lock().await.restart().await
    }

    /// Whether the upstream is running.
    pub async fn upstream_running(&self) -> bool {
        self.shared.upstream.lock().await.is_running()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Close client connections (their tasks hold the shared state) and stop
        // the upstream now rather than when the last of them ends.
        self.shared.drop_all_connections();
        if let Ok(mut upstream) = self.shared.upstream.try_lock() {
            upstream.kill_now();
        }
    }
}
