//! One isolation tree as flat arrays, its traversal, and its compact byte encoding.
//!
//! Nodes are stored in pre-order: the left child of an internal node `i` is always `i + 1`
//! (the `left` array states it explicitly and the validator checks it), the right child is
//! wherever its subtree starts. A sample goes left when `x <= threshold`, with `x` the input
//! cast to `f32` (as sklearn casts `X` to `float32`) and `threshold` the largest `f32` not
//! above sklearn's `float64` threshold, which gives exactly sklearn's comparisons.

use crate::error::{MlError, Result};
use crate::math::average_path_length;

/// Marker in `feature` for a leaf.
pub(crate) const LEAF: u32 = u32::MAX;

/// One node, 16 bytes, so a traversal step touches one cache line.
///
/// Internal node: split `feature`, `threshold`, `left` (always its own index + 1) and
/// `right` child. Leaf: `feature == LEAF`, and `left`/`right` hold the low/high halves of the
/// bits of the leaf's path-length contribution (an `f64`), so scoring needs no other load.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Node {
    pub(crate) feature: u32,
    pub(crate) threshold: f32,
    pub(crate) left: u32,
    pub(crate) right: u32,
}

impl Node {
    fn leaf(path: f64) -> Self {
        let bits = path.to_bits();
        #[allow(clippy::cast_possible_truncation)]
        Self {
            feature: LEAF,
            threshold: 0.0,
            left: bits as u32,
            right: (bits >> 32) as u32,
        }
    }

    #[inline]
    fn leaf_path(self) -> f64 {
        f64::from_bits(u64::from(self.left) | (u64::from(self.right) << 32))
    }

    pub(crate) fn is_leaf(self) -> bool {
        self.feature == LEAF
    }
}

/// One isolation tree as flat arrays: the nodes (array of 16-byte records, pre-order) and
/// the training samples that reached each node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IsolationTree {
    pub(crate) nodes: Vec<Node>,
    /// Training samples that reached each node.
    pub(crate) n_node_samples: Vec<u32>,
}

/// A node handed to [`TreeBuilder`] in pre-order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PreorderNode {
    Split { feature: u32, threshold: f32 },
    Leaf { n_samples: u32 },
}

/// Rebuilds the flat arrays from a pre-order sequence, checking the structure as it goes.
#[derive(Debug, Default)]
pub(crate) struct TreeBuilder {
    tree: IsolationTree,
    /// Internal nodes whose subtrees are not complete: exactly the ancestors of the next
    /// node, so their number is its depth (root = 0).
    pending: Vec<u32>,
    done: bool,
}

impl TreeBuilder {
    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut b = Self::default();
        b.tree.nodes.reserve(n);
        b.tree.n_node_samples.reserve(n);
        b
    }

    pub(crate) fn push(&mut self, node: PreorderNode) -> Result<()> {
        if self.done {
            return Err(MlError::corrupted("tree has nodes after its last leaf"));
        }
        let id = u32::try_from(self.tree.nodes.len())
            .map_err(|_| MlError::corrupted("tree too large"))?;
        let depth = u32::try_from(self.pending.len()).unwrap_or(u32::MAX);
        match node {
            PreorderNode::Split { feature, threshold } => {
                if feature == LEAF {
                    return Err(MlError::corrupted("feature index out of range"));
                }
                if !threshold.is_finite() {
                    return Err(MlError::corrupted(format!(
                        "node {id}: threshold {threshold} is not finite"
                    )));
                }
                self.tree.nodes.push(Node {
                    feature,
                    threshold,
                    left: id + 1,
                    right: 0,
                });
                self.tree.n_node_samples.push(0);
                self.pending.push(id);
            }
            PreorderNode::Leaf { n_samples } => {
                if n_samples == 0 {
                    return Err(MlError::corrupted(format!("leaf {id} holds no sample")));
                }
                // sklearn: depth counted from 1 at the root, plus c(n), minus 1.
                let path = (f64::from(depth) + 1.0) + average_path_length(f64::from(n_samples));
                self.tree.nodes.push(Node::leaf(path - 1.0));
                self.tree.n_node_samples.push(n_samples);
                self.close_leaf();
            }
        }
        Ok(())
    }

    /// After a leaf: the next node is the right child of the innermost internal node still
    /// waiting for one; internal nodes whose both subtrees are complete get their counts.
    fn close_leaf(&mut self) {
        while let Some(&parent) = self.pending.last() {
            let p = parent as usize;
            let node = self.tree.nodes[p];
            if node.right == 0 {
                // The left subtree just closed: the right one starts with the next node.
                self.tree.nodes[p].right = u32::try_from(self.tree.nodes.len()).unwrap_or(u32::MAX);
                return;
            }
            let n = self.tree.n_node_samples[node.left as usize]
                .saturating_add(self.tree.n_node_samples[node.right as usize]);
            self.tree.n_node_samples[p] = n;
            self.pending.pop();
        }
        self.done = true;
    }

    pub(crate) fn finish(self) -> Result<IsolationTree> {
        if !self.done {
            return Err(MlError::corrupted(
                "tree ends before all its subtrees are complete",
            ));
        }
        Ok(self.tree)
    }
}

