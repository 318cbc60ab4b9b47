//! The connection-attempt gate: at most a few attempts at a time, and after a
//! failure the next attempt waits a jittered delay that grows with each
//! consecutive failure (200-400 ms, 400-800 ms, ... up to 10-20 s), so a
//! fleet whose connections all dropped at once does not storm the server or
//! IAM. A success resets the delay.

use std::sync::Mutex;
use std::time::Duration;

use backon::ExponentialBackoff;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::backoff::exponential;
use crate::clock::monotonic_now;
use crate::lock::lock;

pub(crate) struct Gate {
    permits: Semaphore,
    backoff: Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    delays: Option<ExponentialBackoff>,
    not_before: Option<Instant>,
}

impl Gate {
    /// At most `max_concurrent` attempts at once (at least 1, at most
    /// tokio's `Semaphore::MAX_PERMITS`: checked by the builders).
    pub(crate) fn new(max_concurrent: usize) -> Self {
        Self {
            permits: Semaphore::new(max_concurrent),
            backoff: Mutex::new(Backoff::default()),
        }
    }

    /// Waits for a free slot and for the backoff after a failure.
    pub(crate) async fn enter(&self) -> SemaphorePermit<'_> {
        let permit = match self.permits.acquire().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the gate's semaphore is never closed"),
        };
        loop {
            let not_before = lock(&self.backoff).not_before;
            match not_before {
                Some(at) if at > monotonic_now() => tokio::time::sleep_until(at).await,
                _ => return permit,
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

    pub(crate) fn succeeded(&self) {
        *lock(&self.backoff) = Backoff::default();
    }
}
