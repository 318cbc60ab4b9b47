//! Connection configuration from URLs, the builder and environment variables:
//! what is accepted, and errors that name the parameter or variable at fault.

use std::collections::HashMap;
use std::time::Duration;

use elasticache_iam::{
    Auth, ConnectionConfig, ConnectionConfigBuilder, ErrorKind, TargetKind, TlsVersion,
};

fn env(vars: &[(&str, &str)]) -> ConnectionConfigBuilder {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ConnectionConfig::builder().from_env_with(move |name| vars.get(name).cloned())
}

const IAM: &[(&str, &str)] = &[
    (
        "REDIS_URL",
        "rediss://my-cache-abc123.serverless.use1.cache.amazonaws.com:6379",
    ),
    ("USE_IAM_AUTH", "true"),
    ("ELASTICACHE_SERVERLESS_CACHE", "My-Cache"),
    ("ELASTICACHE_USER_ID", "iam-user-01"),
    ("AWS_REGION", "us-east-1"),
];

fn iam_with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut vars: Vec<_> = IAM.to_vec();
    for (name, value) in extra {
        vars.retain(|(n, _)| n != name);
        vars.push((name, value));
    }
    vars
}

#[test]
fn iam_from_the_environment() {
    let config = env(&iam_with(&[
        ("ELASTICACHE_TOKEN_REFRESH_INTERVAL", "2s"),
        ("ELASTICACHE_REAUTH_AFTER", "4s"),
        ("ELASTICACHE_MAX_CONNECTION_AGE", "6s"),
    ]))
    .build()
    .unwrap();
    assert_eq!(
        config.host(),
        "my-cache-abc123.serverless.use1.cache.amazonaws.com"
    );
    assert_eq!(config.port(), 6379);
    assert!(config.tls().is_some());
    let Auth::Iam(iam) = config.auth() else {
        panic!("{:?}", config.auth())
    };
    assert_eq!(iam.target.kind(), TargetKind::ServerlessCache);
    assert_eq!(iam.target.name(), "my-cache");
    assert_eq!(iam.user_id.as_str(), "iam-user-01");
    assert_eq!(iam.region, "us-east-1");
    assert_eq!(
        config.lifecycle().token_refresh_interval,
        Duration::from_secs(2)
    );
    assert_eq!(config.lifecycle().reauth_after, Duration::from_secs(4));
    assert_eq!(
        config.lifecycle().max_connection_age,
        Duration::from_secs(6)
    );
}

#[test]
fn iam_is_never_inferred() {
    // Everything IAM needs, but no USE_IAM_AUTH: no authentication.
    let vars: Vec<_> = IAM
        .iter()
        .filter(|(n, _)| *n != "USE_IAM_AUTH")
        .copied()
        .collect();
    let config = env(&vars).build().unwrap();
    assert!(matches!(config.auth(), Auth::None), "{:?}", config.auth());
}

#[test]
fn host_parts_tls_and_password_from_separate_variables() {
    let config = env(&[
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_PORT", "6380"),
        ("REDIS_DB", "2"),
        ("REDIS_SSL", "true"),
        ("REDIS_SSL_CA_CERTS", "/etc/ca.pem"),
        ("REDIS_SSL_CERTFILE", "/etc/client.pem"),
        ("REDIS_SSL_KEYFILE", "/etc/client.key"),
        ("REDIS_USERNAME", "app"),
        ("REDIS_PASSWORD", "PASSWORD-MARKER"),
    ])
    .build()
    .unwrap();
    assert_eq!(
        (config.host(), config.port(), config.db()),
        ("cache.internal", 6380, 2)
    );
    let tls = config.tls().unwrap();
    assert_eq!(tls.ca_file.as_deref(), Some("/etc/ca.pem".as_ref()));
    assert_eq!(tls.client_cert.as_deref(), Some("/etc/client.pem".as_ref()));
    assert_eq!(tls.client_key.as_deref(), Some("/etc/client.key".as_ref()));
    let Auth::Password { username, password } = config.auth() else {
        panic!()
    };
    assert_eq!(username.as_deref(), Some("app"));
    assert_eq!(password.as_str(), "PASSWORD-MARKER");
    let debug = format!("{config:?}");
    assert!(!debug.contains("PASSWORD-MARKER"), "{debug}");
    assert!(debug.contains("** redacted **"), "{debug}");
}

