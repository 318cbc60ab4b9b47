//! The crate's two clocks, and the one place that reads them.
//!
//! * **Wall time** (`SystemTime`) signs tokens and judges their validity. It is
//!   injected as an [`aws_smithy_async::time::TimeSource`], as aws-config does,
//!   and defaults to the system clock.
//! * **Scheduling time** is tokio's clock (`tokio::time`), which tests pause and
//!   advance. It is read here and nowhere else.

use std::time::{Duration, SystemTime};

use aws_smithy_async::time::SharedTimeSource;
use tokio::time::Instant;

/// Now, on tokio's clock.
#[allow(
    clippy::disallowed_methods,
    reason = "the scheduling clock; paused in tests"
)]
pub(crate) fn monotonic_now() -> Instant {
    Instant::now()
}

/// The scheduling instant at which the wall clock will show `at`, assuming both
/// clocks run at the same rate from now on (times in the past map to now).
pub(crate) fn instant_at(wall: &SharedTimeSource, at: SystemTime) -> Instant {
    let delay = at.duration_since(wall.now()).unwrap_or(Duration::ZERO);
    monotonic_now() + delay
}
