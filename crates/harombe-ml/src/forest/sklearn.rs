//! Import of a fitted scikit-learn `IsolationForest`, exported as JSON.
//!
//! The export format (version 1), written by `tests/oracle/sklearn_oracle.py`:
//!
//! ```json
//! {
//!   "format": "sklearn-isolation-forest", "version": 1, "sklearn_version": "1.9.1",
//!   "n_features_in": 4, "feature_names": ["a", "b", "c", "d"],   // or null
//!   "max_samples": 256,           // max_samples_
//!   "max_features": 4,            // _max_features (features each tree saw)
//!   "contamination": "auto",      // or a number
//!   "offset": -0.5,               // offset_
//!   "estimators": [{
//!     "features": [0, 1, 2, 3],   // estimators_features_[i]
//!     "feature": [..], "threshold": [..], "children_left": [..],
//!     "children_right": [..], "n_node_samples": [..]   // estimators_[i].tree_.*
//!   }]
//! }
//! ```
//!
//! Each tree is walked from its root and re-laid in our pre-order arrays; sklearn's `float64`
//! thresholds become the largest `f32` not above them, which keeps every comparison with a
//! `float32` input identical. As in sklearn, `estimators_features_` maps a tree's feature
//! index to a column only when `max_features < n_features_in` (otherwise sklearn trains and
//! scores every tree on all columns in their original order).

use serde::Deserialize;

use super::tree::{IsolationTree, PreorderNode, TreeBuilder};
use super::{Contamination, FeatureSchema, IsolationForest, ModelOrigin};
use crate::error::{MlError, Result};
use crate::math::floor_f32;

