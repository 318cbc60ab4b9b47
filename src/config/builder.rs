//! Building a [`ConnectionConfig`] from a URL, builder methods and the
//! environment, validated as a whole.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use super::url::parse_url;
use super::{Auth, ConnectionConfig, IamAuth, Sources, TlsOptions, TlsVersion};
use crate::env::var;
use crate::error::{Error, Problems, quoted};
use crate::lifecycle::LifecycleSettings;
use crate::region::checked_region;
use crate::target::{Target, TargetChoice, TargetKind, UserId};

/// Builds a [`ConnectionConfig`], validating it as a whole in
/// [`build`](Self::build), which reports every problem at once. Later
/// settings override earlier ones.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ConnectionConfigBuilder {
    host: Option<String>,
    port: Option<u16>,
    db: Option<i64>,
    tls: Option<bool>,
    tls_options: TlsOptions,
    /// The builder method or environment variable that set each value, for
    /// the errors that name it.
    sources: Sources,
    username: Option<String>,
    password: Option<Secret>,
    use_iam: Option<bool>,
    target: TargetChoice,
    user_id: Option<(String, &'static str)>,
    region: Option<(String, &'static str)>,
    lifecycle: LifecycleSettings,
    /// Problems found while the settings came in (a bad URL or variable).
    problems: Problems,
}

/// A password in the builder: redacted in `Debug`.
#[derive(Clone)]
struct Secret(Zeroizing<String>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"** redacted **\"")
    }
}

