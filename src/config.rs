//! Connection configuration: where to connect, how to authenticate, TLS, and
//! the connection lifecycle; from a URL, a builder or the environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::env::{duration_var, var};
use crate::error::{Error, quoted};
use crate::life::DEADLINE_JITTER;
use crate::refresher::{
    DEFAULT_REAUTH_AFTER, DEFAULT_ROTATION_INTERVAL, REAUTH_AFTER_ENV, REFRESH_INTERVAL_ENV,
    check_reauth_after, check_rotation_interval,
};
use crate::region::validate_region;
use crate::target::{Target, TargetKind, UserId};

/// Environment variable for [`Lifecycle::max_connection_age`].
pub const MAX_CONNECTION_AGE_ENV: &str = "ELASTICACHE_MAX_CONNECTION_AGE";

/// A connection is recycled at the latest this long after it was opened, by
/// default (each connection picks its own time between 95 % and 100 % of it):
/// 11.5 hours, under the 12-hour cut.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(11 * 3600 + 1800);

/// The port ElastiCache, MemoryDB and Valkey listen on by default.
pub const DEFAULT_PORT: u16 = 6379;

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

/// When tokens rotate and connections re-authenticate or are replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lifecycle {
    /// How often the IAM token is re-signed. Defaults to 10 minutes.
    pub token_refresh_interval: Duration,
    /// A connection re-authenticates once this long has passed since its
    /// last authentication (each connection picks 90-100 % of it): at
    /// checkout if it is idle, with its holder's next command if it is held.
    /// Defaults to 10 hours.
    pub reauth_after: Duration,
    /// A connection is replaced once this old (each picks 95-100 % of it).
    /// Defaults to 11.5 hours; always under the 12-hour cut.
    pub max_connection_age: Duration,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            token_refresh_interval: DEFAULT_ROTATION_INTERVAL,
            reauth_after: DEFAULT_REAUTH_AFTER,
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
        }
    }
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
}

impl ConnectionConfig {
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

    /// `host:port`, for messages.
    pub(crate) fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Configuration from a URL, `redis[s]://[user[:password]@]host[:port][/db]`.
    /// Authentication is a password if the URL has one; IAM must be asked for
    /// through the builder.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        Self::builder().url(url).build()
    }

    /// Configuration from the process environment; see
    /// [`ConnectionConfigBuilder::from_env`] for the variables.
    pub fn from_env() -> Result<Self, Error> {
        Self::builder().from_env().build()
    }
}

