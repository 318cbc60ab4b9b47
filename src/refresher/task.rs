//! The background rotation task.
//!
//! It plans the next cycle after every completed one, whoever ran it: after a
//! success, at the earlier of `signed_at + token_refresh_interval` and
//! `usable_until - RESIGN_LEAD` (the latter never sooner than `MIN_RESIGN_GAP`
//! after signing, whatever the credentials); after a failure, after the next step of a jittered exponential
//! backoff (1-2 s, 2-4 s, ... up to 15-30 s between attempts, for as long as
//! it takes). It owns no state but the plan: the token lives in [`Shared`].

use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBackoff;
use tokio::time::{Instant, sleep_until};

use super::{MIN_RESIGN_GAP, RESIGN_LEAD, Shared, Trigger};
use crate::clock::{instant_at, monotonic_now};
use crate::token::AuthToken;

/// First retry after 1-2 s; the delay doubles up to 15-30 s and stays there.
fn retry_backoff() -> ExponentialBackoff {
    crate::backoff::exponential(Duration::from_secs(1), Duration::from_secs(15))
}

/// Runs until aborted by the last handle's drop.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut due = monotonic_now();
    let mut planned_after = 0;
    let mut backoff: Option<ExponentialBackoff> = None;
    loop {
        tokio::select! {
            () = sleep_until(due) => {
                // Unless someone else completed a cycle since the plan was made
                // (then it is re-planned below), run one or join the one in
                // flight. The outcome is recorded in the shared state (and
                // logged) by the cycle itself; the plan reads it from there.
                if shared.state().generation == planned_after {
                    shared.state().retry_due = None;
                    let _ = shared.join_or_run(planned_after, Trigger::Schedule).await;
                }
            }
            () = shared.cycle_done.notified() => {}
        }
        let mut state = shared.state();
        if state.generation == planned_after {
            continue;
        }
        planned_after = state.generation;
        let (next, retry_due) = match &state.last_outcome {
            Some(Ok(token)) => {
                backoff = None;
                (next_rotation(&shared, token), None)
            }
            Some(Err(_)) | None => {
                let delay = backoff
                    .get_or_insert_with(retry_backoff)
                    .next()
                    .unwrap_or(Duration::from_secs(30));
                (monotonic_now() + delay, Some(shared.wall.now() + delay))
            }
        };
        due = next;
        // Reads check that a retry happens when planned (`task_stalled`).
        state.retry_due = retry_due;
    }
}

/// When to re-sign after `token` was signed.
fn next_rotation(shared: &Shared, token: &AuthToken) -> Instant {
    let by_interval = token.signed_at() + shared.token_refresh_interval;
    let by_expiry = token
        .usable_until()
        .checked_sub(RESIGN_LEAD)
        .unwrap_or(token.signed_at())
        .max(token.signed_at() + MIN_RESIGN_GAP);
    let at = by_interval.min(by_expiry);
    instant_at(&shared.wall, at)
}
