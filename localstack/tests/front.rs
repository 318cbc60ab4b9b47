//! The front against a real valkey-server: IAM authentication as ElastiCache
//! does it, refusals counted by reason, NOAUTH, the 12-hour rule (scaled),
//! re-authentication, and the serverless topology.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use elasticache_iam::TokenSigner;
use elasticache_localstack::{
    KnownCredentials, ManualClock, STATIC_ACCESS_KEY_ID, STATIC_SECRET_ACCESS_KEY, StackConfig,
};
use support::{RawClient, WRONGPASS, now, presign, serverless_token, start, static_credentials};

const CACHE: &str = "my-cache";

#[tokio::test]
async fn a_correct_token_is_accepted_by_auth_and_hello() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut c = RawClient::connect(&stack).await;
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");
    assert_eq!(c.cmd(&["SET", "k", "v"]).await, "+OK\r\n");
    assert_eq!(c.cmd(&["GET", "k"]).await, "$1\r\nv\r\n");

    let mut c = RawClient::connect(&stack).await;
    let hello = c.hello3(CACHE).await;
    assert!(
        hello.starts_with('%') && hello.contains("proto") && hello.contains(":3\r\n"),
        "{hello}"
    );
    assert_eq!(c.cmd(&["GET", "k"]).await, "$1\r\nv\r\n");
    let stats = stack.stats();
    assert_eq!(stats.auth_ok, 2);
    assert_eq!(stats.failed_total(), 0);
    assert!(stats.commands >= 3);
}

/// Each class of bad token, refused with WRONGPASS and counted by its reason.
#[tokio::test]
async fn bad_tokens_are_refused_each_with_its_reason() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let creds = static_credentials();
    let at = now();
    let url =
        |host: &str, query: &str| format!("http://{host}/?Action=connect&User=iam-user-01{query}");
    let serverless = "&ResourceType=ServerlessCache";
    let signer = |region: &str, user: &str| {
        TokenSigner::builder()
            .serverless_cache(CACHE)
            .user_id(user)
            .region(region)
            .build()
            .unwrap()
    };
    let sign = |signer: TokenSigner, creds: &Credentials, at| {
        signer.sign(creds, at).unwrap().expose_secret().to_owned()
    };
    let good = serverless_token(CACHE);
    let tampered = {
        let (head, sig) = good.split_at(good.len() - 1);
        format!("{head}{}", if sig == "0" { "1" } else { "0" })
    };
    let temp_expired = Credentials::new(
        "ASIATEMPEXPIRED00001",
        "temp-secret",
        Some("temp-session".into()),
        None,
        "t",
    );
    stack.registry().insert(KnownCredentials {
        access_key_id: "ASIATEMPEXPIRED00001".into(),
        secret_access_key: "temp-secret".into(),
        session_token: Some("temp-session".into()),
        expires: Some(at - Duration::from_secs(1)),
        principal: "arn:aws:iam::000000000000:role/expired".into(),
    });

    let cases: Vec<(&str, Option<&str>, String, &str)> = vec![
        (
            "wrong secret",
            Some("iam-user-01"),
            sign(
                signer("us-east-1", "iam-user-01"),
                &Credentials::new(STATIC_ACCESS_KEY_ID, "not-the-secret", None, None, "t"),
                at,
            ),
            "signature_mismatch",
        ),
        (
            "unknown key",
            Some("iam-user-01"),
            sign(
                signer("us-east-1", "iam-user-01"),
                &Credentials::new("AKIAUNKNOWN000000000", "x", None, None, "t"),
                at,
            ),
            "unknown_access_key",
        ),
        (
            "tampered signature",
            Some("iam-user-01"),
            tampered,
            "signature_mismatch",
        ),
        (
            "expired",
            Some("iam-user-01"),
            sign(
                signer("us-east-1", "iam-user-01"),
                &creds,
                at - Duration::from_secs(1000),
            ),
            "token_expired",
        ),
        (
            "future beyond skew",
            Some("iam-user-01"),
            sign(
                signer("us-east-1", "iam-user-01"),
                &creds,
                at + Duration::from_secs(600),
            ),
            "not_yet_valid",
        ),
        (
            "wrong region",
            Some("iam-user-01"),
            sign(signer("eu-west-1", "iam-user-01"), &creds, at),
            "wrong_region",
        ),
        (
            "wrong service",
            Some("iam-user-01"),
            presign(&url(CACHE, ""), "memorydb", "us-east-1", &creds, at, 900),
            "wrong_service",
        ),
        (
            "uppercase host",
            Some("iam-user-01"),
            presign(
                &url("My-Cache", serverless),
                "elasticache",
                "us-east-1",
                &creds,
                at,
                900,
            ),
            "host_not_lowercase",
        ),
        (
            "endpoint host",
            Some("iam-user-01"),
            presign(
                &url(
                    "my-cache-abc123.serverless.use1.cache.amazonaws.com",
                    serverless,
                ),
                "elasticache",
                "us-east-1",
                &creds,
                at,
                900,
            ),
            "host_is_endpoint",
        ),
        (
            "missing ResourceType",
            Some("iam-user-01"),
            presign(&url(CACHE, ""), "elasticache", "us-east-1", &creds, at, 900),
            "resource_type_missing",
        ),
        (
            "other user signed",
            Some("other-user"),
            sign(signer("us-east-1", "other-user"), &creds, at),
            "wrong_user",
        ),
        (
            "AUTH user differs",
            Some("someone-else"),
            serverless_token(CACHE),
            "auth_user_mismatch",
        ),
        (
            "AUTH with no user",
            None,
            serverless_token(CACHE),
            "no_user_name",
        ),
        (
            "expired temporary credentials",
            Some("iam-user-01"),
            sign(signer("us-east-1", "iam-user-01"), &temp_expired, at),
            "credentials_expired",
        ),
        (
            "X-Amz-Expires above 900",
            Some("iam-user-01"),
            presign(
                &url(CACHE, serverless),
                "elasticache",
                "us-east-1",
                &creds,
                at,
                1000,
            ),
            "expires_too_long",
        ),
    ];
    for (what, user, token, reason) in &cases {
        let mut c = RawClient::connect(&stack).await;
        let before = stack.stats().failed(reason);
        let reply = match user {
            Some(user) => c.cmd(&["AUTH", user, token]).await,
            None => c.cmd(&["AUTH", token]).await,
        };
        assert_eq!(reply, WRONGPASS, "{what}");
        assert_eq!(
            stack.stats().failed(reason),
            before + 1,
            "{what}: {:?}",
            stack.stats().auth_failed
        );
        // Still unauthenticated.
        assert!(c.cmd(&["GET", "k"]).await.starts_with("-NOAUTH"), "{what}");
    }
    assert_eq!(stack.stats().auth_ok, 0);
    assert_eq!(stack.stats().failed_total(), cases.len() as u64);
}

