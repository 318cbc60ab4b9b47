//! TLS for pooled connections: one rustls client configuration per pool, made
//! once from [`TlsOptions`] (trusted roots, client certificate, minimum
//! version), then a handshake per connection with SNI and hostname
//! verification always on.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use redis::{ClientTlsConfig, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::{Sources, TlsOptions, TlsVersion};
use crate::error::{Error, ErrorKind, Problems};

/// A TLS client configuration, ready for handshakes with one host.
#[derive(Clone)]
pub(crate) struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    /// The name the server's certificate must be issued for, sent as SNI.
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Loads the roots (the CA file, else the system's) and the client
    /// certificate, fixes the protocol versions, and checks that `host` can be
    /// verified (a DNS name, or an IP address that the certificate must
    /// list). `sources` name the settings in errors.
    /// Every problem found is reported at once.
    pub(crate) fn new(options: &TlsOptions, host: &str, sources: &Sources) -> Result<Self, Error> {
        let mut problems = Problems::default();
        let server_name = problems.check(ServerName::try_from(host.to_owned()).map_err(|e| {
            Error::config(
                sources.host,
                format!("{host:?} is not a DNS name or IP address usable for TLS"),
            )
            .with_source(e)
        }));
        let roots = problems.check(roots(options, sources));
        let client = match (&options.client_cert, &options.client_key) {
            (Some(cert), Some(key)) => {
                let cert = problems.check(read_certs(cert, sources.client_cert));
                let key = problems.check(read_key(key, sources.client_key));
                Some(cert.zip(key))
            }
            _ => None,
        };
        let (server_name, roots, client) = match (server_name, roots, client) {
            (Some(name), Some(roots), None) => (name, roots, None),
            (Some(name), Some(roots), Some(Some(client))) => (name, roots, Some(client)),
            _ => return problems.finish(None),
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match options.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| Error::new(ErrorKind::Tls, "unusable TLS settings").with_source(e))?
            .with_root_certificates(roots);
        let config = match (client, &options.client_cert) {
            (Some((certs, key)), Some(cert)) => {
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    Error::config(
                        sources.client_cert,
                        format!(
                            "the client certificate {} does not match its key, or is unusable",
                            cert.display()
                        ),
                    )
                    .with_source(e)
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Self {
            inner: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The handshake over `tcp`, verifying the certificate against the host.
    pub(crate) async fn connect(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, Error> {
        let host = self.server_name.to_str();
        self.inner
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| {
                let kind = if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                    ErrorKind::Tls
                } else {
                    ErrorKind::Io
                };
                Error::new(
                    kind,
                    format!(
                        "TLS handshake with {host} failed: check that the endpoint uses TLS \
                     (in-transit encryption), that its certificate is trusted (REDIS_SSL_CA_CERTS) \
                     and issued for this host name"
                    ),
                )
                .with_source(e)
            })
    }
}

/// The same settings in redis-rs's form, for its cluster client. redis-rs
/// offers TLS 1.2 and 1.3, so a TLS 1.3 minimum cannot be honoured there and
/// is refused rather than silently weakened.
pub(crate) fn redis_certificates(
    options: &TlsOptions,
    host: &str,
    sources: &Sources,
) -> Result<TlsCertificates, Error> {
    let mut problems = Problems::default();
    if options.min_version == TlsVersion::Tls13 {
        problems.push(Error::config(
            "min_tls_version",
            "a TLS 1.3 minimum is not supported in cluster mode (redis-rs's cluster client \
             offers TLS 1.2 and 1.3 and uses 1.3 with any server that has it): remove the \
             minimum, or connect in standalone mode",
        ));
    }
    // Parse once here so that bad files fail at build time, naming the file.
    problems.check(TlsConnector::new(options, host, sources));
    if !problems.is_empty() {
        return problems.finish(None);
    }
    let read = |path: &Path, parameter: &'static str| {
        std::fs::read(path).map_err(|e| unreadable(path, parameter, e))
    };
    let client_tls = match (&options.client_cert, &options.client_key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read(cert, sources.client_cert)?,
            client_key: read(key, sources.client_key)?,
        }),
        _ => None,
    };
    let root_cert = match &options.ca_file {
        Some(path) => Some(read(path, sources.ca_file)?),
        None => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

fn roots(options: &TlsOptions, sources: &Sources) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            for cert in read_certs(path, sources.ca_file)? {
                store.add(cert).map_err(|e| {
                    Error::config(
                        sources.ca_file,
                        format!(
                            "{} holds a certificate that is not a usable CA",
                            path.display()
                        ),
                    )
                    .with_source(e)
                })?;
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
            if added == 0 {
                let mut err = Error::new(
                    ErrorKind::Tls,
                    "no trusted root certificates found on this system: install the CA \
                     certificates package, or set REDIS_SSL_CA_CERTS",
                );
                if let Some(cause) = loaded.errors.into_iter().next() {
                    err = err.with_source(cause);
                }
                return Err(err);
            }
        }
    }
    Ok(store)
}

fn read_certs(path: &Path, parameter: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|e| unreadable(path, parameter, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::config(
                parameter,
                format!("{} is not a PEM certificate file", path.display()),
            )
            .with_source(e)
        })?;
    if certs.is_empty() {
        return Err(Error::config(
            parameter,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path, parameter: &'static str) -> Result<PrivateKeyDer<'static>, Error> {
    let bytes = std::fs::read(path).map_err(|e| unreadable(path, parameter, e))?;
    // The key's bytes are never quoted: the parser's error says only what
    // kind of problem it found.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        Error::config(
            parameter,
            format!("{} holds no PEM private key", path.display()),
        )
        .with_source(e)
    })
}

fn unreadable(path: &Path, parameter: &'static str, err: std::io::Error) -> Error {
    Error::config(parameter, format!("cannot read {}", path.display())).with_source(err)
}
