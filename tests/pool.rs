//! The pool against the local stack (TLS front, real token verification, a
//! real Valkey behind it): authentication counts, commands in standalone and
//! cluster mode, health, and the errors of refused and throttled
//! authentication.

mod support;

use std::time::Duration;

use elasticache_iam::{ErrorKind, Pool};
use elasticache_localstack::StackConfig;
use redis::AsyncCommands;
use support::pools::{iam_config, iam_pool, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_connections_authenticate_once_each() {
    let stack = start(StackConfig::replication_group("rg-pool-01")).await;
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config).max_size(4).build().await.unwrap();
    assert!(!pool.is_cluster());

    // Four connections at once: the one `build` opened and three more.
    let mut held = Vec::new();
    for i in 0..4 {
        let mut conn = pool.get().await.unwrap();
        let () = conn.set(format!("k{i}"), i).await.unwrap();
        held.push(conn);
    }
    for (i, conn) in held.iter_mut().enumerate() {
        let v: usize = conn.get(format!("k{i}")).await.unwrap();
        assert_eq!(v, i);
    }
    drop(held);
    // Reusing them costs nothing more.
    for _ in 0..20 {
        let mut conn = pool.get().await.unwrap();
        let _: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
    }

    let stats = stack.stats();
    assert_eq!(stats.connections_total, 4, "{stats:?}");
    assert_eq!(
        stats.auth_ok, 4,
        "one authentication per connection: {stats:?}"
    );
    assert_eq!(stats.reauth_ok, 0, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
    let health = pool.health().await;
    assert_eq!(health.counts.connections_opened, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_on_a_serverless_cache() {
    let stack = start(StackConfig::serverless("pool-serverless-01")).await;
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config).max_size(2).build().await.unwrap();
    assert!(
        pool.is_cluster(),
        "serverless caches default to cluster mode"
    );

    let after_build = stack.stats();
    let mut a = pool.get().await.unwrap();
    let mut b = pool.get().await.unwrap();
    let () = a.set_ex("cluster:a", "1", 60).await.unwrap();
    let () = b.set_ex("cluster:b", "2", 60).await.unwrap();
    let (x, y): (String, String) = (
        a.get("cluster:a").await.unwrap(),
        b.get("cluster:b").await.unwrap(),
    );
    assert_eq!((x.as_str(), y.as_str()), ("1", "2"));
    drop((a, b));

    let stats = stack.stats();
    println!("after build: {after_build:?}\nafter two connections: {stats:?}");
    // Measured and documented in the README: one cluster connection to a
    // serverless endpoint opens one TCP connection and authenticates once.
    assert_eq!(after_build.connections_total, 1, "{after_build:?}");
    assert_eq!(after_build.auth_ok, 1, "{after_build:?}");
    assert_eq!(stats.connections_total, 2, "{stats:?}");
    assert_eq!(stats.auth_ok, 2, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_pool_token_and_server() {
    let stack = start(StackConfig::serverless("pool-health-01")).await;
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config).build().await.unwrap();
    let health = pool.health().await;
    assert!(health.ok, "{health:?}");
    assert_eq!(health.auth_mode, "iam");
    assert_eq!(health.mode, "cluster");
    assert!(health.ping_latency_us.is_some());
    assert!(
        health
            .server_version
            .as_deref()
            .is_some_and(|v| v.starts_with("valkey ")),
        "{health:?}"
    );
    assert!(health.pool.connections >= 1);
    assert_eq!(health.pool.max_size, 10);
    let token = health.token.as_ref().unwrap();
    assert!(token.signed_at.is_some() && token.usable_until.is_some());
    assert_eq!(token.consecutive_failures, 0);

    let json = serde_json::to_value(&health).unwrap();
    for field in [
        "ok",
        "auth_mode",
        "mode",
        "endpoint",
        "ping_latency_us",
        "server_version",
        "pool",
        "token",
        "counts",
    ] {
        assert!(json.get(field).is_some(), "{field} missing: {json}");
    }
    assert!(json["token"]["signed_at"].as_str().unwrap().ends_with('Z'));
    for field in ["reauths", "recycles", "connections_opened"] {
        assert!(json["counts"].get(field).is_some(), "{field}: {json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_authentication_names_the_checklist_without_a_tight_loop() {
    let stack = start(StackConfig::replication_group("rg-refused-01")).await;

    // A wrong region: refused at build, with the checklist.
    let wrong_region = iam_config(&stack).region("eu-west-1").build().unwrap();
    let err = iam_pool(wrong_region).build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationRefused, "{err:?}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    for part in [
        "rg-refused-01",
        "iam-user-01",
        "eu-west-1",
        "elasticache:Connect",
        "clock",
    ] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }

    // A working pool whose connections are dropped while the server refuses
    // every authentication: get() fails at once with the same kind, and the
    // attempts back off.
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config).build().await.unwrap();
    stack.faults().reject_next_auths(u64::MAX);
    stack.drop_all_connections();
    // The pool notices the close as its connection's driver reads EOF.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = stack.stats().failed_total();
    let started = support::pools::real_now();
    let mut refused = 0;
    while started.elapsed() < Duration::from_secs(6) {
        match pool.get().await {
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::AuthenticationRefused, "{err:?}");
                refused += 1;
            }
            Ok(_) => panic!("no connection can authenticate"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let attempts = stack.stats().failed_total() - before;
    println!("6 s of refusals: {refused} get() calls failed, {attempts} authentications tried");
    assert!(refused >= 10, "get() fails fast: {refused}");
    assert!(
        attempts <= 15,
        "attempts back off (200 ms doubling, at most 4 at once): {attempts}"
    );

    // Once the server accepts again, the pool recovers by itself.
    stack.faults().reject_next_auths(0);
    let recovered = async {
        loop {
            if let Ok(mut conn) = pool.get().await {
                let _: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), recovered)
        .await
        .expect("recovers within the backoff cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_plain_pools_work_too() {
    let stack = start(
        StackConfig::replication_group("rg-password-01").password_user("app", "app-password"),
    )
    .await;
    let url = format!(
        "rediss://app:app-password@127.0.0.1:{}",
        stack.endpoint().port()
    );
    let config = elasticache_iam::ConnectionConfig::builder()
        .url(&url)
        .ca_file(stack.ca_file())
        .build()
        .unwrap();
    let pool = Pool::builder(config).build().await.unwrap();
    let mut conn = pool.get().await.unwrap();
    let () = conn.set("pw", "ok").await.unwrap();
    drop(conn);
    assert_eq!(pool.health().await.auth_mode, "password");

    let wrong = format!("rediss://app:wrong@127.0.0.1:{}", stack.endpoint().port());
    let config = elasticache_iam::ConnectionConfig::builder()
        .url(&wrong)
        .ca_file(stack.ca_file())
        .build()
        .unwrap();
    let err = Pool::builder(config).build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationRefused, "{err:?}");
    assert!(err.to_string().contains("password"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_debug_output_hold_no_secret() {
    use support::markers::{assert_clean, forbidden};
    use support::pools::marker_pool;

    let stack = start(StackConfig::replication_group("rg-marker-01")).await;
    let config = iam_config(&stack).build().unwrap();
    let pool = marker_pool(&stack, config).build().await.unwrap();
    let token = pool.refresher().unwrap().token().await.unwrap();
    let forbidden = forbidden(token.expose_secret());

    let mut conn = pool.get().await.unwrap();
    let () = conn.set("marker", "ok").await.unwrap();
    assert_clean("Debug of a connection", &format!("{conn:?}"), &forbidden);
    drop(conn);
    let health = pool.health().await;
    assert!(health.ok, "{health:?}");
    assert_clean(
        "serialized health",
        &serde_json::to_string(&health).unwrap(),
        &forbidden,
    );
    assert_clean("Debug of health", &format!("{health:?}"), &forbidden);
    assert_clean("Debug of the pool", &format!("{pool:?}"), &forbidden);

    // Refused: the error and the health report that records it.
    stack.faults().reject_next_auths(u64::MAX);
    stack.drop_all_connections();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = pool.get().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationRefused);
    assert_clean("refused error", &format!("{err} {err:?}"), &forbidden);
    let health = pool.health().await;
    assert!(!health.ok);
    assert!(health.last_connect_error.is_some());
    assert_clean(
        "health after a refusal",
        &serde_json::to_string(&health).unwrap(),
        &forbidden,
    );
}

/// A minimal RESP server on a thread, playing a server from before `HELLO`:
/// `hello` is its answer to `HELLO`, `auth` its answer to `AUTH` with the
/// given arguments. It records each command's name (and the AUTH arguments).
/// A server's answer to `AUTH` with the given arguments.
type AuthAnswer = fn(&[String]) -> &'static [u8];

fn server_without_hello(
    hello: &'static [u8],
    auth: AuthAnswer,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufReader, Write};
    use std::sync::{Arc, Mutex};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut parser = redis::Parser::new();
                while let Ok(redis::Value::Array(args)) = parser.parse_value(&mut reader) {
                    let args: Vec<String> = args
                        .iter()
                        .map(|a| match a {
                            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                            other => format!("{other:?}"),
                        })
                        .collect();
                    let name = args[0].to_ascii_uppercase();
                    let reply: &[u8] = match name.as_str() {
                        "HELLO" => hello,
                        "AUTH" => auth(&args[1..]),
                        "PING" => b"+PONG\r\n",
                        _ => b"+OK\r\n",
                    };
                    let entry = if name == "AUTH" { args.join(" ") } else { name };
                    log.lock().unwrap().push(entry);
                    if writer.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// Redis 5's exact answer to `HELLO 3 AUTH app app-password`.
const REDIS5_HELLO: &[u8] =
    b"-ERR unknown command `HELLO`, with args beginning with: `3`, `AUTH`, `app`, `app-password`, \r\n";

/// A server from before `HELLO`: the pool falls back to `AUTH` and
/// remembers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_without_hello_are_authenticated_with_auth() {
    for hello in [
        b"-ERR unknown command 'HELLO', with args beginning with: \r\n".as_slice(),
        REDIS5_HELLO,
    ] {
        let (port, seen) = server_without_hello(hello, |args| {
            if args == ["app", "app-password"] {
                b"+OK\r\n"
            } else {
                b"-WRONGPASS invalid username-password pair\r\n"
            }
        });
        let url = format!("redis://app:app-password@127.0.0.1:{port}");
        let config = elasticache_iam::ConnectionConfig::from_url(&url).unwrap();
        let pool = Pool::builder(config).max_size(2).build().await.unwrap();
        let mut a = pool.get().await.unwrap();
        let mut b = pool.get().await.unwrap();
        for conn in [&mut a, &mut b] {
            let pong: String = redis::cmd("PING").query_async(&mut **conn).await.unwrap();
            assert_eq!(pong, "PONG");
        }
        let seen = seen.lock().unwrap().clone();
        let count = |what: &str| seen.iter().filter(|s| s.as_str() == what).count();
        assert_eq!(count("HELLO"), 1, "tried once, then remembered: {seen:?}");
        assert_eq!(count("AUTH app app-password"), 2, "{seen:?}");
    }
}

/// After the fallback, the server's answer to `AUTH` is classified by what
/// it says: a refusal is a refusal, a throttle a throttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_auth_after_the_hello_fallback_keep_their_meaning() {
    let cases: [(AuthAnswer, ErrorKind); 2] = [
        (
            |_| b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
            ErrorKind::AuthenticationRefused,
        ),
        (
            |_| b"-ERR service is not available\r\n",
            ErrorKind::Throttled,
        ),
    ];
    for (auth, kind) in cases {
        let (port, seen) = server_without_hello(REDIS5_HELLO, auth);
        let url = format!("redis://app:app-password@127.0.0.1:{port}");
        let config = elasticache_iam::ConnectionConfig::from_url(&url).unwrap();
        let err = Pool::builder(config).build().await.unwrap_err();
        println!("{err}");
        assert_eq!(err.kind(), kind, "{err:?}");
        let text = format!("{} {err:?}", elasticache_iam::display_chain(&err));
        assert!(!text.contains("app-password"), "{text}");
        // HELLO (and redis-rs's pipelined CLIENT SETINFO) on the first
        // connection; AUTH, and nothing after it, on the second.
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.first().map(String::as_str), Some("HELLO"), "{seen:?}");
        assert_eq!(
            seen.last().map(String::as_str),
            Some("AUTH app app-password"),
            "{seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_ids_in_mixed_case_connect() {
    for stack_config in [
        StackConfig::replication_group("rg-mixed-case-01"),
        StackConfig::serverless("mixed-case-01"),
    ] {
        let stack = start(stack_config).await;
        let config = iam_config(&stack).user_id("IAM-User-01").build().unwrap();
        let elasticache_iam::Auth::Iam(iam) = config.auth() else {
            panic!("{config:?}")
        };
        assert_eq!(iam.user_id.as_str(), "iam-user-01", "one value, as signed");
        let pool = iam_pool(config).max_size(2).build().await.unwrap();
        let mut conn = pool.get().await.unwrap();
        let () = conn.set("{mixed}:case", "ok").await.unwrap();
        let read: String = conn.get("{mixed}:case").await.unwrap();
        assert_eq!(read, "ok");
        drop(conn);
        // A refresher made elsewhere from the same mixed-case input fits.
        let refresher = elasticache_iam::TokenRefresher::builder()
            .target(pool.refresher().unwrap().signer().target().clone())
            .user_id("IAM-User-01")
            .region(stack.region())
            .credentials_provider(support::pools::static_credentials())
            .build()
            .await
            .unwrap();
        let config = iam_config(&stack).user_id("IAM-User-01").build().unwrap();
        let shared = Pool::builder(config)
            .refresher(refresher)
            .build()
            .await
            .unwrap();
        drop(shared);
        let stats = stack.stats();
        assert_eq!(stats.failed_total(), 0, "{stats:?}");
        assert!(stats.auth_ok >= 2, "{stats:?}");
    }
}

/// The kernel's own view of the pooled sockets (`/proc/net/tcp`): each
/// connection to the stack's front has a keepalive timer due within 15 s
/// (without the setting there is no timer, or one 2 hours away).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_sockets_have_keepalive() {
    let stack = start(StackConfig::replication_group("rg-keepalive-01")).await;
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config).max_size(3).build().await.unwrap();
    let held: Vec<_> = {
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut conn = pool.get().await.unwrap();
            let () = conn.set("k", "v").await.unwrap();
            held.push(conn);
        }
        held
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let front = format!(":{:04X}", stack.endpoint().port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    // sl local_address rem_address st tx:rx tr:tm->when ...
    let timers: Vec<(String, u64)> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (remote, state, timer) = (fields[2], fields[3], fields[5]);
            (remote.ends_with(&front) && state == "01").then(|| {
                let (kind, when) = timer.split_once(':').unwrap();
                (kind.to_owned(), u64::from_str_radix(when, 16).unwrap())
            })
        })
        .collect();
    println!("client sockets to the front (timer kind, due in 1/100 s): {timers:?}");
    assert_eq!(timers.len(), 3, "{timers:?}");
    for (kind, when) in &timers {
        assert_eq!(kind, "02", "a keepalive timer: {timers:?}");
        assert!(*when <= 1500, "due within 15 s: {timers:?}");
    }
    drop(held);
}
