//! One workload (GET or SET, a value size, a number of workers) against one
//! client for a fixed time, each operation timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::clients::Client;
use crate::now;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Set,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Workload {
    pub(crate) op: Op,
    pub(crate) size: usize,
    pub(crate) concurrency: usize,
}

impl Workload {
    pub(crate) fn name(&self) -> String {
        let op = match self.op {
            Op::Get => "GET",
            Op::Set => "SET",
        };
        let size = if self.size >= 1024 {
            format!("{} KiB", self.size / 1024)
        } else {
            format!("{} B", self.size)
        };
        format!("{op} {size} x{}", self.concurrency)
    }

    /// Its id for `--workload`: `get-64b-x16`, `set-1kib-x64`, ...
    pub(crate) fn id(&self) -> String {
        let op = match self.op {
            Op::Get => "get",
            Op::Set => "set",
        };
        let size = if self.size >= 1024 {
            format!("{}kib", self.size / 1024)
        } else {
            format!("{}b", self.size)
        };
        format!("{op}-{size}-x{}", self.concurrency)
    }

    /// Quick mode's: GET of 64 B and SET of 1 KiB, from 1, 16 and 64
    /// workers (the smallest read and the largest write).
    pub(crate) fn quick() -> Vec<Workload> {
        Self::all()
            .into_iter()
            .filter(|w| (w.op == Op::Get && w.size == 64) || (w.op == Op::Set && w.size == 1024))
            .collect()
    }

    /// Every combination the benchmark runs.
    pub(crate) fn all() -> Vec<Workload> {
        let mut all = Vec::new();
        for op in [Op::Get, Op::Set] {
            for size in [64, 1024] {
                for concurrency in [1, 16, 64] {
                    all.push(Workload {
                        op,
                        size,
                        concurrency,
                    });
                }
            }
        }
        all
    }

    /// Worker `worker`'s key for values of `size` bytes.
    pub(crate) fn key(worker: usize, size: usize) -> String {
        format!("bench:{size}:{worker}")
    }

    fn command(&self, worker: usize) -> redis::Cmd {
        match self.op {
            Op::Get => redis::cmd("GET").arg(Self::key(worker, self.size)).clone(),
            Op::Set => redis::cmd("SET")
                .arg(Self::key(worker, self.size))
                .arg(vec![b'x'; self.size])
                .clone(),
        }
    }
}

/// Latencies in microseconds, 1 µs to 60 s, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// What one run measured.
pub(crate) struct Sample {
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) latency: Histogram<u64>,
    pub(crate) elapsed: Duration,
}

impl Sample {
    pub(crate) fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// `workload` against `client`: `warmup` untimed, then `span` timed.
pub(crate) async fn run(
    client: &Arc<Client>,
    workload: Workload,
    warmup: Duration,
    span: Duration,
) -> Sample {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..workload.concurrency {
        let (client, measuring, stop) = (client.clone(), measuring.clone(), stop.clone());
        let cmd = workload.command(worker);
        workers.push(tokio::spawn(async move {
            let mut latency = histogram();
            let (mut ops, mut errors) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let started = now();
                let result = client.run(&cmd).await;
                if measuring.load(Ordering::Relaxed) {
                    match result {
                        Ok(()) => {
                            ops += 1;
                            latency.saturating_record(started.elapsed().as_micros() as u64);
                        }
                        Err(_) => errors += 1,
                    }
                }
            }
            (ops, errors, latency)
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = now();
    tokio::time::sleep(span).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut sample = Sample {
        ops: 0,
        errors: 0,
        latency: histogram(),
        elapsed,
    };
    for worker in workers {
        let (ops, errors, latency) = worker.await.expect("worker");
        sample.ops += ops;
        sample.errors += errors;
        sample.latency.add(latency).expect("same bounds");
    }
    sample
}
