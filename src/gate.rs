//! The connection-attempt gate: at most a few attempts at a time, and after a
//! failure the next attempt waits a jittered delay that grows with each
//! consecutive failure (200-400 ms, 400-800 ms, ... up to 10-20 s). A success
//! resets the delay.
//!
//! After a connection is **lost** (closed by the server or the network, not
//! by us), the attempts that replace connections are spread over the
//! reconnect spread (default 20 s): the first at a random time within its
//! first tenth, each later one at a random time in the rest. A failover drops
//! every connection of every process at the same instant; spread this way, a
//! fleet's new authentications arrive at a low, even rate instead of all in
//! the first second, and every process has a connection back within a tenth
//! of the spread (`docs/fleet.md` has the model and the simulation).

use std::sync::Mutex;
use std::time::Duration;

use backon::ExponentialBackoff;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::backoff::{exponential, jittered};
use crate::clock::monotonic_now;
use crate::lock::lock;

pub(crate) struct Gate {
    permits: Semaphore,
    backoff: Mutex<Backoff>,
    /// Attempts after a loss are spread over this long (zero: not at all).
    spread: Duration,
}

#[derive(Default)]
struct Backoff {
    delays: Option<ExponentialBackoff>,
    not_before: Option<Instant>,
    /// Since a connection was lost, within the spread.
    recovery: Option<Recovery>,
}

struct Recovery {
    since: Instant,
    /// Attempts given their turn since (0 again when the first one gave its
    /// turn back, cancelled).
    attempts: u32,
}

/// An attempt's turn in a spread.
#[derive(Clone, Copy)]
struct Turn {
    at: Instant,
    /// The spread it belongs to.
    since: Instant,
    /// The spread's first turn (within its first tenth).
    first: bool,
}

/// A turn waited for by an attempt that may be cancelled (a caller's
/// timeout around a request): a first turn not used goes to the next
/// attempt, so that the process still gets a connection back early.
struct Waiting<'a> {
    gate: &'a Gate,
    turn: Option<Turn>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(turn) = self.turn.filter(|t| t.first)
            && let Some(recovery) = lock(&self.gate.backoff).recovery.as_mut()
            && recovery.since == turn.since
        {
            recovery.attempts = 0;
        }
    }
}

impl Gate {
    /// At most `max_concurrent` attempts at once (at least 1, at most
    /// tokio's `Semaphore::MAX_PERMITS`: checked by the builders).
    /// Replacements after a loss spread over `spread` (see the module
    /// documentation).
    pub(crate) fn new(max_concurrent: usize, spread: Duration) -> Self {
        Self {
            permits: Semaphore::new(max_concurrent),
            backoff: Mutex::new(Backoff::default()),
            spread,
        }
    }

    /// A connection was lost: attempts in the spread that follows wait
    /// their turn. Losses together (within the spread's first tenth) share
    /// one spread; a later one starts it again, so that the connections it
    /// took are spread too.
    pub(crate) fn lost(&self) {
        if self.spread.is_zero() {
            return;
        }
        let now = monotonic_now();
        let mut backoff = lock(&self.backoff);
        if backoff
            .recovery
            .as_ref()
            .is_none_or(|r| now >= r.since + self.spread / 10)
        {
            backoff.recovery = Some(Recovery {
                since: now,
                attempts: 0,
            });
        }
    }

    /// When an attempt starting now may go, if it must wait for its turn in
    /// the spread after a loss.
    fn turn(&self) -> Option<Turn> {
        let now = monotonic_now();
        let mut backoff = lock(&self.backoff);
        let recovery = backoff.recovery.as_mut()?;
        if now >= recovery.since + self.spread {
            backoff.recovery = None;
            return None;
        }
        let tenth = self.spread / 10;
        let first = recovery.attempts == 0;
        let at = if first {
            recovery.since + jittered(tenth, 0.0)
        } else {
            recovery.since + tenth + jittered(self.spread - tenth, 0.0)
        };
        recovery.attempts += 1;
        (at > now).then_some(Turn {
            at,
            since: recovery.since,
            first,
        })
    }

