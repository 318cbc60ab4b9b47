//! The results as text: progress lines, tables, and `benchmarks.md`.

use std::fmt::Write;
use std::time::Duration;

use crate::events::{Event, EventRun};
use crate::{Results, Row, median_f, median_u};

/// Targets from the benchmark's specification.
const THROUGHPUT_TARGET: f64 = 0.97;
const P99_TARGET: f64 = 1.05;
const EVENT_P999_TARGET: f64 = 1.5;
/// Long-term keys, which the bench signs with (temporary credentials: 3 µs,
/// measured by `benches/signing.rs`).
const SIGN_TARGET_NS: f64 = 2_000.0;
/// The shared handle against one raw multiplexed connection (x16, x64).
const SHARED_THROUGHPUT_TARGET: f64 = 0.9;
const SHARED_P99_TARGET: f64 = 1.2;
/// The shared handle against the pool (x16, x64).
const SHARED_VS_POOL_TARGET: f64 = 3.0;

pub(crate) fn row_line(row: &Row) -> String {
    let mut line = format!("{:<16}", row.workload.name());
    for (key, _, rate, sample) in &row.cells {
        let _ = write!(
            line,
            " {key}: {rate:>8.0}/s p99 {:>5} µs",
            sample.latency.value_at_quantile(0.99)
        );
    }
    if let Some(ab) = row.paired_estimate("a", "b") {
        let _ = write!(line, "  a/b {}", ab.text());
    }
    if let (Some(throughput), Some(p99)) = (row.paired("s", "c"), row.p99_of("s", "c")) {
        let _ = write!(line, "  s/c {throughput:.3} (p99 {p99:.3})");
    }
    if let Some(vs_pool) = row.paired("s", "a") {
        let _ = write!(line, "  s/a {vs_pool:.3}");
    }
    if let Some(control) = row.paired_estimate("b2", "b") {
        let _ = write!(line, "  b′/b {}", control.text());
    }
    line
}

/// One row of a workload table: its name, a cell per client, the ratio,
/// and what follows.
fn table_row(out: &mut String, row: &Row, cells: &[String], ratio: f64, tail: &str) {
    let _ = writeln!(
        out,
        "| {} | {} | {ratio:.3} |{tail}",
        row.workload.name(),
        cells.join(" | ")
    );
}

pub(crate) fn events_line(run: &EventRun) -> String {
    let [rotations, reauths, recycles, reconnects] = run.tally();
    format!(
        "events: {rotations} rotations, {reauths} re-auths, {recycles} recycles, {reconnects} \
         new connections in {} of {} windows; p99.9 {} µs in them, {} µs in the others \
         (ratio {:.2}); {} errors",
        run.event_windows,
        run.windows.len(),
        run.event_p999_us,
        run.steady_p999_us,
        run.ratio(),
        run.errors
    )
}

