//! Mutual TLS: with `require_client_cert` every front (the one server's, each
//! node's of a cluster, a serverless cache's endpoint and replica-read
//! endpoint) demands a client certificate signed by the stack's CA; the stack
//! makes one, writes it beside the CA file and lists it in the env file.
//! Without the option nothing is asked of clients.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use elasticache_iam::TokenSigner;
use elasticache_localstack::{Stack, StackConfig};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::{ClientTlsConfig, TlsCertificates};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const USER: &str = "bench";
const PASSWORD: &str = "s3cret";

/// The env file's keys and values, as the stack renders them.
fn env_of(stack: &Stack) -> BTreeMap<&'static str, String> {
    stack.env_vars().into_iter().collect()
}

/// The stack's CA, and `client` as the certificate presented.
fn certs(stack: &Stack, client: Option<ClientTlsConfig>) -> TlsCertificates {
    TlsCertificates {
        client_tls: client,
        root_cert: Some(std::fs::read(stack.ca_file()).unwrap()),
    }
}

/// The client certificate and key the stack wrote.
fn written_client_cert(stack: &Stack) -> ClientTlsConfig {
    ClientTlsConfig {
        client_cert: std::fs::read(stack.client_cert_file().expect("a client certificate"))
            .unwrap(),
        client_key: std::fs::read(stack.client_key_file().expect("a client key")).unwrap(),
    }
}

/// A client certificate and key from a CA of its own, not the stack's.
fn foreign_client_cert() -> ClientTlsConfig {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    ClientTlsConfig {
        client_cert: cert.pem().into_bytes(),
        client_key: key.serialize_pem().into_bytes(),
    }
}

/// A connection to the front at `addr` authenticated as the password user
/// (`AUTH` while connecting), or why none could be made. Bounded, so that a
/// front that never answers fails the test rather than hanging it.
async fn connect(
    addr: SocketAddr,
    certs: TlsCertificates,
) -> Result<MultiplexedConnection, String> {
    let url = format!("rediss://{USER}:{PASSWORD}@127.0.0.1:{}", addr.port());
    let client = redis::Client::build_with_tls(url, certs).map_err(|e| e.to_string())?;
    tokio::time::timeout(
        Duration::from_secs(10),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| "no answer within 10 s".to_owned())?
    .map_err(|e| e.to_string())
}

/// Whether a client without an acceptable certificate is turned away at
/// `addr`: no connection, or its first command fails.
async fn refused(addr: SocketAddr, certs: TlsCertificates) -> bool {
    match connect(addr, certs).await {
        Err(_) => true,
        Ok(mut con) => redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .is_err(),
    }
}

/// A raw TLS client presenting no certificate to the front at `addr`: the
/// error it gets once it sends a command (TLS 1.3 ends the client's side of
/// the handshake before the server has looked at its certificate).
async fn raw_error_without_cert(stack: &Stack, addr: SocketAddr) -> String {
    let config = support::tls_config(stack);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = match TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(tls) => tls,
        Err(e) => return e.to_string(),
    };
    let mut reply = [0u8; 64];
    let read = async {
        tls.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
        tls.read(&mut reply).await
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(n)) => format!("read {n} bytes: {:?}", &reply[..n]),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 10 s".to_owned(),
    }
}

/// At every front of `stack`: the written client certificate, with the
/// password user, gets through; no certificate, or one from another CA, is
/// refused in the handshake.
async fn every_front_requires_the_certificate(stack: &Stack) {
    let fronts = stack.node_endpoints();
    assert!(!fronts.is_empty());
    for addr in fronts {
        let mut con = connect(addr, certs(stack, Some(written_client_cert(stack))))
            .await
            .unwrap_or_else(|e| panic!("{addr} with the client certificate: {e}"));
        let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
        assert_eq!(pong, "PONG", "{addr}");

        assert!(refused(addr, certs(stack, None)).await, "{addr}");
        let error = raw_error_without_cert(stack, addr).await;
        assert!(error.contains("CertificateRequired"), "{addr}: {error}");
        assert!(
            refused(addr, certs(stack, Some(foreign_client_cert()))).await,
            "{addr}"
        );
    }
    // Refused handshakes are not connections: only the accepted ones count.
    assert_eq!(
        stack.stats().connections_total,
        stack.node_endpoints().len() as u64
    );
}

/// The two keys, pointing at the stack's files, beside the CA file.
fn assert_client_cert_keys(env: &BTreeMap<&str, String>, ca_dir: &Path) {
    for key in ["REDIS_SSL_CERTFILE", "REDIS_SSL_KEYFILE"] {
        let path = Path::new(
            env.get(key)
                .unwrap_or_else(|| panic!("{key} missing: {env:?}")),
        );
        assert!(path.is_file(), "{key}={}", path.display());
        assert_eq!(path.parent(), Some(ca_dir), "{key}={}", path.display());
    }
    assert_ne!(env["REDIS_SSL_CERTFILE"], env["REDIS_SSL_KEYFILE"]);
}

