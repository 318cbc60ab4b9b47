//! Soak under the scaled 12-hour rule: the stack cuts connections 8 s after
//! their last authentication; tokens rotate every 2 s, connections
//! re-authenticate after 4 s and are replaced by 6 s. 32 workers for a
//! warm-up of 45 s (or a quarter of the measured time if longer), then
//! `SOAK_SECS` measured seconds (60 by default; the long form is
//! `SOAK_SECS=600 cargo test --test soak -- --nocapture`).
//!
//! Zero failed commands, zero forced disconnects, resident memory growing
//! less than 5 % from the start to the end of the measured part, and the
//! number of live tokio tasks without an upward trend.

#![cfg(target_os = "linux")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use elasticache_localstack::StackConfig;
use support::pools::{load, real_now, scaled_stack_and_pool, steady};

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaled_rule_soak() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    // Resident memory settles about 45 s after the start (allocator arenas,
    // connection buffers: 28.9 MB at 1 s, 31.5 MB from 45 s on, flat after
    // that in a 10-minute run), so the warm-up is at least that long; the
    // measured part comes after it.
    let warmup = Duration::from_secs((secs / 4).max(45));
    let span = warmup + Duration::from_secs(secs);
    let (stack, pool) = scaled_stack_and_pool(StackConfig::serverless("soak-cache"), 32).await;

    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let pool = pool.clone();
        let stop = Arc::clone(&stop);
        async move { load(&pool, 32, span, steady, stop).await }
    });
    // (seconds, RSS KiB, live tasks), once a second.
    let started = real_now();
    let mut samples = Vec::new();
    let metrics = tokio::runtime::Handle::current().metrics();
    while !running.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((
            started.elapsed().as_secs_f64(),
            rss_kib(),
            metrics.num_alive_tasks() as u64,
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();
    let health = pool.health().await;
    let stats = stack.stats();

    let after: Vec<_> = samples
        .iter()
        .filter(|s| s.0 >= warmup.as_secs_f64() && s.0 <= span.as_secs_f64())
        .collect();
    let series: Vec<String> = samples
        .iter()
        .step_by(5)
        .map(|s| format!("{:.0}s {} KiB {} tasks", s.0, s.1, s.2))
        .collect();
    println!("every 5 s: {}", series.join(", "));
    assert!(after.len() >= 10, "{samples:?}");
    let third = after.len() / 3;
    let rss: Vec<u64> = after.iter().map(|s| s.1).collect();
    let tasks: Vec<u64> = after.iter().map(|s| s.2).collect();
    let (rss_start, rss_end) = (mean(&rss[..third]), mean(&rss[rss.len() - third..]));
    let (tasks_start, tasks_end) = (mean(&tasks[..third]), mean(&tasks[tasks.len() - third..]));
    let growth = rss_end / rss_start - 1.0;
    println!(
        "{}s warm-up + {secs} s, 32 workers: {} ok, {} failed; rotations {:?}, counts {:?}; stack {stats:?}\n\
         after warm-up: RSS {rss_start:.0} -> {rss_end:.0} KiB ({:+.2} %), min {} max {} KiB; \
         live tasks {tasks_start:.1} -> {tasks_end:.1}, min {} max {}",
        warmup.as_secs(),
        report.ok,
        report.failures.len(),
        health.token.as_ref().map(|t| t.rotations),
        health.counts,
        growth * 100.0,
        rss.iter().min().unwrap(),
        rss.iter().max().unwrap(),
        tasks.iter().min().unwrap(),
        tasks.iter().max().unwrap(),
    );

    assert!(
        report.failures.is_empty(),
        "{:?}",
        &report.failures[..report.failures.len().min(10)]
    );
    assert!(report.ok as u64 > span.as_secs() * 100, "{}", report.ok);
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
    // The lifecycle really ran: re-auths and rotations throughout.
    assert!(health.counts.reauths > 0, "{:?}", health.counts);
    assert!(
        growth < 0.05,
        "resident memory grew {:.2} %",
        growth * 100.0
    );
    // One task per connection and per worker, give or take the few that
    // open and close connections at any moment. The count dips while
    // connections are replaced (a closed one's tasks end before its
    // successor's start), so the means move with where the dips fall
    // (185 -> 190 and 190 -> 186 in two runs of the same code); a leak
    // raises the ceiling, which is what is compared.
    let ceiling = |part: &[u64]| part.iter().copied().max().unwrap_or(0);
    let (ceiling_start, ceiling_end) = (
        ceiling(&tasks[..third]),
        ceiling(&tasks[tasks.len() - third..]),
    );
    assert!(
        ceiling_end <= ceiling_start + 4,
        "live tasks at most {ceiling_start} -> {ceiling_end} (means {tasks_start:.1} -> \
         {tasks_end:.1})"
    );
}