pub(crate) fn plan_text(
    rounds: usize,
    warmup: Duration,
    span: Duration,
    event_span: Duration,
    setups: usize,
) -> String {
    format!(
        "{rounds} rounds per workload, each client {:.1} s timed after {:.1} s of warm-up per \
         round; event run {} s; {setups} connection set-ups per kind",
        span.as_secs_f64(),
        warmup.as_secs_f64(),
        event_span.as_secs()
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

/// The throughput and latency tables.
pub(crate) fn tables(results: &Results) -> String {
    let mut out = String::new();
    let labels: Vec<&str> = results.rows[0].cells.iter().map(|c| c.1).collect();
    let control = results.rows[0].paired("b2", "b").is_some();
    let _ = writeln!(
        out,
        "### Throughput (ops/s, median of rounds)\n\n\
         Ratios are the median over rounds of the two clients' ops/s in the same round, with \
         its 95 % bootstrap interval in brackets.\n\n\
         | workload | {} | (a)/(b) |{}",
        labels.join(" | "),
        if control { " (b′)/(b) |" } else { "" }
    );
    let _ = writeln!(
        out,
        "|---|{}---|{}",
        "---|".repeat(labels.len()),
        if control { "---|" } else { "" }
    );
    for row in &results.rows {
        let cells: Vec<String> = row.cells.iter().map(|c| format!("{:.0}", c.2)).collect();
        let control = row
            .paired_estimate("b2", "b")
            .map_or(String::new(), |e| format!(" {} |", e.text()));
        let ratio = row
            .paired_estimate("a", "b")
            .map_or("–".to_owned(), |e| e.text());
        let _ = writeln!(
            out,
            "| {} | {} | {ratio} |{control}",
            row.workload.name(),
            cells.join(" | ")
        );
    }
    let pooled = |x: &str, y: &str, concurrent: bool| {
        results
            .pooled(x, y, concurrent)
            .map_or("–".to_owned(), |e| {
                format!("{} over {} rounds", e.text(), e.n)
            })
    };
    let _ = writeln!(
        out,
        "\nOver every round of every workload: (a)/(b) {}; the noise control (b′)/(b) {}. \
         Over the x16 and x64 rounds: (s)/(c) {}, (s)/(a) {}; p99 (s)/(c) {}.",
        pooled("a", "b", false),
        pooled("b2", "b", false),
        pooled("s", "c", true),
        pooled("s", "a", true),
        results
            .pooled_p99("s", "c", true)
            .map_or("–".to_owned(), |e| e.text()),
    );
    let geomean = |f: &dyn Fn(&Row) -> Option<f64>| {
        let logs: Vec<f64> = results.rows.iter().filter_map(f).map(f64::ln).collect();
        (logs.iter().sum::<f64>() / logs.len().max(1) as f64).exp()
    };
    let _ = writeln!(
        out,
        "\nGeometric mean over the workloads: (a)/(b) {:.3}{}.",
        geomean(&|r| Some(r.throughput_ratio())),
        match results.spread(|r| r.paired("b2", "b")) {
            Some((low, high)) => format!(
                ", (b′)/(b) {:.3}; (b′)/(b) ranges from {low:.3} to {high:.3}: two identical \
                 clients differ by that much here",
                geomean(&|r| r.paired("b2", "b")),
            ),
            None => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "\n### Latency (µs: p50 / p99 / p99.9, every operation of every round)\n\n\
         The p99 ratio is the median over rounds of the ratio of the two clients' p99 in the \
         same round.\n\n| workload | {} | p99 (a)/(b) |",
        labels.join(" | ")
    );
    let _ = writeln!(out, "|---|{}---|", "---|".repeat(labels.len()));
    for row in &results.rows {
        let cells: Vec<String> = row
            .cells
            .iter()
            .map(|c| {
                let h = &c.3.latency;
                format!(
                    "{} / {} / {}",
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999)
                )
            })
            .collect();
        table_row(&mut out, row, &cells, row.p99_ratio(), "");
    }
    out
}

fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".to_owned(), |s| s.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or("unknown".to_owned(), |kib| {
            format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0)
        });
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores available, {memory} memory, Linux {kernel}, {rustc}, release build"
    )
}

