//! Ratios from paired rounds: the median over rounds of the two clients'
//! ratio in the same round (measured next to each other, so that drift in
//! the machine's speed cancels), with a 95 % bootstrap interval: the rounds
//! resampled with replacement, the median of each resample, and the 2.5th
//! and 97.5th percentiles of those medians. Seeded, so a report is
//! reproducible from its rounds.

/// Resamples per interval.
const RESAMPLES: usize = 4000;

/// A ratio's median over rounds and its 95 % interval.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Estimate {
    pub(crate) median: f64,
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    /// Rounds it is made of.
    pub(crate) n: usize,
}

impl Estimate {
    /// `0.981 [0.968, 0.994]`.
    pub(crate) fn text(&self) -> String {
        format!("{:.3} [{:.3}, {:.3}]", self.median, self.lo, self.hi)
    }

    /// `[lo, hi]`, rounded to 3 decimals, for the JSON summary.
    pub(crate) fn interval(&self) -> [f64; 2] {
        [round3(self.lo), round3(self.hi)]
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The median of `values` (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median of `ratios` and its 95 % bootstrap interval; `None` without
/// ratios.
pub(crate) fn estimate(ratios: &[f64]) -> Option<Estimate> {
    let ratios: Vec<f64> = ratios.iter().copied().filter(|r| r.is_finite()).collect();
    if ratios.is_empty() {
        return None;
    }
    let mut rng = fastrand::Rng::with_seed(0x5eed_2026);
    let mut sample = vec![0.0; ratios.len()];
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            for slot in &mut sample {
                *slot = ratios[rng.usize(..ratios.len())];
            }
            median(&sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((RESAMPLES - 1) as f64 * q).round() as usize];
    Some(Estimate {
        median: median(&ratios),
        lo: at(0.025),
        hi: at(0.975),
        n: ratios.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_intervals() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let tight = estimate(&[1.0; 12]).unwrap();
        assert_eq!((tight.median, tight.lo, tight.hi), (1.0, 1.0, 1.0));
        let spread: Vec<f64> = (0..40).map(|i| 0.9 + f64::from(i) * 0.005).collect();
        let e = estimate(&spread).unwrap();
        assert!(e.lo < e.median && e.median < e.hi, "{e:?}");
        assert!(e.lo > 0.9 && e.hi < 1.1, "{e:?}");
        assert!(estimate(&[]).is_none());
    }
}