/// Builds a [`ConnectionConfig`], validating it as a whole in
/// [`build`](Self::build). Later settings override earlier ones.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ConnectionConfigBuilder {
    host: Option<String>,
    port: Option<u16>,
    db: Option<i64>,
    tls: Option<bool>,
    tls_options: TlsOptions,
    username: Option<String>,
    password: Option<Secret>,
    use_iam: Option<bool>,
    targets: Vec<(TargetKind, String, &'static str)>,
    user_id: Option<(String, &'static str)>,
    region: Option<(String, &'static str)>,
    lifecycle: [Option<(Duration, &'static str)>; 3],
    error: Option<Error>,
}

/// A password in the builder: redacted in `Debug`.
#[derive(Clone)]
struct Secret(Zeroizing<String>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"** redacted **\"")
    }
}

const REFRESH: usize = 0;
const REAUTH: usize = 1;
const MAX_AGE: usize = 2;

impl ConnectionConfigBuilder {
    /// Host, port, database, TLS and password from a URL:
    /// `redis[s]://[user[:password]@]host[:port][/db]`.
    pub fn url(mut self, url: &str) -> Self {
        match parse_url(url) {
            Ok(parsed) => {
                self.host = Some(parsed.host);
                self.port = Some(parsed.port);
                self.db = Some(parsed.db);
                self.tls = Some(parsed.tls);
                if let Some(username) = parsed.username {
                    self.username = Some(username);
                }
                if let Some(password) = parsed.password {
                    self.password = Some(Secret(password));
                }
            }
            Err(err) => self.fail(err),
        }
        self
    }

    /// The endpoint's host name.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The endpoint's port. Defaults to 6379.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The database number. Defaults to 0.
    pub fn db(mut self, db: i64) -> Self {
        self.db = Some(db);
        self
    }

    /// Use TLS. Defaults to off, or to what the URL's scheme says; IAM needs it.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = Some(on);
        self
    }

    /// Trust the CA certificates in this PEM file instead of the system's.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_options.ca_file = Some(path.into());
        self
    }

    /// Present this client certificate (PEM chain) and key (PEM), for mTLS.
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_options.client_cert = Some(cert.into());
        self.tls_options.client_key = Some(key.into());
        self
    }

    /// The lowest TLS version offered. Defaults to TLS 1.2.
    pub fn min_tls_version(mut self, version: TlsVersion) -> Self {
        self.tls_options.min_version = version;
        self
    }

    /// Authenticate with an ACL user (or `default`, for `None`) and password.
    pub fn password(mut self, username: Option<&str>, password: &str) -> Self {
        self.username = username.map(str::to_owned);
        self.password = Some(Secret(Zeroizing::new(password.to_owned())));
        self
    }

    /// Authenticate with IAM tokens for an ElastiCache Serverless cache.
    pub fn iam_serverless_cache(self, name: &str) -> Self {
        self.iam_target(TargetKind::ServerlessCache, name, "serverless_cache_name")
    }

    /// Authenticate with IAM tokens for a node-based replication group.
    pub fn iam_replication_group(self, id: &str) -> Self {
        self.iam_target(TargetKind::ReplicationGroup, id, "replication_group_id")
    }

    /// Authenticate with IAM tokens for a MemoryDB cluster.
    pub fn iam_memorydb_cluster(self, name: &str) -> Self {
        self.iam_target(TargetKind::MemoryDbCluster, name, "memorydb_cluster_name")
    }

    fn iam_target(mut self, kind: TargetKind, name: &str, parameter: &'static str) -> Self {
        self.use_iam = Some(true);
        self.targets.push((kind, name.to_owned(), parameter));
        self
    }

    /// The IAM user id (equal to its user name).
    pub fn user_id(mut self, user_id: &str) -> Self {
        self.user_id = Some((user_id.to_owned(), "user_id"));
        self
    }

    /// The cache's AWS region.
    pub fn region(mut self, region: &str) -> Self {
        self.region = Some((region.to_owned(), "region"));
        self
    }

    /// See [`Lifecycle::token_refresh_interval`].
    pub fn token_refresh_interval(mut self, interval: Duration) -> Self {
        self.lifecycle[REFRESH] = Some((interval, "token_refresh_interval"));
        self
    }

    /// See [`Lifecycle::reauth_after`].
    pub fn reauth_after(mut self, after: Duration) -> Self {
        self.lifecycle[REAUTH] = Some((after, "reauth_after"));
        self
    }

    /// See [`Lifecycle::max_connection_age`].
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.lifecycle[MAX_AGE] = Some((age, "max_connection_age"));
        self
    }

    /// Settings from the process environment, where set (an empty value
    /// counts as unset). The variables, documented in the README:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `REDIS_URL` | `redis[s]://[user[:password]@]host[:port][/db]`; the variables below override its parts |
    /// | `REDIS_HOST`, `REDIS_PORT`, `REDIS_DB` | endpoint and database |
    /// | `REDIS_USERNAME`, `REDIS_PASSWORD` | password authentication |
    /// | `REDIS_SSL` | `true` / `false` |
    /// | `REDIS_SSL_CA_CERTS` | PEM file of CA certificates to trust |
    /// | `REDIS_SSL_CERTFILE`, `REDIS_SSL_KEYFILE` | client certificate and key (mTLS) |
    /// | `USE_IAM_AUTH` | `true` to use IAM authentication (never inferred) |
    /// | `ELASTICACHE_SERVERLESS_CACHE`, `ELASTICACHE_REPLICATION_GROUP`, `MEMORYDB_CLUSTER` | the IAM target (exactly one) |
    /// | `ELASTICACHE_USER_ID` | the IAM user id |
    /// | `AWS_REGION` | the cache's region |
    /// | `ELASTICACHE_TOKEN_REFRESH_INTERVAL`, `ELASTICACHE_REAUTH_AFTER`, `ELASTICACHE_MAX_CONNECTION_AGE` | lifecycle durations (`10m`, `2s`, `11h 30m`) |
    ///
    /// A bad value makes [`build`](Self::build) fail, naming the variable.
    pub fn from_env(self) -> Self {
        self.from_env_with(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables looked up by `lookup`.
    pub fn from_env_with(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| var(&lookup, name);
        if let Some(url) = get("REDIS_URL") {
            self = self.url(&url);
            if let Some(err) = self.error.take() {
                self.fail(err.with_parameter("REDIS_URL"));
            }
        }
        if let Some(host) = get("REDIS_HOST") {
            self.host = Some(host);
        }
        if let Some(port) = get("REDIS_PORT") {
            match port.trim().parse::<u16>() {
                Ok(port) if port > 0 => self.port = Some(port),
                _ => self.fail(Error::config(
                    "REDIS_PORT",
                    format!(
                        "REDIS_PORT={} is not a port number (1-65535)",
                        quoted(&port)
                    ),
                )),
            }
        }
        if let Some(db) = get("REDIS_DB") {
            match db.trim().parse::<i64>() {
                Ok(db) if db >= 0 => self.db = Some(db),
                _ => self.fail(Error::config(
                    "REDIS_DB",
                    format!("REDIS_DB={} is not a database number", quoted(&db)),
                )),
            }
        }
        if let Some(username) = get("REDIS_USERNAME") {
            self.username = Some(username);
        }
        if let Some(password) = lookup("REDIS_PASSWORD").filter(|v| !v.is_empty()) {
            self.password = Some(Secret(Zeroizing::new(password)));
        }
        let mut errors = Vec::new();
        for (name, slot) in [
            ("REDIS_SSL", &mut self.tls),
            ("USE_IAM_AUTH", &mut self.use_iam),
        ] {
            match get(name).map(|value| parse_bool(name, &value)) {
                Some(Ok(on)) => *slot = Some(on),
                Some(Err(err)) => errors.push(err),
                None => {}
            }
        }
        if let Some(path) = get("REDIS_SSL_CA_CERTS") {
            self.tls_options.ca_file = Some(path.into());
        }
        if let Some(path) = get("REDIS_SSL_CERTFILE") {
            self.tls_options.client_cert = Some(path.into());
        }
        if let Some(path) = get("REDIS_SSL_KEYFILE") {
            self.tls_options.client_key = Some(path.into());
        }
        for (name, kind) in [
            ("ELASTICACHE_SERVERLESS_CACHE", TargetKind::ServerlessCache),
            (
                "ELASTICACHE_REPLICATION_GROUP",
                TargetKind::ReplicationGroup,
            ),
            ("MEMORYDB_CLUSTER", TargetKind::MemoryDbCluster),
        ] {
            if let Some(value) = get(name) {
                self.targets.push((kind, value, name));
            }
        }
        if let Some(user_id) = get("ELASTICACHE_USER_ID") {
            self.user_id = Some((user_id, "ELASTICACHE_USER_ID"));
        }
        if let Some(region) = get("AWS_REGION") {
            self.region = Some((region, "AWS_REGION"));
        }
        for (slot, name) in [
            (REFRESH, REFRESH_INTERVAL_ENV),
            (REAUTH, REAUTH_AFTER_ENV),
            (MAX_AGE, MAX_CONNECTION_AGE_ENV),
        ] {
            match duration_var(&lookup, name) {
                Some(Ok(d)) => self.lifecycle[slot] = Some((d, name)),
                Some(Err(err)) => errors.push(err),
                None => {}
            }
        }
        for err in errors {
            self.fail(err);
        }
        self
    }

    fn fail(&mut self, err: Error) {
        self.error.get_or_insert(err);
    }

    /// Validate the whole configuration; the first problem is returned,
    /// naming its parameter or environment variable.
    pub fn build(self) -> Result<ConnectionConfig, Error> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let host = self.host.ok_or_else(|| {
            Error::config(
                "host",
                "host is required: set REDIS_URL or REDIS_HOST (the cache's endpoint)",
            )
        })?;
        if host.trim().is_empty() {
            return Err(Error::config(
                "host",
                "host must not be empty: set the cache's endpoint host name",
            ));
        }
        let port = self.port.unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err(Error::config("port", "port must be 1-65535, not 0"));
        }
        let db = self.db.unwrap_or(0);
        if db < 0 {
            return Err(Error::config(
                "db",
                format!("db must be a database number (0 or more); got {db}"),
            ));
        }
        let tls = self
            .tls
            .unwrap_or(false)
            .then_some(self.tls_options.clone());
        if let Some(tls) = &tls {
            match (&tls.client_cert, &tls.client_key) {
                (Some(_), None) => {
                    return Err(Error::config(
                        "client_key",
                        "a client certificate needs its key (REDIS_SSL_KEYFILE)",
                    ));
                }
                (None, Some(_)) => {
                    return Err(Error::config(
                        "client_cert",
                        "a client key needs its certificate (REDIS_SSL_CERTFILE)",
                    ));
                }
                _ => {}
            }
        }
        let use_iam = self.use_iam.unwrap_or(false);
        let auth = if use_iam {
            if tls.is_none() {
                return Err(Error::config(
                    "tls",
                    "IAM authentication requires TLS: use a rediss:// URL or REDIS_SSL=true",
                ));
            }
            if self.password.is_some() {
                return Err(Error::config(
                    "password",
                    "both a password and IAM authentication are set: remove REDIS_PASSWORD \
                     (or the URL's password), or USE_IAM_AUTH",
                ));
            }
            let target = match self.targets.as_slice() {
                [(kind, name, parameter)] => {
                    Target::new(*kind, name).map_err(|e| e.with_parameter(parameter))?
                }
                [] => {
                    return Err(Error::config(
                        "target",
                        "IAM authentication needs a target: set one of \
                         ELASTICACHE_SERVERLESS_CACHE, ELASTICACHE_REPLICATION_GROUP or \
                         MEMORYDB_CLUSTER (the cache's name, not its endpoint)",
                    ));
                }
                more => {
                    let names: Vec<&str> = more.iter().map(|(_, _, p)| *p).collect();
                    return Err(Error::config(
                        "target",
                        format!(
                            "more than one IAM target is set ({}): set exactly one",
                            names.join(", ")
                        ),
                    ));
                }
            };
            let (user_id, parameter) = self.user_id.ok_or_else(|| {
                Error::config(
                    "user_id",
                    "IAM authentication needs a user id: set ELASTICACHE_USER_ID",
                )
            })?;
            // One value from here on: what the target kind signs is what
            // AUTH sends and what the checklist names.
            let user_id = UserId::new(&user_id)
                .map_err(|e| e.with_parameter(parameter))?
                .normalized_for(target.kind());
            let (region, parameter) = self.region.ok_or_else(|| {
                Error::config(
                    "region",
                    "IAM authentication needs the cache's region: set AWS_REGION",
                )
            })?;
            validate_region(&region).map_err(|e| e.with_parameter(parameter))?;
            Auth::Iam(IamAuth {
                target,
                user_id,
                region,
            })
        } else if let Some(Secret(password)) = self.password {
            Auth::Password {
                username: self.username,
                password,
            }
        } else {
            Auth::None
        };
        let lifecycle = lifecycle(self.lifecycle)?;
        Ok(ConnectionConfig {
            host,
            port,
            db,
            auth,
            tls,
            lifecycle,
        })
    }
}