#[tokio::test]
async fn surplus_resource_type_is_refused_by_a_replication_group() {
    let stack = start(StackConfig::replication_group("my-rg")).await;
    let mut c = RawClient::connect(&stack).await;
    let token = presign(
        "http://my-rg/?Action=connect&User=iam-user-01&ResourceType=ServerlessCache",
        "elasticache",
        "us-east-1",
        &static_credentials(),
        now(),
        900,
    );
    assert_eq!(c.cmd(&["AUTH", "iam-user-01", &token]).await, WRONGPASS);
    assert_eq!(stack.stats().failed("resource_type_unexpected"), 1);
    // And the right token for a replication group is accepted.
    let signer = TokenSigner::builder()
        .replication_group("my-rg")
        .user_id("iam-user-01")
        .region("us-east-1")
        .build()
        .unwrap();
    let token = signer.sign(&static_credentials(), now()).unwrap();
    assert_eq!(
        c.cmd(&["AUTH", "iam-user-01", token.expose_secret()]).await,
        "+OK\r\n"
    );
}

#[tokio::test]
async fn unauthenticated_commands_get_noauth_then_the_connection_closes() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut c = RawClient::connect(&stack).await;
    assert_eq!(
        c.cmd(&["PING"]).await,
        "-NOAUTH Authentication required.\r\n"
    );
    assert!(
        c.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "x"])
            .await
            .starts_with("-NOAUTH")
    );
    // HELLO without AUTH counts too.
    assert!(
        c.cmd(&["HELLO", "3"])
            .await
            .starts_with("-NOAUTH HELLO must be called")
    );
    for _ in 0..7 {
        assert!(c.cmd(&["GET", "k"]).await.starts_with("-NOAUTH"));
    }
    assert!(
        c.closed_within(Duration::from_secs(2)).await,
        "closed after repeated unauthenticated commands"
    );
}

#[tokio::test]
async fn failed_authentication_counts_toward_the_unauthenticated_limit() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut c = RawClient::connect(&stack).await;
    for _ in 0..9 {
        assert_eq!(
            c.cmd(&["AUTH", "iam-user-01", "not-a-token"]).await,
            WRONGPASS
        );
    }
    assert!(
        !c.closed_within(Duration::from_millis(100)).await,
        "open after 9"
    );
    assert_eq!(
        c.cmd(&["AUTH", "iam-user-01", "not-a-token"]).await,
        WRONGPASS
    );
    assert!(
        c.closed_within(Duration::from_secs(2)).await,
        "closed after the 10th unauthenticated command"
    );
}

