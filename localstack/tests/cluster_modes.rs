//! Cluster-mode-enabled replication groups and MemoryDB on a real Valkey
//! cluster: one TLS front per node, each verifying IAM as AWS does for the
//! mode; clients only ever see the fronts' addresses.

mod support;

use std::time::Duration;
#[allow(
    clippy::disallowed_types,
    reason = "the start-up time of real processes, printed"
)]
use std::time::Instant;

use elasticache_iam::TokenRefresher;
use elasticache_localstack::{Stack, StackConfig};
use redis::TlsCertificates;
use redis::cluster::ClusterClientBuilder;
use support::{Kind, RawClient, WRONGPASS, token};

const KEYS: usize = 10_000;

async fn refresher(kind: Kind, name: &str) -> TokenRefresher {
    let builder = TokenRefresher::builder();
    let builder = match kind {
        Kind::Serverless => builder.serverless_cache(name),
        Kind::ReplicationGroup => builder.replication_group(name),
        Kind::MemoryDb => builder.memorydb_cluster(name),
    };
    builder
        .user_id("iam-user-01")
        .region("us-east-1")
        .credentials_provider(support::static_credentials())
        .build()
        .await
        .unwrap()
}

fn certs(stack: &Stack) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(stack.ca_file()).unwrap()),
    }
}

/// A 3 × 1 cluster stack, its start-up time printed.
#[allow(clippy::disallowed_methods, reason = "the start-up time, printed")]
async fn start(config: StackConfig) -> Stack {
    let started = Instant::now();
    let stack = support::start(config).await;
    let took = started.elapsed();
    println!(
        "stack with {} nodes started in {:.2} s",
        stack.node_endpoints().len(),
        took.as_secs_f64()
    );
    // The whole stack, cluster formed and every front listening.
    assert!(took < Duration::from_secs(5), "{took:?}");
    stack
}

/// A redis-rs cluster client with the refresher writes `KEYS` keys over all
/// slots and reads them back (from replicas too, so it connects to every
/// node); every front counted IAM authentications.
async fn ten_thousand_keys(stack: &Stack, kind: Kind, name: &str) {
    let seed = format!("rediss://127.0.0.1:{}", stack.endpoint().port());
    let client = ClusterClientBuilder::new(vec![seed])
        .certs(certs(stack))
        .set_credentials_provider(refresher(kind, name).await)
        .read_routing_strategy(redis::cluster_read_routing::RandomReplicaStrategy)
        .build()
        .unwrap();
    let con = client.get_async_connection().await.unwrap();
    // (redis-rs sends a pipeline to one node only: single commands, from 16 tasks.)
    each_key(
        &con,
        (0..KEYS).collect(),
        |i| redis::cmd("SET").arg(format!("key:{i}")).arg(i).clone(),
        |_, _: ()| true,
    )
    .await;
    // Replicas follow asynchronously: read until every value is there.
    let mut missing: Vec<usize> = (0..KEYS).collect();
    for _ in 0..50 {
        missing = each_key(
            &con,
            missing,
            |i| redis::cmd("GET").arg(format!("key:{i}")).clone(),
            |i, v: Option<usize>| v == Some(i),
        )
        .await;
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(missing.is_empty(), "{} keys not read back", missing.len());
    let stats = stack.stats();
    assert_eq!(stats.nodes.len(), 6);
    for node in &stats.nodes {
        assert!(node.auth_ok >= 1, "no IAM authentication at {node:?}");
        assert_eq!(node.failed_total(), 0, "{node:?}");
    }
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
    println!(
        "{KEYS} keys written and read back; authentications per node: {:?}",
        stats.nodes.iter().map(|n| n.auth_ok).collect::<Vec<_>>()
    );
}

/// `command(i)` for every `i` of `keys` from 16 tasks; the `i` whose reply
/// `good` refuses.
async fn each_key<T: redis::FromRedisValue + Send + 'static>(
    con: &redis::cluster_async::ClusterConnection,
    keys: Vec<usize>,
    command: fn(usize) -> redis::Cmd,
    good: fn(usize, T) -> bool,
) -> Vec<usize> {
    let mut tasks = tokio::task::JoinSet::new();
    for part in keys.chunks(keys.len().div_ceil(16).max(1)) {
        let (mut con, part) = (con.clone(), part.to_vec());
        tasks.spawn(async move {
            let mut refused = Vec::new();
            for i in part {
                let reply: T = command(i).query_async(&mut con).await.unwrap();
                if !good(i, reply) {
                    refused.push(i);
                }
            }
            refused
        });
    }
    let mut refused = Vec::new();
    while let Some(part) = tasks.join_next().await {
        refused.extend(part.unwrap());
    }
    refused
}

