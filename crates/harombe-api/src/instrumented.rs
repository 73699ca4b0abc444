//! [`InstrumentedStore`]: an [`AuditStore`] decorator that measures appends (latency
//! histogram, appends in flight) for `/metrics`. Lock-free: atomics only.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use harombe_core::{
    Appended, AuditEvent, AuditStore, ChainHead, EventFilter, EventId, EventKind, EventPage,
    HourBucket, PageRequest, RetentionReport, StoreError, StoredEvent, VerifyReport,
};
use time::OffsetDateTime;

/// Upper bounds (seconds) of the append latency buckets.
pub const APPEND_BOUNDS_S: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Append measurements, shared between the decorator and the exposition.
#[derive(Debug, Default)]
pub struct StoreTelemetry {
    /// Per-bucket counts; the last is +Inf.
    buckets: [AtomicU64; APPEND_BOUNDS_S.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
    failures: AtomicU64,
    in_flight: AtomicI64,
}

/// A consistent-enough copy of [`StoreTelemetry`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreTelemetrySnapshot {
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
    pub failures: u64,
    pub in_flight: i64,
}

impl StoreTelemetry {
    fn record(&self, seconds: f64, ok: bool) {
        let i = APPEND_BOUNDS_S.partition_point(|&b| b < seconds);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Release);
    }

    pub fn snapshot(&self) -> StoreTelemetrySnapshot {
        let count = self.count.load(Ordering::Acquire);
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        StoreTelemetrySnapshot {
            // Buckets may run ahead of `count` under concurrent appends; keep them equal.
            count: count.max(buckets.iter().sum()),
            buckets,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            failures: self.failures.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// Decrements the in-flight gauge even when the append future is dropped.
struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    fn enter(g: &'a AtomicI64) -> Self {
        g.fetch_add(1, Ordering::Relaxed);
        Self(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Wraps a store and measures every `append` and `append_many` (one observation per call).
#[derive(Debug, Clone)]
pub struct InstrumentedStore {
    inner: Arc<dyn AuditStore>,
    telemetry: Arc<StoreTelemetry>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn AuditStore>) -> Self {
        Self {
            inner,
            telemetry: Arc::new(StoreTelemetry::default()),
        }
    }

    /// The measurements, for [`crate::ApiState::with_store_telemetry`].
    pub fn telemetry(&self) -> Arc<StoreTelemetry> {
        self.telemetry.clone()
    }
}

#[async_trait]
impl AuditStore for InstrumentedStore {
    async fn append(&self, event: AuditEvent) -> Result<Appended, StoreError> {
        let _g = InFlight::enter(&self.telemetry.in_flight);
        let start = Instant::now();
        let r = self.inner.append(event).await;
        self.telemetry
            .record(start.elapsed().as_secs_f64(), r.is_ok());
        r
    }

    async fn append_many(&self, events: Vec<AuditEvent>) -> Vec<Result<Appended, StoreError>> {
        let _g = InFlight::enter(&self.telemetry.in_flight);
        let start = Instant::now();
        let r = self.inner.append_many(events).await;
        self.telemetry
            .record(start.elapsed().as_secs_f64(), r.iter().all(Result::is_ok));
        r
    }

    async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.get(id).await
    }

    async fn query(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<EventPage, StoreError> {
        self.inner.query(filter, page).await
    }

    async fn count(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        self.inner.count(filter).await
    }

    async fn summaries(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<Vec<harombe_core::EventSummary>, StoreError> {
        self.inner.summaries(filter, page).await
    }

    async fn hourly_counts(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
        kind: Option<EventKind>,
    ) -> Result<Vec<HourBucket>, StoreError> {
        self.inner.hourly_counts(since, until, kind).await
    }

    async fn read_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.read_after(after, limit).await
    }

    async fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        self.inner.cursor(name).await
    }

    async fn commit_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        self.inner.commit_cursor(name, seq).await
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.inner.verify().await
    }

    async fn apply_retention(&self, before: OffsetDateTime) -> Result<RetentionReport, StoreError> {
        self.inner.apply_retention(before).await
    }

    async fn head(&self) -> Result<Option<ChainHead>, StoreError> {
        self.inner.head().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harombe_core::Outcome;
    use harombe_core::fake::MemoryAuditStore;

    #[tokio::test]
    async fn appends_are_measured_and_delegated() {
        let inner: Arc<dyn AuditStore> = Arc::new(MemoryAuditStore::new());
        let s = InstrumentedStore::new(inner.clone());
        let t = s.telemetry();
        let now = OffsetDateTime::now_utc();
        s.append(AuditEvent::new(now, EventKind::Alert, Outcome::Success))
            .await
            .unwrap();
        let r = s
            .append_many(vec![
                AuditEvent::new(now, EventKind::Alert, Outcome::Success),
                AuditEvent::new(now, EventKind::Alert, Outcome::Success),
            ])
            .await;
        assert!(r.iter().all(Result::is_ok));
        let snap = t.snapshot();
        assert_eq!(snap.count, 2);
        assert_eq!(snap.buckets.iter().sum::<u64>(), 2);
        assert_eq!(snap.in_flight, 0);
        assert_eq!(snap.failures, 0);
        assert_eq!(inner.head().await.unwrap().unwrap().seq, 3);
    }
}
