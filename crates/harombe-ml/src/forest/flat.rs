//! The scoring layout of a forest: every tree padded to a complete binary tree whose depth
//! is a multiple of four, cut into 64-byte blocks of four levels (15 splits each), so a
//! walk touches one cache line per four levels instead of one per level, and walked
//! branch-free (`k = 2k + go_right`) over several trees at once so the CPU overlaps them.
//!
//! A split is 4 bytes: the feature (low 8 bits) and the rank of its threshold among the
//! distinct thresholds the forest uses on that feature (high 24 bits). Before a walk each
//! feature value `x[f]` is turned into the number of those thresholds below it, so
//! `x[f] > threshold` is exactly `rank_of_x > rank_of_threshold` and every decision, leaf
//! and sum equals the pointer walk's to the last bit. A leaf above the bottom level is
//! padded with splits that send everything left (rank [`PAD`]) and its value is copied to
//! every bottom slot below it; leaves are `u16` indices into one table of the forest's
//! distinct path lengths. Forests deeper than [`MAX_FLAT_DEPTH`], with more than
//! [`MAX_FLAT_FEATURES`] features or with a NaN threshold keep the pointer walk.
//!
//! Trees of depth 5 to 8 (two block levels, the default training's shape) are stored as
//! one [`TwoLevelTree`] each and walked by [`FlatForest::path_sum_two_levels`]; other
//! depths use the general block walk.

use std::collections::HashMap;

use super::tree::IsolationTree;

/// Deepest forest laid out flat (three block levels, `2^12` leaves per tree): sklearn's
/// default and our training give depth 8 for up to 256 rows per tree.
pub(crate) const MAX_FLAT_DEPTH: u32 = 12;

/// Features a flat forest may split on (feature indices are 8 bits in a split; the ranks
/// of one row are kept on the stack).
pub(crate) const MAX_FLAT_FEATURES: usize = 64;

/// Trees walked together: enough independent loads in flight to hide cache latency.
const LANES: usize = 8;

/// Tree levels per block.
const BLOCK_LEVELS: u32 = 4;

/// Slots per block: heap order, slot 0 unused, 15 splits.
const BLOCK_SLOTS: usize = 16;

/// Threshold rank of a padding split: above any rank a value can have, so it goes left.
const PAD: u32 = (1 << 24) - 1;

/// Four tree levels: 15 splits in heap order (slot 0 unused) in one cache line.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
struct Block([u32; BLOCK_SLOTS]);

/// Splits of a tree of depth 5 to 8 as one array: the root block (words 0..16) and the 16
/// blocks below it (word `16 + 16·d0 + k` is slot `k` of the block under the root's exit
/// `d0`). 1,088 bytes, so every block of every tree starts a cache line.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
struct TwoLevelTree([u32; TWO_LEVEL_WORDS]);

/// Words of a [`TwoLevelTree`]: 17 blocks.
const TWO_LEVEL_WORDS: usize = 17 * BLOCK_SLOTS;

/// A forest in the flat scoring layout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlatForest {
    /// Block levels per tree (tree depth rounded up to a multiple of four, over four).
    levels: u32,
    /// First block of each block level within a tree (`Σ 16^i`, i < level).
    level_start: [usize; 3],
    blocks_per_tree: usize,
    /// The trees' blocks, in tree order (empty when `two_level` holds them).
    blocks: Vec<Block>,
    /// The same splits when there are exactly two block levels (the common case).
    two_level: Vec<TwoLevelTree>,
    /// `16^levels` leaf indices per tree.
    leaves: Vec<u16>,
    values: Vec<f64>,
    /// Per feature, the distinct thresholds the forest splits it on, ascending.
    cuts: Vec<Vec<f32>>,
}

