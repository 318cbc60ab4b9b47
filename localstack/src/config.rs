//! How to run a [`Stack`](crate::Stack): the kind of cache, its name, user
//! and region, the upstream server, the 12-hour rule's scale, the lifetime
//! of issued credentials, TLS (and mutual TLS).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{SystemClock, WallClock};
use crate::upstream::Engine;

/// What kind of cache the front pretends to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An ElastiCache Serverless cache: cluster protocol, one endpoint for
    /// every slot (and a replica-read endpoint) in front of a real cluster;
    /// tokens must carry `ResourceType=ServerlessCache`.
    Serverless,
    /// A node-based replication group: one primary (cluster mode disabled),
    /// or with [`StackConfig::cluster_mode`] a cluster of shards.
    ReplicationGroup,
    /// A MemoryDB cluster: always the cluster protocol; tokens are for service
    /// `memorydb`, host = the cluster name, `User` = the user name.
    MemoryDb,
}

/// How many shards a cluster has, and replicas per shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterShape {
    /// Shards (primaries), at least one.
    pub shards: usize,
    /// Replicas per shard.
    pub replicas: usize,
}

impl ClusterShape {
    /// The shape a cluster has unless told otherwise: 3 shards with a replica
    /// each, enough to show redirects, resharding and failover.
    pub const DEFAULT: Self = Self {
        shards: 3,
        replicas: 1,
    };

    /// The cluster behind a serverless cache unless told otherwise: one
    /// shard with a replica (enough for `CROSSSLOT` and replica reads).
    pub const SERVERLESS: Self = Self {
        shards: 1,
        replicas: 1,
    };
}

/// How to run a [`Stack`](crate::Stack). Start from [`StackConfig::serverless`] or
/// [`StackConfig::replication_group`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StackConfig {
    /// The kind of cache.
    pub mode: Mode,
    /// A real cluster upstream of this shape, one front per node (serverless:
    /// behind its two endpoints); `None`: one server (cluster mode disabled).
    /// Always set for MemoryDB and serverless.
    pub cluster: Option<ClusterShape>,
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
    /// Mutual TLS: every front demands a client certificate signed by the
    /// stack's CA, and the stack makes one at start-up
    /// ([`Stack::client_cert_file`](crate::Stack::client_cert_file),
    /// `REDIS_SSL_CERTFILE`, `REDIS_SSL_KEYFILE`). Defaults to false (no
    /// client certificate asked for).
    pub require_client_cert: bool,
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
            cluster: match mode {
                Mode::MemoryDb => Some(ClusterShape::DEFAULT),
                Mode::Serverless => Some(ClusterShape::SERVERLESS),
                Mode::ReplicationGroup => None,
            },
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
            require_client_cert: false,
            advertised_host: "127.0.0.1".to_owned(),
            password_user: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// An ElastiCache Serverless cache named `name`, user `iam-user-01`,
    /// region `us-east-1`, in front of a cluster of
    /// [`ClusterShape::SERVERLESS`] unless [`cluster_mode`](Self::cluster_mode)
    /// says otherwise.
    pub fn serverless(name: &str) -> Self {
        Self::new(Mode::Serverless, name)
    }

    /// A node-based replication group `id`, user `iam-user-01`, region `us-east-1`.
    pub fn replication_group(id: &str) -> Self {
        Self::new(Mode::ReplicationGroup, id)
    }

    /// A MemoryDB cluster `name` ([`ClusterShape::DEFAULT`] unless
    /// [`cluster_mode`](Self::cluster_mode) says otherwise), user
    /// `iam-user-01`, region `us-east-1`.
    pub fn memorydb(name: &str) -> Self {
        Self::new(Mode::MemoryDb, name)
    }

    /// A real cluster of `shards` × (1 + `replicas`) servers: one front per
    /// node (a cluster-mode-enabled replication group, or MemoryDB's shape),
    /// or behind a serverless cache's endpoints.
    #[must_use]
    pub fn cluster_mode(mut self, shards: usize, replicas: usize) -> Self {
        self.cluster = Some(ClusterShape { shards, replicas });
        self
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

    /// Mutual TLS: clients must present a certificate signed by the stack's
    /// CA; one is made at start-up. Defaults to false.
    #[must_use]
    pub fn require_client_cert(mut self, on: bool) -> Self {
        self.require_client_cert = on;
        self
    }
}
