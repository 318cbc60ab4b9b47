//! What a pooled connection guarantees to the next borrower, against the
//! local stack and a real Valkey: blocking commands get their block time,
//! an unanswered command closes its connection, and a connection given back
//! with session state (`MULTI`, `WATCH`, `SELECT`, subscriptions, `CLIENT
//! REPLY OFF`) is replaced, never handed on.

mod support;

use std::time::Duration;

use elasticache_iam::{ErrorKind, Pool};
use elasticache_localstack::{Stack, StackConfig};
use redis::AsyncCommands;
use support::pools::{iam_config, iam_pool, real_now, start};

/// A stack of a replication group and a pool of one connection.
async fn one_connection(name: &str) -> (Stack, Pool) {
    let stack = start(StackConfig::replication_group(name)).await;
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config).max_size(1).build().await.unwrap();
    (stack, pool)
}

/// A second pool on the same stack: another client.
async fn other_pool(stack: &Stack) -> Pool {
    let config = iam_config(stack).build().unwrap();
    iam_pool(config).max_size(2).build().await.unwrap()
}

/// A plain client straight to the upstream Valkey, in `db`: what the server
/// really holds.
async fn upstream(stack: &Stack, db: i64) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://{}/{db}", stack.upstream_addr());
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_pop_gets_its_block_time_and_loses_no_job() {
    let (stack, pool) = one_connection("rg-blpop-01").await;
    let pusher = other_pool(&stack).await;

    // BLPOP 5 s with the default 1 s response timeout; the job comes at 2 s.
    let popping = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut conn = pool.get().await.unwrap();
            let started = real_now();
            let popped: Option<(String, String)> = conn.blpop("jobs", 5.0).await.unwrap();
            (popped, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let () = pusher
        .get()
        .await
        .unwrap()
        .lpush("jobs", "job-1")
        .await
        .unwrap();
    let (popped, waited) = popping.await.unwrap();
    println!("BLPOP 5 returned {popped:?} after {waited:?}");
    assert_eq!(popped, Some(("jobs".into(), "job-1".into())));
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    let left: usize = upstream(&stack, 0).await.llen("jobs").await.unwrap();
    assert_eq!(left, 0, "the job was delivered, not lost");

    // BLPOP 0 blocks until a job comes, however long (bounded here by the
    // test): no response timeout applies.
    let popping = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut conn = pool.get().await.unwrap();
            let popped: Option<(String, String)> = conn.blpop("jobs", 0.0).await.unwrap();
            popped
        }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!popping.is_finished(), "BLPOP 0 still waiting after 2.5 s");
    let () = pusher
        .get()
        .await
        .unwrap()
        .lpush("jobs", "job-2")
        .await
        .unwrap();
    let popped = tokio::time::timeout(Duration::from_secs(5), popping)
        .await
        .expect("BLPOP 0 returns once a job is pushed")
        .unwrap();
    assert_eq!(popped, Some(("jobs".into(), "job-2".into())));

    // The connection that blocked is healthy and reused.
    let mut conn = pool.get().await.unwrap();
    let () = conn.set("after", "ok").await.unwrap();
    drop(conn);
    let counts = pool.counts();
    assert_eq!(counts.discarded_unanswered, 0, "{counts:?}");
    assert_eq!(counts.connections_opened, 1, "{counts:?}");
}