/// `benchmarks.md`: method, machine, tables, events, set-up, signing, and
/// each target with whether it was met.
pub(crate) fn markdown(results: &Results, chart: &str) -> String {
    let run = &results.events;
    let throughput = results.lowest_throughput_ratio();
    let p99 = results.highest_p99_ratio();
    let shared = results.lowest_concurrent_ratio("s", "c");
    let shared_p99 = results.highest_shared_p99_ratio();
    let vs_pool = results.lowest_concurrent_ratio("s", "a");
    // The pipelining ceiling over the pool, in the workload where (s)/(a) is lowest.
    let raw_vs_pool = results
        .rows
        .iter()
        .find(|r| r.workload.name() == vs_pool.1)
        .and_then(|r| r.paired("c", "a"))
        .unwrap_or(f64::NAN);
    let sign = median_f(&results.sign_ns);
    let (setup_iam, setup_password) = (
        median_u(&results.setup_iam_us),
        median_u(&results.setup_password_us),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmarks\n\n\
         Generated by `cargo run --release --example bench -- --report docs`{}; do not edit by \
         hand.\n\n\
         Machine: {}. Server: {} behind the local stack's TLS front (TLS 1.3, IAM token \
         verification), all on loopback; the stack, the server and the clients share the \
         machine.\n",
        if results.quick { " (quick mode)" } else { "" },
        machine(),
        results.server_version
    );
    let _ = writeln!(
        out,
        "## Method\n\n\
         One process, one run, one stack and one Valkey for every client:\n\n\
         - (a) this crate's `Pool` with IAM authentication (replication group, standalone \
           connections);\n\
         - (b) a `bb8-redis` pool with password (ACL) authentication through the same TLS front. \
           bb8's `PING` on every checkout is turned off, as our pool does not ping either, and \
           both pools have 64 connections at most and are warmed up before measuring. bb8-redis \
           cannot be given a CA file, so it skips certificate verification (`#insecure`); that \
           only changes the handshake, not steady state;\n\
         - (b′) a second pool exactly like (b), measured the same way: (b′)/(b) is the noise \
           floor, how far two identical clients differ on this machine;\n\
         - (s) this crate's `SharedConnection` with IAM authentication: one multiplexed \
           connection, re-authenticated in the background, shared by all workers;\n\
         - (c) one redis-rs multiplexed connection through the front, shared by all workers \
           (pipelining ceiling). It has `TCP_NODELAY` on, as every connection of this crate \
           and, from 2.0, redis-rs's own. redis-rs 1.x leaves Nagle's algorithm on; over \
           loopback, where ACKs come at once, that batches small writes and lowers the tail at \
           16 workers, while over a network it holds writes back until the last one is \
           acknowledged (redis-rs issue 2195 measured 39-68 % less throughput on one \
           multiplexed connection over a LAN). `--clients s,c,cn` adds it as (c₀);\n\
         - (d) one multiplexed connection to Valkey directly, without TLS (reference).\n\n\
         Each worker checks out a connection (pools), sends one command, waits for its reply \
         and gives the connection back, in a loop; each operation is timed from before the \
         checkout to after the reply. {}. Clients take turns within a workload (a b b′ s c d, \
         then d c s b′ b a), so drift in the machine's speed falls on all of them. Every ratio \
         is paired by round (the two clients' values in the same round) and reported as the \
         median over rounds with a 95 % bootstrap interval (4,000 resamples of the rounds); \
         latency quantiles in the tables are over every operation of every round \
         (HdrHistogram, microseconds).\n",
        results.plan_text
    );
    let _ = writeln!(out, "## Steady state\n\n{}", tables(results));
    let [rotations, reauths, recycles, reconnects] = run.tally();
    let _ = writeln!(
        out,
        "## Rotation, re-authentication and recycling\n\n\
         The IAM pool with the lifecycle scaled to seconds (token every 2 s, re-auth after \
         3.6-4 s, replacement by 5.7-6 s), {} workers doing {} for {} s. The workers run 6 s \
         and rest 7 s in turn, so that the connections pass their deadline while idle, are \
         closed, and are replaced when the load returns (a connection in use is \
         re-authenticated instead and never reaches its deadline). Operations are grouped by \
         completion time into {} ms windows; a window containing a rotation, re-auth, recycle \
         or new connection is an event window.\n\n\
         | | |\n|---|---|\n\
         | rotations / re-auths / recycles / new connections | {rotations} / {reauths} / {recycles} / {reconnects} |\n\
         | event windows | {} of {} |\n\
         | operations / errors | {} / {} |\n\
         | p99.9 in event windows | {} µs |\n\
         | p99.9 in other windows | {} µs |\n\
         | ratio | {:.2} |\n\n\
         ![latency over time]({chart})\n",
        run.workload.concurrency,
        run.workload.name(),
        run.windows.last().map_or(0.0, |w| w.start_s).round(),
        run.window.as_millis(),
        run.event_windows,
        run.windows.len(),
        run.ops,
        run.errors,
        run.event_p999_us,
        run.steady_p999_us,
        run.ratio()
    );
    let _ = writeln!(
        out,
        "## Connection set-up and signing\n\n\
         | | median | min | max |\n|---|---|---|---|\n\
         | new IAM connection (TCP, TLS, `HELLO 3 AUTH` with a token) | {setup_iam} µs | {} µs | {} µs |\n\
         | new password connection (same pool code, same TLS) | {setup_password} µs | {} µs | {} µs |\n\
         | signing one token | {:.0} ns | {:.0} ns | {:.0} ns |\n\n\
         A new connection is opened by a checkout while every existing one is held. The token \
         comes from the refresher's memory, so an IAM connection costs the same round trips \
         as a password one; the difference is the server verifying the token.\n",
        results.setup_iam_us.iter().min().unwrap_or(&0),
        results.setup_iam_us.iter().max().unwrap_or(&0),
        results.setup_password_us.iter().min().unwrap_or(&0),
        results.setup_password_us.iter().max().unwrap_or(&0),
        sign,
        results
            .sign_ns
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min),
        results.sign_ns.iter().copied().fold(0.0, f64::max),
    );
    let _ = writeln!(
        out,
        "## Targets\n\n\
         | target | measured | |\n|---|---|---|\n\
         | (a)/(b) throughput ≥ {THROUGHPUT_TARGET} on every workload | {:.3} (lowest: {}) | {} |\n\
         | (a)/(b) p99 ≤ {P99_TARGET} | {:.3} (highest: {}) | {} |\n\
         | p99.9 in event windows ≤ {EVENT_P999_TARGET} × steady state | {:.2} | {} |\n\
         | signing ≤ 2 µs per token (long-term keys) | {:.2} µs | {} |\n\
         | (s)/(c) throughput ≥ {SHARED_THROUGHPUT_TARGET} at x16 and x64 | {:.3} (lowest: {}) | {} |\n\
         | (s)/(c) p99 ≤ {SHARED_P99_TARGET} at x16 and x64 | {:.3} (highest: {}) | {} |\n\
         | (s)/(a) throughput ≥ {SHARED_VS_POOL_TARGET} at x16 and x64 | {:.3} (lowest: {}; (c)/(a) there: {:.3}) | {} |",
        throughput.0,
        throughput.1,
        verdict(throughput.0 >= THROUGHPUT_TARGET),
        p99.0,
        p99.1,
        verdict(p99.0 <= P99_TARGET),
        run.ratio(),
        verdict(run.ratio() <= EVENT_P999_TARGET),
        sign / 1000.0,
        verdict(sign <= SIGN_TARGET_NS),
        shared.0,
        shared.1,
        verdict(shared.0 >= SHARED_THROUGHPUT_TARGET),
        shared_p99.0,
        shared_p99.1,
        verdict(shared_p99.0 <= SHARED_P99_TARGET),
        vs_pool.0,
        vs_pool.1,
        raw_vs_pool,
        verdict(vs_pool.0 >= SHARED_VS_POOL_TARGET),
    );
    out.push_str(&misses(results, throughput.0, p99.0, sign));
    out
}

