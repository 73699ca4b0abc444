//! Small numeric helpers whose exact floating-point behaviour matters: the average path
//! length of an unsuccessful BST search (sklearn's `_average_path_length`), numpy's default
//! (`linear`) percentile, ROC AUC, and the `f64` → `f32` threshold rounding.

/// Euler–Mascheroni constant, as `np.euler_gamma`.
pub const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Average path length of an unsuccessful search in a binary search tree of `n` nodes,
/// `c(n)`, evaluated exactly as scikit-learn's `_average_path_length` does:
/// `c(n) = 0` for `n <= 1`, `c(2) = 1`, otherwise
/// `2.0 * (ln(n - 1) + γ) - 2.0 * (n - 1) / n` (same operation order, so same rounding).
pub fn average_path_length(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n == 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
    }
}

/// The `q`-th percentile (`q` in `[0, 100]`) of `values`, as `np.percentile(values, q)` with
/// its default `linear` method, including numpy's two-sided interpolation formula.
/// Returns `None` for an empty slice or a `q` outside `[0, 100]`; NaNs are the caller's
/// problem (they sort last).
pub fn percentile_linear(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let quantile = q / 100.0;
    #[allow(clippy::cast_precision_loss)]
    let virtual_index = (n as f64 - 1.0) * quantile;
    let floor = virtual_index.floor();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (lo, hi) = if virtual_index >= (n - 1) as f64 {
        (n - 1, n - 1)
    } else {
        let lo = floor as usize;
        (lo, lo + 1)
    };
    let gamma = virtual_index - floor;
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    Some(if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    })
}

/// Area under the ROC curve of `scores` (higher = more positive) against `labels`
/// (`true` = positive), ties counted as one half (the Mann–Whitney U statistic, equal to
/// sklearn's `roc_auc_score`). `None` when the lengths differ or a class is missing.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let positives = order[i..=j].iter().filter(|&&k| labels[k]).count();
        #[allow(clippy::cast_precision_loss)]
        {
            rank_sum += avg_rank * positives as f64;
        }
        i = j + 1;
    }
    #[allow(clippy::cast_precision_loss)]
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// The largest `f32` not above `t`, so that for every `f32` `x`:
/// `x <= floor_f32(t)` exactly when `(x as f64) <= t`. This is how an `f64` threshold
/// (sklearn stores thresholds as `float64`) becomes an `f32` one without changing a single
/// comparison against `float32` inputs. `t` must be finite.
pub fn floor_f32(t: f64) -> f32 {
    #[allow(clippy::cast_possible_truncation)]
    let r = t as f32;
    if r.is_infinite() {
        // |t| beyond f32::MAX: every finite f32 is below (t > 0) or above (t < 0) it.
        return if t > 0.0 { f32::MAX } else { f32::MIN };
    }
    if f64::from(r) > t { r.next_down() } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn average_path_length_small_values() {
        assert_eq!(average_path_length(0.0), 0.0);
        assert_eq!(average_path_length(1.0), 0.0);
        assert_eq!(average_path_length(2.0), 1.0);
        // c(3) = 2 (ln 2 + γ) - 4/3
        let c3 = 2.0 * (2f64.ln() + EULER_GAMMA) - 4.0 / 3.0;
        assert!((average_path_length(3.0) - c3).abs() < 1e-15);
    }

    #[test]
    fn percentile_matches_definition() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile_linear(&v, 0.0), Some(1.0));
        assert_eq!(percentile_linear(&v, 100.0), Some(4.0));
        assert_eq!(percentile_linear(&v, 50.0), Some(2.5));
        assert!((percentile_linear(&v, 5.0).unwrap() - 1.15).abs() < 1e-12);
        assert_eq!(percentile_linear(&[], 5.0), None);
        assert_eq!(percentile_linear(&v, 101.0), None);
        assert_eq!(percentile_linear(&[7.0], 37.0), Some(7.0));
    }

    #[test]
    fn auc_perfect_inverse_and_ties() {
        let s = [0.1, 0.2, 0.8, 0.9];
        assert_eq!(roc_auc(&s, &[false, false, true, true]), Some(1.0));
        assert_eq!(roc_auc(&s, &[true, true, false, false]), Some(0.0));
        assert_eq!(roc_auc(&[0.5; 4], &[false, true, false, true]), Some(0.5));
        assert_eq!(roc_auc(&s, &[true; 4]), None);
    }

    proptest! {
        #[test]
        fn floor_f32_preserves_every_comparison(t in -1e6f64..1e6, x in -1e6f32..1e6) {
            let f = floor_f32(t);
            prop_assert!(f64::from(f) <= t);
            prop_assert_eq!(x <= f, f64::from(x) <= t);
            prop_assert_eq!(f.next_up() <= f, f64::from(f.next_up()) <= t);
        }

        #[test]
        fn percentile_is_within_range(v in proptest::collection::vec(-1e3f64..1e3, 1..50), q in 0.0f64..=100.0) {
            let p = percentile_linear(&v, q).unwrap();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(p >= lo && p <= hi);
        }
    }
}
