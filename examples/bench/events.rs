//! Latency over time while the IAM pool rotates tokens, re-authenticates and
//! recycles connections every few seconds: windows with those events against
//! windows without.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use elasticache_iam::Pool;

use crate::clients::Client;
use crate::now;
use crate::workload::{Op, Workload};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Rotation,
    Reauth,
    /// A connection closed at its deadline.
    Recycle,
    /// A connection opened (after the first ones), replacing a recycled one.
    Reconnect,
}

/// Quantiles of one window, in microseconds.
pub(crate) struct Window {
    pub(crate) start_s: f64,
    pub(crate) ops: usize,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
}

pub(crate) struct EventRun {
    pub(crate) window: Duration,
    pub(crate) workload: Workload,
    pub(crate) windows: Vec<Window>,
    pub(crate) events: Vec<(f64, Event)>,
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    /// p99.9 over all operations in windows with an event, and without.
    pub(crate) event_p999_us: u64,
    pub(crate) steady_p999_us: u64,
    pub(crate) event_windows: usize,
}

impl EventRun {
    pub(crate) fn ratio(&self) -> f64 {
        self.event_p999_us as f64 / self.steady_p999_us.max(1) as f64
    }

    pub(crate) fn count(&self, kind: Event) -> usize {
        self.events.iter().filter(|(_, e)| *e == kind).count()
    }

    /// Rotations, re-auths, recycles and new connections.
    pub(crate) fn tally(&self) -> [usize; 4] {
        [
            Event::Rotation,
            Event::Reauth,
            Event::Recycle,
            Event::Reconnect,
        ]
        .map(|kind| self.count(kind))
    }
}

fn quantile(sorted: &[u32], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    u64::from(sorted[rank - 1])
}

/// The workers run for 6 s and rest for 7 s, in turn, so that the
/// connections sit idle past their deadline, are closed by the pool, and are
/// replaced when the load returns. Under use a connection is re-authenticated
/// before its deadline and never recycled (the pool hands its connections out
/// in turn, so while any load runs, all of them are used).
fn active(at: Duration) -> bool {
    at.as_secs_f64() % 13.0 < 6.0
}

/// GET 64 B from `concurrency` workers on `pool` for `span` (in tides, see
/// [`active`]), every operation's latency kept with its completion time; the
/// pool's events polled every 2 ms.
pub(crate) async fn run(
    pool: Pool,
    concurrency: usize,
    span: Duration,
    window: Duration,
) -> EventRun {
    let workload = Workload {
        op: Op::Get,
        size: 64,
        concurrency,
    };
    let client = Arc::new(Client::Iam(pool.clone()));
    // Open every connection first: the run starts from a warm pool.
    crate::workload::run(
        &client,
        workload,
        Duration::ZERO,
        Duration::from_millis(300),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (client, stop) = (client.clone(), stop.clone());
        let cmd = redis::cmd("GET").arg(Workload::key(worker, 64)).clone();
        workers.push(tokio::spawn(async move {
            // (completed at, ms since start; latency, µs)
            let mut samples: Vec<(u32, u32)> = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if !active(started.elapsed()) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let op_started = now();
                match client.run(&cmd).await {
                    Ok(()) => samples.push((
                        started.elapsed().as_millis() as u32,
                        op_started.elapsed().as_micros() as u32,
                    )),
                    Err(_) => errors += 1,
                }
            }
            (samples, errors)
        }));
    }
    let monitor = {
        let (pool, stop) = (pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut events = Vec::new();
            let rotations = || pool.refresher().map_or(0, |r| r.status().rotations);
            let (mut rotated, mut counts) = (rotations(), pool.counts());
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let at = started.elapsed().as_secs_f64();
                let (r, c) = (rotations(), pool.counts());
                for _ in rotated..r {
                    events.push((at, Event::Rotation));
                }
                for _ in counts.reauths..c.reauths {
                    events.push((at, Event::Reauth));
                }
                for _ in counts.recycles..c.recycles {
                    events.push((at, Event::Recycle));
                }
                for _ in counts.connections_opened..c.connections_opened {
                    events.push((at, Event::Reconnect));
                }
                (rotated, counts) = (r, c);
            }
            events
        })
    };
    tokio::time::sleep(span).await;
    stop.store(true, Ordering::Relaxed);
    let events = monitor.await.expect("monitor");

    let width_ms = window.as_millis() as u32;
    let count = span.as_millis().div_ceil(u128::from(width_ms)) as usize + 1;
    let mut per_window: Vec<Vec<u32>> = vec![Vec::new(); count];
    let mut errors = 0;
    for worker in workers {
        let (samples, failed) = worker.await.expect("worker");
        errors += failed;
        for (at_ms, latency) in samples {
            let index = ((at_ms / width_ms) as usize).min(count - 1);
            per_window[index].push(latency);
        }
    }
    let flagged: Vec<bool> = (0..count)
        .map(|i| {
            let (from, to) = (
                i as f64 * window.as_secs_f64(),
                (i + 1) as f64 * window.as_secs_f64(),
            );
            events.iter().any(|(at, _)| *at >= from && *at < to)
        })
        .collect();
    let (mut in_events, mut steady) = (Vec::new(), Vec::new());
    let mut windows = Vec::new();
    let mut ops = 0;
    for (i, mut latencies) in per_window.into_iter().enumerate() {
        latencies.sort_unstable();
        ops += latencies.len() as u64;
        windows.push(Window {
            start_s: i as f64 * window.as_secs_f64(),
            ops: latencies.len(),
            p50: quantile(&latencies, 0.50),
            p99: quantile(&latencies, 0.99),
            p999: quantile(&latencies, 0.999),
        });
        if flagged[i] {
            in_events.extend(latencies);
        } else {
            steady.extend(latencies);
        }
    }
    in_events.sort_unstable();
    steady.sort_unstable();
    EventRun {
        window,
        workload,
        event_windows: flagged.iter().filter(|f| **f).count(),
        windows,
        events,
        ops,
        errors,
        event_p999_us: quantile(&in_events, 0.999),
        steady_p999_us: quantile(&steady, 0.999),
    }
}