#[test]
fn urls() {
    let config = ConnectionConfig::from_url("rediss://app:p%40ss@cache.internal:7000/3").unwrap();
    assert_eq!(
        (config.host(), config.port(), config.db()),
        ("cache.internal", 7000, 3)
    );
    assert!(config.tls().is_some());
    let Auth::Password { username, password } = config.auth() else {
        panic!()
    };
    assert_eq!(
        (username.as_deref(), password.as_str()),
        (Some("app"), "p@ss")
    );

    let config = ConnectionConfig::from_url("redis://127.0.0.1").unwrap();
    assert_eq!((config.port(), config.db()), (6379, 0));
    assert!(config.tls().is_none());
    assert!(matches!(config.auth(), Auth::None));

    let config = ConnectionConfig::builder()
        .url("rediss://[::1]:6379")
        .min_tls_version(TlsVersion::Tls13)
        .build()
        .unwrap();
    assert_eq!(config.host(), "::1");
    assert_eq!(config.tls().unwrap().min_version, TlsVersion::Tls13);
}

#[test]
fn bad_urls_name_the_url_and_never_echo_it() {
    for url in [
        "http://cache:6379",
        "rediss://user:SECRET-MARKER@/0",
        "rediss://user:SECRET-MARKER@cache:6379/x",
        "not a url SECRET-MARKER",
    ] {
        let err = ConnectionConfig::from_url(url).unwrap_err();
        assert_eq!(err.parameter(), Some("url"), "{err}");
        assert!(!err.to_string().contains("SECRET-MARKER"), "{err}");
        assert!(!format!("{err:?}").contains("SECRET-MARKER"), "{err:?}");
    }
    let err = env(&[("REDIS_URL", "http://cache")]).build().unwrap_err();
    assert_eq!(err.parameter(), Some("REDIS_URL"));
}

#[test]
fn misconfigurations_name_the_parameter() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        // IAM over plain text.
        (
            iam_with(&[("REDIS_URL", "redis://cache:6379")]),
            "REDIS_URL",
        ),
        (iam_with(&[("REDIS_SSL", "false")]), "REDIS_SSL"),
        // Missing pieces.
        (
            IAM.iter()
                .filter(|(n, _)| *n != "AWS_REGION")
                .copied()
                .collect(),
            "region",
        ),
        (
            IAM.iter()
                .filter(|(n, _)| *n != "ELASTICACHE_USER_ID")
                .copied()
                .collect(),
            "user_id",
        ),
        (
            IAM.iter()
                .filter(|(n, _)| *n != "ELASTICACHE_SERVERLESS_CACHE")
                .copied()
                .collect(),
            "target",
        ),
        (
            IAM.iter()
                .filter(|(n, _)| *n != "REDIS_URL")
                .copied()
                .collect(),
            "host",
        ),
        // Conflicts.
        (
            iam_with(&[("ELASTICACHE_REPLICATION_GROUP", "my-group")]),
            "target",
        ),
        (iam_with(&[("REDIS_PASSWORD", "hunter2")]), "REDIS_PASSWORD"),
        (
            iam_with(&[("REDIS_URL", "rediss://app:hunter2@cache:6379")]),
            "REDIS_URL",
        ),
        // Bad values name their variable.
        (iam_with(&[("AWS_REGION", "US-EAST-1")]), "AWS_REGION"),
        (
            iam_with(&[("ELASTICACHE_USER_ID", "1user")]),
            "ELASTICACHE_USER_ID",
        ),
        (
            iam_with(&[(
                "ELASTICACHE_SERVERLESS_CACHE",
                "my-cache.serverless.use1.cache.amazonaws.com",
            )]),
            "ELASTICACHE_SERVERLESS_CACHE",
        ),
        (iam_with(&[("USE_IAM_AUTH", "sure")]), "USE_IAM_AUTH"),
        (iam_with(&[("REDIS_SSL", "maybe")]), "REDIS_SSL"),
        (iam_with(&[("REDIS_PORT", "70000")]), "REDIS_PORT"),
        (iam_with(&[("REDIS_DB", "-1")]), "REDIS_DB"),
        (
            iam_with(&[("ELASTICACHE_TOKEN_REFRESH_INTERVAL", "soon")]),
            "ELASTICACHE_TOKEN_REFRESH_INTERVAL",
        ),
        // The refresher's own bounds, named by the variable that set them.
        (
            iam_with(&[("ELASTICACHE_TOKEN_REFRESH_INTERVAL", "15m")]),
            "ELASTICACHE_TOKEN_REFRESH_INTERVAL",
        ),
        (
            iam_with(&[("ELASTICACHE_MAX_CONNECTION_AGE", "12h")]),
            "ELASTICACHE_MAX_CONNECTION_AGE",
        ),
        (
            iam_with(&[
                ("ELASTICACHE_REAUTH_AFTER", "7s"),
                ("ELASTICACHE_MAX_CONNECTION_AGE", "6s"),
            ]),
            "ELASTICACHE_REAUTH_AFTER",
        ),
        (
            iam_with(&[("REDIS_SSL_CERTFILE", "/etc/client.pem")]),
            "REDIS_SSL_KEYFILE",
        ),
    ];
    for (vars, parameter) in cases {
        let err = env(&vars).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Configuration, "{vars:?}: {err}");
        assert_eq!(err.parameter(), Some(parameter), "{vars:?}: {err}");
        assert!(!err.to_string().contains("hunter2"));
    }
}

