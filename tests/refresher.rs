//! The token refresher on simulated time: tokio's clock paused, a wall clock
//! that follows it, scripted credentials providers. Hours pass in
//! milliseconds; nothing sleeps for real.

use std::error::Error as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_async::time::TimeSource;
use elasticache_iam::test_util::{
    ProviderCall, ScriptedCredentials, ScriptedOutage, TokioWallClock,
};
use elasticache_iam::{ErrorKind, TokenRefresher, TokenRefresherBuilder};

const SAFETY_MARGIN: Duration = TokenRefresher::SAFETY_MARGIN;
use tokio::time::sleep;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn builder(provider: &ScriptedCredentials, clock: &TokioWallClock) -> TokenRefresherBuilder {
    TokenRefresher::builder()
        .serverless_cache("my-cache")
        .user_id("app-user")
        .region("us-east-1")
        .credentials_provider(provider.clone())
        .time_source(clock.clone())
}

async fn start_refresher(provider: &ScriptedCredentials, clock: &TokioWallClock) -> TokenRefresher {
    builder(provider, clock).build().await.unwrap()
}

/// Reads a token every `every` until `until`, checking each one; returns
/// the read times and whether each read succeeded.
fn reader(
    refresher: &TokenRefresher,
    clock: &TokioWallClock,
    every: Duration,
    until: SystemTime,
) -> tokio::task::JoinHandle<Vec<(SystemTime, bool)>> {
    let (refresher, clock) = (refresher.clone(), clock.clone());
    tokio::spawn(async move {
        let mut reads = Vec::new();
        while clock.now() < until {
            let result = refresher.token().await;
            let now = clock.now();
            if let Ok(token) = &result {
                assert!(
                    now + SAFETY_MARGIN < token.usable_until(),
                    "handed out at {now:?} a token usable until {:?}",
                    token.usable_until()
                );
            }
            reads.push((now, result.is_ok()));
            sleep(every).await;
        }
        reads
    })
}

/// Long-term credentials whose provider fails from 0:09 until `outage_end`,
/// and a refresher on them read every 5 s for `span`. Returns the refresher,
/// the provider, and the reads.
async fn through_outage(
    outage_end: Duration,
    span: Duration,
) -> (TokenRefresher, ScriptedCredentials, Vec<(SystemTime, bool)>) {
    let clock = TokioWallClock::new(start());
    let credentials = ScriptedCredentials::long_term(clock.clone());
    credentials.fail_between(start() + 9 * MINUTE, start() + outage_end);
    let refresher = start_refresher(&credentials, &clock).await;
    let reads = reader(&refresher, &clock, Duration::from_secs(5), start() + span);
    sleep(span).await;
    (refresher, credentials, reads.await.unwrap())
}

fn successes(calls: &[ProviderCall]) -> Vec<SystemTime> {
    calls
        .iter()
        .filter(|c| c.outcome.is_ok())
        .map(|c| c.at)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_simulated_day_at_the_default_interval_signs_exactly_145_times() {
    #[allow(
        clippy::disallowed_methods,
        reason = "measures the test's own real duration"
    )]
    let real_start = std::time::Instant::now();
    let clock = TokioWallClock::new(start());
    let credentials = ScriptedCredentials::long_term(clock.clone());
    let refresher = start_refresher(&credentials, &clock).await;
    let day = 24 * HOUR;
    let reads = reader(&refresher, &clock, 7 * MINUTE, start() + day);

    sleep(day + Duration::from_secs(1)).await;

    let reads = reads.await.unwrap();
    assert!(reads.iter().all(|(_, ok)| *ok));
    assert_eq!(reads.len(), 206); // every 7 minutes for 24 hours
    let calls = credentials.calls();
    // One signing at start, then one every 10 minutes: 24 h / 10 min = 144.
    assert_eq!(calls.len(), 145);
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(call.at, start() + 10 * MINUTE * i as u32, "signing {i}");
    }
    let status = refresher.status();
    assert_eq!(status.rotations, 145);
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.signed_at, Some(start() + day));
    let real = real_start.elapsed();
    println!("24 simulated hours took {real:?} of real time");
    assert!(real < Duration::from_secs(1), "took {real:?}");
}

