//! Growing one isolation tree the way scikit-learn's `ExtraTreeRegressor(max_features=1,
//! splitter="random")` does inside `IsolationForest`.
//!
//! What is reproduced (read from sklearn's `_splitter.pyx` / `_tree.pyx`):
//! - a node is a leaf when it is at `max_depth` or holds fewer than 2 samples;
//! - otherwise features are drawn without replacement until one is *not constant* in the
//!   node, constant meaning `max <= min + 1e-7` in `f32` arithmetic (sklearn's
//!   `FEATURE_THRESHOLD`); with `max_features=1` sklearn keeps drawing past constant features,
//!   so the chosen feature is uniform among the node's non-constant features. If every feature
//!   is constant the node is a leaf;
//! - the threshold is uniform in `[min, max)`: `t = min + (max - min) * u` in `f64` with
//!   `u` uniform in `[0, 1)`, and `t == max` is replaced by `min`; `x <= t` goes left, so
//!   both children are non-empty.
//!
//! The random stream is ours (ChaCha8), not sklearn's: trees are distributed like sklearn's,
//! not identical to them.

use rand::Rng;
use rand::seq::index;
use rand_chacha::ChaCha8Rng;

use super::tree::{IsolationTree, PreorderNode, TreeBuilder};
use crate::error::Result;
use crate::math::floor_f32;

/// sklearn's `FEATURE_THRESHOLD`.
const FEATURE_THRESHOLD: f32 = 1e-7;

/// Training data, column-major, already cast to `f32` and checked finite.
#[derive(Debug)]
pub(crate) struct Columns {
    pub(crate) cols: Vec<Vec<f32>>,
    pub(crate) n_rows: usize,
}

/// Grows one tree on `psi` rows drawn without replacement.
pub(crate) fn grow_tree(
    data: &Columns,
    psi: usize,
    max_depth: u32,
    rng: &mut ChaCha8Rng,
) -> Result<IsolationTree> {
    let mut samples: Vec<u32> = index::sample(rng, data.n_rows, psi)
        .into_iter()
        .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    let n_features = data.cols.len();
    let mut features: Vec<u32> = (0..n_features)
        .map(|f| u32::try_from(f).unwrap_or(u32::MAX))
        .collect();
    let mut builder = TreeBuilder::with_capacity(2 * psi);
    // (start, end, depth) of the nodes still to emit, in pre-order (left popped first).
    let mut stack = vec![(0usize, samples.len(), 0u32)];
    while let Some((start, end, depth)) = stack.pop() {
        let node_samples = &mut samples[start..end];
        let split = if depth >= max_depth || node_samples.len() < 2 {
            None
        } else {
            choose_split(data, node_samples, &mut features, rng)
        };
        match split {
            None => builder.push(PreorderNode::Leaf {
                n_samples: u32::try_from(end - start).unwrap_or(u32::MAX),
            })?,
            Some((feature, threshold)) => {
                builder.push(PreorderNode::Split { feature, threshold })?;
                let column = &data.cols[feature as usize];
                let n_left = partition(node_samples, |s| column[s as usize] <= threshold);
                stack.push((start + n_left, end, depth + 1));
                stack.push((start, start + n_left, depth + 1));
            }
        }
    }
    builder.finish()
}

/// Draws a non-constant feature and a threshold, or `None` when all features are constant.
fn choose_split(
    data: &Columns,
    samples: &[u32],
    features: &mut [u32],
    rng: &mut ChaCha8Rng,
) -> Option<(u32, f32)> {
    let mut remaining = features.len();
    while remaining > 0 {
        let j = rng.random_range(0..remaining);
        let feature = features[j];
        let column = &data.cols[feature as usize];
        let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
        for &s in samples {
            let v = column[s as usize];
            min = min.min(v);
            max = max.max(v);
        }
        if max <= min + FEATURE_THRESHOLD {
            // Constant here: set it aside and draw again among the others.
            features.swap(j, remaining - 1);
            remaining -= 1;
            continue;
        }
        let (lo, hi) = (f64::from(min), f64::from(max));
        let u: f64 = rng.random();
        let mut t = (hi - lo) * u + lo;
        if t == hi {
            t = lo;
        }
        return Some((feature, floor_f32(t)));
    }
    None
}

/// Moves the elements satisfying `goes_left` to the front; returns how many there are.
fn partition(samples: &mut [u32], goes_left: impl Fn(u32) -> bool) -> usize {
    let mut n_left = 0;
    for i in 0..samples.len() {
        if goes_left(samples[i]) {
            samples.swap(i, n_left);
            n_left += 1;
        }
    }
    n_left
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn columns(rows: &[[f32; 2]]) -> Columns {
        Columns {
            cols: (0..2)
                .map(|f| rows.iter().map(|r| r[f]).collect())
                .collect(),
            n_rows: rows.len(),
        }
    }

    #[test]
    fn every_split_separates_its_samples_and_leaves_hold_all_samples() {
        let rows: Vec<[f32; 2]> = (0..300u16)
            .map(|i| [f32::from(i % 17), f32::from(i) * 0.5])
            .collect();
        let data = columns(&rows);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let tree = grow_tree(&data, 256, 8, &mut rng).unwrap();
        assert_eq!(tree.root_samples(), 256);
        let leaf_total: u32 = (0..tree.node_count())
            .filter(|&i| tree.nodes[i].is_leaf())
            .map(|i| tree.n_node_samples[i])
            .sum();
        assert_eq!(leaf_total, 256);
        for node in tree.nodes.iter().filter(|n| !n.is_leaf()) {
            assert!(tree.n_node_samples[node.left as usize] > 0);
            assert!(tree.n_node_samples[node.right as usize] > 0);
        }
    }

    #[test]
    fn constant_features_make_a_single_leaf() {
        let rows = vec![[3.0f32, -1.0]; 50];
        let data = columns(&rows);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let tree = grow_tree(&data, 50, 6, &mut rng).unwrap();
        assert_eq!(tree.node_count(), 1);
        assert_eq!(tree.root_samples(), 50);
    }

    #[test]
    fn a_constant_column_is_never_split_on() {
        let rows: Vec<[f32; 2]> = (0..200u16).map(|i| [5.0, f32::from(i)]).collect();
        let data = columns(&rows);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let tree = grow_tree(&data, 128, 7, &mut rng).unwrap();
        assert!(tree.node_count() > 1);
        assert!(tree.nodes.iter().all(|n| n.is_leaf() || n.feature == 1));
    }
}
