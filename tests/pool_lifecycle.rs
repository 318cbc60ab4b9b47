//! The pool under load through the scaled 12-hour rule, dropped connections
//! and throttled authentication, against the local stack in real time.
//!
//! Scaled: the stack cuts a connection 8 s after its last authentication;
//! tokens rotate every 2 s, connections re-authenticate at checkout after
//! 3.6-4 s and are replaced by 5.7-6 s.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use elasticache_localstack::StackConfig;
use support::pools::{iam_config, iam_pool, load, scaled_stack_and_pool, start, steady};

/// 16 workers for 12 s, then none for 8 s, in 20-second cycles: the quiet
/// phases leave every connection idle past its deadline and up to the
/// stack's cut, as quiet hours do; they must be closed before the cut.
fn tidal(at: f64) -> usize {
    if at % 20.0 < 12.0 { 16 } else { 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_minutes_of_scaled_rotation_reauth_and_recycling_lose_nothing() {
    let (stack, pool) =
        scaled_stack_and_pool(StackConfig::replication_group("rg-soak-01"), 16).await;

    let stop = Arc::new(AtomicBool::new(false));
    let report = load(&pool, 16, Duration::from_secs(120), tidal, stop).await;

    let stats = stack.stats();
    let health = pool.health().await;
    println!(
        "{} commands ok, {} failed\nstack: {stats:?}\ncounts: {:?}\ntoken rotations: {}",
        report.ok * 2,
        report.failures.len(),
        health.counts,
        health.token.as_ref().unwrap().rotations
    );
    assert!(
        report.failures.is_empty(),
        "failures: {:?}",
        report.failures
    );
    assert!(report.ok > 1000, "the load ran: {}", report.ok);
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
    assert!(health.counts.reauths > 0, "{:?}", health.counts);
    assert_eq!(stats.reauth_ok, health.counts.reauths, "{stats:?}");
    assert!(health.counts.recycles > 0, "{:?}", health.counts);
    assert!(health.token.unwrap().rotations >= 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_through_the_scaled_rule() {
    let (stack, pool) =
        scaled_stack_and_pool(StackConfig::serverless("soak-serverless-01"), 4).await;
    assert!(pool.is_cluster());

    let stop = Arc::new(AtomicBool::new(false));
    let report = load(&pool, 8, Duration::from_secs(30), steady, stop).await;

    let stats = stack.stats();
    let health = pool.health().await;
    println!(
        "{} ok, {} failed\nstack: {stats:?}\ncounts: {:?}",
        report.ok,
        report.failures.len(),
        health.counts
    );
    assert!(
        report.failures.is_empty(),
        "failures: {:?}",
        report.failures
    );
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
    assert!(stats.reauth_ok > 0, "redis-rs re-authenticated: {stats:?}");
    assert!(health.counts.reauths > 0, "{:?}", health.counts);
    assert!(health.counts.recycles > 0, "{:?}", health.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_fail_only_while_it_happens() {
    let stack = start(StackConfig::replication_group("rg-drop-01")).await;
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config).max_size(16).build().await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let pool = pool.clone();
        let stop = Arc::clone(&stop);
        async move { load(&pool, 16, Duration::from_secs(12), steady, stop).await }
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let dropped_at = 4.0;
    stack.drop_all_connections();
    let report = running.await.unwrap();

    let health = pool.health().await;
    println!(
        "{} ok; failures: {:?}\ncounts: {:?}",
        report.ok, report.failures, health.counts
    );
    for (at, failure) in &report.failures {
        assert!(
            (dropped_at - 0.5..dropped_at + 2.0).contains(at),
            "a failure outside the drop's window, at {at:.2} s: {failure}"
        );
    }
    let after = report
        .failures
        .iter()
        .filter(|(at, _)| *at > dropped_at + 2.0)
        .count();
    assert_eq!(after, 0);
    // Each connection open at the drop is counted once.
    assert!(
        (1..=16).contains(&health.counts.closed_by_server),
        "{:?}",
        health.counts
    );
    assert!(report.ok > 500, "{}", report.ok);
    assert!(health.ok, "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_reauthentication_keeps_connections_serving() {
    let (stack, pool) =
        scaled_stack_and_pool(StackConfig::replication_group("rg-throttle-01"), 8).await;

    // Throttle from the 3rd second to the 5th: connections made at the
    // start come due for re-authentication (3.6-4 s) inside the window.
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let pool = pool.clone();
        let stop = Arc::clone(&stop);
        async move { load(&pool, 8, Duration::from_secs(14), steady, stop).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.faults().throttle_auths_for(Duration::from_secs(2));
    let report = running.await.unwrap();

    let stats = stack.stats();
    let health = pool.health().await;
    println!(
        "{} ok, failures {:?}\nstack: {stats:?}\ncounts: {:?}",
        report.ok, report.failures, health.counts
    );
    assert!(
        report.failures.is_empty(),
        "failures: {:?}",
        report.failures
    );
    assert!(
        health.counts.reauth_failures > 0,
        "re-authentication met the throttle: {:?}",
        health.counts
    );
    assert!(stats.reauth_ok > 0, "and succeeded after it: {stats:?}");
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_wait_out_a_throttle() {
    let stack = start(StackConfig::replication_group("rg-throttle-02")).await;
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config).build().await.unwrap();

    stack.faults().throttle_auths_for(Duration::from_secs(2));
    stack.drop_all_connections();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = support::pools::real_now();
    // A throttle is worth waiting out: get() keeps trying (with backoff)
    // within its connection timeout.
    let mut conn = pool
        .get()
        .await
        .expect("a connection once the throttle ends");
    let waited = started.elapsed();
    let _: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
    drop(conn);

    let health = pool.health().await;
    println!("waited {waited:?}; counts {:?}", health.counts);
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    assert!(health.counts.connect_failures > 0);
    assert!(
        health
            .last_connect_error
            .as_deref()
            .is_some_and(|e| e.contains("throttling")),
        "{health:?}"
    );
}
