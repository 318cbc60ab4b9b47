//! The pool's tracing at TRACE level, through token rotation,
//! re-authentication, recycling and refused authentication: no token, secret
//! key or session token anywhere in the output.
//!
//! One test in this binary on purpose: the subscriber is process-wide, since
//! the pool's tasks run on every worker thread.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use elasticache_iam::ErrorKind;
use elasticache_localstack::StackConfig;
use support::capture::Capture;
use support::markers::{assert_clean, forbidden};
use support::pools::{SCALED_MAX_AUTH_AGE, iam_config, load, marker_pool, scaled, start, steady};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_events_hold_no_secret() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.subscriber()).unwrap();

    let stack =
        start(StackConfig::replication_group("rg-tracing-01").max_auth_age(SCALED_MAX_AUTH_AGE))
            .await;
    let pool = marker_pool(&stack, scaled(iam_config(&stack)))
        .max_size(4)
        .build()
        .await
        .unwrap();

    let mut tokens = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let pool = pool.clone();
        async move { load(&pool, 4, Duration::from_secs(9), steady, stop).await }
    });
    for _ in 0..9 {
        tokens.push(pool.refresher().unwrap().token().await.unwrap());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let report = running.await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    stack.faults().reject_next_auths(u64::MAX);
    stack.drop_all_connections();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = pool.get().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationRefused);

    let text = capture.text();
    let health = pool.health().await;
    println!("{:?}", health.counts);
    assert!(health.counts.reauths > 0, "{:?}", health.counts);
    for event in [
        "connection opened",
        "connection re-authenticated",
        "connection attempt failed",
    ] {
        assert!(text.contains(event), "{event:?} not logged:\n{text}");
    }
    for token in &tokens {
        assert_clean(
            "pool tracing output",
            &text,
            &forbidden(token.expose_secret()),
        );
    }
}
