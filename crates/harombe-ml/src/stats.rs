//! Statistical baselines: streaming mean/variance (Welford, mergeable with Chan et al.'s
//! formula), exponentially weighted moving average and variance, z-scores that are safe for
//! a zero standard deviation, and hour-of-day / day-of-week histograms.

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result, check_finite};

/// `(x - mean) / std`, or 0 when `std` is not a positive finite number (a constant baseline
/// gives no scale to measure a deviation in; callers that care test `std` themselves).
pub fn z_score(x: f64, mean: f64, std: f64) -> f64 {
    if std > 0.0 && std.is_finite() {
        (x - mean) / std
    } else {
        0.0
    }
}

/// Count, mean, variance, min and max of a stream, in one pass (Welford).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RunningStats {
    count: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for RunningStats {
    fn default() -> Self {
        Self::new()
    }
}

impl RunningStats {
    /// No observation yet.
    pub fn new() -> Self {
        Self {
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Adds one observation; a non-finite one is an error and changes nothing.
    pub fn push(&mut self, x: f64) -> Result<()> {
        check_finite(x, 0, 0)?;
        self.count += 1;
        #[allow(clippy::cast_precision_loss)]
        let n = self.count as f64;
        let delta = x - self.mean;
        self.mean += delta / n;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        Ok(())
    }

    /// Combines two summaries as if every observation had been pushed into one.
    pub fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let count = self.count + other.count;
        #[allow(clippy::cast_precision_loss)]
        let (na, nb, n) = (self.count as f64, other.count as f64, count as f64);
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count = count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Mean (0 when empty).
    pub fn mean(&self) -> f64 {
        self.mean
    }
    /// Population variance (`ddof = 0`, numpy's default); 0 when empty.
    pub fn variance(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            #[allow(clippy::cast_precision_loss)]
            let n = self.count as f64;
            (self.m2 / n).max(0.0)
        }
    }
    /// Sample variance (`ddof = 1`); 0 with fewer than two observations.
    pub fn sample_variance(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            #[allow(clippy::cast_precision_loss)]
            let n = self.count as f64;
            (self.m2 / (n - 1.0)).max(0.0)
        }
    }
    /// Population standard deviation.
    pub fn std(&self) -> f64 {
        self.variance().sqrt()
    }
    /// Smallest observation (`+inf` when empty).
    pub fn min(&self) -> f64 {
        self.min
    }
    /// Largest observation (`-inf` when empty).
    pub fn max(&self) -> f64 {
        self.max
    }
    /// [`z_score`] of `x` against this stream (0 while the stream has no spread).
    pub fn z_score(&self, x: f64) -> f64 {
        z_score(x, self.mean, self.std())
    }
}

/// Exponentially weighted moving average and variance:
/// `mean ← mean + α (x - mean)`, `var ← (1 - α) (var + α (x - mean_prev)²)`.
/// The first observation initialises the mean (variance 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    alpha: f64,
    mean: Option<f64>,
    var: f64,
}

impl Ewma {
    /// `alpha` in `(0, 1]`: the weight of the newest observation.
    pub fn new(alpha: f64) -> Result<Self> {
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(MlError::InvalidParameter {
                name: "alpha",
                reason: format!("{alpha} not in (0, 1]"),
            });
        }
        Ok(Self {
            alpha,
            mean: None,
            var: 0.0,
        })
    }

    /// The `alpha` whose weights halve every `half_life` observations.
    pub fn with_half_life(half_life: f64) -> Result<Self> {
        if !(half_life > 0.0 && half_life.is_finite()) {
            return Err(MlError::InvalidParameter {
                name: "half_life",
                reason: format!("{half_life} is not a positive number"),
            });
        }
        Self::new(1.0 - 0.5f64.powf(1.0 / half_life))
    }

    /// Adds an observation and returns the new mean; non-finite input is an error.
    pub fn update(&mut self, x: f64) -> Result<f64> {
        check_finite(x, 0, 0)?;
        let mean = match self.mean {
            None => x,
            Some(m) => {
                let diff = x - m;
                self.var = (1.0 - self.alpha) * (self.var + self.alpha * diff * diff);
                m + self.alpha * diff
            }
        };
        self.mean = Some(mean);
        Ok(mean)
    }

    /// Current mean, `None` before the first observation.
    pub fn mean(&self) -> Option<f64> {
        self.mean
    }
    /// Current exponentially weighted variance.
    pub fn variance(&self) -> f64 {
        self.var
    }
    /// [`z_score`] of `x` against the current mean and variance (0 before any spread).
    pub fn z_score(&self, x: f64) -> f64 {
        self.mean.map_or(0.0, |m| z_score(x, m, self.var.sqrt()))
    }
    /// The smoothing factor.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
}