impl IsolationTree {
    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of leaves.
    pub fn leaf_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_leaf()).count()
    }

    /// Training samples at the root.
    pub fn root_samples(&self) -> u32 {
        self.n_node_samples.first().copied().unwrap_or(0)
    }

    /// The largest feature index used by a split, if any.
    pub(crate) fn max_feature(&self) -> Option<u32> {
        self.nodes
            .iter()
            .filter(|n| !n.is_leaf())
            .map(|n| n.feature)
            .max()
    }

    /// Index of the leaf `x` falls into. `x` must have every feature the tree uses (the
    /// forest checks the width once, so the inner loop has no other check).
    #[inline]
    pub(crate) fn leaf_of(&self, x: &[f32]) -> usize {
        let mut i = 0usize;
        loop {
            let node = self.nodes[i];
            if node.is_leaf() {
                return i;
            }
            i = if x[node.feature as usize] <= node.threshold {
                node.left as usize
            } else {
                node.right as usize
            };
        }
    }

    /// This tree's path-length contribution for `x`: for the leaf it falls into,
    /// `(depth + 1) + c(n_node_samples) - 1.0`, evaluated as sklearn does.
    #[inline]
    pub(crate) fn path_length(&self, x: &[f32]) -> f64 {
        self.nodes[self.leaf_of(x)].leaf_path()
    }

    /// Training samples that reached each node (pre-order).
    pub fn n_node_samples(&self) -> &[u32] {
        &self.n_node_samples
    }

    /// The path-length contribution of a sample ending in leaf `i` (0 for an internal node).
    /// Panics if `i >= node_count()`.
    pub fn leaf_path(&self, i: usize) -> f64 {
        let n = self.nodes[i];
        if n.is_leaf() { n.leaf_path() } else { 0.0 }
    }

    /// Compact encoding: the nodes in pre-order, each a LEB128 varint `v` (`0` = leaf,
    /// followed by a varint sample count; `v >= 1` = split on feature `v - 1`, followed by
    /// the threshold's 4 little-endian bytes). About 5 bytes per split, 2 per leaf.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for (node, &n) in self.nodes.iter().zip(&self.n_node_samples) {
            if node.is_leaf() {
                put_varint(out, 0);
                put_varint(out, u64::from(n));
            } else {
                put_varint(out, u64::from(node.feature) + 1);
                out.extend_from_slice(&node.threshold.to_le_bytes());
            }
        }
    }

    /// Inverse of [`encode`](Self::encode). `max_nodes` bounds the work on hostile input.
    pub(crate) fn decode(bytes: &[u8], max_nodes: usize) -> Result<Self> {
        let mut pos = 0usize;
        let mut builder = TreeBuilder::with_capacity(max_nodes.min(bytes.len()));
        let mut count = 0usize;
        while pos < bytes.len() {
            count += 1;
            if count > max_nodes {
                return Err(MlError::corrupted(format!(
                    "tree has more than {max_nodes} nodes"
                )));
            }
            let tag = get_varint(bytes, &mut pos)?;
            let node = if tag == 0 {
                let n = get_varint(bytes, &mut pos)?;
                let n_samples = u32::try_from(n)
                    .map_err(|_| MlError::corrupted("leaf sample count overflows u32"))?;
                PreorderNode::Leaf { n_samples }
            } else {
                let feature = u32::try_from(tag - 1)
                    .map_err(|_| MlError::corrupted("feature index overflows u32"))?;
                let raw = bytes
                    .get(pos..pos + 4)
                    .ok_or_else(|| MlError::corrupted("tree bytes end inside a threshold"))?;
                pos += 4;
                let threshold = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                PreorderNode::Split { feature, threshold }
            };
            builder.push(node)?;
        }
        builder.finish()
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        #[allow(clippy::cast_possible_truncation)]
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes
            .get(*pos)
            .ok_or_else(|| MlError::corrupted("tree bytes end inside a varint"))?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(MlError::corrupted("varint longer than 10 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_tree() -> IsolationTree {
        // root: f0 <= 0.5 ? (f1 <= 2 ? leaf(3) : leaf(1)) : leaf(4)
        let mut b = TreeBuilder::with_capacity(5);
        for n in [
            PreorderNode::Split {
                feature: 0,
                threshold: 0.5,
            },
            PreorderNode::Split {
                feature: 1,
                threshold: 2.0,
            },
            PreorderNode::Leaf { n_samples: 3 },
            PreorderNode::Leaf { n_samples: 1 },
            PreorderNode::Leaf { n_samples: 4 },
        ] {
            b.push(n).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn builder_links_children_and_counts() {
        let t = small_tree();
        let links: Vec<(u32, u32)> = t.nodes[..2].iter().map(|n| (n.left, n.right)).collect();
        assert_eq!(links, vec![(1, 4), (2, 3)]);
        assert_eq!(t.n_node_samples, vec![8, 4, 3, 1, 4]);
        assert_eq!(t.leaf_of(&[0.5, 2.0]), 2);
        assert_eq!(t.leaf_of(&[0.5, 2.1]), 3);
        assert_eq!(t.leaf_of(&[0.6, 0.0]), 4);
        // leaf 2 at depth 2 with 3 samples: 2 + c(3)
        assert_eq!(t.leaf_path(2), (3.0 + average_path_length(3.0)) - 1.0);
        assert_eq!(t.leaf_path(4), (2.0 + average_path_length(4.0)) - 1.0);
        assert_eq!(t.leaf_path(0), 0.0);
    }

    #[test]
    fn encode_decode_round_trip_and_truncation() {
        let t = small_tree();
        let mut bytes = Vec::new();
        t.encode(&mut bytes);
        assert_eq!(IsolationTree::decode(&bytes, 100).unwrap(), t);
        for cut in 0..bytes.len() {
            assert!(
                IsolationTree::decode(&bytes[..cut], 100).is_err(),
                "cut {cut}"
            );
        }
        let mut extra = bytes.clone();
        extra.extend_from_slice(&[0, 1]);
        assert!(IsolationTree::decode(&extra, 100).is_err());
        assert!(IsolationTree::decode(&bytes, 4).is_err());
    }
}
