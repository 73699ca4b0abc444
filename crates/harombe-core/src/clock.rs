//! The clock, injected so time windows, retention and expiry are testable.

use std::fmt;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

/// A source of the current time (UTC).
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn set(&self, t: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    pub fn advance(&self, d: time::Duration) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *g += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let t0 = time::macros::datetime!(2026-03-01 12:00 UTC);
        let c = ManualClock::new(t0);
        let shared = c.clone();
        assert_eq!(c.now(), t0);
        shared.advance(time::Duration::minutes(5));
        assert_eq!(c.now(), t0 + time::Duration::minutes(5));
        c.set(t0);
        assert_eq!(shared.now(), t0);
    }
}
