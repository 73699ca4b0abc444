//! A sliding window over the last N events of one key (a tool or an agent) with running
//! counts of per-event flags, so adding an event and reading a rate are O(1).
//!
//! Events carry their id, so an event delivered twice (once by a store load, once by the
//! log tail) is counted once.

use std::collections::{HashSet, VecDeque};

use harombe_core::EventId;

/// Number of distinct flag bits a window counts.
pub(crate) const FLAG_BITS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: EventId,
    /// Microseconds since the Unix epoch.
    pub at: i64,
    pub flags: u8,
}

#[derive(Clone, Debug)]
pub(crate) struct Window {
    cap: usize,
    entries: VecDeque<Entry>,
    ids: HashSet<EventId>,
    counts: [u32; FLAG_BITS],
}

impl Window {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            cap,
            entries: VecDeque::with_capacity(cap.min(4096)),
            ids: HashSet::with_capacity(cap.min(4096)),
            counts: [0; FLAG_BITS],
        }
    }

    /// Appends `e` as the newest entry, evicting the oldest when full. Returns `false` (and
    /// changes nothing) when an entry with the same id is already in the window.
    pub fn push(&mut self, e: Entry) -> bool {
        if !self.ids.insert(e.id) {
            return false;
        }
        if self.entries.len() == self.cap
            && let Some(old) = self.entries.pop_front()
        {
            self.ids.remove(&old.id);
            self.add(old.flags, false);
        }
        self.add(e.flags, true);
        self.entries.push_back(e);
        true
    }

    fn add(&mut self, flags: u8, up: bool) {
        for (bit, c) in self.counts.iter_mut().enumerate() {
            if flags & (1 << bit) != 0 {
                *c = if up { *c + 1 } else { c.saturating_sub(1) };
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn count(&self, flag: u8) -> u32 {
        self.counts[flag.trailing_zeros() as usize]
    }

    pub fn contains(&self, id: &EventId) -> bool {
        self.ids.contains(id)
    }

    pub fn newest_at(&self) -> Option<i64> {
        self.entries.iter().map(|e| e.at).max()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The window a store load produced (`loaded`, oldest first), merged with what `self`
    /// saw that the load cannot have: entries not in `loaded` that are at least as new
    /// as its newest event (observed while the query ran).
    pub fn merged(mut loaded: Window, previous: Option<&Window>) -> Window {
        if let Some(prev) = previous {
            let newest = loaded.newest_at();
            for e in prev.entries() {
                if !loaded.contains(&e.id) && newest.is_none_or(|n| e.at >= n) {
                    loaded.push(*e);
                }
            }
        }
        loaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: i64, flags: u8) -> Entry {
        let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + i).unwrap();
        Entry {
            id: EventId::at(at),
            at: i,
            flags,
        }
    }

    #[test]
    fn counts_follow_the_window() {
        let mut w = Window::new(3);
        for (i, f) in [(0, 1), (1, 1), (2, 2), (3, 0)] {
            assert!(w.push(entry(i, f)));
        }
        // The first entry (flag 1) fell out.
        assert_eq!(w.len(), 3);
        assert_eq!(w.count(1), 1);
        assert_eq!(w.count(2), 1);
        w.push(entry(4, 0));
        w.push(entry(5, 0));
        assert_eq!((w.count(1), w.count(2)), (0, 0));
    }

    #[test]
    fn duplicates_count_once() {
        let mut w = Window::new(10);
        let e = entry(1, 3);
        assert!(w.push(e));
        assert!(!w.push(e));
        assert_eq!((w.len(), w.count(1), w.count(2)), (1, 1, 1));
    }

    #[test]
    fn merge_keeps_events_observed_during_a_load() {
        let both = entry(2, 0);
        let mut loaded = Window::new(10);
        loaded.push(entry(1, 0));
        loaded.push(both);
        let mut prev = Window::new(10);
        prev.push(entry(0, 1)); // old: already outside what the load returned
        prev.push(both); // in both
        let late = entry(3, 2);
        prev.push(late); // arrived after the query
        let m = Window::merged(loaded, Some(&prev));
        assert_eq!(m.len(), 3);
        assert_eq!((m.count(1), m.count(2)), (0, 1));
        assert!(m.contains(&late.id));
    }
}
