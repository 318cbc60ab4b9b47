//! The front's TLS: a certificate authority and a server certificate for
//! `localhost` and `127.0.0.1`, made at start-up; the CA is written to a PEM file
//! for clients (`REDIS_SSL_CA_CERTS`, `redis-cli --cacert`).

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Make a CA and a server certificate, write the CA to `ca_path`, and return a
/// rustls server configuration (TLS 1.3 only when `tls13_only`).
pub(crate) fn server_config(ca_path: &Path, tls13_only: bool) -> Result<Arc<ServerConfig>, String> {
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");

    let ca_key = KeyPair::generate().map_err(|e| err("CA key", &e))?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA params", &e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "elasticache-localstack test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| err("CA certificate", &e))?;

    let server_key = KeyPair::generate().map_err(|e| err("server key", &e))?;
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(|e| err("server params", &e))?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(|e| err("server certificate", &e))?;

    std::fs::write(ca_path, ca_cert.pem()).map_err(|e| err("writing the CA file", &e))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12, &rustls::version::TLS13]
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| err("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .map_err(|e| err("server certificate", &e))?;
    Ok(Arc::new(config))
}