/// Clients blocked in a command at the upstream Valkey, once that number
/// is `want` (waiting up to 5 s).
async fn blocked_clients(stack: &Stack, want: u64) -> u64 {
    let mut server = upstream(stack, 0).await;
    let started = real_now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut server)
            .await
            .unwrap();
        let blocked = info
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap();
        if blocked == want || started.elapsed() > Duration::from_secs(5) {
            return blocked;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_command_is_not_waited_for_longer_than_its_block_time() {
    let (stack, pool) = one_connection("rg-blpop-02").await;
    let mut conn = pool.get().await.unwrap();
    // The server stops answering for 5 s; BLPOP 1 gets 1 s plus the 1 s
    // response timeout.
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(5000)
        .arg("ALL")
        .query_async(&mut upstream(&stack, 0).await)
        .await
        .unwrap();
    let started = real_now();
    let popped: redis::RedisResult<Option<(String, String)>> = conn.blpop("nothing", 1.0).await;
    let waited = started.elapsed();
    println!("BLPOP 1 on a paused server: {popped:?} after {waited:?}");
    assert!(popped.unwrap_err().is_timeout());
    assert!(
        (Duration::from_millis(1900)..Duration::from_millis(3500)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_reply_never_arrives_closes_its_connection() {
    let (stack, pool) = one_connection("rg-cancel-01").await;
    let pusher = other_pool(&stack).await;

    // A BLPOP whose caller gives up after 300 ms (a cancelled request).
    {
        let mut conn = pool.get().await.unwrap();
        let popping = conn.blpop::<_, Option<(String, String)>>("queue", 10.0);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), popping)
                .await
                .is_err(),
            "nothing to pop yet"
        );
    }
    // Its connection was closed, so the server stops blocking for it at
    // once (left open, it would block for 10 s and pop the next job into a
    // reply nobody reads).
    assert_eq!(
        blocked_clients(&stack, 0).await,
        0,
        "the BLPOP was cancelled"
    );
    let () = pusher
        .get()
        .await
        .unwrap()
        .lpush("queue", "job")
        .await
        .unwrap();
    let left: usize = upstream(&stack, 0).await.llen("queue").await.unwrap();
    assert_eq!(left, 1, "the job waits for a live consumer");

    // The next borrower gets a new connection whose replies are its own.
    let mut conn = pool.get().await.unwrap();
    let () = conn.set("mine", "value").await.unwrap();
    let value: String = conn.get("mine").await.unwrap();
    assert_eq!(value, "value");
    let popped: Option<(String, String)> = conn.blpop("queue", 1.0).await.unwrap();
    assert_eq!(popped, Some(("queue".into(), "job".into())));
    drop(conn);

    // A reply that misses its deadline (the server paused for 2 s, the
    // response timeout 1 s): the same, and the borrower that holds the
    // connection is told it is closed.
    let mut conn = pool.get().await.unwrap();
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2000)
        .arg("ALL")
        .query_async(&mut upstream(&stack, 0).await)
        .await
        .unwrap();
    let slow: redis::RedisResult<String> = conn.get("mine").await;
    let err = slow.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let after: redis::RedisResult<String> = conn.get("mine").await;
    let err = after.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    let value: String = conn.get("mine").await.unwrap();
    assert_eq!(value, "value");
    drop(conn);

    let counts = pool.counts();
    println!("{counts:?}");
    assert_eq!(counts.discarded_unanswered, 2, "{counts:?}");
    assert_eq!(counts.connections_opened, 3, "{counts:?}");
}

/// What a borrower leaves on its connection before giving it back.
#[derive(Debug, Clone, Copy)]
enum Leftover {
    Multi,
    Watch,
    Select,
    Subscribe,
    RepliesOff,
    Reset,
}

