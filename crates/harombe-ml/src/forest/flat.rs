//! The scoring layout of a forest: every tree padded to a complete binary tree of the
//! forest's depth and stored in one array, so a traversal is a fixed number of branch-free
//! steps (`k = 2k + (x[f] > t)`) that the CPU overlaps across several trees at once.
//!
//! Each tree takes `2^depth` 8-byte split records (heap order, index 0 unused) followed by
//! nothing else; its leaves are `2^depth` `u16` indices into one table of the forest's
//! distinct leaf path lengths (an `f64` each, bit-identical to the pointer tree's). A
//! leaf above the bottom level is padded with splits whose threshold is `+inf` (every
//! finite `x` goes left) down to the bottom, and its value copied to every slot below it.
//! Scores are summed tree by tree in the same order as the pointer walk, so they are equal
//! to the last bit. Forests deeper than [`MAX_FLAT_DEPTH`] keep the pointer walk.

use std::collections::HashMap;

use super::tree::IsolationTree;

/// Deepest forest laid out flat (`2^12` slots per tree, 40 KB): sklearn's default and our
/// training give depth 8 for up to 256 rows per tree.
pub(crate) const MAX_FLAT_DEPTH: u32 = 12;

/// Trees walked together: enough independent loads in flight to hide cache latency.
const LANES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Split {
    threshold: f32,
    feature: u32,
}

/// A forest in the flat scoring layout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlatForest {
    depth: u32,
    splits: Vec<Split>,
    leaves: Vec<u16>,
    values: Vec<f64>,
}

impl FlatForest {
    /// The flat layout of `trees`, or `None` when a tree is deeper than
    /// [`MAX_FLAT_DEPTH`] or the forest has more than 65,536 distinct leaf values.
    pub(crate) fn build(trees: &[IsolationTree]) -> Option<Self> {
        let mut depth = 0;
        for t in trees {
            depth = depth.max(tree_depth(t)?);
        }
        let slots = 1usize << depth;
        let mut flat = Self {
            depth,
            splits: vec![
                Split {
                    threshold: f32::INFINITY,
                    feature: 0,
                };
                slots * trees.len()
            ],
            leaves: vec![0; slots * trees.len()],
            values: Vec::new(),
        };
        let mut index: HashMap<u64, u16> = HashMap::new();
        for (t, tree) in trees.iter().enumerate() {
            let base = t * slots;
            // (pointer-tree node, heap slot, level)
            let mut stack = vec![(0usize, 1usize, 0u32)];
            while let Some((node, k, level)) = stack.pop() {
                let n = tree.nodes[node];
                if n.is_leaf() {
                    let value = tree.leaf_path(node);
                    let id = match index.get(&value.to_bits()) {
                        Some(&id) => id,
                        None => {
                            let id = u16::try_from(flat.values.len()).ok()?;
                            flat.values.push(value);
                            index.insert(value.to_bits(), id);
                            id
                        }
                    };
                    // Padding splits above the bottom keep their `+inf` default; the leaf
                    // owns the slots `k << (depth - level) ..` of the bottom level.
                    let first = (k << (depth - level)) - slots;
                    let count = 1usize << (depth - level);
                    flat.leaves[base + first..base + first + count].fill(id);
                } else {
                    flat.splits[base + k] = Split {
                        threshold: n.threshold,
                        feature: n.feature,
                    };
                    stack.push((n.right as usize, 2 * k + 1, level + 1));
                    stack.push((n.left as usize, 2 * k, level + 1));
                }
            }
        }
        Some(flat)
    }

    /// `Σ path_length(x)` over the trees, in tree order. `x` must hold every feature the
    /// trees use (the forest checked it when it was assembled).
    #[inline]
    pub(crate) fn path_sum(&self, x: &[f32]) -> f64 {
        let slots = 1usize << self.depth;
        let mask = slots - 1;
        let mut sum = 0.0f64;
        let splits = self.splits.chunks_exact(slots * LANES);
        let leaves = self.leaves.chunks_exact(slots * LANES);
        let (rest_splits, rest_leaves) = (splits.remainder(), leaves.remainder());
        for (s, l) in splits.zip(leaves) {
            let mut k = [1usize; LANES];
            for _ in 0..self.depth {
                for (j, kj) in k.iter_mut().enumerate() {
                    let n = s[j * slots + (*kj & mask)];
                    let v = x.get(n.feature as usize).copied().unwrap_or(0.0);
                    *kj = 2 * *kj + usize::from(v > n.threshold);
                }
            }
            for (j, &kj) in k.iter().enumerate() {
                let leaf = l[j * slots + (kj & mask)];
                sum += self.values.get(usize::from(leaf)).copied().unwrap_or(0.0);
            }
        }
        for (s, l) in rest_splits
            .chunks_exact(slots)
            .zip(rest_leaves.chunks_exact(slots))
        {
            let mut k = 1usize;
            for _ in 0..self.depth {
                let n = s[k & mask];
                let v = x.get(n.feature as usize).copied().unwrap_or(0.0);
                k = 2 * k + usize::from(v > n.threshold);
            }
            let leaf = l[k & mask];
            sum += self.values.get(usize::from(leaf)).copied().unwrap_or(0.0);
        }
        sum
    }
}

/// Levels of splits on the longest root-to-leaf path, or `None` past [`MAX_FLAT_DEPTH`].
fn tree_depth(tree: &IsolationTree) -> Option<u32> {
    let mut max = 0;
    let mut stack = vec![(0usize, 0u32)];
    while let Some((node, level)) = stack.pop() {
        if level > MAX_FLAT_DEPTH {
            return None;
        }
        let n = tree.nodes.get(node)?;
        if n.is_leaf() {
            max = max.max(level);
        } else {
            stack.push((n.left as usize, level + 1));
            stack.push((n.right as usize, level + 1));
        }
    }
    Some(max)
}