/// By how much each missed target was missed, and why, from this run's own
/// numbers.
fn misses(results: &Results, throughput: f64, p99: f64, sign_ns: f64) -> String {
    let rows = &results.rows;
    let p99_of = |row: &Row, key: &str| {
        row.cell(key)
            .map(|c| c.3.latency.value_at_quantile(0.99) as f64)
    };
    let p50_excess: Vec<f64> = rows
        .iter()
        .filter_map(|r| {
            let (a, b) = (r.cell("a")?, r.cell("b")?);
            Some(
                a.3.latency.value_at_quantile(0.5) as f64
                    / b.3.latency.value_at_quantile(0.5) as f64
                    - 1.0,
            )
        })
        .collect();
    let median_p50_excess = crate::median_f(&p50_excess) * 100.0;
    let control = results.spread(|r| r.paired("b2", "b"));
    let control_p99 = results.spread(|r| Some(p99_of(r, "b2")? / p99_of(r, "b")?));
    let mut out = String::new();
    if throughput < THROUGHPUT_TARGET || p99 > P99_TARGET {
        let _ = write!(
            out,
            "\n\n**Throughput and p99, missed** by {:.1} % (lowest throughput ratio) and \
             {:.0} % (highest p99 ratio). ",
            (THROUGHPUT_TARGET - throughput).max(0.0) / THROUGHPUT_TARGET * 100.0,
            (p99 / P99_TARGET - 1.0).max(0.0) * 100.0,
        );
        match (control, control_p99) {
            (Some((low, high)), Some((p99_low, p99_high))) => {
                let _ = write!(
                    out,
                    "In the same run two identical bb8-redis pools differed by {low:.3} to \
                     {high:.3} in throughput and {p99_low:.2} to {p99_high:.2} in p99, so single \
                     workloads cannot show a difference of a few percent on this machine. "
                );
            }
            _ => out.push_str(
                "This run had no noise control (b′); with it, the run measures how far two \
                 identical pools differ. ",
            ),
        }
        let _ = write!(
            out,
            "The median of the p50 differences is {median_p50_excess:+.1} % for (a) against \
             (b): the part that is the pool's own. Its checkout does more than bb8-redis's (a \
             failure-watch subscription, a pool-state read and a select in `Pool::get`, the \
             lifecycle checks in `is_valid` and on check-in), which is where to save."
        );
    }
    let run = &results.events;
    if run.ratio() > EVENT_P999_TARGET {
        // The event window with the worst p99.9, and what happened in it.
        let width = run.window.as_secs_f64();
        let count = |w: &crate::events::Window, kind: Event| {
            run.events
                .iter()
                .filter(|(at, e)| *e == kind && *at >= w.start_s && *at < w.start_s + width)
                .count()
        };
        let kinds = [
            (Event::Rotation, "rotations"),
            (Event::Reauth, "re-auths"),
            (Event::Recycle, "recycles"),
            (Event::Reconnect, "new connections"),
        ];
        let worst = run
            .windows
            .iter()
            .filter(|w| kinds.iter().any(|(kind, _)| count(w, *kind) > 0))
            .max_by_key(|w| w.p999);
        let _ = write!(
            out,
            "\n\n**p99.9 in event windows, missed** by {:.0} %.",
            (run.ratio() / EVENT_P999_TARGET - 1.0) * 100.0
        );
        if let Some(w) = worst {
            let happened: Vec<String> = kinds
                .iter()
                .map(|(kind, name)| (count(w, *kind), name))
                .filter(|(n, _)| *n > 0)
                .map(|(n, name)| format!("{n} {name}"))
                .collect();
            let _ = write!(
                out,
                " The worst event window ({:.2}-{:.2} s) had p99.9 {} µs and {}.",
                w.start_s,
                w.start_s + width,
                w.p999,
                happened.join(", ")
            );
            if count(w, Event::Reconnect) > 0 {
                out.push_str(
                    " After a rest, the connections past their deadline are reopened on \
                     checkout, at most 4 at a time, so the first operations wait for TLS and \
                     authentication; opening the replacement in the background when an idle \
                     connection reaches its deadline would take that off the callers.",
                );
            } else {
                let _ = write!(
                    out,
                    " With {} event windows against {} others, a few slow operations decide \
                     p99.9; a longer run measures it better.",
                    run.event_windows,
                    run.windows.len() - run.event_windows
                );
            }
        }
    }
    if sign_ns > SIGN_TARGET_NS {
        let _ = write!(
            out,
            "\n\n**Signing, missed** by {:.0} % in this run; `scripts/bench-signing.sh` \
             measures it alone (criterion). Tokens are signed once per rotation, never on a \
             connection's path.",
            (sign_ns / SIGN_TARGET_NS - 1.0) * 100.0
        );
    }
    out.push('\n');
    out
}

