//! The fault suite's own cases: the upstream server restarted under load, on
//! both topologies. Failures stay inside the fault's window, they are the
//! kind the outage explains, and the pool recovers without help.
//!
//! The other faults of the suite have their tests beside the feature they
//! exercise: all connections dropped and re-authentication throttled
//! (`pool_lifecycle.rs`), authentication refused (`pool.rs`), a wrong CA
//! (`pool_tls.rs`), the credential endpoint down for less and for more than
//! a token's life (`credential_outage.rs`).

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use elasticache_localstack::StackConfig;
use support::pools::{iam_config, iam_pool, load, real_now, start, steady};

/// 8 workers for 12 s; the upstream stops at 3 s and starts again at 4.5 s.
async fn upstream_restart(config: StackConfig) {
    let stack = start(config).await;
    let pool = iam_pool(iam_config(&stack).build().unwrap())
        .max_size(8)
        .build()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = real_now();
    let running = tokio::spawn({
        let pool = pool.clone();
        async move { load(&pool, 8, Duration::from_secs(12), steady, stop).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped_at = started.elapsed().as_secs_f64();
    stack.stop_upstream().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.start_upstream().await.unwrap();
    let restarted_at = started.elapsed().as_secs_f64();
    let report = running.await.unwrap();
    let health = pool.health().await;
    println!(
        "stopped {stopped_at:.2} s, restarted {restarted_at:.2} s; {} ok; {} failures, \
         from {:?} to {:?}; counts {:?}",
        report.ok,
        report.failures.len(),
        report.failures.first(),
        report.failures.last(),
        health.counts
    );

    // The outage was felt: commands failed, or at least connections were
    // closed and opened again (with every worker between commands at that
    // moment, they wait for a new connection and fail nothing)...
    let reopened = stack.stats().connections_total > 8;
    assert!(
        !report.failures.is_empty() || reopened,
        "no failure and no reconnection: was the fault real? {:?}",
        health.counts
    );
    // ...only while it lasted, plus the time to reconnect (the attempts back
    // off from 200 ms, so a 1.5 s outage is over within about 2 s)...
    let window = stopped_at - 0.05..restarted_at + 2.5;
    for (at, failure) in &report.failures {
        assert!(
            window.contains(at),
            "a failure outside the fault's window {window:?}, at {at:.2} s: {failure}"
        );
        // ...as lost connections and an unavailable server, nothing else.
        let expected = [
            "upstream server unavailable",
            "connection",
            "Connection",
            "closed",
            "broken pipe",
            "reset",
            "timed out",
            "unavailable",
        ];
        assert!(
            expected.iter().any(|e| failure.contains(e)),
            "an unexpected failure at {at:.2} s: {failure}"
        );
        assert!(!failure.contains("WRONGPASS"), "{failure}");
    }
    // And it recovered by itself: work after the window, a healthy pool.
    assert!(report.ok > 500, "{}", report.ok);
    assert!(health.ok, "{health:?}");
    let stats = stack.stats();
    if pool.is_cluster() {
        // redis-rs's cluster client reconnects its node connection itself
        // (authenticating with the refresher's token); the pool's
        // connections stay.
        assert!(stats.connections_total > 8, "{stats:?}");
    } else {
        // The pool found its connections closed and replaced them.
        assert!(health.counts.closed_by_server > 0, "{:?}", health.counts);
    }
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restart_mid_load_standalone() {
    upstream_restart(StackConfig::replication_group("rg-restart")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restart_mid_load_cluster_mode() {
    upstream_restart(StackConfig::serverless("sl-restart")).await;
}
