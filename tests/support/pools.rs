//! Pools against the local stack, and a load that checks every reply.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use aws_credential_types::Credentials;
use elasticache_iam::{ConnectionConfig, ConnectionConfigBuilder, Pool, PoolBuilder};
use elasticache_localstack::{
    Mode, STATIC_ACCESS_KEY_ID, STATIC_SECRET_ACCESS_KEY, Stack, StackConfig,
};
use redis::AsyncCommands;

/// Now, for tests that run in real time against a real server (tokio's
/// paused clock and real sockets do not mix).
#[allow(
    clippy::disallowed_methods,
    reason = "real-time load against a real server"
)]
pub fn real_now() -> Instant {
    Instant::now()
}

pub async fn start(config: StackConfig) -> Stack {
    Stack::start(config)
        .await
        .unwrap_or_else(|e| panic!("local stack: {e} (run scripts/install-servers.sh)"))
}

pub fn static_credentials() -> Credentials {
    Credentials::new(
        STATIC_ACCESS_KEY_ID,
        STATIC_SECRET_ACCESS_KEY,
        None,
        None,
        "test",
    )
}

/// `rediss://` to the stack's front, trusting its CA, IAM for `stack`'s cache.
pub fn iam_config(stack: &Stack) -> ConnectionConfigBuilder {
    let config = ConnectionConfig::builder()
        .url(&format!("rediss://127.0.0.1:{}", stack.endpoint().port()))
        .ca_file(stack.ca_file())
        .user_id(stack.user_id())
        .region(stack.region());
    match stack.mode() {
        Mode::Serverless => config.iam_serverless_cache(stack.cache_name()),
        Mode::ReplicationGroup => config.iam_replication_group(stack.cache_name()),
    }
}

/// A pool builder for `config`, signing with the stack's static credentials.
pub fn iam_pool(config: ConnectionConfig) -> PoolBuilder {
    Pool::builder(config).credentials_provider(static_credentials())
}

/// The scaled 12-hour rule: the stack cuts at 8 s, tokens rotate every 2 s,
/// connections re-authenticate after 3.6-4 s and are replaced by 5.7-6 s.
pub fn scaled(config: ConnectionConfigBuilder) -> ConnectionConfig {
    config
        .token_refresh_interval(Duration::from_secs(2))
        .reauth_after(Duration::from_secs(4))
        .max_connection_age(Duration::from_secs(6))
        .build()
        .unwrap()
}

pub const SCALED_MAX_AUTH_AGE: Duration = Duration::from_secs(8);

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: usize,
    /// (seconds since the start, error text)
    pub failures: Vec<(f64, String)>,
}

/// How many workers run at a given second of the load.
pub type Shape = fn(f64) -> usize;

/// `workers` tasks, each checking out a connection, doing `SET` then `GET`
/// of its own key and verifying the value, then pausing 5 ms; `shape` says
/// how many of them are active at each moment. Stops when `stop` is set or
/// after `span`.
pub async fn load(
    pool: &Pool,
    workers: usize,
    span: Duration,
    shape: Shape,
    stop: Arc<AtomicBool>,
) -> LoadReport {
    let started = real_now();
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let pool = pool.clone();
        let ok = Arc::clone(&ok);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0u64;
            while started.elapsed() < span && !stop.load(Ordering::Relaxed) {
                let at = started.elapsed().as_secs_f64();
                if worker >= shape(at) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                n += 1;
                let key = format!("load:{worker}");
                let value = format!("{worker}:{n}");
                let result: Result<(), String> = async {
                    let mut conn = pool.get().await.map_err(|e| format!("get: {e}"))?;
                    let () = conn
                        .set(&key, &value)
                        .await
                        .map_err(|e| format!("SET: {e}"))?;
                    let read: String = conn.get(&key).await.map_err(|e| format!("GET: {e}"))?;
                    if read != value {
                        return Err(format!("GET {key}: {read:?}, expected {value:?}"));
                    }
                    Ok(())
                }
                .await;
                match result {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push((at, e)),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        }));
    }
    let mut report = LoadReport::default();
    for task in tasks {
        report.failures.extend(task.await.unwrap());
    }
    report.ok = ok.load(Ordering::Relaxed);
    report
        .failures
        .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    report
}

/// All workers active all the time.
pub fn steady(_: f64) -> usize {
    usize::MAX
}
