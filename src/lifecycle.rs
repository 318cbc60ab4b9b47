//! One home for the connection lifecycle: when the token is re-signed, when a
//! connection re-authenticates, when it is replaced; their defaults,
//! environment variables, bounds and cross-checks; and each connection's
//! jittered re-auth point and deadline.
//!
//! ElastiCache and MemoryDB close an IAM-authenticated connection
//! [`Lifecycle::MAX_AUTH_AGE`] (12 hours) after its last successful `AUTH`.
//! A connection re-authenticates at 90-100 % of
//! [`reauth_after`](Lifecycle::reauth_after) after its last authentication,
//! and is replaced by 95-100 % of
//! [`max_connection_age`](Lifecycle::max_connection_age), both drawn per
//! connection so that connections made together do not act together. The
//! bounds make sure every connection re-authenticates before its earliest
//! deadline, and is replaced before the server's cut.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::jittered;
use crate::clock::monotonic_now;
use crate::env::duration_var;
use crate::error::{Error, Problems};
use crate::token::{SAFETY_MARGIN, TOKEN_VALIDITY};

/// The low end of each connection's re-auth point, as a fraction of
/// `reauth_after`.
const REAUTH_JITTER: f64 = 0.9;

/// The low end of each connection's deadline, as a fraction of
/// `max_connection_age`.
const DEADLINE_JITTER: f64 = 0.95;

/// The shortest interval any lifecycle setting accepts.
const MIN_SETTING: Duration = Duration::from_secs(1);

/// When tokens rotate and connections re-authenticate or are replaced.
///
/// Built and validated by the builders that take these settings
/// ([`ConnectionConfigBuilder`](crate::ConnectionConfigBuilder),
/// [`TokenRefresherBuilder`](crate::TokenRefresherBuilder)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lifecycle {
    /// How often the IAM token is re-signed (earlier when the credentials
    /// expire sooner). Defaults to 10 minutes; at least 1 s and less than
    /// 14 min 30 s (a token's 15 minutes minus the refresher's safety
    /// margin).
    pub token_refresh_interval: Duration,
    /// A connection re-authenticates once this long has passed since its
    /// last authentication (each connection picks 90-100 % of it): with its
    /// borrower's next request. Defaults to 10 hours; at least 1 s, and
    /// less than 95 % of `max_connection_age`.
    pub reauth_after: Duration,
    /// A connection is replaced once this old (each picks 95-100 % of it),
    /// counted from its last authentication. Defaults to 11.5 hours; at
    /// least 1 s and less than 12 hours (the server's cut).
    pub max_connection_age: Duration,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            token_refresh_interval: Self::DEFAULT_TOKEN_REFRESH_INTERVAL,
            reauth_after: Self::DEFAULT_REAUTH_AFTER,
            max_connection_age: Self::DEFAULT_MAX_CONNECTION_AGE,
        }
    }
}

impl Lifecycle {
    /// ElastiCache and MemoryDB close an IAM-authenticated connection this
    /// long after its last successful `AUTH`.
    pub const MAX_AUTH_AGE: Duration = Duration::from_secs(12 * 3600);

    /// Default of [`token_refresh_interval`](Self::token_refresh_interval):
    /// 10 minutes, leaving 5 of a token's 15 for retries.
    pub const DEFAULT_TOKEN_REFRESH_INTERVAL: Duration = Duration::from_secs(10 * 60);

    /// Default of [`reauth_after`](Self::reauth_after): 10 hours.
    pub const DEFAULT_REAUTH_AFTER: Duration = Duration::from_secs(10 * 3600);

    /// Default of [`max_connection_age`](Self::max_connection_age):
    /// 11.5 hours, under the 12-hour cut.
    pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(11 * 3600 + 1800);

    /// The environment variable for
    /// [`token_refresh_interval`](Self::token_refresh_interval) (a duration:
    /// `10m`, `2s`).
    pub const TOKEN_REFRESH_INTERVAL_ENV: &str = "ELASTICACHE_TOKEN_REFRESH_INTERVAL";

