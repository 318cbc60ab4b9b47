//! Credentials fetched once per credential lifetime, not once per rotation.
//!
//! The default chain (or an `SdkConfig`'s provider) asks its source (the
//! container endpoint, instance metadata, STS for IRSA) again on every call:
//! without this, every 10-minute rotation would be one more request to it,
//! for credentials that live for hours. The refresher keeps the last
//! credentials from such a provider and signs with them again while they
//! have at least [`KEEP_UNTIL_BEFORE_EXPIRY`] left (so every token signed
//! from them gets its full 15 minutes), or, for credentials without an
//! expiry, for [`KEEP_WITHOUT_EXPIRY`] (as the AWS SDKs' credential caches
//! do). A provider the caller injected is asked every time, as given.
//!
//! Reused credentials are dropped when a connection's authentication was
//! refused (`refresh_now`): the next cycle asks the source again.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

/// Credentials are reused while they have at least this long left: a token's
/// 15 minutes, the refresher's safety margin, and room for a clock that is a
/// little ahead.
pub(crate) const KEEP_UNTIL_BEFORE_EXPIRY: Duration = Duration::from_secs(20 * 60);

/// Credentials without an expiry (long-term keys) are asked for again after
/// this long, so that keys changed in a profile are picked up.
pub(crate) const KEEP_WITHOUT_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// The credentials kept for reuse, and when they were fetched.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    kept: Option<(Credentials, SystemTime)>,
}

impl Kept {
    /// The kept credentials, if they may still be used at `now`.
    pub(crate) fn usable(&self, now: SystemTime) -> Option<Credentials> {
        let (credentials, fetched) = self.kept.as_ref()?;
        let fresh = match credentials.expiry() {
            Some(expiry) => now + KEEP_UNTIL_BEFORE_EXPIRY <= expiry,
            None => now < *fetched + KEEP_WITHOUT_EXPIRY,
        };
        fresh.then(|| credentials.clone())
    }

    /// Keeps `credentials`, fetched at `now`.
    pub(crate) fn keep(&mut self, credentials: &Credentials, now: SystemTime) {
        self.kept = Some((credentials.clone(), now));
    }

    /// Forgets them: the next cycle asks the source.
    pub(crate) fn forget(&mut self) {
        self.kept = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(expiry: Option<SystemTime>) -> Credentials {
        Credentials::new("AKID", "secret", Some("session".into()), expiry, "test")
    }

    #[test]
    fn temporary_credentials_are_reused_until_20_minutes_before_they_expire() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut kept = Kept::default();
        assert!(kept.usable(at).is_none());
        kept.keep(&credentials(Some(at + Duration::from_secs(3600))), at);
        assert!(kept.usable(at + Duration::from_secs(39 * 60)).is_some());
        assert!(kept.usable(at + Duration::from_secs(40 * 60)).is_some());
        assert!(kept.usable(at + Duration::from_secs(40 * 60 + 1)).is_none());
        kept.forget();
        assert!(kept.usable(at).is_none());
    }

    #[test]
    fn credentials_without_expiry_are_asked_for_again_after_15_minutes() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut kept = Kept::default();
        kept.keep(&credentials(None), at);
        assert!(kept.usable(at + Duration::from_secs(14 * 60)).is_some());
        assert!(kept.usable(at + Duration::from_secs(15 * 60)).is_none());
    }

    #[test]
    fn credentials_shorter_lived_than_a_token_are_never_reused() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut kept = Kept::default();
        kept.keep(&credentials(Some(at + Duration::from_secs(15 * 60))), at);
        assert!(kept.usable(at).is_none());
    }
}