impl FlatForest {
    /// The flat layout of `trees`, or `None` when a tree is deeper than
    /// [`MAX_FLAT_DEPTH`], splits on a feature past [`MAX_FLAT_FEATURES`] or on a NaN
    /// threshold, or the forest has more than 65,536 distinct leaf values.
    pub(crate) fn build(trees: &[IsolationTree]) -> Option<Self> {
        let mut depth = 0;
        let mut cuts: Vec<Vec<f32>> = Vec::new();
        for t in trees {
            depth = depth.max(tree_depth(t)?);
            for n in t.nodes.iter().filter(|n| !n.is_leaf()) {
                let f = n.feature as usize;
                if f >= MAX_FLAT_FEATURES || n.threshold.is_nan() {
                    return None;
                }
                if cuts.len() <= f {
                    cuts.resize_with(f + 1, Vec::new);
                }
                cuts[f].push(n.threshold);
            }
        }
        for c in &mut cuts {
            c.sort_by(f32::total_cmp);
            // `-0.0` and `0.0` compare equal: one rank for both.
            c.dedup_by(|a, b| a == b);
            if c.len() >= PAD as usize {
                return None;
            }
        }
        let levels = depth.div_ceil(BLOCK_LEVELS);
        let mut level_start = [0usize; 3];
        let mut blocks_per_tree = 0usize;
        for (l, start) in level_start.iter_mut().enumerate().take(levels as usize) {
            *start = blocks_per_tree;
            blocks_per_tree += 1 << (4 * l);
        }
        let leaves_per_tree = 1usize << (BLOCK_LEVELS * levels);
        let full_depth = BLOCK_LEVELS * levels;
        let mut flat = Self {
            levels,
            level_start,
            blocks_per_tree,
            blocks: vec![Block([PAD << 8; BLOCK_SLOTS]); blocks_per_tree * trees.len()],
            two_level: Vec::new(),
            leaves: vec![0; leaves_per_tree * trees.len()],
            values: Vec::new(),
            cuts,
        };
        let mut index: HashMap<u64, u16> = HashMap::new();
        for (t, tree) in trees.iter().enumerate() {
            // (pointer-tree node, heap slot in the padded tree, level)
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
                    // The leaf owns the bottom slots `k << (full_depth - level) ..`.
                    let first = (k << (full_depth - level)) - leaves_per_tree;
                    let count = 1usize << (full_depth - level);
                    let base = t * leaves_per_tree + first;
                    flat.leaves[base..base + count].fill(id);
                } else {
                    let f = n.feature as usize;
                    let cuts = &flat.cuts[f];
                    let rank = cuts.partition_point(|&c| c < n.threshold);
                    let rank = u32::try_from(rank).ok()?;
                    // Heap slot `k` at `level`: its path from the root is the low `level`
                    // bits of `k`; the block holds the last `level % 4` of them.
                    let inner = level % BLOCK_LEVELS;
                    let path = k - (1usize << level);
                    let position = path >> inner;
                    let slot = (1usize << inner) | (path & ((1usize << inner) - 1));
                    let block = t * flat.blocks_per_tree
                        + flat.level_start[(level / BLOCK_LEVELS) as usize]
                        + position;
                    flat.blocks[block].0[slot] = (rank << 8) | n.feature;
                    stack.push((n.right as usize, 2 * k + 1, level + 1));
                    stack.push((n.left as usize, 2 * k, level + 1));
                }
            }
        }
        if levels == 2 {
            flat.two_level = flat
                .blocks
                .chunks_exact(blocks_per_tree)
                .map(|tree| {
                    let mut words = [0u32; TWO_LEVEL_WORDS];
                    for (w, b) in words.chunks_exact_mut(BLOCK_SLOTS).zip(tree) {
                        w.copy_from_slice(&b.0);
                    }
                    TwoLevelTree(words)
                })
                .collect();
            flat.blocks = Vec::new();
        }
        Some(flat)
    }

    /// `Σ path_length(x)` over the trees, in tree order. `x` must hold every feature the
    /// trees use (the forest checked it when it was assembled); a missing one reads as 0.
    #[inline]
    pub(crate) fn path_sum(&self, x: &[f32]) -> f64 {
        // Per feature, the number of its thresholds below `x[f]`, shifted left by 8 so it
        // compares directly with a split word: `ranks[f] > (rank_t << 8 | f)` exactly when
        // `rank_x > rank_t` (the feature, below 256, cannot lift a rank to the next one).
        let mut ranks = [0u32; MAX_FLAT_FEATURES];
        for (f, (r, cuts)) in ranks.iter_mut().zip(&self.cuts).enumerate() {
            let v = x.get(f).copied().unwrap_or(0.0);
            // Thresholds below `v`: fewer than `PAD`, checked when built.
            #[allow(clippy::cast_possible_truncation)]
            {
                *r = (cuts.partition_point(|&c| c < v) as u32) << 8;
            }
        }
        if self.levels == 2 {
            self.path_sum_two_levels(&ranks)
        } else {
            self.path_sum_any(&ranks)
        }
    }

    /// The walk for trees of depth 5 to 8 (two block levels: a root block and 16 blocks
    /// below it, 256 leaves), the shape of every forest trained on 17 to 256 rows per tree.
    /// A lane's whole position is one byte `o`: in the root block the heap slot `k`
    /// (1..16), in the block below the root's exit `d0` the word `16·d0 + k` of that
    /// level's 256; either way the child is `o + (o mod 16) + go`, and after the last level
    /// `o - 16` (mod 256) is the leaf. Fixed sizes let the compiler check every index once,
    /// and the ranks are read by the split's low byte (its feature) from a 256-entry table,
    /// so a step is two loads, a compare and an add.
    fn path_sum_two_levels(&self, ranks: &[u32; MAX_FLAT_FEATURES]) -> f64 {
        const LEAVES: usize = 256;
        const ROOT: usize = BLOCK_SLOTS;
        let mut by_byte = [0u32; 256];
        by_byte[..MAX_FLAT_FEATURES].copy_from_slice(ranks);
        let go = |s: u32| u8::from(by_byte[usize::from(s as u8)] > s);
        let step = |o: u8, s: u32| o.wrapping_add((o & 0xf).wrapping_add(go(s)));
        let (leaves, _) = self.leaves.as_chunks::<LEAVES>();
        let leaf_value = |leaf: u16| self.values.get(usize::from(leaf)).copied().unwrap_or(0.0);
        let (tree_groups, tree_rest) = self.two_level.as_chunks::<LANES>();
        let (leaf_groups, leaf_rest) = leaves.as_chunks::<LANES>();
        let mut sum = 0.0f64;
        for (t, l) in tree_groups.iter().zip(leaf_groups) {
            let mut o = [1u8; LANES];
            for _ in 0..BLOCK_LEVELS {
                for j in 0..LANES {
                    o[j] = step(o[j], t[j].0[usize::from(o[j] & 0xf)]);
                }
            }
            for x in &mut o {
                *x = (*x << 4) | 1;
            }
            for _ in 0..BLOCK_LEVELS {
                for j in 0..LANES {
                    o[j] = step(o[j], t[j].0[ROOT + usize::from(o[j])]);
                }
            }
            for j in 0..LANES {
                sum += leaf_value(l[j][usize::from(o[j].wrapping_sub(ROOT as u8))]);
            }
        }
        for (t, l) in tree_rest.iter().zip(leaf_rest) {
            let mut o = 1u8;
            for _ in 0..BLOCK_LEVELS {
                o = step(o, t.0[usize::from(o & 0xf)]);
            }
            o = (o << 4) | 1;
            for _ in 0..BLOCK_LEVELS {
                o = step(o, t.0[ROOT + usize::from(o)]);
            }
            sum += leaf_value(l[usize::from(o.wrapping_sub(ROOT as u8))]);
        }
        sum
    }

    /// The walk for any number of block levels.
    fn path_sum_any(&self, ranks: &[u32; MAX_FLAT_FEATURES]) -> f64 {
        let go = |s: u32| usize::from(ranks[(s & 0x3f) as usize] > s);
        let leaves_per_tree = 1usize << (BLOCK_LEVELS * self.levels);
        let bpt = self.blocks_per_tree;
        let trees = self.leaves.len() / leaves_per_tree;
        let mut sum = 0.0f64;
        let mut t0 = 0;
        while t0 + LANES <= trees {
            let mut p = [0usize; LANES];
            for l in 0..self.levels as usize {
                let start = t0 * bpt + self.level_start[l];
                let block: [&[u32; BLOCK_SLOTS]; LANES] =
                    std::array::from_fn(|j| &self.blocks[start + j * bpt + p[j]].0);
                let mut k = [1usize; LANES];
                for _ in 0..BLOCK_LEVELS {
                    for j in 0..LANES {
                        k[j] = 2 * k[j] + go(block[j][k[j] & (BLOCK_SLOTS - 1)]);
                    }
                }
                for j in 0..LANES {
                    p[j] = p[j] * BLOCK_SLOTS + (k[j] - BLOCK_SLOTS);
                }
            }
            for (j, &pj) in p.iter().enumerate() {
                let leaf = self.leaves[(t0 + j) * leaves_per_tree + pj];
                sum += self.values.get(usize::from(leaf)).copied().unwrap_or(0.0);
            }
            t0 += LANES;
        }
        for t in t0..trees {
            let mut p = 0usize;
            for l in 0..self.levels as usize {
                let block = &self.blocks[t * bpt + self.level_start[l] + p].0;
                let mut k = 1usize;
                for _ in 0..BLOCK_LEVELS {
                    k = 2 * k + go(block[k & (BLOCK_SLOTS - 1)]);
                }
                p = p * BLOCK_SLOTS + (k - BLOCK_SLOTS);
            }
            let leaf = self.leaves[t * leaves_per_tree + p];
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
