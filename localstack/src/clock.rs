//! The stack's wall clock: the one place that reads the system time, so tests
//! can put the stack at any instant.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A source of wall-clock time for token and credential validity checks.
pub trait WallClock: Send + Sync + Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place the stack reads the clock
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    /// Put the clock at `at`.
    pub fn set(&self, at: SystemTime) {
        *self.0.lock().unwrap() = at;
    }
}

impl WallClock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// Monotonic time for deadlines, from tokio (so paused-time tests control it).
pub(crate) fn monotonic_now() -> tokio::time::Instant {
    #[allow(clippy::disallowed_methods)] // the one place the stack reads monotonic time
    tokio::time::Instant::now()
}
