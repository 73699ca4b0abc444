//! Long runs of bytes from one range, found 64 bytes at a time: one bitmask per range and
//! block from 16-byte vector compares (`wide`, SSE2 on x86-64), then bit arithmetic on the
//! masks. The guards in front of the keyword-less PII rules and the base64 run finder use
//! them to skip text that cannot hold what they look for (in prose, a lowercase letter or
//! a space every few bytes breaks every run long enough to matter).

use wide::u8x16;

/// Calls `f(start, end)` for each maximal run of a buffer, at least `MIN` bytes long (1
/// to 64), whose bytes all lie in `LO..=HI`, in order, as soon as the scan has passed its
/// end (so its bytes are still in cache when `f` reads them). The buffer is fed in
/// consecutive stretches ([`Self::feed`], then [`Self::finish`]), so that several passes
/// can each look at a stretch while it is in cache; where the stretches end does not
/// change the runs.
///
/// Per 64-byte block, one bitmask of the bytes in the range; with the next block's mask
/// above it, `starts` has bit `j` set when bytes `j .. j + MIN` are all in the range. The
/// union of those windows is exactly the runs of `MIN` or more, and in prose `starts` is
/// zero for nearly every block, so the loop does the same few word operations per block
/// without a branch that depends on the text.
pub(crate) struct LongRuns<const MIN: usize, const LO: u8, const HI: u8> {
    /// The run being built: later windows may still extend it.
    pending: Option<(usize, usize)>,
}

impl<const MIN: usize, const LO: u8, const HI: u8> LongRuns<MIN, LO, HI> {
    pub(crate) fn new() -> Self {
        const { assert!(MIN >= 1 && MIN <= 64) };
        Self { pending: None }
    }

    /// Looks at the windows starting in `buf[from..to]`, reporting the runs the scan has
    /// passed. `from` is where the previous stretch ended (0 at first), a multiple of 64,
    /// and so is `to` unless it is `buf.len()`.
    pub(crate) fn feed(
        &mut self,
        buf: &[u8],
        from: usize,
        to: usize,
        mut f: impl FnMut(usize, usize),
    ) {
        debug_assert!(from.is_multiple_of(64) && (to.is_multiple_of(64) || to == buf.len()));
        let mut next = block_mask::<LO, HI>(buf, from);
        for k in from / 64..to.div_ceil(64) {
            let here = next;
            next = block_mask::<LO, HI>(buf, (k + 1) * 64);
            let both = u128::from(here) | u128::from(next) << 64;
            #[allow(clippy::cast_possible_truncation)]
            let mut starts = all_ones_from::<MIN>(both) as u64;
            while starts != 0 {
                let j = starts.trailing_zeros() as usize;
                let len = (!(starts >> j)).trailing_zeros() as usize;
                let (from, to) = (64 * k + j, 64 * k + j + len - 1 + MIN);
                self.pending = match self.pending {
                    Some((s, e)) if e >= from => Some((s, e.max(to))),
                    Some((s, e)) => {
                        f(s, e);
                        Some((from, to))
                    }
                    None => Some((from, to)),
                };
                starts &= u64::MAX.checked_shl((j + len) as u32).unwrap_or(0);
            }
            // No window starting in a later block reaches back before `64 * (k + 1)`.
            if let Some((s, e)) = self.pending
                && e < 64 * (k + 1)
            {
                f(s, e);
                self.pending = None;
            }
        }
    }

    /// Reports the last run, once every stretch is fed.
    pub(crate) fn finish(self, mut f: impl FnMut(usize, usize)) {
        if let Some((s, e)) = self.pending {
            f(s, e);
        }
    }
}

/// Bit `j` set when `buf[at + j]` lies in `LO..=HI` (zero past the end).
#[inline]
fn block_mask<const LO: u8, const HI: u8>(buf: &[u8], at: usize) -> u64 {
    match buf.get(at..).and_then(<[u8]>::first_chunk) {
        Some(block) => full_mask::<LO, HI>(block),
        None => tail_mask::<LO, HI>(buf, at),
    }
}

/// [`block_mask`] of a whole block: four 16-byte compares (`max`/`min` clamp the byte,
/// equal when it was inside).
#[inline]
fn full_mask<const LO: u8, const HI: u8>(block: &[u8; 64]) -> u64 {
    let (lo, hi) = (u8x16::splat(LO), u8x16::splat(HI));
    let mut mask = 0u64;
    for k in 0..4 {
        let v = u8x16::new(*block[16 * k..].first_chunk().expect("16 bytes"));
        // `move_mask` puts one bit per lane in the low 16 bits.
        #[allow(clippy::cast_sign_loss)]
        let bits = v.max(lo).min(hi).cmp_eq(v).move_mask() as u16;
        mask |= u64::from(bits) << (16 * k);
    }
    mask
}

/// [`block_mask`] of the last, short block (or past the end), out of the main loop.
#[cold]
#[inline(never)]
fn tail_mask<const LO: u8, const HI: u8>(buf: &[u8], at: usize) -> u64 {
    let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) else {
        return 0;
    };
    let mut padded = [0u8; 64];
    padded[..rest.len()].copy_from_slice(rest);
    full_mask::<LO, HI>(&padded) & ((1 << rest.len()) - 1)
}