#[tokio::test]
async fn an_unsupported_hello_version_is_refused_before_authentication() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut c = RawClient::connect(&stack).await;
    let token = serverless_token(CACHE);
    assert_eq!(
        c.cmd(&["HELLO", "4", "AUTH", "iam-user-01", &token]).await,
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(
        c.cmd(&["HELLO", "three", "AUTH", "iam-user-01", &token])
            .await,
        "-ERR Protocol version is not an integer or out of range\r\n"
    );
    // Every option is checked before authentication too.
    assert_eq!(
        c.cmd(&["HELLO", "3", "AUTH", "iam-user-01", &token, "SETNAME"])
            .await,
        "-ERR Syntax error in HELLO option 'SETNAME'\r\n"
    );
    assert_eq!(
        c.cmd(&["HELLO", "3", "AUTH", "iam-user-01", &token, "Flag"])
            .await,
        "-ERR Syntax error in HELLO option 'Flag'\r\n"
    );
    assert_eq!(
        c.cmd(&[
            "HELLO",
            "3",
            "AUTH",
            "iam-user-01",
            &token,
            "SETNAME",
            "a b"
        ])
        .await,
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    // The token was never looked at.
    assert_eq!(stack.stats().auth_ok + stack.stats().failed_total(), 0);
    assert!(c.cmd(&["GET", "k"]).await.starts_with("-NOAUTH"));
    // The same token with a supported version, and a name.
    let hello = c
        .cmd(&["HELLO", "3", "AUTH", "iam-user-01", &token, "SETNAME", "me"])
        .await;
    assert!(hello.starts_with('%'), "{hello}");
    assert_eq!(stack.stats().auth_ok, 1);
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]).await, "$2\r\nme\r\n");
}

#[tokio::test]
async fn reset_returns_the_connection_to_unauthenticated() {
    let stack =
        start(StackConfig::serverless(CACHE).max_auth_age(Duration::from_millis(1200))).await;
    let mut c = RawClient::connect(&stack).await;
    // Allowed before authentication.
    assert_eq!(c.cmd(&["RESET"]).await, "+RESET\r\n");
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");
    assert_eq!(c.cmd(&["SET", "reset-k", "v"]).await, "+OK\r\n");
    assert_eq!(c.cmd(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(c.cmd(&["RESET"]).await, "+RESET\r\n");
    assert!(c.cmd(&["GET", "reset-k"]).await.starts_with("-NOAUTH"));
    // No 12-hour clock runs for an unauthenticated connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(c.cmd(&["PING"]).await.starts_with("-NOAUTH"));
    // Authenticated again: the transaction is gone, the data is there.
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");
    assert_eq!(c.cmd(&["GET", "reset-k"]).await, "$1\r\nv\r\n");
    assert_eq!(stack.stats().forced_disconnects, 0);
}

#[tokio::test]
async fn the_max_auth_age_closes_connections_and_reauth_extends_them() {
    let stack =
        start(StackConfig::serverless(CACHE).max_auth_age(Duration::from_millis(1200))).await;
    // Never re-authenticated: closed at the max auth age.
    let mut idle = RawClient::connect(&stack).await;
    assert_eq!(idle.auth(CACHE).await, "+OK\r\n");
    // Re-authenticated after 700 ms: still open at 1.5 s, closed by 2.3 s.
    let mut renewed = RawClient::connect(&stack).await;
    assert_eq!(renewed.auth(CACHE).await, "+OK\r\n");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(renewed.auth(CACHE).await, "+OK\r\n");
    assert!(
        idle.closed_within(Duration::from_millis(1000)).await,
        "idle connection closed"
    );
    assert_eq!(renewed.cmd(&["PING"]).await, "+PONG\r\n");
    assert!(
        renewed.closed_within(Duration::from_millis(1500)).await,
        "renewed connection closed later"
    );
    let stats = stack.stats();
    assert_eq!(stats.forced_disconnects, 2);
    assert_eq!(stats.auth_ok, 3);
    assert_eq!(stats.reauth_ok, 1);
}

#[tokio::test]
async fn token_expiry_alone_never_closes_a_connection() {
    let clock = ManualClock::new(now());
    let stack = start(StackConfig::serverless(CACHE).clock(Arc::new(clock.clone()))).await;
    let mut c = RawClient::connect(&stack).await;
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");
    clock.advance(Duration::from_secs(3600)); // the token is long expired
    assert_eq!(c.cmd(&["PING"]).await, "+PONG\r\n");
    // But re-authenticating with it is refused now.
    let mut d = RawClient::connect(&stack).await;
    assert_eq!(d.auth(CACHE).await, WRONGPASS);
    assert_eq!(stack.stats().failed("token_expired"), 1);
}

#[tokio::test]
async fn reauth_inside_multi_is_refused() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut c = RawClient::connect(&stack).await;
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");
    assert_eq!(c.cmd(&["MULTI"]).await, "+OK\r\n");
    assert!(
        c.auth(CACHE)
            .await
            .starts_with("-ERR AUTH is not allowed inside MULTI")
    );
    assert_eq!(c.cmd(&["SET", "m", "1"]).await, "+QUEUED\r\n");
    assert!(c.cmd(&["EXEC"]).await.starts_with("*1\r\n"));
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");
}

#[tokio::test]
async fn serverless_topology_is_one_shard_at_the_front() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut c = RawClient::connect(&stack).await;
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");
    let port = stack.endpoint().port();
    let slots = c.cmd(&["CLUSTER", "SLOTS"]).await;
    assert!(
        slots.starts_with("*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n"),
        "{slots}"
    );
    assert!(slots.contains(&format!(":{port}\r\n")));
    assert!(c.cmd(&["CLUSTER", "SHARDS"]).await.contains("16383"));
    assert!(c.cmd(&["CLUSTER", "NODES"]).await.contains(&format!(
        "127.0.0.1:{port}@{port} myself,master - 0 0 1 connected 0-16383"
    )));
    assert_eq!(c.cmd(&["READONLY"]).await, "+OK\r\n");
    assert_eq!(c.cmd(&["READWRITE"]).await, "+OK\r\n");
}

