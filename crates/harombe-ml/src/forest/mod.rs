//! Isolation Forest with scikit-learn's semantics.
//!
//! - `psi = min(256, n)` rows per tree (or [`MaxSamples`]), drawn without replacement;
//!   `max_depth = ceil(log2(max(psi, 2)))`; 100 trees by default.
//! - Inputs are cast to `f32` as sklearn casts `X` to `float32`; NaN, infinities and values
//!   overflowing `f32` are rejected with [`MlError`] (sklearn would accept NaN; we do not).
//! - The path length of `x` in a tree is `depth(leaf) + c(n_leaf)`;
//!   `score_samples = -2^(-Σ h / (n_trees · c(psi)))`, summed tree by tree in sklearn's
//!   order and operation order, so that on sklearn's own trees (see [`sklearn`]) our scores
//!   equal sklearn's to the last bit or so.
//! - `offset = -0.5` for [`Contamination::Auto`], else numpy's linear percentile of the
//!   training scores at `100 · contamination`; `decision_function = score_samples - offset`
//!   and a row is an outlier when it is `< 0`.
//!
//! Edge cases (documented behaviour, same as sklearn): one training row gives `c(psi) = 0`
//! and every score is `-0.5`; all-identical training rows give single-leaf trees and every
//! score is `-0.5` too. Zero rows or zero features are an error.

mod flat;
mod persist;
pub mod sklearn;
mod train;
mod tree;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use persist::FORMAT_VERSION;
pub use tree::IsolationTree;

use crate::error::{MlError, Result, to_f32_checked};
use crate::math::{average_path_length, percentile_linear};
use flat::FlatForest;
use train::Columns;

/// How many rows each tree sees (`max_samples` in sklearn).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MaxSamples {
    /// `min(256, n)`.
    #[default]
    Auto,
    /// A count, capped at `n` (sklearn warns and caps too).
    Count(usize),
    /// A fraction of `n` in `(0, 1]`, truncated as `int(f * n)`.
    Fraction(f64),
}

/// Expected share of outliers, which sets the decision threshold (`offset`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Contamination {
    /// `offset = -0.5`, as in the original paper.
    #[default]
    Auto,
    /// A share in `(0, 0.5]`: `offset` is that percentile of the training scores.
    Fraction(f64),
}

/// Training parameters. `Default` is sklearn's `IsolationForest()` with seed 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestConfig {
    /// Number of trees (`n_estimators`), at least 1.
    pub n_estimators: usize,
    /// Rows per tree.
    pub max_samples: MaxSamples,
    /// Decision threshold rule.
    pub contamination: Contamination,
    /// Seed of the ChaCha8 stream: the same seed and data give the same model.
    pub seed: u64,
}

impl Default for IsolationForestConfig {
    fn default() -> Self {
        Self {
            n_estimators: 100,
            max_samples: MaxSamples::Auto,
            contamination: Contamination::Auto,
            seed: 0,
        }
    }
}

/// Names of the features, in column order: persisted with the model so a model is never
/// applied to rows built for another schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSchema {
    names: Vec<String>,
}

impl FeatureSchema {
    /// A schema from names; they must be non-empty, unique, and at least one.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Result<Self> {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.is_empty() {
            return Err(MlError::EmptyData { what: "features" });
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &names {
            if n.is_empty() || !seen.insert(n.as_str()) {
                return Err(MlError::InvalidParameter {
                    name: "feature_names",
                    reason: format!("feature name {n:?} is empty or repeated"),
                });
            }
        }
        Ok(Self { names })
    }

    /// `x0`, `x1`, … (sklearn's names for unnamed columns).
    pub fn anonymous(n_features: usize) -> Result<Self> {
        Self::new((0..n_features).map(|i| format!("x{i}")))
    }

    /// The names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never true for a valid schema (kept for API symmetry with `len`).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Where a model came from (persisted, informational).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelOrigin {
    /// Trained by this crate with this seed.
    Trained {
        /// The seed.
        seed: u64,
    },
    /// Imported from a scikit-learn export.
    Sklearn {
        /// sklearn's version, if the export said.
        version: Option<String>,
    },
}