/// Where the scale section starts and ends in `benchmarks.md`, so that each
/// run (`--report` and `--scale --report`) keeps the other's part.
pub(crate) const SCALE_START: &str = "<!-- scale: written by --scale -->";
pub(crate) const SCALE_END: &str = "<!-- end of scale -->";

/// The scale section: the table, the confirmation and the chart.
pub(crate) fn scale_section(
    rows: &[crate::scale::Row],
    confirmed: (u64, f64, usize, Duration),
) -> String {
    let (counted, expected, n, span) = confirmed;
    let mut out = format!(
        "{SCALE_START}\n## Cost as the work grows\n\n\
         Generated with the rest of this report, or alone by `cargo run --release --example \
         bench -- --scale --report docs`. Each set \
         of connections is opened by a child process of its own (all at once: a pool with every \
         connection checked out together, or shared handles of at most 50 connections each, \
         built together, sharing one token refresher), against the local stack in the parent. \
         Memory and tasks are what the set added to the child (resident set size from \
         `/proc/self/status`, which includes what the allocator keeps after the TLS handshakes; \
         tokio's live tasks), divided by its connections; the pool's figures include its reaper \
         task. Sets above 50 shared-handle connections are several handles, each with its own \
         connector, and a handle opens its connections one after another, so the shared \
         handle's set-up is not paced by a gate as the pool's is (4 attempts at once). The \
         stack's TLS and token checks share the 2 cores with the client, so set-up times are \
         this machine's, not a network's. Standalone connections (cluster mode adds a \
         connection per node and an upkeep task per pooled connection). 1,000 connections need \
         about 3,000 file descriptors in the parent (the stack's two per connection).\n\n\
         Authentications per hour are computed from the default lifecycle for connections in \
         use: each re-authenticates once per re-auth interval, drawn between 9 and 10 hours, \
         so it never reaches its deadline (a pooled connection re-authenticates with its \
         borrower's next command; an idle one is closed by the pool's idle timeout or at its \
         deadline instead, and a new one authenticates when it is needed). Credential calls \
         are per token refresher (each pool or shared handle makes one unless given one; here \
         every set shares one), whatever the number of connections. A refresher signs every \
         10 minutes and, with the default chain or an `SdkConfig`'s provider, reuses \
         credentials while they have at least 20 minutes left: 1-hour credentials are fetched \
         again at the rotation that finds less, every {:.0} minutes, {:.1} times an hour \
         (6-hour credentials: {:.2} an hour). An injected provider is asked at every rotation \
         (6 an hour). `tests/credential_outage.rs` counts the requests at the stand-in's \
         container endpoint.\n\n\
         | connections | kind | memory per connection | tasks per connection | set-up of the whole \
         set | IAM authentications per hour | credential calls per hour (1-hour credentials) \
         |\n|---|---|---|---|---|---|---|\n",
        crate::scale::credential_interval(Duration::from_secs(3600)).as_secs_f64() / 60.0,
        crate::scale::credential_calls_per_hour(Duration::from_secs(3600)),
        crate::scale::credential_calls_per_hour(Duration::from_secs(6 * 3600)),
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} KiB | {:.2} | {:.1} ms | {:.1} | {:.1} |",
            r.n,
            if r.kind == "pool" {
                "pool"
            } else {
                "shared handle"
            },
            r.rss_kib_per_connection,
            r.tasks_per_connection,
            r.setup_ms,
            r.auths_per_hour,
            crate::scale::credential_calls_per_hour(Duration::from_secs(3600))
        );
    }
    if let (Some(pool), Some(shared)) = (
        crate::scale::marginal_kib(rows, "pool"),
        crate::scale::marginal_kib(rows, "shared"),
    ) {
        let _ = write!(
            out,
            "\nFrom 100 to 1,000 connections each added {pool:.1} KiB (pool) and {shared:.1} KiB \
             (shared handle): the cost of one more connection, without what the first ones cost \
             once (the TLS configuration, the runtime's and the allocator's first buffers), \
             which dominates the small sets. A pooled connection has one task (the one driving \
             its socket), a shared-handle connection two (its socket's, and the one that \
             re-authenticates and replaces it).\n"
        );
    }
    let _ = write!(
        out,
        "\nConfirmed at scaled time: {n} shared-handle connections opened together, with the \
         re-auth point at 4 s (each picks 3.6-4 s after the last), for {} s: the stack counted \
         {counted} re-authentications, the schedule gives {expected:.1} (the run fails beyond \
         10 % apart).\n\n![cost as the work grows](benchmarks-scale.png)\n\n{SCALE_END}\n",
        span.as_secs()
    );
    out
}