macro_rules! cyclic_histogram {
    ($(#[$doc:meta])* $name:ident, $n:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            counts: [u64; $n],
            total: u64,
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl $name {
            /// Number of buckets.
            pub const BUCKETS: usize = $n;

            /// Empty histogram.
            pub fn new() -> Self {
                Self { counts: [0; $n], total: 0 }
            }

            /// Counts one event in `bucket`; a bucket out of range is an error.
            pub fn record(&mut self, bucket: u8) -> Result<()> {
                let slot = self.counts.get_mut(usize::from(bucket)).ok_or_else(|| {
                    MlError::InvalidParameter {
                        name: $what,
                        reason: format!("{} not in 0..{}", bucket, $n),
                    }
                })?;
                *slot += 1;
                self.total += 1;
                Ok(())
            }

            /// Adds another histogram's counts.
            pub fn merge(&mut self, other: &Self) {
                for (a, b) in self.counts.iter_mut().zip(other.counts) {
                    *a += b;
                }
                self.total += other.total;
            }

            /// Raw counts.
            pub fn counts(&self) -> &[u64; $n] {
                &self.counts
            }

            /// Events counted.
            pub fn total(&self) -> u64 {
                self.total
            }

            /// Share of events in `bucket` (0 when empty or out of range).
            pub fn frequency(&self, bucket: u8) -> f64 {
                match self.counts.get(usize::from(bucket)) {
                    #[allow(clippy::cast_precision_loss)]
                    Some(&c) if self.total > 0 => c as f64 / self.total as f64,
                    _ => 0.0,
                }
            }

            /// Shares of all buckets: they sum to 1 (or are all 0 when empty).
            pub fn frequencies(&self) -> [f64; $n] {
                let mut out = [0.0; $n];
                for (b, slot) in out.iter_mut().enumerate() {
                    #[allow(clippy::cast_possible_truncation)]
                    let bucket = b as u8;
                    *slot = self.frequency(bucket);
                }
                out
            }
        }
    };
}

cyclic_histogram!(
    /// Events per hour of the day (bucket 0 = 00:00–00:59, in whatever time zone the caller
    /// chose; this crate has no clock).
    HourOfDayHistogram,
    24,
    "hour"
);
cyclic_histogram!(
    /// Events per day of the week (bucket 0 = Monday … 6 = Sunday, ISO 8601 order).
    DayOfWeekHistogram,
    7,
    "weekday"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn welford_basics() {
        let mut s = RunningStats::new();
        assert_eq!(s.variance(), 0.0);
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            s.push(x).unwrap();
        }
        assert_eq!(s.mean(), 5.0);
        assert_eq!(s.variance(), 4.0);
        assert_eq!(s.std(), 2.0);
        assert!((s.sample_variance() - 32.0 / 7.0).abs() < 1e-12);
        assert_eq!((s.min(), s.max()), (2.0, 9.0));
        assert_eq!(s.z_score(9.0), 2.0);
        assert!(s.push(f64::NAN).is_err());
        assert_eq!(s.count(), 8);
    }

    #[test]
    fn z_score_is_safe() {
        assert_eq!(z_score(5.0, 3.0, 0.0), 0.0);
        assert_eq!(z_score(5.0, 3.0, f64::NAN), 0.0);
        assert_eq!(z_score(5.0, 3.0, 2.0), 1.0);
        let mut s = RunningStats::new();
        s.push(1.0).unwrap();
        assert_eq!(s.z_score(100.0), 0.0);
    }

    #[test]
    fn ewma_tracks_and_rejects_bad_alpha() {
        let mut e = Ewma::new(0.5).unwrap();
        assert_eq!(e.mean(), None);
        assert_eq!(e.update(10.0).unwrap(), 10.0);
        assert_eq!(e.update(20.0).unwrap(), 15.0);
        assert_eq!(e.variance(), 0.5 * (0.5 * 100.0));
        assert!(e.update(f64::INFINITY).is_err());
        assert!(Ewma::new(0.0).is_err());
        assert!(Ewma::new(1.5).is_err());
        let h = Ewma::with_half_life(1.0).unwrap();
        assert!((h.alpha() - 0.5).abs() < 1e-15);
    }

    #[test]
    fn histograms_normalise() {
        let mut h = HourOfDayHistogram::new();
        assert_eq!(h.frequencies(), [0.0; 24]);
        for hour in [9, 9, 10, 23] {
            h.record(hour).unwrap();
        }
        assert!(h.record(24).is_err());
        assert_eq!(h.total(), 4);
        assert_eq!(h.frequency(9), 0.5);
        assert_eq!(h.frequencies().iter().sum::<f64>(), 1.0);
        let mut d = DayOfWeekHistogram::new();
        d.record(6).unwrap();
        assert!(d.record(7).is_err());
        let mut e = DayOfWeekHistogram::new();
        e.record(0).unwrap();
        d.merge(&e);
        assert_eq!(d.frequency(0), 0.5);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(
            serde_json::from_str::<HourOfDayHistogram>(&json).unwrap(),
            h
        );
    }

    proptest! {
        #[test]
        fn welford_merge_equals_sequential(
            a in proptest::collection::vec(-1e6f64..1e6, 0..60),
            b in proptest::collection::vec(-1e6f64..1e6, 0..60),
        ) {
            let mut seq = RunningStats::new();
            let (mut left, mut right) = (RunningStats::new(), RunningStats::new());
            for &x in &a { seq.push(x).unwrap(); left.push(x).unwrap(); }
            for &x in &b { seq.push(x).unwrap(); right.push(x).unwrap(); }
            left.merge(&right);
            prop_assert_eq!(left.count(), seq.count());
            let tol = |v: f64| 1e-9 * (1.0 + v.abs());
            prop_assert!((left.mean() - seq.mean()).abs() <= tol(seq.mean()));
            prop_assert!((left.variance() - seq.variance()).abs() <= 1e-7 * (1.0 + seq.variance()));
            prop_assert_eq!(left.min(), seq.min());
            prop_assert_eq!(left.max(), seq.max());
            // And against the two-pass definition.
            if !a.is_empty() || !b.is_empty() {
                let all: Vec<f64> = a.iter().chain(&b).copied().collect();
                let n = all.len() as f64;
                let mean = all.iter().sum::<f64>() / n;
                let var = all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                prop_assert!((seq.mean() - mean).abs() <= tol(mean));
                prop_assert!((seq.variance() - var).abs() <= 1e-7 * (1.0 + var));
            }
        }

        #[test]
        fn serde_round_trip_is_exact(xs in proptest::collection::vec(-1e6f64..1e6, 1..30), alpha in 0.01f64..1.0) {
            let mut s = RunningStats::new();
            let mut e = Ewma::new(alpha).unwrap();
            for &x in &xs { s.push(x).unwrap(); e.update(x).unwrap(); }
            let s2: RunningStats = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
            let e2: Ewma = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
            prop_assert_eq!(s2, s);
            prop_assert_eq!(e2, e);
        }
    }
}