    /// Waits for its turn after a loss, a free slot, and the backoff after a
    /// failure.
    pub(crate) async fn enter(&self) -> SemaphorePermit<'_> {
        // Until it returns, a cancelled attempt gives its first turn back.
        let mut waiting = Waiting {
            gate: self,
            turn: self.turn(),
        };
        if let Some(turn) = waiting.turn {
            tokio::time::sleep_until(turn.at).await;
        }
        let permit = match self.permits.acquire().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the gate's semaphore is never closed"),
        };
        loop {
            let not_before = lock(&self.backoff).not_before;
            match not_before {
                Some(at) if at > monotonic_now() => tokio::time::sleep_until(at).await,
                _ => {
                    waiting.turn = None;
                    return permit;
                }
            }
        }
    }

    pub(crate) fn failed(&self) {
        let mut backoff = lock(&self.backoff);
        let delay = backoff
            .delays
            .get_or_insert_with(|| exponential(Duration::from_millis(200), Duration::from_secs(10)))
            .next()
            .unwrap_or(Duration::from_secs(10));
        backoff.not_before = Some(monotonic_now() + delay);
    }

    /// An attempt succeeded: the backoff starts again from its shortest
    /// delay (a spread after a loss goes on).
    pub(crate) fn succeeded(&self) {
        let mut backoff = lock(&self.backoff);
        backoff.delays = None;
        backoff.not_before = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPREAD: Duration = Duration::from_secs(20);

    /// How long each of `n` attempts entering now waits for its turn.
    fn turns(gate: &Gate, n: usize) -> Vec<Duration> {
        let now = monotonic_now();
        (0..n)
            .map(|_| gate.turn().map_or(Duration::ZERO, |turn| turn.at - now))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_go_at_once_until_a_connection_is_lost() {
        let gate = Gate::new(4, SPREAD);
        assert!(turns(&gate, 10).iter().all(Duration::is_zero));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_loss_the_first_attempt_comes_in_the_first_tenth_and_the_rest_after() {
        for _ in 0..200 {
            let gate = Gate::new(4, SPREAD);
            gate.lost();
            // More losses in the spread do not start it again.
            gate.lost();
            let waits = turns(&gate, 10);
            assert!(waits[0] <= SPREAD / 10, "{waits:?}");
            for wait in &waits[1..] {
                assert!(*wait >= SPREAD / 10 && *wait <= SPREAD, "{waits:?}");
            }
        }
        // Spread out, not bunched: over many draws the later attempts cover
        // the window.
        let gate = Gate::new(4, SPREAD);
        gate.lost();
        let mut waits = turns(&gate, 1_000);
        waits.sort();
        assert!(
            waits[1] < SPREAD / 5 && waits[999] > SPREAD * 9 / 10,
            "{waits:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_spread_ends_and_a_new_loss_starts_another() {
        let gate = Gate::new(4, SPREAD);
        gate.lost();
        tokio::time::advance(SPREAD).await;
        assert!(turns(&gate, 5).iter().all(Duration::is_zero));
        gate.lost();
        let waits = turns(&gate, 2);
        assert!(
            waits[0] <= SPREAD / 10 && waits[1] >= SPREAD / 10,
            "{waits:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_does_not_end_the_spread() {
        let gate = Gate::new(4, SPREAD);
        gate.lost();
        let _ = turns(&gate, 1);
        gate.failed();
        gate.succeeded();
        let waits = turns(&gate, 5);
        assert!(waits.iter().all(|w| *w >= SPREAD / 10), "{waits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_loss_starts_the_spread_again() {
        let gate = Gate::new(4, SPREAD);
        gate.lost();
        let _ = turns(&gate, 3);
        // A loss within the first tenth shares the spread.
        tokio::time::advance(SPREAD / 20).await;
        gate.lost();
        let waits = turns(&gate, 1);
        assert!(waits[0] >= SPREAD / 20, "{waits:?}");
        // One later (a failover after a single cut) starts a new one: its
        // first attempt within a tenth, the others spread after it.
        tokio::time::advance(SPREAD / 2).await;
        gate.lost();
        let waits = turns(&gate, 50);
        assert!(waits[0] <= SPREAD / 10, "{waits:?}");
        assert!(
            waits[1..].iter().all(|w| *w >= SPREAD / 10 && *w <= SPREAD),
            "{waits:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_turn_given_up_goes_to_the_next_attempt() {
        fastrand::seed(7);
        let gate = Gate::new(4, SPREAD);
        gate.lost();
        // A caller's timeout cancels the first attempt while it waits.
        let cancelled = tokio::time::timeout(Duration::ZERO, gate.enter()).await;
        assert!(cancelled.is_err());
        let waits = turns(&gate, 2);
        assert!(waits[0] <= SPREAD / 10, "{waits:?}");
        assert!(waits[1] >= SPREAD / 10, "{waits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_spread_replaces_at_once() {
        let gate = Gate::new(4, Duration::ZERO);
        gate.lost();
        assert!(turns(&gate, 10).iter().all(Duration::is_zero));
        let started = monotonic_now();
        drop(gate.enter().await);
        assert_eq!(monotonic_now(), started);
    }

    #[tokio::test(start_paused = true)]
    async fn enter_waits_for_its_turn() {
        let gate = Gate::new(4, SPREAD);
        gate.lost();
        let _ = gate.turn(); // the first attempt's turn
        let started = monotonic_now();
        drop(gate.enter().await);
        let waited = monotonic_now() - started;
        assert!(waited >= SPREAD / 10 && waited <= SPREAD, "{waited:?}");
    }
}
