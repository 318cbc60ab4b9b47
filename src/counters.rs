//! The event counts of a pool, shared handle or dedicated connection: bumped
//! where each event happens, read without I/O by
//! [`Pool::counts`](crate::Pool::counts) and health reports, and (with the
//! `metrics` feature) recorded as metrics at the same moment.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::telemetry::{self, Telemetry};

/// One count, and the metric it is recorded as.
#[derive(Debug)]
pub(crate) struct Count {
    value: AtomicU64,
    metric: &'static str,
    labels: &'static [(&'static str, &'static str)],
    telemetry: Telemetry,
}

impl Count {
    fn new(
        telemetry: &Telemetry,
        metric: &'static str,
        labels: &'static [(&'static str, &'static str)],
    ) -> Self {
        Self {
            value: AtomicU64::new(0),
            metric,
            labels,
            telemetry: telemetry.clone(),
        }
    }
}

/// Counts since the pool started. Each closed connection is counted once, by
/// whoever closed it.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) connects: Count,
    pub(crate) connect_failures: Count,
    pub(crate) reauths: Count,
    pub(crate) reauth_failures: Count,
    pub(crate) recycles: Count,
    /// Replaced by a successor after it was lost or stopped answering.
    pub(crate) reconnects: Count,
    pub(crate) closed_by_server: Count,
    /// Given back with session state (`MULTI`, `WATCH`, `SELECT`, ...).
    pub(crate) discarded_dirty: Count,
    /// Closed because a command's reply did not arrive (timed out, or its
    /// future was dropped).
    pub(crate) discarded_unanswered: Count,
    /// A subscriber lost its connection and re-subscribed on a new one.
    pub(crate) subscription_gaps: Count,
    /// The labels of this holder's metrics.
    pub(crate) telemetry: Telemetry,
}

impl Counters {
    pub(crate) fn new(telemetry: Telemetry) -> Self {
        let count = |metric, labels| Count::new(&telemetry, metric, labels);
        Self {
            connects: count(telemetry::CONNECTION_ATTEMPTS, &[("outcome", "ok")]),
            connect_failures: count(telemetry::CONNECTION_ATTEMPTS, &[("outcome", "failed")]),
            reauths: count(telemetry::REAUTHS, &[("outcome", "ok")]),
            reauth_failures: count(telemetry::REAUTHS, &[("outcome", "failed")]),
            recycles: count(telemetry::REPLACEMENTS, &[("reason", "deadline")]),
            reconnects: count(telemetry::REPLACEMENTS, &[("reason", "lost")]),
            closed_by_server: count(telemetry::CLOSED_BY_SERVER, &[]),
            discarded_dirty: count(telemetry::DISCARDED, &[("reason", "session_state")]),
            discarded_unanswered: count(telemetry::DISCARDED, &[("reason", "unanswered")]),
            subscription_gaps: count(telemetry::SUBSCRIPTION_GAPS, &[]),
            telemetry,
        }
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new(Telemetry::default())
    }
}

pub(crate) fn bump(counter: &Count) {
    add(counter, 1);
}

pub(crate) fn add(counter: &Count, n: u64) {
    counter.value.fetch_add(n, Ordering::Relaxed);
    counter.telemetry.count(counter.metric, counter.labels, n);
}

pub(crate) fn read(counter: &Count) -> u64 {
    counter.value.load(Ordering::Relaxed)
}