/// Bit `j` set when bits `j .. j + N` of `m` are all set. By doubling: with `r` holding
/// the starts of `have` set bits, `r & r >> have` holds the starts of `2 * have`, and for
/// `N - have <= have`, `r & r >> (N - have)` those of `N`.
#[inline]
fn all_ones_from<const N: usize>(m: u128) -> u128 {
    let (mut r, mut have) = (m, 1);
    while have * 2 <= N {
        r &= r >> have;
        have *= 2;
    }
    if have < N {
        r &= r >> (N - have);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The runs of `buf` fed in one stretch.
    fn collect<const MIN: usize, const LO: u8, const HI: u8>(buf: &[u8]) -> Vec<(usize, usize)> {
        let (mut runs, mut out) = (LongRuns::<MIN, LO, HI>::new(), Vec::new());
        runs.feed(buf, 0, buf.len(), |s, e| out.push((s, e)));
        runs.finish(|s, e| out.push((s, e)));
        out
    }

    fn walk(buf: &[u8], lo: u8, hi: u8, min: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < buf.len() {
            let s = i;
            while i < buf.len() && (lo..=hi).contains(&buf[i]) {
                i += 1;
            }
            if i - s >= min {
                out.push((s, i));
            }
            i = i.max(s + 1);
        }
        out
    }

    #[test]
    fn runs_across_blocks_and_at_both_ends() {
        let mut buf = vec![b'7'; 200];
        for at in [0, 63, 64, 127, 130, 199] {
            buf[at] = b'x';
        }
        let runs = collect::<5, b'0', b'9'>(&buf);
        assert_eq!(runs, walk(&buf, b'0', b'9', 5));
        assert_eq!(runs, [(1, 63), (65, 127), (131, 199)]);
        assert_eq!(collect::<5, b'0', b'9'>(&[b'1'; 64]), [(0, 64)]);
        assert_eq!(collect::<64, b'0', b'9'>(&[b'1'; 300]), [(0, 300)]);
        assert!(collect::<5, b'0', b'9'>(b"").is_empty());
    }

    /// The runs equal a walk over every byte, for runs of any length and at any
    /// alignment.
    fn equals_walk<const MIN: usize>(picks: &[usize]) -> Result<(), TestCaseError> {
        let bytes: Vec<u8> = picks
            .iter()
            .map(|&i| [b'0', b'9', b'A', b'Z', b' ', b'a', 0x80, 0x00][i])
            .collect();
        prop_assert_eq!(
            collect::<MIN, b'0', b'9'>(&bytes),
            walk(&bytes, b'0', b'9', MIN)
        );
        prop_assert_eq!(collect::<MIN, 0, b'Z'>(&bytes), walk(&bytes, 0, b'Z', MIN));
        Ok(())
    }

    /// The runs of `buf` fed to [`LongRuns`] in stretches ending at `cuts` (in blocks of
    /// 64 bytes), in order.
    fn fed_in_stretches<const MIN: usize>(buf: &[u8], cuts: &[usize]) -> Vec<(usize, usize)> {
        let mut ends: Vec<usize> = cuts.iter().map(|c| (c * 64).min(buf.len())).collect();
        ends.push(buf.len());
        ends.sort_unstable();
        ends.dedup();
        let (mut runs, mut out, mut from) = (LongRuns::<MIN, b'0', b'9'>::new(), Vec::new(), 0);
        for to in ends {
            runs.feed(buf, from, to, |s, e| out.push((s, e)));
            from = to;
        }
        runs.finish(|s, e| out.push((s, e)));
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn long_runs_equal_a_walk(picks in prop::collection::vec(0usize..8, 0..400)) {
            equals_walk::<1>(&picks)?;
            equals_walk::<3>(&picks)?;
            equals_walk::<12>(&picks)?;
            equals_walk::<15>(&picks)?;
            equals_walk::<64>(&picks)?;
        }

        #[test]
        fn runs_fed_in_stretches_equal_one_pass(
            picks in prop::collection::vec(0usize..16, 0..700),
            cuts in prop::collection::vec(0usize..12, 0..6),
        ) {
            // One byte in 16 breaks a run, so runs of every length up to 64 and more occur.
            let bytes: Vec<u8> = picks.iter().map(|&i| if i == 0 { b'x' } else { b'5' }).collect();
            prop_assert_eq!(fed_in_stretches::<3>(&bytes, &cuts), walk(&bytes, b'0', b'9', 3));
            prop_assert_eq!(fed_in_stretches::<15>(&bytes, &cuts), walk(&bytes, b'0', b'9', 15));
            prop_assert_eq!(fed_in_stretches::<64>(&bytes, &cuts), walk(&bytes, b'0', b'9', 64));
        }

        #[test]
        fn all_ones_from_is_the_and_of_shifts(lo in any::<u64>(), hi in any::<u64>()) {
            let m = u128::from(lo) | u128::from(hi) << 64;
            let and = |n: u32| (0..n).fold(u128::MAX, |acc, s| acc & (m >> s));
            prop_assert_eq!(all_ones_from::<1>(m), and(1));
            prop_assert_eq!(all_ones_from::<12>(m), and(12));
            prop_assert_eq!(all_ones_from::<15>(m), and(15));
            prop_assert_eq!(all_ones_from::<22>(m), and(22));
            prop_assert_eq!(all_ones_from::<64>(m), and(64));
        }
    }
}