/// Credentials that live 5 minutes, from a provider that hands out new ones
/// on every call, or (like a cache) the same ones until 2 minutes are left.
#[tokio::test(start_paused = true)]
async fn five_minute_credentials_are_replaced_before_they_expire() {
    for reuse in [None, Some(2 * MINUTE)] {
        let clock = TokioWallClock::new(start());
        let mut credentials = ScriptedCredentials::temporary(clock.clone(), 5 * MINUTE);
        if let Some(remaining) = reuse {
            credentials = credentials.reuse_while_more_than(remaining);
        }
        let refresher = start_refresher(&credentials, &clock).await;
        let span = 6 * HOUR;
        let reads = reader(&refresher, &clock, Duration::from_secs(10), start() + span);
        sleep(span).await;

        // Every read succeeded, and the reader asserted each token had more
        // than the safety margin left.
        let reads = reads.await.unwrap();
        assert_eq!(reads.len(), 2160);
        assert!(reads.iter().all(|(_, ok)| *ok), "{reuse:?}");

        // The token in use was always re-signed before the credentials that
        // signed it expired, with room to spare.
        let calls = credentials.calls();
        let signed = successes(&calls);
        let mut issued = std::collections::HashMap::new();
        for call in &calls {
            issued
                .entry(call.outcome.clone().unwrap())
                .or_insert(call.at);
        }
        for pair in calls.windows(2) {
            let expiry = issued[pair[0].outcome.as_ref().unwrap()] + 5 * MINUTE;
            assert!(
                pair[1].at + SAFETY_MARGIN < expiry,
                "{reuse:?}: re-signed at {:?}, credentials expired {expiry:?}",
                pair[1].at
            );
        }
        // Every 3.5 minutes (usable-until minus the 90 s lead), not more often.
        let expected = span.as_secs() / 210 + 1;
        assert_eq!(signed.len() as u64, expected, "{reuse:?}");
        assert!(issued.len() as u64 <= expected);
    }
}

#[tokio::test(start_paused = true)]
async fn a_three_minute_provider_outage_is_invisible() {
    let outage = (start() + 9 * MINUTE, start() + 12 * MINUTE);
    let (refresher, credentials, reads) = through_outage(12 * MINUTE, 20 * MINUTE).await;
    assert!(reads.iter().all(|(_, ok)| *ok), "a read failed");

    let calls = credentials.calls();
    let failed: Vec<SystemTime> = calls
        .iter()
        .filter(|c| c.outcome.is_err())
        .map(|c| c.at)
        .collect();
    // The rotation due at 10:00 failed, and the retries back off: the gaps
    // grow from 1-2 s, then stay between 15 and 30 s.
    assert_eq!(failed[0], start() + 10 * MINUTE);
    let gaps: Vec<Duration> = failed
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap())
        .collect();
    println!("retry gaps during the outage: {gaps:?}");
    let secs = Duration::from_secs;
    assert!(gaps[0] >= secs(1) && gaps[0] < secs(2), "{gaps:?}");
    assert!(gaps[1] >= secs(2) && gaps[1] < secs(4), "{gaps:?}");
    assert!(gaps[2] >= secs(4) && gaps[2] < secs(8), "{gaps:?}");
    assert!(gaps.iter().all(|g| *g < secs(30)), "{gaps:?}");
    assert!(gaps[4..].iter().all(|g| *g >= secs(15)), "{gaps:?}");
    // Recovery: the first attempt after the outage succeeds, within one
    // capped retry delay of its end.
    let first_after = calls.iter().find(|c| c.at >= outage.1).unwrap();
    assert!(first_after.outcome.is_ok());
    assert!(first_after.at < outage.1 + secs(30));
    let status = refresher.status();
    assert_eq!(status.consecutive_failures, 0);
    assert!(
        status
            .last_refresh_error
            .unwrap()
            .contains("scripted credentials outage")
    );
}

