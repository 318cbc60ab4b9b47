//! Pub/sub through the front in RESP3: pushes are passed on as they arrive,
//! whether or not a command waits for its reply, and the order of replies is
//! kept around them.

mod support;

use std::time::Duration;

use elasticache_localstack::{Stack, StackConfig};
use support::{RawClient, serverless_token, start};

const CACHE: &str = "pubsub-cache";

/// A client authenticated with `HELLO 3 AUTH`.
async fn resp3(stack: &Stack) -> RawClient {
    let mut c = RawClient::connect(stack).await;
    let hello = c
        .cmd(&[
            "HELLO",
            "3",
            "AUTH",
            "iam-user-01",
            &serverless_token(CACHE),
        ])
        .await;
    assert!(hello.starts_with('%'), "{hello}");
    c
}

fn push(items: &[&str]) -> String {
    let mut out = format!(">{}\r\n", items.len());
    for item in items {
        match item.strip_prefix(':') {
            Some(n) => out.push_str(&format!(":{n}\r\n")),
            None => out.push_str(&format!("${}\r\n{item}\r\n", item.len())),
        }
    }
    out
}

/// The next reply, if one arrives within `within`.
async fn reply_within(c: &mut RawClient, within: Duration) -> Option<String> {
    tokio::time::timeout(within, c.reply()).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_with_no_command_pending() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut subscriber = resp3(&stack).await;
    subscriber.send(&["SUBSCRIBE", "news", "sport"]).await;
    assert_eq!(
        subscriber.reply().await.unwrap(),
        push(&["subscribe", "news", ":1"])
    );
    assert_eq!(
        subscriber.reply().await.unwrap(),
        push(&["subscribe", "sport", ":2"])
    );
    let mut publisher = RawClient::connect(&stack).await;
    assert_eq!(publisher.auth(CACHE).await, "+OK\r\n");
    for i in 0..20 {
        let text = format!("item-{i}");
        assert_eq!(publisher.cmd(&["PUBLISH", "news", &text]).await, ":1\r\n");
        // Within 100 ms, with nothing sent by the subscriber.
        let message = reply_within(&mut subscriber, Duration::from_millis(100)).await;
        assert_eq!(
            message.as_deref(),
            Some(push(&["message", "news", &text]).as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_keep_their_order_around_pushes() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut c = resp3(&stack).await;
    // Pipelined: the subscription's confirmations, then PING's own reply.
    c.send(&["SUBSCRIBE", "a", "b"]).await;
    c.send(&["PING"]).await;
    c.send(&["UNSUBSCRIBE", "a", "b"]).await;
    c.send(&["GET", "missing"]).await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(c.reply().await.unwrap());
    }
    assert_eq!(
        got,
        [
            push(&["subscribe", "a", ":1"]),
            push(&["subscribe", "b", ":2"]),
            "+PONG\r\n".to_owned(),
            push(&["unsubscribe", "a", ":1"]),
            push(&["unsubscribe", "b", ":0"]),
            "_\r\n".to_owned(),
        ]
    );
    // A refused subscription is an error reply, in its place.
    c.send(&["SUBSCRIBE"]).await;
    c.send(&["PING"]).await;
    assert!(c.reply().await.unwrap().starts_with("-ERR wrong number"));
    assert_eq!(c.reply().await.unwrap(), "+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_while_subscribed_moves_the_cut() {
    let stack =
        start(StackConfig::serverless(CACHE).max_auth_age(Duration::from_millis(1200))).await;
    let mut c = resp3(&stack).await;
    c.send(&["SUBSCRIBE", "ch"]).await;
    assert_eq!(c.reply().await.unwrap(), push(&["subscribe", "ch", ":1"]));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");
    // Past the first cut (1.2 s): still open, still subscribed.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut publisher = RawClient::connect(&stack).await;
    assert_eq!(publisher.auth(CACHE).await, "+OK\r\n");
    assert_eq!(publisher.cmd(&["PUBLISH", "ch", "late"]).await, ":1\r\n");
    assert_eq!(
        reply_within(&mut c, Duration::from_millis(100)).await,
        Some(push(&["message", "ch", "late"]))
    );
    assert!(
        c.closed_within(Duration::from_millis(1500)).await,
        "closed at the moved cut"
    );
    assert_eq!(stack.stats().reauth_ok, 1);
    assert_eq!(stack.stats().forced_disconnects, 1);
}
