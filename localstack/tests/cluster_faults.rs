//! Cluster faults under load: 16 workers write through one redis-rs cluster
//! client (authenticated by this crate's refresher) while a shard fails over
//! and 1,000 slots move, or while a primary is killed and restarted. Every
//! key written is readable afterwards and the client recovers by itself; the
//! errors workers saw are printed with their time relative to the fault.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use elasticache_localstack::{Mode, Stack, StackConfig};
use redis::TlsCertificates;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use tokio::task::JoinSet;

const WORKERS: usize = 16;

#[allow(
    clippy::disallowed_types,
    reason = "times relative to the fault, printed"
)]
type Clock = std::time::Instant;

#[allow(
    clippy::disallowed_methods,
    reason = "times relative to the fault, printed"
)]
fn now() -> Clock {
    Clock::now()
}

/// What one worker did: how many keys it wrote (`w{worker}:{n}` = n for n
/// below it), and the errors it saw (time relative to the fault, message).
struct Work {
    written: usize,
    written_before_fault: usize,
    errors: Vec<(f64, String)>,
}

async fn client(stack: &Stack) -> ClusterConnection {
    let kind = match stack.mode() {
        Mode::Serverless => support::Kind::Serverless,
        _ => support::Kind::ReplicationGroup,
    };
    let refresher = support::refresher(kind, stack.cache_name()).await;
    let seed = format!("rediss://127.0.0.1:{}", stack.endpoint().port());
    ClusterClientBuilder::new(vec![seed])
        .certs(TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(stack.ca_file()).unwrap()),
        })
        .set_credentials_provider(refresher)
        // A request redis-rs never answers (it does not always recover a
        // connection to a killed node) fails instead of hanging the test.
        .response_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// Runs `WORKERS` writers while `fault` runs (after a short warm-up), then
