//! `StandardScaler` with scikit-learn's semantics: population variance (`ddof = 0`), and a
//! feature whose variance is indistinguishable from zero (sklearn's `_is_constant_feature`:
//! `var <= n·ε·var + (n·mean·ε)²`) gets scale 1, so it is centred but never divided by ~0.

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result, check_finite};
use crate::stats::RunningStats;

/// Per-feature standardisation `z = (x - mean) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    mean: Vec<f64>,
    var: Vec<f64>,
    scale: Vec<f64>,
    n_samples_seen: u64,
}

impl StandardScaler {
    /// Fits on `rows` (two passes per feature, as numpy's `mean`/`var`).
    pub fn fit<R: AsRef<[f64]>>(rows: &[R]) -> Result<Self> {
        let first = rows.first().ok_or(MlError::EmptyData { what: "rows" })?;
        let d = first.as_ref().len();
        if d == 0 {
            return Err(MlError::EmptyData { what: "features" });
        }
        for (r, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if row.len() != d {
                return Err(MlError::DimensionMismatch {
                    row: r,
                    expected: d,
                    found: row.len(),
                });
            }
            for (c, &v) in row.iter().enumerate() {
                check_finite(v, r, c)?;
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let n = rows.len() as f64;
        let mut mean = vec![0.0; d];
        for row in rows {
            for (m, &v) in mean.iter_mut().zip(row.as_ref()) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; d];
        for row in rows {
            for ((s, &v), &m) in var.iter_mut().zip(row.as_ref()).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        var.iter_mut().for_each(|s| *s /= n);
        Ok(Self::from_moments(mean, var, rows.len() as u64))
    }

    /// A scaler from streaming statistics, one [`RunningStats`] per feature.
    pub fn from_stats(stats: &[RunningStats]) -> Result<Self> {
        let n = stats.first().map_or(0, RunningStats::count);
        if n == 0 {
            return Err(MlError::EmptyData { what: "rows" });
        }
        if stats.iter().any(|s| s.count() != n) {
            return Err(MlError::InvalidParameter {
                name: "stats",
                reason: "features were fed different numbers of samples".into(),
            });
        }
        let mean = stats.iter().map(RunningStats::mean).collect();
        let var = stats.iter().map(RunningStats::variance).collect();
        Ok(Self::from_moments(mean, var, n))
    }

    fn from_moments(mean: Vec<f64>, var: Vec<f64>, n_samples_seen: u64) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let n = n_samples_seen as f64;
        let scale = mean
            .iter()
            .zip(&var)
            .map(|(&m, &v)| {
                let bound = n * f64::EPSILON * v + (n * m * f64::EPSILON).powi(2);
                if v <= bound { 1.0 } else { v.sqrt() }
            })
            .collect();
        Self {
            mean,
            var,
            scale,
            n_samples_seen,
        }
    }

    /// Standardises one row.
    pub fn transform(&self, row: &[f64]) -> Result<Vec<f64>> {
        self.check(row)?;
        Ok(row
            .iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(&x, (&m, &s))| (x - m) / s)
            .collect())
    }

    /// Undoes [`transform`](Self::transform).
    pub fn inverse_transform(&self, row: &[f64]) -> Result<Vec<f64>> {
        self.check(row)?;
        Ok(row
            .iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(&z, (&m, &s))| z * s + m)
            .collect())
    }

    fn check(&self, row: &[f64]) -> Result<()> {
        if row.len() != self.mean.len() {
            return Err(MlError::DimensionMismatch {
                row: 0,
                expected: self.mean.len(),
                found: row.len(),
            });
        }
        for (c, &v) in row.iter().enumerate() {
            check_finite(v, 0, c)?;
        }
        Ok(())
    }

    /// Per-feature means (`mean_`).
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }
    /// Per-feature population variances (`var_`).
    pub fn var(&self) -> &[f64] {
        &self.var
    }
    /// Per-feature scales (`scale_`): standard deviation, or 1 for constant features.
    pub fn scale(&self) -> &[f64] {
        &self.scale
    }
    /// Rows seen (`n_samples_seen_`).
    pub fn n_samples_seen(&self) -> u64 {
        self.n_samples_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn standardises_and_keeps_constant_features_unscaled() {
        let rows = vec![vec![1.0, 5.0], vec![3.0, 5.0], vec![5.0, 5.0]];
        let s = StandardScaler::fit(&rows).unwrap();
        assert_eq!(s.mean(), [3.0, 5.0]);
        assert!((s.var()[0] - 8.0 / 3.0).abs() < 1e-15);
        assert_eq!(s.scale()[1], 1.0);
        let z = s.transform(&[3.0, 7.0]).unwrap();
        assert_eq!(z, vec![0.0, 2.0]);
        assert!(s.transform(&[1.0]).is_err());
        assert!(s.transform(&[f64::NAN, 1.0]).is_err());
        assert!(StandardScaler::fit(&Vec::<Vec<f64>>::new()).is_err());
    }

    proptest! {
        #[test]
        fn transform_then_inverse_is_identity(rows in proptest::collection::vec(
            proptest::collection::vec(-1e3f64..1e3, 3), 2..40)) {
            let s = StandardScaler::fit(&rows).unwrap();
            for r in &rows {
                let back = s.inverse_transform(&s.transform(r).unwrap()).unwrap();
                for (a, b) in back.iter().zip(r) {
                    prop_assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()));
                }
            }
            let mut stats = vec![RunningStats::new(); 3];
            for r in &rows {
                for (st, &v) in stats.iter_mut().zip(r) { st.push(v).unwrap(); }
            }
            let streamed = StandardScaler::from_stats(&stats).unwrap();
            for (a, b) in streamed.mean().iter().zip(s.mean()) {
                prop_assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()));
            }
        }
    }
}
