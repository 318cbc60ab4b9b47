//! Building a [`TokenRefresher`]: validation, defaults, environment.

use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_config::Region;
use aws_config::SdkConfig;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_async::time::{SharedTimeSource, TimeSource};

use super::{Shared, TokenRefresher};
use crate::error::{Error, Problems};
use crate::lifecycle::Lifecycle;
use crate::lifecycle::LifecycleSettings;
use crate::signer::{TokenSigner, TokenSignerBuilder};
use crate::target::Target;
use crate::telemetry::Telemetry;

/// Builds a [`TokenRefresher`].
///
/// Required: a target, a user id, and a region (given, or taken from
/// [`sdk_config`](Self::sdk_config)). Everything else has a default:
///
/// | setting | default |
/// |---|---|
/// | credentials | the aws-config default chain, loaded once for the region; its credentials reused until 20 minutes before they expire |
/// | wall clock | the system clock |
/// | [`token_refresh_interval`](Self::token_refresh_interval) | 10 minutes |
/// | [`reauth_after`](Self::reauth_after) | 10 hours |
///
/// [`build`](Self::build) validates everything and names every parameter
/// (or environment variable) at fault.
#[derive(Default)]
#[must_use]
pub struct TokenRefresherBuilder {
    signer: TokenSignerBuilder,
    provider: Option<SharedCredentialsProvider>,
    sdk_config: Option<SdkConfig>,
    time_source: Option<SharedTimeSource>,
    lifecycle: LifecycleSettings,
    env_problems: Problems,
}

impl TokenRefresherBuilder {
    /// Tokens for an ElastiCache Serverless cache, by name (lowercased).
    pub fn serverless_cache(mut self, name: impl Into<String>) -> Self {
        self.signer = self.signer.serverless_cache(name);
        self
    }

    /// Tokens for a node-based ElastiCache replication group, by id (lowercased).
    pub fn replication_group(mut self, id: impl Into<String>) -> Self {
        self.signer = self.signer.replication_group(id);
        self
    }

    /// Tokens for a MemoryDB cluster, by name (as given).
    pub fn memorydb_cluster(mut self, name: impl Into<String>) -> Self {
        self.signer = self.signer.memorydb_cluster(name);
        self
    }

    /// Tokens for an already validated target.
    pub fn target(mut self, target: Target) -> Self {
        self.signer = self.signer.target(target);
        self
    }

