//! The refresher as a redis-rs `StreamingCredentialsProvider`, on simulated
//! time: when each subscription yields, following redis-rs's two
//! subscriptions per connection (see `src/redis_auth.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_async::time::TimeSource;
use elasticache_iam::TokenRefresher;
use elasticache_iam::test_util::{ScriptedCredentials, TokioWallClock};
use futures_util::StreamExt;
use redis::auth::StreamingCredentialsProvider;
use tokio::sync::mpsc;
use tokio::time::sleep;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

async fn setup(reauth_after: Duration) -> (TokenRefresher, TokioWallClock, ScriptedCredentials) {
    let clock = TokioWallClock::new(start());
    let credentials = ScriptedCredentials::long_term(clock.clone());
    let refresher = TokenRefresher::builder()
        .replication_group("my-group")
        .user_id("app-user")
        .region("eu-west-1")
        .credentials_provider(credentials.clone())
        .time_source(clock.clone())
        .reauth_after(reauth_after)
        .build()
        .await
        .unwrap();
    (refresher, clock, credentials)
}

/// What a re-authentication task sees: each item's time, user and password
/// (or error), sent on a channel.
type Seen = (SystemTime, Result<(String, String), String>);

/// Polls `stream` in a new task, as redis-rs's re-authentication task does.
fn spawn_reauth_task(
    refresher: &TokenRefresher,
    clock: &TokioWallClock,
) -> (mpsc::UnboundedReceiver<Seen>, tokio::task::JoinHandle<()>) {
    let mut stream = refresher.subscribe();
    let clock = clock.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let item = item
                .map(|auth| (auth.username().to_owned(), auth.password().to_owned()))
                .map_err(|e| e.to_string());
            let _ = tx.send((clock.now(), item));
        }
    });
    (rx, task)
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Vec<Seen> {
    let mut seen = Vec::new();
    while let Ok(item) = rx.try_recv() {
        seen.push(item);
    }
    seen
}

fn between(d: Duration, low: Duration, high: Duration) -> bool {
    low <= d && d <= high
}

#[tokio::test(start_paused = true)]
async fn a_connection_authenticates_once_then_on_the_reauth_schedule_not_on_rotations() {
    let (refresher, clock, _) = setup(HOUR).await;

    // Initial AUTH: redis-rs takes one item in the connecting task, then
    // drops the stream. The token comes at once.
    let initial = refresher.subscribe().next().await.unwrap().unwrap();
    assert_eq!(clock.now(), start());
    assert_eq!(initial.username(), "app-user");
    assert_eq!(
        initial.password(),
        refresher.token().await.unwrap().expose_secret()
    );

    // The re-authentication subscription, polled by a spawned task.
    let (mut rx, task) = spawn_reauth_task(&refresher, &clock);
    sleep(5 * HOUR + MINUTE).await;
    let seen = drain(&mut rx);
    task.abort();

    // 30 rotations happened; the connection re-authenticated 5 times, each
    // 54-60 minutes after the one before, with the then-current token.
    assert_eq!(refresher.status().rotations, 31);
    assert_eq!(seen.len(), 5, "{seen:?}");
    let mut last = start();
    let mut passwords = vec![initial.password().to_owned()];
    for (at, item) in &seen {
        let gap = at.duration_since(last).unwrap();
        assert!(between(gap, 54 * MINUTE, HOUR), "re-auth after {gap:?}");
        let (user, password) = item.as_ref().unwrap();
        assert_eq!(user, "app-user");
        assert!(!passwords.contains(password), "a token was sent twice");
        passwords.push(password.clone());
        last = *at;
    }
}

#[tokio::test(start_paused = true)]
async fn connections_made_together_in_one_task_each_authenticate_once() {
    // A cluster client connects to several nodes from one task.
    let (refresher, clock, _) = setup(HOUR).await;
    let mut initials: Vec<_> = (0..4).map(|_| refresher.subscribe()).collect();
    for stream in &mut initials {
        stream.next().await.unwrap().unwrap();
    }
    drop(initials);
    let mut tasks: Vec<_> = (0..4)
        .map(|_| spawn_reauth_task(&refresher, &clock))
        .collect();
    sleep(50 * MINUTE).await;
    for (rx, _) in &mut tasks {
        assert!(
            drain(rx).is_empty(),
            "re-authenticated right after the initial AUTH"
        );
    }
    sleep(11 * MINUTE).await;
    for (rx, task) in &mut tasks {
        assert_eq!(drain(rx).len(), 1);
        task.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_subscription_polled_elsewhere_without_an_initial_one_yields_at_once() {
    // Not redis-rs's pattern: nothing says this is a re-authentication
    // stream, so it is treated as an initial one (an extra AUTH at worst,
    // never a connection left waiting for hours).
    let (refresher, clock, _) = setup(HOUR).await;
    let (mut rx, task) = spawn_reauth_task(&refresher, &clock);
    sleep(Duration::from_millis(1)).await;
    let seen = drain(&mut rx);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, start());
    // Then on the re-auth schedule.
    sleep(HOUR).await;
    assert_eq!(drain(&mut rx).len(), 1);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_reauth_that_finds_no_token_yields_an_error_and_retries_in_30_seconds() {
    let (refresher, clock, credentials) = setup(HOUR).await;
    // The provider is down from 0:31 to 1:20: the token signed at 0:30 fails
    // to rotate at 0:40 and stops being served at 0:44:30, before the
    // connection's re-auth point (0:54 to 1:00).
    credentials.fail_between(start() + 31 * MINUTE, start() + 80 * MINUTE);
    refresher.subscribe().next().await.unwrap().unwrap();
    let (mut rx, task) = spawn_reauth_task(&refresher, &clock);
    sleep(150 * MINUTE).await;
    task.abort();
    let seen = drain(&mut rx);

    let first_error = seen.iter().position(|(_, item)| item.is_err()).unwrap();
    let (failed_at, err) = &seen[first_error];
    assert!(between(
        failed_at.duration_since(start()).unwrap(),
        54 * MINUTE,
        HOUR
    ));
    let err = err.as_ref().unwrap_err();
    assert!(err.contains("no usable IAM auth token"), "{err}");
    assert!(err.contains("scripted credentials outage"), "{err}");
    // Retried every 30 s until a token is back (within 30 s of the
    // provider's return), then on the re-auth schedule.
    let recovered = seen[first_error..]
        .iter()
        .position(|(_, item)| item.is_ok())
        .unwrap()
        + first_error;
    for pair in seen[first_error..=recovered].windows(2) {
        assert_eq!(
            pair[1].0.duration_since(pair[0].0).unwrap(),
            Duration::from_secs(30)
        );
    }
    let back = seen[recovered].0;
    assert!(between(
        back.duration_since(start() + 80 * MINUTE).unwrap(),
        Duration::ZERO,
        Duration::from_secs(60)
    ));
    let after: Vec<_> = seen[recovered + 1..].iter().collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].1.is_ok());
    let gap = after[0].0.duration_since(back).unwrap();
    assert!(between(gap, 54 * MINUTE, HOUR), "{gap:?}");
}