/// A fitted Isolation Forest.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForest {
    schema: FeatureSchema,
    max_samples: usize,
    trees: Vec<IsolationTree>,
    contamination: Contamination,
    offset: f64,
    origin: ModelOrigin,
    /// `n_trees · c(psi)`, cached.
    denominator: f64,
    /// The trees in the flat scoring layout (derived from `trees`, never persisted).
    flat: Option<FlatForest>,
}

impl IsolationForest {
    /// Trains on `rows` (each of `schema.len()` values). Deterministic for a given
    /// `config.seed`.
    pub fn fit<R: AsRef<[f64]>>(
        config: &IsolationForestConfig,
        schema: FeatureSchema,
        rows: &[R],
    ) -> Result<Self> {
        let data = to_columns(rows, schema.len())?;
        let n = data.n_rows;
        if config.n_estimators == 0 {
            return Err(MlError::InvalidParameter {
                name: "n_estimators",
                reason: "must be at least 1".into(),
            });
        }
        let psi = resolve_max_samples(config.max_samples, n)?;
        validate_contamination(config.contamination)?;
        let max_depth = max_depth_for(psi);
        let mut trees = Vec::with_capacity(config.n_estimators);
        for t in 0..config.n_estimators {
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
            rng.set_stream(t as u64);
            trees.push(train::grow_tree(&data, psi, max_depth, &mut rng)?);
        }
        let mut forest = Self::from_parts(
            schema,
            psi,
            trees,
            Contamination::Auto,
            -0.5,
            ModelOrigin::Trained { seed: config.seed },
        )?;
        if let Contamination::Fraction(_) = config.contamination {
            forest.set_contamination_columns(config.contamination, &data);
        }
        Ok(forest)
    }

    /// [`fit`](Self::fit), also returning [`score_samples`](Self::score_samples) of every
    /// training row (in row order), which the contamination offset needs anyway.
    pub fn fit_scored<R: AsRef<[f64]>>(
        config: &IsolationForestConfig,
        schema: FeatureSchema,
        rows: &[R],
    ) -> Result<(Self, Vec<f64>)> {
        let mut forest = Self::fit(
            &IsolationForestConfig {
                contamination: Contamination::Auto,
                ..*config
            },
            schema,
            rows,
        )?;
        validate_contamination(config.contamination)?;
        let data = to_columns(rows, forest.schema.len())?;
        let scores = forest.score_columns(&data);
        forest.contamination = config.contamination;
        if let Contamination::Fraction(c) = config.contamination {
            // n_rows >= 1 and 100c in (0, 50]: always Some.
            forest.offset = percentile_linear(&scores, 100.0 * c).unwrap_or(-0.5);
        }
        Ok((forest, scores))
    }

