//! The running stack: the upstream server, the TLS front, the HTTP
//! endpoints, and what they share (counters, faults, known credentials).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::config::{Mode, StackConfig};
use crate::endpoints;
use crate::faults::Faults;
use crate::registry::{
    KnownCredentials, Registry, STATIC_ACCESS_KEY_ID, STATIC_PRINCIPAL, STATIC_SECRET_ACCESS_KEY,
};
use crate::router::Router;
use crate::shared::{Backend, Front, FrontConfig, Shared};
use crate::stats::{Stats, StatsSnapshot};
use crate::topology::Addresses;
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
    /// The client certificate and key, when the fronts demand one.
    client_cert: Option<tls::ClientCertFiles>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("endpoint", &self.shared.fronts[0].addr)
            .field("nodes", &self.shared.fronts.len())
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Start the upstream servers, the fronts and the HTTP endpoints.
    pub async fn start(config: StackConfig) -> Result<Self, StartError> {
        let failed = |e: UpstreamError| StartError(e.to_string());
        if config.mode == Mode::Serverless && config.cluster.is_none() {
            return Err(StartError(
                "a serverless cache runs in front of a cluster: its shape cannot be none"
                    .to_owned(),
            ));
        }
        let binary = upstream::find_binary(config.engine, config.server_binary.as_deref())
            .map_err(failed)?;
        let (backend, servers) = match config.cluster {
            None => {
                let upstream = upstream::Upstream::start(binary).await.map_err(failed)?;
                let addr = upstream.addr();
                (Backend::Single(Box::new(Mutex::new(upstream))), vec![addr])
            }
            Some(shape) => {
                let cluster =
                    Cluster::start(config.engine, Some(&binary), shape.shards, shape.replicas)
                        .await
                        .map_err(failed)?;
                let servers = cluster.nodes().iter().map(|n| n.addr).collect();
                (Backend::Cluster(cluster), servers)
            }
        };
        let router = match config.mode {
            Mode::Serverless => Some(Arc::new(
                Router::load(servers.clone()).await.map_err(failed)?,
            )),
            Mode::ReplicationGroup | Mode::MemoryDb => None,
        };
        // One front per server, or the serverless endpoint and its
        // replica-read endpoint.
        let fronts_for = match router {
            Some(_) => vec![servers[0]; 2],
            None => servers.clone(),
        };
        let dir =
            tempfile::tempdir().map_err(|e| StartError(format!("temporary directory: {e}")))?;
        // Beside the CA file, so that a client's TLS files are in one place.
        let client_cert = config.require_client_cert.then(|| tls::ClientCertFiles {
            cert: dir.path().join("client.pem"),
            key: dir.path().join("client-key.pem"),
        });
        let tls = tls::server_config(
            &dir.path().join("ca.pem"),
            config.tls13_only,
            client_cert.as_ref(),
        )
        .map_err(StartError)?;
        // The first on the configured port.
        let mut listeners = Vec::new();
        for (index, server) in fronts_for.iter().enumerate() {
            let port = if index == 0 { config.port } else { 0 };
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| StartError(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
            let addr = listener
                .local_addr()
                .map_err(|e| StartError(e.to_string()))?;
            listeners.push((listener, addr, *server));
        }
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

        let service = match config.mode {
            Mode::MemoryDb => "memorydb",
            Mode::Serverless | Mode::ReplicationGroup => "elasticache",
        };
        let fronts: Vec<Front> = listeners
            .iter()
            .enumerate()
            .map(|(index, &(_, addr, upstream))| Front {
                addr,
                upstream,
                reader: router.is_some() && index == 1,
                drop_generation: watch::channel(0).0,
            })
            .collect();
        let host = config.advertised_host.clone();
        let addresses = Addresses::new(
            &host,
            fronts.iter().map(|f| (f.upstream.port(), f.addr.port())),
        );
        let shared = Arc::new(Shared {
            config: FrontConfig {
                mode: config.mode,
                expect: Expectations {
                    service: service.to_owned(),
                    region: config.region.clone(),
                    cache_name: config.cache_name.clone(),
                    user_id: config.user_id.clone(),
                    serverless: config.mode == Mode::Serverless,
                    clock_skew: config.clock_skew,
                },
                max_auth_age: config.max_auth_age,
                advertised_host: host.clone(),
                password_user: config.password_user.clone(),
            },
            registry: Registry::default(),
            stats: Stats::new(fronts.iter().map(|f| format!("{host}:{}", f.addr.port()))),
            faults: Faults::default(),
            clock: config.clock.clone(),
            drop_generation: watch::channel(0).0,
            backend,
            fronts,
            addresses,
            servers,
            router,
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
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = axum::serve(http_listener, app).await {
                tracing::error!(error = %e, "HTTP endpoints stopped");
            }
        })];
        for (index, (listener, _, _)) in listeners.into_iter().enumerate() {
            let (acceptor, shared) = (acceptor.clone(), shared.clone());
            tasks.push(tokio::spawn(front::accept_loop(
                listener, acceptor, shared, index,
            )));
        }
        tracing::info!(
            endpoint = %shared.fronts[0].addr,
            nodes = shared.fronts.len(),
            http = %http_addr,
            "local stack ready"
        );
        Ok(Self {
            shared,
            dir,
            http_addr,
            mode: config.mode,
            cache_name: config.cache_name,
            user_id: config.user_id,
            region: config.region,
            client_cert,
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
            Mode::MemoryDb => "MEMORYDB_CLUSTER",
        };
        let mut vars = vec![
            ("REDIS_HOST", self.shared.config.advertised_host.clone()),
            ("REDIS_PORT", self.endpoint().port().to_string()),
            ("REDIS_SSL", "true".to_owned()),
            ("REDIS_SSL_CA_CERTS", self.ca_file().display().to_string()),
        ];
        // Mutual TLS only: the client certificate and key, under the names
        // the client crate's environment settings read them from.
        if let Some(files) = &self.client_cert {
            vars.push(("REDIS_SSL_CERTFILE", files.cert.display().to_string()));
            vars.push(("REDIS_SSL_KEYFILE", files.key.display().to_string()));
        }
        vars.extend([
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
        ]);
        if self.mode == Mode::Serverless || self.shared.clustered() {
            vars.push(("REDIS_CLUSTER", "true".to_owned()));
        }
        if let Some(reader) = self.reader_endpoint() {
            vars.push(("REDIS_READER_PORT", reader.port().to_string()));
        }
        let host = &self.shared.config.advertised_host;
        let nodes: Vec<String> = self
            .node_endpoints()
            .iter()
            .map(|addr| format!("{host}:{}", addr.port()))
            .collect();
        vars.push(("LOCALSTACK_NODES", nodes.join(",")));
        vars
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

    /// The endpoint clients are given (TLS): the only front, or for a
    /// cluster the configuration endpoint, the first primary's front.
    pub fn endpoint(&self) -> SocketAddr {
        self.shared.fronts[0].addr
    }

    /// Every front (TLS), in the order of `LOCALSTACK_NODES`: one per
    /// server, in a cluster the primaries' in shard order, then the
    /// replicas' (the order of [`Cluster::nodes`](crate::Cluster::nodes));
    /// serverless: the endpoint, then the replica-read endpoint.
    pub fn node_endpoints(&self) -> Vec<SocketAddr> {
        self.shared.fronts.iter().map(|f| f.addr).collect()
    }

    /// The serverless cache's replica-read endpoint (TLS; 6380's role):
    /// after `READONLY`, reads go to replicas.
    pub fn reader_endpoint(&self) -> Option<SocketAddr> {
        self.shared.fronts.iter().find(|f| f.reader).map(|f| f.addr)
    }

    /// The PEM file of the CA that signed the front's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The PEM file of the client certificate (signed by the CA) the fronts
    /// demand when the stack runs with
    /// [`StackConfig::require_client_cert`]; `None` otherwise.
    pub fn client_cert_file(&self) -> Option<&Path> {
        self.client_cert.as_ref().map(|files| files.cert.as_path())
    }

    /// The PEM file of the key of [`client_cert_file`](Self::client_cert_file);
    /// `None` unless the stack runs with [`StackConfig::require_client_cert`].
    pub fn client_key_file(&self) -> Option<&Path> {
        self.client_cert.as_ref().map(|files| files.key.as_path())
    }

    /// The directory the stack keeps its files in (CA, client certificate and
    /// key with mutual TLS, web identity token).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The first server's plain-TCP address (for reference measurements).
    pub fn upstream_addr(&self) -> SocketAddr {
        self.shared.fronts[0].upstream
    }

    /// Every server's plain-TCP address: the one server, or the cluster's
    /// nodes in the order of [`Cluster::nodes`](crate::Cluster::nodes) (for
    /// the cluster modes, also that of [`node_endpoints`](Self::node_endpoints)).
    pub fn upstream_addrs(&self) -> Vec<SocketAddr> {
        self.shared.servers.clone()
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

    /// Close every client connection of node `index`'s front.
    pub fn drop_node_connections(&self, index: usize) {
        self.shared.drop_connections_of(index);
    }

    /// Stop the upstream servers (clients' connections close; new ones are refused).
    pub async fn stop_upstream(&self) {
        self.shared.stop_upstream().await;
    }

    /// Start the stopped upstream servers again on their ports.
    pub async fn start_upstream(&self) -> Result<(), UpstreamError> {
        self.shared.start_upstream().await
    }

    /// Whether every upstream server runs.
    pub async fn upstream_running(&self) -> bool {
        self.shared.upstream_running().await
    }

    /// Kill node `index`'s server (in [`upstream_addrs`](Self::upstream_addrs)
    /// order, for the cluster modes also that of
    /// [`node_endpoints`](Self::node_endpoints)): its clients' connections
    /// close; in a cluster, a replica takes over once the others notice
    /// (about 2 s).
    pub async fn kill_node(&self, index: usize) -> Result<(), UpstreamError> {
        self.shared.kill_node(index).await
    }

    /// Start node `index`'s server again, with its cluster state.
    pub async fn restart_node(&self, index: usize) -> Result<(), UpstreamError> {
        self.shared.restart_node(index).await
    }

    /// Fail over shard `shard`: a replica takes over, the old primary's front
    /// closes its connections. Returns (old primary, new primary) node indexes.
    pub async fn fail_over(&self, shard: usize) -> Result<(usize, usize), UpstreamError> {
        self.shared.fail_over(shard).await
    }

    /// Move `count` slots from shard `from` to shard `to` while clients work
    /// (`-ASK`, then `-MOVED`). Returns the slots moved.
    pub async fn migrate_slots(
        &self,
        from: usize,
        to: usize,
        count: usize,
    ) -> Result<Vec<u16>, UpstreamError> {
        self.shared.migrate_slots(from, to, count).await
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
        match &self.shared.backend {
            Backend::Single(upstream) => {
                if let Ok(mut upstream) = upstream.try_lock() {
                    upstream.kill_now();
                }
            }
            Backend::Cluster(cluster) => cluster.kill_now(),
        }
    }
}
