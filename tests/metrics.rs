//! The pool's metrics (feature `metrics`), read back from a recorder, against
//! the pool's own counts and state, under the scaled 12-hour rule against the
//! local stack; no label carries a secret.

#![cfg(feature = "metrics")]

mod support;

use std::time::Duration;

use elasticache_localstack::StackConfig;
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use redis::AsyncCommands;
use support::markers::{SECRET_MARKER, SESSION_MARKER};
use support::pools::{SCALED_MAX_AUTH_AGE, iam_config, marker_pool, scaled, start};

type Sample = (MetricKind, String, Vec<(String, String)>, DebugValue);

/// What the recorder holds now (counters and gauges read are reset).
fn snapshot(snapshotter: &Snapshotter) -> Vec<Sample> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (kind, key.name().to_owned(), labels, value)
        })
        .collect()
}

/// Two readings' counters and histograms, one after the other.
fn snapshot_union(first: Vec<Sample>, last: &[Sample]) -> Vec<Sample> {
    let mut all: Vec<Sample> = first
        .into_iter()
        .filter(|(kind, ..)| *kind != MetricKind::Gauge)
        .collect();
    all.extend(
        last.iter()
            .filter(|(kind, ..)| *kind != MetricKind::Gauge)
            .map(|(kind, name, labels, value)| {
                let value = match value {
                    DebugValue::Counter(n) => DebugValue::Counter(*n),
                    DebugValue::Gauge(g) => DebugValue::Gauge(*g),
                    DebugValue::Histogram(v) => DebugValue::Histogram(v.clone()),
                };
                (*kind, name.clone(), labels.clone(), value)
            }),
    );
    all
}

/// The samples of `name` whose labels include all of `labels`.
fn matching<'a>(
    samples: &'a [Sample],
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a DebugValue> {
    samples
        .iter()
        .filter(move |(_, n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, _, value)| value)
}

/// The sum of counters (or gauges) `name` with `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(samples, name, labels)
        .map(|value| match value {
            DebugValue::Counter(n) => *n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(_) => 0.0,
        })
        .sum()
}

/// How many values histograms `name` with `labels` recorded.
fn recorded(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> usize {
    matching(samples, name, labels)
        .map(|value| match value {
            DebugValue::Histogram(values) => values.len(),
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_metrics_match_its_counts_and_state() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let stack =
        start(StackConfig::replication_group("metrics-group").max_auth_age(SCALED_MAX_AUTH_AGE))
            .await;
    let pool = marker_pool(&stack, scaled(iam_config(&stack)))
        .max_size(3)
        .build()
        .await
        .unwrap();
    let port = stack.endpoint().port().to_string();
    let ours = [("server.port", port.as_str()), ("db.system.name", "redis")];

    // Two connections in use, the third idle or not yet open.
    let mut first = pool.get().await.unwrap();
    let mut second = pool.get().await.unwrap();
    let () = first.set("metrics:k", "v").await.unwrap();
    let value: String = second.get("metrics:k").await.unwrap();
    assert_eq!(value, "v");
    let (n,): (u64,) = redis::pipe()
        .atomic()
        .incr("metrics:n", 1)
        .query_async(&mut *first)
        .await
        .unwrap();
    assert_eq!(n, 1);
    pool.record_metrics();
    let state = pool.state();
    let gauges = snapshot(&snapshotter);
    let used = [ours[0], ours[1], ("state", "used")];
    let idle = [ours[0], ours[1], ("state", "idle")];
    assert_eq!(sum(&gauges, "db.client.connection.count", &used), 2.0);
    assert_eq!(
        sum(&gauges, "db.client.connection.count", &idle),
        f64::from(state.idle_connections)
    );
    assert_eq!(sum(&gauges, "db.client.connection.max", &ours), 3.0);
    let get = [ours[0], ("db.operation.name", "GET")];
    assert_eq!(recorded(&gauges, "db.client.operation.duration", &get), 1);
    let multi = [ours[0], ("db.operation.name", "MULTI")];
    assert_eq!(recorded(&gauges, "db.client.operation.duration", &multi), 1);
    drop((first, second));

    // Past the scaled re-auth point (4 s) with the connections idle in the
    // pool: re-authenticated there, and tokens rotated (every 2 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    for _ in 0..10 {
        let mut conn = pool.get().await.unwrap();
        let _: Option<String> = conn.get("metrics:k").await.unwrap();
    }
    pool.record_metrics();
    let counts = pool.counts();
    let rotations = pool.refresher().unwrap().status().rotations;
    let last = snapshot(&snapshotter);
    // Reading resets counters: both readings together hold every event.
    let all: Vec<Sample> = snapshot_union(gauges, &last);
    println!(
        "counts: {counts:?}; rotations {rotations}; {} series",
        all.len()
    );
    assert!(counts.reauths > 0 && rotations >= 2, "{counts:?}");
    let ok = [ours[0], ("outcome", "ok")];
    assert_eq!(
        sum(&all, "elasticache_iam.connection.attempts", &ok),
        counts.connections_opened as f64
    );
    assert_eq!(
        sum(&all, "elasticache_iam.reauths", &ok),
        counts.reauths as f64
    );
    assert_eq!(
        sum(&all, "elasticache_iam.token.rotations", &[]),
        rotations as f64
    );
    assert_eq!(
        recorded(&all, "db.client.connection.create_time", &ours),
        counts.connections_opened as usize
    );
    // Every get() timed.
    assert_eq!(recorded(&all, "db.client.connection.wait_time", &ours), 12);
    let age = sum(&last, "elasticache_iam.token.age", &[]);
    assert!((0.0..2.5).contains(&age), "token age {age}");

    // No label carries a secret.
    for (_, name, labels, _) in &all {
        for (key, value) in labels {
            assert!(
                !value.contains(SECRET_MARKER)
                    && !value.contains(SESSION_MARKER)
                    && !value.contains("X-Amz"),
                "{name} {key}={value}"
            );
        }
    }
}
