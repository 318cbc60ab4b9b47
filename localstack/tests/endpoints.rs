//! The mock AWS credential endpoints serve aws-config's real default chain
//! (ECS task role, EKS Pod Identity, EKS IRSA through STS), the credentials they
//! issue are accepted by the front until they expire, and the admin endpoint
//! reads counters and injects faults.

mod support;

use std::time::Duration;

use elasticache_localstack::{StackConfig, StatsSnapshot};
use support::{RawClient, WRONGPASS, auth_with, default_chain, http, start};

const CACHE: &str = "my-cache";

#[tokio::test]
async fn ecs_task_role_credentials_are_accepted() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let uri = stack.container_credentials_uri();
    let creds = default_chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)])
        .await
        .unwrap();
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert!(creds.session_token().is_some() && creds.expiry().is_some());
    assert_eq!(auth_with(&stack, CACHE, &creds).await, "+OK\r\n");
    assert_eq!(stack.stats().credentials_issued, 1);
}

#[tokio::test]
async fn pod_identity_credentials_need_the_authorization_token() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let uri = stack.pod_identity_uri();
    let token_file = stack.pod_identity_token_file().display().to_string();
    let creds = default_chain(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file),
    ])
    .await
    .unwrap();
    assert_eq!(auth_with(&stack, CACHE, &creds).await, "+OK\r\n");
    // Without the token the endpoint refuses.
    let err = default_chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)])
        .await
        .unwrap_err();
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    assert_eq!(stack.stats().credentials_issued, 1);
}

#[tokio::test]
async fn irsa_web_identity_through_sts_is_accepted() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let sts = stack.sts_endpoint();
    let token_file = stack.web_identity_token_file().display().to_string();
    let creds = default_chain(&[
        ("AWS_ROLE_ARN", stack.role_arn()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file),
        ("AWS_ROLE_SESSION_NAME", "test-session"),
        ("AWS_ENDPOINT_URL_STS", &sts),
    ])
    .await
    .unwrap();
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert_eq!(auth_with(&stack, CACHE, &creds).await, "+OK\r\n");
    assert_eq!(stack.stats().credentials_issued, 1);
}

#[tokio::test]
async fn issued_credentials_stop_being_accepted_when_they_expire() {
    let stack =
        start(StackConfig::serverless(CACHE).credential_lifetime(Duration::from_secs(2))).await;
    let uri = stack.container_credentials_uri();
    let creds = default_chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)])
        .await
        .unwrap();
    assert_eq!(auth_with(&stack, CACHE, &creds).await, "+OK\r\n");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Sign as of now with credentials that expired: the signer itself refuses,
    // so present a token signed without the expiry to see the front refuse it.
    let no_expiry = aws_credential_types::Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        creds.session_token().map(str::to_owned),
        None,
        "test",
    );
    assert_eq!(auth_with(&stack, CACHE, &no_expiry).await, WRONGPASS);
    assert_eq!(stack.stats().failed("credentials_expired"), 1);
}

