//! An in-memory [`AuditStore`] for tests of other crates. It follows the same chain and
//! filter semantics as the real stores (the store conformance suite runs against it too).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::chain::{ChainHash, ChainHead, ChainVerifier, Checkpoint, RawRow};
use crate::event::{AuditEvent, EventKind};
use crate::ids::EventId;
use crate::store::{
    Appended, AuditStore, EventFilter, EventPage, HourBucket, Order, PageRequest, RetentionReport,
    StoreError, StoredEvent, VerifyReport, hour_floor, hour_range, validate_cursor_name,
};

#[derive(Debug, Default)]
struct Inner {
    rows: Vec<(StoredEvent, Vec<u8>)>,
    head: Option<ChainHead>,
    checkpoint: Option<Checkpoint>,
    cursors: BTreeMap<String, u64>,
    closed: bool,
}

/// The in-memory audit store.
#[derive(Debug, Default)]
pub struct MemoryAuditStore {
    inner: Mutex<Inner>,
}

impl MemoryAuditStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// All events, oldest first.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.lock()
            .rows
            .iter()
            .map(|(s, _)| s.event.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append_one(inner: &mut Inner, event: AuditEvent) -> Result<Appended, StoreError> {
        if inner.closed {
            return Err(StoreError::Closed);
        }
        let body = event.encode()?;
        if inner.rows.iter().any(|(s, _)| s.event.id == event.id) {
            return Err(StoreError::Duplicate { id: event.id });
        }
        let (seq, prev) = match inner.head {
            Some(h) => (h.seq + 1, h.hash),
            None => (1, ChainHash::GENESIS),
        };
        let hash = prev.next(seq, &body);
        inner.head = Some(ChainHead { seq, hash });
        inner.rows.push((StoredEvent { seq, hash, event }, body));
        Ok(Appended { seq, hash })
    }
}

#[async_trait]
impl AuditStore for MemoryAuditStore {
    async fn append(&self, event: AuditEvent) -> Result<Appended, StoreError> {
        Self::append_one(&mut self.lock(), event)
    }

    async fn append_many(&self, events: Vec<AuditEvent>) -> Vec<Result<Appended, StoreError>> {
        let mut inner = self.lock();
        events
            .into_iter()
            .map(|e| Self::append_one(&mut inner, e))
            .collect()
    }

    async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self
            .lock()
            .rows
            .iter()
            .find(|(s, _)| s.event.id == id)
            .map(|(s, _)| s.clone()))
    }

    async fn query(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<EventPage, StoreError> {
        let inner = self.lock();
        let limit = page.effective_limit() as usize;
        let passes = |s: &&StoredEvent| {
            filter.matches(&s.event)
                && match (page.order, page.cursor) {
                    (_, None) => true,
                    (Order::NewestFirst, Some(c)) => s.seq < c,
                    (Order::OldestFirst, Some(c)) => s.seq > c,
                }
        };
        let rows = inner.rows.iter().map(|(s, _)| s);
        let mut events: Vec<StoredEvent> = match page.order {
            Order::NewestFirst => rows.rev().filter(passes).take(limit + 1).cloned().collect(),
            Order::OldestFirst => rows.filter(passes).take(limit + 1).cloned().collect(),
        };
        let more = events.len() > limit;
        events.truncate(limit);
        let next_cursor = if more {
            events.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    async fn count(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .rows
            .iter()
            .filter(|(s, _)| filter.matches(&s.event))
            .count() as u64)
    }

    async fn hourly_counts(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
        kind: Option<EventKind>,
    ) -> Result<Vec<HourBucket>, StoreError> {
        let hours = hour_range(since, until)?;
        let mut counts: BTreeMap<OffsetDateTime, u64> = BTreeMap::new();
        for (s, _) in &self.lock().rows {
            if kind.is_none_or(|k| s.event.kind == k) {
                *counts.entry(hour_floor(s.event.timestamp)).or_default() += 1;
            }
        }
        Ok(hours
            .into_iter()
            .map(|hour| HourBucket {
                hour,
                count: counts.get(&hour).copied().unwrap_or(0),
            })
            .collect())
    }

    async fn read_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        Ok(self
            .lock()
            .rows
            .iter()
            .filter(|(s, _)| s.seq > after)
            .take(limit)
            .map(|(s, _)| s.clone())
            .collect())
    }

    async fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        validate_cursor_name(name)?;
        Ok(self.lock().cursors.get(name).copied().unwrap_or(0))
    }

    async fn commit_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        validate_cursor_name(name)?;
        let mut inner = self.lock();
        let head = inner.head.map_or(0, |h| h.seq);
        if seq > head {
            return Err(StoreError::InvalidInput {
                field: "cursor",
                problem: format!("seq {seq} is past the head of the log ({head})"),
            });
        }
        inner.cursors.insert(name.to_owned(), seq);
        Ok(())
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let inner = self.lock();
        let start = inner.checkpoint.unwrap_or(Checkpoint::START);
        let raw: Vec<RawRow<'_>> = inner
            .rows
            .iter()
            .map(|(s, b)| RawRow {
                seq: s.seq,
                body: b,
                hash: s.hash,
            })
            .collect();
        let mut v = ChainVerifier::new(start);
        v.feed(&raw);
        let (checked, problem) = v.finish(inner.head);
        Ok(VerifyReport {
            checked,
            start,
            head: inner.head,
            problem,
        })
    }

    async fn apply_retention(&self, before: OffsetDateTime) -> Result<RetentionReport, StoreError> {
        let mut inner = self.lock();
        let n = inner
            .rows
            .iter()
            .take_while(|(s, _)| s.event.timestamp < before)
            .count();
        if n == 0 {
            return Ok(RetentionReport {
                deleted: 0,
                checkpoint: None,
            });
        }
        let last = &inner.rows[n - 1].0;
        let checkpoint = Checkpoint {
            seq: last.seq + 1,
            prev_hash: last.hash,
        };
        inner.rows.drain(..n);
        inner.checkpoint = Some(checkpoint);
        Ok(RetentionReport {
            deleted: n as u64,
            checkpoint: Some(checkpoint),
        })
    }

    async fn head(&self) -> Result<Option<ChainHead>, StoreError> {
        Ok(self.lock().head)
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.lock().closed = true;
        Ok(())
    }
}
