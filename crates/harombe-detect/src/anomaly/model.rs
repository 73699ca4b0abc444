//! The dual model shared by tool-call and traffic detection: a [`WindowedBaseline`]
//! (z-scores) and an Isolation Forest, combined by weight.
//!
//! The forest's raw anomaly score (`2^(-E[h]/c(ψ))`, ~0.5 for ordinary points) is
//! calibrated per model against its own training scores: at or below the training median
//! it maps to 0, at the contamination percentile (the forest's decision threshold) to 0.5,
//! and one median-to-threshold spread (at least 0.03) beyond it to 1. So `forest ≥ 0.5`
//! means exactly "the forest calls it an outlier at the configured contamination".

use harombe_ml::{
    Contamination, FeatureSchema, IsolationForest, IsolationForestConfig, MaxSamples,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::DetectError;
use crate::baseline::{Deviation, FeatureLayout, WindowedBaseline};

/// Parameters of a dual model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DualConfig {
    /// Expected share of outliers in training data (forest threshold), in `(0, 0.5]`.
    pub contamination: f64,
    /// Trees.
    pub n_estimators: usize,
    /// Rows per tree (capped at the number of rows).
    pub max_samples: usize,
    /// Seed of the forest.
    pub seed: u64,
    /// Weight of the baseline score (default 0.6).
    pub baseline_weight: f64,
    /// Weight of the forest score (default 0.4).
    pub forest_weight: f64,
    /// Events needed before scoring (and before training the forest).
    pub min_samples: u64,
    /// Rolling window of the baseline, in days.
    pub window_days: u32,
}

impl Default for DualConfig {
    fn default() -> Self {
        Self {
            contamination: 0.05,
            n_estimators: 100,
            max_samples: 256,
            seed: 0x5eed,
            baseline_weight: 0.6,
            forest_weight: 0.4,
            min_samples: 100,
            window_days: 30,
        }
    }
}

impl DualConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), DetectError> {
        let bad = |field, reason: String| Err(DetectError::InvalidConfig { field, reason });
        if !(self.contamination > 0.0 && self.contamination <= 0.5) {
            return bad(
                "contamination",
                format!("{} not in (0, 0.5]", self.contamination),
            );
        }
        if self.n_estimators == 0 || self.max_samples < 2 {
            return bad("n_estimators", "need at least 1 tree of 2 rows".into());
        }
        let (b, f) = (self.baseline_weight, self.forest_weight);
        if !(b.is_finite() && f.is_finite() && b >= 0.0 && f >= 0.0 && b + f > 0.0) {
            return bad(
                "baseline_weight",
                format!("weights {b} / {f} must be >= 0, sum > 0"),
            );
        }
        if self.min_samples == 0 {
            return bad("min_samples", "must be at least 1".into());
        }
        if !(1..=366).contains(&self.window_days) {
            return bad(
                "window_days",
                format!("{} not in 1..=366", self.window_days),
            );
        }
        Ok(())
    }
}

/// How a score was computed: the gateway audits this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ScoringMode {
    /// Baseline and forest combined.
    Dual,
    /// The forest is unavailable; the baseline alone scored the event.
    BaselineOnly {
        /// Why (not trained yet, training data degenerate, model file damaged, ...).
        reason: String,
    },
    /// Too little history to score: the event was recorded, the score is 0.
    Learning {
        /// Events so far.
        have: u64,
        /// Events needed.
        need: u64,
    },
}

/// Training-score calibration of a forest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Calibration {
    pub(crate) p50: f64,
    pub(crate) threshold: f64,
}

impl Calibration {
    pub(crate) fn map(&self, a: f64) -> f64 {
        let spread = self.threshold - self.p50;
        if a <= self.p50 {
            0.0
        } else if a <= self.threshold {
            0.5 * (a - self.p50) / spread.max(1e-9)
        } else {
            0.5 + 0.5 * ((a - self.threshold) / spread.max(0.03)).min(1.0)
        }
    }
}

/// One scoring of a dual model.
#[derive(Debug, Clone, PartialEq)]
pub struct DualScore {
    /// Combined score, 0–1.
    pub score: f64,
    /// Baseline deviation.
    pub deviation: Deviation,
    /// Calibrated forest score (0–1), when the forest scored.
    pub forest: Option<f64>,
    /// How the score was computed.
    pub mode: ScoringMode,
}

/// Baseline + forest for fixed-width feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct DualModel {
    pub(crate) config: DualConfig,
    pub(crate) baseline: WindowedBaseline,
    pub(crate) forest: Option<IsolationForest>,
    pub(crate) calibration: Option<Calibration>,
    /// Why the forest is absent (None before any training).
    pub(crate) fallback: Option<String>,
}

/// One training observation.
#[derive(Debug, Clone, Copy)]
pub struct TrainRow<'a> {
    /// When.
    pub at: OffsetDateTime,
    /// Event kind label.
    pub kind: &'a str,
    /// Values.
    pub values: &'a [f64],
    /// Missing mask.
    pub missing: u32,
}

