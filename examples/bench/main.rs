//! Side-by-side benchmark of the IAM pool, in one process and one run, against
//! one local stack (TLS front with IAM verification, real Valkey behind it):
//!
//! - (a) this crate's IAM pool, (b) a plain bb8-redis pool with password
//!   authentication through the same front, (b′) a second pool exactly like
//!   (b), the noise control, (s) this crate's IAM shared handle, (c) one
//!   redis-rs multiplexed connection through the front (the pipelining
//!   ceiling; `TCP_NODELAY` on, as ours), (d) the upstream Valkey directly,
//!   without TLS (reference); on request, (c₀) (`cn`): (c) with Nagle's
//!   algorithm, redis-rs 1.x's default;
//! - GET and SET of 64 B and 1 KiB values from 1, 16 and 64 workers, the
//!   clients taking turns (a b b′ s c d, then d c s b′ b a, ...) so that drift
//!   in the machine's speed falls on all of them; every ratio is paired by
//!   round and reported as the median over rounds with a 95 % bootstrap
//!   interval (`stats`);
//! - latency over time while the IAM pool rotates its token every 2 s,
//!   re-authenticates connections after 4 s and replaces them by 6 s;
//! - time to open one IAM connection against one password connection; time
//!   to sign one token.
//!
//! ```text
//! cargo run --release --example bench                         # tables on stderr, JSON last on stdout
//! cargo run --release --example bench -- --quick              # 6 workloads, (a) (b) (b′) (s) (c), 10 rounds: under 120 s
//! cargo run --release --example bench -- --report docs        # also writes docs/benchmarks.md and the charts (with --scale's part)
//! cargo run --release --example bench -- --quick --workload get-64b-x16,set-1kib-x64 --clients s,c
//! cargo run --release --example bench -- --workload list      # the workload ids
//! cargo run --release --example bench -- --scale --report docs  # only the cost as the work grows (about 30 s)
//! ```
//!
//! The last line on stdout is a JSON object: `throughput_ratio_iam_vs_plain`
//! (the lowest per-workload median of (a)/(b) ops/s), `p99_ratio_iam_vs_plain`
//! (the highest per-workload median of (a)/(b) p99), `throughput_ratio_median`
//! and `throughput_ratio_ci` ((a)/(b) over every round of every workload,
//! `[lo, hi]`), `noise_throughput_ratio_median` and `noise_throughput_ratio_ci`
//! (the same for (b′)/(b)), `shared_throughput_ratio_vs_multiplexed` (the
//! lowest (s)/(c) over the x16 and x64 workloads), `shared_p99_ratio_vs_multiplexed`
//! (the highest), `shared_throughput_ratio_vs_pool` (the lowest (s)/(a)), each
//! of those three also pooled over the x16 and x64 rounds as `..._median` and
//! `..._ci`, `event_window_p999_ratio`, `errors`, and more. A ratio whose
//! clients did not run is `null`. With `--scale`, it is `scale` (per set:
//! `kind`, `connections`, `rss_kib_per_connection`, `tasks_per_connection`,
//! `setup_ms`, `auths_per_hour`), `pool_rss_kib_marginal`,
//! `shared_rss_kib_marginal`, `pool_rss_kib_per_connection_1000`,
//! `shared_rss_kib_per_connection_1000`, `scaled_reauths_counted`,
//! `scaled_reauths_expected` and `elapsed_s`. It needs `valkey-server`
//! (`scripts/install-servers.sh valkey`).

mod chart;
mod clients;
mod events;
mod report;
mod scale;
mod stats;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use clap::Parser;
use elasticache_iam::{ConnectionConfig, Pool, SharedConnection, TokenSigner};
use elasticache_localstack::{STATIC_ACCESS_KEY_ID, STATIC_SECRET_ACCESS_KEY, Stack, StackConfig};
use redis::IntoConnectionInfo;
use redis::io::tcp::TcpSettings;
use serde_json::json;
use tokio::time::Instant;

