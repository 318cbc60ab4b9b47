//! The refresher's tracing: a span per refresh, rotations at DEBUG, failures
//! at WARN, recovery at INFO; and at TRACE level, no token, secret key or
//! session token anywhere in the output, its `Debug`, its status or its
//! errors.
//!
//! One test in this binary on purpose (tracing caches call-site interest
//! process-wide; see `redaction_tracing.rs`).

mod support;

use std::time::{Duration, UNIX_EPOCH};

use elasticache_iam::TokenRefresher;
use elasticache_iam::test_util::{ScriptedCredentials, TokioWallClock};
use support::capture::Capture;
use support::markers::assert_clean;

#[tokio::test(start_paused = true)]
async fn refresh_events_are_logged_at_their_levels_without_secrets() {
    let capture = Capture::default();
    // A current-thread runtime: every task runs on this thread, under this
    // subscriber.
    let _guard = tracing::subscriber::set_default(capture.subscriber());

    let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let minute = Duration::from_secs(60);
    let clock = TokioWallClock::new(start);
    let credentials = ScriptedCredentials::temporary(clock.clone(), 60 * minute);
    credentials.fail_between(start + 15 * minute, start + 40 * minute);
    let refresher = TokenRefresher::builder()
        .serverless_cache("my-cache")
        .user_id("app-user")
        .region("us-east-1")
        .credentials_provider(credentials.clone())
        .time_source(clock.clone())
        .build()
        .await
        .unwrap();

    // An hour, read every 10 s: rotations, an outage long enough for reads
    // to fail, and the recovery.
    let mut tokens = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..360 {
        match refresher.token().await {
            Ok(token) => tokens.push(token.expose_secret().to_owned()),
            Err(err) => errors.push(format!("{err} / {err:?}")),
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    assert!(!errors.is_empty(), "the outage made reads fail");
    let status = refresher.status();
    let debug = format!("{refresher:?} {status:?}");
    drop(_guard);
    let logs = capture.text();

    let lines = |needle: &str| logs.lines().filter(|l| l.contains(needle)).count();
    assert!(lines("DEBUG token_refresh{") >= 2, "{logs}");
    assert!(lines("rotated IAM auth token") >= 3, "{logs}");
    assert!(
        logs.lines().any(|l| l.contains(" WARN ")
            && l.contains("refresh failed")
            && l.contains("scripted credentials outage")),
        "{logs}"
    );
    assert_eq!(
        logs.lines()
            .filter(|l| l.contains(" INFO ") && l.contains("IAM auth token refresh recovered"))
            .count(),
        1,
        "{logs}"
    );
    assert!(
        logs.contains("trigger=\"schedule\"") || logs.contains("trigger=schedule"),
        "{logs}"
    );

    // Nothing secret anywhere: not the secrets the provider handed out, not
    // the tokens (nor their signatures).
    let mut forbidden = vec!["SCRIPTED-SECRET".to_owned()];
    for token in &tokens {
        forbidden.push(token.clone());
        let signature = token.rsplit("X-Amz-Signature=").next().unwrap();
        forbidden.push(signature.to_owned());
    }
    assert!(tokens.len() > 100);
    assert!(
        tokens.iter().all(|t| t.contains("SCRIPTED-SECRET-session")),
        "markers are in the tokens"
    );
    assert_clean("tracing output", &logs, &forbidden);
    assert_clean("Debug and status", &debug, &forbidden);
    for error in &errors {
        assert_clean("an error", error, &forbidden);
    }
}