impl DualModel {
    /// An untrained model for `n_features`.
    pub fn new(config: DualConfig, n_features: usize) -> Self {
        Self {
            config,
            baseline: WindowedBaseline::new(config.window_days, n_features),
            forest: None,
            calibration: None,
            fallback: None,
        }
    }

    /// The baseline.
    pub fn baseline(&self) -> &WindowedBaseline {
        &self.baseline
    }

    /// Whether the forest is trained and loaded.
    pub fn has_forest(&self) -> bool {
        self.forest.is_some()
    }

    /// Why the forest is not used, if it is not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    pub(crate) fn set_fallback(&mut self, reason: String) {
        self.forest = None;
        self.calibration = None;
        self.fallback = Some(reason);
    }

    /// Rebuilds the baseline from `rows` and trains the forest on them plus `extra`
    /// (already imputed rows, e.g. false positives, repeated by the caller for weight).
    /// Errors leave a usable baseline and set the fallback reason.
    pub fn train(
        &mut self,
        agent: &str,
        names: &[&'static str],
        rows: &[TrainRow<'_>],
        extra: &[Vec<f64>],
    ) -> Result<(), DetectError> {
        let n = self.baseline.n_features();
        self.baseline = WindowedBaseline::new(self.config.window_days, n);
        for r in rows {
            self.baseline
                .record(r.at, r.kind, r.values, r.missing, names)?;
        }
        let have = self.baseline.count();
        if have < self.config.min_samples {
            self.set_fallback(format!("only {have} training events"));
            return Err(DetectError::InsufficientSamples {
                agent: agent.to_owned(),
                have,
                need: self.config.min_samples,
            });
        }
        let mut matrix: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                let mut v = r.values.to_vec();
                self.baseline.impute(&mut v, r.missing);
                v
            })
            .collect();
        matrix.extend(extra.iter().filter(|r| r.len() == n).cloned());
        if matrix.windows(2).all(|w| w[0] == w[1]) {
            let reason = "every training row is identical".to_owned();
            self.set_fallback(reason.clone());
            return Err(DetectError::DegenerateTrainingData {
                agent: agent.to_owned(),
                reason,
            });
        }
        let cfg = IsolationForestConfig {
            n_estimators: self.config.n_estimators,
            max_samples: MaxSamples::Count(self.config.max_samples),
            contamination: Contamination::Fraction(self.config.contamination),
            seed: self.config.seed,
        };
        let schema = FeatureSchema::new(names.iter().copied())?;
        let fitted = IsolationForest::fit_scored(&cfg, schema, &matrix).map(|(f, mut scores)| {
            scores.iter_mut().for_each(|s| *s = -*s);
            let p50 = harombe_ml::math::percentile_linear(&scores, 50.0).unwrap_or(0.5);
            (f, p50)
        });
        match fitted {
            Ok((forest, p50)) => {
                self.calibration = Some(Calibration {
                    p50,
                    threshold: -forest.offset(),
                });
                self.forest = Some(forest);
                self.fallback = None;
                Ok(())
            }
            Err(e) => {
                self.set_fallback(format!("forest training failed: {e}"));
                Err(e.into())
            }
        }
    }

    /// Scores one vector. `values` must already hold finite numbers where not missing.
    pub fn score(
        &self,
        at: OffsetDateTime,
        values: &[f64],
        missing: u32,
        layout: &FeatureLayout,
    ) -> DualScore {
        let have = self.baseline.count();
        let deviation = self.baseline.deviation(at, values, missing, layout);
        if have < self.config.min_samples {
            return DualScore {
                score: 0.0,
                deviation,
                forest: None,
                mode: ScoringMode::Learning {
                    have,
                    need: self.config.min_samples,
                },
            };
        }
        let forest = match (&self.forest, &self.calibration) {
            (Some(f), Some(c)) => {
                let mut row = [0.0f64; 32];
                let row = &mut row[..values.len().min(32)];
                row.copy_from_slice(&values[..row.len()]);
                self.baseline.impute(row, missing);
                f.anomaly_score(row).ok().map(|a| c.map(a))
            }
            _ => None,
        };
        let (score, mode) = match forest {
            Some(fs) => {
                let (wb, wf) = (self.config.baseline_weight, self.config.forest_weight);
                (
                    (wb * deviation.score + wf * fs) / (wb + wf),
                    ScoringMode::Dual,
                )
            }
            None => (
                deviation.score,
                ScoringMode::BaselineOnly {
                    reason: self
                        .fallback
                        .clone()
                        .unwrap_or_else(|| "forest not trained yet".into()),
                },
            ),
        };
        DualScore {
            score: score.clamp(0.0, 1.0),
            deviation,
            forest,
            mode,
        }
    }
}
