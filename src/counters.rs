//! The pool's event counts: bumped where each event happens, read without
//! I/O by [`Pool::counts`](crate::Pool::counts) and health reports.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts since the pool started. Each closed connection is counted once, by
/// whoever closed it.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) reauths: AtomicU64,
    pub(crate) reauth_failures: AtomicU64,
    pub(crate) recycles: AtomicU64,
    pub(crate) closed_by_server: AtomicU64,
    /// Given back with session state (`MULTI`, `WATCH`, `SELECT`, ...).
    pub(crate) discarded_dirty: AtomicU64,
    /// Closed because a command's reply did not arrive (timed out, or its
    /// future was dropped).
    pub(crate) discarded_unanswered: AtomicU64,
    /// A subscriber lost its connection and re-subscribed on a new one.
    pub(crate) subscription_gaps: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
