//! An outage of the credential source, with aws-config's real default chain
//! loading temporary credentials from the local stack's mock ECS task-role
//! endpoint (the chain reads this test's variables instead of the process's).
//!
//! Shorter than a token's life: nothing fails; connections are replaced with
//! the last token while the refresher retries. Longer: connections already
//! open keep working, a new connection fails with a credentials error naming
//! the source, and everything recovers by itself once the endpoint answers.
//! Credentials that live long are fetched once, not per rotation.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aws_types::os_shim_internal::Env;
use elasticache_iam::{ErrorKind, Pool, PoolBuilder};
use elasticache_localstack::{Stack, StackConfig};
use redis::AsyncCommands;
use support::pools::{SCALED_MAX_AUTH_AGE, iam_config, load, real_now, scaled, start, steady};

/// Pool builder whose credentials come from aws-config's default chain with
/// only the stack's ECS endpoint in its environment (no keys, no profile
/// files, no instance metadata).
async fn ecs_chain(stack: &Stack, config: elasticache_iam::ConnectionConfig) -> PoolBuilder {
    let nowhere = stack.dir().join("no-such-file").display().to_string();
    let uri = stack.container_credentials_uri();
    let env = Env::from_slice(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", nowhere.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", nowhere.as_str()),
        ("AWS_REGION", stack.region()),
    ]);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .env(env)
        .load()
        .await;
    Pool::builder(config).sdk_config(&sdk)
}

async fn stack(name: &str, credential_lifetime: Duration, max_auth_age: Duration) -> Stack {
    start(
        StackConfig::serverless(name)
            .max_auth_age(max_auth_age)
            .credential_lifetime(credential_lifetime),
    )
    .await
}

/// Under the scaled 12-hour rule (connections re-authenticated every 4 s), with
/// credentials that live 60 s, so each token is handed out for about 30 s:
/// a 12 s outage starting 8 s into a 32 s load fails nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_shorter_than_a_token_life_fails_nothing() {
    let stack = stack("outage-short", Duration::from_secs(60), SCALED_MAX_AUTH_AGE).await;
    let pool = ecs_chain(&stack, scaled(iam_config(&stack)))
        .await
        .max_size(8)
        .build()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let run = {
        let pool = pool.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move { load(&pool, 8, Duration::from_secs(32), steady, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(8)).await;
    let issued_before = stack.stats().credentials_issued;
    let before = pool.health().await.counts;
    stack
        .faults()
        .credential_outage_for(Duration::from_secs(12));
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The outage is real: refreshes fail, no credentials are issued...
    let during = pool.refresher().unwrap().status();
    assert!(during.consecutive_failures >= 2, "{during:?}");
    assert_eq!(stack.stats().credentials_issued, issued_before);
    // ...and connections were re-authenticated (or replaced) meanwhile, with
    // the last token.
    let health = pool.health().await;
    assert!(
        health.counts.reauths > before.reauths || health.counts.recycles > before.recycles,
        "{:?}",
        health.counts
    );
    let report = run.await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.ok > 1000, "{report:?}");
    let after = pool.refresher().unwrap().status();
    assert_eq!(after.consecutive_failures, 0, "recovered: {after:?}");
    let stats = stack.stats();
    assert!(stats.credentials_issued > issued_before, "{stats:?}");
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
}

/// Connections that stay open (no re-auth or replacement due for hours),
/// credentials that live 40 s (each token handed out for about 10 s), and a
/// 40 s outage: the open connections serve throughout; once the last token
/// is spent a new connection fails at once with a credentials error that
/// names the source; after the outage the pool recovers without help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_longer_than_a_token_life_spares_open_connections() {
    let stack = stack(
        "outage-long",
        Duration::from_secs(40),
        Duration::from_secs(12 * 3600),
    )
    .await;
    let config = iam_config(&stack)
        .token_refresh_interval(Duration::from_secs(2))
        .build()
        .unwrap();
    let pool = ecs_chain(&stack, config)
        .await
        .max_size(8)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();

    // Two workers, each on one connection held for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(tokio::sync::Barrier::new(3));
    let mut workers = Vec::new();
    for worker in 0..2 {
        let (pool, stop, ok, ready) = (
            pool.clone(),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&ready),
        );
        workers.push(tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap();
            ready.wait().await;
            let mut failures = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (key, value) = (format!("held:{worker}"), n.to_string());
                let result: redis::RedisResult<String> = async {
                    let () = conn.set(&key, &value).await?;
                    conn.get(&key).await
                }
                .await;
                match result {
                    Ok(read) if read == value => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        }));
    }

    ready.wait().await;
    let outage_started = real_now();
    stack
        .faults()
        .credential_outage_for(Duration::from_secs(40));
    // Wait until the last token is no longer handed out (at most ~10 s).
    let refresher = pool.refresher().unwrap();
    while refresher.token().await.is_ok() {
        assert!(outage_started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let served_before = ok.load(Ordering::Relaxed);

    // Both connections are in use: another one must be opened, and fails.
    let asked = real_now();
    let err = match pool.get().await {
        Ok(_) => panic!("a new connection opened during the outage"),
        Err(err) => err,
    };
    assert!(asked.elapsed() < Duration::from_secs(5), "{err}");
    assert_eq!(err.kind(), ErrorKind::Credentials, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("the last credentials came from the container credentials endpoint")
            && message.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        "the message names the source: {message}"
    );
    eprintln!("during the outage: {message}");
    let health = pool.health().await;
    assert!(!health.ok, "{health:?}");

    // The open connections keep serving through the rest of the outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(ok.load(Ordering::Relaxed) > served_before + 100);

    // The endpoint answers again: the refresher and the pool recover alone.
    while outage_started.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let recovered = real_now();
    loop {
        match pool.get().await {
            Ok(_) => break,
            Err(err) => {
                assert!(
                    recovered.elapsed() < Duration::from_secs(30),
                    "no recovery: {err}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    eprintln!(
        "recovered {:.1} s after the endpoint returned",
        recovered.elapsed().as_secs_f64()
    );
    assert!(refresher.status().is_healthy());
    assert!(pool.health().await.ok);

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let failures = worker.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    let stats = stack.stats();
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
}

/// With credentials that live an hour, the ECS endpoint is asked about once,
/// however often tokens rotate: here every 2 s for 60 s under load, with
/// every token accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_of_credentials_is_fetched_once_for_a_minute_of_rotations() {
    let stack = stack("reuse", Duration::from_secs(3600), SCALED_MAX_AUTH_AGE).await;
    let pool = ecs_chain(&stack, scaled(iam_config(&stack)))
        .await
        .max_size(4)
        .build()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let report = load(&pool, 4, Duration::from_secs(60), steady, stop).await;
    let stats = stack.stats();
    let status = pool.refresher().unwrap().status();
    let counts = pool.counts();
    println!(
        "{} round trips; {} rotations; credentials issued {}, accepted {}; {counts:?}; auth failures {:?}",
        report.ok,
        status.rotations,
        stats.credentials_issued,
        stats.credentials_accepted,
        stats.auth_failed
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(status.rotations >= 29, "{status:?}");
    assert!(stats.credentials_issued <= 2, "{stats:?}");
    // Every token accepted: connections authenticated and re-authenticated,
    // nothing refused.
    assert!(stats.auth_failed.is_empty(), "{stats:?}");
    assert!(counts.reauths >= 10, "{counts:?}");
}
