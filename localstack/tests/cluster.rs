//! The real Valkey cluster upstream: formed by the stack itself, every slot
//! served, replicas following their primaries.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use elasticache_localstack::{Cluster, ClusterNode, Engine};
use redis::{RedisResult, Value};

async fn connect(node: &ClusterNode) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{}", node.addr))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::disallowed_methods,
    reason = "the start-up time of real processes, printed"
)]
async fn three_shards_with_a_replica_each_form_and_serve_every_slot() {
    let started = Instant::now();
    let cluster = Cluster::start(Engine::Valkey, None, 3, 1)
        .await
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    println!(
        "3 shards x (1 + 1 replica) formed in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 6);
    assert_eq!(nodes.iter().filter(|n| n.primary).count(), 3);

    for node in &nodes {
        let mut conn = connect(node).await;
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(info.contains("cluster_state:ok"), "{info}");
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_known_nodes:6"), "{info}");
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
        let role = match &role[0] {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        };
        let expected = if node.primary { "master" } else { "slave" };
        assert_eq!(role, expected, "{node:?}");
    }

    // Each key goes to the primary that owns its slot (a MOVED names it).
    let primaries: BTreeMap<String, &ClusterNode> = nodes
        .iter()
        .filter(|n| n.primary)
        .map(|n| (n.addr.to_string(), n))
        .collect();
    let mut conns = BTreeMap::new();
    for (addr, node) in &primaries {
        conns.insert(addr.clone(), connect(node).await);
    }
    let first = primaries.keys().next().unwrap().clone();
    let mut shards_used = HashSet::new();
    for i in 0..300 {
        let key = format!("key:{i}");
        let conn = conns.get_mut(&first).unwrap();
        let result: RedisResult<()> = redis::cmd("SET").arg(&key).arg(i).query_async(conn).await;
        let owner = match result {
            Ok(()) => first.clone(),
            Err(err) => {
                let (target, _slot) = err.redirect_node().unwrap_or_else(|| panic!("{err}"));
                let target = target.to_owned();
                let conn = conns.get_mut(&target).unwrap_or_else(|| panic!("{target}"));
                let () = redis::cmd("SET")
                    .arg(&key)
                    .arg(i)
                    .query_async(conn)
                    .await
                    .unwrap();
                target
            }
        };
        shards_used.insert(primaries[&owner].shard);
    }
    assert_eq!(shards_used.len(), 3, "keys spread over every shard");

    // Each replica holds its primary's keys.
    for replica in nodes.iter().filter(|n| !n.primary) {
        let primary = nodes
            .iter()
            .find(|n| n.primary && n.shard == replica.shard)
            .unwrap();
        let mut conn = conns.get_mut(&primary.addr.to_string()).unwrap().clone();
        let primary_keys: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(acked, 1);
        let mut conn = connect(replica).await;
        let replica_keys: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        assert!(primary_keys > 0);
        assert_eq!(replica_keys, primary_keys, "{replica:?}");
    }
}

#[tokio::test]
async fn impossible_layouts_are_refused() {
    let err = Cluster::start(Engine::Valkey, None, 0, 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 to 16384 shards"), "{err}");
}
