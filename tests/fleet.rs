//! A fleet's reconnect storm, simulated in one process with tokio's paused
//! clock: 1,000 processes, each with a real [`SharedConnection`] of 10
//! connections, against an in-process fake server (memory instead of TCP and
//! TLS, 1 ms per reply), lose every connection at the same instant, as in a
//! failover. The server records when each authentication arrives; the test
//! reports the peak and 99th percentile of authentications per second (over
//! 1 s windows, every 100 ms) and when the processes are back, and asserts
//! the bound the defaults were chosen for: a peak at most 10 % of the
//! instant-reconnect peak, every process back within 30 s. `docs/fleet.md`
//! has the model and the numbers.

use std::time::{Duration, UNIX_EPOCH};

use elasticache_iam::test_util::{FakeServer, ScriptedCredentials, TokioWallClock};
use elasticache_iam::{ConnectionConfig, SharedConnection, TokenRefresher};

const PROCESSES: u64 = 1_000;
const CONNECTIONS: usize = 10;
/// Each command's reply comes this long after it arrives.
const LATENCY: Duration = Duration::from_millis(1);
/// Checks of who is back come this often.
const STEP: Duration = Duration::from_millis(100);

/// What one storm did.
#[derive(Debug)]
struct Storm {
    /// The most authentications in any 1 s window after the drop.
    peak: usize,
    /// The 99th percentile of authentications per second, counted in 100 ms
    /// steps (each step's count × 10), from the drop until every process was
    /// back.
    p99: usize,
    /// Since the drop: by when every process had at least one connection open
    /// again (the latest of the processes' first).
    first_back: Duration,
    /// Requests sent on every process as soon as each had a connection again
    /// that got no answer within 50 ms.
    unanswered: usize,
    /// Since the drop: when every process had all its connections back.
    all_back: Duration,
    /// Authentications after the drop.
    auths: usize,
}

async fn storm(spread: Option<Duration>) -> Storm {
    // Reproducible: the runtime runs on this thread, and so do the jitter's
    // draws.
    fastrand::seed(18);
    let server = FakeServer::new(LATENCY);
    let clock = TokioWallClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let refresher = TokenRefresher::builder()
        .replication_group("fleet")
        .user_id("app")
        .region("us-east-1")
        .credentials_provider(ScriptedCredentials::long_term(clock.clone()))
        .time_source(clock)
        .build()
        .await
        .expect("refresher");
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/simulation-ca.pem");
    let mut fleet = Vec::new();
    for process in 0..PROCESSES {
        let config = ConnectionConfig::builder()
            .url("rediss://fleet.example:6379")
            .ca_file(ca)
            .user_id("app")
            .region("us-east-1")
            .replication_group("fleet")
            .build()
            .expect("config");
        let mut builder = SharedConnection::builder(config)
            .connections(CONNECTIONS)
            .refresher(refresher.clone())
            .transport(server.transport(process));
        if let Some(spread) = spread {
            builder = builder.reconnect_spread(spread);
        }
        fleet.push(builder.build().await.expect("shared connection"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let everyone = PROCESSES as usize * CONNECTIONS;
    assert_eq!(server.auths().len(), everyone, "every connection opened");

    let dropped = server.elapsed();
    server.drop_all();
    let mut first_back = vec![None; PROCESSES as usize];
    let mut all_back = vec![None; PROCESSES as usize];
    let mut since = Duration::ZERO;
    let mut asks: Vec<Option<tokio::task::JoinHandle<bool>>> =
        (0..PROCESSES).map(|_| None).collect();
    while all_back.iter().any(Option::is_none) {
        tokio::time::sleep(STEP).await;
        since += STEP;
        assert!(since < Duration::from_secs(300), "not back after 5 minutes");
        for process in 0..PROCESSES {
            let live = server.live(process);
            let p = process as usize;
            if live > 0 && first_back[p].is_none() {
                first_back[p] = Some(since);
            }
            if live == CONNECTIONS && all_back[p].is_none() {
                all_back[p] = Some(since);
            }
            // A process with a connection back serves on it, whichever of
            // its connections are still being replaced: asked at the next
            // check, on its own task (the checks keep their pace).
            if first_back[p].is_some_and(|at| at < since) && asks[p].is_none() {
                asks[p] = Some(ask(&fleet[p]));
            }
        }
    }
    let mut unanswered = 0;
    for (p, asked) in asks.into_iter().enumerate() {
        // Those back at the last check are asked now.
        let asked = asked.unwrap_or_else(|| ask(&fleet[p]));
        unanswered += usize::from(!asked.await.expect("ask"));
    }
    drop(fleet);

    // Authentications in each 1 s window starting every 100 ms, from the
    // drop until everyone was back.
    let auths: Vec<Duration> = server
        .auths()
        .into_iter()
        .filter(|at| *at >= dropped)
        .map(|at| at - dropped)
        .collect();
    let count =
        |from: Duration, to: Duration| auths.iter().filter(|at| **at >= from && **at < to).count();
    let mut windows = Vec::new();
    let mut steps = Vec::new();
    let mut start = Duration::ZERO;
    while start < since {
        windows.push(count(start, start + Duration::from_secs(1)));
        steps.push(count(start, start + STEP) * 10);
        start += STEP;
    }
    steps.sort_unstable();
    let p99 = steps[(steps.len() * 99).div_ceil(100).saturating_sub(1)];
    Storm {
        peak: windows.into_iter().max().expect("a window"),
        p99,
        unanswered,
        first_back: first_back
            .iter()
            .flatten()
            .max()
            .copied()
            .unwrap_or_default(),
        all_back: since,
        auths: auths.len(),
    }
}

/// A `GET` on `conn`, on its own task: whether it was answered within 50 ms.
fn ask(conn: &SharedConnection) -> tokio::task::JoinHandle<bool> {
    let mut conn = conn.clone();
    tokio::spawn(async move {
        let mut get = redis::cmd("GET");
        get.arg("k");
        let ask = get.query_async::<()>(&mut conn);
        matches!(
            tokio::time::timeout(Duration::from_millis(50), ask).await,
            Ok(Ok(()))
        )
    })
}

#[tokio::test(start_paused = true)]
async fn a_fleet_reconnects_at_a_tenth_of_the_instant_peak_within_30_s() {
    let instant = storm(Some(Duration::ZERO)).await;
    eprintln!("instant reconnect (reconnect_spread 0): {instant:?}");
    let spread = storm(None).await;
    eprintln!("defaults (reconnect_spread 20 s): {spread:?}");

    let everyone = PROCESSES as usize * CONNECTIONS;
    // Without a spread every connection is back within the first second:
    // the peak is the whole fleet.
    assert_eq!(instant.auths, everyone);
    assert_eq!(instant.peak, everyone);
    assert!(instant.all_back <= Duration::from_secs(1), "{instant:?}");
    assert_eq!(instant.unanswered, 0, "{instant:?}");

    // Nobody opens more than it lost, and the peak is at most a tenth of it.
    assert_eq!(spread.auths, everyone);
    assert!(
        spread.peak * 10 <= instant.peak,
        "peak {} authentications/s, more than 10 % of {}",
        spread.peak,
        instant.peak
    );
    assert!(spread.p99 * 10 <= instant.peak, "{spread:?}");
    assert_eq!(spread.unanswered, 0, "{spread:?}");
    assert!(spread.all_back <= Duration::from_secs(30), "{spread:?}");
    // Each process has a connection back within a tenth of the spread
    // (2 s; plus the set-up and the check interval).
    assert!(
        spread.first_back <= Duration::from_millis(2_200),
        "{spread:?}"
    );
}