/// checks every key and that each worker wrote after the fault.
async fn under_load(stack: &Stack, fault: impl AsyncFnOnce(&Stack)) {
    let con = client(stack).await;
    let stop = Arc::new(AtomicBool::new(false));
    let fault_started: Arc<std::sync::OnceLock<Clock>> = Arc::default();
    let mut workers = JoinSet::new();
    for worker in 0..WORKERS {
        let (mut con, stop, fault_started) = (con.clone(), stop.clone(), fault_started.clone());
        workers.spawn(async move {
            let mut work = Work {
                written: 0,
                written_before_fault: 0,
                errors: Vec::new(),
            };
            while !stop.load(Ordering::SeqCst) {
                let n = work.written;
                let result: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(format!("w{worker}:{n}"))
                    .arg(n)
                    .query_async(&mut con)
                    .await;
                match result {
                    Ok(()) => {
                        work.written += 1;
                        if fault_started.get().is_none() {
                            work.written_before_fault = work.written;
                        }
                    }
                    Err(e) => {
                        let at = fault_started
                            .get()
                            .map_or(0.0, |t| now().duration_since(*t).as_secs_f64());
                        work.errors.push((at, e.to_string()));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (worker, work)
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = fault_started.set(now());
    fault(stack).await;
    let fault_ended = now().duration_since(*fault_started.get().unwrap());
    println!("fault done in {:.2} s", fault_ended.as_secs_f64());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);

    let mut total = 0;
    let mut errors = 0;
    let mut readers = JoinSet::new();
    while let Some(done) = workers.join_next().await {
        let (worker, work) = done.unwrap();
        for (at, error) in &work.errors {
            println!("worker {worker}: error at {at:+.3} s: {error}");
        }
        assert!(
            work.written > work.written_before_fault,
            "worker {worker} wrote nothing after the fault"
        );
        total += work.written;
        errors += work.errors.len();
        let mut reader = con.clone();
        readers.spawn(async move {
            for n in 0..work.written {
                let value: Option<usize> = redis::cmd("GET")
                    .arg(format!("w{worker}:{n}"))
                    .query_async(&mut reader)
                    .await
                    .unwrap();
                assert_eq!(value, Some(n), "w{worker}:{n}");
            }
        });
    }
    while let Some(read) = readers.join_next().await {
        read.unwrap();
    }
    println!("{total} keys written by {WORKERS} workers and read back; {errors} errors seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_and_a_live_migration_of_1000_slots() {
    let stack = support::start(StackConfig::replication_group("my-group").cluster_mode(3, 1)).await;
    under_load(&stack, async |stack| {
        let at = now();
        let (old, new) = stack.fail_over(0).await.unwrap();
        println!(
            "shard 0 failed over in {:.2} s: node {new} took over from node {old}",
            at.elapsed().as_secs_f64()
        );
        let at = now();
        let slots = stack.migrate_slots(1, 2, 1000).await.unwrap();
        println!(
            "{} slots moved from shard 1 to shard 2 in {:.2} s",
            slots.len(),
            at.elapsed().as_secs_f64()
        );
        assert_eq!(slots.len(), 1000);
    })
    .await;
    // The topology the fronts show now: node 3 serves shard 0, shard 2 has
    // 1,000 more slots.
    let mut raw = support::RawClient::connect(&stack).await;
    raw.auth_as(support::Kind::ReplicationGroup, "my-group")
        .await;
    let nodes = raw.cmd(&["CLUSTER", "NODES"]).await;
    let front = |i: usize| format!("127.0.0.1:{}@", stack.node_endpoints()[i].port());
    let line = |i: usize| {
        nodes
            .lines()
            .find(|l| l.contains(&front(i)))
            .unwrap()
            .to_owned()
    };
    assert!(line(3).contains("master"), "{nodes}");
    assert!(line(0).contains("slave"), "{nodes}");
    // Shard 1 gave 1,000 of its 5,461 slots to shard 2 (5,462 before).
    assert_eq!(slot_count(&line(1)), 5461 - 1000, "{nodes}");
    assert_eq!(slot_count(&line(2)), 5462 + 1000, "{nodes}");
}

/// How many slots a `CLUSTER NODES` line's node owns.
fn slot_count(line: &str) -> usize {
    line.split(' ')
        .skip(8)
        .filter(|s| !s.starts_with('['))
        .map(|range| match range.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serverless_cache_through_a_failover_and_a_live_migration() {
    let stack = support::start(StackConfig::serverless("my-cache").cluster_mode(3, 1)).await;
    under_load(&stack, async |stack| {
        let (old, new) = stack.fail_over(0).await.unwrap();
        println!("shard 0 failed over: server {new} took over from server {old}");
        let at = now();
        let slots = stack.migrate_slots(1, 2, 1000).await.unwrap();
        println!(
            "{} slots moved from shard 1 to shard 2 in {:.2} s behind the endpoint",
            slots.len(),
            at.elapsed().as_secs_f64()
        );
        assert_eq!(slots.len(), 1000);
    })
    .await;
    // The servers' own view: shard 2 has 1,000 more slots.
    let nodes: String = support::on_server(stack.upstream_addrs()[2], &["CLUSTER", "NODES"]).await;
    let mine = nodes.lines().find(|l| l.contains("myself")).unwrap();
    assert_eq!(slot_count(mine), 5462 + 1000, "{nodes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serverless_cache_when_the_primary_of_slot_0_is_killed() {
    let stack = support::start(StackConfig::serverless("my-cache").cluster_mode(3, 1)).await;
    under_load(&stack, async |stack| {
        // Every connection of the endpoint has one to this server.
        stack.kill_node(0).await.unwrap();
        let mut con = support::server(stack.upstream_addrs()[3]).await;
        let at = now();
        loop {
            let role: redis::Value = redis::cmd("ROLE").query_async(&mut con).await.unwrap();
            if format!("{role:?}").contains("master") {
                break;
            }
            assert!(at.elapsed() < Duration::from_secs(15), "no takeover");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("server 3 took over in {:.2} s", at.elapsed().as_secs_f64());
    })
    .await;
    // New connections authenticate: the endpoint found slot 0's new primary.
    let mut raw = support::RawClient::connect(&stack).await;
    raw.auth_as(support::Kind::Serverless, "my-cache").await;
    assert_eq!(raw.cmd(&["PING"]).await, "+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_and_rejoins_when_restarted() {
    let stack = support::start(StackConfig::replication_group("my-group").cluster_mode(3, 1)).await;
    under_load(&stack, async |stack| {
        stack.kill_node(0).await.unwrap();
        // The replica (node 3) takes over once the others mark node 0 failed.
        let mut raw = support::RawClient::connect_at(stack, stack.node_endpoints()[3]).await;
        raw.auth_as(support::Kind::ReplicationGroup, "my-group")
            .await;
        let at = now();
        loop {
            let role = raw.cmd(&["ROLE"]).await;
            if role.contains("master") {
                break;
            }
            assert!(
                at.elapsed() < Duration::from_secs(15),
                "no takeover: {role}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("node 3 took over in {:.2} s", at.elapsed().as_secs_f64());
        stack.restart_node(0).await.unwrap();
    })
    .await;
    // Node 0 is back, as a replica of node 3.
    let mut raw = support::RawClient::connect_at(&stack, stack.node_endpoints()[0]).await;
    raw.auth_as(support::Kind::ReplicationGroup, "my-group")
        .await;
    let role = raw.cmd(&["ROLE"]).await;
    assert!(role.contains("slave"), "{role}");
}
