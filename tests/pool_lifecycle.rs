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
use support::pools::{
    SCALED_MAX_AUTH_AGE, iam_config, iam_pool, load, real_now, scaled, scaled_stack_and_pool,
    start, steady,
};

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
    // Every node connection re-authenticated by the pool, each confirmation
    // counted: 4 connections, every 3.6-4 s, for 30 s.
    assert!(health.counts.reauths >= 4 * 6, "{:?}", health.counts);
    assert!(
        stats.reauth_ok >= health.counts.reauths && stats.reauth_ok <= health.counts.reauths + 4,
        "the counts are the server's confirmations: {stats:?}"
    );
}

/// Pooled cluster connections left idle for 20 s, past the stack's 8-second
/// cut: a timer re-authenticates every node connection of each while it
/// sits in the pool, so none is cut and none needs replacing; then they
/// serve at once. A throttle of 3 s over their re-auth points is outlasted
/// by retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_cluster_connections_are_reauthenticated_by_a_timer() {
    let stack = start(
        StackConfig::replication_group("rg-idle-cluster-01")
            .cluster_mode(3, 1)
            .max_auth_age(SCALED_MAX_AUTH_AGE),
    )
    .await;
    let opened = real_now();
    let pool = iam_pool(scaled(iam_config(&stack)))
        .cluster_mode(true)
        .max_size(4)
        .build()
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.get().await.unwrap());
    }
    for conn in &mut held {
        let () = redis::AsyncCommands::set(&mut **conn, "idle", 1)
            .await
            .unwrap();
    }
    drop(held);
    // From 2 s to 5 s after they opened: over their re-auth points (3.6-4
    // s), ending before their deadlines (5.7-6 s).
    tokio::time::sleep_until(opened + Duration::from_secs(2)).await;
    stack.faults().throttle_auths_for(Duration::from_secs(3));
    tokio::time::sleep_until(opened + Duration::from_secs(20)).await;

    let counts = pool.counts();
    let stats = stack.stats();
    println!("stack: {stats:?}\ncounts: {counts:?}");
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert!(counts.reauth_failures > 0, "met the throttle: {counts:?}");
    // 4 connections × 6 nodes, at least 4 rounds each in 20 s.
    assert!(counts.reauths >= 4 * 6 * 4, "{counts:?}");
    assert_eq!(counts.recycles, 0, "{counts:?}");
    assert_eq!(counts.connections_opened, 4, "{counts:?}");
    let mut conn = pool.get().await.unwrap();
    let value: i64 = redis::AsyncCommands::get(&mut *conn, "idle").await.unwrap();
    assert_eq!(value, 1);
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
