//! Bounds for the risk and trust caches. The audit log is the source of truth, so an
//! evicted entry costs one reload the next time it is needed, never a wrong answer.
//! Tool names come from callers: without a bound, calls to ever new names would grow the
//! caches without limit.

use std::collections::HashMap;
use std::hash::Hash;

use time::OffsetDateTime;

/// Default most entries per cache.
pub const DEFAULT_MAX_ENTRIES: usize = 50_000;

/// Makes room for one more entry in a full `map`: drops the least recently touched
/// tenth (at least one), so that a stream of new keys costs O(log n) per insert amortized.
pub fn make_room<K: Eq + Hash + Clone, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    touched: impl Fn(&V) -> OffsetDateTime,
) {
    if map.len() < max.max(1) {
        return;
    }
    let drop_n = (map.len() / 10).max(1);
    let mut by_age: Vec<(OffsetDateTime, K)> =
        map.iter().map(|(k, v)| (touched(v), k.clone())).collect();
    by_age.select_nth_unstable_by_key(drop_n - 1, |(t, _)| *t);
    for (_, k) in by_age.into_iter().take(drop_n) {
        map.remove(&k);
    }
}

/// Drops the entries not touched since `before`; returns how many.
pub fn evict_untouched<K: Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    before: OffsetDateTime,
    touched: impl Fn(&V) -> OffsetDateTime,
) -> usize {
    let n = map.len();
    map.retain(|_, v| touched(v) >= before);
    n - map.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn the_oldest_tenth_makes_room_and_idle_entries_go() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut m: HashMap<u32, OffsetDateTime> = (0..100)
            .map(|i| (i, t0 + Duration::seconds(i64::from(i))))
            .collect();
        make_room(&mut m, 200, |t| *t);
        assert_eq!(m.len(), 100, "not full: untouched");
        make_room(&mut m, 100, |t| *t);
        assert_eq!(m.len(), 90);
        assert!((0..10).all(|i| !m.contains_key(&i)), "the oldest went");
        assert!((10..100).all(|i| m.contains_key(&i)));
        let gone = evict_untouched(&mut m, t0 + Duration::seconds(50), |t| *t);
        assert_eq!(gone, 40);
        assert_eq!(m.len(), 50);
    }
}
