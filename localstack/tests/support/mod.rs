//! Helpers for the stack's tests: a raw RESP client over TLS, token makers.

#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use elasticache_iam::TokenSigner;
use elasticache_localstack::{
    STATIC_ACCESS_KEY_ID, STATIC_SECRET_ACCESS_KEY, Stack, StackConfig, resp,
};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// Start a stack, or fail the test with the reason (a missing valkey-server
/// says to run scripts/install-servers.sh).
pub async fn start(config: StackConfig) -> Stack {
    Stack::start(config)
        .await
        .unwrap_or_else(|e| panic!("local stack: {e}"))
}

/// The stack's static credentials.
pub fn static_credentials() -> Credentials {
    Credentials::new(
        STATIC_ACCESS_KEY_ID,
        STATIC_SECRET_ACCESS_KEY,
        None,
        None,
        "localstack-static",
    )
}

/// The wall clock now (the tests sign with the real time the stack checks by).
#[allow(clippy::disallowed_methods)]
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// A correct token for a serverless cache `name`, user `iam-user-01`, us-east-1.
pub fn serverless_token(name: &str) -> String {
    token(Kind::Serverless, name)
}

/// What a token is made for.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Serverless,
    ReplicationGroup,
    MemoryDb,
}

/// A refresher for a cache of `kind` named `name`, user `iam-user-01`,
/// us-east-1, with the static test credentials.
pub async fn refresher(kind: Kind, name: &str) -> elasticache_iam::TokenRefresher {
    let builder = elasticache_iam::TokenRefresher::builder();
    let builder = match kind {
        Kind::Serverless => builder.serverless_cache(name),
        Kind::ReplicationGroup => builder.replication_group(name),
        Kind::MemoryDb => builder.memorydb_cluster(name),
    };
    builder
        .user_id("iam-user-01")
        .region("us-east-1")
        .credentials_provider(static_credentials())
        .build()
        .await
        .unwrap()
}

/// A plain-TCP connection to a server behind the fronts.
pub async fn server(addr: std::net::SocketAddr) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// One command to the server at `addr` (plain TCP), and its reply.
pub async fn on_server<T: redis::FromRedisValue>(addr: std::net::SocketAddr, args: &[&str]) -> T {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut server(addr).await)
        .await
        .unwrap()
}

/// A correct token for a cache of `kind` named `name`, user `iam-user-01`,
/// us-east-1, signed by this crate's signer.
pub fn token(kind: Kind, name: &str) -> String {
    let builder = TokenSigner::builder();
    let builder = match kind {
        Kind::Serverless => builder.serverless_cache(name),
        Kind::ReplicationGroup => builder.replication_group(name),
        Kind::MemoryDb => builder.memorydb_cluster(name),
    };
    let signer = builder
        .user_id("iam-user-01")
        .region("us-east-1")
        .build()
        .unwrap();
    signer
        .sign(&static_credentials(), now())
        .unwrap()
        .expose_secret()
        .to_owned()
}

/// Presign an arbitrary request with aws-sigv4 directly, as a careless client
/// might: any host, query, service, region, expiry.
pub fn presign(
    url: &str,
    service: &str,
    region: &str,
    creds: &Credentials,
    at: SystemTime,
    expires: u64,
) -> String {
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    let identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(expires));
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let request =
        SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(&[])).unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut token = url.strip_prefix("http://").unwrap().to_owned();
    for (k, v) in instructions.params() {
        let v: String =
            percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        token.push_str(&format!("&{k}={v}"));
    }
    token
}

/// A raw RESP client over TLS, for exact replies.
pub struct RawClient {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl RawClient {
    pub async fn connect(stack: &Stack) -> Self {
        Self::connect_at(stack, stack.endpoint()).await
    }

    /// To the front at `addr` (one node of a cluster).
    pub async fn connect_at(stack: &Stack, addr: std::net::SocketAddr) -> Self {
        let config = tls_config(stack);
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// `AUTH iam-user-01 <a fresh valid token for the serverless cache>`; the reply.
    pub async fn auth(&mut self, cache: &str) -> String {
        self.cmd(&["AUTH", "iam-user-01", &serverless_token(cache)])
            .await
    }

    /// `AUTH iam-user-01 <a fresh valid token for a cache of `kind`>`,
    /// which must succeed.
    pub async fn auth_as(&mut self, kind: Kind, cache: &str) {
        let reply = self
            .cmd(&["AUTH", "iam-user-01", &token(kind, cache)])
            .await;
        assert_eq!(reply, "+OK\r\n");
    }

    /// `HELLO 3 AUTH iam-user-01 <a fresh valid token for the serverless
    /// cache>`; the reply.
    pub async fn hello3(&mut self, cache: &str) -> String {
        self.cmd(&[
            "HELLO",
            "3",
            "AUTH",
            "iam-user-01",
            &serverless_token(cache),
        ])
        .await
    }

    /// Send a command, return its raw reply.
    pub async fn cmd(&mut self, args: &[&str]) -> String {
        self.send(args).await;
        self.reply().await.expect("a reply")
    }

    pub async fn send(&mut self, args: &[&str]) {
        let items: Vec<Vec<u8>> = args.iter().map(|a| resp::bulk(a.as_bytes())).collect();
        self.stream.write_all(&resp::array(&items)).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next reply, or `None` if the server closed the connection.
    pub async fn reply(&mut self) -> Option<String> {
        loop {
            if let Ok(Some(n)) = resp::reply_len(&self.buf) {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                return Some(String::from_utf8_lossy(&frame).into_owned());
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Whether the server has closed the connection (waits up to `within`).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 64];
        match tokio::time::timeout(within, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) | Err(_) => false,
        }
    }
}

/// A plain HTTP/1.1 request to the stack's HTTP endpoints: (status, body).
pub async fn http(stack: &Stack, method: &str, path: &str, body: &str) -> (u16, String) {
    let addr = stack.admin_url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Credentials from aws-config's real default chain, with exactly `vars` as the
/// environment (plus isolation: no profile files, no instance metadata).
pub async fn default_chain(vars: &[(&str, &str)]) -> Result<Credentials, String> {
    use aws_credential_types::provider::ProvideCredentials;
    let nowhere = std::env::temp_dir().join("elasticache-localstack-no-such-dir");
    let nowhere = nowhere.display().to_string();
    let mut env = vec![
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", nowhere.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", nowhere.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    env.extend_from_slice(vars);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .env(aws_types::os_shim_internal::Env::from_slice(&env))
        .load()
        .await;
    let provider = config.credentials_provider().ok_or("no provider")?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Sign with `creds` and authenticate a new connection; the reply.
pub async fn auth_with(stack: &Stack, cache: &str, creds: &Credentials) -> String {
    let signer = TokenSigner::builder()
        .serverless_cache(cache)
        .user_id("iam-user-01")
        .region("us-east-1")
        .build()
        .unwrap();
    let token = signer.sign(creds, now()).unwrap();
    let mut c = RawClient::connect(stack).await;
    c.cmd(&["AUTH", "iam-user-01", token.expose_secret()]).await
}

/// A TLS client configuration trusting the stack's CA, presenting no client
/// certificate.
pub fn tls_config(stack: &Stack) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(stack.ca_file()).unwrap();
    roots.add(ca).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}