#[test]
fn iam_from_the_builder() {
    let config = ConnectionConfig::builder()
        .url("rediss://my-group.abc123.ng.0001.use1.cache.amazonaws.com:6379")
        .replication_group("my-group")
        .user_id("app")
        .region("eu-west-1")
        .build()
        .unwrap();
    let Auth::Iam(iam) = config.auth() else {
        panic!()
    };
    assert_eq!(iam.target.kind(), TargetKind::ReplicationGroup);
    let err = ConnectionConfig::builder()
        .url("redis://cache:6379")
        .replication_group("my-group")
        .user_id("app")
        .region("eu-west-1")
        .build()
        .unwrap_err();
    // The URL's scheme said plain text; a later `tls(false)` says it itself.
    assert_eq!(err.parameter(), Some("url"));
    let err = ConnectionConfig::builder()
        .url("rediss://cache:6379")
        .tls(false)
        .replication_group("my-group")
        .user_id("app")
        .region("eu-west-1")
        .build()
        .unwrap_err();
    assert_eq!(err.parameter(), Some("tls"));
    // A URL without a password leaves the builder's in place, and its name.
    let err = ConnectionConfig::builder()
        .password("PASSWORD-MARKER")
        .url("rediss://cache:6379")
        .replication_group("my-group")
        .user_id("app")
        .region("eu-west-1")
        .build()
        .unwrap_err();
    assert_eq!(err.parameter(), Some("password"));
    assert!(!err.to_string().contains("PASSWORD-MARKER"), "{err}");
}

/// The `set_` methods, for set-up that depends on the environment: `None`
/// clears what an earlier setting gave.
#[test]
fn conditional_settings() {
    let mut builder = ConnectionConfig::builder().url("rediss://app:secret@cache:6379");
    builder
        .set_ca_file(Some("/etc/ca.pem".into()))
        .set_region(Some("eu-west-1".to_owned()));
    let config = builder.clone().build().unwrap();
    assert_eq!(
        config.tls().unwrap().ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ca.pem"))
    );
    let Auth::Password { username, .. } = config.auth() else {
        panic!("{config:?}")
    };
    assert_eq!(username.as_deref(), Some("app"));

    builder.set_ca_file(None).set_username(None);
    let config = builder.build().unwrap();
    assert_eq!(config.tls().unwrap().ca_file, None);
    let Auth::Password { username, .. } = config.auth() else {
        panic!("{config:?}")
    };
    assert_eq!(*username, None);

    // A region set and then cleared is missing again.
    let mut builder = ConnectionConfig::builder()
        .url("rediss://cache:6379")
        .serverless_cache("c")
        .user_id("u");
    builder.set_region(Some("us-east-1".to_owned()));
    assert!(builder.clone().build().is_ok());
    builder.set_region(None);
    assert_eq!(builder.build().unwrap_err().parameter(), Some("region"));
}