/// No server address in `reply`: a server port appears neither as a RESP
/// integer, nor in `host:port` form.
fn names_only_fronts(stack: &Stack, reply: &str) {
    for server in stack.upstream_addrs() {
        let port = server.port();
        for pattern in [
            format!(":{port}\r\n"),
            format!(":{port}@"),
            format!(":{port} "),
        ] {
            assert!(!reply.contains(&pattern), "server port {port} in {reply:?}");
        }
    }
}

/// On every node's front: unauthenticated commands get `NOAUTH` and never
/// reach the server; topology replies and redirects name only fronts.
async fn every_front_guards_and_rewrites(stack: &Stack, kind: Kind, name: &str) {
    let fronts = stack.node_endpoints();
    for (index, &front) in fronts.iter().enumerate() {
        let server = stack.upstream_addrs()[index];
        let before = connections_received(server).await;
        let mut raw = RawClient::connect_at(stack, front).await;
        let reply = raw.cmd(&["SET", "unauthenticated", "x"]).await;
        assert!(reply.starts_with("-NOAUTH"), "{reply}");
        let reply = raw.cmd(&["CLUSTER", "SLOTS"]).await;
        assert!(reply.starts_with("-NOAUTH"), "{reply}");
        // One connection: the INFO below; none for the client above.
        assert_eq!(
            connections_received(server).await,
            before + 1,
            "node {index}"
        );

        let reply = raw.cmd(&["AUTH", "iam-user-01", &token(kind, name)]).await;
        assert_eq!(reply, "+OK\r\n", "node {index}");
        for sub in ["SLOTS", "SHARDS", "NODES"] {
            let reply = raw.cmd(&["CLUSTER", sub]).await;
            names_only_fronts(stack, &reply);
            for other in &fronts {
                assert!(reply.contains(&other.port().to_string()), "{sub}: {reply}");
            }
        }
        // A key of each shard: from two of the three shards the primary
        // redirects to the owner's front.
        let mut redirects = 0;
        for key in ["a", "b", "c", "d", "e", "f"] {
            let reply = raw.cmd(&["SET", key, "1"]).await;
            if reply.starts_with("-MOVED") {
                redirects += 1;
                names_only_fronts(stack, &reply);
                let port: u16 = reply
                    .trim_end()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(fronts.iter().any(|f| f.port() == port), "{reply}");
            } else {
                assert_eq!(reply, "+OK\r\n");
            }
        }
        assert!(redirects > 0, "node {index}: no redirect");
    }
}

