//! Metrics, with the `metrics` feature: every event the counters count, the
//! connections' states, and the time to open a connection, wait for one and
//! run a command, through the [`metrics`](https://docs.rs/metrics) facade, so
//! a service picks its exporter (Prometheus, OpenTelemetry, ...). Without the
//! feature every function here does nothing and the crate does not depend on
//! `metrics`.
//!
//! Names follow the OpenTelemetry database client conventions where one
//! exists; the IAM lifecycle's are under the `elasticache_iam.` prefix. Every
//! metric of a pool, shared handle or dedicated connection carries
//! `db.system.name = "redis"`, `server.address`, `server.port` and
//! `db.client.connection.pool.name` (`pool`, `shared`, `subscriber` or
//! `blocking`, a number when the process has more than one of that kind
//! (`pool-2`), then ` host:port`); the token's carry `db.system.name` and
//! `elasticache_iam.cache` (the name tokens are signed for). Units are
//! seconds. The README's metrics table lists them all.
//!
//! Events are recorded when they happen, looked up in the installed recorder
//! each time (events are rare; a recorder installed after the pool was built
//! still sees them). Gauges (connections by state, the token's age) are set
//! by `record_metrics()` on the pool or shared handle, which a `/metrics`
//! handler calls before rendering, and by its health report.

use std::time::Duration;

use crate::clock::monotonic_now;

/// Connections opened (`outcome`: `ok`, `failed`).
pub(crate) const CONNECTION_ATTEMPTS: &str = "elasticache_iam.connection.attempts";
/// Re-authentications (`outcome`: `ok` counts the server's confirmations,
/// one per node in cluster mode; `failed` the refused, throttled or
/// unanswered ones, retried later).
pub(crate) const REAUTHS: &str = "elasticache_iam.reauths";
/// Connections replaced by a successor (`reason`: `deadline`, before the
/// 12-hour cut; `lost`, after the server or network closed it or it stopped
/// answering).
pub(crate) const REPLACEMENTS: &str = "elasticache_iam.connection.replacements";
/// Connections found closed by the server or the network.
pub(crate) const CLOSED_BY_SERVER: &str = "elasticache_iam.connection.closed_by_server";
/// Connections closed instead of handed on (`reason`: `session_state`,
/// `unanswered`).
pub(crate) const DISCARDED: &str = "elasticache_iam.connection.discarded";
/// A subscriber re-subscribed on a new connection after losing one.
pub(crate) const SUBSCRIPTION_GAPS: &str = "elasticache_iam.subscription.gaps";
/// Tokens signed.
pub(crate) const TOKEN_ROTATIONS: &str = "elasticache_iam.token.rotations";
/// Failed signing cycles (credentials, signing), retried with backoff.
pub(crate) const TOKEN_REFRESH_FAILURES: &str = "elasticache_iam.token.refresh_failures";
/// Seconds since the current token was signed (gauge).
pub(crate) const TOKEN_AGE: &str = "elasticache_iam.token.age";
/// Open connections (gauge; `state`: `idle`, `used`).
pub(crate) const CONNECTION_COUNT: &str = "db.client.connection.count";
/// The most connections it opens (gauge).
pub(crate) const CONNECTION_MAX: &str = "db.client.connection.max";
/// Time to open and authenticate one connection (histogram, s).
pub(crate) const CREATE_TIME: &str = "db.client.connection.create_time";
/// Time a caller waited for a pooled connection (histogram, s).
pub(crate) const WAIT_TIME: &str = "db.client.connection.wait_time";
/// Time from sending a command (or pipeline) to its reply (histogram, s;
/// `db.operation.name`, and `error.type` when it failed).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) const OPERATION_DURATION: &str = "db.client.operation.duration";

/// The labels of one pool, shared handle or dedicated connection (or of one
/// refresher's token); empty without the feature.
#[derive(Clone, Debug, Default)]
pub(crate) struct Telemetry {
    #[cfg(feature = "metrics")]
    labels: std::sync::Arc<[metrics::Label]>,
}