#[tokio::test]
async fn serverless_endpoints_require_a_client_certificate_signed_by_the_ca() {
    let stack = support::start(
        StackConfig::serverless("mtls-cache")
            .password_user(USER, PASSWORD)
            .require_client_cert(true),
    )
    .await;
    let ca_dir = stack.ca_file().parent().unwrap().to_owned();
    assert_eq!(stack.client_cert_file().unwrap().parent(), Some(&*ca_dir));
    assert_eq!(stack.client_key_file().unwrap().parent(), Some(&*ca_dir));
    let env = env_of(&stack);
    assert_client_cert_keys(&env, &ca_dir);
    assert_eq!(
        Path::new(&env["REDIS_SSL_CERTFILE"]),
        stack.client_cert_file().unwrap()
    );
    assert_eq!(
        Path::new(&env["REDIS_SSL_KEYFILE"]),
        stack.client_key_file().unwrap()
    );

    // SET and GET with the written certificate and key, the CA and the
    // password user; the replica-read endpoint reads the same key (from the
    // primary until `READONLY`).
    let client_tls = written_client_cert(&stack);
    let mut con = connect(stack.endpoint(), certs(&stack, Some(client_tls.clone())))
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg("mtls-key")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg("mtls-key")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, "v");
    let reader = stack.reader_endpoint().expect("a replica-read endpoint");
    let mut con = connect(reader, certs(&stack, Some(client_tls)))
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg("mtls-key")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, "v");
    drop(con);

    // Both endpoints count their accepted connections from here on.
    let before = stack.stats().connections_total;
    assert_eq!(before, 2);
    let without = raw_error_without_cert(&stack, stack.endpoint()).await;
    assert!(without.contains("CertificateRequired"), "{without}");
    assert!(refused(stack.endpoint(), certs(&stack, None)).await);
    assert!(refused(reader, certs(&stack, None)).await);
    assert_eq!(stack.stats().connections_total, before);
    assert_eq!(stack.stats().auth_ok, 2);
}

#[tokio::test]
async fn every_cluster_node_requires_a_client_certificate() {
    let stack = support::start(
        StackConfig::replication_group("mtls-group")
            .cluster_mode(2, 0)
            .password_user(USER, PASSWORD)
            .require_client_cert(true),
    )
    .await;
    every_front_requires_the_certificate(&stack).await;

    // A cluster client follows the topology to every node with the certificate.
    let seed = format!("rediss://127.0.0.1:{}", stack.endpoint().port());
    let client = ClusterClientBuilder::new(vec![seed])
        .certs(certs(&stack, Some(written_client_cert(&stack))))
        .username(USER)
        .password(PASSWORD)
        .build()
        .unwrap();
    let mut con = client.get_async_connection().await.unwrap();
    for i in 0..50 {
        let () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(i)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    for i in 0..50 {
        let value: usize = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(value, i);
    }
}

#[tokio::test]
async fn without_the_option_no_client_certificate_is_made_or_asked_for() {
    let stack =
        support::start(StackConfig::replication_group("plain-group").password_user(USER, PASSWORD))
            .await;
    assert_eq!(stack.client_cert_file(), None);
    assert_eq!(stack.client_key_file(), None);
    let env = env_of(&stack);
    assert!(env.contains_key("REDIS_SSL_CA_CERTS"), "{env:?}");
    assert!(!env.contains_key("REDIS_SSL_CERTFILE"), "{env:?}");
    assert!(!env.contains_key("REDIS_SSL_KEYFILE"), "{env:?}");
    assert!(!stack.dir().join("client.pem").exists());
    assert!(!stack.dir().join("client-key.pem").exists());

    let mut con = connect(stack.endpoint(), certs(&stack, None))
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, "v");
}

/// Kills the stack if the test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--require-client-cert` on the command line: the env file names the client
/// certificate and key, and a client using exactly what it says (IAM
/// authentication included) gets through, one without the certificate does
/// not; the files go when the stack stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_lists_the_client_certificate_in_the_env_file() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("stack.env");
    let child = Command::new(env!("CARGO_BIN_EXE_elasticache-localstack"))
        .args(["--replication-group", "bin-mtls", "--require-client-cert"])
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
    let mut text = String::new();
    for _ in 0..400 {
        text = std::fs::read_to_string(&env_file).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the stack exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let env: BTreeMap<&str, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    let ca = Path::new(env.get("REDIS_SSL_CA_CERTS").expect("the CA file"));
    assert_client_cert_keys(&env, ca.parent().unwrap());

    let addr: SocketAddr = format!("{}:{}", env["REDIS_HOST"], env["REDIS_PORT"])
        .parse()
        .unwrap();
    let tls = |client_tls: Option<ClientTlsConfig>| TlsCertificates {
        client_tls,
        root_cert: Some(std::fs::read(ca).unwrap()),
    };
    let client_tls = ClientTlsConfig {
        client_cert: std::fs::read(&env["REDIS_SSL_CERTFILE"]).unwrap(),
        client_key: std::fs::read(&env["REDIS_SSL_KEYFILE"]).unwrap(),
    };
    let token = TokenSigner::builder()
        .replication_group("bin-mtls")
        .user_id(&env["ELASTICACHE_USER_ID"])
        .region(&env["AWS_REGION"])
        .build()
        .unwrap()
        .sign(
            &Credentials::new(
                &env["AWS_ACCESS_KEY_ID"],
                &env["AWS_SECRET_ACCESS_KEY"],
                None,
                None,
                "env-file",
            ),
            support::now(),
        )
        .unwrap();
    let url = format!("rediss://127.0.0.1:{}", addr.port());
    let mut con = redis::Client::build_with_tls(url.as_str(), tls(Some(client_tls)))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("AUTH")
        .arg(&env["ELASTICACHE_USER_ID"])
        .arg(token.expose_secret())
        .query_async(&mut con)
        .await
        .unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
    assert_eq!(pong, "PONG");
    drop(con);
    let without = redis::Client::build_with_tls(url.as_str(), tls(None)).unwrap();
    let turned_away = match tokio::time::timeout(
        Duration::from_secs(10),
        without.get_multiplexed_async_connection(),
    )
    .await
    {
        Err(_) | Ok(Err(_)) => true,
        Ok(Ok(mut con)) => redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .is_err(),
    };
    assert!(turned_away);

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            assert!(!Path::new(&env["REDIS_SSL_CERTFILE"]).exists());
            assert!(!Path::new(&env["REDIS_SSL_KEYFILE"]).exists());
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the stack did not exit on SIGTERM");
}
