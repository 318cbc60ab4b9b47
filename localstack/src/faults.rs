//! Injected faults, set in-process or with `POST /faults`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::monotonic_now;

/// Faults the stack can be told to produce.
#[derive(Debug, Default)]
pub struct Faults {
    reject_auths: AtomicU64,
    throttle_until: Mutex<Option<Instant>>,
    fail_credential_requests: AtomicU64,
    credential_outage_until: Mutex<Option<Instant>>,
}

impl Faults {
    /// Refuse the next `n` authentications with `WRONGPASS`.
    pub fn reject_next_auths(&self, n: u64) {
        self.reject_auths.store(n, Ordering::SeqCst);
    }

    /// Answer authentications with the throttling errors for `duration`:
    /// `ERR service is not available` before a connection's first
    /// authentication, `ERR Exceeded limit of IAM Authentication requests` on
    /// re-authentication.
    pub fn throttle_auths_for(&self, duration: Duration) {
        *self.throttle_until.lock().unwrap() = Some(monotonic_now() + duration);
    }

    /// Fail the next `n` requests to the mock credential endpoints (HTTP 500).
    pub fn fail_credential_requests(&self, n: u64) {
        self.fail_credential_requests.store(n, Ordering::SeqCst);
    }

    /// Fail every request to the mock credential endpoints (HTTP 500) for
    /// `duration`: an outage of the credential source. Zero ends one.
    pub fn credential_outage_for(&self, duration: Duration) {
        *self.credential_outage_until.lock().unwrap() = Some(monotonic_now() + duration);
    }

    pub(crate) fn take_rejection(&self) -> bool {
        take_one(&self.reject_auths)
    }

    pub(crate) fn take_credential_failure(&self) -> bool {
        let outage = self
            .credential_outage_until
            .lock()
            .unwrap()
            .is_some_and(|until| monotonic_now() < until);
        outage || take_one(&self.fail_credential_requests)
    }

    /// The throttling reply, while throttling is on.
    pub(crate) fn auth_throttled(&self, reauth: bool) -> Option<&'static str> {
        let until = (*self.throttle_until.lock().unwrap())?;
        (monotonic_now() < until).then_some(if reauth {
            "ERR Exceeded limit of IAM Authentication requests"
        } else {
            "ERR service is not available"
        })
    }
}

fn take_one(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}
