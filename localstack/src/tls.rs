//! The front's TLS: a certificate authority and a server certificate for
//! `localhost` and `127.0.0.1`, made at start-up; the CA is written to a PEM file
//! for clients (`REDIS_SSL_CA_CERTS`, `redis-cli --cacert`). With mutual TLS the
//! fronts also demand a client certificate signed by that CA, and one is made
//! and written beside the CA file (`REDIS_SSL_CERTFILE`, `REDIS_SSL_KEYFILE`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Where the client certificate and its key are written when the fronts
/// require one (mutual TLS): PEM files a client presents as they are.
#[derive(Clone, Debug)]
pub(crate) struct ClientCertFiles {
    /// The client certificate (PEM), signed by the stack's CA.
    pub(crate) cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub(crate) key: PathBuf,
}

/// The stack's certificate authority: it signs the server certificate and,
/// with mutual TLS, the client certificate, so that one CA file serves both
/// sides.
type Authority = CertifiedIssuer<'static, KeyPair>;

/// `what: error`, the form of every error here.
fn err(what: &str, e: &dyn std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Make a CA and a server certificate, write the CA to `ca_path`, and return a
/// rustls server configuration (TLS 1.3 only when `tls13_only`). With
/// `client_cert`, the configuration demands a client certificate signed by
/// the CA, and one is made and written to those files.
pub(crate) fn server_config(
    ca_path: &Path,
    tls13_only: bool,
    client_cert: Option<&ClientCertFiles>,
) -> Result<Arc<ServerConfig>, String> {
    let ca = authority()?;
    let (server_cert, server_key) = server_certificate(&ca)?;
    std::fs::write(ca_path, ca.pem()).map_err(|e| err("writing the CA file", &e))?;

    // The provider everything here uses, the client verifier included: the
    // same rustls (aws-lc-rs) that aws-config already builds.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12, &rustls::version::TLS13]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| err("TLS versions", &e))?;
    let builder = match client_cert {
        Some(files) => {
            write_client_certificate(&ca, files)?;
            builder.with_client_cert_verifier(client_verifier(&ca, provider)?)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(vec![server_cert], server_key)
        .map_err(|e| err("server certificate", &e))?;
    Ok(Arc::new(config))
}

/// A fresh self-signed CA, made at every start so that no key outlives the
/// stack.
fn authority() -> Result<Authority, String> {
    let key = KeyPair::generate().map_err(|e| err("CA key", &e))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA params", &e))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "elasticache-localstack test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, key).map_err(|e| err("CA certificate", &e))
}

/// The fronts' certificate for `localhost` and `127.0.0.1` (the names clients
/// connect by), signed by `ca`, and its key.
fn server_certificate(
    ca: &Authority,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
    let key = KeyPair::generate().map_err(|e| err("server key", &e))?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .map_err(|e| err("server params", &e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params
        .signed_by(&key, ca)
        .map_err(|e| err("server certificate", &e))?;
    Ok((
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}

/// Make a client certificate signed by `ca` and write it and its key to
/// `files`. It is marked for client authentication only, as a client
/// certificate an operator hands out would be; the key is written into the
/// stack's own directory, which only its user can read.
fn write_client_certificate(ca: &Authority, files: &ClientCertFiles) -> Result<(), String> {
    let key = KeyPair::generate().map_err(|e| err("client key", &e))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| err("client params", &e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "elasticache-localstack client");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, ca)
        .map_err(|e| err("client certificate", &e))?;
    std::fs::write(&files.cert, cert.pem())
        .map_err(|e| err("writing the client certificate", &e))?;
    std::fs::write(&files.key, key.serialize_pem())
        .map_err(|e| err("writing the client key", &e))?;
    Ok(())
}

/// A verifier that refuses every handshake without a client certificate
/// chaining to `ca` (and nothing else: the system's roots are not trusted),
/// with `provider`, the one the server configuration uses, so that both agree
/// on the signature algorithms.
fn client_verifier(
    ca: &Authority,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.der().clone())
        .map_err(|e| err("client CA", &e))?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| err("client certificate verifier", &e))
}