use clients::Client;
use workload::{Sample, Workload};

#[derive(Parser)]
#[command(about = "IAM pool against a plain pool, side by side, on the local stack")]
struct Args {
    /// Six workloads, (a), (b), (b′), (s) and (c), ten short rounds each:
    /// finishes within 120 s.
    #[arg(long)]
    quick: bool,
    /// Write benchmarks.md and benchmarks-latency.png into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Only these workloads (comma-separated or repeated), by id:
    /// `get-64b-x16`, `set-1kib-x64`, ... (`--workload list` lists them).
    #[arg(long = "workload", value_delimiter = ',')]
    workloads: Vec<String>,
    /// Cost as the work grows instead of the side-by-side run: memory, tasks
    /// and set-up time for 1 to 1,000 pooled and shared-handle connections
    /// (`--report DIR` writes its section of benchmarks.md and
    /// benchmarks-scale.png).
    #[arg(long)]
    scale: bool,
    /// One set of `--scale`, in a child process: KIND N PORT CA USER REGION.
    #[arg(long, num_args = 6, hide = true)]
    scale_child: Option<Vec<String>>,
    /// Only these clients (comma-separated): `a`, `b`, `b2` (the noise
    /// control), `s`, `c`, `d`, and `cn` ((c) with Nagle's algorithm, not
    /// run by default).
    #[arg(long, value_delimiter = ',')]
    clients: Vec<String>,
}

/// The monotonic clock. Benchmarks measure real time, so they read it.
#[allow(clippy::disallowed_methods, reason = "a benchmark measures real time")]
pub(crate) fn now() -> Instant {
    Instant::now()
}

#[allow(clippy::disallowed_methods, reason = "a benchmark signs at real time")]
fn wall_now() -> SystemTime {
    SystemTime::now()
}

const GROUP: &str = "bench-group";
const PASSWORD_USER: (&str, &str) = ("bench-user", "bench-password-0123456789");

/// The sets measured in child processes, and the scaled confirmation
/// (counted, expected).
async fn scale_part(stack: &Stack) -> (Vec<scale::Row>, u64, f64) {
    let rows = tokio::task::block_in_place(|| scale::measure(stack));
    let (counted, expected) = scale::confirm(stack, SCALE_CONFIRM.0, SCALE_CONFIRM.1).await;
    eprintln!(
        "scaled confirmation: {} connections, re-auth at 3.6-4 s, {} s: {counted} re-authentications counted, {expected:.1} by the schedule",
        SCALE_CONFIRM.0,
        SCALE_CONFIRM.1.as_secs()
    );
    (rows, counted, expected)
}

/// Connections and time of the scaled confirmation.
const SCALE_CONFIRM: (usize, Duration) = (10, Duration::from_secs(20));

/// Draws the scale chart into `dir`; the section for `benchmarks.md`.
fn scale_report(dir: &std::path::Path, rows: &[scale::Row], counted: u64, expected: f64) -> String {
    chart::draw_scale(rows, &dir.join("benchmarks-scale.png")).expect("chart");
    report::scale_section(rows, (counted, expected, SCALE_CONFIRM.0, SCALE_CONFIRM.1))
}

