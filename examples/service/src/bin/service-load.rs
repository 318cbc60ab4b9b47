//! `service-load`: drives the example service with `--concurrency` workers
//! doing the session, blacklist and one-time-code flows for `--duration`
//! seconds, checking every answer; then reads `/health/redis`, `/metrics`
//! and (with `--admin-url` or `LOCALSTACK_ADMIN_URL`) the local stack's
//! counters, and prints one JSON line: `requests`, `errors`, `p50_us`,
//! `p99_us`, `token_rotations`, `reauths`, `replacements`,
//! `forced_disconnects`, `auth_refusals`, `health_status`, `duration_s`,
//! `concurrency`. Exit status 1 if any answer was wrong or the health check
//! did not answer 200.
//!
//! ```text
//! service-load --url http://127.0.0.1:8080 --duration 40 --concurrency 8
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use elasticache_iam_service::client::{Client, metric_sum, now, round};
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Drive the example service's flows and report")]
struct Args {
    /// The service, `http://host:port`.
    #[arg(long)]
    url: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 40)]
    duration: u64,
    /// Workers, each running the flows one request at a time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// The local stack's admin endpoint, for its counters.
    #[arg(long, env = "LOCALSTACK_ADMIN_URL")]
    admin_url: Option<String>,
}

/// Wrong answers printed, at most.
const SHOWN: u64 = 5;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let client = Client::new(args.url.trim_end_matches('/'));
    let errors = Arc::new(AtomicU64::new(0));
    let started = now();
    let until = started + Duration::from_secs(args.duration);
    let tag: u32 = rand::rng().random();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|worker| {
            let (client, errors) = (client.clone(), Arc::clone(&errors));
            tokio::spawn(async move {
                let mut latency =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let user = format!("load-{tag:08x}-{worker}");
                let mut record = |took: Duration| {
                    latency.saturating_record(took.as_micros() as u64);
                };
                let mut n = 0;
                while now() < until {
                    n += 1;
                    if let Err(failure) = round(&client, &user, n, &mut record).await
                        && errors.fetch_add(1, Ordering::Relaxed) < SHOWN
                    {
                        eprintln!("error: worker {worker}, round {n}: {failure}");
                    }
                }
                latency
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    for worker in workers {
        match worker.await {
            Ok(each) => latency.add(each).expect("same bounds"),
            Err(err) => {
                eprintln!("error: a worker failed: {err}");
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let elapsed = started.elapsed();

    let health_status = match client
        .call(reqwest::Method::GET, "/health/redis", None)
        .await
    {
        Ok(answer) => answer.status.as_u16(),
        Err(failure) => {
            eprintln!("error: /health/redis: {failure}");
            0
        }
    };
    let metrics = match client.text("/metrics").await {
        Ok((status, text)) if status.is_success() => text,
        Ok((status, _)) => {
            eprintln!("error: /metrics answered {status}");
            String::new()
        }
        Err(failure) => {
            eprintln!("error: /metrics: {failure}");
            String::new()
        }
    };
    let stand_in = match &args.admin_url {
        Some(url) => stats(url).await,
        None => Value::Null,
    };
    let auth_refusals: u64 = stand_in["auth_failed"].as_object().map_or(0, |by_reason| {
        by_reason.values().filter_map(Value::as_u64).sum()
    });
    let errors = errors.load(Ordering::Relaxed);
    let summary = json!({
        "requests": latency.len(),
        "errors": errors,
        "p50_us": latency.value_at_quantile(0.50),
        "p99_us": latency.value_at_quantile(0.99),
        "token_rotations": metric_sum(&metrics, "elasticache_iam_token_rotations", &[]) as u64,
        "reauths": metric_sum(&metrics, "elasticache_iam_reauths", &["outcome=\"ok\""]) as u64,
        "replacements": metric_sum(&metrics, "elasticache_iam_connection_replacements", &[]) as u64,
        "forced_disconnects": stand_in["forced_disconnects"].as_u64(),
        "auth_refusals": stand_in.get("auth_failed").map(|_| auth_refusals),
        "health_status": health_status,
        "duration_s": elapsed.as_secs_f64(),
        "concurrency": args.concurrency,
    });
    println!("{summary}");
    if errors == 0 && health_status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The local stack's counters (`GET {admin}/stats`), or `null`.
async fn stats(admin: &str) -> Value {
    let url = format!("{}/stats", admin.trim_end_matches('/'));
    let fetched = async {
        reqwest::get(&url)
            .await?
            .error_for_status()?
            .json::<Value>()
            .await
    };
    match fetched.await {
        Ok(stats) => stats,
        Err(err) => {
            eprintln!("error: {url}: {err}");
            Value::Null
        }
    }
}
