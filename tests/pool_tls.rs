//! TLS settings of the pool against the local stack, and a smoke run against
//! Redis 7 (the oldest engine IAM authentication supports).

mod support;

use elasticache_iam::{ConnectionConfig, ErrorKind, Pool, TlsVersion};
use elasticache_localstack::{Engine, StackConfig};
use redis::AsyncCommands;
use support::pools::{iam_config, iam_pool, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_tls_error() {
    let stack = start(StackConfig::replication_group("rg-tls-01")).await;
    let other = start(StackConfig::replication_group("rg-tls-02")).await;
    // Another stack's CA: a well-formed file that does not vouch for this server.
    let config = iam_config(&stack).ca_file(other.ca_file()).build().unwrap();
    let err = iam_pool(config).build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err:?}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("REDIS_SSL_CA_CERTS"), "{err}");
    assert_eq!(stack.stats().auth_ok + stack.stats().failed_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_minimum_against_a_tls13_only_endpoint() {
    let stack = start(StackConfig::replication_group("rg-tls13-01").tls13_only(true)).await;
    let config = iam_config(&stack)
        .min_tls_version(TlsVersion::Tls13)
        .build()
        .unwrap();
    let pool = iam_pool(config).build().await.unwrap();
    let mut conn = pool.get().await.unwrap();
    let () = conn.set("tls13", "ok").await.unwrap();
    assert_eq!(stack.stats().auth_ok, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_are_verified_against_the_certificate() {
    let stack = start(StackConfig::replication_group("rg-tls-03")).await;
    // `localhost` is in the certificate; so is 127.0.0.1 (used elsewhere).
    let config = iam_config(&stack).host("localhost").build().unwrap();
    iam_pool(config).build().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_and_cluster_settings_name_their_parameter() {
    let stack = start(StackConfig::serverless("tls-params-01")).await;
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("key.pem");
    std::fs::write(&garbage, "not a key").unwrap();

    // (configuration, cluster mode, parameter, what the message says)
    let cases: Vec<(ConnectionConfig, Option<bool>, &str, &str)> = vec![
        (
            iam_config(&stack)
                .client_certificate(stack.ca_file(), &garbage)
                .build()
                .unwrap(),
            None,
            "client_certificate",
            "holds no PEM private key",
        ),
        (
            iam_config(&stack).ca_file(&garbage).build().unwrap(),
            None,
            "ca_file",
            "holds no PEM certificate",
        ),
        (
            iam_config(&stack)
                .ca_file(dir.path().join("missing.pem"))
                .build()
                .unwrap(),
            None,
            "ca_file",
            "cannot read",
        ),
        (
            iam_config(&stack)
                .min_tls_version(TlsVersion::Tls13)
                .build()
                .unwrap(),
            Some(true),
            "min_tls_version",
            "TLS 1.3 minimum",
        ),
        (
            iam_config(&stack).db(2).build().unwrap(),
            Some(true),
            "db",
            "only database 0",
        ),
    ];
    for (config, cluster, parameter, says) in cases {
        let mut builder = iam_pool(config);
        if let Some(cluster) = cluster {
            builder = builder.cluster_mode(cluster);
        }
        let err = builder.build().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Configuration, "{parameter}: {err:?}");
        assert_eq!(err.parameter(), Some(parameter), "{err:?}");
        assert!(err.to_string().contains(says), "{err}");
    }
    let err = iam_pool(iam_config(&stack).build().unwrap())
        .max_size(0)
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.parameter(), Some("max_size"));

    // A refresher for a pool that does not use IAM, or for another cache.
    let refresher = elasticache_iam::TokenRefresher::builder()
        .serverless_cache("another-cache")
        .user_id(stack.user_id())
        .region(stack.region())
        .credentials_provider(support::pools::static_credentials())
        .build()
        .await
        .unwrap();
    let plain = ConnectionConfig::from_url("rediss://127.0.0.1:6379").unwrap();
    for config in [plain, iam_config(&stack).build().unwrap()] {
        let err = elasticache_iam::Pool::builder(config)
            .refresher(refresher.clone())
            .build()
            .await
            .unwrap_err();
        assert_eq!(err.parameter(), Some("refresher"), "{err:?}");
    }
}

/// Problems the pool finds in settings that came from the environment name
/// the variables, and are reported at once with the pool's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_found_by_the_pool_name_the_variables_and_come_together() {
    let stack = start(StackConfig::serverless("tls-params-02")).await;
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("ca.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let env = [
        (
            "REDIS_URL",
            format!("rediss://127.0.0.1:{}/2", stack.endpoint().port()),
        ),
        ("REDIS_SSL_CA_CERTS", garbage.display().to_string()),
        ("USE_IAM_AUTH", "true".to_owned()),
        (
            "ELASTICACHE_SERVERLESS_CACHE",
            stack.cache_name().to_owned(),
        ),
        ("ELASTICACHE_USER_ID", stack.user_id().to_owned()),
        ("AWS_REGION", stack.region().to_owned()),
    ];
    let config = ConnectionConfig::builder()
        .from_env_with(|name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        })
        .build()
        .unwrap();
    let err = iam_pool(config.clone())
        .max_size(0)
        .build_lazy()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err:?}");
    // Serverless caches are clusters: database 0 only.
    assert_eq!(
        err.parameters(),
        ["max_size", "REDIS_URL", "REDIS_SSL_CA_CERTS"],
        "{err}"
    );
    assert_eq!(err.problems().len(), 3, "{err}");
    assert!(
        err.to_string().starts_with("3 problems: (1) max_size"),
        "{err}"
    );

    // The refresher's own problems join them: an SdkConfig without a
    // credentials provider.
    let err = Pool::builder(config)
        .sdk_config(&aws_config::SdkConfig::builder().build())
        .max_size(0)
        .build_lazy()
        .await
        .unwrap_err();
    assert_eq!(
        err.parameters(),
        [
            "max_size",
            "credentials_provider",
            "REDIS_URL",
            "REDIS_SSL_CA_CERTS"
        ],
        "{err}"
    );
}

/// TLS problems are reported together: an unreadable CA file and a client
/// key that is not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_problems_come_together() {
    let stack = start(StackConfig::replication_group("rg-tls-04")).await;
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("key.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    let config = iam_config(&stack)
        .ca_file(dir.path().join("missing.pem"))
        .client_certificate(stack.ca_file(), &garbage)
        .build()
        .unwrap();
    let err = iam_pool(config).build().await.unwrap_err();
    assert_eq!(err.parameters(), ["ca_file", "client_certificate"], "{err}");
    assert!(err.to_string().contains("cannot read"), "{err}");
    assert!(
        err.to_string().contains("holds no PEM private key"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_7_smoke() {
    let stack = start(StackConfig::replication_group("rg-redis7-01").engine(Engine::Redis)).await;
    let pool = iam_pool(iam_config(&stack).build().unwrap())
        .build()
        .await
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    let () = conn.set_ex("redis7", "ok", 60).await.unwrap();
    let v: String = conn.get("redis7").await.unwrap();
    assert_eq!(v, "ok");
    drop(conn);
    let health = pool.health().await;
    assert!(
        health
            .server_version
            .as_deref()
            .is_some_and(|v| v.starts_with("redis 7")),
        "{health:?}"
    );
    assert_eq!(stack.stats().auth_ok, 1);
}
