//! Cluster-mode-enabled replication groups, MemoryDB and serverless caches on
//! a real Valkey cluster: one TLS front per node (serverless: one endpoint
//! and a replica-read endpoint), each verifying IAM as AWS does for the
//! mode; clients only ever see the fronts' addresses.

mod support;

use std::time::Duration;
#[allow(
    clippy::disallowed_types,
    reason = "the start-up time of real processes, printed"
)]
use std::time::Instant;

use elasticache_localstack::{Stack, StackConfig};
use redis::TlsCertificates;
use redis::cluster::ClusterClientBuilder;
use support::{Kind, RawClient, WRONGPASS, on_server, token};

const KEYS: usize = 10_000;

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
/// slots and reads them back (in a cluster from replicas too, so it connects
/// to every node; a serverless cache shows it only its endpoint); every
/// front it was shown counted IAM authentications.
async fn ten_thousand_keys(stack: &Stack, kind: Kind, name: &str) {
    let seed = format!("rediss://127.0.0.1:{}", stack.endpoint().port());
    let client = ClusterClientBuilder::new(vec![seed])
        .certs(certs(stack))
        .set_credentials_provider(support::refresher(kind, name).await)
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
    // One front per server, or the serverless endpoint and its reader.
    let (fronts, shown) = match stack.reader_endpoint() {
        Some(_) => (2, 1),
        None => (stack.upstream_addrs().len(), stack.upstream_addrs().len()),
    };
    assert_eq!(stats.nodes.len(), fronts);
    for node in &stats.nodes[..shown] {
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
    let info: String = on_server(addr, &["INFO", "stats"]).await;
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
    // Nothing of a request is applied unless all of it can be.
    for (request, error) in [
        (r#"{"reject_auths": 5, "kill_node": 9}"#, "no node 9"),
        (r#"{"reject_auths": 5, "failover_shard": 2}"#, "no shard 2"),
        (
            r#"{"reject_auths": 5, "migrate_slots": {"from": 0, "to": 0, "count": 1}}"#,
            "two different shards",
        ),
        (r#"{"reject_auths": 5, "upstream": "pause"}"#, "stop"),
    ] {
        let (status, body) = support::http(&stack, "POST", "/faults", request).await;
        assert_eq!(status, 400, "{request}: {body}");
        assert!(body.contains(error), "{request}: {body}");
    }

    let (_, stats) = support::http(&stack, "GET", "/stats", "").await;
    let stats: elasticache_localstack::StatsSnapshot = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats.nodes.len(), 2);
    assert_eq!(stats.nodes[1].connections_open, 0, "{stats:?}");
    assert_eq!(stats.nodes[0].connections_open, 1, "{stats:?}");
    assert_eq!(
        stats.nodes[0].address,
        format!("127.0.0.1:{}", fronts[0].port())
    );
    // (No authentication was refused by the requests refused above.)
    let mut third = RawClient::connect_at(&stack, fronts[1]).await;
    third.auth_as(Kind::MemoryDb, "my-memorydb").await;
}

/// `DBSIZE` of the server at `addr` (plain TCP).
async fn dbsize(addr: std::net::SocketAddr) -> u64 {
    on_server(addr, &["DBSIZE"]).await
}

/// `calls` of `command` in the server's `INFO commandstats` (plain TCP).
async fn calls(addr: std::net::SocketAddr, command: &str) -> u64 {
    let info: String = on_server(addr, &["INFO", "commandstats"]).await;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serverless_cache_on_three_shards() {
    let stack = start(StackConfig::serverless("my-cache").cluster_mode(3, 1)).await;
    let servers = stack.upstream_addrs();
    assert_eq!(servers.len(), 6);
    let fronts = stack.node_endpoints();
    assert_eq!(fronts, [stack.endpoint(), stack.reader_endpoint().unwrap()]);
    ten_thousand_keys(&stack, Kind::Serverless, "my-cache").await;
    // One endpoint, and the keys are on every shard.
    let mut sizes = Vec::new();
    for &primary in &servers[..3] {
        sizes.push(dbsize(primary).await);
    }
    println!("keys per shard behind the serverless endpoint: {sizes:?}");
    assert!(sizes.iter().all(|&n| n > 2_000), "{sizes:?}");

    for (index, &front) in fronts.iter().enumerate() {
        let mut before = Vec::new();
        for &server in &servers {
            before.push(connections_received(server).await);
        }
        let mut raw = RawClient::connect_at(&stack, front).await;
        for command in [
            &["SET", "unauthenticated", "x"][..],
            &["CLUSTER", "SLOTS"],
            &["READONLY"],
        ] {
            let reply = raw.cmd(command).await;
            assert!(reply.starts_with("-NOAUTH"), "{command:?}: {reply}");
        }
        // One connection per server: the INFO below; none for the client above.
        for (&server, before) in servers.iter().zip(before) {
            assert_eq!(
                connections_received(server).await,
                before + 1,
                "front {index}"
            );
        }
        raw.auth_as(Kind::Serverless, "my-cache").await;
        for sub in ["SLOTS", "SHARDS", "NODES"] {
            let reply = raw.cmd(&["CLUSTER", sub]).await;
            names_only_fronts(&stack, &reply);
            // The endpoint shows itself, for every slot.
            assert!(reply.contains(&front.port().to_string()), "{sub}: {reply}");
        }
        // Keys of every shard, no redirect.
        for key in ["a", "b", "c", "d", "e", "f"] {
            assert_eq!(raw.cmd(&["SET", key, "1"]).await, "+OK\r\n", "{key}");
        }
    }
    let wrong = [
        (
            token(Kind::ReplicationGroup, "my-cache"),
            "resource_type_missing",
        ),
        (token(Kind::MemoryDb, "my-cache"), "wrong_service"),
        (token(Kind::Serverless, "other-cache"), "wrong_host"),
    ];
    wrong_tokens_are_refused_on_every_node(&stack, &wrong).await;
    let env = stack.env_vars();
    let get = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
    assert_eq!(get("REDIS_CLUSTER").as_deref(), Some("true"));
    assert_eq!(get("REDIS_PORT"), Some(stack.endpoint().port().to_string()));
    assert_eq!(get("REDIS_READER_PORT"), Some(fronts[1].port().to_string()));
    assert_eq!(
        get("LOCALSTACK_NODES"),
        Some(format!(
            "127.0.0.1:{},127.0.0.1:{}",
            fronts[0].port(),
            fronts[1].port()
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_keys_of_several_slots_as_on_aws() {
    let stack = start(StackConfig::serverless("my-cache").cluster_mode(3, 1)).await;
    let mut raw = RawClient::connect(&stack).await;
    raw.auth_as(Kind::Serverless, "my-cache").await;
    let crossslot = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
    // Multi-key commands: one slot, or CROSSSLOT, from the server itself.
    assert_eq!(raw.cmd(&["MSET", "a", "1", "b", "2"]).await, crossslot);
    assert_eq!(
        raw.cmd(&["MSET", "{u}a", "1", "{u}b", "2"]).await,
        "+OK\r\n"
    );
    assert_eq!(
        raw.cmd(&["MGET", "{u}a", "{u}b"]).await,
        "*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
    assert_eq!(raw.cmd(&["SUNIONSTORE", "x", "a", "b"]).await, crossslot);
    // A script's keys (movable: from its numkeys).
    assert_eq!(
        raw.cmd(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "{u}b"])
            .await,
        "$1\r\n2\r\n"
    );
    assert_eq!(
        raw.cmd(&["EVAL", "return 1", "2", "a", "b"]).await,
        crossslot
    );
    // A transaction stays on its slot's server.
    for (command, reply) in [
        (&["WATCH", "{u}a"][..], "+OK\r\n"),
        (&["MULTI"], "+OK\r\n"),
        (&["INCR", "{u}a"], "+QUEUED\r\n"),
        (&["INCR", "{u}b"], "+QUEUED\r\n"),
        (&["EXEC"], "*2\r\n:2\r\n:3\r\n"),
    ] {
        assert_eq!(raw.cmd(command).await, reply, "{command:?}");
    }
    // A key of another slot in it: refused, and EXEC aborts.
    for (command, reply) in [
        (&["MULTI"][..], "+OK\r\n"),
        (&["INCR", "{u}a"], "+QUEUED\r\n"),
        (&["INCR", "a"], crossslot),
        (
            &["EXEC"],
            "-EXECABORT Transaction discarded because of previous errors.\r\n",
        ),
        (&["GET", "{u}a"], "$1\r\n2\r\n"),
        // An empty transaction, and one that DISCARD ends.
        (&["MULTI"], "+OK\r\n"),
        (&["EXEC"], "*0\r\n"),
        (&["MULTI"], "+OK\r\n"),
        (&["SET", "b", "x"], "+QUEUED\r\n"),
        (&["DISCARD"], "+OK\r\n"),
        (&["GET", "b"], "$-1\r\n"),
        (&["EXEC"], "-ERR EXEC without MULTI\r\n"),
    ] {
        assert_eq!(raw.cmd(command).await, reply, "{command:?}");
    }
    // Pipelined across shards, replies in order.
    raw.send(&["SET", "a", "A"]).await;
    raw.send(&["SET", "c", "C"]).await;
    raw.send(&["GET", "a"]).await;
    raw.send(&["GET", "c"]).await;
    raw.send(&["PING"]).await;
    let mut replies = String::new();
    for _ in 0..5 {
        replies.push_str(&raw.reply().await.unwrap());
    }
    assert_eq!(replies, "+OK\r\n+OK\r\n$1\r\nA\r\n$1\r\nC\r\n+PONG\r\n");
    // A transaction in one write, a refused key in it, and what follows.
    let mut pipelined = Vec::new();
    for command in [
        &["MULTI"][..],
        &["INCR", "{u}a"],
        &["INCR", "a"],
        &["INCR", "{u}a"],
        &["EXEC"],
        &["GET", "{u}a"],
        &["PING", "after"],
    ] {
        pipelined.extend(encode(command));
    }
    raw.send_raw(&pipelined).await;
    let mut replies = Vec::new();
    for _ in 0..7 {
        replies.push(raw.reply().await.unwrap());
    }
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            crossslot,
            "+QUEUED\r\n",
            "-EXECABORT Transaction discarded because of previous errors.\r\n",
            "$1\r\n2\r\n",
            "$5\r\nafter\r\n",
        ]
    );
    // Commands without keys first in a transaction wait for its first key.
    for (command, reply) in [
        (&["MULTI"][..], "+OK\r\n"),
        (&["PING"], "+QUEUED\r\n"),
        (&["INCR", "fresh"], "+QUEUED\r\n"),
        (&["EXEC"], "*2\r\n+PONG\r\n:1\r\n"),
        (&["MULTI"], "+OK\r\n"),
        (&["PING"], "+QUEUED\r\n"),
        (&["EXEC"], "*1\r\n+PONG\r\n"),
    ] {
        assert_eq!(raw.cmd(command).await, reply, "{command:?}");
    }
    // QUIT after commands for two shards in one go: all answered, then the
    // end ("a" is on shard 2, "b" on shard 0).
    let mut last = encode(&["GET", "a"]);
    last.extend(encode(&["GET", "b"]));
    last.extend(encode(&["QUIT"]));
    raw.send_raw(&last).await;
    assert_eq!(raw.reply().await.unwrap(), "$1\r\nA\r\n");
    assert_eq!(raw.reply().await.unwrap(), "$-1\r\n");
    assert_eq!(raw.reply().await.unwrap(), "+OK\r\n");
    assert!(raw.closed_within(Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_asking_watch_and_resp2_subscribed_mode() {
    let stack = start(StackConfig::serverless("my-cache").cluster_mode(3, 0)).await;
    let servers = stack.upstream_addrs();
    let mut raw = RawClient::connect(&stack).await;
    raw.auth_as(Kind::Serverless, "my-cache").await;
    // WATCH holds its server for the transaction only: other keys still
    // work before MULTI ("a" shard 2, "b" shard 0, "c" shard 1).
    for (command, reply) in [
        (&["WATCH", "a"][..], "+OK\r\n"),
        (&["SET", "b", "1"], "+OK\r\n"),
        (&["GET", "c"], "$-1\r\n"),
        (
            &["WATCH", "b"],
            "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        ),
        (&["MULTI"], "+OK\r\n"),
        (&["SET", "a", "1"], "+QUEUED\r\n"),
        (&["EXEC"], "*1\r\n+OK\r\n"),
        (&["MULTI"], "+OK\r\n"),
        (
            &["HELLO", "3"],
            "-ERR HELLO inside MULTI is not supported by this serverless endpoint\r\n",
        ),
        (&["DISCARD"], "+OK\r\n"),
    ] {
        assert_eq!(raw.cmd(command).await, reply, "{command:?}");
    }
    // Slot 15495 ("x{a}") on its way from shard 2 to shard 0: the source
    // answers -ASK, with the endpoint's address; ASKING sends the next
    // command (or transaction) to the destination.
    let (source, target) = (servers[2], servers[0]);
    let source_id: String = on_server(source, &["CLUSTER", "MYID"]).await;
    let target_id: String = on_server(target, &["CLUSTER", "MYID"]).await;
    let () = on_server(
        target,
        &["CLUSTER", "SETSLOT", "15495", "IMPORTING", &source_id],
    )
    .await;
    let () = on_server(
        source,
        &["CLUSTER", "SETSLOT", "15495", "MIGRATING", &target_id],
    )
    .await;
    let endpoint = format!("127.0.0.1:{}", stack.endpoint().port());
    assert_eq!(
        raw.cmd(&["GET", "x{a}"]).await,
        format!("-ASK 15495 {endpoint}\r\n")
    );
    for (command, reply) in [
        (&["ASKING"][..], "+OK\r\n"),
        (&["GET", "x{a}"], "$-1\r\n"),
        (&["ASKING"], "+OK\r\n"),
        (&["MULTI"], "+OK\r\n"),
        (&["SET", "x{a}", "moved"], "+QUEUED\r\n"),
        (&["EXEC"], "*1\r\n+OK\r\n"),
    ] {
        assert_eq!(raw.cmd(command).await, reply, "{command:?}");
    }
    let keys: u64 = on_server(target, &["CLUSTER", "COUNTKEYSINSLOT", "15495"]).await;
    assert_eq!(keys, 1, "written at the destination");

    // RESP2 subscribed mode: only pub/sub commands, PING, QUIT, RESET, as
    // the server allows; PING answers as a subscriber's.
    let mut subscriber = RawClient::connect(&stack).await;
    subscriber.auth_as(Kind::Serverless, "my-cache").await;
    assert_eq!(
        subscriber.cmd(&["SUBSCRIBE", "news"]).await,
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    let reply = subscriber.cmd(&["GET", "c"]).await;
    assert!(reply.starts_with("-ERR Can't execute 'get'"), "{reply}");
    assert_eq!(
        subscriber.cmd(&["PING"]).await,
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    );
    // Sharded subscriptions move once none are left.
    assert_eq!(
        subscriber.cmd(&["SSUBSCRIBE", "c"]).await,
        "*3\r\n$10\r\nssubscribe\r\n$1\r\nc\r\n:1\r\n"
    );
    let reply = subscriber.cmd(&["SSUBSCRIBE", "b"]).await;
    assert!(
        reply.starts_with("-ERR this connection's sharded"),
        "{reply}"
    );
    assert_eq!(
        subscriber.cmd(&["SUNSUBSCRIBE"]).await,
        "*3\r\n$12\r\nsunsubscribe\r\n$1\r\nc\r\n:0\r\n"
    );
    assert_eq!(
        subscriber.cmd(&["SSUBSCRIBE", "b"]).await,
        "*3\r\n$10\r\nssubscribe\r\n$1\r\nb\r\n:1\r\n"
    );
}

/// One command in RESP.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_pubsub_across_shards() {
    let stack = start(StackConfig::serverless("my-cache").cluster_mode(3, 1)).await;
    // Slots: "a" 15495 (shard 2), "b" 3300 (shard 0), "c" 7365 (shard 1).
    let mut raw = RawClient::connect(&stack).await;
    raw.hello3("my-cache").await;
    // A blocking command on one shard, a sharded subscription on another,
    // in one write: the answers in order.
    let mut both = encode(&["BLPOP", "a", "0.3"]);
    both.extend(encode(&["SSUBSCRIBE", "c"]));
    both.extend(encode(&["PING"]));
    raw.send_raw(&both).await;
    assert_eq!(raw.reply().await.unwrap(), "_\r\n");
    assert_eq!(
        raw.reply().await.unwrap(),
        ">3\r\n$10\r\nssubscribe\r\n$1\r\nc\r\n:1\r\n"
    );
    assert_eq!(raw.reply().await.unwrap(), "+PONG\r\n");
    // Sharded subscriptions stay on one shard per connection.
    let reply = raw.cmd(&["SSUBSCRIBE", "b"]).await;
    assert!(
        reply.starts_with("-ERR this connection's sharded"),
        "{reply}"
    );
    // Messages from other connections, sharded and not.
    assert_eq!(
        raw.cmd(&["SUBSCRIBE", "news"]).await,
        ">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    let mut publisher = RawClient::connect(&stack).await;
    publisher.auth_as(Kind::Serverless, "my-cache").await;
    assert_eq!(publisher.cmd(&["SPUBLISH", "c", "one"]).await, ":1\r\n");
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "two"]).await, ":1\r\n");
    let mut messages = Vec::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(Duration::from_millis(500), raw.reply())
            .await
            .expect("delivered at once");
        messages.push(message.unwrap());
    }
    messages.sort();
    assert_eq!(
        messages,
        [
            ">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$3\r\ntwo\r\n",
            ">3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$3\r\none\r\n",
        ]
    );
    // Unsubscribing from everything, each family where it is.
    let reply = raw.cmd(&["SUNSUBSCRIBE"]).await;
    assert_eq!(reply, ">3\r\n$12\r\nsunsubscribe\r\n$1\r\nc\r\n:0\r\n");
    let reply = raw.cmd(&["UNSUBSCRIBE"]).await;
    assert_eq!(reply, ">3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n");
    assert_eq!(raw.cmd(&["PING"]).await, "+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_replica_reads_after_readonly() {
    let stack = start(StackConfig::serverless("my-cache").cluster_mode(3, 1)).await;
    let servers = stack.upstream_addrs();
    let reader = stack.reader_endpoint().unwrap();
    let mut writer = RawClient::connect(&stack).await;
    writer.auth_as(Kind::Serverless, "my-cache").await;
    for key in ["a", "b", "c", "d", "e", "f"] {
        assert_eq!(writer.cmd(&["SET", key, key]).await, "+OK\r\n");
    }
    // IAM is verified at the reader endpoint too.
    let mut raw = RawClient::connect_at(&stack, reader).await;
    assert!(raw.cmd(&["GET", "a"]).await.starts_with("-NOAUTH"));
    let reply = raw
        .cmd(&[
            "AUTH",
            "iam-user-01",
            &token(Kind::ReplicationGroup, "my-cache"),
        ])
        .await;
    assert_eq!(reply, WRONGPASS);
    raw.auth_as(Kind::Serverless, "my-cache").await;
    let reader_stats = &stack.stats().nodes[1];
    assert_eq!(reader_stats.auth_ok, 1, "{reader_stats:?}");
    assert_eq!(
        reader_stats.failed("resource_type_missing"),
        1,
        "{reader_stats:?}"
    );

    let replica_gets = |servers: Vec<std::net::SocketAddr>| async move {
        let mut total = 0;
        for &replica in &servers[3..] {
            total += calls(replica, "get").await;
        }
        total
    };
    // Before READONLY, reads go to the primaries.
    let before = replica_gets(servers.clone()).await;
    assert_eq!(raw.cmd(&["GET", "a"]).await, "$1\r\na\r\n");
    assert_eq!(replica_gets(servers.clone()).await, before);
    assert_eq!(raw.cmd(&["READONLY"]).await, "+OK\r\n");
    // Replicas follow asynchronously: read until every value is there.
    for key in ["a", "b", "c", "d", "e", "f"] {
        let want = format!("${}\r\n{key}\r\n", key.len());
        let mut reply = String::new();
        for _ in 0..50 {
            reply = raw.cmd(&["GET", key]).await;
            if reply == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(reply, want, "{key}");
    }
    let served = replica_gets(servers.clone()).await - before;
    println!("GETs the replicas served after READONLY: {served}");
    assert!(served >= 6, "{served}");
    // Every replica served some: each shard's reads went to its replica.
    for &replica in &servers[3..] {
        assert!(calls(replica, "get").await > 0, "{replica}");
    }
    // Writes still go to the primaries.
    assert_eq!(raw.cmd(&["SET", "a", "again"]).await, "+OK\r\n");
    assert_eq!(writer.cmd(&["GET", "a"]).await, "$5\r\nagain\r\n");
    // READWRITE: reads from the primaries again.
    assert_eq!(raw.cmd(&["READWRITE"]).await, "+OK\r\n");
    let before = replica_gets(servers.clone()).await;
    assert_eq!(raw.cmd(&["GET", "a"]).await, "$5\r\nagain\r\n");
    assert_eq!(replica_gets(servers).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_endpoint_follows_a_failover() {
    let stack = start(StackConfig::serverless("my-cache").cluster_mode(3, 1)).await;
    let mut raw = RawClient::connect(&stack).await;
    raw.auth_as(Kind::Serverless, "my-cache").await;
    let keys = ["a", "b", "c", "d", "e", "f"];
    for key in keys {
        assert_eq!(raw.cmd(&["SET", key, key]).await, "+OK\r\n");
    }
    for shard in 0..3 {
        stack.fail_over(shard).await.unwrap();
    }
    // Each key's old primary answers -MOVED once, with the endpoint's own
    // address; the endpoint then routes to the new primary.
    let endpoint = format!("127.0.0.1:{}", stack.endpoint().port());
    let mut moved = 0;
    for key in keys {
        let want = format!("$1\r\n{key}\r\n");
        let mut reply = raw.cmd(&["GET", key]).await;
        if reply.starts_with("-MOVED") {
            moved += 1;
            assert!(reply.ends_with(&format!(" {endpoint}\r\n")), "{reply}");
            reply = raw.cmd(&["GET", key]).await;
        }
        assert_eq!(reply, want, "{key}");
        assert_eq!(raw.cmd(&["SET", key, key]).await, "+OK\r\n");
    }
    println!("-MOVED seen after failing over every shard: {moved}");
    assert!(moved >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_connection_outlives_a_killed_server() {
    let stack = start(StackConfig::serverless("my-cache").cluster_mode(3, 1)).await;
    let mut raw = RawClient::connect(&stack).await;
    raw.auth_as(Kind::Serverless, "my-cache").await;
    // "b" on shard 0 (server 0), "c" on shard 1 (server 1, replica server 4).
    assert_eq!(raw.cmd(&["SET", "b", "B"]).await, "+OK\r\n");
    assert_eq!(raw.cmd(&["SET", "c", "C"]).await, "+OK\r\n");
    // The replica has it before its primary goes.
    let mut con = support::server(stack.upstream_addrs()[4]).await;
    let () = redis::cmd("READONLY").query_async(&mut con).await.unwrap();
    for _ in 0..50 {
        let value: Option<String> = redis::cmd("GET")
            .arg("c")
            .query_async(&mut con)
            .await
            .unwrap();
        if value.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A subscriber on shard 1, with a connection to shard 0 too.
    let mut subscriber = RawClient::connect(&stack).await;
    subscriber.hello3("my-cache").await;
    assert_eq!(subscriber.cmd(&["GET", "b"]).await, "$1\r\nB\r\n");
    assert_eq!(
        subscriber.cmd(&["SSUBSCRIBE", "c"]).await,
        ">3\r\n$10\r\nssubscribe\r\n$1\r\nc\r\n:1\r\n"
    );
    stack.kill_node(1).await.unwrap();
    // Nothing waited for server 1: the connection stays, other shards work.
    assert_eq!(raw.cmd(&["GET", "b"]).await, "$1\r\nB\r\n");
    // The subscriber's subscription went with the server: its next command
    // there closes it rather than carry on without it.
    assert_eq!(subscriber.cmd(&["GET", "b"]).await, "$1\r\nB\r\n");
    subscriber.send(&["SUNSUBSCRIBE", "c"]).await;
    assert!(subscriber.closed_within(Duration::from_secs(2)).await);
    // Shard 1's keys once its replica took over, with TRYAGAIN (or a
    // -MOVED) meanwhile.
    let mut seen = Vec::new();
    let mut reply = String::new();
    for _ in 0..150 {
        reply = raw.cmd(&["GET", "c"]).await;
        if reply == "$1\r\nC\r\n" {
            break;
        }
        assert!(
            reply.starts_with("-TRYAGAIN") || reply.starts_with("-MOVED"),
            "{reply}"
        );
        seen.push(reply.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reply, "$1\r\nC\r\n");
    seen.dedup();
    println!("answers while shard 1 had no primary: {seen:?}");
    assert_eq!(raw.cmd(&["SET", "c", "again"]).await, "+OK\r\n");
}