/// `--scale`: every set in a child process against one stack, the schedule
/// confirmed at scaled time; the JSON summary last on stdout.
async fn run_scale(args: &Args) {
    let stack = Stack::start(StackConfig::replication_group(GROUP))
        .await
        .unwrap_or_else(|e| panic!("local stack: {e} (run scripts/install-servers.sh valkey)"));
    let started = now();
    let (rows, counted, expected) = scale_part(&stack).await;
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir).expect("report directory");
        let section = scale_report(dir, &rows, counted, expected);
        let existing = report::existing(dir);
        let markdown = report::with_scale(&existing, &existing, Some(&section));
        std::fs::write(dir.join("benchmarks.md"), markdown).expect("write report");
        eprintln!(
            "wrote {} and {}",
            dir.join("benchmarks.md").display(),
            dir.join("benchmarks-scale.png").display()
        );
    }
    let row = |kind: &str, n: usize| rows.iter().find(|r| r.kind == kind && r.n == n);
    println!(
        "{}",
        json!({
            "elapsed_s": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "scale": rows.iter().map(|r| json!({
                "kind": r.kind,
                "connections": r.n,
                "rss_kib_per_connection": (r.rss_kib_per_connection * 10.0).round() / 10.0,
                "tasks_per_connection": (r.tasks_per_connection * 100.0).round() / 100.0,
                "setup_ms": (r.setup_ms * 10.0).round() / 10.0,
                "auths_per_hour": (r.auths_per_hour * 10.0).round() / 10.0,
            })).collect::<Vec<_>>(),
            "pool_rss_kib_per_connection_1000": row("pool", 1000).map(|r| (r.rss_kib_per_connection * 10.0).round() / 10.0),
            "shared_rss_kib_per_connection_1000": row("shared", 1000).map(|r| (r.rss_kib_per_connection * 10.0).round() / 10.0),
            "pool_rss_kib_marginal": scale::marginal_kib(&rows, "pool").map(|v| (v * 10.0).round() / 10.0),
            "shared_rss_kib_marginal": scale::marginal_kib(&rows, "shared").map(|v| (v * 10.0).round() / 10.0),
            "scaled_reauths_counted": counted,
            "scaled_reauths_expected": (expected * 10.0).round() / 10.0,
        })
    );
}

/// How long and how often each part runs.
struct Plan {
    rounds: usize,
    warmup: Duration,
    span: Duration,
    event_span: Duration,
    setups: usize,
    /// The workloads, in order.
    workloads: Vec<Workload>,
    /// The clients' keys.
    clients: Vec<String>,
}

impl Plan {
    fn new(args: &Args) -> Result<Plan, String> {
        let (rounds, warmup, span, event_span, setups) = if args.quick {
            (10, 30, 150, 16, 10)
        } else {
            (12, 100, 500, 52, 40)
        };
        let workloads = if args.workloads.is_empty() {
            if args.quick {
                Workload::quick()
            } else {
                Workload::all()
            }
        } else {
            let all = Workload::all();
            args.workloads
                .iter()
                .map(|id| {
                    all.iter()
                        .find(|w| w.id() == id.trim().to_ascii_lowercase())
                        .copied()
                        .ok_or_else(|| {
                            let ids: Vec<String> = all.iter().map(Workload::id).collect();
                            format!("no workload {id:?}; the workloads: {}", ids.join(", "))
                        })
                })
                .collect::<Result<_, _>>()?
        };
        let clients: Vec<String> = if args.clients.is_empty() {
            let default: &[&str] = if args.quick {
                &["a", "b", "b2", "s", "c"]
            } else {
                &["a", "b", "b2", "s", "c", "d"]
            };
            default.iter().map(|k| (*k).to_owned()).collect()
        } else {
            args.clients.iter().map(|k| k.trim().to_owned()).collect()
        };
        if let Some(unknown) = clients
            .iter()
            .find(|k| !["a", "b", "b2", "s", "c", "cn", "d"].contains(&k.as_str()))
        {
            return Err(format!(
                "no client {unknown:?}; the clients: a, b, b2, s, c, cn, d"
            ));
        }
        Ok(Plan {
            rounds,
            warmup: Duration::from_millis(warmup),
            span: Duration::from_millis(span),
            event_span: Duration::from_secs(event_span),
            setups,
            workloads,
            clients,
        })
    }

    fn has(&self, key: &str) -> bool {
        self.clients.iter().any(|k| k == key)
    }
}