impl Telemetry {
    /// For connections to `host:port` held by `holder` (`pool`, `shared`,
    /// `subscriber`, `blocking`).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn connections(holder: &str, host: &str, port: u16) -> Self {
        #[cfg(feature = "metrics")]
        {
            use metrics::Label;
            describe();
            let holder = numbered(holder);
            let labels: Vec<Label> = vec![
                Label::new("db.system.name", "redis"),
                Label::new("server.address", host.to_owned()),
                Label::new("server.port", port.to_string()),
                Label::new(
                    "db.client.connection.pool.name",
                    format!("{holder} {host}:{port}"),
                ),
            ];
            Self {
                labels: labels.into(),
            }
        }
        #[cfg(not(feature = "metrics"))]
        Self::default()
    }

    /// For the tokens signed for the cache (or cluster) `name`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn token(name: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            use metrics::Label;
            describe();
            let labels: Vec<Label> = vec![
                Label::new("db.system.name", "redis"),
                Label::new("elasticache_iam.cache", name.to_owned()),
            ];
            Self {
                labels: labels.into(),
            }
        }
        #[cfg(not(feature = "metrics"))]
        Self::default()
    }

    /// Counts `n` `name` events, with `extra` labels.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn count(&self, name: &'static str, extra: &[(&'static str, &'static str)], n: u64) {
        #[cfg(feature = "metrics")]
        metrics::counter!(name, self.with(extra)).increment(n);
    }

    /// Records `value` in the `name` histogram, in seconds.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn time(
        &self,
        name: &'static str,
        extra: &[(&'static str, &'static str)],
        value: Duration,
    ) {
        #[cfg(feature = "metrics")]
        metrics::histogram!(name, self.with(extra)).record(value.as_secs_f64());
    }

    /// Sets the `name` gauge.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn set(
        &self,
        name: &'static str,
        extra: &[(&'static str, &'static str)],
        value: f64,
    ) {
        #[cfg(feature = "metrics")]
        metrics::gauge!(name, self.with(extra)).set(value);
    }

    /// How long a command (or pipeline) took, and how it ended.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn operation<T>(
        &self,
        name: &'static str,
        took: Duration,
        result: &redis::RedisResult<T>,
    ) {
        #[cfg(feature = "metrics")]
        {
            let error = result.as_ref().err().map(error_type);
            let mut labels = self.with(&[("db.operation.name", name)]);
            if let Some(error) = error {
                labels.push(metrics::Label::new("error.type", error));
            }
            metrics::histogram!(OPERATION_DURATION, labels).record(took.as_secs_f64());
        }
    }

    /// Runs `request` (a command, or a pipeline, named `name`), recording
    /// its duration and outcome.
    pub(crate) async fn operation_of<T>(
        &self,
        name: &'static str,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        if !ENABLED {
            return request.await;
        }
        let started = monotonic_now();
        let result = request.await;
        self.operation(
            name,
            monotonic_now().saturating_duration_since(started),
            &result,
        );
        result
    }

    /// Sets the connection gauges: `idle` and `used` connections, of at most
    /// `max`.
    pub(crate) fn connections_now(&self, idle: u32, used: u32, max: u32) {
        self.set(CONNECTION_COUNT, &[("state", "idle")], f64::from(idle));
        self.set(CONNECTION_COUNT, &[("state", "used")], f64::from(used));
        self.set(CONNECTION_MAX, &[], f64::from(max));
    }

    #[cfg(feature = "metrics")]
    fn with(&self, extra: &[(&'static str, &'static str)]) -> Vec<metrics::Label> {
        self.labels
            .iter()
            .cloned()
            .chain(extra.iter().map(|(k, v)| metrics::Label::new(*k, *v)))
            .collect()
    }
}

/// `holder`, numbered from its second of a kind in this process (`pool`,
/// `pool-2`, ...), so that two pools to one endpoint keep their gauges
/// apart.
#[cfg(feature = "metrics")]
fn numbered(holder: &str) -> String {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let mut seen = crate::lock::lock(SEEN.get_or_init(Mutex::default));
    let n = seen.entry(holder.to_owned()).or_insert(0);
    *n += 1;
    if *n == 1 {
        holder.to_owned()
    } else {
        format!("{holder}-{n}")
    }
}

