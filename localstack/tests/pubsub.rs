//! Pub/sub through the front in RESP3: pushes are passed on as they arrive,
//! whether or not a command waits for its reply, each (un)subscribe command
//! is answered by its confirmations, and the order of replies is kept around
//! them. And in RESP2 subscribed mode: messages at once, only the commands
//! Valkey allows there.

mod support;

use std::time::Duration;

use elasticache_localstack::{Stack, StackConfig};
use support::{RawClient, serverless_token, start};

const CACHE: &str = "pubsub-cache";

/// A client authenticated with `HELLO 3 AUTH`.
async fn resp3(stack: &Stack) -> RawClient {
    let mut c = RawClient::connect(stack).await;
    let hello = c.hello3(CACHE).await;
    assert!(hello.starts_with('%'), "{hello}");
    c
}

fn push(items: &[&str]) -> String {
    frame('>', items)
}

/// A RESP2 array of these items (`:n` for an integer).
fn array(items: &[&str]) -> String {
    frame('*', items)
}

fn frame(kind: char, items: &[&str]) -> String {
    let mut out = format!("{kind}{}\r\n", items.len());
    for item in items {
        match item.strip_prefix(':') {
            Some(n) => out.push_str(&format!(":{n}\r\n")),
            None => out.push_str(&format!("${}\r\n{item}\r\n", item.len())),
        }
    }
    out
}

/// The next reply; the test fails (rather than hangs) if none comes.
async fn next(c: &mut RawClient) -> String {
    tokio::time::timeout(Duration::from_secs(5), c.reply())
        .await
        .ok()
        .flatten()
        .expect("a reply within 5 s")
}

#[allow(
    clippy::disallowed_methods,
    reason = "latency through real sockets, printed"
)]
fn real_now() -> std::time::Instant {
    std::time::Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_with_no_command_pending() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut subscriber = resp3(&stack).await;
    subscriber.send(&["SUBSCRIBE", "news", "sport"]).await;
    assert_eq!(
        next(&mut subscriber).await,
        push(&["subscribe", "news", ":1"])
    );
    assert_eq!(
        next(&mut subscriber).await,
        push(&["subscribe", "sport", ":2"])
    );
    let mut publisher = RawClient::connect(&stack).await;
    assert_eq!(publisher.auth(CACHE).await, "+OK\r\n");
    delivered_at_once(&mut publisher, &mut subscriber, "news", push, "RESP3").await;
}