/// The `benchmarks.md` in `dir` written before, or nothing if there is none
/// yet (any other error stops the run: the report would lose a section).
pub(crate) fn existing(dir: &std::path::Path) -> String {
    match std::fs::read_to_string(dir.join("benchmarks.md")) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => panic!("reading {}: {err}", dir.join("benchmarks.md").display()),
    }
}

/// `markdown` with the scale section of `existing` (a `benchmarks.md`
/// written before) put back, or with `section` put in its place.
///
/// Panics if a text has its markers other than once each, in order: the
/// section would be lost or doubled.
pub(crate) fn with_scale(markdown: &str, existing: &str, section: Option<&str>) -> String {
    let cut = |text: &str| -> Option<(usize, usize)> {
        let starts = text.matches(SCALE_START).count();
        let ends = text.matches(SCALE_END).count();
        if starts == 0 && ends == 0 {
            return None;
        }
        let start = text.find(SCALE_START);
        let end = text.find(SCALE_END);
        match (starts, ends, start, end) {
            (1, 1, Some(start), Some(end)) if start < end => Some((start, end + SCALE_END.len())),
            _ => panic!(
                "benchmarks.md has its scale markers ({SCALE_START} ... {SCALE_END}) mangled: \
                 fix or remove them by hand"
            ),
        }
    };
    let kept = section
        .map(str::to_owned)
        .or_else(|| cut(existing).map(|(s, e)| existing[s..e].to_owned() + "\n"));
    let base = match cut(markdown) {
        Some((s, e)) => format!("{}{}", &markdown[..s], &markdown[e..]),
        None => markdown.to_owned(),
    };
    match kept {
        Some(section) => format!("{}\n{section}", base.trim_end()),
        None => base,
    }
}
