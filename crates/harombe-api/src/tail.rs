//! [`LogTail`]: reads the audit log behind a cursor and feeds the metrics, the live
//! WebSocket stream and any extra observers (risk and trust caches).
//!
//! Reading the log, rather than being told about events by the writer, is what makes the
//! aggregates right after a restart (the last 48 hours are folded again on start) and the
//! same on every replica that shares one PostgreSQL database.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use harombe_core::{EventFilter, PageRequest, StoreError, StoredEvent};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ApiState;
use crate::live::{self, LiveMessage};

/// Events read per `read_after` call.
pub const PAGE: u32 = 1_000;
/// How long after start the tail looks back (the metrics keep 48 hours).
pub const LOOKBACK: time::Duration = time::Duration::hours(48);

/// Something told about every event the tail reads, in log order. Called on the tail's
/// task: keep it quick and never block.
pub trait EventObserver: Send + Sync {
    fn observe(&self, event: &StoredEvent);
}

impl<F: Fn(&StoredEvent) + Send + Sync> EventObserver for F {
    fn observe(&self, event: &StoredEvent) {
        self(event);
    }
}

/// Tails the audit log. Build it with [`LogTail::new`], add observers, then
/// [`LogTail::spawn`].
pub struct LogTail {
    state: ApiState,
    observers: Vec<Arc<dyn EventObserver>>,
    notify: Arc<Notify>,
    poll: Duration,
    last_seq: u64,
}

