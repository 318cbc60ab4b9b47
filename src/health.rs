//! The health report: what a `/health` endpoint shows about the pool, the
//! token and the server. Serializable; holds no secret.

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;
use serde::Serialize;

use crate::clock::monotonic_now;
use crate::connector::Connector;
use crate::counters::read;
use crate::error::display_chain;
use crate::refresher::RefresherStatus;

/// A snapshot of a [`Pool`](crate::Pool), from
/// [`Pool::health`](crate::Pool::health). Times are RFC 3339 in
/// the serialized form.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Whether a `PING` through the pool succeeded (and, with IAM, the
    /// refresher holds a token and its last cycle succeeded).
    pub ok: bool,
    /// `none`, `password` or `iam`.
    pub auth_mode: &'static str,
    /// `standalone` or `cluster`.
    pub mode: &'static str,
    /// `host:port`.
    pub endpoint: String,
    /// Round trip of the `PING`, in microseconds.
    pub ping_latency_us: Option<u64>,
    /// The server's version (`valkey_version`, else `redis_version`, from
    /// `INFO server`).
    pub server_version: Option<String>,
    /// Why the `PING` failed, if it did.
    pub error: Option<String>,
    /// Connections.
    pub pool: PoolHealth,
    /// The IAM token refresher's state; `None` without IAM.
    pub token: Option<RefresherStatus>,
    /// Counts since the pool started.
    pub counts: Counts,
    /// The last failed connection attempt, kept after recoveries for the
    /// record.
    pub last_connect_error: Option<String>,
}

/// The pool's connections.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct PoolHealth {
    /// Open connections.
    pub connections: u32,
    /// Of which idle in the pool.
    pub idle: u32,
    /// The most the pool opens.
    pub max_size: u32,
}

/// Counts since the pool started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counts {
    /// Connections opened.
    pub connections_opened: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Successful re-authentications: the server's confirmations (in cluster
    /// mode, one per node).
    pub reauths: u64,
    /// Re-authentications refused or throttled (retried later).
    pub reauth_failures: u64,
    /// Connections replaced at their deadline.
    pub recycles: u64,
    /// Connections found closed by the server or the network.
    pub closed_by_server: u64,
    /// Connections given back with session state (an open `MULTI`, a
    /// `WATCH`, another database, subscriptions, `CLIENT REPLY OFF`, ...),
    /// closed and replaced instead of handed to the next borrower.
    pub discarded_dirty: u64,
    /// Connections closed because a command's reply did not arrive (it timed
    /// out, or its future was dropped), so that the late reply reaches no
    /// other command.
    pub discarded_unanswered: u64,
    /// Connections of a [`SharedConnection`](crate::SharedConnection) or a
    /// dedicated connection replaced by a successor after they were lost (or
    /// stopped answering). A pool does not count these: it opens new
    /// connections when borrowers need them.
    pub reconnects: u64,
    /// A [`Subscriber`](crate::Subscriber) lost its connection and
    /// re-subscribed on a new one (or, in cluster mode, redis-rs did so for a
    /// node): messages published meanwhile were not received.
    pub subscription_gaps: u64,
}

/// The counts now: atomics read, no I/O.
pub(crate) fn counts(connector: &Connector) -> Counts {
    let counters = connector.counters();
    Counts {
        connections_opened: read(&counters.connects),
        connect_failures: read(&counters.connect_failures),
        reauths: read(&counters.reauths),
        reauth_failures: read(&counters.reauth_failures),
        recycles: read(&counters.recycles),
        closed_by_server: read(&counters.closed_by_server),
        discarded_dirty: read(&counters.discarded_dirty),
        discarded_unanswered: read(&counters.discarded_unanswered),
        reconnects: read(&counters.reconnects),
        subscription_gaps: read(&counters.subscription_gaps),
    }
}

/// How long a health check waits for a pooled connection.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// The report, from the connector's state, the pool's and the token's (both
/// read before the health check took a connection and signed nothing), and
/// what the server answered (`ping`'s result).
pub(crate) fn report(
    connector: &Connector,
    pool: PoolHealth,
    token: Option<RefresherStatus>,
    server: Result<(Duration, Option<String>), String>,
) -> Health {
    let (ping_latency_us, server_version, error) = match server {
        Ok((latency, version)) => (Some(latency.as_micros() as u64), version, None),
        Err(err) => (None, None, Some(err)),
    };
    let token_ok = token.as_ref().is_none_or(RefresherStatus::is_healthy);
    Health {
        ok: error.is_none() && token_ok,
        auth_mode: connector.auth_mode(),
        mode: if connector.is_cluster() {
            "cluster"
        } else {
            "standalone"
        },
        endpoint: connector.endpoint().to_owned(),
        ping_latency_us,
        server_version,
        error,
        pool,
        token,
        counts: counts(connector),
        last_connect_error: connector
            .attempts()
            .last_failure()
            .map(|e| display_chain(&e)),
    }
}

/// `PING` (timed) and `INFO server` on a connection.
pub(crate) async fn ping(
    conn: &mut impl ConnectionLike,
) -> Result<(Duration, Option<String>), String> {
    let started = monotonic_now();
    redis::cmd("PING")
        .query_async::<()>(&mut *conn)
        .await
        .map_err(|e| format!("PING failed: {e}"))?;
    let latency = monotonic_now() - started;
    let info: Option<Value> = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut *conn)
        .await
        .ok();
    Ok((latency, info.as_ref().and_then(version)))
}

/// The version line of an `INFO server` reply; in cluster mode the reply is
/// one text per node.
fn version(info: &Value) -> Option<String> {
    match info {
        Value::BulkString(bytes) => version_in(&String::from_utf8_lossy(bytes)),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => version_in(text),
        Value::Map(pairs) => pairs.iter().find_map(|(_, v)| version(v)),
        Value::Array(items) => items.iter().find_map(version),
        _ => None,
    }
}

fn version_in(text: &str) -> Option<String> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    match (field("valkey_version:"), field("redis_version:")) {
        (Some(v), _) => Some(format!("valkey {v}")),
        (None, Some(v)) => Some(format!("redis {v}")),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_comes_from_info() {
        let valkey = "# Server\r\nredis_version:7.2.4\r\nvalkey_version:9.0.0\r\n";
        assert_eq!(version_in(valkey).as_deref(), Some("valkey 9.0.0"));
        let redis = "# Server\r\nredis_version:7.0.15\r\n";
        assert_eq!(version_in(redis).as_deref(), Some("redis 7.0.15"));
        let per_node = Value::Map(vec![(
            Value::SimpleString("127.0.0.1:6379".into()),
            Value::BulkString(redis.as_bytes().to_vec()),
        )]);
        assert_eq!(version(&per_node).as_deref(), Some("redis 7.0.15"));
        assert_eq!(version_in("# Server\r\n"), None);
    }
}
