//! Randomised delays: per-connection jitter, and the exponential backoff of
//! every retry loop (token signing, connection attempts, re-authentication).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// A time between `low` (a fraction, 0 to 1) and 100 % of `span`, drawn
/// afresh each call, so that connections made together do not act together.
pub(crate) fn jittered(span: Duration, low: f64) -> Duration {
    span.mul_f64(low + (1.0 - low) * fastrand::f64())
}

/// Delays of `min`-2×`min`, then doubling up to `max`-2×`max`, without end.
pub(crate) fn exponential(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_its_band() {
        let span = Duration::from_secs(36_000);
        for _ in 0..10_000 {
            let d = jittered(span, 0.9);
            assert!(d >= Duration::from_secs(32_400) && d <= span, "{d:?}");
        }
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_caps() {
        let delays: Vec<Duration> = exponential(Duration::from_secs(1), Duration::from_secs(8))
            .take(7)
            .collect();
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_secs(1 << i.min(3));
            assert!(*d >= base && *d <= base * 2, "delay {i}: {d:?}");
        }
    }
}
