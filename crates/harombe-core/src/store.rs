//! The audit store port: what every backend (SQLite, PostgreSQL, the in-memory fake) offers.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::chain::{ChainHash, ChainHead, ChainProblem, Checkpoint};
use crate::event::{AuditEvent, EventKind, InvalidEvent, Outcome};
use crate::ids::{AgentId, EventId, SessionId};
use crate::verdict::{Decision, ThreatLevel};

/// An event as stored: its position in the chain and its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: u64,
    pub hash: ChainHash,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// What an append returns once the event is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: ChainHash,
}

/// Filters for queries and counts. Every field narrows; `None` means any.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    pub agent: Option<AgentId>,
    pub session: Option<SessionId>,
    pub kind: Option<EventKind>,
    /// Tool, resource, host or secret (the event's `target`), matched exactly.
    pub target: Option<String>,
    pub outcome: Option<Outcome>,
    pub decision: Option<Decision>,
    /// Events at this threat level or above.
    pub min_threat: Option<ThreatLevel>,
    /// Inclusive lower bound.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// Exclusive upper bound.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
}

impl EventFilter {
    /// Whether `e` passes the filter (the reference semantics every backend must match).
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.agent
            .as_ref()
            .is_none_or(|a| e.agent.as_ref() == Some(a))
            && self
                .session
                .as_ref()
                .is_none_or(|s| e.session.as_ref() == Some(s))
            && self.kind.is_none_or(|k| e.kind == k)
            && self
                .target
                .as_ref()
                .is_none_or(|t| e.target.as_ref() == Some(t))
            && self.outcome.is_none_or(|o| e.outcome == o)
            && self
                .decision
                .is_none_or(|d| e.verdict.as_ref().map(|v| v.decision) == Some(d))
            && self
                .min_threat
                .is_none_or(|m| e.threat_level.is_some_and(|l| l >= m))
            && self.since.is_none_or(|s| e.timestamp >= s)
            && self.until.is_none_or(|u| e.timestamp < u)
    }
}

/// Direction of a page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// Keyset pagination: `cursor` is the `seq` of the last event of the previous page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<u64>,
    pub order: Order,
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 10_000;

    pub fn newest(limit: u32) -> Self {
        Self {
            limit,
            cursor: None,
            order: Order::NewestFirst,
        }
    }

    pub fn oldest(limit: u32) -> Self {
        Self {
            limit,
            cursor: None,
            order: Order::OldestFirst,
        }
    }

    /// The limit clamped to `1..=MAX_LIMIT`.
    pub fn effective_limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::newest(100)
    }
}

/// A page of events and the cursor of the next page (`None` on the last page).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next_cursor: Option<u64>,
}

/// The indexed columns of one stored event, without its body: what counting readers
/// (trust, risk) need, at a fraction of the cost of decoding whole events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSummary {
    pub seq: u64,
    pub id: EventId,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub kind: EventKind,
    pub outcome: Outcome,
    pub agent: Option<AgentId>,
    pub target: Option<String>,
    pub threat_level: Option<ThreatLevel>,
}

impl EventSummary {
    /// The summary of a stored event.
    pub fn of(s: &StoredEvent) -> Self {
        Self {
            seq: s.seq,
            id: s.event.id,
            timestamp: s.event.timestamp,
            kind: s.event.kind,
            outcome: s.event.outcome,
            agent: s.event.agent.clone(),
            target: s.event.target.clone(),
            threat_level: s.event.threat_level,
        }
    }
}

/// The number of events in one hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourBucket {
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    pub count: u64,
}

/// The result of walking the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Events whose hash was recomputed and matched.
    pub checked: u64,
    /// Where the walk started (the latest retention checkpoint, or seq 1).
    pub start: Checkpoint,
    pub head: Option<ChainHead>,
    /// The first problem, or `None` when the log is intact.
    pub problem: Option<ChainProblem>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// What retention removed, and the checkpoint the rest now verifies from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReport {
    pub deleted: u64,
    pub checkpoint: Option<Checkpoint>,
}

/// Which backend an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Memory,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
            Backend::Memory => "memory",
        })
    }
}

/// Errors of an audit store.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    InvalidEvent(#[from] InvalidEvent),
    #[error("invalid {field}: {problem}")]
    InvalidInput {
        field: &'static str,
        problem: String,
    },
    #[error("the audit queue is full ({capacity} events waiting); the event was refused")]
    QueueFull { capacity: usize },
    #[error("the audit store is shut down")]
    Closed,
    #[error("{path} is not a usable harombe audit database: {problem}")]
    NotAnAuditDatabase { path: String, problem: String },
    #[error("the audit database is full: {0}")]
    Full(String),
    #[error("the audit database is read-only: {0}")]
    ReadOnly(String),
    #[error("{backend} error: {message}")]
    Database {
        backend: Backend,
        message: String,
        retriable: bool,
    },
    #[error("event {id} is already in the log")]
    Duplicate { id: EventId },
}

impl StoreError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::InvalidEvent(_) => "invalid_event",
            StoreError::InvalidInput { .. } => "invalid_input",
            StoreError::QueueFull { .. } => "queue_full",
            StoreError::Closed => "closed",
            StoreError::NotAnAuditDatabase { .. } => "not_an_audit_database",
            StoreError::Full(_) => "full",
            StoreError::ReadOnly(_) => "read_only",
            StoreError::Database { .. } => "database",
            StoreError::Duplicate { .. } => "duplicate",
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            StoreError::QueueFull { .. } | StoreError::Full(_) => true,
            StoreError::Database { retriable, .. } => *retriable,
            _ => false,
        }
    }
}

