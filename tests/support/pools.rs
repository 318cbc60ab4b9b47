//! Pools against the local stack, and a load that checks every reply.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use aws_credential_types::Credentials;
use elasticache_iam::{ConnectionConfig, ConnectionConfigBuilder, Pool, PoolBuilder};
use elasticache_localstack::{
    KnownCredentials, Mode, STATIC_ACCESS_KEY_ID, STATIC_PRINCIPAL, STATIC_SECRET_ACCESS_KEY,
    Stack, StackConfig,
};

use super::markers::marker_credentials;
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
        .url(format!("rediss://127.0.0.1:{}", stack.endpoint().port()))
        .ca_file(stack.ca_file())
        .user_id(stack.user_id())
        .region(stack.region());
    match stack.mode() {
        Mode::Serverless => config.serverless_cache(stack.cache_name()),
        Mode::ReplicationGroup => config.replication_group(stack.cache_name()),
        Mode::MemoryDb => config.memorydb_cluster(stack.cache_name()),
    }
}

/// A pool builder for `config`, signing with the marker credentials (see
/// `markers`), which the stack is told to accept (until 2100).
pub fn marker_pool(stack: &Stack, config: ConnectionConfig) -> PoolBuilder {
    let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let credentials = marker_credentials(Some(expiry));
    stack.registry().insert(KnownCredentials {
        access_key_id: credentials.access_key_id().to_owned(),
        secret_access_key: credentials.secret_access_key().to_owned(),
        session_token: credentials.session_token().map(str::to_owned),
        expires: Some(expiry),
        principal: STATIC_PRINCIPAL.to_owned(),
    });
    Pool::builder(config).credentials_provider(credentials)
}

/// A stack of `config` under the scaled 12-hour rule, and a pool of at most
/// `max_size` connections with the scaled lifecycle (see [`scaled`]).
pub async fn scaled_stack_and_pool(config: StackConfig, max_size: u32) -> (Stack, Pool) {
    let stack = start(config.max_auth_age(SCALED_MAX_AUTH_AGE)).await;
    let pool = iam_pool(scaled(iam_config(&stack)))
        .max_size(max_size)
        .build()
        .await
        .unwrap();
    (stack, pool)
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
