//! Per-provider protection: TTL cache of successful answers, token-bucket quota and a
//! circuit breaker, all on the injected clock. Each is a small mutex-guarded struct that
//! is never held across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A cache of successful lookups (`indicator → score`) with a fixed TTL. Failures are
/// never inserted, so a failure is never remembered as clean.
#[derive(Debug)]
pub struct TtlCache {
    ttl: Duration,
    max_entries: usize,
    map: Mutex<HashMap<String, (Option<f64>, OffsetDateTime)>>,
}

impl TtlCache {
    /// A cache keeping answers for `ttl`, at most `max_entries` (expired ones are evicted
    /// first; when still full, the insert is skipped).
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The cached answer, if fresh. The inner `Option` is the provider's score (None: the
    /// provider answered "no data").
    pub fn get(&self, key: &str, now: OffsetDateTime) -> Option<Option<f64>> {
        let m = lock(&self.map);
        m.get(key).filter(|(_, exp)| *exp > now).map(|(s, _)| *s)
    }

    /// Stores a successful answer.
    pub fn put(&self, key: String, score: Option<f64>, now: OffsetDateTime) {
        let mut m = lock(&self.map);
        if m.len() >= self.max_entries {
            m.retain(|_, (_, exp)| *exp > now);
            if m.len() >= self.max_entries {
                return;
            }
        }
        m.insert(key, (score, now + self.ttl));
    }
}

/// A token bucket: `capacity` tokens, refilled continuously at `per_second`.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    state: Mutex<(f64, Option<OffsetDateTime>)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: u32, per_second: f64) -> Self {
        Self {
            capacity: f64::from(capacity),
            per_second: per_second.max(0.0),
            state: Mutex::new((f64::from(capacity), None)),
        }
    }

    /// Takes one token if available.
    pub fn try_take(&self, now: OffsetDateTime) -> bool {
        let mut s = lock(&self.state);
        if let Some(last) = s.1 {
            let dt = (now - last).as_seconds_f64().max(0.0);
            s.0 = (s.0 + dt * self.per_second).min(self.capacity);
        }
        s.1 = Some(now);
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: OffsetDateTime },
    HalfOpen,
}

/// A circuit breaker: after `threshold` consecutive failures it opens for `cooldown`
/// (or the provider's `Retry-After`, when longer); then one trial call is let through
/// (half-open): success closes it, failure opens it again.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    /// Whether a call may go out now.
    pub fn allow(&self, now: OffsetDateTime) -> bool {
        let mut s = lock(&self.state);
        match *s {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                *s = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => false,
        }
    }

    /// Records a success.
    pub fn success(&self) {
        *lock(&self.state) = BreakerState::Closed { failures: 0 };
    }

    /// Records a failure; `open_for` forces the breaker open at least that long (429).
    pub fn failure(&self, now: OffsetDateTime, open_for: Option<Duration>) {
        let mut s = lock(&self.state);
        let open = |d: Duration| BreakerState::Open { until: now + d };
        *s = match (*s, open_for) {
            (_, Some(d)) => open(d.max(self.cooldown)),
            (BreakerState::HalfOpen, None) => open(self.cooldown),
            (BreakerState::Closed { failures }, None) if failures + 1 >= self.threshold => {
                open(self.cooldown)
            }
            (BreakerState::Closed { failures }, None) => BreakerState::Closed {
                failures: failures + 1,
            },
            (o @ BreakerState::Open { .. }, None) => o,
        };
    }

    /// Whether the breaker currently refuses calls.
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        matches!(*lock(&self.state), BreakerState::Open { until } if now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn bucket_breaker_cache() {
        let t = datetime!(2025-01-01 00:00 UTC);
        let b = TokenBucket::new(2, 1.0);
        assert!(b.try_take(t) && b.try_take(t));
        assert!(!b.try_take(t));
        assert!(b.try_take(t + time::Duration::seconds(1)));

        let cb = CircuitBreaker::new(2, Duration::from_secs(60));
        cb.failure(t, None);
        assert!(cb.allow(t));
        cb.failure(t, None);
        assert!(!cb.allow(t));
        assert!(cb.allow(t + time::Duration::seconds(61)));
        assert!(!cb.allow(t + time::Duration::seconds(61)), "one trial only");
        cb.success();
        assert!(cb.allow(t + time::Duration::seconds(62)));
        cb.failure(t, Some(Duration::from_secs(600)));
        assert!(cb.is_open(t + time::Duration::seconds(300)));

        let c = TtlCache::new(Duration::from_secs(3600), 10);
        c.put("k".into(), Some(0.5), t);
        assert_eq!(c.get("k", t + time::Duration::minutes(59)), Some(Some(0.5)));
        assert_eq!(c.get("k", t + time::Duration::minutes(61)), None);
    }
}
