//! Malformed RESP and malformed tokens never panic the stack: property tests of
//! the parsers and the verifier, and garbage sent to a live front, bounded.

mod support;

use std::time::{Duration, SystemTime};

use elasticache_localstack::verify::{Expectations, verify};
use elasticache_localstack::{Registry, StackConfig, resp};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use support::{RawClient, start};

fn expectations() -> Expectations {
    Expectations {
        service: "elasticache".into(),
        region: "us-east-1".into(),
        cache_name: "my-cache".into(),
        user_id: "iam-user-01".into(),
        serverless: true,
        clock_skew: Duration::from_secs(300),
    }
}

/// Bytes that look a little like RESP, so the parsers get past their first byte.
fn resp_ish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"*".to_vec()),
            Just(b"$".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"-1".to_vec()),
            Just(b"3".to_vec()),
            Just(b"99999999999999999999".to_vec()),
            Just(b"%".to_vec()),
            Just(b">".to_vec()),
            Just(b"|".to_vec()),
            Just(b"AUTH".to_vec()),
            any::<u8>().prop_map(|b| vec![b]),
        ],
        0..64,
    )
    .prop_map(|parts| parts.concat())
}

/// Strings shaped like tokens, with pieces moved, dropped and repeated.
fn token_ish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("my-cache".to_owned()), Just("/".to_owned()), Just("?".to_owned()), Just("&".to_owned()),
            Just("=".to_owned()), Just("%".to_owned()), Just("%ZZ".to_owned()), Just("%C3%28".to_owned()),
            Just("X-Amz-Date=20240115T123456Z".to_owned()),
            Just("X-Amz-Credential=AKIALOCALSTACKEXAMPLE%2F20240115%2Fus-east-1%2Felasticache%2Faws4_request".to_owned()),
            Just("X-Amz-Credential=AKIALOCALSTACKEXAMPLE%2F2024%2Fus-east-1%2Felasticache%2Faws4_request".to_owned()),
            Just("X-Amz-Algorithm=AWS4-HMAC-SHA256".to_owned()), Just("X-Amz-SignedHeaders=host".to_owned()),
            Just("X-Amz-Expires=900".to_owned()), Just("X-Amz-Expires=-1".to_owned()),
            Just("X-Amz-Signature=00".to_owned()), Just("Action=connect".to_owned()), Just("User=iam-user-01".to_owned()),
            ".{0,12}",
        ],
        0..16,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn command_parser_never_panics(bytes in resp_ish()) {
        if let Ok(Some(cmd)) = resp::parse_command(&bytes) {
            prop_assert!(cmd.len <= bytes.len());
            for &(s, e) in &cmd.args {
                prop_assert!(s <= e && e <= cmd.len);
            }
        }
    }

    #[test]
    fn reply_parser_never_panics(bytes in resp_ish()) {
        if let Ok(Some(n)) = resp::reply_len(&bytes) {
            prop_assert!(n <= bytes.len());
        }
    }

    #[test]
    fn verifier_never_panics(token in token_ish(), user in prop::option::of("[a-z-]{0,12}")) {
        let registry = Registry::default();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_705_322_096);
        prop_assert!(verify(&expectations(), &registry, user.as_deref(), &token, at).is_err());
    }
}

#[tokio::test]
async fn garbage_on_the_wire_does_not_hurt_the_front() {
    let stack = start(StackConfig::serverless("my-cache")).await;
    let runner_config = proptest::test_runner::Config {
        cases: 32,
        ..Default::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(runner_config);
    for _ in 0..32 {
        let bytes = resp_ish().new_tree(&mut runner).unwrap().current();
        let mut c = RawClient::connect(&stack).await;
        c.send_raw(&bytes).await;
        c.send_raw(b"\r\n*1\r\n$4\r\nPING\r\n").await;
        let _ = c.closed_within(Duration::from_millis(50)).await;
    }
    // Authenticated garbage too.
    let mut c = RawClient::connect(&stack).await;
    assert_eq!(c.auth("my-cache").await, "+OK\r\n");
    c.send_raw(b"*2\r\n$3\r\nGET\r\n$99999999999\r\n").await;
    assert!(c.reply().await.unwrap().starts_with("-ERR Protocol error"));
    // The front still serves.
    let mut d = RawClient::connect(&stack).await;
    assert_eq!(d.auth("my-cache").await, "+OK\r\n");
    assert_eq!(d.cmd(&["PING"]).await, "+PONG\r\n");
}

#[tokio::test]
async fn redis_7_smoke_test() {
    let stack =
        start(StackConfig::serverless("my-cache").engine(elasticache_localstack::Engine::Redis))
            .await;
    let mut c = RawClient::connect(&stack).await;
    let hello = c.hello3("my-cache").await;
    assert!(hello.contains("redis") && hello.contains("7.0"), "{hello}");
    assert_eq!(c.cmd(&["SET", "k", "v"]).await, "+OK\r\n");
    assert_eq!(c.cmd(&["GET", "k"]).await, "$1\r\nv\r\n");
}

/// A TLS 1.2-only handshake with the stack: whether it succeeds.
async fn tls12_handshake(stack: &elasticache_localstack::Stack) -> bool {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(stack.ca_file()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(stack.endpoint())
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .is_ok()
}

#[tokio::test]
async fn tls_13_only_refuses_tls_12() {
    let default = start(StackConfig::serverless("my-cache")).await;
    assert!(
        tls12_handshake(&default).await,
        "TLS 1.2 accepted by default"
    );
    let strict = start(StackConfig::serverless("my-cache").tls13_only(true)).await;
    assert!(
        !tls12_handshake(&strict).await,
        "TLS 1.2 refused when 1.3 is required"
    );
    let mut c = RawClient::connect(&strict).await; // negotiates 1.3
    assert_eq!(c.auth("my-cache").await, "+OK\r\n");
}