/// One workload's results for each client, in client order.
pub(crate) struct Row {
    pub(crate) workload: Workload,
    /// (client key, client label, median ops/s, latency of every round)
    pub(crate) cells: Vec<(&'static str, &'static str, f64, Sample)>,
    /// Each client's ops/s in each round, by key.
    pub(crate) rounds: Vec<(&'static str, Vec<f64>)>,
    /// Each client's p99 (µs) in each round, by key.
    pub(crate) round_p99s: Vec<(&'static str, Vec<f64>)>,
}

impl Row {
    pub(crate) fn cell(&self, key: &str) -> Option<&(&'static str, &'static str, f64, Sample)> {
        self.cells.iter().find(|c| c.0 == key)
    }

    /// `x`'s value over `y`'s in each round, from `per_round`.
    fn round_ratios(per_round: &[(&'static str, Vec<f64>)], x: &str, y: &str) -> Option<Vec<f64>> {
        let values = |key: &str| per_round.iter().find(|r| r.0 == key).map(|r| &r.1);
        let (x, y) = (values(x)?, values(y)?);
        Some(x.iter().zip(y).map(|(x, y)| x / y).collect())
    }

    /// `x`'s ops/s over `y`'s, round by round.
    pub(crate) fn throughput_ratios(&self, x: &str, y: &str) -> Option<Vec<f64>> {
        Self::round_ratios(&self.rounds, x, y)
    }

    /// `x`'s p99 over `y`'s, round by round.
    pub(crate) fn p99_ratios(&self, x: &str, y: &str) -> Option<Vec<f64>> {
        Self::round_ratios(&self.round_p99s, x, y)
    }

    /// The median over rounds of `x`'s ops/s over `y`'s in the same round:
    /// measurements taken next to each other, so slow drift cancels.
    pub(crate) fn paired(&self, x: &str, y: &str) -> Option<f64> {
        Some(stats::median(&self.throughput_ratios(x, y)?))
    }

    /// `paired`, with its 95 % interval.
    pub(crate) fn paired_estimate(&self, x: &str, y: &str) -> Option<stats::Estimate> {
        stats::estimate(&self.throughput_ratios(x, y)?)
    }

    /// (a)/(b) throughput, paired by round.
    pub(crate) fn throughput_ratio(&self) -> f64 {
        self.paired("a", "b").unwrap_or(f64::NAN)
    }

    /// (a)/(b) p99 latency: the median over rounds of the ratio of their
    /// rounds' p99s.
    pub(crate) fn p99_ratio(&self) -> f64 {
        self.p99_of("a", "b").unwrap_or(f64::NAN)
    }

    /// `x`/`y` p99 latency: the median over rounds of the ratio of their
    /// rounds' p99s.
    pub(crate) fn p99_of(&self, x: &str, y: &str) -> Option<f64> {
        Some(stats::median(&self.p99_ratios(x, y)?))
    }

    /// Whether the shared handle's targets concern this workload: the
    /// concurrent ones (x16, x64), where multiplexing matters.
    pub(crate) fn concurrent(&self) -> bool {
        self.workload.concurrency >= 16
    }
}

/// Everything measured, for the report.
pub(crate) struct Results {
    pub(crate) rows: Vec<Row>,
    pub(crate) events: events::EventRun,
    pub(crate) setup_iam_us: Vec<u64>,
    pub(crate) setup_password_us: Vec<u64>,
    pub(crate) sign_ns: Vec<f64>,
    pub(crate) server_version: String,
    pub(crate) quick: bool,
    pub(crate) plan_text: String,
}

impl Results {
    /// `x`/`y` throughput over every round of every workload (of the x16
    /// and x64 ones only, when `concurrent`): the median and its interval.
    pub(crate) fn pooled(&self, x: &str, y: &str, concurrent: bool) -> Option<stats::Estimate> {
        self.pooled_by(concurrent, |r| r.throughput_ratios(x, y))
    }

    /// `x`/`y` p99, as [`pooled`](Self::pooled) does throughput.
    pub(crate) fn pooled_p99(&self, x: &str, y: &str, concurrent: bool) -> Option<stats::Estimate> {
        self.pooled_by(concurrent, |r| r.p99_ratios(x, y))
    }

    /// The median and interval of every round's ratio that `ratios` gives,
    /// over every workload (the x16 and x64 ones only, when `concurrent`).
    fn pooled_by(
        &self,
        concurrent: bool,
        ratios: impl Fn(&Row) -> Option<Vec<f64>>,
    ) -> Option<stats::Estimate> {
        let ratios: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| !concurrent || r.concurrent())
            .filter_map(ratios)
            .flatten()
            .collect();
        stats::estimate(&ratios)
    }

    /// The lowest and highest of `f` over the workloads where it is known.
    pub(crate) fn spread(&self, f: impl Fn(&Row) -> Option<f64>) -> Option<(f64, f64)> {
        let values: Vec<f64> = self.rows.iter().filter_map(f).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        (!values.is_empty()).then_some((min, max))
    }

    /// The workload where `f` is lowest (`lowest`) or highest: the value and
    /// the workload's name.
    fn extreme(&self, f: impl Fn(&Row) -> f64, lowest: bool) -> (f64, String) {
        let mut best: Option<(f64, String)> = None;
        for row in &self.rows {
            let value = f(row);
            let better = match &best {
                None => !value.is_nan(),
                Some((b, _)) => (lowest && value < *b) || (!lowest && value > *b),
            };
            if better {
                best = Some((value, row.workload.name()));
            }
        }
        best.unwrap_or((f64::NAN, String::new()))
    }

    /// The lowest (a)/(b) throughput ratio, and its workload.
    pub(crate) fn lowest_throughput_ratio(&self) -> (f64, String) {
        self.extreme(Row::throughput_ratio, true)
    }

    /// The highest (a)/(b) p99 ratio, and its workload.
    pub(crate) fn highest_p99_ratio(&self) -> (f64, String) {
        self.extreme(Row::p99_ratio, false)
    }

    /// The lowest `x`/`y` throughput ratio (paired by round) over the x16
    /// and x64 workloads, and its workload.
    pub(crate) fn lowest_concurrent_ratio(&self, x: &str, y: &str) -> (f64, String) {
        self.extreme(
            |r| {
                r.concurrent()
                    .then(|| r.paired(x, y))
                    .flatten()
                    .unwrap_or(f64::NAN)
            },
            true,
        )
    }

    /// The highest (s)/(c) p99 ratio over the x16 and x64 workloads, and its
    /// workload.
    pub(crate) fn highest_shared_p99_ratio(&self) -> (f64, String) {
        self.extreme(
            |r| {
                r.concurrent()
                    .then(|| r.p99_of("s", "c"))
                    .flatten()
                    .unwrap_or(f64::NAN)
            },
            false,
        )
    }
}

fn credentials() -> Credentials {
    Credentials::new(
        STATIC_ACCESS_KEY_ID,
        STATIC_SECRET_ACCESS_KEY,
        None,
        None,
        "bench",
    )
}

fn front(stack: &Stack) -> String {
    format!("rediss://127.0.0.1:{}", stack.endpoint().port())
}

fn iam_config(stack: &Stack) -> elasticache_iam::ConnectionConfigBuilder {
    ConnectionConfig::builder()
        .url(front(stack))
        .ca_file(stack.ca_file())
        .user_id(stack.user_id())
        .region(stack.region())
        .replication_group(GROUP)
}

async fn iam_pool(config: ConnectionConfig, max_size: u32) -> Pool {
    Pool::builder(config)
        .credentials_provider(credentials())
        .max_size(max_size)
        .build()
        .await
        .expect("IAM pool")
}

/// One redis-rs multiplexed connection to `url`, with `TCP_NODELAY` or
/// with Nagle's algorithm (redis-rs 1.x's default; 2.0 turns it off).
async fn multiplexed(url: &str, nodelay: bool) -> redis::aio::MultiplexedConnection {
    let info = url
        .into_connection_info()
        .expect("front URL")
        .set_tcp_settings(TcpSettings::default().set_nodelay(nodelay));
    redis::Client::open(info)
        .expect("front URL")
        .get_multiplexed_async_connection()
        .await
        .expect("front connection")
}

async fn password_pool(stack: &Stack, max_size: u32) -> Pool {
    let config = ConnectionConfig::builder()
        .url(front(stack))
        .ca_file(stack.ca_file())
        .username(PASSWORD_USER.0)
        .password(PASSWORD_USER.1)
        .build()
        .expect("password config");
    Pool::builder(config)
        .max_size(max_size)
        .build()
        .await
        .expect("password pool")
}

/// Each of `n` checkouts from a pool whose connections are all held opens a
/// new connection: its time, in microseconds.
async fn setup_times(pool: &Pool, n: usize) -> Vec<u64> {
    let mut held = vec![pool.get().await.expect("first connection")];
    let mut times = Vec::new();
    for _ in 0..n {
        let started = now();
        held.push(pool.get().await.expect("new connection"));
        times.push(started.elapsed().as_micros() as u64);
    }
    times
}

/// Nanoseconds per token, for each of 20 batches of 2,000 signings.
fn sign_times() -> Vec<f64> {
    let signer = TokenSigner::builder()
        .replication_group(GROUP)
        .user_id("iam-user-01")
        .region("us-east-1")
        .build()
        .expect("signer");
    let (credentials, at) = (credentials(), wall_now());
    (0..20)
        .map(|_| {
            let started = now();
            for _ in 0..2_000 {
                std::hint::black_box(signer.sign(&credentials, at).expect("sign"));
            }
            started.elapsed().as_nanos() as f64 / 2_000.0
        })
        .collect()
}

pub(crate) fn median_f(values: &[f64]) -> f64 {
    stats::median(values)
}

pub(crate) fn median_u(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

async fn side_by_side(clients: &[Arc<Client>], plan: &Plan) -> Vec<Row> {
    let mut rows = Vec::new();
    for &workload in &plan.workloads {
        let mut per_client: Vec<(Vec<f64>, Option<Sample>)> =
            clients.iter().map(|_| (Vec::new(), None)).collect();
        let mut p99s: Vec<Vec<f64>> = clients.iter().map(|_| Vec::new()).collect();
        for round in 0..plan.rounds {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..clients.len()).collect()
            } else {
                (0..clients.len()).rev().collect()
            };
            for i in order {
                let sample = workload::run(&clients[i], workload, plan.warmup, plan.span).await;
                p99s[i].push(sample.latency.value_at_quantile(0.99) as f64);
                let (rates, merged) = &mut per_client[i];
                rates.push(sample.ops_per_sec());
                match merged {
                    Some(m) => {
                        m.ops += sample.ops;
                        m.errors += sample.errors;
                        m.elapsed += sample.elapsed;
                        m.latency.add(&sample.latency).expect("same bounds");
                    }
                    None => *merged = Some(sample),
                }
            }
        }
        let rounds = clients
            .iter()
            .zip(&per_client)
            .map(|(client, (rates, _))| (client.key(), rates.clone()))
            .collect();
        let round_p99s = clients
            .iter()
            .zip(p99s)
            .map(|(client, p99s)| (client.key(), p99s))
            .collect();
        let cells = clients
            .iter()
            .zip(per_client)
            .map(|(client, (rates, merged))| {
                (
                    client.key(),
                    client.label(),
                    median_f(&rates),
                    merged.expect("a round ran"),
                )
            })
            .collect();
        let row = Row {
            workload,
            cells,
            rounds,
            round_p99s,
        };
        eprintln!("{}", report::row_line(&row));
        rows.push(row);
    }
    rows
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(child) = &args.scale_child {
        scale::child(child).await;
        return;
    }
    if args.scale {
        run_scale(&args).await;
        return;
    }
    if args.workloads.iter().any(|w| w == "list") {
        for workload in Workload::all() {
            println!("{}  ({})", workload.id(), workload.name());
        }
        return;
    }
    let plan = Plan::new(&args).unwrap_or_else(|err| {
        eprintln!("error: {err}");
        std::process::exit(2)
    });
    let started = now();
    let stack = Stack::start(
        StackConfig::replication_group(GROUP).password_user(PASSWORD_USER.0, PASSWORD_USER.1),
    )
    .await
    .unwrap_or_else(|e| panic!("local stack: {e} (run scripts/install-servers.sh valkey)"));

    // Keys for GET, written once directly.
    let upstream = redis::Client::open(format!("redis://{}", stack.upstream_addr()))
        .expect("upstream URL")
        .get_multiplexed_async_connection()
        .await
        .expect("upstream connection");
    for worker in 0..64 {
        for size in [64usize, 1024] {
            let _: () = redis::cmd("SET")
                .arg(Workload::key(worker, size))
                .arg(vec![b'x'; size])
                .query_async(&mut upstream.clone())
                .await
                .expect("seed");
        }
    }

    let max = 64;
    let iam = iam_pool(iam_config(&stack).build().expect("IAM config"), max).await;
    let server_version = iam
        .health()
        .await
        .server_version
        .unwrap_or_else(|| "unknown".into());
    let plain_url = format!(
        "rediss://{}:{}@127.0.0.1:{}/#insecure",
        PASSWORD_USER.0,
        PASSWORD_USER.1,
        stack.endpoint().port()
    );
    // In the order they take turns: a b b′ s c d.
    let mut clients = Vec::new();
    if plan.has("a") {
        clients.push(Arc::new(Client::Iam(iam)));
    }
    if plan.has("b") {
        let plain = clients::plain_pool(&plain_url, max).await;
        clients.push(Arc::new(Client::Plain(plain)));
    }
    if plan.has("b2") {
        let again = clients::plain_pool(&plain_url, max).await;
        clients.push(Arc::new(Client::PlainAgain(again)));
    }
    if plan.has("s") {
        let shared = SharedConnection::builder(iam_config(&stack).build().expect("IAM config"))
            .credentials_provider(credentials())
            .build()
            .await
            .expect("IAM shared handle");
        clients.push(Arc::new(Client::Shared(shared)));
    }
    if plan.has("c") {
        let raw = multiplexed(&plain_url, true).await;
        clients.push(Arc::new(Client::Raw(raw)));
    }
    if plan.has("cn") {
        let raw = multiplexed(&plain_url, false).await;
        clients.push(Arc::new(Client::RawNagle(raw)));
    }
    if plan.has("d") {
        clients.push(Arc::new(Client::Upstream(upstream)));
    }
    // Open every pool's connections before measuring.
    let warm = Workload {
        op: workload::Op::Get,
        size: 64,
        concurrency: 64,
    };
    for client in &clients {
        workload::run(client, warm, Duration::ZERO, Duration::from_millis(500)).await;
    }

    let rows = side_by_side(&clients, &plan).await;
    drop(clients);

    let scaled = iam_config(&stack)
        .token_refresh_interval(Duration::from_secs(2))
        .reauth_after(Duration::from_secs(4))
        .max_connection_age(Duration::from_secs(6))
        .build()
        .expect("scaled config");
    let events = events::run(
        iam_pool(scaled, 16).await,
        16,
        plan.event_span,
        Duration::from_millis(250),
    )
    .await;
    eprintln!("{}", report::events_line(&events));

    let setup_iam_us = setup_times(
        &iam_pool(iam_config(&stack).build().expect("IAM config"), 64).await,
        plan.setups,
    )
    .await;
    let setup_password_us = setup_times(&password_pool(&stack, 64).await, plan.setups).await;
    let sign_ns = sign_times();

    let plan_text = report::plan_text(
        plan.rounds,
        plan.warmup,
        plan.span,
        plan.event_span,
        plan.setups,
    );
    let results = Results {
        rows,
        events,
        setup_iam_us,
        setup_password_us,
        sign_ns,
        server_version,
        quick: args.quick,
        plan_text,
    };
    eprintln!("{}", report::tables(&results));
    let full = !args.quick && args.workloads.is_empty() && args.clients.is_empty();
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir).expect("report directory");
        let chart = dir.join("benchmarks-latency.png");
        chart::draw(&results.events, &chart).expect("chart");
        let markdown = report::markdown(&results, "benchmarks-latency.png");
        let existing = report::existing(dir);
        // A full run also measures the cost as the work grows, so that one
        // command writes the whole report; a partial one keeps that section.
        let section = if full {
            let (rows, counted, expected) = scale_part(&stack).await;
            Some(scale_report(dir, &rows, counted, expected))
        } else {
            None
        };
        let markdown = report::with_scale(&markdown, &existing, section.as_deref());
        std::fs::write(dir.join("benchmarks.md"), markdown).expect("write report");
        eprintln!(
            "wrote {} and {}",
            dir.join("benchmarks.md").display(),
            chart.display()
        );
    }