impl ConnectionConfigBuilder {
    /// Host, port, database, TLS and password from a URL:
    /// `redis[s]://[user[:password]@]host[:port][/db]`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.read_url(&url.into(), "url");
        self
    }

    fn read_url(&mut self, url: &str, source: &'static str) {
        match parse_url(url) {
            Ok(parsed) => {
                self.host = Some(parsed.host);
                self.port = Some(parsed.port);
                self.db = Some(parsed.db);
                self.tls = Some(parsed.tls);
                let sources = &mut self.sources;
                (sources.host, sources.port, sources.db, sources.tls) =
                    (source, source, source, source);
                if let Some(username) = parsed.username {
                    self.username = Some(username);
                }
                if let Some(password) = parsed.password {
                    self.password = Some(Secret(password));
                    self.sources.password = source;
                }
            }
            Err(err) => self.problems.push(err.with_parameter(source)),
        }
    }

    /// The endpoint's host name.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self.sources.host = "host";
        self
    }

    /// The endpoint's port. Defaults to 6379.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self.sources.port = "port";
        self
    }

    /// The database number. Defaults to 0.
    pub fn db(mut self, db: i64) -> Self {
        self.db = Some(db);
        self.sources.db = "db";
        self
    }

    /// Use TLS. Defaults to off, or to what the URL's scheme says; IAM needs it.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = Some(on);
        self.sources.tls = "tls";
        self
    }

    /// Trust the CA certificates in this PEM file instead of the system's.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.set_ca_file(Some(path.into()));
        self
    }

    /// Trust the CA certificates in this PEM file, or the system's (`None`).
    pub fn set_ca_file(&mut self, path: Option<PathBuf>) -> &mut Self {
        self.tls_options.ca_file = path;
        self.sources.ca_file = "ca_file";
        self
    }

    /// Present this client certificate (PEM chain) and key (PEM), for mTLS.
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_options.client_cert = Some(cert.into());
        self.tls_options.client_key = Some(key.into());
        (self.sources.client_cert, self.sources.client_key) =
            ("client_certificate", "client_certificate");
        self
    }

    /// The lowest TLS version offered. Defaults to TLS 1.2.
    pub fn min_tls_version(mut self, version: TlsVersion) -> Self {
        self.tls_options.min_version = version;
        self
    }

    /// The ACL user for password authentication. Defaults to `default`, or
    /// to the URL's user.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.set_username(Some(username.into()));
        self
    }

    /// The ACL user for password authentication, or `default` (`None`, which
    /// also drops a user taken from the URL or `REDIS_USERNAME`).
    pub fn set_username(&mut self, username: Option<String>) -> &mut Self {
        self.username = username;
        self
    }

    /// Authenticate with a password (for the [`username`](Self::username), or
    /// `default`). The user a URL or `REDIS_USERNAME` gave is kept.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret(Zeroizing::new(password.into())));
        self.sources.password = "password";
        self
    }

    /// Use IAM authentication, or not. Defaults to off; the target methods
    /// below turn it on. (`USE_IAM_AUTH` in the environment.)
    pub fn use_iam(mut self, on: bool) -> Self {
        self.use_iam = Some(on);
        self
    }

    /// IAM authentication with tokens for an ElastiCache Serverless cache, by
    /// its name (not its endpoint).
    pub fn serverless_cache(self, name: impl Into<String>) -> Self {
        self.target_named(TargetKind::ServerlessCache, name.into())
    }

    /// IAM authentication with tokens for a node-based replication group, by
    /// its id.
    pub fn replication_group(self, id: impl Into<String>) -> Self {
        self.target_named(TargetKind::ReplicationGroup, id.into())
    }

    /// IAM authentication with tokens for a MemoryDB cluster, by its name.
    pub fn memorydb_cluster(self, name: impl Into<String>) -> Self {
        self.target_named(TargetKind::MemoryDbCluster, name.into())
    }

    /// IAM authentication with tokens for an already validated target.
    pub fn target(mut self, target: Target) -> Self {
        self.use_iam = Some(true);
        self.target.target(target);
        self
    }

    fn target_named(mut self, kind: TargetKind, name: String) -> Self {
        self.use_iam = Some(true);
        self.target.name(kind, name, kind.parameter());
        self
    }

    /// The IAM user id (equal to its user name).
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some((user_id.into(), "user_id"));
        self
    }

    /// The cache's AWS region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.set_region(Some(region.into()));
        self
    }

    /// The cache's AWS region, or none.
    pub fn set_region(&mut self, region: Option<String>) -> &mut Self {
        self.region = region.map(|r| (r, "region"));
        self
    }

    /// See [`Lifecycle::token_refresh_interval`](crate::Lifecycle::token_refresh_interval).
    pub fn token_refresh_interval(mut self, interval: Duration) -> Self {
        self.lifecycle
            .token_refresh_interval(interval, "token_refresh_interval");
        self
    }

    /// See [`Lifecycle::reauth_after`](crate::Lifecycle::reauth_after).
    pub fn reauth_after(mut self, after: Duration) -> Self {
        self.lifecycle.reauth_after(after, "reauth_after");
        self
    }

    /// See [`Lifecycle::max_connection_age`](crate::Lifecycle::max_connection_age).
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.lifecycle.max_connection_age(age, "max_connection_age");
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
            self.read_url(&url, "REDIS_URL");
        }
        if let Some(host) = get("REDIS_HOST") {
            self.host = Some(host);
            self.sources.host = "REDIS_HOST";
        }
        if let Some(port) = get("REDIS_PORT") {
            match port.trim().parse::<u16>() {
                Ok(port) if port > 0 => {
                    self.port = Some(port);
                    self.sources.port = "REDIS_PORT";
                }
                _ => self.problems.push(Error::config(
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
                Ok(db) if db >= 0 => {
                    self.db = Some(db);
                    self.sources.db = "REDIS_DB";
                }
                _ => self.problems.push(Error::config(
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
            self.sources.password = "REDIS_PASSWORD";
        }
        if let Some(on) =
            get("REDIS_SSL").and_then(|v| self.problems.check(parse_bool("REDIS_SSL", &v)))
        {
            self.tls = Some(on);
            self.sources.tls = "REDIS_SSL";
        }
        if let Some(on) =
            get("USE_IAM_AUTH").and_then(|v| self.problems.check(parse_bool("USE_IAM_AUTH", &v)))
        {
            self.use_iam = Some(on);
        }
        if let Some(path) = get("REDIS_SSL_CA_CERTS") {
            self.tls_options.ca_file = Some(path.into());
            self.sources.ca_file = "REDIS_SSL_CA_CERTS";
        }
        if let Some(path) = get("REDIS_SSL_CERTFILE") {
            self.tls_options.client_cert = Some(path.into());
            self.sources.client_cert = "REDIS_SSL_CERTFILE";
        }
        if let Some(path) = get("REDIS_SSL_KEYFILE") {
            self.tls_options.client_key = Some(path.into());
            self.sources.client_key = "REDIS_SSL_KEYFILE";
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
                self.target.name(kind, value, name);
            }
        }
        if let Some(user_id) = get("ELASTICACHE_USER_ID") {
            self.user_id = Some((user_id, "ELASTICACHE_USER_ID"));
        }
        if let Some(region) = get("AWS_REGION") {
            self.region = Some((region, "AWS_REGION"));
        }
        self.lifecycle.read_env(&lookup, true, &mut self.problems);
        self
    }

    /// Validate the whole configuration. Every problem found is reported at
    /// once, each naming its parameter (the builder method or environment
    /// variable that set it): [`Error::parameter`] is the first,
    /// [`Error::parameters`] all of them.
    pub fn build(self) -> Result<ConnectionConfig, Error> {
        let mut problems = self.problems;
        let host = match self.host {
            Some(host) if host.trim().is_empty() => {
                problems.push(Error::config(
                    self.sources.host,
                    "host must not be empty: set the cache's endpoint host name",
                ));
                None
            }
            Some(host) => Some(host),
            None => {
                problems.push(Error::config(
                    "host",
                    "host is required: set REDIS_URL (rediss://ENDPOINT:6379) or REDIS_HOST (the \
                     cache's endpoint)",
                ));
                None
            }
        };
        let port = self.port.unwrap_or(ConnectionConfig::DEFAULT_PORT);
        if port == 0 {
            problems.push(Error::config(
                self.sources.port,
                "port must be 1-65535, not 0",
            ));
        }
        let db = self.db.unwrap_or(0);
        if db < 0 {
            problems.push(Error::config(
                self.sources.db,
                format!("db must be a database number (0 or more); got {db}"),
            ));
        }
        let tls = self.tls.unwrap_or(false).then_some(self.tls_options);
        if let Some(options) = &tls {
            // Only the environment sets one without the other.
            match (&options.client_cert, &options.client_key) {
                (Some(_), None) => problems.push(Error::config(
                    "REDIS_SSL_KEYFILE",
                    "a client certificate needs its key (REDIS_SSL_KEYFILE)",
                )),
                (None, Some(_)) => problems.push(Error::config(
                    "REDIS_SSL_CERTFILE",
                    "a client key needs its certificate (REDIS_SSL_CERTFILE)",
                )),
                _ => {}
            }
        }
        let auth = if self.use_iam.unwrap_or(false) {
            // (Without an endpoint at all, the missing endpoint says it: a
            // rediss:// URL would give both.)
            if tls.is_none() && host.is_some() {
                problems.push(Error::config(
                    self.sources.tls,
                    "IAM authentication requires TLS: use a rediss:// URL or REDIS_SSL=true",
                ));
            }
            if self.password.is_some() {
                let source = self.sources.password;
                problems.push(Error::config(
                    source,
                    format!(
                        "both a password ({source}) and IAM authentication are set: remove the \
                         password, or IAM authentication"
                    ),
                ));
            }
            iam_auth(&self.target, self.user_id, self.region, &mut problems).map(Auth::Iam)
        } else {
            Some(match self.password {
                Some(Secret(password)) => Auth::Password {
                    username: self.username,
                    password,
                },
                None => Auth::None,
            })
        };
        let lifecycle = self.lifecycle.build(true, &mut problems);
        let config = match (host, auth) {
            (Some(host), Some(auth)) => Some(ConnectionConfig {
                host,
                port,
                db,
                auth,
                tls,
                lifecycle,
                sources: self.sources,
            }),
            _ => None,
        };
        problems.finish(config)
    }
}

/// The IAM settings: exactly one target, a user id (normalised for the
/// target's kind: what is signed is what `AUTH` sends) and a region.
fn iam_auth(
    target: &TargetChoice,
    user_id: Option<(String, &'static str)>,
    region: Option<(String, &'static str)>,
    problems: &mut Problems,
) -> Option<IamAuth> {
    let target = target.build(problems);
    let user_id = match user_id {
        Some((user_id, parameter)) => {
            problems.check(UserId::new(&user_id).map_err(|e| e.with_parameter(parameter)))
        }
        None => {
            problems.push(Error::config(
                "user_id",
                "IAM authentication needs a user id: set ELASTICACHE_USER_ID",
            ));
            None
        }
    };
    let region = checked_region(
        region,
        "IAM authentication needs the cache's region: set AWS_REGION",
        problems,
    );
    let target = target?;
    Some(IamAuth {
        user_id: user_id?.normalized_for(target.kind()),
        region: region?,
        target,
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
