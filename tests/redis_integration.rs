//! redis-rs clients authenticated by the refresher, against the local stack
//! (TLS front, real token verification, a real Valkey behind it): how many
//! authentications a new connection costs, and that re-authentication follows
//! the re-auth schedule rather than token rotations.
//!
//! Real time, scaled: tokens rotate every second, connections re-authenticate
//! every 3.6 to 4 s, and the stack cuts connections whose last authentication
//! is 8 s old.

mod support;

use std::time::Duration;

use elasticache_iam::TokenRefresher;
use elasticache_localstack::{Stack, StackConfig, StatsSnapshot};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::{AsyncConnectionConfig, Client, TlsCertificates};

const MAX_AUTH_AGE: Duration = Duration::from_secs(8);

async fn stack(config: StackConfig) -> Stack {
    support::pools::start(config.max_auth_age(MAX_AUTH_AGE)).await
}

async fn refresher(stack: &Stack, serverless: bool, cache: &str) -> TokenRefresher {
    let builder = TokenRefresher::builder();
    let builder = if serverless {
        builder.serverless_cache(cache)
    } else {
        builder.replication_group(cache)
    };
    builder
        .user_id("iam-user-01")
        .region("us-east-1")
        .credentials_provider(support::pools::static_credentials())
        .token_refresh_interval(Duration::from_secs(1))
        .reauth_after(Duration::from_secs(4))
        .build()
        .await
        .unwrap_or_else(|e| panic!("refresher for {stack:?}: {e}"))
}

fn url(stack: &Stack) -> String {
    format!("rediss://127.0.0.1:{}", stack.endpoint().port())
}

fn certs(stack: &Stack) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(stack.ca_file()).unwrap()),
    }
}

fn client(stack: &Stack) -> Client {
    Client::build_with_tls(url(stack), certs(stack)).unwrap()
}

/// Runs `INCR` on `key` every 100 ms for `span`; every reply must be the
/// next number.
async fn keep_busy(con: &mut impl ConnectionLike, key: &str, span: Duration) -> i64 {
    let rounds = (span.as_millis() / 100) as i64;
    for expected in 1..=rounds {
        let n: i64 = redis::cmd("INCR")
            .arg(key)
            .query_async(con)
            .await
            .unwrap_or_else(|e| panic!("INCR {expected}: {e}"));
        assert_eq!(n, expected);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rounds
}

fn authentications(before: &StatsSnapshot, after: &StatsSnapshot) -> (u64, u64) {
    (
        after.auth_ok - before.auth_ok - (after.reauth_ok - before.reauth_ok),
        after.reauth_ok - before.reauth_ok,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiplexed_connection_authenticates_once_and_reauthenticates_on_schedule() {
    let stack = stack(StackConfig::replication_group("my-group")).await;
    let refresher = refresher(&stack, false, "my-group").await;
    let config = AsyncConnectionConfig::new().set_credentials_provider(refresher.clone());
    let before = stack.stats();
    let mut con = client(&stack)
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let connected = stack.stats();
    assert_eq!(connected.connections_total - before.connections_total, 1);
    assert_eq!(
        authentications(&before, &connected),
        (1, 0),
        "one AUTH per new connection"
    );

    // 13 s: 13 or 14 token rotations, 3 re-authentications (at 3.6-4 s,
    // 7.2-8 s, 10.8-12 s), no forced disconnect although the stack cuts at 8 s.
    let rotations_before = refresher.status().rotations;
    keep_busy(&mut con, "counter:multiplexed", Duration::from_secs(13)).await;
    let after = stack.stats();
    let rotations = refresher.status().rotations - rotations_before;
    assert!(rotations >= 12, "{rotations} rotations");
    assert_eq!(authentications(&before, &after), (1, 3), "{after:?}");
    assert_eq!(after.forced_disconnects, 0);
    assert_eq!(after.failed_total(), 0, "{after:?}");
    assert_eq!(after.connections_total - before.connections_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_manager_authenticates_once_per_connection_it_makes() {
    let stack = stack(StackConfig::replication_group("my-group")).await;
    let refresher = refresher(&stack, false, "my-group").await;
    let before = stack.stats();
    let config = ConnectionManagerConfig::new().set_credentials_provider(refresher.clone());
    let mut con = ConnectionManager::new_with_config(client(&stack), config)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(authentications(&before, &stack.stats()), (1, 0));

    // The stack drops the connection; the manager reconnects, and the new
    // connection authenticates once too.
    stack.drop_all_connections();
    let mut value = None;
    for _ in 0..50 {
        match redis::cmd("GET")
            .arg("k")
            .query_async::<String>(&mut con)
            .await
        {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(value.as_deref(), Some("v"));
    let after = stack.stats();
    assert_eq!(after.connections_total - before.connections_total, 2);
    assert_eq!(authentications(&before, &after), (2, 0));
    assert_eq!(after.failed_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_client_on_a_serverless_cache() {
    let stack = stack(StackConfig::serverless("my-serverless")).await;
    let refresher = refresher(&stack, true, "my-serverless").await;
    let before = stack.stats();
    let client = ClusterClientBuilder::new(vec![url(&stack)])
        .certs(certs(&stack))
        .set_credentials_provider(refresher.clone())
        .build()
        .unwrap();
    let mut con = client.get_async_connection().await.unwrap();
    let connected = stack.stats();
    let opened = connected.connections_total - before.connections_total;
    let (auths, reauths) = authentications(&before, &connected);
    println!("cluster client: {opened} connection(s), {auths} AUTH(s), {reauths} re-AUTH(s)");
    // Measured with redis-rs 1.8: the seed connection that discovers the
    // topology is the one connection to the serverless endpoint (which lists
    // only itself), authenticated once.
    assert_eq!((opened, auths, reauths), (1, 1, 0));

    // Re-authenticated at 3.6-4 s and 7.2-8 s; never cut at 8 s.
    keep_busy(&mut con, "counter:cluster", Duration::from_secs(9)).await;
    let after = stack.stats();
    assert_eq!(authentications(&before, &after), (1, 2), "{after:?}");
    assert_eq!(after.forced_disconnects, 0, "{after:?}");
    assert_eq!(after.failed_total(), 0, "{after:?}");
    assert_eq!(after.connections_total - before.connections_total, 1);
}
