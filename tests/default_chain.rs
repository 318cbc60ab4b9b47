//! The aws-config default chain drives the refresher for real: the
//! `redis_rs` example, run with a prepared process environment and no
//! credentials in code, connects to the local stack with tokens signed by
//! the credentials the chain found (environment variables, or profile files
//! in a temporary directory).
//!
//! The container (ECS, EKS Pod Identity) and IRSA sources are covered with the
//! stack's mock endpoints by the example service's tests.

mod support;

use std::process::Command;

use elasticache_localstack::registry::KnownCredentials;
use elasticache_localstack::{
    STATIC_ACCESS_KEY_ID, STATIC_PRINCIPAL, STATIC_SECRET_ACCESS_KEY, Stack, StackConfig,
};

/// The example against `stack`, with only `vars` (and PATH) in its
/// environment; HOME points at an empty directory, instance metadata is off.
fn run_example(stack: &Stack, vars: &[(&str, String)]) -> serde_json::Value {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(support::example("redis_rs"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("ELASTICACHE_TOKEN_REFRESH_INTERVAL", "1s")
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .args([
            "--url",
            &format!("rediss://127.0.0.1:{}", stack.endpoint().port()),
            "--replication-group",
            "my-group",
            "--user-id",
            "iam-user-01",
            "--region",
            "us-east-1",
            "--seconds",
            "3",
            "--ca-file",
        ])
        .arg(stack.ca_file())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "example failed: {stderr}");
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

async fn stack() -> Stack {
    support::pools::start(StackConfig::replication_group("my-group")).await
}

fn check(summary: &serde_json::Value, stack: &Stack) {
    // Signed at start, then about once a second for the 3 s of commands.
    let rotations = summary["rotations"].as_u64().unwrap();
    assert!(rotations >= 3, "{summary}");
    assert_eq!(summary["consecutive_failures"], 0);
    let stats = stack.stats();
    assert_eq!(stats.auth_ok, 1, "{stats:?}");
    assert_eq!(stats.failed_total(), 0, "{stats:?}");
    assert!(stats.commands >= 6, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_environment_variables() {
    let stack = stack().await;
    let summary = run_example(
        &stack,
        &[
            ("AWS_ACCESS_KEY_ID", STATIC_ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET_ACCESS_KEY.to_owned()),
        ],
    );
    check(&summary, &stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_profile_files() {
    let stack = stack().await;
    // Credentials only the profile files know; the stack is told about them.
    let (key, secret) = (
        "AKIAPROFILEEXAMPLE01",
        "profile/secret/EXAMPLEKEY0000000000000",
    );
    stack.registry().insert(KnownCredentials {
        access_key_id: key.to_owned(),
        secret_access_key: secret.to_owned(),
        session_token: None,
        expires: None,
        principal: STATIC_PRINCIPAL.to_owned(),
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let credentials = dir.path().join("credentials");
    std::fs::write(&config, "[profile app]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        &credentials,
        format!("[app]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    let summary = run_example(
        &stack,
        &[
            ("AWS_CONFIG_FILE", config.display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials.display().to_string(),
            ),
            ("AWS_PROFILE", "app".to_owned()),
        ],
    );
    check(&summary, &stack);
}

#[test]
fn no_credentials_anywhere_is_a_clear_failure() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(support::example("redis_rs"))
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "--url",
            "rediss://127.0.0.1:1",
            "--replication-group",
            "my-group",
        ])
        .args(["--user-id", "iam-user-01", "--region", "us-east-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no usable IAM auth token for replication group my-group"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the credentials provider failed"),
        "{stderr}"
    );
}
