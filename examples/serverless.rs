//! A service-style program for an ElastiCache Serverless cache with IAM
//! authentication, configured only from the environment.
//!
//! It checks its settings and says what is missing or wrong, one line per
//! problem; runs PING, SET with a TTL, GET and DEL; prints the pool's health
//! report as JSON; then, with `--duration SECS`, runs `--concurrency N`
//! workers doing SET / GET on their own keys and checking every value read,
//! until the time is up or Ctrl-C. It then stops the workers, drains the pool,
//! and prints a one-line JSON summary as the last line on stdout:
//! `ops`, `errors`, `p50_us`, `p99_us`, `max_us`, `token_rotations`,
//! `reauths`, `recycles` (and a few more).
//!
//! ```text
//! USE_IAM_AUTH=true REDIS_URL=rediss://my-cache-abc123.serverless.use1.cache.amazonaws.com:6379 \
//! ELASTICACHE_SERVERLESS_CACHE=my-cache ELASTICACHE_USER_ID=iam-user-01 AWS_REGION=us-east-1 \
//!   cargo run --example serverless -- --duration 60 --concurrency 8
//! ```
//!
//! Credentials come from the AWS default chain (environment, profile, web
//! identity, ECS / EKS Pod Identity container endpoint, EC2 instance role).
//! Exit status: 0 success, 1 a runtime failure (credentials, authentication,
//! network, failed commands), 2 a configuration problem.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use elasticache_iam::{ConnectionConfig, Error, ErrorKind, Pool, display_chain};
use hdrhistogram::Histogram;
use redis::AsyncCommands;
use serde_json::json;

#[derive(Parser)]
#[command(about = "Exercise an ElastiCache Serverless cache through an IAM-authenticated pool")]
struct Args {
    /// Run the load for this many seconds (none: only the first round).
    #[arg(long)]
    duration: Option<u64>,
    /// Load workers.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();

    // Every problem with the settings at once, one line each: the
    // library's, and this program's own requirement of IAM.
    let iam = require_iam(std::env::var("USE_IAM_AUTH").ok());
    let config = ConnectionConfig::builder().from_env().use_iam(true).build();
    let problems: Vec<String> = iam
        .into_iter()
        .chain(config.as_ref().err().into_iter().flat_map(|err| {
            let each = match err.problems() {
                [] => std::slice::from_ref(err),
                each => each,
            };
            each.iter().map(diagnose)
        }))
        .collect();
    if !problems.is_empty() {
        for problem in problems {
            eprintln!("error: {problem}");
        }
        return ExitCode::from(2);
    }
    let Ok(config) = config else {
        return ExitCode::from(2);
    };
    let pool = match Pool::builder(config)
        .max_size(args.concurrency)
        .build()
        .await
    {
        Ok(pool) => pool,
        Err(err) => {
            eprintln!("error: {}", diagnose(&err));
            return ExitCode::from(if err.kind() == ErrorKind::Configuration {
                2
            } else {
                1
            });
        }
    };

    if let Err(err) = first_round(&pool).await {
        eprintln!("error: {err}");
        return ExitCode::from(1);
    }
    println!(
        "{}",
        serde_json::to_string(&pool.health().await).unwrap_or_default()
    );

    let load = match args.duration {
        Some(secs) => run_load(&pool, Duration::from_secs(secs), args.concurrency).await,
        None => Load::default(),
    };
    let health = pool.health().await;
    // Graceful shutdown: the workers have stopped; dropping the last handle
    // closes the pooled connections.
    drop(pool);

    let summary = json!({
        "ops": load.ops,
        "errors": load.errors,
        "p50_us": load.latency.value_at_quantile(0.50),
        "p99_us": load.latency.value_at_quantile(0.99),
        "max_us": load.latency.max(),
        "token_rotations": health.token.as_ref().map_or(0, |t| t.rotations),
        "reauths": health.counts.reauths,
        "recycles": health.counts.recycles,
        "connections_opened": health.counts.connections_opened,
        "duration_s": load.elapsed.as_secs_f64(),
        "interrupted": load.interrupted,
    });
    println!("{summary}");
    if load.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// This program authenticates with IAM: `USE_IAM_AUTH` must say so. (A
/// value that is not a boolean at all is the library's to report.)
fn require_iam(value: Option<String>) -> Option<String> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Some(
            "USE_IAM_AUTH is not set: it must be true, this program authenticates with IAM"
                .to_owned(),
        ),
        Some(v) if ["false", "0", "no", "off"].contains(&v.to_ascii_lowercase().as_str()) => Some(
            format!("USE_IAM_AUTH={v:?}: it must be true, this program authenticates with IAM"),
        ),
        Some(_) => None,
    }
}