/// Each value that would make a configuration unusable is refused at build,
/// naming the parameter the user wrote.
#[test]
fn unusable_values_are_refused_at_build() {
    let base = || ConnectionConfig::builder().url("rediss://cache.example:6379");
    let iam = || {
        base()
            .replication_group("my-group")
            .user_id("app")
            .region("eu-west-1")
    };
    let cases: Vec<(ConnectionConfigBuilder, &str)> = vec![
        (iam().tls(false), "tls"),
        (
            iam().max_connection_age(Duration::ZERO),
            "max_connection_age",
        ),
        (
            iam().max_connection_age(Duration::from_secs(12 * 3600)),
            "max_connection_age",
        ),
        (
            iam().max_connection_age(Duration::MAX),
            "max_connection_age",
        ),
        (
            // Re-authentication must come before the earliest deadline
            // (95 % of the maximum age).
            iam()
                .reauth_after(Duration::from_millis(5800))
                .max_connection_age(Duration::from_secs(6)),
            "reauth_after",
        ),
        (base().port(0), "port"),
        (base().host(""), "host"),
        (base().host("  "), "host"),
        (base().db(-1), "db"),
        (
            ConnectionConfig::builder().url("redis://cache.example:0"),
            "url",
        ),
    ];
    for (builder, parameter) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
        assert_eq!(err.parameter(), Some(parameter), "{err}");
    }
}

#[tokio::test]
async fn unusable_pool_settings_are_refused_at_build() {
    use elasticache_iam::Pool;
    let config = || ConnectionConfig::from_url("redis://127.0.0.1:1").unwrap();
    let cases = [
        (Pool::builder(config()).max_size(0), "max_size"),
        (
            Pool::builder(config()).max_concurrent_connects(0),
            "max_concurrent_connects",
        ),
        (
            // More than tokio's semaphore can hold (it would panic).
            Pool::builder(config()).max_concurrent_connects(usize::MAX),
            "max_concurrent_connects",
        ),
        (
            // More than bb8 accepts (it would panic).
            Pool::builder(config()).max_size(2).min_idle(Some(3)),
            "min_idle",
        ),
        (
            Pool::builder(config()).connection_timeout(Duration::ZERO),
            "connection_timeout",
        ),
        (
            Pool::builder(config()).idle_timeout(Some(Duration::ZERO)),
            "idle_timeout",
        ),
        (
            Pool::builder(config()).reconnect_spread(Duration::from_secs(301)),
            "reconnect_spread",
        ),
    ];
    for (builder, parameter) in cases {
        let err = builder.build_lazy().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
        assert_eq!(err.parameter(), Some(parameter), "{err}");
    }
}

#[tokio::test]
async fn a_shared_connection_refuses_a_reconnect_spread_over_5_minutes() {
    use elasticache_iam::SharedConnection;
    let config = ConnectionConfig::from_url("redis://127.0.0.1:1").unwrap();
    let err = SharedConnection::builder(config)
        .reconnect_spread(Duration::from_secs(301))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    assert_eq!(err.parameter(), Some("reconnect_spread"), "{err}");
    assert!(err.to_string().contains("at most 300s"), "{err}");
}

/// Every problem at once, each named by what the user wrote: here an
/// environment variable, a builder method and a bad value of another.
#[test]
fn every_problem_is_reported_at_once() {
    let err = env(&[
        ("REDIS_URL", "rediss://cache.example:6379"),
        ("USE_IAM_AUTH", "true"),
        ("ELASTICACHE_REPLICATION_GROUP", "my_group"),
        ("AWS_REGION", "us-east-1"),
    ])
    .user_id("1user")
    .max_connection_age(Duration::from_secs(13 * 3600))
    .build()
    .unwrap_err();
    println!("{err}");
    assert_eq!(err.kind(), ErrorKind::Configuration);
    assert_eq!(
        err.parameters(),
        [
            "ELASTICACHE_REPLICATION_GROUP",
            "user_id",
            "max_connection_age"
        ]
    );
    assert_eq!(err.parameter(), Some("ELASTICACHE_REPLICATION_GROUP"));
    let text = err.to_string();
    assert!(text.starts_with("3 problems: (1) "), "{text}");
    for part in ["\"my_group\"", "\"1user\"", "max_connection_age must be"] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
}