impl fmt::Debug for LogTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogTail")
            .field("observers", &self.observers.len())
            .field("poll", &self.poll)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl LogTail {
    pub fn new(state: &ApiState) -> Self {
        Self {
            state: state.clone(),
            observers: Vec::new(),
            notify: Arc::new(Notify::new()),
            poll: Duration::from_millis(250),
            last_seq: 0,
        }
    }

    /// Adds an observer (also fed the events folded on start).
    pub fn with_observer(mut self, o: Arc<dyn EventObserver>) -> Self {
        self.observers.push(o);
        self
    }

    /// How often the log is polled when nobody notifies (default 250 ms).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Call `notify_one()` on this after an append to have the tail read at once.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// The seq of the last event folded.
    pub fn position(&self) -> u64 {
        self.last_seq
    }

    /// Folds the events of the last 48 hours (as of the state's clock); returns how many.
    /// Observers see them; live clients do not.
    pub async fn catch_up(&mut self) -> Result<u64, StoreError> {
        let since = self.state.clock.now() - LOOKBACK;
        let filter = EventFilter {
            since: Some(since),
            ..EventFilter::default()
        };
        // The head is read before the query: an event appended in between is then after
        // the starting point either way, never skipped.
        let head = self.state.store.head().await?.map_or(0, |h| h.seq);
        let first = self
            .state
            .store
            .query(&filter, PageRequest::oldest(1))
            .await?;
        self.last_seq = match first.events.first() {
            Some(e) => e.seq.saturating_sub(1),
            None => head,
        };
        let mut n = 0;
        loop {
            let got = self.read_some(false).await?;
            n += got;
            if got < u64::from(PAGE) {
                return Ok(n);
            }
        }
    }

    /// Reads and folds one page after the cursor; returns how many events it held.
    async fn read_some(&mut self, live: bool) -> Result<u64, StoreError> {
        let batch = self.state.store.read_after(self.last_seq, PAGE).await?;
        let n = batch.len() as u64;
        for e in batch {
            self.last_seq = self.last_seq.max(e.seq);
            self.state.metrics.observe(&e);
            for o in &self.observers {
                o.observe(&e);
            }
            if live && self.state.live.receiver_count() > 0 {
                let _ = self.state.live.send(LiveMessage::event(Arc::new(e)));
            }
        }
        Ok(n)
    }

    /// Reads everything after the cursor.
    pub async fn poll_once(&mut self) -> Result<u64, StoreError> {
        let mut n = 0;
        loop {
            let got = self.read_some(true).await?;
            n += got;
            if got < u64::from(PAGE) {
                return Ok(n);
            }
        }
    }

    /// Catches up, then follows the log until `cancel` fires. Store errors are logged and
    /// retried on the next poll; no event is skipped.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            match self.catch_up().await {
                Ok(n) => {
                    tracing::debug!(events = n, seq = self.last_seq, "log tail caught up");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "log tail could not read the audit log; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(self.poll.max(Duration::from_secs(1))) => {}
                    }
                }
            }
        }
        let notify = self.notify.clone();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = notify.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
            if let Err(e) = self.poll_once().await {
                tracing::warn!(error = %e, seq = self.last_seq, "log tail read failed; retrying");
            }
        }
    }

    /// Spawns the tail and the live snapshot publisher (see [`live::run_publisher`]).
    pub fn spawn(self, cancel: CancellationToken) -> JoinHandle<()> {
        let state = self.state.clone();
        let publisher = tokio::spawn(live::run_publisher(state, cancel.clone()));
        tokio::spawn(async move {
            self.run(cancel).await;
            let _ = publisher.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harombe_core::fake::MemoryAuditStore;
    use harombe_core::{
        AgentId, AuditEvent, AuditStore, Clock, EventKind, ManualClock, Outcome, ThreatLevel,
        Verdict,
    };
    use std::sync::atomic::{AtomicU64, Ordering};
    use time::macros::datetime;

    use crate::auth::Tokens;
    use crate::metrics::Metrics;

    fn event(i: u64, at: time::OffsetDateTime) -> AuditEvent {
        let kinds = EventKind::ALL;
        let outcomes = Outcome::ALL;
        let mut e = AuditEvent::new(at, kinds[(i % 12) as usize], outcomes[(i % 4) as usize])
            .with_agent(AgentId::new(format!("agent-{}", i % 7)).unwrap());
        if e.kind == EventKind::ToolCall {
            e.duration_us = Some(100 + (i * 37) % 50_000);
            e.verdict = Some(Verdict::allow());
            e.scores.insert("anomalous".into(), (i % 2) as f64);
        }
        e.threat_level = ThreatLevel::from_rank((i % 5) as u8);
        if i.is_multiple_of(11) {
            e.details = Some(serde_json::json!({"findings": [
                {"rule": "aws-key", "tags": ["secret"]}
            ]}));
        }
        e
    }

    /// Aggregates rebuilt from the log on start equal those built incrementally, event by
    /// event, as they were written.
    #[tokio::test]
    async fn rebuilt_aggregates_equal_incremental_ones() {
        let now = datetime!(2026-05-03 12:00 UTC);
        let clock = ManualClock::new(now);
        let store: Arc<dyn AuditStore> = Arc::new(MemoryAuditStore::new());
        let incremental = Metrics::new();
        // 60 hours of events, one every 7 minutes: the first 12 hours are outside the
        // 48 hours the tail folds.
        let mut at = now - time::Duration::hours(60);
        let mut i = 0;
        while at < now {
            let a = store.append(event(i, at)).await.unwrap();
            if at >= now - LOOKBACK {
                let stored = StoredEvent {
                    seq: a.seq,
                    hash: a.hash,
                    event: store.read_after(a.seq - 1, 1).await.unwrap()[0]
                        .event
                        .clone(),
                };
                incremental.observe(&stored);
            }
            at += time::Duration::minutes(7);
            i += 1;
        }
        let state = ApiState::new(
            store.clone(),
            Arc::new(crate::testing::NoApprovals),
            Tokens::new(),
            Arc::new(clock.clone()),
        );
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        let mut tail = LogTail::new(&state).with_observer(Arc::new(move |_: &StoredEvent| {
            s2.fetch_add(1, Ordering::Relaxed);
        }));
        let folded = tail.catch_up().await.unwrap();
        assert_eq!(folded, incremental.version());
        assert_eq!(seen.load(Ordering::Relaxed), folded);
        assert_eq!(tail.position(), store.head().await.unwrap().unwrap().seq);
        for t in [
            now,
            now - time::Duration::hours(5),
            now + time::Duration::hours(30),
        ] {
            assert_eq!(state.metrics.snapshot(t), incremental.snapshot(t));
            assert_eq!(state.metrics.trend(t, 48), incremental.trend(t, 48));
        }
        assert_eq!(state.metrics.totals(), incremental.totals());
        assert!(state.metrics.snapshot(now).events_last_24h > 100);

        // New events are picked up by the next poll.
        clock.advance(time::Duration::minutes(1));
        store
            .append(AuditEvent::new(
                clock.now(),
                EventKind::Auth,
                Outcome::Denied,
            ))
            .await
            .unwrap();
        assert_eq!(tail.poll_once().await.unwrap(), 1);
        assert_eq!(
            state.metrics.snapshot(clock.now()).auth_failures_1h,
            incremental.snapshot(clock.now()).auth_failures_1h + 1
        );
    }

    #[tokio::test]
    async fn an_empty_or_old_log_starts_at_the_head() {
        let now = datetime!(2026-05-03 12:00 UTC);
        let store: Arc<dyn AuditStore> = Arc::new(MemoryAuditStore::new());
        let state = ApiState::new(
            store.clone(),
            Arc::new(crate::testing::NoApprovals),
            Tokens::new(),
            Arc::new(ManualClock::new(now)),
        );
        let mut tail = LogTail::new(&state);
        assert_eq!(tail.catch_up().await.unwrap(), 0);
        assert_eq!(tail.position(), 0);
        store
            .append(event(1, now - time::Duration::hours(100)))
            .await
            .unwrap();
        let mut tail = LogTail::new(&state);
        assert_eq!(tail.catch_up().await.unwrap(), 0);
        assert_eq!(tail.position(), 1);
    }
}