    /// The environment variable for [`reauth_after`](Self::reauth_after).
    pub const REAUTH_AFTER_ENV: &str = "ELASTICACHE_REAUTH_AFTER";

    /// The environment variable for
    /// [`max_connection_age`](Self::max_connection_age).
    pub const MAX_CONNECTION_AGE_ENV: &str = "ELASTICACHE_MAX_CONNECTION_AGE";

    /// A connection authenticated now re-authenticates at this instant
    /// (drawn afresh each call).
    pub(crate) fn reauth_point(&self) -> Instant {
        monotonic_now() + reauth_delay(self.reauth_after)
    }

    /// A connection authenticated now is replaced by this instant (drawn
    /// afresh each call).
    pub(crate) fn deadline(&self) -> Instant {
        monotonic_now() + jittered(self.max_connection_age, DEADLINE_JITTER)
    }
}

/// How long after an authentication a connection re-authenticates, for a
/// re-auth time of `after`: 90-100 % of it, drawn afresh each call, so that
/// connections opened together do not re-authenticate together.
pub(crate) fn reauth_delay(after: Duration) -> Duration {
    jittered(after, REAUTH_JITTER)
}

/// The lifecycle settings as given, each with the parameter (builder method
/// or environment variable) that gave it, for validation at `build()`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LifecycleSettings {
    token_refresh_interval: Option<(Duration, &'static str)>,
    reauth_after: Option<(Duration, &'static str)>,
    max_connection_age: Option<(Duration, &'static str)>,
}

impl LifecycleSettings {
    pub(crate) fn token_refresh_interval(&mut self, value: Duration, parameter: &'static str) {
        self.token_refresh_interval = Some((value, parameter));
    }

    pub(crate) fn reauth_after(&mut self, value: Duration, parameter: &'static str) {
        self.reauth_after = Some((value, parameter));
    }

    pub(crate) fn max_connection_age(&mut self, value: Duration, parameter: &'static str) {
        self.max_connection_age = Some((value, parameter));
    }

    /// The variables set in `lookup` override earlier settings; a value that
    /// is not a duration is a problem naming its variable. The maximum
    /// connection age is read only `with_max_age` (the refresher has none).
    pub(crate) fn read_env(
        &mut self,
        lookup: &impl Fn(&str) -> Option<String>,
        with_max_age: bool,
        problems: &mut Problems,
    ) {
        let mut read = |name: &'static str, slot: &mut Option<(Duration, &'static str)>| {
            if let Some(value) = duration_var(lookup, name).and_then(|d| problems.check(d)) {
                *slot = Some((value, name));
            }
        };
        read(
            Lifecycle::TOKEN_REFRESH_INTERVAL_ENV,
            &mut self.token_refresh_interval,
        );
        read(Lifecycle::REAUTH_AFTER_ENV, &mut self.reauth_after);
        if with_max_age {
            read(
                Lifecycle::MAX_CONNECTION_AGE_ENV,
                &mut self.max_connection_age,
            );
        }
    }

    /// The lifecycle, each setting checked against its bounds and, `with_max_age`,
    /// the re-auth time against the earliest deadline (a refresher alone
    /// has no maximum age: its re-auth time only has to come before the
    /// server's cut); every problem is noted.
    pub(crate) fn build(&self, with_max_age: bool, problems: &mut Problems) -> Lifecycle {
        let defaults = Lifecycle::default();
        let pick = |given: Option<(Duration, &'static str)>, default, name| {
            given.unwrap_or((default, name))
        };
        let (refresh, refresh_name) = pick(
            self.token_refresh_interval,
            defaults.token_refresh_interval,
            "token_refresh_interval",
        );
        let (reauth, reauth_name) = pick(self.reauth_after, defaults.reauth_after, "reauth_after");
        let (max_age, max_age_name) = pick(
            self.max_connection_age,
            defaults.max_connection_age,
            "max_connection_age",
        );
        let mut check = |value, name, below| {
            problems
                .check(check_range(value, name, below))
                .unwrap_or(Duration::ZERO)
        };
        let lifecycle = Lifecycle {
            token_refresh_interval: check(refresh, refresh_name, TOKEN_VALIDITY - SAFETY_MARGIN),
            reauth_after: check(reauth, reauth_name, Lifecycle::MAX_AUTH_AGE),
            max_connection_age: check(max_age, max_age_name, Lifecycle::MAX_AUTH_AGE),
        };
        // Each connection's deadline falls at 95-100 % of the maximum age,
        // its re-auth point at up to 100 % of reauth_after: the latter must
        // come first for every connection.
        let earliest_deadline = lifecycle.max_connection_age.mul_f64(DEADLINE_JITTER);
        if with_max_age
            && !lifecycle.reauth_after.is_zero()
            && !lifecycle.max_connection_age.is_zero()
            && lifecycle.reauth_after >= earliest_deadline
        {
            problems.push(Error::config(
                reauth_name,
                format!(
                    "{reauth_name} must be less than {} (95 % of the maximum connection age: \
                     re-authentication comes before the earliest deadline); got {}",
                    humantime::format_duration(earliest_deadline),
                    humantime::format_duration(reauth)
                ),
            ));
        }
        lifecycle
    }
}

/// `value` if `MIN_SETTING <= value < below`, else a configuration error
/// naming `name`.
fn check_range(value: Duration, name: &'static str, below: Duration) -> Result<Duration, Error> {
    if value >= MIN_SETTING && value < below {
        return Ok(value);
    }
    Err(Error::config(
        name,
        format!(
            "{name} must be at least {} and less than {}; got {}",
            humantime::format_duration(MIN_SETTING),
            humantime::format_duration(below),
            humantime::format_duration(value),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(settings: LifecycleSettings) -> Result<Lifecycle, Error> {
        let mut problems = Problems::default();
        let lifecycle = settings.build(true, &mut problems);
        problems.finish(Some(lifecycle))
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            build(LifecycleSettings::default()).unwrap(),
            Lifecycle::default()
        );
        let defaults = Lifecycle::default();
        assert!(
            defaults.reauth_after < defaults.max_connection_age.mul_f64(DEADLINE_JITTER),
            "re-authentication before the earliest deadline"
        );
        assert!(defaults.max_connection_age < Lifecycle::MAX_AUTH_AGE);
    }

    #[test]
    fn every_problem_is_named_by_its_parameter() {
        let mut settings = LifecycleSettings::default();
        settings.token_refresh_interval(Duration::from_secs(15 * 60), "token_refresh_interval");
        settings.reauth_after(Duration::ZERO, "ELASTICACHE_REAUTH_AFTER");
        settings.max_connection_age(Duration::from_secs(12 * 3600), "max_connection_age");
        let err = build(settings).unwrap_err();
        assert_eq!(
            err.parameters(),
            [
                "token_refresh_interval",
                "ELASTICACHE_REAUTH_AFTER",
                "max_connection_age"
            ]
        );
        // Re-authentication must come before the earliest deadline.
        let mut settings = LifecycleSettings::default();
        settings.reauth_after(Duration::from_millis(5800), "reauth_after");
        settings.max_connection_age(Duration::from_secs(6), "max_connection_age");
        assert_eq!(
            build(settings).unwrap_err().parameter(),
            Some("reauth_after")
        );
        settings.reauth_after(Duration::from_millis(5600), "reauth_after");
        assert!(build(settings).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn points_fall_in_their_jitter_bands() {
        let lifecycle = Lifecycle::default();
        let now = monotonic_now();
        for _ in 0..1000 {
            let reauth = lifecycle.reauth_point() - now;
            assert!(reauth >= Duration::from_secs(9 * 3600) && reauth <= lifecycle.reauth_after);
            let deadline = lifecycle.deadline() - now;
            assert!(
                deadline >= lifecycle.max_connection_age.mul_f64(0.95)
                    && deadline <= lifecycle.max_connection_age
            );
        }
    }
}