/// A start-up failure, with what to do about it.
fn diagnose(err: &Error) -> String {
    let text = display_chain(err);
    match err.kind() {
        ErrorKind::Credentials => format!(
            "no AWS credentials: {text}. Give the task or pod a role (ECS task role, EKS Pod \
             Identity or IRSA), or set AWS_PROFILE / AWS_ACCESS_KEY_ID"
        ),
        ErrorKind::Io => format!(
            "{text}. Is the endpoint right (REDIS_URL / REDIS_HOST), and can this network reach \
             it?"
        ),
        // Name the variable (or setting) at fault, unless the message does.
        ErrorKind::Configuration => match err.parameter() {
            Some(parameter) if !text.contains(parameter) => format!("{parameter}: {text}"),
            _ => text,
        },
        _ => text,
    }
}

/// PING, SET with a TTL, GET (checked), DEL.
async fn first_round(pool: &Pool) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| display_chain(&e))?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut *conn)
        .await
        .map_err(|e| format!("PING: {e}"))?;
    let key = "elasticache-iam:example";
    let () = conn
        .set_ex(key, "hello", 60)
        .await
        .map_err(|e| format!("SET: {e}"))?;
    let value: String = conn.get(key).await.map_err(|e| format!("GET: {e}"))?;
    if value != "hello" {
        return Err(format!("GET {key} returned {value:?}, not \"hello\""));
    }
    let deleted: u32 = conn.del(key).await.map_err(|e| format!("DEL: {e}"))?;
    eprintln!("PING -> {pong}; SET/GET/DEL {key} ok ({deleted} deleted)");
    Ok(())
}

struct Load {
    ops: u64,
    errors: u64,
    latency: Histogram<u64>,
    elapsed: Duration,
    interrupted: bool,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            ops: 0,
            errors: 0,
            latency: new_histogram(),
            elapsed: Duration::ZERO,
            interrupted: false,
        }
    }
}

/// `workers` tasks doing SET then GET of their own keys, checking each value,
/// until `span` has passed or Ctrl-C.
async fn run_load(pool: &Pool, span: Duration, workers: u32) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let (stop, interrupted) = (Arc::clone(&stop), Arc::clone(&interrupted));
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
            }
        }
    });
    tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            tokio::time::sleep(span).await;
            stop.store(true, Ordering::Relaxed);
        }
    });
    let started = now();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            tokio::spawn(async move { worker_loop(&pool, worker, &stop).await })
        })
        .collect();
    let mut load = Load::default();
    for task in tasks {
        match task.await {
            Ok(part) => {
                load.ops += part.ops;
                load.errors += part.errors;
                let _ = load.latency.add(&part.latency);
            }
            Err(err) => {
                eprintln!("a worker ended abnormally: {err}");
                load.errors += 1;
            }
        }
    }
    load.elapsed = started.elapsed();
    load.interrupted = interrupted.load(Ordering::Relaxed);
    load
}

async fn worker_loop(pool: &Pool, worker: u32, stop: &AtomicBool) -> Load {
    let mut load = Load::default();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("elasticache-iam:example:{worker}:{}", n % 64);
        let value = format!("{worker}-{n}");
        for op in [Op::Set, Op::Get] {
            let started = now();
            let result = one_op(pool, op, &key, &value).await;
            let micros = started.elapsed().as_micros() as u64;
            load.ops += 1;
            load.latency.saturating_record(micros.max(1));
            if let Err(err) = result {
                load.errors += 1;
                if load.errors <= 3 {
                    eprintln!("worker {worker}: {err}");
                }
            }
        }
    }
    load
}

#[derive(Clone, Copy)]
enum Op {
    Set,
    Get,
}

async fn one_op(pool: &Pool, op: Op, key: &str, value: &str) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| display_chain(&e))?;
    match op {
        Op::Set => conn
            .set_ex(key, value, 300)
            .await
            .map_err(|e| format!("SET {key}: {e}")),
        Op::Get => {
            let read: Option<String> =
                conn.get(key).await.map_err(|e| format!("GET {key}: {e}"))?;
            match read {
                Some(read) if read == value => Ok(()),
                other => Err(format!("GET {key} returned {other:?}, expected {value:?}")),
            }
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 us to 60 s, 3 significant digits; longer values saturate.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The example measures latency and its own run time on the real clock.
#[allow(
    clippy::disallowed_methods,
    reason = "latency is measured in real time"
)]
fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_is_required() {
        assert!(require_iam(None).is_some());
        assert!(require_iam(Some(" ".into())).is_some());
        assert!(require_iam(Some("false".into())).is_some());
        assert!(require_iam(Some("true".into())).is_none());
        // Not a boolean: the library names it.
        assert!(require_iam(Some("sure".into())).is_none());
    }
}