    /// Assembles and checks a model (used by training, import and loading).
    pub(crate) fn from_parts(
        schema: FeatureSchema,
        max_samples: usize,
        trees: Vec<IsolationTree>,
        contamination: Contamination,
        offset: f64,
        origin: ModelOrigin,
    ) -> Result<Self> {
        if trees.is_empty() {
            return Err(MlError::corrupted("model has no tree"));
        }
        if max_samples == 0 {
            return Err(MlError::corrupted("max_samples is 0"));
        }
        if !offset.is_finite() {
            return Err(MlError::corrupted(format!("offset {offset} is not finite")));
        }
        validate_contamination(contamination).map_err(|e| MlError::corrupted(e.to_string()))?;
        for (i, tree) in trees.iter().enumerate() {
            if let Some(f) = tree.max_feature()
                && f as usize >= schema.len()
            {
                return Err(MlError::corrupted(format!(
                    "tree {i} splits on feature {f}, but the schema has {} features",
                    schema.len()
                )));
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let denominator = trees.len() as f64 * average_path_length(max_samples as f64);
        let flat = FlatForest::build(&trees);
        Ok(Self {
            flat,
            schema,
            max_samples,
            trees,
            contamination,
            offset,
            origin,
            denominator,
        })
    }

    /// sklearn's `score_samples`: the opposite of the paper's anomaly score, in `[-1, 0)`;
    /// the lower, the more abnormal.
    pub fn score_samples(&self, row: &[f64]) -> Result<f64> {
        self.with_f32_row(row, 0, |x| self.score_f32(x))
    }

    /// The paper's anomaly score `2^(-E[h(x)] / c(psi))` in `(0, 1]`; the higher, the more
    /// abnormal (around 0.5 is unremarkable). Equals `-score_samples`.
    pub fn anomaly_score(&self, row: &[f64]) -> Result<f64> {
        Ok(-self.score_samples(row)?)
    }

    /// `score_samples - offset`: negative for outliers.
    pub fn decision_function(&self, row: &[f64]) -> Result<f64> {
        Ok(self.score_samples(row)? - self.offset)
    }

    /// Whether `row` is an outlier (`decision_function < 0`, sklearn's `predict == -1`).
    pub fn is_outlier(&self, row: &[f64]) -> Result<bool> {
        Ok(self.decision_function(row)? < 0.0)
    }

    /// [`score_samples`](Self::score_samples) for many rows; the first bad row is an error
    /// that names it.
    pub fn score_samples_batch<R: AsRef<[f64]>>(&self, rows: &[R]) -> Result<Vec<f64>> {
        rows.iter()
            .enumerate()
            .map(|(i, r)| self.with_f32_row(r.as_ref(), i, |x| self.score_f32(x)))
            .collect()
    }

    /// Sets the contamination and recomputes `offset` from `training_rows` (the rows the
    /// model was fitted on), exactly as sklearn's `fit` does.
    pub fn set_contamination<R: AsRef<[f64]>>(
        &mut self,
        contamination: Contamination,
        training_rows: &[R],
    ) -> Result<()> {
        validate_contamination(contamination)?;
        let data = to_columns(training_rows, self.schema.len())?;
        self.set_contamination_columns(contamination, &data);
        Ok(())
    }

    fn set_contamination_columns(&mut self, contamination: Contamination, data: &Columns) {
        self.contamination = contamination;
        self.offset = match contamination {
            Contamination::Auto => -0.5,
            Contamination::Fraction(c) => {
                let scores = self.score_columns(data);
                // n_rows >= 1 and 100c in (0, 50]: always Some.
                percentile_linear(&scores, 100.0 * c).unwrap_or(-0.5)
            }
        };
    }

    /// `score_samples` of every row of `data`, in row order.
    fn score_columns(&self, data: &Columns) -> Vec<f64> {
        let mut x = vec![0f32; data.cols.len()];
        (0..data.n_rows)
            .map(|r| {
                for (slot, col) in x.iter_mut().zip(&data.cols) {
                    *slot = col[r];
                }
                self.score_f32(&x)
            })
            .collect()
    }

    /// The decision threshold on `score_samples`.
    pub fn offset(&self) -> f64 {
        self.offset
    }

    /// The contamination the offset was derived from.
    pub fn contamination(&self) -> Contamination {
        self.contamination
    }

    /// Rows per tree (`max_samples_`).
    pub fn max_samples(&self) -> usize {
        self.max_samples
    }

    /// Number of trees.
    pub fn n_estimators(&self) -> usize {
        self.trees.len()
    }

    /// The trees.
    pub fn trees(&self) -> &[IsolationTree] {
        &self.trees
    }

    /// The feature schema.
    pub fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    /// Where the model came from.
    pub fn origin(&self) -> &ModelOrigin {
        &self.origin
    }

    fn score_f32(&self, x: &[f32]) -> f64 {
        match &self.flat {
            Some(flat) => self.score_from_sum(flat.path_sum(x)),
            None => self.score_f32_walk(x),
        }
    }

    /// The reference scoring: a pointer walk per tree, summed in sklearn's order (a running
    /// `f64` sum over the trees in order). The flat layout must equal it to the bit.
    pub(crate) fn score_f32_walk(&self, x: &[f32]) -> f64 {
        let mut depth_sum = 0.0f64;
        for tree in &self.trees {
            depth_sum += tree.path_length(x);
        }
        self.score_from_sum(depth_sum)
    }

    /// Whether scoring uses the flat layout (false for forests deeper than 12 levels or
    /// splitting on a feature past the 64th).
    pub fn is_flat(&self) -> bool {
        self.flat.is_some()
    }

    fn score_from_sum(&self, depth_sum: f64) -> f64 {
        let ratio = if self.denominator == 0.0 {
            // One training sample: sklearn sets the ratio to 1.
            1.0
        } else {
            depth_sum / self.denominator
        };
        -(2f64.powf(-ratio))
    }

    /// Checks `row` (width, finiteness, `f32` range) and hands its `f32` cast to `f`,
    /// without allocating for up to 64 features.
    fn with_f32_row<T>(
        &self,
        row: &[f64],
        row_index: usize,
        f: impl FnOnce(&[f32]) -> T,
    ) -> Result<T> {
        let n = self.schema.len();
        if row.len() != n {
            return Err(MlError::DimensionMismatch {
                row: row_index,
                expected: n,
                found: row.len(),
            });
        }
        let mut stack = [0f32; 64];
        let mut heap = Vec::new();
        let buf: &mut [f32] = if n <= stack.len() {
            &mut stack[..n]
        } else {
            heap.resize(n, 0.0);
            &mut heap
        };
        for (c, (&v, slot)) in row.iter().zip(buf.iter_mut()).enumerate() {
            *slot = to_f32_checked(v, row_index, c)?;
        }
        Ok(f(buf))
    }
}

/// `ceil(log2(max(psi, 2)))`, as sklearn computes it.
pub(crate) fn max_depth_for(psi: usize) -> u32 {
    let p = psi.max(2);
    // ceil(log2(p)) for integers, without floating point.
    usize::BITS - (p - 1).leading_zeros()
}

fn resolve_max_samples(max_samples: MaxSamples, n: usize) -> Result<usize> {
    let psi = match max_samples {
        MaxSamples::Auto => n.min(256),
        MaxSamples::Count(c) => {
            if c == 0 {
                return Err(MlError::InvalidParameter {
                    name: "max_samples",
                    reason: "count must be at least 1".into(),
                });
            }
            c.min(n)
        }
        MaxSamples::Fraction(f) => {
            if !(f > 0.0 && f <= 1.0) {
                return Err(MlError::InvalidParameter {
                    name: "max_samples",
                    reason: format!("fraction {f} not in (0, 1]"),
                });
            }
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let psi = (f * n as f64) as usize;
            if psi == 0 {
                return Err(MlError::InvalidParameter {
                    name: "max_samples",
                    reason: format!("fraction {f} of {n} rows is 0 rows"),
                });
            }
            psi
        }
    };
    Ok(psi)
}

fn validate_contamination(c: Contamination) -> Result<()> {
    match c {
        Contamination::Auto => Ok(()),
        Contamination::Fraction(f) if f > 0.0 && f <= 0.5 => Ok(()),
        Contamination::Fraction(f) => Err(MlError::InvalidParameter {
            name: "contamination",
            reason: format!("{f} not in (0, 0.5]"),
        }),
    }
}

/// Checks rows and casts them to column-major `f32`.
fn to_columns<R: AsRef<[f64]>>(rows: &[R], n_features: usize) -> Result<Columns> {
    if rows.is_empty() {
        return Err(MlError::EmptyData { what: "rows" });
    }
    if n_features == 0 {
        return Err(MlError::EmptyData { what: "features" });
    }
    let mut cols = vec![Vec::with_capacity(rows.len()); n_features];
    for (r, row) in rows.iter().enumerate() {
        let row = row.as_ref();
        if row.len() != n_features {
            return Err(MlError::DimensionMismatch {
                row: r,
                expected: n_features,
                found: row.len(),
            });
        }
        for (c, &v) in row.iter().enumerate() {
            cols[c].push(to_f32_checked(v, r, c)?);
        }
    }
    Ok(Columns {
        cols,
        n_rows: rows.len(),
    })
}

#[cfg(test)]
mod tests;
