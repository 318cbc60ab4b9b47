//! The binary's contract: when ready it writes the env file with every
//! documented key, serves with those values, and on SIGTERM exits cleanly.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_credential_types::Credentials;
use elasticache_iam::TokenSigner;

const KEYS: &[&str] = &[
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_SSL",
    "REDIS_SSL_CA_CERTS",
    "USE_IAM_AUTH",
    "ELASTICACHE_SERVERLESS_CACHE",
    "ELASTICACHE_USER_ID",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "LOCALSTACK_ADMIN_URL",
    "LOCALSTACK_CONTAINER_CREDENTIALS_URI",
    "LOCALSTACK_STS_ENDPOINT",
    "LOCALSTACK_ROLE_ARN",
    "LOCALSTACK_WEB_IDENTITY_TOKEN_FILE",
    "LOCALSTACK_NODES",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_file_then_serve_then_clean_exit() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("stack.env");
    let log = dir.path().join("stack.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_elasticache-localstack"))
        .args([
            "--serverless-cache",
            "bin-cache",
            "--user-id",
            "bin-user",
            "--region",
            "eu-west-2",
        ])
        .args([
            "--max-auth-age",
            "8s",
            "--credential-lifetime",
            "10m",
            "--env-file",
        ])
        .arg(&env_file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(&env_file).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let env: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    for key in KEYS {
        assert!(
            env.contains_key(key),
            "{key} missing from the env file:\n{text}"
        );
    }
    assert_eq!(env["REDIS_SSL"], "true");
    assert_eq!(env["USE_IAM_AUTH"], "true");
    assert_eq!(env["ELASTICACHE_SERVERLESS_CACHE"], "bin-cache");
    assert_eq!(env["ELASTICACHE_USER_ID"], "bin-user");
    assert_eq!(env["AWS_REGION"], "eu-west-2");

    // Authenticate with exactly what the env file says.
    let signer = TokenSigner::builder()
        .serverless_cache(env["ELASTICACHE_SERVERLESS_CACHE"])
        .user_id(env["ELASTICACHE_USER_ID"])
        .region(env["AWS_REGION"])
        .build()
        .unwrap();
    let creds = Credentials::new(
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
        None,
        None,
        "env-file",
    );
    let token = signer.sign(&creds, support::now()).unwrap();
    let out = Command::new("redis-cli")
        .env("REDISCLI_AUTH", token.expose_secret())
        .args([
            "--tls",
            "--cacert",
            env["REDIS_SSL_CA_CERTS"],
            "-h",
            env["REDIS_HOST"],
            "-p",
            env["REDIS_PORT"],
        ])
        .args(["--user", env["ELASTICACHE_USER_ID"], "PING"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the stack did not exit on SIGTERM")
    });
    assert!(status.success(), "{status}");
    // Its log, written to a file, is plain text: no colour codes.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\x1b'), "{log:?}");
}

/// Kills the stack if the test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The env file the binary writes when ready, as `KEY=VALUE` pairs.
async fn env_file_of(child: &mut std::process::Child, path: &std::path::Path) -> String {
    for _ in 0..400 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if !text.is_empty() {
            return text;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the stack exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    panic!("no env file within 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memorydb_cluster_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("stack.env");
    let child = Command::new(env!("CARGO_BIN_EXE_elasticache-localstack"))
        .args([
            "--memorydb-cluster",
            "bin-mdb",
            "--shards",
            "2",
            "--replicas",
            "0",
        ])
        .args([
            "--user-id",
            "bin-user",
            "--region",
            "eu-west-2",
            "--env-file",
        ])
        .arg(&env_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let text = env_file_of(child, &env_file).await;
    let env: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(env["MEMORYDB_CLUSTER"], "bin-mdb", "{text}");
    assert_eq!(env["REDIS_CLUSTER"], "true", "{text}");
    assert!(!env.contains_key("ELASTICACHE_REPLICATION_GROUP"), "{text}");
    let nodes: Vec<&str> = env["LOCALSTACK_NODES"].split(',').collect();
    assert_eq!(nodes.len(), 2, "{text}");
    assert_eq!(
        nodes[0],
        format!("{}:{}", env["REDIS_HOST"], env["REDIS_PORT"])
    );

    // Every node takes a MemoryDB token for exactly what the env file says.
    let signer = TokenSigner::builder()
        .memorydb_cluster(env["MEMORYDB_CLUSTER"])
        .user_id(env["ELASTICACHE_USER_ID"])
        .region(env["AWS_REGION"])
        .build()
        .unwrap();
    let creds = Credentials::new(
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
        None,
        None,
        "env-file",
    );
    for node in nodes {
        let token = signer.sign(&creds, support::now()).unwrap();
        let (host, port) = node.split_once(':').unwrap();
        let out = Command::new("redis-cli")
            .env("REDISCLI_AUTH", token.expose_secret())
            .args([
                "--tls",
                "--cacert",
                env["REDIS_SSL_CA_CERTS"],
                "-h",
                host,
                "-p",
                port,
            ])
            .args(["--user", env["ELASTICACHE_USER_ID"], "CLUSTER", "INFO"])
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&out.stdout);
        assert!(info.contains("cluster_state:ok"), "{node}: {info}");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    panic!("the stack did not exit on SIGTERM");
}

#[test]
fn cluster_flags_without_a_cluster_are_refused() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_elasticache-localstack"))
            .args(args)
            .args(["--user-id", "u", "--region", "us-east-1"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--replication-group", "g", "--shards", "2"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--shards and --replicas need --cluster-mode"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--serverless-cache", "c", "--cluster-mode"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--cluster-mode goes with --replication-group"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--memorydb-cluster", "m", "--shards", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--shards"), "{stderr}");
}