/// `format` of an export.
pub const SKLEARN_EXPORT_FORMAT: &str = "sklearn-isolation-forest";
/// `version` of the export format this build reads.
pub const SKLEARN_EXPORT_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Export {
    format: String,
    version: u32,
    #[serde(default)]
    sklearn_version: Option<String>,
    n_features_in: usize,
    #[serde(default)]
    feature_names: Option<Vec<String>>,
    max_samples: usize,
    max_features: usize,
    contamination: ExportContamination,
    offset: f64,
    estimators: Vec<ExportTree>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ExportContamination {
    Fraction(f64),
    Named(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportTree {
    features: Vec<i64>,
    feature: Vec<i64>,
    threshold: Vec<f64>,
    children_left: Vec<i64>,
    children_right: Vec<i64>,
    n_node_samples: Vec<i64>,
}

/// sklearn's `TREE_LEAF`.
const SK_LEAF: i64 = -1;

impl IsolationForest {
    /// Builds a model from a scikit-learn export (see the module doc). Its scores equal
    /// sklearn's `score_samples` on the same trees.
    pub fn from_sklearn_json(json: &str) -> Result<Self> {
        let export: Export = serde_json::from_str(json).map_err(|e| MlError::WrongFormat {
            expected: SKLEARN_EXPORT_FORMAT,
            reason: e.to_string(),
        })?;
        if export.format != SKLEARN_EXPORT_FORMAT {
            return Err(MlError::WrongFormat {
                expected: SKLEARN_EXPORT_FORMAT,
                reason: format!("format is {:?}", export.format),
            });
        }
        if export.version != SKLEARN_EXPORT_VERSION {
            return Err(MlError::UnsupportedVersion {
                found: export.version,
                supported: SKLEARN_EXPORT_VERSION,
            });
        }
        let schema = match export.feature_names {
            Some(names) if names.len() == export.n_features_in => FeatureSchema::new(names)?,
            Some(names) => {
                return Err(MlError::corrupted(format!(
                    "{} feature names for {} features",
                    names.len(),
                    export.n_features_in
                )));
            }
            None => FeatureSchema::anonymous(export.n_features_in)?,
        };
        let contamination = match export.contamination {
            ExportContamination::Fraction(f) => Contamination::Fraction(f),
            ExportContamination::Named(s) if s == "auto" => Contamination::Auto,
            ExportContamination::Named(s) => {
                return Err(MlError::corrupted(format!("contamination {s:?}")));
            }
        };
        if export.max_samples == 0 || export.max_samples > u32::MAX as usize {
            return Err(MlError::corrupted(format!(
                "max_samples {}",
                export.max_samples
            )));
        }
        let subsample_features = export.max_features != export.n_features_in;
        let trees = export
            .estimators
            .iter()
            .enumerate()
            .map(|(i, t)| {
                convert_tree(t, subsample_features, export.n_features_in).map_err(|e| match e {
                    MlError::Corrupted { reason } => {
                        MlError::corrupted(format!("estimator {i}: {reason}"))
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some((i, t)) = trees
            .iter()
            .enumerate()
            .find(|(_, t)| t.root_samples() as usize != export.max_samples)
        {
            return Err(MlError::corrupted(format!(
                "estimator {i} was fitted on {} samples, max_samples is {}",
                t.root_samples(),
                export.max_samples
            )));
        }
        Self::from_parts(
            schema,
            export.max_samples,
            trees,
            contamination,
            export.offset,
            ModelOrigin::Sklearn {
                version: export.sklearn_version,
            },
        )
    }
}

fn convert_tree(
    t: &ExportTree,
    subsample_features: bool,
    n_features: usize,
) -> Result<IsolationTree> {
    let n = t.feature.len();
    if n == 0
        || t.threshold.len() != n
        || t.children_left.len() != n
        || t.children_right.len() != n
        || t.n_node_samples.len() != n
    {
        return Err(MlError::corrupted(
            "tree arrays are empty or of different lengths",
        ));
    }
    let map_feature = |f: i64| -> Result<u32> {
        let idx = usize::try_from(f).map_err(|_| MlError::corrupted(format!("feature {f}")))?;
        let column = if subsample_features {
            let mapped = *t
                .features
                .get(idx)
                .ok_or_else(|| MlError::corrupted(format!("feature {f} not in features")))?;
            usize::try_from(mapped).map_err(|_| MlError::corrupted(format!("feature {mapped}")))?
        } else {
            idx
        };
        if column >= n_features {
            return Err(MlError::corrupted(format!(
                "feature {column} out of range ({n_features} features)"
            )));
        }
        u32::try_from(column).map_err(|_| MlError::corrupted("feature index overflows u32"))
    };
    let mut builder = TreeBuilder::with_capacity(n);
    let mut stack = vec![0usize];
    let mut visited = 0usize;
    while let Some(id) = stack.pop() {
        visited += 1;
        if visited > n {
            return Err(MlError::corrupted("children links revisit nodes"));
        }
        let (l, r) = (t.children_left[id], t.children_right[id]);
        if l == SK_LEAF || r == SK_LEAF {
            if l != r {
                return Err(MlError::corrupted(format!("node {id} has one child")));
            }
            let n_samples = u32::try_from(t.n_node_samples[id])
                .map_err(|_| MlError::corrupted(format!("node {id}: n_node_samples")))?;
            builder.push(PreorderNode::Leaf { n_samples })?;
        } else {
            let child = |c: i64| {
                usize::try_from(c)
                    .ok()
                    .filter(|&c| c < n && c != id)
                    .ok_or_else(|| MlError::corrupted(format!("node {id}: child {c}")))
            };
            let (l, r) = (child(l)?, child(r)?);
            let threshold = t.threshold[id];
            if !threshold.is_finite() {
                return Err(MlError::corrupted(format!(
                    "node {id}: threshold {threshold}"
                )));
            }
            builder.push(PreorderNode::Split {
                feature: map_feature(t.feature[id])?,
                threshold: floor_f32(threshold),
            })?;
            stack.push(r);
            stack.push(l);
        }
    }
    let tree = builder.finish()?;
    let root = t.n_node_samples[0];
    if i64::from(tree.root_samples()) != root {
        return Err(MlError::corrupted(format!(
            "leaves hold {} samples but the root holds {root}",
            tree.root_samples()
        )));
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(trees: &str) -> String {
        format!(
            r#"{{"format":"sklearn-isolation-forest","version":1,"sklearn_version":"x",
            "n_features_in":2,"feature_names":null,"max_samples":4,"max_features":2,
            "contamination":"auto","offset":-0.5,"estimators":[{trees}]}}"#
        )
    }

    const GOOD: &str = r#"{"features":[0,1],"feature":[1,-2,-2],"threshold":[0.25,-2,-2],
        "children_left":[1,-1,-1],"children_right":[2,-1,-1],"n_node_samples":[4,3,1]}"#;

    #[test]
    fn imports_a_small_tree_and_scores_it() {
        let f = IsolationForest::from_sklearn_json(&export(GOOD)).unwrap();
        assert_eq!(f.n_estimators(), 1);
        assert_eq!(f.schema().names(), ["x0", "x1"]);
        // x1 = 0.25 goes left (3 samples, depth 1), 0.26 right (1 sample).
        let c4 = crate::math::average_path_length(4.0);
        let left = -(2f64.powf(-(((2.0 + crate::math::average_path_length(3.0)) - 1.0) / c4)));
        let right = -(2f64.powf(-((2.0 - 1.0) / c4)));
        assert_eq!(f.score_samples(&[9.0, 0.25]).unwrap(), left);
        assert_eq!(f.score_samples(&[9.0, 0.26]).unwrap(), right);
    }

    #[test]
    fn rejects_broken_exports() {
        let cases = [
            // child out of range
            GOOD.replace("\"children_right\":[2,", "\"children_right\":[7,"),
            // cycle to the root
            GOOD.replace("\"children_right\":[2,", "\"children_right\":[0,"),
            // one-child node
            GOOD.replace("\"children_left\":[1,-1,-1]", "\"children_left\":[1,-1,2]"),
            // feature out of range
            GOOD.replace("\"feature\":[1,", "\"feature\":[5,"),
            // counts that do not add up
            GOOD.replace("\"n_node_samples\":[4,3,1]", "\"n_node_samples\":[4,3,2]"),
            // ragged arrays
            GOOD.replace("\"threshold\":[0.25,-2,-2]", "\"threshold\":[0.25,-2]"),
        ];
        for case in cases {
            let err = IsolationForest::from_sklearn_json(&export(&case)).unwrap_err();
            assert_eq!(err.reason(), "corrupted", "{case}: {err}");
        }
        let wrong_version = export(GOOD).replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            IsolationForest::from_sklearn_json(&wrong_version),
            Err(MlError::UnsupportedVersion { found: 2, .. })
        ));
        assert_eq!(
            IsolationForest::from_sklearn_json("{}")
                .unwrap_err()
                .reason(),
            "wrong_format"
        );
    }
}
