//! Connection configuration: where to connect, how to authenticate, TLS, and
//! the connection lifecycle; from a URL, a builder or the environment
//! (`builder`, `url`).

mod builder;
mod url;

use std::fmt;
use std::path::PathBuf;

use zeroize::Zeroizing;

pub use builder::ConnectionConfigBuilder;

use crate::error::Error;
use crate::lifecycle::Lifecycle;
use crate::target::{Target, UserId};

/// How connections authenticate.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No authentication.
    #[default]
    None,
    /// An ACL user and password (`AUTH [user] password`).
    Password {
        /// The ACL user; `None` authenticates as `default`.
        username: Option<String>,
        /// The password (redacted in `Debug`).
        password: Zeroizing<String>,
    },
    /// IAM authentication with tokens signed for `target`.
    Iam(IamAuth),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Password {
                username,
                password: _,
            } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"** redacted **")
                .finish(),
            Auth::Iam(iam) => f.debug_tuple("Iam").field(iam).finish(),
        }
    }
}

/// What IAM tokens are signed for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IamAuth {
    /// The serverless cache, replication group or MemoryDB cluster.
    pub target: Target,
    /// The IAM-enabled user id (equal to its user name).
    pub user_id: UserId,
    /// The cache's AWS region.
    pub region: String,
}

/// TLS settings. Hostname verification and SNI are always on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// A PEM file of CA certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate chain, for mutual TLS (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// The lowest protocol version offered. Defaults to TLS 1.2; public
    /// endpoints need TLS 1.3.
    pub min_version: TlsVersion,
}

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Where and how to connect: validated as a whole by
/// [`ConnectionConfigBuilder::build`], and read-only after that, so that a
/// configuration that was accepted stays valid (no IAM without TLS, no
/// lifecycle past the 12-hour cut):
///
/// ```compile_fail
/// let mut config = elasticache_iam::ConnectionConfig::from_url("rediss://cache.example")?;
/// config.tls = None; // private: read it with `config.tls()`
/// # Ok::<(), elasticache_iam::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    host: String,
    port: u16,
    db: i64,
    auth: Auth,
    tls: Option<TlsOptions>,
    lifecycle: Lifecycle,
    sources: Sources,
}

/// The builder method or environment variable that set each value, so that
/// a problem found after `build()` (an unreadable TLS file, a database number
/// in cluster mode) names what the user wrote.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sources {
    pub(crate) host: &'static str,
    pub(crate) port: &'static str,
    pub(crate) db: &'static str,
    pub(crate) tls: &'static str,
    pub(crate) password: &'static str,
    pub(crate) ca_file: &'static str,
    pub(crate) client_cert: &'static str,
    pub(crate) client_key: &'static str,
}

impl Default for Sources {
    /// The builder methods.
    fn default() -> Self {
        Self {
            host: "host",
            port: "port",
            db: "db",
            tls: "tls",
            password: "password",
            ca_file: "ca_file",
            client_cert: "client_certificate",
            client_key: "client_certificate",
        }
    }
}

impl ConnectionConfig {
    /// The port ElastiCache, MemoryDB and Valkey listen on by default.
    pub const DEFAULT_PORT: u16 = 6379;

    /// A builder.
    pub fn builder() -> ConnectionConfigBuilder {
        ConnectionConfigBuilder::default()
    }

    /// The endpoint's host name (verified against its certificate under TLS).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The endpoint's port. Defaults to 6379.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database number (node-based caches only). Defaults to 0.
    pub fn db(&self) -> i64 {
        self.db
    }

    /// How connections authenticate. With IAM, the user id is the one that
    /// is signed, sent with `AUTH` and reported: ASCII-lowercased for
    /// ElastiCache (which stores user ids lowercase), as given for MemoryDB.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// TLS settings; `None` connects in plain text (never with IAM).
    pub fn tls(&self) -> Option<&TlsOptions> {
        self.tls.as_ref()
    }

    /// Token rotation, re-authentication and recycling.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Where each value came from, for errors.
    pub(crate) fn sources(&self) -> &Sources {
        &self.sources
    }

    /// `host:port`, for messages.
    pub(crate) fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Configuration from a URL, `redis[s]://[user[:password]@]host[:port][/db]`.
    /// Authentication is a password if the URL has one; IAM must be asked for
    /// through the builder.
    pub fn from_url(url: impl Into<String>) -> Result<Self, Error> {
        Self::builder().url(url).build()
    }

    /// Configuration from the process environment; see
    /// [`ConnectionConfigBuilder::from_env`] for the variables.
    pub fn from_env() -> Result<Self, Error> {
        Self::builder().from_env().build()
    }
}
