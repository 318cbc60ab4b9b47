//! A connector's settings, checked before anything starts: the refresher
//! given for it, the connection-attempt limit, the TLS files and the cluster
//! settings. Every problem is noted at once; `Connector::new` then
//! makes the connector with its refresher (which the caller starts only for
//! settings that passed).

use redis::TlsCertificates;

use super::{ConnectorOptions, check_refresher};
use crate::config::ConnectionConfig;
use crate::error::{Error, Problems};
use crate::refresher::TokenRefresher;
use crate::tls::{self, TlsConnector};

/// Settings a connector can be made from.
pub(crate) struct Checked {
    pub(super) config: ConnectionConfig,
    pub(super) options: ConnectorOptions,
    pub(super) transport: CheckedTransport,
}

/// The TLS configuration, read once, in the form each transport takes.
pub(super) enum CheckedTransport {
    Standalone(Option<TlsConnector>),
    Cluster(Option<TlsCertificates>),
}

impl Checked {
    /// Checks `config` and `options`, noting every problem in `problems`
    /// (beside those of the settings around them); `None` if there was any.
    /// `given`: a refresher the caller was handed, which must sign for the
    /// configuration's target, user id and region (and may only be given with
    /// IAM).
    pub(crate) fn new(
        config: ConnectionConfig,
        given: Option<&TokenRefresher>,
        options: ConnectorOptions,
        problems: &mut Problems,
    ) -> Option<Self> {
        if let Some(refresher) = given {
            problems.check(check_refresher(refresher, config.auth()));
        }
        let most = tokio::sync::Semaphore::MAX_PERMITS;
        if !(1..=most).contains(&options.max_concurrent_connects) {
            problems.push(Error::config(
                "max_concurrent_connects",
                format!(
                    "max_concurrent_connects must be at least 1 and at most {most}; got {}",
                    options.max_concurrent_connects
                ),
            ));
        }
        if options.reconnect_spread > super::MAX_RECONNECT_SPREAD {
            problems.push(Error::config(
                "reconnect_spread",
                format!(
                    "reconnect_spread must be at most {:?}; got {:?}",
                    super::MAX_RECONNECT_SPREAD,
                    options.reconnect_spread
                ),
            ));
        }
        #[cfg(feature = "test-util")]
        if options.cluster && options.fake.is_some() {
            problems.push(Error::config(
                "transport",
                "the fake server's transport is for standalone connections only: turn \
                 cluster mode off (cluster_mode(false)) or leave the transport out",
            ));
        }
        let sources = config.sources();
        let transport = if options.cluster {
            if config.db() != 0 {
                problems.push(Error::config(
                    sources.db,
                    format!(
                        "cluster mode has only database 0: remove the database number ({}), or \
                         use standalone mode",
                        sources.db
                    ),
                ));
            }
            let certificates = config
                .tls()
                .map(|tls| tls::redis_certificates(tls, config.host(), sources));
            problems
                .check(certificates.transpose())
                .map(CheckedTransport::Cluster)
        } else {
            let tls = config
                .tls()
                .map(|tls| TlsConnector::new(tls, config.host(), sources));
            problems
                .check(tls.transpose())
                .map(CheckedTransport::Standalone)
        };
        if !problems.is_empty() {
            return None;
        }
        Some(Self {
            config,
            options,
            transport: transport?,
        })
    }
}