/// `total_connections_received` of the server at `addr` (plain TCP).
async fn connections_received(addr: std::net::SocketAddr) -> u64 {
    let client = redis::Client::open(format!("redis://{addr}")).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Tokens AWS would refuse for this cache, refused on every node with their
/// reason.
async fn wrong_tokens_are_refused_on_every_node(stack: &Stack, wrong: &[(String, &str)]) {
    for (index, &front) in stack.node_endpoints().iter().enumerate() {
        let mut raw = RawClient::connect_at(stack, front).await;
        for (token, _) in wrong {
            let reply = raw.cmd(&["AUTH", "iam-user-01", token]).await;
            assert_eq!(reply, WRONGPASS, "node {index}");
        }
        let node = &stack.stats().nodes[index];
        for (_, reason) in wrong {
            assert!(node.failed(reason) >= 1, "node {index}: {reason}: {node:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_mode_replication_group() {
    let stack = start(StackConfig::replication_group("my-group").cluster_mode(3, 1)).await;
    ten_thousand_keys(&stack, Kind::ReplicationGroup, "my-group").await;
    every_front_guards_and_rewrites(&stack, Kind::ReplicationGroup, "my-group").await;
    let wrong = [
        (token(Kind::MemoryDb, "my-group"), "wrong_service"),
        (
            token(Kind::Serverless, "my-group"),
            "resource_type_unexpected",
        ),
        (token(Kind::ReplicationGroup, "other-group"), "wrong_host"),
    ];
    wrong_tokens_are_refused_on_every_node(&stack, &wrong).await;
    let env = stack.env_vars();
    let get = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
    assert_eq!(get("REDIS_CLUSTER").as_deref(), Some("true"));
    assert_eq!(
        get("ELASTICACHE_REPLICATION_GROUP").as_deref(),
        Some("my-group")
    );
    let nodes = get("LOCALSTACK_NODES").unwrap();
    assert_eq!(nodes.split(',').count(), 6, "{nodes}");
    assert!(nodes.starts_with(&format!("127.0.0.1:{}", stack.endpoint().port())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memorydb_cluster() {
    let stack = start(StackConfig::memorydb("my-memorydb").cluster_mode(3, 1)).await;
    ten_thousand_keys(&stack, Kind::MemoryDb, "my-memorydb").await;
    every_front_guards_and_rewrites(&stack, Kind::MemoryDb, "my-memorydb").await;
    let wrong = [
        (
            token(Kind::ReplicationGroup, "my-memorydb"),
            "wrong_service",
        ),
        (token(Kind::Serverless, "my-memorydb"), "wrong_service"),
        (token(Kind::MemoryDb, "other-cluster"), "wrong_host"),
    ];
    wrong_tokens_are_refused_on_every_node(&stack, &wrong).await;
    let env = stack.env_vars();
    assert!(env.contains(&("MEMORYDB_CLUSTER", "my-memorydb".to_owned())));
    assert!(env.contains(&("REDIS_CLUSTER", "true".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_pubsub_on_a_cluster() {
    let stack = start(StackConfig::replication_group("my-group").cluster_mode(3, 0)).await;
    let fronts = stack.node_endpoints();
    // The channel's shard is the one whose front takes SSUBSCRIBE without a redirect.
    let mut subscriber = None;
    for &front in &fronts {
        let mut raw = RawClient::connect_at(&stack, front).await;
        let hello = raw
            .cmd(&[
                "HELLO",
                "3",
                "AUTH",
                "iam-user-01",
                &token(Kind::ReplicationGroup, "my-group"),
            ])
            .await;
        assert!(hello.starts_with('%'), "{hello}");
        let reply = raw.cmd(&["SSUBSCRIBE", "orders"]).await;
        if reply.starts_with("-MOVED") {
            names_only_fronts(&stack, &reply);
            continue;
        }
        assert!(
            reply.starts_with(">3\r\n$10\r\nssubscribe\r\n$6\r\norders\r\n"),
            "{reply}"
        );
        subscriber = Some((front, raw));
    }
    let (front, mut subscriber) = subscriber.expect("one shard owns the channel");
    let mut publisher = RawClient::connect_at(&stack, front).await;
    publisher.auth_as(Kind::ReplicationGroup, "my-group").await;
    let reply = publisher.cmd(&["SPUBLISH", "orders", "order-1"]).await;
    assert_eq!(reply, ":1\r\n");
    let message = tokio::time::timeout(Duration::from_secs(1), subscriber.reply())
        .await
        .expect("delivered at once")
        .unwrap();
    assert_eq!(
        message,
        ">3\r\n$8\r\nsmessage\r\n$6\r\norders\r\n$7\r\norder-1\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nodes_connections_can_be_dropped() {
    let stack = start(StackConfig::memorydb("my-memorydb").cluster_mode(2, 0)).await;
    let fronts = stack.node_endpoints();
    let mut first = RawClient::connect_at(&stack, fronts[0]).await;
    let mut second = RawClient::connect_at(&stack, fronts[1]).await;
    first.auth_as(Kind::MemoryDb, "my-memorydb").await;
    second.auth_as(Kind::MemoryDb, "my-memorydb").await;
    let (status, body) =
        support::http(&stack, "POST", "/faults", r#"{"drop_node_connections": 1}"#).await;
    assert_eq!(status, 200, "{body}");
    assert!(second.closed_within(Duration::from_secs(2)).await);
    assert_eq!(first.cmd(&["PING"]).await, "+PONG\r\n");
    let (status, body) =
        support::http(&stack, "POST", "/faults", r#"{"drop_node_connections": 2}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no node 2"), "{body}");
    let (_, stats) = support::http(&stack, "GET", "/stats", "").await;
    let stats: elasticache_localstack::StatsSnapshot = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats.nodes.len(), 2);
    assert_eq!(stats.nodes[1].connections_open, 0, "{stats:?}");
    assert_eq!(stats.nodes[0].connections_open, 1, "{stats:?}");
    assert_eq!(
        stats.nodes[0].address,
        format!("127.0.0.1:{}", fronts[0].port())
    );
}
