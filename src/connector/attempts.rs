//! The record of connection attempts: the last failure (kept after
//! recoveries, for health reports), whether one succeeded since, and a
//! counter that moves on at each failure, for callers waiting on attempts
//! they did not make themselves.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::error::Error;
use crate::lock::lock;

#[derive(Debug)]
pub(crate) struct Attempts {
    last: Mutex<LastFailure>,
    failures: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct LastFailure {
    error: Option<Error>,
    /// An attempt succeeded after it.
    recovered: bool,
}

impl Default for Attempts {
    fn default() -> Self {
        Self {
            last: Mutex::default(),
            failures: watch::channel(0).0,
        }
    }
}

impl Attempts {
    /// The last failed attempt, kept after recoveries for the record.
    pub(crate) fn last_failure(&self) -> Option<Error> {
        lock(&self.last).error.clone()
    }

    /// The failure of the last attempt, unless one succeeded since.
    pub(crate) fn failing(&self) -> Option<Error> {
        let last = lock(&self.last);
        last.error.clone().filter(|_| !last.recovered)
    }

    /// Failures so far; `changed()` on the receiver wakes at each new one.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.failures.subscribe()
    }

    /// How many failures so far.
    pub(crate) fn failures(&self) -> u64 {
        *self.failures.borrow()
    }

    pub(crate) fn failed(&self, err: &Error) {
        *lock(&self.last) = LastFailure {
            error: Some(err.clone()),
            recovered: false,
        };
        self.failures.send_modify(|count| *count += 1);
    }

    pub(crate) fn succeeded(&self) {
        lock(&self.last).recovered = true;
    }
}