/// Checks a consumer cursor name: 1 to 64 of `a-z 0-9 . _ -`.
pub fn validate_cursor_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            field: "cursor name",
            problem: format!("{name:?} must be 1 to 64 of a-z 0-9 . _ -"),
        })
    }
}

/// The most hourly buckets one call returns (a little over a year).
pub const MAX_HOUR_BUCKETS: i64 = 24 * 370;

/// Start of the hour containing `t`.
pub fn hour_floor(t: OffsetDateTime) -> OffsetDateTime {
    let secs = t.unix_timestamp();
    OffsetDateTime::from_unix_timestamp(secs - secs.rem_euclid(3600)).unwrap_or(t)
}

/// The hours `[hour_floor(since), until)` as bucket starts, checked against the maximum.
pub fn hour_range(
    since: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<Vec<OffsetDateTime>, StoreError> {
    if until <= since {
        return Err(StoreError::InvalidInput {
            field: "time range",
            problem: format!("until ({until}) must be after since ({since})"),
        });
    }
    let first = hour_floor(since);
    let n = (until - first).whole_seconds().div_euclid(3600)
        + i64::from((until - first).whole_seconds().rem_euclid(3600) != 0);
    if n > MAX_HOUR_BUCKETS {
        return Err(StoreError::InvalidInput {
            field: "time range",
            problem: format!("{n} hours is more than the {MAX_HOUR_BUCKETS} one query returns"),
        });
    }
    Ok((0..n).map(|i| first + time::Duration::hours(i)).collect())
}

/// The append-only, hash-chained audit log.
///
/// `append` returns only once the event is durable. Queries see every acknowledged event.
#[async_trait]
pub trait AuditStore: Send + Sync + fmt::Debug + 'static {
    /// Appends one event; resolves once it is durable.
    async fn append(&self, event: AuditEvent) -> Result<Appended, StoreError>;

    /// Appends several events (in order); resolves once all are durable. Each event gets
    /// its own result: a refused event does not affect the others.
    async fn append_many(&self, events: Vec<AuditEvent>) -> Vec<Result<Appended, StoreError>>;

    async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError>;

    async fn query(&self, filter: &EventFilter, page: PageRequest)
    -> Result<EventPage, StoreError>;

    async fn count(&self, filter: &EventFilter) -> Result<u64, StoreError>;

    /// Like [`query`](Self::query), but only the indexed columns of each event (no page
    /// cursor: at most `page.effective_limit()` summaries in `page.order`). Backends read
    /// the columns without decoding bodies; the default decodes whole events.
    async fn summaries(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<Vec<EventSummary>, StoreError> {
        Ok(self
            .query(filter, page)
            .await?
            .events
            .iter()
            .map(EventSummary::of)
            .collect())
    }

    /// Events per hour in `[hour_floor(since), until)`, one bucket per hour (zeros
    /// included), optionally for one kind.
    async fn hourly_counts(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
        kind: Option<EventKind>,
    ) -> Result<Vec<HourBucket>, StoreError>;

    /// Events with `seq > after`, oldest first (for consumers reading behind a cursor).
    async fn read_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// The committed position of a named consumer (0 when it never committed).
    async fn cursor(&self, name: &str) -> Result<u64, StoreError>;

    /// Commits a consumer's position; `seq` must not be past the head.
    async fn commit_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError>;

    /// Walks the chain from the latest checkpoint and names the first problem.
    async fn verify(&self) -> Result<VerifyReport, StoreError>;

    /// Deletes events older than `before`, recording a checkpoint so the rest verifies.
    async fn apply_retention(&self, before: OffsetDateTime) -> Result<RetentionReport, StoreError>;

    async fn head(&self) -> Result<Option<ChainHead>, StoreError>;

    /// Stops accepting events and waits until every accepted one is durable.
    async fn close(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn hour_range_covers_partial_hours() {
        let r = hour_range(
            datetime!(2026-01-01 10:30 UTC),
            datetime!(2026-01-01 12:00 UTC),
        )
        .unwrap();
        assert_eq!(
            r,
            vec![
                datetime!(2026-01-01 10:00 UTC),
                datetime!(2026-01-01 11:00 UTC)
            ]
        );
        let r = hour_range(
            datetime!(2026-01-01 10:00 UTC),
            datetime!(2026-01-01 12:00:01 UTC),
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert!(
            hour_range(
                datetime!(2026-01-01 10:00 UTC),
                datetime!(2026-01-01 10:00 UTC)
            )
            .is_err()
        );
        assert!(
            hour_range(
                datetime!(2020-01-01 0:00 UTC),
                datetime!(2026-01-01 10:00 UTC)
            )
            .is_err()
        );
    }

    #[test]
    fn cursor_names_are_checked() {
        assert!(validate_cursor_name("siem.splunk-1").is_ok());
        assert!(validate_cursor_name("").is_err());
        assert!(validate_cursor_name("x'; drop table").is_err());
        assert!(validate_cursor_name(&"a".repeat(65)).is_err());
    }
}
