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
    let signer = TokenSigner::builder()
        .serverless_cache(name)
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
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_file(stack.ca_file()).unwrap();
        roots.add(ca).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(stack.endpoint()).await.unwrap();
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
