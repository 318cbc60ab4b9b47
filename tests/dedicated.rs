//! Dedicated connections held for a minute under the scaled 12-hour rule
//! (the stack cuts 8 s after the last authentication; re-auth after 3.6-4 s,
//! deadline 5.7-6 s): a subscriber and a `BLPOP 0` worker loop, against the
//! local stack in real time.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use elasticache_iam::{SharedConnection, SharedConnectionBuilder};
use elasticache_localstack::{Stack, StackConfig};
use redis::AsyncCommands;
use support::capture::Capture;
use support::pools::{
    SCALED_MAX_AUTH_AGE, iam_config, real_now, scaled, start, static_credentials,
};

async fn scaled_stack(config: StackConfig) -> (Arc<Stack>, SharedConnectionBuilder) {
    let stack = Arc::new(start(config.max_auth_age(SCALED_MAX_AUTH_AGE)).await);
    let builder = SharedConnection::builder(scaled(iam_config(&stack)))
        .credentials_provider(static_credentials());
    (stack, builder)
}

/// A subscriber to a channel and a pattern for 60 s, while a publisher
/// sends a numbered message every 20 ms to each; at 30 s every connection is
/// dropped. Every message published while the subscriber was subscribed
/// (`PUBLISH` counted a receiver) arrives; the stack cuts nothing; the
/// subscriber re-authenticates while subscribed, re-subscribes by itself
/// after the drop and counts one gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_held_for_a_minute_receives_everything_and_reports_its_gap() {
    // Every thread's events, for the gap's report (the subscriber's task runs
    // on the runtime's threads).
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.subscriber()).unwrap();
    let (stack, builder) = scaled_stack(StackConfig::replication_group("rg-subscriber-01")).await;
    let mut subscriber = builder.build_subscriber().await.unwrap();
    subscriber.subscribe("news").await.unwrap();
    subscriber.psubscribe("events.*").await.unwrap();
    let publisher = SharedConnection::builder(scaled(iam_config(&stack)))
        .credentials_provider(static_credentials())
        .build()
        .await
        .unwrap();

    let publishing = tokio::spawn({
        let mut publisher = publisher.clone();
        let stack = Arc::clone(&stack);
        async move {
            let started = real_now();
            let mut delivered = BTreeSet::new();
            let mut dropped = false;
            let mut n = 0u64;
            while started.elapsed() < Duration::from_secs(60) {
                if !dropped && started.elapsed() >= Duration::from_secs(30) {
                    stack.drop_all_connections();
                    dropped = true;
                }
                n += 1;
                for channel in ["news", "events.1"] {
                    let receivers: Result<u64, _> = publisher.publish(channel, n).await;
                    if receivers.is_ok_and(|r| r > 0) {
                        delivered.insert(format!("{channel}:{n}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _: Result<u64, _> = publisher.publish("news", "end").await;
            (delivered, n)
        }
    });
    let mut received = BTreeSet::new();
    let mut duplicates = 0;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(70), subscriber.next_message()).await
    {
        let payload: String = message.get_payload().unwrap();
        if payload == "end" {
            break;
        }
        if !received.insert(format!("{}:{payload}", message.get_channel_name())) {
            duplicates += 1;
        }
    }
    let (delivered, published) = publishing.await.unwrap();
    let stats = stack.stats();
    let counts = subscriber.counts();
    let missing: Vec<&String> = delivered.difference(&received).collect();
    println!(
        "published {published} per channel, {} delivered, {} received, {duplicates} twice, \
         missing {missing:?}\nstack: {stats:?}\ncounts: {counts:?}",
        delivered.len(),
        received.len()
    );
    assert!(missing.is_empty(), "lost while subscribed: {missing:?}");
    // No deadline replacement (re-authentication succeeds): nothing twice.
    assert_eq!(duplicates, 0);
    assert!(delivered.len() > 4_000, "the run ran: {}", delivered.len());
    // Messages published during the gap reached nobody, and were not counted.
    assert!(delivered.len() < 2 * published as usize);
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert_eq!(counts.subscription_gaps, 1, "{counts:?}");
    let log = capture.text();
    let report = log
        .lines()
        .find(|line| line.contains("re-subscribed"))
        .unwrap_or_else(|| panic!("no report of the gap in:\n{log}"));
    let gap_ms: u64 = report
        .split("gap_ms=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {report}"));
    println!("{report}");
    assert!(gap_ms < 5_000, "{report}");
    // Fourteen re-authentications and two connections, at TRACE: no token.
    assert!(!log.contains("X-Amz-Signature"), "a token in the log");
    assert!(
        counts.reauths >= 10,
        "re-authenticated while subscribed: {counts:?}"
    );
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
}

/// A `BLPOP 0` worker loop on a dedicated connection for 60 s: jobs come in
/// bursts with quiet spells of 10 s, longer than the stack's 8-second cut,
/// during which the loop is blocked. Every job arrives exactly once, in
/// order, and the stack cuts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blpop_loop_held_for_a_minute_gets_every_job_once() {
    let (stack, builder) = scaled_stack(StackConfig::replication_group("rg-blocking-01")).await;
    let mut worker = builder.build_blocking().await.unwrap();
    let producer = SharedConnection::builder(scaled(iam_config(&stack)))
        .credentials_provider(static_credentials())
        .build()
        .await
        .unwrap();

    let producing = tokio::spawn({
        let mut producer = producer.clone();
        async move {
            let started = real_now();
            let mut n = 0u64;
            while started.elapsed() < Duration::from_secs(60) {
                // 10 s of a job every 10 ms, then 10 s of nothing.
                let quiet = (started.elapsed().as_secs() / 10) % 2 == 1;
                if !quiet {
                    n += 1;
                    let _: u64 = producer.rpush("jobs", n).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _: u64 = producer.rpush("jobs", 0).await.unwrap();
            n
        }
    });
    let mut jobs = Vec::new();
    loop {
        let (_, job): (String, u64) = worker.blpop("jobs", 0.0).await.unwrap();
        if job == 0 {
            break;
        }
        jobs.push(job);
    }
    let pushed = producing.await.unwrap();
    let stats = stack.stats();
    let counts = worker.counts();
    println!(
        "{pushed} pushed, {} popped\nstack: {stats:?}\ncounts: {counts:?}",
        jobs.len()
    );
    assert_eq!(
        jobs,
        (1..=pushed).collect::<Vec<_>>(),
        "each job once, in order"
    );
    assert!(pushed > 1_000, "{pushed}");
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
    assert!(counts.reauths >= 10, "{counts:?}");
    let left: Vec<u64> = producer.clone().lrange("jobs", 0, -1).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// In cluster mode (3 shards, 1 replica each), a subscriber to shard
/// channels on every shard and to a classic channel, for 30 s under the
/// scaled rule: every message published while it was subscribed arrives,
/// every node re-authenticates while subscribed, and the stack cuts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_subscriber_to_shard_channels_receives_everything() {
    let (stack, builder) =
        scaled_stack(StackConfig::replication_group("rg-subscriber-02").cluster_mode(3, 1)).await;
    let mut subscriber = builder.cluster_mode(true).build_subscriber().await.unwrap();
    // {a}, {b} and {c} hash to slots 15495, 3300 and 7365: three shards.
    let shard_channels = ["orders{a}", "orders{b}", "orders{c}"];
    for channel in shard_channels {
        // One slot per SSUBSCRIBE, as on the server.
        subscriber.ssubscribe(channel).await.unwrap();
    }
    subscriber.subscribe("news").await.unwrap();
    let publisher = SharedConnection::builder(scaled(iam_config(&stack)))
        .credentials_provider(static_credentials())
        .cluster_mode(true)
        .build()
        .await
        .unwrap();

    let publishing = tokio::spawn({
        let mut publisher = publisher.clone();
        async move {
            let started = real_now();
            let mut delivered = BTreeSet::new();
            let mut n = 0u64;
            while started.elapsed() < Duration::from_secs(30) {
                n += 1;
                for channel in shard_channels {
                    let receivers: u64 = redis::cmd("SPUBLISH")
                        .arg(channel)
                        .arg(n)
                        .query_async(&mut publisher)
                        .await
                        .unwrap();
                    if receivers > 0 {
                        delivered.insert(format!("{channel}:{n}"));
                    }
                }
                let receivers: u64 = publisher.publish("news", n).await.unwrap();
                if receivers > 0 {
                    delivered.insert(format!("news:{n}"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _: u64 = publisher.publish("news", "end").await.unwrap();
            delivered
        }
    });
    let mut received = BTreeSet::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(40), subscriber.next_message()).await
    {
        let payload: String = message.get_payload().unwrap();
        if payload == "end" {
            break;
        }
        received.insert(format!("{}:{payload}", message.get_channel_name()));
    }
    let delivered = publishing.await.unwrap();
    let stats = stack.stats();
    let counts = subscriber.counts();
    let missing: Vec<&String> = delivered.difference(&received).collect();
    println!(
        "{} delivered, {} received, missing {missing:?}\nstack: {stats:?}\ncounts: {counts:?}",
        delivered.len(),
        received.len()
    );
    assert!(missing.is_empty(), "{missing:?}");
    assert!(delivered.len() > 4_000, "{}", delivered.len());
    for channel in shard_channels {
        assert!(delivered.contains(&format!("{channel}:1")), "{channel}");
    }
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
    assert_eq!(counts.subscription_gaps, 0, "{counts:?}");
    assert!(counts.reauths >= 6, "{counts:?}");
}
