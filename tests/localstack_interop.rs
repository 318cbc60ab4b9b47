//! Interoperability through the local stack, with independent clients:
//! `redis-cli` authenticating with a token from `elasticache-iam-token`, and a
//! token made by AWS's own Python toolkit accepted by the stack's verifier.
//!
//! Needs `valkey-server`, `redis-cli` and `developer-toolkit-elasticache`
//! (scripts/install-servers.sh installs them; scripts/test.sh runs it).

use std::process::Command;

use elasticache_localstack::{STATIC_ACCESS_KEY_ID, STATIC_SECRET_ACCESS_KEY, Stack, StackConfig};

async fn stack() -> Stack {
    Stack::start(StackConfig::serverless("interop-cache"))
        .await
        .unwrap_or_else(|e| panic!("local stack: {e}"))
}

fn with_static_keys(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "HOME",
            std::env::temp_dir().join("elasticache-iam-interop-no-home"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", STATIC_ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", STATIC_SECRET_ACCESS_KEY)
        .env("AWS_REGION", "us-east-1")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/install-servers.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn redis_cli(stack: &Stack, token: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    with_static_keys(&mut cmd)
        .env("REDISCLI_AUTH", token)
        .args(["--tls", "--cacert"])
        .arg(stack.ca_file())
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &stack.endpoint().port().to_string(),
        ])
        .args(["--user", "iam-user-01"])
        .args(args);
    run(&mut cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_connects_with_a_token_from_the_cli() {
    let stack = stack().await;
    let token = run(with_static_keys(&mut Command::new(env!(
        "CARGO_BIN_EXE_elasticache-iam-token"
    )))
    .args([
        "--serverless-cache",
        "interop-cache",
        "--user-id",
        "iam-user-01",
    ]));
    let token = token.trim_end();
    assert_eq!(
        redis_cli(&stack, token, &["SET", "interop", "yes"]).trim(),
        "OK"
    );
    assert_eq!(redis_cli(&stack, token, &["GET", "interop"]).trim(), "yes");
    assert_eq!(stack.stats().auth_ok, 2);
    // And a wrong one is refused, so the check above is not vacuous.
    // (redis-cli reports the failed AUTH on stderr, then runs PING unauthenticated.)
    let refused = redis_cli(
        &stack,
        &token.replace("interop-cache", "other-cache"),
        &["PING"],
    );
    assert!(refused.contains("NOAUTH"), "{refused}");
    assert_eq!(stack.stats().failed("signature_mismatch"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_aws_toolkit_is_accepted() {
    let stack = stack().await;
    let script = "from developer_toolkit_elasticache import generate_iam_auth_token as g; \
                  print(g(serverless_cache_name='interop-cache', user_id='iam-user-01', region='us-east-1'))";
    let token = run(with_static_keys(&mut Command::new("python3")).args(["-c", script]));
    let token = token.trim_end();
    assert!(token.starts_with(
        "interop-cache/?Action=connect&User=iam-user-01&ResourceType=ServerlessCache"
    ));
    assert_eq!(redis_cli(&stack, token, &["PING"]).trim(), "PONG");
    assert_eq!(stack.stats().auth_ok, 1);
    assert_eq!(stack.stats().failed_total(), 0);
}
