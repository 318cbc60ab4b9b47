//! The shared handle against the local stack, in real time: load through the
//! scaled 12-hour rule in every topology, dropped connections, a shard
//! failover, throttled re-authentication, and the commands it refuses.
//!
//! Scaled: the stack cuts a connection 8 s after its last authentication;
//! tokens rotate every 2 s, connections re-authenticate after 3.6-4 s and are
//! replaced by 5.7-6 s if that has not succeeded.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use elasticache_iam::{ConnectionConfig, SharedConnection, SharedConnectionBuilder};
use elasticache_localstack::{Stack, StackConfig, StatsSnapshot};
use redis::AsyncCommands;
use support::pools::{
    LoadReport, SCALED_MAX_AUTH_AGE, iam_config, real_now, scaled, start, static_credentials,
};

fn shared(config: ConnectionConfig) -> SharedConnectionBuilder {
    SharedConnection::builder(config).credentials_provider(static_credentials())
}

/// A stack of `config` under the scaled rule, and a shared handle with the
/// scaled lifecycle.
async fn scaled_stack_and_shared(
    config: StackConfig,
    cluster: bool,
) -> (Arc<Stack>, SharedConnection) {
    let stack = Arc::new(start(config.max_auth_age(SCALED_MAX_AUTH_AGE)).await);
    let redis = shared(scaled(iam_config(&stack)))
        .cluster_mode(cluster)
        .build()
        .await
        .unwrap();
    (stack, redis)
}

/// `workers` tasks on clones of `redis`, each `SET` then `GET` of its own
/// key, checking the value, then pausing 5 ms; until `span` has passed.
/// Every fourth round is an atomic pipeline (`MULTI`, `INCR`, `GET`,
/// `EXEC`) instead, checked too: a re-authentication must never land inside
/// it.
async fn load(redis: &SharedConnection, workers: usize, span: Duration) -> LoadReport {
    let started = real_now();
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let mut conn = redis.clone();
        let ok = Arc::clone(&ok);
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0u64;
            let mut last_tx = 0u64;
            while started.elapsed() < span {
                let at = started.elapsed().as_secs_f64();
                n += 1;
                let key = format!("shared:{worker}");
                let value = format!("{worker}:{n}");
                let result: Result<(), String> = async {
                    if n.is_multiple_of(4) {
                        let counter = format!("shared:tx:{worker}");
                        let mut pipe = redis::pipe();
                        pipe.atomic().incr(&counter, 1).get(&counter);
                        let (after, read): (u64, u64) = pipe
                            .query_async(&mut conn)
                            .await
                            .map_err(|e| format!("MULTI/EXEC: {e}"))?;
                        // A transaction whose reply was lost to a fault may
                        // have run: the counter only has to move forward.
                        if after != read || after <= last_tx {
                            return Err(format!("{counter}: {after}, {read}, after {last_tx}"));
                        }
                        last_tx = after;
                        return Ok(());
                    }
                    let () = conn
                        .set(&key, &value)
                        .await
                        .map_err(|e| format!("SET: {e}"))?;
                    let read: String = conn.get(&key).await.map_err(|e| format!("GET: {e}"))?;
                    if read != value {
                        return Err(format!("GET {key}: {read:?}, expected {value:?}"));
                    }
                    Ok(())
                }
                .await;
                match result {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push((at, e)),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        }));
    }
    let mut report = LoadReport::default();
    for task in tasks {
        report.failures.extend(task.await.unwrap());
    }
    report.ok = ok.load(Ordering::Relaxed);
    report
        .failures
        .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    report
}