#[tokio::test]
async fn admin_endpoint_reads_counters_and_injects_faults() {
    let stack = start(StackConfig::serverless(CACHE)).await;
    let mut c = RawClient::connect(&stack).await;
    assert_eq!(c.auth(CACHE).await, "+OK\r\n");

    let (status, body) = http(&stack, "GET", "/stats", "").await;
    assert_eq!(status, 200);
    let stats: StatsSnapshot = serde_json::from_str(&body).unwrap();
    assert_eq!(stats.auth_ok, 1);
    assert_eq!(stats.connections_open, 1);
    for key in [
        "auth_ok",
        "auth_failed",
        "reauth_ok",
        "forced_disconnects",
        "connections_open",
        "commands",
        "credentials_issued",
        "credentials_accepted",
    ] {
        assert!(body.contains(&format!("\"{key}\"")), "{key} in {body}");
    }

    // Refuse the next authentication.
    assert_eq!(
        http(&stack, "POST", "/faults", r#"{"reject_auths": 1}"#)
            .await
            .0,
        200
    );
    let mut d = RawClient::connect(&stack).await;
    assert_eq!(d.auth(CACHE).await, WRONGPASS);
    assert_eq!(d.auth(CACHE).await, "+OK\r\n");
    assert_eq!(stack.stats().failed("fault_injected"), 1);

    // Throttle: first auth and re-auth get their throttling errors.
    assert_eq!(
        http(&stack, "POST", "/faults", r#"{"throttle_auth_ms": 60000}"#)
            .await
            .0,
        200
    );
    let mut e = RawClient::connect(&stack).await;
    assert_eq!(e.auth(CACHE).await, "-ERR service is not available\r\n");
    assert_eq!(
        d.auth(CACHE).await,
        "-ERR Exceeded limit of IAM Authentication requests\r\n"
    );
    assert_eq!(
        d.cmd(&["PING"]).await,
        "+PONG\r\n",
        "a throttled re-auth keeps the connection"
    );
    assert_eq!(
        http(&stack, "POST", "/faults", r#"{"throttle_auth_ms": 0}"#)
            .await
            .0,
        200
    );

    // Drop all connections.
    assert_eq!(
        http(&stack, "POST", "/faults", r#"{"drop_connections": true}"#)
            .await
            .0,
        200
    );
    assert!(c.closed_within(Duration::from_secs(2)).await);
    assert!(d.closed_within(Duration::from_secs(2)).await);

    // Stop and start the upstream.
    let mut f = RawClient::connect(&stack).await;
    assert_eq!(f.auth(CACHE).await, "+OK\r\n");
    assert_eq!(
        http(&stack, "POST", "/faults", r#"{"upstream": "stop"}"#)
            .await
            .0,
        200
    );
    f.send(&["PING"]).await;
    assert_eq!(f.reply().await, None, "connection closed with the upstream");
    let mut g = RawClient::connect(&stack).await;
    assert!(
        g.auth(CACHE)
            .await
            .starts_with("-ERR upstream server unavailable")
    );
    assert_eq!(
        http(&stack, "POST", "/faults", r#"{"upstream": "start"}"#)
            .await
            .0,
        200
    );
    let mut h = RawClient::connect(&stack).await;
    assert_eq!(h.auth(CACHE).await, "+OK\r\n");
    assert_eq!(h.cmd(&["PING"]).await, "+PONG\r\n");

    // Fail credential requests (aws-config retries a 500, so fail a burst).
    assert_eq!(
        http(
            &stack,
            "POST",
            "/faults",
            r#"{"fail_credential_requests": 100}"#
        )
        .await
        .0,
        200
    );
    let uri = stack.container_credentials_uri();
    let err = default_chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)])
        .await
        .unwrap_err();
    assert!(err.contains("500") || err.contains("injected"), "{err}");
    assert_eq!(
        http(
            &stack,
            "POST",
            "/faults",
            r#"{"fail_credential_requests": 0}"#
        )
        .await
        .0,
        200
    );
    assert!(
        default_chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)])
            .await
            .is_ok()
    );

    // A credential outage: every request fails until it ends.
    assert_eq!(
        http(
            &stack,
            "POST",
            "/faults",
            r#"{"credential_outage_ms": 60000}"#
        )
        .await
        .0,
        200
    );
    for _ in 0..2 {
        let err = default_chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)])
            .await
            .unwrap_err();
        assert!(err.contains("500") || err.contains("injected"), "{err}");
    }
    assert_eq!(
        http(&stack, "POST", "/faults", r#"{"credential_outage_ms": 0}"#)
            .await
            .0,
        200
    );
    let creds = default_chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)])
        .await
        .unwrap();
    // Tokens it signed are accepted, and counted once per set of credentials.
    let accepted = stack.stats().credentials_accepted;
    assert_eq!(auth_with(&stack, CACHE, &creds).await, "+OK\r\n");
    assert_eq!(auth_with(&stack, CACHE, &creds).await, "+OK\r\n");
    assert_eq!(stack.stats().credentials_accepted, accepted + 1);

    // Bad fault bodies are refused.
    assert_eq!(
        http(&stack, "POST", "/faults", r#"{"upstream": "pause"}"#)
            .await
            .0,
        400
    );
    assert!(
        http(&stack, "POST", "/faults", r#"{"no_such_fault": 1}"#)
            .await
            .0
            >= 400
    );
}
