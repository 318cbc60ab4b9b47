//! Building a [`TokenRefresher`]: validation, defaults, environment.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::Region;
use aws_config::SdkConfig;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_async::time::{SharedTimeSource, TimeSource};

use super::{
    DEFAULT_REAUTH_AFTER, DEFAULT_ROTATION_INTERVAL, MAX_AUTH_AGE, SAFETY_MARGIN, Shared,
    TokenRefresher,
};
use crate::env::duration_var;
use crate::error::Error;
use crate::signer::TokenSignerBuilder;
use crate::target::Target;
use crate::token::TOKEN_VALIDITY;

/// Environment variable for the rotation interval (a duration: `10m`, `2s`).
pub const REFRESH_INTERVAL_ENV: &str = "ELASTICACHE_TOKEN_REFRESH_INTERVAL";

/// Environment variable for the re-authentication time (a duration: `10h`).
pub const REAUTH_AFTER_ENV: &str = "ELASTICACHE_REAUTH_AFTER";

/// The shortest rotation interval and re-authentication time accepted.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Builds a [`TokenRefresher`].
///
/// Required: a target, a user id, and a region (given, or taken from
/// [`sdk_config`](Self::sdk_config)). Everything else has a default:
///
/// | setting | default |
/// |---|---|
/// | credentials | the aws-config default chain, loaded once for the region |
/// | wall clock | the system clock |
/// | [`rotation_interval`](Self::rotation_interval) | 10 minutes |
/// | [`reauth_after`](Self::reauth_after) | 10 hours |
///
/// [`build`](Self::build) validates everything and names the parameter (or
/// environment variable) at fault.
#[derive(Default)]
#[must_use]
pub struct TokenRefresherBuilder {
    signer: TokenSignerBuilder,
    region: Option<String>,
    provider: Option<SharedCredentialsProvider>,
    sdk_config: Option<SdkConfig>,
    time_source: Option<SharedTimeSource>,
    rotation_interval: Option<(Duration, &'static str)>,
    reauth_after: Option<(Duration, &'static str)>,
    env_error: Option<Error>,
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
        self.region = Some(region.into());
        self
    }

    /// Where credentials come from. Defaults to the aws-config default chain
    /// (environment, profile files, web identity / IRSA, ECS and EKS container
    /// endpoints, EC2 instance metadata), built once.
    ///
    /// The refresher asks the provider once per signing cycle, so a provider
    /// that refreshes its own temporary credentials (all of aws-config's do)
    /// is all that is needed; the token's usable life follows their expiry.
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.provider = Some(SharedCredentialsProvider::new(provider));
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

    /// How often the token is re-signed. Defaults to 10 minutes. Must be at
    /// least 1 second and less than 14 min 30 s (a token's 15 minutes minus the
    /// [`SAFETY_MARGIN`]). Tokens signed with temporary credentials are
    /// re-signed earlier when the credentials expire sooner.
    pub fn rotation_interval(mut self, interval: Duration) -> Self {
        self.rotation_interval = Some((interval, "rotation_interval"));
        self
    }

    /// How long after its last authentication a connection authenticated
    /// through this refresher re-authenticates. Defaults to 10 hours; each
    /// connection picks its own time between 90 % and 100 % of this, so a pool
    /// filled at once does not re-authenticate at once. Must be at least
    /// 1 second and less than the 12 hours after which the server disconnects.
    pub fn reauth_after(mut self, after: Duration) -> Self {
        self.reauth_after = Some((after, "reauth_after"));
        self
    }

    /// Read [`REFRESH_INTERVAL_ENV`] (`ELASTICACHE_TOKEN_REFRESH_INTERVAL`) and
    /// [`REAUTH_AFTER_ENV`] (`ELASTICACHE_REAUTH_AFTER`) from the process
    /// environment, where set; they override earlier settings. Values are
    /// durations such as `10m`, `2s` or `1h 30m`; an empty value counts as
    /// unset. A bad value makes [`build`](Self::build) fail, naming the
    /// variable.
    pub fn from_env(self) -> Self {
        self.from_env_with(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables looked up by `lookup`
    /// (for tests, or configuration kept elsewhere).
    pub fn from_env_with(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        for (name, slot) in [
            (REFRESH_INTERVAL_ENV, &mut self.rotation_interval),
            (REAUTH_AFTER_ENV, &mut self.reauth_after),
        ] {
            match duration_var(&lookup, name) {
                Some(Ok(duration)) => *slot = Some((duration, name)),
                Some(Err(err)) => {
                    self.env_error.get_or_insert(err);
                }
                None => {}
            }
        }
        self
    }

    /// Validate, load the default credentials chain if no provider was given,
    /// and start the background task. Must be called inside a Tokio runtime.
    ///
    /// The first token is signed in the background straight away; the first
    /// [`TokenRefresher::token`] call waits for it (and reports its failure).
    pub async fn build(self) -> Result<TokenRefresher, Error> {
        if let Some(err) = self.env_error {
            return Err(err);
        }
        let sdk_region = self
            .sdk_config
            .as_ref()
            .and_then(|c| c.region())
            .map(|r| r.to_string());
        let signer = match self.region.or(sdk_region) {
            Some(region) => self.signer.region(region),
            None => self.signer,
        }
        .build()?;
        let rotation_interval = self
            .rotation_interval
            .map_or(Ok(DEFAULT_ROTATION_INTERVAL), |(d, name)| {
                check_rotation_interval(d, name)
            })?;
        let reauth_after = self
            .reauth_after
            .map_or(Ok(DEFAULT_REAUTH_AFTER), |(d, name)| {
                check_reauth_after(d, name)
            })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::config(
                "runtime",
                "the token refresher must be built inside a Tokio runtime (it runs a \
                 background task)",
            ));
        }
        let provider = match (self.provider, &self.sdk_config) {
            (Some(provider), _) => provider,
            (None, Some(config)) => config.credentials_provider().ok_or_else(|| {
                Error::config(
                    "credentials_provider",
                    "the SdkConfig has no credentials provider: load it with \
                     aws_config::load_defaults, or set credentials_provider",
                )
            })?,
            (None, None) => SharedCredentialsProvider::new(
                DefaultCredentialsChain::builder()
                    .region(Region::new(signer.region().to_owned()))
                    .build()
                    .await,
            ),
        };
        let wall = self
            .time_source
            .or_else(|| self.sdk_config.as_ref().and_then(|c| c.time_source()))
            .unwrap_or_default();
        Ok(TokenRefresher::start(Shared {
            signer,
            provider,
            wall,
            rotation_interval,
            reauth_after,
            state: Mutex::default(),
            cycle: tokio::sync::Mutex::new(()),
            cycle_done: tokio::sync::Notify::new(),
            one_shots: Mutex::new(HashMap::new()),
            reauth_tokens: Default::default(),
        }))
    }
}

impl fmt::Debug for TokenRefresherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRefresherBuilder")
            .field("signer", &self.signer)
            .field("region", &self.region)
            .field("credentials_provider", &self.provider.is_some())
            .field("sdk_config", &self.sdk_config.is_some())
            .field("rotation_interval", &self.rotation_interval)
            .field("reauth_after", &self.reauth_after)
            .finish_non_exhaustive()
    }
}

/// A rotation interval (named `name` in the error): at least 1 s, and less
/// than a token's 15 minutes minus the [`SAFETY_MARGIN`].
pub(crate) fn check_rotation_interval(
    value: Duration,
    name: &'static str,
) -> Result<Duration, Error> {
    check_range(value, name, MIN_INTERVAL, TOKEN_VALIDITY - SAFETY_MARGIN)
}

/// A re-authentication time (named `name` in the error): at least 1 s, and
/// less than the server's 12-hour cut.
pub(crate) fn check_reauth_after(value: Duration, name: &'static str) -> Result<Duration, Error> {
    check_range(value, name, MIN_INTERVAL, MAX_AUTH_AGE)
}

/// `value` if `min <= value < below`, else a configuration error naming `name`.
fn check_range(
    value: Duration,
    name: &'static str,
    min: Duration,
    below: Duration,
) -> Result<Duration, Error> {
    if value >= min && value < below {
        return Ok(value);
    }
    Err(Error::config(
        name,
        format!(
            "{name} must be at least {} and less than {}; got {}",
            humantime::format_duration(min),
            humantime::format_duration(below),
            humantime::format_duration(value),
        ),
    ))
}