async fn leave(conn: &mut elasticache_iam::Connection, leftover: Leftover) {
    match leftover {
        Leftover::Multi => {
            let () = redis::cmd("MULTI").query_async(conn).await.unwrap();
        }
        Leftover::Watch => {
            let () = redis::cmd("WATCH")
                .arg("balance")
                .query_async(conn)
                .await
                .unwrap();
        }
        Leftover::Select => {
            let () = redis::cmd("SELECT").arg(1).query_async(conn).await.unwrap();
        }
        Leftover::Subscribe => {
            let _: redis::Value = redis::cmd("SUBSCRIBE")
                .arg("news")
                .query_async(conn)
                .await
                .unwrap();
        }
        Leftover::Reset => {
            let _: redis::Value = redis::cmd("RESET").query_async(conn).await.unwrap();
        }
        Leftover::RepliesOff => {
            let _: redis::Value = redis::cmd("CLIENT")
                .arg("REPLY")
                .arg("OFF")
                .query_async(conn)
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_given_back_with_session_state_is_replaced() {
    let (stack, pool) = one_connection("rg-dirty-01").await;
    let mut truth = upstream(&stack, 0).await;
    let cases = [
        Leftover::Multi,
        Leftover::Watch,
        Leftover::Select,
        Leftover::Subscribe,
        Leftover::RepliesOff,
        Leftover::Reset,
    ];
    for (i, leftover) in cases.into_iter().enumerate() {
        {
            let mut conn = pool.get().await.unwrap();
            leave(&mut conn, leftover).await;
            // Given back here, as an early return or a cancelled request would.
        }
        let key = format!("written:{i}");
        let mut conn = pool.get().await.unwrap();
        let () = conn.set(&key, "landed").await.unwrap();
        // The write really ran, in database 0.
        let seen: Option<String> = truth.get(&key).await.unwrap();
        assert_eq!(seen.as_deref(), Some("landed"), "after {leftover:?}");
        // A transaction with a WATCH commits.
        let () = redis::cmd("WATCH")
            .arg("balance")
            .query_async(&mut *conn)
            .await
            .unwrap();
        let result: Option<(i64,)> = redis::pipe()
            .atomic()
            .incr("balance", 10)
            .query_async(&mut *conn)
            .await
            .unwrap();
        assert!(
            result.is_some(),
            "after {leftover:?}: the transaction committed"
        );
        drop(conn);
        let counts = pool.counts();
        assert_eq!(
            counts.discarded_dirty,
            i as u64 + 1,
            "after {leftover:?}: {counts:?}"
        );
    }
    let balance: i64 = truth.get("balance").await.unwrap();
    assert_eq!(balance, 60);
    let health = pool.health().await;
    assert!(health.ok, "{health:?}");
    assert_eq!(health.counts.discarded_dirty, 6, "{:?}", health.counts);
    assert_eq!(health.counts.discarded_unanswered, 0, "{:?}", health.counts);
    assert_eq!(stack.stats().failed_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_commands_and_atomic_pipelines_leave_nothing_behind() {
    let stack = start(StackConfig::replication_group("rg-mixed-01")).await;
    let config = iam_config(&stack).build().unwrap();
    // Generous timeouts: this counts discards, not latency on a busy machine.
    let pool = iam_pool(config)
        .max_size(4)
        .response_timeout(Some(Duration::from_secs(10)))
        .build()
        .await
        .unwrap();

    const WORKERS: usize = 8;
    const EACH: usize = 1250; // 10,000 operations in all
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                let mut conn = pool.get().await.unwrap();
                let key = format!("mixed:{worker}:{}", n % 7);
                match n % 8 {
                    0 => {
                        let () = conn.set(&key, n).await.unwrap();
                    }
                    1 => {
                        let _: Option<String> = conn.get(&key).await.unwrap();
                    }
                    2 => {
                        // SELECT of the configured database inside: its
                        // reply comes back in EXEC's.
                        let _: (String, i64, i64) = redis::pipe()
                            .atomic()
                            .cmd("SELECT")
                            .arg(0)
                            .incr(&key, 1)
                            .incr(&key, 1)
                            .query_async(&mut *conn)
                            .await
                            .unwrap();
                    }
                    3 => {
                        // WATCH, then an atomic pipeline: EXEC ends the WATCH.
                        let () = redis::cmd("WATCH")
                            .arg(&key)
                            .query_async(&mut *conn)
                            .await
                            .unwrap();
                        let _: Option<(i64,)> = redis::pipe()
                            .atomic()
                            .incr(&key, 1)
                            .query_async(&mut *conn)
                            .await
                            .unwrap();
                    }
                    4 => {
                        // MULTI ... EXEC as single commands.
                        let () = redis::cmd("MULTI").query_async(&mut *conn).await.unwrap();
                        let _: redis::Value = redis::cmd("INCR")
                            .arg(&key)
                            .query_async(&mut *conn)
                            .await
                            .unwrap();
                        let _: redis::Value =
                            redis::cmd("EXEC").query_async(&mut *conn).await.unwrap();
                    }
                    5 => {
                        // A plain pipeline, and SELECT of the configured db.
                        let _: (String, i64) = redis::pipe()
                            .cmd("SELECT")
                            .arg(0)
                            .cmd("EXISTS")
                            .arg(&key)
                            .query_async(&mut *conn)
                            .await
                            .unwrap();
                    }
                    6 => {
                        // WATCH given up with UNWATCH.
                        let () = redis::cmd("WATCH")
                            .arg(&key)
                            .query_async(&mut *conn)
                            .await
                            .unwrap();
                        let () = redis::cmd("UNWATCH").query_async(&mut *conn).await.unwrap();
                    }
                    _ => {
                        // A server error is an answer, not a broken connection.
                        let _ = conn.hget::<_, _, Option<String>>(&key, "f").await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let counts = pool.counts();
    println!("10,000 mixed operations: {counts:?}");
    assert_eq!(counts.discarded_dirty, 0, "{counts:?}");
    assert_eq!(counts.discarded_unanswered, 0, "{counts:?}");
    assert_eq!(counts.closed_by_server, 0, "{counts:?}");
    assert!(counts.connections_opened <= 4, "{counts:?}");
}

/// With both connections of a `max_size(2)` pool held, a caller C waits.
/// Authentication is then refused, and A gives its connection back dirty,
/// so its replacement is refused. Returns C's task.
async fn refusal_while_c_waits<'a>(
    stack: &Stack,
    pool: &'a Pool,
) -> (
    tokio::task::JoinHandle<Result<(), elasticache_iam::Error>>,
    bb8::PooledConnection<'a, elasticache_iam::Manager>,
) {
    let mut a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut conn = pool.get().await?;
            let () = conn.set("c", "1").await.unwrap();
            Ok(())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refusals = stack.stats().failed("fault_injected");
    stack.faults().reject_next_auths(u64::MAX);
    let () = redis::cmd("SELECT")
        .arg(1)
        .query_async(&mut *a)
        .await
        .unwrap();
    drop(a);
    let refused = async {
        while stack.stats().failed("fault_injected") == refusals {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), refused)
        .await
        .expect("the replacement attempt was refused");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "C still waits");
    (waiting, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_callers_are_failed_only_by_failures_that_concern_them() {
    let stack = start(StackConfig::replication_group("rg-waiters-01")).await;
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config)
        .max_size(2)
        .connection_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();

    // B gives its connection back: C gets it, not the refusal.
    let (waiting, b) = refusal_while_c_waits(&stack, &pool).await;
    drop(b);
    waiting
        .await
        .unwrap()
        .expect("C gets the connection B gave back");

    // Again (on a new pool: the old one still reports its refusals until
    // its backoff lets an attempt through), but B keeps its connection:
    // C's timeout says the pool was busy.
    stack.faults().reject_next_auths(0);
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config)
        .max_size(2)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let (waiting, b) = refusal_while_c_waits(&stack, &pool).await;
    let err = waiting.await.unwrap().unwrap_err();
    println!("{err}");
    assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
    assert!(err.to_string().contains("the pool was busy"), "{err}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_would_misdirect_replies_is_refused_unsent() {
    let (stack, pool) = one_connection("rg-pipeline-01").await;
    let mut conn = pool.get().await.unwrap();
    let commands_before = stack.stats().commands;
    let cases = [
        redis::pipe()
            .cmd("SUBSCRIBE")
            .arg("a")
            .arg("b")
            .cmd("GET")
            .arg("k")
            .clone(),
        redis::pipe()
            .cmd("CLIENT")
            .arg("REPLY")
            .arg("OFF")
            .cmd("SET")
            .arg("k")
            .arg("v")
            .clone(),
        redis::pipe().cmd("MONITOR").cmd("GET").arg("k").clone(),
        redis::pipe().cmd("RESET").cmd("GET").arg("k").clone(),
    ];
    for pipeline in cases {
        let err = pipeline
            .query_async::<redis::Value>(&mut *conn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("pipeline"), "{err}");
    }
    assert_eq!(stack.stats().commands, commands_before, "nothing was sent");
    // The connection is as it was, and stays in the pool.
    let () = conn.set("k", "v").await.unwrap();
    drop(conn);
    assert_eq!(pool.counts().discarded_dirty, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_connections_close_on_an_abandoned_command_too() {
    let stack = start(StackConfig::serverless("cancel-serverless-01")).await;
    let config = iam_config(&stack).build().unwrap();
    let pool = iam_pool(config).max_size(1).build().await.unwrap();
    assert!(pool.is_cluster());
    {
        let mut conn = pool.get().await.unwrap();
        let popping = conn.blpop::<_, Option<(String, String)>>("queue", 10.0);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), popping)
                .await
                .is_err()
        );
        // Still held: the abandoned BLPOP's connection is closed already.
        assert_eq!(
            blocked_clients(&stack, 0).await,
            0,
            "the BLPOP was cancelled"
        );
        let err = conn.get::<_, Option<String>>("k").await.unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
    }
    let mut conn = pool.get().await.unwrap();
    let () = conn.lpush("queue", "job").await.unwrap();
    let popped: Option<(String, String)> = conn.blpop("queue", 1.0).await.unwrap();
    assert_eq!(popped, Some(("queue".into(), "job".into())));
    drop(conn);
    assert_eq!(pool.counts().discarded_unanswered, 1);
}
