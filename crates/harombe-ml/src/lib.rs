//! harombe-ml: the numeric models behind harombe's anomaly detection.
//!
//! **Owns**: the Isolation Forest ([`IsolationForest`], training, scoring, versioned
//! persistence, import of scikit-learn models), [`StandardScaler`], and the statistical
//! baselines: streaming mean/variance ([`RunningStats`], Welford, mergeable), [`Ewma`],
//! [`z_score`], and hour-of-day / day-of-week histograms ([`HourOfDayHistogram`],
//! [`DayOfWeekHistogram`]). Also [`math::roc_auc`] and numpy's percentile, used to evaluate
//! and threshold models.
//!
//! **Must not depend on**: anything else in the workspace (not even harombe-core), async
//! runtimes, the clock, the file system or the network. Everything here is a pure function
//! of its inputs and a seed: no I/O (models go to and from bytes or JSON strings, the caller
//! stores them), no global state, no threads. Bad input is an [`MlError`], never a panic.
//!
//! **Key design decision**: the Isolation Forest follows scikit-learn's `IsolationForest`
//! to the bit where it can be checked: scikit-learn is the oracle. Scoring sklearn's own
//! exported trees reproduces its `score_samples` (same `float32` input cast, same `float64`
//! accumulation order, same `c(n)`), `offset_` uses numpy's percentile formula, and our own
//! training draws its splits from the same distributions as sklearn's
//! `ExtraTreeRegressor(max_features=1)` (constant features skipped, threshold uniform in
//! `[min, max)`), with a seeded ChaCha8 stream instead of sklearn's RNG. The integration tests
//! in `tests/` run scikit-learn itself and compare.

mod error;
pub mod forest;
pub mod math;
mod scaler;
mod stats;

pub use error::{MlError, Result};
pub use forest::{
    Contamination, FeatureSchema, IsolationForest, IsolationForestConfig, IsolationTree,
    MaxSamples, ModelOrigin,
};
pub use scaler::StandardScaler;
pub use stats::{DayOfWeekHistogram, Ewma, HourOfDayHistogram, RunningStats, z_score};
