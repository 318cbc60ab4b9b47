//! Cost as the work grows (`--scale`): for 1, 10, 100 and 1,000 pooled
//! connections and shared-handle connections, the resident memory and live
//! tokio tasks each connection adds, the time to open the whole set, and the
//! IAM authentications per hour at the default lifecycle.
//!
//! Each set is opened by a child process of its own (this binary with
//! `--scale-child`), against the stack in the parent, so that its memory and
//! tasks are the client's alone and no earlier set's freed memory hides a
//! later one's. Authentications per hour are computed from the lifecycle's
//! schedule and confirmed at scaled time against the stack's counters.

use std::path::{Path, PathBuf};
use std::time::Duration;

use elasticache_iam::{ConnectionConfig, Lifecycle, Pool, SharedConnection, TokenRefresher};
use elasticache_localstack::Stack;
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::{GROUP, credentials, now};

/// The set sizes.
pub(crate) const SIZES: [usize; 4] = [1, 10, 100, 1_000];
/// Connections per shared handle when a set needs more than one handle.
const PER_HANDLE: usize = 50;

/// One set's costs.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) kind: &'static str,
    pub(crate) n: usize,
    pub(crate) rss_kib_per_connection: f64,
    pub(crate) tasks_per_connection: f64,
    pub(crate) setup_ms: f64,
    /// At the default lifecycle, from its schedule.
    pub(crate) auths_per_hour: f64,
}

/// Authentications per hour and connection at `lifecycle`: one re-auth per
/// re-auth interval, drawn between 90 % and 100 % of `reauth_after` (a
/// connection that keeps re-authenticating never reaches its deadline).
pub(crate) fn auths_per_hour_per_connection(reauth_after: Duration) -> f64 {
    3600.0 / (reauth_after.as_secs_f64() * 0.95)
}

/// The memory each connection adds between 100 and 1,000 of `kind`
/// (KiB): the slope, without what the first connections cost once (the TLS
/// configuration, the runtime's and allocator's first buffers).
pub(crate) fn marginal_kib(rows: &[Row], kind: &str) -> Option<f64> {
    let total = |n: usize| {
        rows.iter()
            .find(|r| r.kind == kind && r.n == n)
            .map(|r| r.rss_kib_per_connection * n as f64)
    };
    Some((total(1_000)? - total(100)?) / 900.0)
}

/// The refresher's rule for credentials from the default chain: reused
/// while they have at least this long left (the crate's
/// `KEEP_UNTIL_BEFORE_EXPIRY`).
const KEPT_UNTIL_BEFORE_EXPIRY: Duration = Duration::from_secs(20 * 60);

/// How often a refresher fetches credentials of `lifetime` (fetched at a
/// rotation): at the first rotation that finds less than 20 minutes left.
pub(crate) fn credential_interval(lifetime: Duration) -> Duration {
    let rotation = Lifecycle::DEFAULT_TOKEN_REFRESH_INTERVAL;
    let usable = lifetime.saturating_sub(KEPT_UNTIL_BEFORE_EXPIRY);
    // Rotations k with k × rotation ≤ usable reuse them; the next fetches.
    rotation * (usable.as_secs() / rotation.as_secs() + 1) as u32
}

/// Credential fetches per hour of one refresher, with credentials of
/// `lifetime`.
pub(crate) fn credential_calls_per_hour(lifetime: Duration) -> f64 {
    3600.0 / credential_interval(lifetime).as_secs_f64()
}

