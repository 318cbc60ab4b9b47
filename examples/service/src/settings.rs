//! The service's own settings, from the environment (the connection's are
//! the crate's: [`ConnectionConfig::from_env`](elasticache_iam::ConnectionConfig::from_env)).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `LISTEN_ADDR` | `0.0.0.0:8080` | where the HTTP server listens |
//! | `REDIS_CLUSTER` | by target | `true` for a cluster-mode cache (serverless and MemoryDB are by default) |
//! | `SESSION_TTL_SECS` | `1800` | a session's lifetime, renewed on use |
//! | `CODE_TTL_SECS` | `300` | a one-time code's lifetime |
//! | `SHUTDOWN_GRACE_SECS` | `4` | how long in-flight requests may finish after SIGTERM |

use std::net::SocketAddr;
use std::time::Duration;

/// The service's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `LISTEN_ADDR`.
    pub listen: SocketAddr,
    /// `None`: the crate's default for the target.
    pub cluster: Option<bool>,
    /// `SESSION_TTL_SECS`.
    pub session_ttl: Duration,
    /// `CODE_TTL_SECS`.
    pub code_ttl: Duration,
    /// `SHUTDOWN_GRACE_SECS`.
    pub shutdown_grace: Duration,
}

impl Settings {
    /// From the process environment: every problem, one line each, naming
    /// the variable.
    pub fn from_env() -> Result<Self, Vec<String>> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// From `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let listen = match lookup("LISTEN_ADDR") {
            None => Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| {
                    problems.push(format!(
                        "LISTEN_ADDR={text:?} is not an address and port (like 0.0.0.0:8080)"
                    ))
                })
                .ok(),
        };
        let cluster = match lookup("REDIS_CLUSTER").map(|v| v.trim().to_ascii_lowercase()) {
            None => None,
            Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Some(true),
            Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Some(false),
            Some(v) => {
                problems.push(format!("REDIS_CLUSTER={v:?} is not true or false"));
                None
            }
        };
        let mut seconds = |name: &str, default: u64| match lookup(name) {
            None => Duration::from_secs(default),
            Some(text) => match text.trim().parse::<u64>() {
                Ok(secs) if secs > 0 => Duration::from_secs(secs),
                _ => {
                    problems.push(format!(
                        "{name}={text:?} is not a positive number of seconds"
                    ));
                    Duration::from_secs(default)
                }
            },
        };
        let session_ttl = seconds("SESSION_TTL_SECS", 1800);
        let code_ttl = seconds("CODE_TTL_SECS", 300);
        let shutdown_grace = seconds("SHUTDOWN_GRACE_SECS", 4);
        match listen {
            Some(listen) if problems.is_empty() => Ok(Self {
                listen,
                cluster,
                session_ttl,
                code_ttl,
                shutdown_grace,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, Vec<String>> {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let settings = from(&[]).unwrap();
        assert_eq!(settings.listen.port(), 8080);
        assert_eq!(settings.cluster, None);
        assert_eq!(settings.session_ttl, Duration::from_secs(1800));
        assert_eq!(settings.shutdown_grace, Duration::from_secs(4));
    }

    #[test]
    fn every_bad_value_is_named() {
        let problems = from(&[
            ("LISTEN_ADDR", "port 80"),
            ("REDIS_CLUSTER", "maybe"),
            ("CODE_TTL_SECS", "0"),
        ])
        .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        for name in ["LISTEN_ADDR", "REDIS_CLUSTER", "CODE_TTL_SECS"] {
            assert!(problems.iter().any(|p| p.starts_with(name)), "{problems:?}");
        }
    }
}