/// Describes every metric (unit and meaning) to the recorder installed now,
/// each time a holder is made (describing again changes nothing).
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CONNECTION_ATTEMPTS,
        Unit::Count,
        "connections opened (outcome=ok) and failed attempts (outcome=failed)"
    );
    describe_counter!(
        REAUTHS,
        Unit::Count,
        "re-authentications: the server's confirmations (outcome=ok) and refused, throttled or unanswered ones (outcome=failed)"
    );
    describe_counter!(
        REPLACEMENTS,
        Unit::Count,
        "connections replaced by a successor (reason=deadline|lost)"
    );
    describe_counter!(
        CLOSED_BY_SERVER,
        Unit::Count,
        "connections closed by the server or the network"
    );
    describe_counter!(
        DISCARDED,
        Unit::Count,
        "pooled connections closed instead of handed on (reason=session_state|unanswered)"
    );
    describe_counter!(
        SUBSCRIPTION_GAPS,
        Unit::Count,
        "subscribers re-subscribed on a new connection"
    );
    describe_counter!(TOKEN_ROTATIONS, Unit::Count, "IAM auth tokens signed");
    describe_counter!(
        TOKEN_REFRESH_FAILURES,
        Unit::Count,
        "failed token signing cycles"
    );
    describe_gauge!(
        TOKEN_AGE,
        Unit::Seconds,
        "time since the current IAM auth token was signed"
    );
    describe_gauge!(
        CONNECTION_COUNT,
        Unit::Count,
        "open connections (state=idle|used)"
    );
    describe_gauge!(CONNECTION_MAX, Unit::Count, "the most connections it opens");
    describe_histogram!(
        CREATE_TIME,
        Unit::Seconds,
        "time to open and authenticate a connection"
    );
    describe_histogram!(
        WAIT_TIME,
        Unit::Seconds,
        "time a caller waited for a pooled connection"
    );
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "time from sending a command or pipeline to its reply"
    );
}

/// Whether metrics are recorded at all: operation timing reads the clock
/// only then.
pub(crate) const ENABLED: bool = cfg!(feature = "metrics");

/// `db.operation.name` of a pipeline.
pub(crate) fn pipeline_name(pipeline: &redis::Pipeline) -> &'static str {
    if pipeline.is_transaction() {
        "MULTI"
    } else {
        "PIPELINE"
    }
}

/// The name of a command for `db.operation.name`: a known command's name in
/// capitals, `OTHER` for anything else (user input must not become a label).
pub(crate) fn operation_name(cmd: &redis::Cmd) -> &'static str {
    let Some(redis::Arg::Simple(name)) = cmd.args_iter().next() else {
        return "OTHER";
    };
    KNOWN
        .iter()
        .find(|known| name.eq_ignore_ascii_case(known.as_bytes()))
        .copied()
        .unwrap_or("OTHER")
}

/// Commands named in `db.operation.name`; the rest are `OTHER`, which keeps
/// the number of series bounded whatever callers send.
const KNOWN: &[&str] = &[
    "GET",
    "SET",
    "DEL",
    "UNLINK",
    "EXISTS",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "TTL",
    "PTTL",
    "INCR",
    "INCRBY",
    "DECR",
    "DECRBY",
    "MGET",
    "MSET",
    "GETDEL",
    "GETEX",
    "SETEX",
    "SETNX",
    "HGET",
    "HSET",
    "HDEL",
    "HGETALL",
    "HMGET",
    "HINCRBY",
    "HEXISTS",
    "HLEN",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "LRANGE",
    "LLEN",
    "SADD",
    "SREM",
    "SMEMBERS",
    "SISMEMBER",
    "SCARD",
    "ZADD",
    "ZREM",
    "ZRANGE",
    "ZSCORE",
    "ZCARD",
    "ZINCRBY",
    "XADD",
    "XREAD",
    "XREADGROUP",
    "XACK",
    "XLEN",
    "PUBLISH",
    "SPUBLISH",
    "EVAL",
    "EVALSHA",
    "FCALL",
    "PING",
    "INFO",
    "SCAN",
    "TYPE",
    "BLPOP",
    "BRPOP",
    "BLMOVE",
    "BZPOPMIN",
    "BZPOPMAX",
    "WAIT",
    "AUTH",
    "HELLO",
];

/// `error.type`: the kind of a failed command, a short fixed word.
#[cfg(feature = "metrics")]
fn error_type(err: &redis::RedisError) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() {
        "io"
    } else if matches!(err.kind(), redis::ErrorKind::Server(_)) {
        "server"
    } else {
        "client"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_known_commands_or_other() {
        assert_eq!(operation_name(&redis::cmd("get")), "GET");
        assert_eq!(operation_name(redis::cmd("HSET").arg("k")), "HSET");
        // Whatever a caller sends, the label stays one of a fixed set.
        assert_eq!(operation_name(&redis::cmd("user-input-42")), "OTHER");
        assert_eq!(pipeline_name(redis::pipe().atomic()), "MULTI");
        assert_eq!(pipeline_name(&redis::pipe()), "PIPELINE");
    }
}