    let errors: u64 = results
        .rows
        .iter()
        .flat_map(|r| r.cells.iter().map(|c| c.3.errors))
        .sum::<u64>()
        + results.events.errors;
    let (throughput, _) = results.lowest_throughput_ratio();
    let (p99, _) = results.highest_p99_ratio();
    let (shared_throughput, _) = results.lowest_concurrent_ratio("s", "c");
    let (shared_vs_pool, _) = results.lowest_concurrent_ratio("s", "a");
    let (shared_p99, _) = results.highest_shared_p99_ratio();
    let median = |e: Option<stats::Estimate>| e.map(|e| round3(e.median));
    let interval = |e: Option<stats::Estimate>| e.map(|e| e.interval());
    let pooled = results.pooled("a", "b", false);
    let noise = results.pooled("b2", "b", false);
    let shared_c = results.pooled("s", "c", true);
    let shared_p99_c = results.pooled_p99("s", "c", true);
    let shared_a = results.pooled("s", "a", true);
    let summary = json!({
        "throughput_ratio_iam_vs_plain": round3(throughput),
        "p99_ratio_iam_vs_plain": round3(p99),
        "shared_throughput_ratio_vs_multiplexed": round3(shared_throughput),
        "shared_p99_ratio_vs_multiplexed": round3(shared_p99),
        "shared_throughput_ratio_vs_pool": round3(shared_vs_pool),
        "throughput_ratio_median": median(pooled),
        "throughput_ratio_ci": interval(pooled),
        "noise_throughput_ratio_median": median(noise),
        "noise_throughput_ratio_ci": interval(noise),
        "shared_throughput_ratio_vs_multiplexed_median": median(shared_c),
        "shared_throughput_ratio_vs_multiplexed_ci": interval(shared_c),
        "shared_p99_ratio_vs_multiplexed_median": median(shared_p99_c),
        "shared_p99_ratio_vs_multiplexed_ci": interval(shared_p99_c),
        "shared_throughput_ratio_vs_pool_median": median(shared_a),
        "shared_throughput_ratio_vs_pool_ci": interval(shared_a),
        "rounds": plan.rounds,
        "workloads": results.rows.len(),
        "event_window_p999_ratio": round3(results.events.ratio()),
        "errors": errors,
        "sign_ns_median": round3(median_f(&results.sign_ns)),
        "setup_iam_us_median": median_u(&results.setup_iam_us),
        "setup_password_us_median": median_u(&results.setup_password_us),
        "rotations": results.events.count(events::Event::Rotation),
        "reauths": results.events.count(events::Event::Reauth),
        "recycles": results.events.count(events::Event::Recycle),
        "new_connections": results.events.count(events::Event::Reconnect),
        "quick": args.quick,
        "elapsed_s": round3(started.elapsed().as_secs_f64()),
    });
    println!("{summary}");
}

use stats::round3;
