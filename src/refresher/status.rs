//! The refresher's state as health reports show it.

use std::time::SystemTime;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::State;
use crate::error::display_chain;
use crate::token::AuthToken;

/// A snapshot of a [`TokenRefresher`](super::TokenRefresher), for health
/// endpoints and logs (the `token` of a pool's health report). It holds no
/// secret: times, counts and error text. Times are RFC 3339 when serialized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RefresherStatus {
    /// When the current token was signed; `None` before the first success.
    #[serde(serialize_with = "rfc3339")]
    pub signed_at: Option<SystemTime>,
    /// The end of the current token's usable life (see
    /// [`AuthToken::usable_until`]); it is handed out until
    /// [`TokenRefresher::SAFETY_MARGIN`](super::TokenRefresher::SAFETY_MARGIN)
    /// before this.
    #[serde(serialize_with = "rfc3339")]
    pub usable_until: Option<SystemTime>,
    /// Tokens signed since the refresher started, the first included.
    pub rotations: u64,
    /// Failed cycles since the last success; 0 when healthy.
    pub consecutive_failures: u32,
    /// When the current run of failures began; `None` when healthy.
    #[serde(serialize_with = "rfc3339")]
    pub failing_since: Option<SystemTime>,
    /// The most recent failure and its causes, on one line. Kept after a
    /// recovery, for the record; `consecutive_failures` says whether it is
    /// current.
    pub last_refresh_error: Option<String>,
    /// Where the last credentials came from, when the provider said (the
    /// container endpoint, STS web identity, instance metadata, environment
    /// variables, profile files); named in credentials errors too.
    pub credential_source: Option<&'static str>,
}

impl RefresherStatus {
    pub(super) fn new(state: &State) -> Self {
        let current = state.current.as_ref();
        Self {
            signed_at: current.map(AuthToken::signed_at),
            usable_until: current.map(AuthToken::usable_until),
            rotations: state.rotations,
            consecutive_failures: state.consecutive_failures,
            failing_since: state.failing_since,
            last_refresh_error: state.last_error.as_ref().map(|e| display_chain(e)),
            credential_source: state.credential_source,
        }
    }

    /// Whether a token is held and the last cycle succeeded.
    pub fn is_healthy(&self) -> bool {
        self.signed_at.is_some() && self.consecutive_failures == 0
    }
}

fn rfc3339<S: Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at.map(|t| OffsetDateTime::from(t).format(&Rfc3339)) {
        Some(Ok(text)) => s.serialize_some(&text),
        _ => s.serialize_none(),
    }
}
