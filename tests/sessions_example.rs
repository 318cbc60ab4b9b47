//! `examples/sessions.rs` against the local stack, on a serverless
//! (cluster-mode) cache and a replication group: every step of its
//! walkthrough, the expiries included, holds.

mod support;

use std::process::Command;

use elasticache_localstack::{Stack, StackConfig};
use support::pools::start;

const STEPS: [&str; 13] = [
    "20 concurrent logins",
    "a live session is found and renewed",
    "logout ends one session",
    "logout everywhere ends the rest",
    "a token is not revoked",
    "a revoked token is",
    "a wrong code is refused",
    "the right code works",
    "and only once",
    "five wrong guesses void a code",
    "sessions expire, and leave the index",
    "revocations expire with their token",
    "codes expire",
];

async fn walkthrough(stack: Stack) {
    let home = tempfile::tempdir().unwrap();
    let example = support::example("sessions");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(example)
            .env_clear()
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(stack.env_vars())
            .args(["--session-ttl", "2", "--code-ttl", "2", "--wait"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("ok   "))
        .collect();
    assert_eq!(done, STEPS, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_on_a_serverless_cache() {
    walkthrough(start(StackConfig::serverless("sessions-cache")).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_on_a_replication_group() {
    walkthrough(start(StackConfig::replication_group("sessions-group")).await).await;
}
