//! Connections held by their borrower through the scaled 12-hour rule (the
//! stack cuts 8 s after the last authentication; refresh every 2 s, re-auth
//! after 3.6-4 s, replacement by 5.7-6 s): they re-authenticate on their own
//! command path, never inside a transaction, and are never cut.

mod support;

use std::time::Duration;

use elasticache_localstack::StackConfig;
use redis::AsyncCommands;
use support::pools::{real_now, scaled_stack_and_pool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_held_for_20_s_and_used_every_200_ms_is_never_cut() {
    let (stack, pool) =
        scaled_stack_and_pool(StackConfig::replication_group("rg-held-01"), 2).await;
    let mut conn = pool.get().await.unwrap();
    let started = real_now();
    let mut failures = Vec::new();
    for n in 0..100u32 {
        let at = started.elapsed();
        let result: redis::RedisResult<u32> = async {
            let () = conn.set("held", n).await?;
            conn.get("held").await
        }
        .await;
        match result {
            Ok(read) if read == n => {}
            other => failures.push((at, format!("{other:?}"))),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(conn);
    let stats = stack.stats();
    let counts = pool.counts();
    println!(
        "held {:?}: {} failed\nstack: {stats:?}\ncounts: {counts:?}",
        started.elapsed(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
    // 20 s at one re-auth every 3.6-4 s, all on the held connection.
    assert!(stats.reauth_ok >= 4, "{stats:?}");
    assert_eq!(counts.reauths, stats.reauth_ok, "{counts:?}");
    assert_eq!(counts.connections_opened, 1, "one connection: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reauthentication_inside_an_open_transaction() {
    let (stack, pool) =
        scaled_stack_and_pool(StackConfig::replication_group("rg-held-02"), 2).await;
    let mut conn = pool.get().await.unwrap();
    let started = real_now();

    // MULTI at 3 s, commands queued across the re-auth point (3.6-4 s),
    // EXEC at 5 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let () = redis::cmd("MULTI").query_async(&mut *conn).await.unwrap();
    for n in 0..10 {
        let queued: String = redis::cmd("INCR")
            .arg("in-transaction")
            .query_async(&mut *conn)
            .await
            .unwrap();
        assert_eq!(queued, "QUEUED", "command {n}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "past the re-auth point"
    );
    let during = stack.stats();
    let results: Vec<i64> = redis::cmd("EXEC").query_async(&mut *conn).await.unwrap();
    assert_eq!(
        results,
        (1..=10).collect::<Vec<_>>(),
        "the transaction committed"
    );
    assert_eq!(
        during.reauth_ok, 0,
        "not re-authenticated in MULTI: {during:?}"
    );

    // After EXEC, the next command re-authenticates, and the connection
    // lives on past the stack's 8 s cut.
    for _ in 0..40 {
        let _: i64 = conn.get("in-transaction").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(conn);
    let stats = stack.stats();
    println!(
        "after {:?}: {stats:?}\n{:?}",
        started.elapsed(),
        pool.counts()
    );
    assert_eq!(stats.failed("reauth_in_multi"), 0, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert!(stats.reauth_ok >= 2, "{stats:?}");
    assert_eq!(pool.counts().reauth_failures, 0);
}

/// The re-authentication's `AUTH` and the borrower's `MULTI` leave together;
/// the AUTH must reach the server first even when the borrower's task has
/// spent its tokio budget (then every channel send in that poll returns
/// `Pending`, and an unbiased join would let the `MULTI` go first, putting
/// the AUTH inside the transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reauthentication_goes_before_the_command_it_rides_with() {
    let (stack, pool) =
        scaled_stack_and_pool(StackConfig::replication_group("rg-held-03"), 2).await;
    let mut conn = pool.get().await.unwrap();
    let () = conn.set("counter", 1).await.unwrap();
    // Past the re-auth point (3.6-4 s), well before the cut (8 s).
    tokio::time::sleep(Duration::from_millis(4200)).await;
    while tokio::task::coop::has_budget_remaining() {
        tokio::task::coop::consume_budget().await;
    }
    let () = redis::cmd("MULTI").query_async(&mut *conn).await.unwrap();
    let queued: String = redis::cmd("INCR")
        .arg("counter")
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(queued, "QUEUED");
    let results: Vec<i64> = redis::cmd("EXEC").query_async(&mut *conn).await.unwrap();
    assert_eq!(
        results,
        [2],
        "only the borrower's command ran in the transaction"
    );
    drop(conn);
    let stats = stack.stats();
    let counts = pool.counts();
    println!("{stats:?}\n{counts:?}");
    assert_eq!(stats.failed("reauth_in_multi"), 0, "{stats:?}");
    assert_eq!(stats.reauth_ok, 1, "{stats:?}");
    assert_eq!(
        (counts.reauths, counts.reauth_failures),
        (1, 0),
        "{counts:?}"
    );
}
