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

/// A server from before `HELLO` (Redis 5): the pool falls back to `AUTH` and
/// remembers it. A minimal RESP server on a thread, recording each command's
/// name (and the AUTH arguments), plays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_without_hello_are_authenticated_with_auth() {
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
                        "HELLO" => b"-ERR unknown command 'HELLO', with args beginning with: \r\n",
                        "AUTH" if args[1..] == ["app", "app-password"] => b"+OK\r\n",
                        "AUTH" => b"-WRONGPASS invalid username-password pair\r\n",
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