/// The most client connections the stack had open at once, sampled every
/// 20 ms until `stop` is set.
fn watch_connections(stack: &Arc<Stack>, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let most = Arc::new(AtomicU64::new(0));
    let stack = Arc::clone(stack);
    let seen = Arc::clone(&most);
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            seen.fetch_max(stack.stats().connections_open, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    most
}

fn no_failures(report: &LoadReport, stats: &StatsSnapshot) {
    assert!(
        report.failures.is_empty(),
        "{} failures, first: {:?}",
        report.failures.len(),
        report.failures.first()
    );
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    // Only the injected throttles.
    assert_eq!(stats.failed_total(), stats.failed("throttled"), "{stats:?}");
}

/// 64 workers for 60 s through token rotations and re-authentications, with
/// two 3-second throttles of IAM authentication (at 20 s and 40 s) that
/// re-authentications due in them must outlast, by retrying or by replacing
/// their connection: nothing fails, the stack cuts nothing, and it never
/// sees more than one connection per node per configured connection, plus
/// one successor per connection being replaced.
async fn a_minute_of_load(config: StackConfig, cluster: bool, nodes: u64) {
    let (stack, redis) = scaled_stack_and_shared(config, cluster).await;
    assert_eq!(redis.is_cluster(), cluster);
    let stop = Arc::new(AtomicBool::new(false));
    let most = watch_connections(&stack, Arc::clone(&stop));
    let running = tokio::spawn({
        let redis = redis.clone();
        async move { load(&redis, 64, Duration::from_secs(60)).await }
    });
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(20)).await;
        stack.faults().throttle_auths_for(Duration::from_secs(3));
    }
    let report = running.await.unwrap();
    stop.store(true, Ordering::Relaxed);

    // The stack counts an AUTH before its client sees the OK: read the
    // counts on either side of its stats.
    let before = redis.counts().reauths;
    let stats = stack.stats();
    let health = redis.health().await;
    let most = most.load(Ordering::Relaxed);
    println!(
        "{} round trips ok, {} failed; at most {most} connections open\nstack: {stats:?}\ncounts: {:?}\ntoken: {:?}",
        report.ok,
        report.failures.len(),
        health.counts,
        health.token
    );
    no_failures(&report, &stats);
    assert!(report.ok > 20_000, "the load ran: {}", report.ok);
    // Every 3.6-4 s per connection: at least 10 rounds in 60 s.
    assert!(health.counts.reauths >= 10 * nodes, "{:?}", health.counts);
    assert!(
        (before..=health.counts.reauths + nodes).contains(&stats.reauth_ok),
        "the counts are the server's confirmations: {before}, {}, {}",
        stats.reauth_ok,
        health.counts.reauths
    );
    assert!(health.token.as_ref().unwrap().rotations >= 25);
    // One connection per node, and one successor in flight.
    assert!(most <= 2 * nodes, "{most} connections for {nodes} nodes");
    assert!(health.ok, "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_a_minute_of_load_through_the_scaled_rule() {
    a_minute_of_load(StackConfig::replication_group("rg-shared-01"), false, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_a_minute_of_load_through_the_scaled_rule() {
    // One shard with a replica behind the one endpoint.
    a_minute_of_load(StackConfig::serverless("shared-serverless-01"), true, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_group_a_minute_of_load_through_the_scaled_rule() {
    // 3 primaries and 3 replicas, one front each.
    a_minute_of_load(
        StackConfig::replication_group("rg-shared-02").cluster_mode(3, 1),
        true,
        6,
    )
    .await;
}

/// 64 workers for 20 s; `fault` strikes at 8 s. Failures only in the 4 s
/// after it, and the load goes on after them, with no help.
async fn through_a_fault<F, Fut>(stack: Arc<Stack>, redis: SharedConnection, fault: F)
where
    F: FnOnce(Arc<Stack>) -> Fut,
    Fut: Future<Output = ()>,
{
    let running = tokio::spawn({
        let redis = redis.clone();
        async move { load(&redis, 64, Duration::from_secs(20)).await }
    });
    let started = real_now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let at = started.elapsed().as_secs_f64();
    fault(Arc::clone(&stack)).await;
    let report = running.await.unwrap();

    let stats = stack.stats();
    let health = redis.health().await;
    let (first, last) = (
        report.failures.first().map(|f| f.0),
        report.failures.last().map(|f| f.0),
    );
    println!(
        "fault at {at:.2} s; {} ok, {} failed between {first:?} and {last:?}: {:?}\nstack: {stats:?}\ncounts: {:?}",
        report.ok,
        report.failures.len(),
        report
            .failures
            .iter()
            .map(|f| &f.1)
            .take(3)
            .collect::<Vec<_>>(),
        health.counts
    );
    for (when, failure) in &report.failures {
        assert!(
            (at - 0.5..at + 4.0).contains(when),
            "a failure outside the fault window ({at:.2} s): {when:.2} s: {failure}"
        );
    }
    assert!(report.ok > 5_000, "the load ran: {}", report.ok);
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert!(health.ok, "recovered by itself: {health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_all_connections_dropped_mid_load() {
    let (stack, redis) =
        scaled_stack_and_shared(StackConfig::replication_group("rg-shared-03"), false).await;
    through_a_fault(stack, redis.clone(), |stack| async move {
        stack.drop_all_connections()
    })
    .await;
    let counts = redis.counts();
    assert!(counts.closed_by_server >= 1, "{counts:?}");
    assert!(counts.connections_opened >= 2, "replaced: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_all_connections_dropped_mid_load() {
    let (stack, redis) = scaled_stack_and_shared(
        StackConfig::replication_group("rg-shared-04").cluster_mode(3, 1),
        true,
    )
    .await;
    through_a_fault(
        stack,
        redis,
        |stack| async move { stack.drop_all_connections() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_shard_failover_mid_load() {
    let (stack, redis) = scaled_stack_and_shared(
        StackConfig::replication_group("rg-shared-05").cluster_mode(3, 1),
        true,
    )
    .await;
    through_a_fault(stack, redis, |stack| async move {
        stack.fail_over(0).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_all_connections_dropped_mid_load() {
    let (stack, redis) = scaled_stack_and_shared(
        StackConfig::serverless("shared-serverless-02").cluster_mode(3, 1),
        true,
    )
    .await;
    through_a_fault(
        stack,
        redis,
        |stack| async move { stack.drop_all_connections() },
    )
    .await;
}

/// Re-authentication of a cluster connection throttled for 3 s, from just
/// before its nodes' re-auth points (3.6-4 s after they connected): every
/// node keeps serving, re-authenticates once the throttle ends, and none is
/// cut at 8 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_reauthentication_throttled_for_3_s_keeps_serving() {
    let (stack, redis) = scaled_stack_and_shared(
        StackConfig::replication_group("rg-shared-06").cluster_mode(3, 1),
        true,
    )
    .await;
    let running = tokio::spawn({
        let redis = redis.clone();
        async move { load(&redis, 16, Duration::from_secs(16)).await }
    });
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    stack.faults().throttle_auths_for(Duration::from_secs(3));
    let report = running.await.unwrap();

    let before = redis.counts().reauths;
    let stats = stack.stats();
    let counts = redis.counts();
    println!("{} ok\nstack: {stats:?}\ncounts: {counts:?}", report.ok);
    no_failures(&report, &stats);
    assert!(
        counts.reauth_failures > 0 && stats.failed("throttled") > 0,
        "re-authentication met the throttle: {counts:?}"
    );
    // Every node re-authenticated after the throttle (6.3 s), and again
    // before the run ended.
    assert!(counts.reauths >= 12, "{counts:?}");
    assert!(
        (before..=counts.reauths + 6).contains(&stats.reauth_ok),
        "{before} {stats:?}"
    );
    for node in &stats.nodes {
        assert!(node.reauth_ok >= 2, "{node:?}");
    }
}

/// A stack with the default lifecycle and a shared handle on it.
async fn stack_and_shared() -> (Stack, SharedConnection) {
    let stack = start(StackConfig::replication_group("rg-shared-refusals")).await;
    let redis = shared(iam_config(&stack).build().unwrap())
        .build()
        .await
        .unwrap();
    (stack, redis)
}

/// Each command of a family is refused with the documented error, before
/// anything reaches the server, and the connection serves on.
async fn refused(family: &[&[&str]]) {
    let (stack, redis) = stack_and_shared().await;
    let mut conn = redis.clone();
    for words in family {
        let mut cmd = redis::cmd(words[0]);
        for word in &words[1..] {
            cmd.arg(*word);
        }
        let before = stack.stats().commands;
        let err = cmd
            .query_async::<redis::Value>(&mut conn)
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), redis::ErrorKind::Client, "{words:?}: {err}");
        let text = err.to_string();
        assert!(
            text.starts_with("refused by the shared connection")
                && text.contains("needs a connection of its own")
                && text.contains("Pool::get"),
            "{words:?}: {text}"
        );
        assert_eq!(
            stack.stats().commands,
            before,
            "{words:?} reached the server"
        );
    }
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn refuses_transaction_commands() {
    refused(&[
        &["MULTI"],
        &["EXEC"],
        &["DISCARD"],
        &["WATCH", "k"],
        &["UNWATCH"],
    ])
    .await;
}

#[tokio::test]
async fn refuses_select() {
    refused(&[&["SELECT", "1"]]).await;
}

#[tokio::test]
async fn refuses_subscriptions() {
    refused(&[
        &["SUBSCRIBE", "news"],
        &["PSUBSCRIBE", "news.*"],
        &["SSUBSCRIBE", "news"],
        &["UNSUBSCRIBE"],
    ])
    .await;
}

#[tokio::test]
async fn refuses_blocking_commands() {
    refused(&[
        &["BLPOP", "jobs", "0"],
        &["BRPOP", "jobs", "5"],
        &["BLMOVE", "a", "b", "LEFT", "RIGHT", "1"],
        &["BZPOPMIN", "z", "1"],
        &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
        &["WAIT", "1", "100"],
    ])
    .await;
}

#[tokio::test]
async fn refuses_client_reply() {
    refused(&[&["CLIENT", "REPLY", "OFF"], &["CLIENT", "REPLY", "SKIP"]]).await;
}

#[tokio::test]
async fn refuses_reset() {
    refused(&[&["RESET"]]).await;
}

#[tokio::test]
async fn refuses_a_users_own_auth_and_hello() {
    refused(&[&["AUTH", "someone", "secret"], &["HELLO", "3"]]).await;
}

#[tokio::test]
async fn atomic_pipelines_run_whole() {
    let (_stack, redis) = stack_and_shared().await;
    let mut conn = redis.clone();
    let mut pipe = redis::pipe();
    pipe.atomic()
        .set("tx:a", 1)
        .ignore()
        .incr("tx:a", 41)
        .get("tx:a");
    let (incremented, read): (i64, i64) = pipe.query_async(&mut conn).await.unwrap();
    assert_eq!((incremented, read), (42, 42));
}