    /// The ElastiCache / MemoryDB user id (which must equal its user name).
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.signer = self.signer.user_id(user_id);
        self
    }

    /// The AWS region of the cache. Defaults to the region of the
    /// [`sdk_config`](Self::sdk_config), if one is given.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.signer = self.signer.region(region);
        self
    }

    /// The AWS region of the cache, or none (then the `SdkConfig`'s).
    pub fn set_region(&mut self, region: Option<String>) -> &mut Self {
        self.signer.set_region(region);
        self
    }

    /// Where credentials come from. Defaults to the aws-config default chain
    /// (environment, profile files, web identity / IRSA, ECS and EKS container
    /// endpoints, EC2 instance metadata), built once.
    ///
    /// An injected provider is asked once per signing cycle, as given, so a
    /// provider that refreshes its own temporary credentials is all that is
    /// needed; the token's usable life follows their expiry. The default
    /// chain's credentials (and an [`sdk_config`](Self::sdk_config)'s) are
    /// instead reused while at least 20 minutes of their life remain
    /// (credentials without an expiry: for 15 minutes), so the credential
    /// source is asked about once per credential lifetime, not per rotation;
    /// after a refused authentication it is asked again.
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.set_credentials_provider(Some(SharedCredentialsProvider::new(provider)));
        self
    }

    /// Where credentials come from, or none (the default chain).
    pub fn set_credentials_provider(
        &mut self,
        provider: Option<SharedCredentialsProvider>,
    ) -> &mut Self {
        self.provider = provider;
        self
    }

    /// Take the region, credentials provider and time source from an
    /// `SdkConfig` (as loaded by `aws_config::load_defaults`). Settings given
    /// directly take precedence.
    pub fn sdk_config(mut self, config: &SdkConfig) -> Self {
        self.sdk_config = Some(config.clone());
        self
    }

    /// The wall clock used to sign tokens and judge their validity. Defaults
    /// to the system clock. (Scheduling uses tokio's clock, so tests pause
    /// tokio time and give a wall clock that follows it.)
    pub fn time_source(mut self, time_source: impl TimeSource + 'static) -> Self {
        self.time_source = Some(SharedTimeSource::new(time_source));
        self
    }

    /// How often the token is re-signed; see
    /// [`Lifecycle::token_refresh_interval`](crate::Lifecycle::token_refresh_interval).
    /// Defaults to 10 minutes. Tokens signed with temporary credentials are
    /// re-signed earlier when the credentials expire sooner.
    pub fn token_refresh_interval(mut self, interval: Duration) -> Self {
        self.lifecycle
            .token_refresh_interval(interval, "token_refresh_interval");
        self
    }

    /// How long after its last authentication a connection authenticated
    /// through this refresher by redis-rs re-authenticates; see
    /// [`Lifecycle::reauth_after`](crate::Lifecycle::reauth_after). Defaults
    /// to 10 hours; each connection picks its own time between 90 % and
    /// 100 % of this.
    pub fn reauth_after(mut self, after: Duration) -> Self {
        self.lifecycle.reauth_after(after, "reauth_after");
        self
    }

    /// Read `ELASTICACHE_TOKEN_REFRESH_INTERVAL` and `ELASTICACHE_REAUTH_AFTER`
    /// (see [`Lifecycle`]) from the process environment,
    /// where set; they override earlier settings. Values are durations such
    /// as `10m`, `2s` or `1h 30m`; an empty value counts as unset. A bad value
    /// makes [`build`](Self::build) fail, naming the variable.
    pub fn from_env(self) -> Self {
        self.from_env_with(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables looked up by `lookup`
    /// (for tests, or configuration kept elsewhere).
    pub fn from_env_with(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        self.lifecycle
            .read_env(&lookup, false, &mut self.env_problems);
        self
    }

    /// Validate, load the default credentials chain if no provider was given,
    /// and start the background task. Must be called inside a Tokio runtime.
    /// Every problem found is reported at once (see
    /// [`Error::parameters`](crate::Error::parameters)).
    ///
    /// The first token is signed in the background straight away; the first
    /// [`TokenRefresher::token`] call waits for it (and reports its failure).
    pub async fn build(self) -> Result<TokenRefresher, Error> {
        let mut problems = Problems::default();
        let checked = self.check(&mut problems);
        Ok(problems.finish(checked)?.start().await)
    }

    /// The validation half of [`build`](Self::build): every problem noted in
    /// `problems`, nothing started, no credentials looked up.
    pub(crate) fn check(self, problems: &mut Problems) -> Option<CheckedRefresher> {
        problems.append(self.env_problems);
        let mut signer = self.signer;
        if let Some(region) = self.sdk_config.as_ref().and_then(|c| c.region()) {
            signer.default_region(region.to_string());
        }
        let signer = signer.build_into(problems);
        let lifecycle = self.lifecycle.build(false, problems);
        if tokio::runtime::Handle::try_current().is_err() {
            problems.push(Error::config(
                "runtime",
                "the token refresher must be built inside a Tokio runtime (it runs a \
                 background task)",
            ));
        }
        // An injected provider is asked every time, as given; the default
        // chain's (or an SdkConfig's) credentials are reused (see `reuse`).
        let reuse = self.provider.is_none();
        let provider = match (self.provider, &self.sdk_config) {
            (Some(provider), _) => Some(provider),
            (None, Some(config)) => {
                let provider = config.credentials_provider();
                if provider.is_none() {
                    problems.push(Error::config(
                        "credentials_provider",
                        "the SdkConfig has no credentials provider: load it with \
                         aws_config::load_defaults, or set credentials_provider",
                    ));
                    return None;
                }
                provider
            }
            (None, None) => None,
        };
        let wall = self
            .time_source
            .or_else(|| self.sdk_config.as_ref().and_then(|c| c.time_source()))
            .unwrap_or_default();
        Some(CheckedRefresher {
            signer: signer?,
            provider,
            reuse,
            wall,
            lifecycle,
        })
    }
}

/// A refresher's settings, validated: [`start`](Self::start) makes it.
pub(crate) struct CheckedRefresher {
    signer: TokenSigner,
    /// `None`: the default chain, loaded at start.
    provider: Option<SharedCredentialsProvider>,
    /// Whether its credentials are reused until near their expiry (not for
    /// an injected provider).
    reuse: bool,
    wall: SharedTimeSource,
    lifecycle: Lifecycle,
}

impl CheckedRefresher {
    /// Loads the default credentials chain if no provider was given, and
    /// starts the background task (in the current Tokio runtime).
    pub(crate) async fn start(self) -> TokenRefresher {
        let provider = match self.provider {
            Some(provider) => provider,
            None => SharedCredentialsProvider::new(
                DefaultCredentialsChain::builder()
                    .region(Region::new(self.signer.region().to_owned()))
                    .build()
                    .await,
            ),
        };
        TokenRefresher::start(Shared {
            telemetry: Telemetry::token(self.signer.target().name()),
            signer: self.signer,
            provider,
            reuse: self.reuse.then(Mutex::default),
            wall: self.wall,
            token_refresh_interval: self.lifecycle.token_refresh_interval,
            reauth_after: self.lifecycle.reauth_after,
            state: Mutex::default(),
            cycle: tokio::sync::Mutex::new(()),
            cycle_done: tokio::sync::Notify::new(),
            integration: OnceLock::new(),
        })
    }
}

impl fmt::Debug for TokenRefresherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRefresherBuilder")
            .field("signer", &self.signer)
            .field("credentials_provider", &self.provider.is_some())
            .field("sdk_config", &self.sdk_config.is_some())
            .field("lifecycle", &self.lifecycle)
            .finish_non_exhaustive()
    }
}