#[tokio::test]
async fn pipelined_commands_keep_their_order_around_the_fronts_own_replies() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut c = RawClient::connect(&stack).await;
    let token = serverless_token(CACHE);
    let mut batch = Vec::new();
    for args in [
        &["AUTH", "iam-user-01", token.as_str()][..],
        &["SET", "p", "1"],
        &["CLUSTER", "MYID"],
        &["INCR", "p"],
        &["READONLY"],
        &["GET", "p"],
    ] {
        batch.extend(elasticache_localstack::resp::array(
            &args
                .iter()
                .map(|a| elasticache_localstack::resp::bulk(a.as_bytes()))
                .collect::<Vec<_>>(),
        ));
    }
    c.send_raw(&batch).await;
    let mut replies = Vec::new();
    for _ in 0..6 {
        replies.push(c.reply().await.unwrap());
    }
    assert_eq!(replies[0], "+OK\r\n");
    assert_eq!(replies[1], "+OK\r\n");
    assert!(replies[2].starts_with("$40\r\n"));
    assert_eq!(replies[3], ":2\r\n");
    assert_eq!(replies[4], "+OK\r\n");
    assert_eq!(replies[5], "$1\r\n2\r\n");
}

#[tokio::test]
async fn a_password_user_can_be_configured_for_comparison_runs() {
    let stack =
        start(StackConfig::replication_group("my-rg").password_user("bench", "s3cret")).await;
    let mut c = RawClient::connect(&stack).await;
    assert_eq!(c.cmd(&["AUTH", "bench", "wrong"]).await, WRONGPASS);
    assert_eq!(c.cmd(&["AUTH", "bench", "s3cret"]).await, "+OK\r\n");
    assert_eq!(c.cmd(&["PING"]).await, "+PONG\r\n");
    let _ = (STATIC_SECRET_ACCESS_KEY, support::static_credentials);
}

#[tokio::test]
async fn a_denied_principal_is_refused() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    stack.registry().insert(KnownCredentials {
        access_key_id: "AKIADENIED0000000001".into(),
        secret_access_key: "denied-secret".into(),
        session_token: None,
        expires: None,
        principal: "arn:aws:iam::000000000000:user/no-connect".into(),
    });
    stack
        .registry()
        .deny_principal("arn:aws:iam::000000000000:user/no-connect");
    let creds = Credentials::new("AKIADENIED0000000001", "denied-secret", None, None, "t");
    let signer = TokenSigner::builder()
        .serverless_cache(CACHE)
        .user_id("iam-user-01")
        .region("us-east-1")
        .build()
        .unwrap();
    let token = signer.sign(&creds, now()).unwrap();
    let mut c = RawClient::connect(&stack).await;
    assert_eq!(
        c.cmd(&["AUTH", "iam-user-01", token.expose_secret()]).await,
        WRONGPASS
    );
    assert_eq!(stack.stats().failed("principal_denied"), 1);
    // The same token shape from an allowed principal passes.
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");
}
