//! Anomaly rules: is a run far outside the recent successful runs of its kind, or is a kind
//! failing again and again? Pure functions over numbers, so the same rules serve the daemon,
//! the reports and the tests with crafted history.
//!
//! A run is an outlier when its modified z-score (Iglewicz and Hoaglin: 0.6745 times its
//! distance from the median, over the median absolute deviation) is above 3.5 **and** it is
//! more than an absolute floor above the median, so a 2 s job that took 3 s is not news.
//! Only the high side counts: a run that was faster or cheaper than usual needs nobody.

/// At least this many baseline samples before anything is judged.
pub const MIN_SAMPLES: usize = 8;
/// The modified z-score above which a run is an outlier.
pub const Z_LIMIT: f64 = 3.5;
/// Failures in a row that make a streak.
pub const STREAK: usize = 3;

/// The median and the median absolute deviation of a baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Baseline {
    pub median: f64,
    pub mad: f64,
    /// The mean absolute deviation, used where the MAD is zero (over half the samples equal).
    pub mean_ad: f64,
    pub samples: usize,
}

fn median_of(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

impl Baseline {
    /// `None` with fewer than [`MIN_SAMPLES`] finite samples.
    pub fn of(samples: &[f64]) -> Option<Baseline> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.len() < MIN_SAMPLES {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let median = median_of(&v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
        dev.sort_by(|a, b| a.total_cmp(b));
        let mad = median_of(&dev);
        let mean_ad = dev.iter().sum::<f64>() / dev.len() as f64;
        Some(Baseline { median, mad, mean_ad, samples: v.len() })
    }

    /// The modified z-score of `x`: with a zero MAD, the mean absolute deviation scaled to
    /// match (1.2533); with both zero, any value above the median is infinitely far.
    pub fn z(&self, x: f64) -> f64 {
        let d = x - self.median;
        if self.mad > 0.0 {
            0.6745 * d / self.mad
        } else if self.mean_ad > 0.0 {
            d / (1.253_314 * self.mean_ad)
        } else if d > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }
}

/// Why a run is an outlier, with the evidence a person needs to judge it.
#[derive(Clone, Debug, PartialEq)]
pub struct Outlier {
    pub value: f64,
    pub median: f64,
    pub mad: f64,
    pub z: f64,
    pub samples: usize,
}

/// Whether `x` is an outlier against `samples` (recent successful runs), above `floor` (in
/// the same unit) over their median.
pub fn outlier(samples: &[f64], x: f64, floor: f64) -> Option<Outlier> {
    let b = Baseline::of(samples)?;
    let z = b.z(x);
    (x.is_finite() && z > Z_LIMIT && x - b.median > floor).then_some(Outlier {
        value: x,
        median: b.median,
        mad: b.mad,
        z,
        samples: b.samples,
    })
}

/// How many of the latest outcomes (newest last) failed in a row, when that is a streak.
pub fn failure_streak(succeeded: &[bool]) -> Option<usize> {
    let n = succeeded.iter().rev().take_while(|ok| !**ok).count();
    (n >= STREAK).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_far_outside_a_noisy_baseline_is_an_outlier_and_a_close_one_is_not() {
        let history = [60.0, 62.0, 58.0, 61.0, 59.0, 63.0, 60.0, 57.0, 64.0, 60.0];
        let b = Baseline::of(&history).unwrap();
        assert_eq!((b.median, b.mad), (60.0, 1.5));
        let o = outlier(&history, 300.0, 30.0).expect("five minutes against one is news");
        assert!(o.z > 100.0 && o.samples == 10, "{o:?}");
        assert_eq!(outlier(&history, 64.0, 30.0), None, "within the noise");
        assert_eq!(outlier(&history, 70.0, 30.0), None, "far in z, but under the floor");
        assert_eq!(outlier(&history, 10.0, 0.0), None, "faster is not a problem");
    }

    #[test]
    fn flat_baselines_and_short_histories() {
        assert_eq!(Baseline::of(&[1.0; 7]), None, "too few samples to judge");
        let flat = [5.0; 10];
        assert!(outlier(&flat, 5.0, 0.0).is_none());
        assert!(outlier(&flat, 50.0, 1.0).unwrap().z.is_infinite(), "a constant job that changes is news");
        // More than half equal: the MAD is zero, the mean absolute deviation decides.
        let mostly = [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 6.0, 7.0, 9.0, 5.0];
        let b = Baseline::of(&mostly).unwrap();
        assert_eq!(b.mad, 0.0);
        assert!(b.z(6.0) < Z_LIMIT && b.z(40.0) > Z_LIMIT);
        assert_eq!(Baseline::of(&[f64::NAN; 20]), None, "non-finite samples are ignored");
        assert_eq!(outlier(&history_with_inf(), f64::INFINITY, 0.0), None);
    }

    fn history_with_inf() -> Vec<f64> {
        let mut v = vec![1.0; 9];
        v.push(f64::INFINITY);
        v
    }

    #[test]
    fn a_streak_is_three_failures_in_a_row_at_the_end() {
        assert_eq!(failure_streak(&[true, false, false, false]), Some(3));
        assert_eq!(failure_streak(&[false, false, false, false, true]), None, "a success ends it");
        assert_eq!(failure_streak(&[true, false, false]), None);
        assert_eq!(failure_streak(&[]), None);
    }
}