#[tokio::test(start_paused = true)]
async fn a_twenty_minute_outage_fails_reads_after_the_usable_life_then_recovers() {
    let outage = (start() + 9 * MINUTE, start() + 29 * MINUTE);
    let (_, credentials, reads) = through_outage(29 * MINUTE, 40 * MINUTE).await;

    // The token signed at 0:00 is usable until 15:00 and served until 30 s
    // before that; then reads fail until the provider is back.
    let served_until = start() + 15 * MINUTE - SAFETY_MARGIN;
    let recovered = credentials
        .calls()
        .iter()
        .find(|c| c.at >= outage.1)
        .map(|c| c.at)
        .unwrap();
    assert!(recovered < outage.1 + Duration::from_secs(30));
    for (at, ok) in &reads {
        let expected = *at < served_until || *at >= recovered;
        assert_eq!(*ok, expected, "read at {:?}", at.duration_since(start()));
    }

    // The error, read during the outage (at 0:20): typed, with the
    // provider's error as its source.
    let (refresher2, _, _) = through_outage(29 * MINUTE, 20 * MINUTE).await;
    let err = refresher2.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Credentials);
    assert!(err.is_retryable());
    let message = err.to_string();
    assert!(
        message.starts_with("no usable IAM auth token for serverless cache my-cache:"),
        "{message}"
    );
    assert!(message.contains("scripted credentials outage"), "{message}");
    let source = err.source().unwrap();
    let provider_error = source.downcast_ref::<CredentialsError>().unwrap();
    assert!(
        provider_error
            .source()
            .unwrap()
            .downcast_ref::<ScriptedOutage>()
            .is_some()
    );
    let status = refresher2.status();
    assert!(status.consecutive_failures > 10, "{status:?}");
    assert_eq!(status.failing_since, Some(start() + 10 * MINUTE));
    assert!(!status.is_healthy());
}