/// The re-authentications `n` connections opened together make in `span`,
/// by the schedule: each at 90-100 % of `reauth_after` after the last
/// (averaged over 10,000 simulated connections).
fn expected_reauths(n: usize, reauth_after: Duration, span: Duration) -> f64 {
    const DRAWS: usize = 10_000;
    let mut total = 0usize;
    for _ in 0..DRAWS {
        let mut at = Duration::ZERO;
        loop {
            at += reauth_after.mul_f64(0.9 + 0.1 * fastrand::f64());
            if at > span {
                break;
            }
            total += 1;
        }
    }
    n as f64 * total as f64 / DRAWS as f64
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// In a child: opens `n` connections of `kind` against the stack at `port`
/// and prints their costs as one JSON line.
pub(crate) async fn child(args: &[String]) {
    let [kind, n, port, ca, user, region] = args else {
        panic!("--scale-child KIND N PORT CA USER REGION");
    };
    let n: usize = n.parse().expect("N");
    let refresher = TokenRefresher::builder()
        .replication_group(GROUP)
        .user_id(user)
        .region(region)
        .credentials_provider(credentials())
        .build()
        .await
        .expect("refresher");
    refresher.token().await.expect("token");
    let config = ConnectionConfig::builder()
        .url(format!("rediss://127.0.0.1:{port}"))
        .ca_file(ca)
        .user_id(user)
        .region(region)
        .replication_group(GROUP)
        .build()
        .expect("config");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss_before, tasks_before) = (rss_kib(), tasks());
    let started = now();
    let (rss_after, tasks_after, setup) = match kind.as_str() {
        "pool" => {
            let pool = Pool::builder(config)
                .refresher(refresher)
                .max_size(n as u32)
                .connection_timeout(Duration::from_secs(120))
                .build()
                .await
                .expect("pool");
            // Every connection checked out at once: the pool opens them all.
            let held: Vec<_> = join_all((0..n).map(|_| pool.get()))
                .await
                .into_iter()
                .map(|c| c.expect("connection"))
                .collect();
            let setup = started.elapsed();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let costs = (rss_kib(), tasks(), setup);
            assert_eq!(pool.counts().connections_opened as usize, n);
            drop(held);
            costs
        }
        "shared" => {
            let handles = n.div_ceil(PER_HANDLE);
            let each = n / handles;
            assert_eq!(handles * each, n, "{n} connections in handles of {each}");
            let built = join_all((0..handles).map(|_| {
                SharedConnection::builder(config.clone())
                    .refresher(refresher.clone())
                    .connections(each)
                    .build()
            }))
            .await;
            let setup = started.elapsed();
            let built: Vec<SharedConnection> =
                built.into_iter().map(|h| h.expect("shared")).collect();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let opened: u64 = built.iter().map(|h| h.counts().connections_opened).sum();
            assert_eq!(opened as usize, n);
            (rss_kib(), tasks(), setup)
        }
        other => panic!("no kind {other:?}"),
    };
    println!(
        "{}",
        json!({
            "rss_kib": rss_after as f64 - rss_before as f64,
            "tasks": tasks_after as f64 - tasks_before as f64,
            "setup_ms": setup.as_secs_f64() * 1000.0,
        })
    );
}

/// Runs every set in a child process against `stack`.
pub(crate) fn measure(stack: &Stack) -> Vec<Row> {
    let exe = std::env::current_exe().expect("this binary");
    let per_hour = auths_per_hour_per_connection(Lifecycle::default().reauth_after);
    let mut rows = Vec::new();
    for kind in ["pool", "shared"] {
        for n in SIZES {
            let out = run_child(&exe, stack, kind, n);
            let get = |key: &str| out[key].as_f64().expect(key);
            let row = Row {
                kind,
                n,
                rss_kib_per_connection: get("rss_kib") / n as f64,
                tasks_per_connection: get("tasks") / n as f64,
                setup_ms: get("setup_ms"),
                auths_per_hour: per_hour * n as f64,
            };
            eprintln!(
                "scale {kind:6} {n:5}: {:7.1} KiB and {:4.2} tasks per connection, set-up {:8.1} ms, {:7.1} auths/hour",
                row.rss_kib_per_connection,
                row.tasks_per_connection,
                row.setup_ms,
                row.auths_per_hour
            );
            rows.push(row);
        }
    }
    rows
}

fn run_child(exe: &Path, stack: &Stack, kind: &str, n: usize) -> Value {
    let ca: PathBuf = stack.ca_file();
    let out = std::process::Command::new(exe)
        .arg("--scale-child")
        .args([
            kind,
            &n.to_string(),
            &stack.endpoint().port().to_string(),
            ca.to_str().expect("CA path"),
            stack.user_id(),
            stack.region(),
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("child");
    assert!(out.status.success(), "{kind} x{n}: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("a line")).expect("JSON")
}

/// Confirms the schedule at scaled time: `n` shared-handle connections with
/// the re-auth point at 4 s for `span`, counted at the stack; returns
/// (counted, expected by the schedule for connections opened together), and
/// panics if they differ by more than 10 %.
pub(crate) async fn confirm(stack: &Stack, n: usize, span: Duration) -> (u64, f64) {
    let reauth_after = Duration::from_secs(4);
    let config = ConnectionConfig::builder()
        .url(format!("rediss://127.0.0.1:{}", stack.endpoint().port()))
        .ca_file(stack.ca_file())
        .user_id(stack.user_id())
        .region(stack.region())
        .replication_group(GROUP)
        .token_refresh_interval(Duration::from_secs(2))
        .reauth_after(reauth_after)
        .max_connection_age(Duration::from_secs(6))
        .build()
        .expect("config");
    let shared = SharedConnection::builder(config)
        .credentials_provider(credentials())
        .connections(n)
        .build()
        .await
        .expect("shared");
    let before = stack.stats().reauth_ok;
    tokio::time::sleep(span).await;
    let counted = stack.stats().reauth_ok - before;
    drop(shared);
    let expected = expected_reauths(n, reauth_after, span);
    assert!(
        (counted as f64 - expected).abs() <= expected * 0.1,
        "the stack counted {counted} re-authentications, the schedule gives {expected:.1}"
    );
    (counted, expected)
}
