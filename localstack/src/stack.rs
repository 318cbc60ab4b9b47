//! The running stack: the upstream server, the TLS front, the HTTP
//! endpoints, and what they share (counters, faults, known credentials).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Mode, StackConfig};
use crate::endpoints;
use crate::faults::Faults;
use crate::registry::{
    KnownCredentials, Registry, STATIC_ACCESS_KEY_ID, STATIC_PRINCIPAL, STATIC_SECRET_ACCESS_KEY,
};
use crate::shared::{FrontConfig, Shared};
use crate::stats::{Stats, StatsSnapshot};
use crate::upstream::{self, UpstreamError};
use crate::verify::Expectations;
use crate::{front, tls};

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
        let app = endpoints::router(Arc::new(endpoints::EndpointsState {
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
        endpoints::IRSA_ROLE_ARN
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