fn lifecycle(given: [Option<(Duration, &'static str)>; 3]) -> Result<Lifecycle, Error> {
    let defaults = Lifecycle::default();
    let pick =
        |slot: usize, default: Duration, name: &'static str| given[slot].unwrap_or((default, name));
    let (refresh, refresh_name) = pick(
        REFRESH,
        defaults.token_refresh_interval,
        "token_refresh_interval",
    );
    let (reauth, reauth_name) = pick(REAUTH, defaults.reauth_after, "reauth_after");
    let (max_age, max_age_name) = pick(MAX_AGE, defaults.max_connection_age, "max_connection_age");
    let refresh = check_rotation_interval(refresh, refresh_name)?;
    let reauth = check_reauth_after(reauth, reauth_name)?;
    // Under the server's 12-hour cut, and long enough to be a lifetime.
    let max_age = check_reauth_after(max_age, max_age_name)?;
    // Each connection's deadline falls at 95-100 % of the maximum age, its
    // re-auth point at up to 100 % of reauth_after: the latter must come
    // first for every connection.
    let earliest_deadline = max_age.mul_f64(DEADLINE_JITTER);
    if reauth >= earliest_deadline {
        return Err(Error::config(
            reauth_name,
            format!(
                "{reauth_name} must be less than {} (95 % of the maximum connection age: \
                 re-authentication comes before the earliest deadline); got {}",
                humantime::format_duration(earliest_deadline),
                humantime::format_duration(reauth)
            ),
        ));
    }
    Ok(Lifecycle {
        token_refresh_interval: refresh,
        reauth_after: reauth,
        max_connection_age: max_age,
    })
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::config(
            name,
            format!("{name}={} is not true or false", quoted(value)),
        )),
    }
}

struct ParsedUrl {
    host: String,
    port: u16,
    db: i64,
    tls: bool,
    username: Option<String>,
    password: Option<Zeroizing<String>>,
}

/// Parses a `redis://` or `rediss://` URL. Errors never quote the URL, which
/// may hold a password.
fn parse_url(text: &str) -> Result<ParsedUrl, Error> {
    let invalid = |what: &str| Error::config("url", format!("invalid URL: {what}"));
    let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(invalid(&format!(
                "the scheme must be redis or rediss, not {}",
                quoted(other)
            )));
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        db => db
            .parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| invalid("the path must be a database number"))?,
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| invalid("the user or password is not UTF-8 after percent-decoding"))
    };
    let username = match url.username() {
        "" => None,
        user => Some(decode(user)?),
    };
    let password = url
        .password()
        .map(|p| decode(p).map(Zeroizing::new))
        .transpose()?;
    let port = url.port().unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err(invalid("the port must be 1-65535, not 0"));
    }
    Ok(ParsedUrl {
        host,
        port,
        db,
        tls,
        username,
        password,
    })
}
