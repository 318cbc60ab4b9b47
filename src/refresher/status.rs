//! The refresher's state as health reports show it.

use std::time::SystemTime;

use super::State;
use crate::error::display_chain;
use crate::token::AuthToken;

/// A snapshot of a [`TokenRefresher`](super::TokenRefresher), for health
/// endpoints and logs. It holds no secret: times, counts and error text.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefresherStatus {
    /// When the current token was signed; `None` before the first success.
    pub signed_at: Option<SystemTime>,
    /// The end of the current token's usable life (see
    /// [`AuthToken::usable_until`]); it is handed out until
    /// [`SAFETY_MARGIN`](super::SAFETY_MARGIN) before this.
    pub usable_until: Option<SystemTime>,
    /// Tokens signed since the refresher started, the first included.
    pub rotations: u64,
    /// Failed cycles since the last success; 0 when healthy.
    pub consecutive_failures: u32,
    /// When the current run of failures began; `None` when healthy.
    pub failing_since: Option<SystemTime>,
    /// The most recent failure and its causes, on one line. Kept after a
    /// recovery, for the record; `consecutive_failures` says whether it is
    /// current.
    pub last_error: Option<String>,
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
            last_error: state.last_error.as_ref().map(|e| display_chain(e)),
            credential_source: state.credential_source,
        }
    }

    /// Whether a token is held and the last cycle succeeded.
    pub fn is_healthy(&self) -> bool {
        self.signed_at.is_some() && self.consecutive_failures == 0
    }
}