#[tokio::test(start_paused = true)]
async fn a_hanging_provider_times_out_and_the_cycle_is_retried() {
    let clock = TokioWallClock::new(start());
    let credentials = ScriptedCredentials::long_term(clock.clone());
    credentials.hang_between(start(), start() + MINUTE);
    let refresher = start_refresher(&credentials, &clock).await;
    let err = refresher.token().await.unwrap_err();
    assert_eq!(clock.now(), start() + Duration::from_secs(30));
    assert!(
        err.to_string().contains("did not answer within 30 s"),
        "{err}"
    );
    sleep(2 * MINUTE).await;
    refresher.token().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_reads_with_nothing_cached_sign_once() {
    let clock = TokioWallClock::new(start());
    let credentials =
        ScriptedCredentials::long_term(clock.clone()).with_latency(Duration::from_millis(200));
    let refresher = start_refresher(&credentials, &clock).await;
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let refresher = refresher.clone();
            tokio::spawn(async move { refresher.token().await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for reader in readers {
        tokens.push(reader.await.unwrap());
    }
    assert_eq!(credentials.calls().len(), 1);
    assert!(
        tokens
            .iter()
            .all(|t| t.expose_secret() == tokens[0].expose_secret())
    );
    assert_eq!(refresher.status().rotations, 1);
}

#[tokio::test(start_paused = true)]
async fn refresh_now_signs_anew_and_joins_a_cycle_in_flight() {
    let clock = TokioWallClock::new(start());
    // Every provider call takes 200 ms, so cycles are in flight for a while.
    let credentials =
        ScriptedCredentials::long_term(clock.clone()).with_latency(Duration::from_millis(200));
    let at = |ms| start() + Duration::from_millis(ms);
    let refresher = start_refresher(&credentials, &clock).await;
    let first = refresher.token().await.unwrap();
    assert_eq!(first.signed_at(), at(200));
    sleep(MINUTE).await;

    // Two callers refused 50 ms apart: one cycle, one new token for both.
    let (a, b) = tokio::join!(refresher.refresh_now(), async {
        sleep(Duration::from_millis(50)).await;
        refresher.refresh_now().await
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.expose_secret(), b.expose_secret());
    assert_ne!(a.expose_secret(), first.expose_secret());
    assert_eq!(a.signed_at(), at(60_400));
    assert_eq!(credentials.calls().len(), 2);

    // The scheduled rotation starts at 660.4 s and is in flight until
    // 660.6 s; a refresh_now at 660.5 s joins it.
    sleep(Duration::from_millis(600_100)).await;
    assert_eq!(clock.now(), at(660_500));
    let joined = refresher.refresh_now().await.unwrap();
    assert_eq!(joined.signed_at(), at(660_600));
    assert_eq!(credentials.calls().len(), 3);

    // Within a second of a completed cycle, its outcome is returned.
    let again = refresher.refresh_now().await.unwrap();
    assert_eq!(again.expose_secret(), joined.expose_secret());
    assert_eq!(credentials.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_ends_the_task() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let clock = TokioWallClock::new(start());
    let credentials = ScriptedCredentials::long_term(clock.clone());
    let refresher = start_refresher(&credentials, &clock).await;
    refresher.token().await.unwrap();
    assert_eq!(metrics.num_alive_tasks(), before + 1);

    let clone = refresher.clone();
    drop(refresher);
    sleep(HOUR + Duration::from_secs(1)).await;
    assert_eq!(
        metrics.num_alive_tasks(),
        before + 1,
        "a clone keeps it alive"
    );
    assert_eq!(credentials.calls().len(), 7); // 0:00, then every 10 minutes

    drop(clone);
    // Aborting is asynchronous: the task ends the next time it is scheduled.
    for _ in 0..10 {
        if metrics.num_alive_tasks() == before {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), before);
    sleep(HOUR).await;
    assert_eq!(credentials.calls().len(), 7, "no signing after the drop");
}

#[tokio::test(start_paused = true)]
async fn a_suspended_process_signs_on_the_next_read() {
    let clock = TokioWallClock::new(start());
    let credentials = ScriptedCredentials::long_term(clock.clone());
    let refresher = start_refresher(&credentials, &clock).await;
    let first = refresher.token().await.unwrap();
    // The wall clock moves an hour while tokio's timers do not (a suspended
    // VM): the held token is stale, so the read signs a new one.
    clock.jump(HOUR);
    let next = refresher.token().await.unwrap();
    assert_eq!(next.signed_at(), first.signed_at() + HOUR);
    assert_eq!(credentials.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn configuration_errors_name_the_parameter() {
    let clock = TokioWallClock::new(start());
    let credentials = ScriptedCredentials::long_term(clock.clone());
    let cases: Vec<(TokenRefresherBuilder, &str)> = vec![
        (
            builder(&credentials, &clock).token_refresh_interval(Duration::ZERO),
            "token_refresh_interval",
        ),
        (
            builder(&credentials, &clock).token_refresh_interval(Duration::from_secs(870)),
            "token_refresh_interval",
        ),
        (
            builder(&credentials, &clock).reauth_after(12 * HOUR),
            "reauth_after",
        ),
        (
            builder(&credentials, &clock).from_env_with(|name| {
                (name == "ELASTICACHE_TOKEN_REFRESH_INTERVAL").then(|| "10 minutes please".into())
            }),
            "ELASTICACHE_TOKEN_REFRESH_INTERVAL",
        ),
        (
            builder(&credentials, &clock).from_env_with(|name| {
                (name == "ELASTICACHE_TOKEN_REFRESH_INTERVAL").then(|| "15m".into())
            }),
            "ELASTICACHE_TOKEN_REFRESH_INTERVAL",
        ),
        (
            builder(&credentials, &clock)
                .from_env_with(|name| (name == "ELASTICACHE_REAUTH_AFTER").then(|| "13h".into())),
            "ELASTICACHE_REAUTH_AFTER",
        ),
        (
            TokenRefresher::builder()
                .serverless_cache("c")
                .user_id("u")
                .credentials_provider(credentials.clone()),
            "region",
        ),
        (
            TokenRefresher::builder()
                .serverless_cache("c")
                .region("us-east-1")
                .credentials_provider(credentials.clone()),
            "user_id",
        ),
        (
            TokenRefresher::builder()
                .serverless_cache("c")
                .replication_group("g")
                .user_id("u")
                .region("us-east-1"),
            "target",
        ),
        (
            TokenRefresher::builder()
                .serverless_cache("c")
                .user_id("u")
                .sdk_config(&aws_config::SdkConfig::builder().build()),
            "region",
        ),
        (
            TokenRefresher::builder()
                .serverless_cache("c")
                .user_id("u")
                .region("us-east-1")
                .sdk_config(&aws_config::SdkConfig::builder().build()),
            "credentials_provider",
        ),
    ];
    for (builder, parameter) in cases {
        let err = builder.build().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
        assert_eq!(err.parameter(), Some(parameter), "{err}");
        assert!(err.to_string().contains(parameter), "{err}");
    }
    assert_eq!(
        credentials.calls().len(),
        0,
        "nothing is signed on a bad configuration"
    );
}

#[tokio::test(start_paused = true)]
async fn durations_from_the_environment() {
    let clock = TokioWallClock::new(start());
    let credentials = ScriptedCredentials::long_term(clock.clone());
    let env = |name: &str| match name {
        "ELASTICACHE_TOKEN_REFRESH_INTERVAL" => Some("2s".to_owned()),
        "ELASTICACHE_REAUTH_AFTER" => Some("1h 30m".to_owned()),
        _ => None,
    };
    let refresher = builder(&credentials, &clock)
        .token_refresh_interval(5 * MINUTE)
        .from_env_with(env)
        .build()
        .await
        .unwrap();
    assert_eq!(refresher.token_refresh_interval(), Duration::from_secs(2));
    assert_eq!(refresher.reauth_after(), Duration::from_secs(5400));
    sleep(Duration::from_secs(21)).await;
    assert_eq!(credentials.calls().len(), 11);

    // Unset or empty: the defaults.
    let refresher = builder(&credentials, &clock)
        .from_env_with(|name| (name == "ELASTICACHE_REAUTH_AFTER").then(String::new))
        .build()
        .await
        .unwrap();
    assert_eq!(refresher.token_refresh_interval(), 10 * MINUTE);
    assert_eq!(refresher.reauth_after(), 10 * HOUR);
}

#[tokio::test(start_paused = true)]
async fn reads_do_not_wait_for_a_rotation_in_flight() {
    let clock = TokioWallClock::new(start());
    // Each provider call takes 5 s.
    let credentials =
        ScriptedCredentials::long_term(clock.clone()).with_latency(Duration::from_secs(5));
    let refresher = start_refresher(&credentials, &clock).await;
    let first = refresher.token().await.unwrap();
    // The first token was signed at 0:05 (after the call), so the rotation
    // starts at 10:05 and is in flight until 10:10.
    sleep(10 * MINUTE + Duration::from_secs(2)).await;
    let before = clock.now();
    let during = refresher.token().await.unwrap();
    assert_eq!(clock.now(), before, "the read waited");
    assert_eq!(during.expose_secret(), first.expose_secret());
    assert_eq!(credentials.calls().len(), 2, "the rotation is in flight");
    sleep(Duration::from_secs(5)).await;
    let after = refresher.token().await.unwrap();
    assert_eq!(
        after.signed_at(),
        start() + 10 * MINUTE + Duration::from_secs(10)
    );
}

#[tokio::test(start_paused = true)]
async fn from_an_sdk_config() {
    let clock = TokioWallClock::new(start());
    let credentials = ScriptedCredentials::temporary(clock.clone(), HOUR);
    let config = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("eu-central-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials.clone()),
        )
        .time_source(clock.clone())
        .build();
    let refresher = TokenRefresher::builder()
        .replication_group("My-Group")
        .user_id("App-User")
        .sdk_config(&config)
        .build()
        .await
        .unwrap();
    assert_eq!(refresher.signer().region(), "eu-central-1");
    let token = refresher.token().await.unwrap();
    // The SdkConfig's time source signed it, its provider's credentials too.
    assert_eq!(token.signed_at(), start());
    assert_eq!(token.usable_until(), start() + Duration::from_secs(900));
    assert!(
        token
            .expose_secret()
            .starts_with("my-group/?Action=connect&User=app-user&")
    );
    assert!(
        token
            .expose_secret()
            .contains("AKIDSCRIPTED0001%2F20231114%2Feu-central-1%2Felasticache")
    );
    assert_eq!(credentials.calls().len(), 1);
}

/// A runtime of its own, as a program with several has.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// On `runtime`: a refresher whose credential source is down from minute
/// 20 to 30; at minute 20 its token has run out and a signing fails, and
/// reads fail while its background task retries. `let_task_plan` gives the
/// task the chance to plan its retry (1-2 s away) before returning.
fn failing_refresher(
    runtime: &tokio::runtime::Runtime,
    let_task_plan: bool,
) -> (TokenRefresher, TokioWallClock) {
    runtime.block_on(async {
        let clock = TokioWallClock::new(start());
        let provider = ScriptedCredentials::long_term(clock.clone());
        let refresher = start_refresher(&provider, &clock).await;
        provider.fail_between(start() + 20 * MINUTE, start() + 30 * MINUTE);
        clock.jump(20 * MINUTE);
        assert!(refresher.refresh_now().await.is_err());
        if let_task_plan {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        assert!(
            refresher.token().await.is_err(),
            "failing, retried by the task"
        );
        (refresher, clock)
    })
}

/// The runtime that built a refresher shuts down while its refreshes are
/// failing (and with it the background task that would retry them): reads
/// on another runtime sign for themselves instead of failing for good.
#[test]
fn a_refresher_outlives_the_runtime_that_built_it() {
    let first = runtime();
    let (refresher, clock) = failing_refresher(&first, false);
    drop(first);
    clock.jump(15 * MINUTE); // the source is back
    let token = runtime()
        .block_on(refresher.token())
        .expect("a read on another runtime signs for itself");
    assert!(token.usable_until() > clock.now() + SAFETY_MARGIN);
    assert_eq!(refresher.status().consecutive_failures, 0);
}

/// A credentials provider that panics on its second call, in
/// `provide_credentials` itself (`sync`) or in the future it returns, and
/// otherwise hands out static test credentials.
#[derive(Debug)]
struct PanicsOnSecondCall {
    sync: bool,
    calls: std::sync::atomic::AtomicUsize,
}

impl aws_credential_types::provider::ProvideCredentials for PanicsOnSecondCall {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        assert!(
            !(self.sync && call == 2),
            "a provider bug, before any future"
        );
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            assert!(self.sync || call != 2, "a provider bug, in its future");
            Ok(aws_credential_types::Credentials::for_tests())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_provider_fails_one_cycle_and_nothing_else() {
    for sync in [false, true] {
        let clock = TokioWallClock::new(start());
        let refresher = TokenRefresher::builder()
            .serverless_cache("my-cache")
            .user_id("app-user")
            .region("us-east-1")
            .credentials_provider(PanicsOnSecondCall {
                sync,
                calls: Default::default(),
            })
            .time_source(clock.clone())
            .build()
            .await
            .unwrap();
        sleep(Duration::from_secs(2)).await; // past refresh_now's one-second merge
        let err = refresher.refresh_now().await.map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Credentials, "{err}");
        assert!(err.to_string().contains("panicked"), "{err}");
        // The background task lives on and recovers.
        sleep(5 * MINUTE).await;
        let status = refresher.status();
        assert_eq!(status.consecutive_failures, 0, "sync {sync}: {status:?}");
        assert!(refresher.token().await.is_ok());
    }
}

/// The same when the runtime that built the refresher lives on but is no
/// longer driven (a `block_on` that returned): its task's planned retry is
/// overdue, and a read elsewhere signs for itself.
#[test]
fn a_refresher_outlives_a_runtime_that_is_no_longer_driven() {
    let first = runtime();
    let (refresher, clock) = failing_refresher(&first, true);
    clock.jump(15 * MINUTE); // the source is back; the retry is long overdue
    let token = runtime()
        .block_on(refresher.token())
        .expect("a read on another runtime signs for itself");
    assert!(token.usable_until() > clock.now() + SAFETY_MARGIN);
    drop(first);
}

/// A refresher whose credentials come from an `SdkConfig` (as the default
/// chain's do): reused until near their expiry.
async fn start_sdk_refresher(
    provider: &ScriptedCredentials,
    clock: &TokioWallClock,
) -> TokenRefresher {
    let sdk = aws_config::SdkConfig::builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider.clone()),
        )
        .region(aws_config::Region::new("us-east-1"))
        .build();
    TokenRefresher::builder()
        .serverless_cache("my-cache")
        .user_id("app-user")
        .sdk_config(&sdk)
        .time_source(clock.clone())
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_default_chains_credentials_are_fetched_once_per_lifetime() {
    let clock = TokioWallClock::new(start());
    // Six-hour credentials (an ECS task role's), new ones on every call.
    let credentials = ScriptedCredentials::temporary(clock.clone(), 6 * HOUR);
    let refresher = start_sdk_refresher(&credentials, &clock).await;
    let day = 24 * HOUR;
    let reads = reader(&refresher, &clock, 7 * MINUTE, start() + day);
    sleep(day + Duration::from_secs(1)).await;

    let reads = reads.await.unwrap();
    assert!(reads.iter().all(|(_, ok)| *ok));
    // Still a token every 10 minutes...
    assert_eq!(refresher.status().rotations, 145);
    // ...from credentials fetched once per lifetime: again when 20 minutes
    // or less of them remain (at 5 h 40 min, on the 10-minute grid), so 5
    // fetches in 24 hours instead of 145.
    let calls = successes(&credentials.calls());
    println!("credential fetches in 24 h: {calls:?}");
    assert_eq!(calls.len(), 5, "{calls:?}");
    for pair in calls.windows(2) {
        let kept = pair[1].duration_since(pair[0]).unwrap();
        assert!(
            (5 * HOUR + 40 * MINUTE..=5 * HOUR + 50 * MINUTE).contains(&kept),
            "kept for {kept:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_injected_provider_is_asked_every_rotation_and_refresh_now_asks_again() {
    let clock = TokioWallClock::new(start());
    let injected = ScriptedCredentials::temporary(clock.clone(), 6 * HOUR);
    let refresher = start_refresher(&injected, &clock).await;
    sleep(HOUR + Duration::from_secs(1)).await;
    // As given: one call per signing (start, then every 10 minutes).
    assert_eq!(successes(&injected.calls()).len(), 7);
    drop(refresher);

    let clock = TokioWallClock::new(start());
    let chain = ScriptedCredentials::temporary(clock.clone(), 6 * HOUR);
    let refresher = start_sdk_refresher(&chain, &clock).await;
    sleep(HOUR + Duration::from_secs(1)).await;
    assert_eq!(successes(&chain.calls()).len(), 1);
    // After a refused authentication the source is asked again.
    refresher.refresh_now().await.unwrap();
    assert_eq!(successes(&chain.calls()).len(), 2);
}