/// 20 messages published on `channel`, each read by `subscriber` (as
/// `frame` writes a message) with nothing sent by it: the median time from
/// PUBLISH to delivery is under 100 ms.
async fn delivered_at_once(
    publisher: &mut RawClient,
    subscriber: &mut RawClient,
    channel: &str,
    frame: fn(&[&str]) -> String,
    protocol: &str,
) {
    let mut latencies = Vec::new();
    for i in 0..20 {
        let text = format!("item-{i}");
        let sent = real_now();
        assert_eq!(publisher.cmd(&["PUBLISH", channel, &text]).await, ":1\r\n");
        // With nothing sent by the subscriber.
        assert_eq!(next(subscriber).await, frame(&["message", channel, &text]));
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    println!(
        "{protocol} PUBLISH to delivery: median {median:?}, max {:?}",
        latencies[latencies.len() - 1]
    );
    assert!(median < Duration::from_millis(100), "{latencies:?}");
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
        got.push(next(&mut c).await);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_is_confirmed_before_the_next_commands_reply() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut c = resp3(&stack).await;
    // Two confirmations for the first command, an error for the second, then
    // PING's reply.
    c.send(&["SUBSCRIBE", "a", "b"]).await;
    c.send(&["SUBSCRIBE"]).await;
    c.send(&["PING"]).await;
    assert_eq!(next(&mut c).await, push(&["subscribe", "a", ":1"]));
    assert_eq!(next(&mut c).await, push(&["subscribe", "b", ":2"]));
    assert!(next(&mut c).await.starts_with("-ERR wrong number"));
    assert_eq!(next(&mut c).await, "+PONG\r\n");
    // A reply the front gives itself waits for both confirmations.
    let token = serverless_token(CACHE);
    c.send(&["SUBSCRIBE", "x", "y"]).await;
    c.send(&["AUTH", "iam-user-01", &token]).await;
    assert_eq!(next(&mut c).await, push(&["subscribe", "x", ":3"]));
    assert_eq!(next(&mut c).await, push(&["subscribe", "y", ":4"]));
    assert_eq!(next(&mut c).await, "+OK\r\n");
    // Unsubscribing from all: one confirmation per channel held.
    c.send(&["UNSUBSCRIBE"]).await;
    c.send(&["PING"]).await;
    let mut confirmations = Vec::new();
    for _ in 0..4 {
        let confirmation = next(&mut c).await;
        assert!(
            confirmation.starts_with(">3\r\n$11\r\nunsubscribe"),
            "{confirmation}"
        );
        confirmations.push(confirmation);
    }
    assert_eq!(next(&mut c).await, "+PONG\r\n");
    assert!(confirmations[3].ends_with(":0\r\n"), "{confirmations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_while_subscribed_moves_the_cut() {
    // The cut at 3 s; re-authenticated at 1.5 s, so the cut moves to 4.5 s.
    let stack = start(StackConfig::serverless(CACHE).max_auth_age(Duration::from_secs(3))).await;
    let mut c = resp3(&stack).await;
    let mut publisher = RawClient::connect(&stack).await;
    let token = serverless_token(CACHE);
    c.send(&["SUBSCRIBE", "ch"]).await;
    assert_eq!(next(&mut c).await, push(&["subscribe", "ch", ":1"]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");
    // Past the first cut: still open, still subscribed.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        publisher.cmd(&["AUTH", "iam-user-01", &token]).await,
        "+OK\r\n"
    );
    assert_eq!(publisher.cmd(&["PUBLISH", "ch", "late"]).await, ":1\r\n");
    assert_eq!(next(&mut c).await, push(&["message", "ch", "late"]));
    assert!(
        c.closed_within(Duration::from_secs(3)).await,
        "closed at the moved cut"
    );
    assert_eq!(stack.stats().reauth_ok, 1);
    assert_eq!(stack.stats().forced_disconnects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp2_subscribed_mode_delivers_at_once_and_refuses_auth() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut subscriber = RawClient::connect(&stack).await;
    assert_eq!(subscriber.auth(CACHE).await, "+OK\r\n");
    subscriber.send(&["SUBSCRIBE", "news", "sport"]).await;
    assert_eq!(
        next(&mut subscriber).await,
        array(&["subscribe", "news", ":1"])
    );
    assert_eq!(
        next(&mut subscriber).await,
        array(&["subscribe", "sport", ":2"])
    );
    subscriber.send(&["PSUBSCRIBE", "n*"]).await;
    assert_eq!(
        next(&mut subscriber).await,
        array(&["psubscribe", "n*", ":3"])
    );

    let mut publisher = RawClient::connect(&stack).await;
    assert_eq!(publisher.auth(CACHE).await, "+OK\r\n");
    delivered_at_once(&mut publisher, &mut subscriber, "sport", array, "RESP2").await;

    // A message and a pattern message, then PING's reply, in order.
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "n1"]).await, ":2\r\n");
    assert_eq!(
        next(&mut subscriber).await,
        array(&["message", "news", "n1"])
    );
    assert_eq!(
        next(&mut subscriber).await,
        "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nn1\r\n"
    );
    assert_eq!(subscriber.cmd(&["PING"]).await, array(&["pong", ""]));

    // AUTH and HELLO are refused here, as Valkey refuses them; the
    // connection stays subscribed.
    let token = serverless_token(CACHE);
    for refused in [
        vec!["AUTH", "iam-user-01", token.as_str()],
        vec!["HELLO", "3", "AUTH", "iam-user-01", token.as_str()],
    ] {
        let reply = subscriber.cmd(&refused).await;
        assert!(reply.starts_with("-ERR Can't execute"), "{reply}");
        assert!(reply.contains("allowed in this context"), "{reply}");
        assert!(!reply.contains(&token), "the token is not echoed");
    }
    let reply = subscriber.cmd(&["GET", "k"]).await;
    assert!(reply.starts_with("-ERR Can't execute 'get'"), "{reply}");
    assert_eq!(stack.stats().reauth_ok, 0);

    // Unsubscribing from everything leaves subscribed mode: AUTH works again.
    subscriber.send(&["UNSUBSCRIBE"]).await;
    // One confirmation per channel (in the server's order); the pattern stays.
    let first = next(&mut subscriber).await;
    let second = next(&mut subscriber).await;
    let mut channels = Vec::new();
    for (confirmation, left) in [(&first, ":2\r\n"), (&second, ":1\r\n")] {
        assert!(
            confirmation.starts_with("*3\r\n$11\r\nunsubscribe\r\n"),
            "{confirmation}"
        );
        assert!(confirmation.ends_with(left), "{confirmation}");
        channels.push(if confirmation.contains("news") {
            "news"
        } else {
            "sport"
        });
    }
    channels.sort_unstable();
    assert_eq!(channels, ["news", "sport"]);
    let reply = subscriber.cmd(&["AUTH", "iam-user-01", &token]).await;
    assert!(
        reply.starts_with("-ERR Can't execute"),
        "still subscribed to a pattern: {reply}"
    );
    subscriber.send(&["PUNSUBSCRIBE"]).await;
    assert_eq!(
        next(&mut subscriber).await,
        array(&["punsubscribe", "n*", ":0"])
    );
    assert_eq!(subscriber.auth(CACHE).await, "+OK\r\n");
    assert_eq!(stack.stats().reauth_ok, 1);
}
