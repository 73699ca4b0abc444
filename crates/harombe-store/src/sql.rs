//! SQL shared by both backends: the filter and page clauses, built with bind parameters
//! only (filter values are data, never SQL), and the row decoding.

use harombe_core::chain::ChainHash;
use harombe_core::store::Backend;
use harombe_core::{AuditEvent, EventFilter, Order, PageRequest, StoreError, StoredEvent};

/// A bind parameter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

/// Placeholder style.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A WHERE clause under construction.
#[derive(Debug)]
pub(crate) struct Where {
    dialect: Dialect,
    clauses: Vec<String>,
    pub params: Vec<Param>,
}

impl Where {
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            clauses: Vec::new(),
            params: Vec::new(),
        }
    }

    /// Adds `column op <param>`.
    pub fn push(&mut self, column: &str, op: &str, p: Param) {
        self.params.push(p);
        let n = self.params.len();
        let ph = match self.dialect {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        };
        self.clauses.push(format!("{column} {op} {ph}"));
    }

    pub fn filter(mut self, f: &EventFilter) -> Self {
        if let Some(a) = &f.agent {
            self.push("agent", "=", Param::Text(a.as_str().to_owned()));
        }
        if let Some(s) = &f.session {
            self.push("session", "=", Param::Text(s.as_str().to_owned()));
        }
        if let Some(k) = f.kind {
            self.push("kind", "=", Param::Text(k.as_str().to_owned()));
        }
        if let Some(t) = &f.target {
            self.push("target", "=", Param::Text(t.clone()));
        }
        if let Some(o) = f.outcome {
            self.push("outcome", "=", Param::Text(o.as_str().to_owned()));
        }
        if let Some(d) = f.decision {
            self.push("decision", "=", Param::Text(d.as_str().to_owned()));
        }
        if let Some(m) = f.min_threat {
            self.push("threat", ">=", Param::Int(i64::from(m.rank())));
        }
        if let Some(s) = f.since {
            self.push("ts", ">=", Param::Int(micros(s)));
        }
        if let Some(u) = f.until {
            self.push("ts", "<", Param::Int(micros(u)));
        }
        self
    }

    pub fn cursor(mut self, page: &PageRequest) -> Self {
        if let Some(c) = page.cursor {
            let op = match page.order {
                Order::NewestFirst => "<",
                Order::OldestFirst => ">",
            };
            self.push("seq", op, Param::Int(seq_param(c)));
        }
        self
    }

    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// `SELECT seq, hash, body FROM audit_events <where> ORDER BY seq <dir> LIMIT n+1`.
pub(crate) fn page_query(
    dialect: Dialect,
    filter: &EventFilter,
    page: &PageRequest,
) -> (String, Vec<Param>) {
    // One more than asked, to know whether there is a next page.
    select_page(
        dialect,
        "seq, hash, body",
        filter,
        page,
        page.effective_limit() + 1,
    )
}

/// `SELECT columns` of the events `filter` and `page` select, in `page.order`.
fn select_page(
    dialect: Dialect,
    columns: &str,
    filter: &EventFilter,
    page: &PageRequest,
    limit: u32,
) -> (String, Vec<Param>) {
    let w = Where::new(dialect).filter(filter).cursor(page);
    let dir = match page.order {
        Order::NewestFirst => "DESC",
        Order::OldestFirst => "ASC",
    };
    let sql = format!(
        "SELECT {columns} FROM audit_events{} ORDER BY seq {dir} LIMIT {limit}",
        w.sql()
    );
    (sql, w.params)
}

/// The indexed columns of a page of events (see `AuditStore::summaries`).
pub(crate) fn summary_query(
    dialect: Dialect,
    filter: &EventFilter,
    page: &PageRequest,
) -> (String, Vec<Param>) {
    select_page(
        dialect,
        "seq, id, ts, kind, outcome, agent, target, threat",
        filter,
        page,
        page.effective_limit(),
    )
}

/// Builds a summary from its columns, naming the row when one does not parse.
#[allow(clippy::too_many_arguments)]
pub(crate) fn summary_row(
    backend: Backend,
    seq: i64,
    id: uuid::Uuid,
    ts: i64,
    kind: &str,
    outcome: &str,
    agent: Option<String>,
    target: Option<String>,
    threat: Option<i64>,
) -> Result<harombe_core::EventSummary, StoreError> {
    let bad = |what: &str| StoreError::Database {
        backend,
        message: format!("event seq {seq}: stored {what} does not parse"),
        retriable: false,
    };
    Ok(harombe_core::EventSummary {
        seq: u64::try_from(seq).map_err(|_| bad("seq"))?,
        id: harombe_core::EventId::from_uuid(id),
        timestamp: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts) * 1_000)
            .map_err(|_| bad("timestamp"))?,
        kind: kind.parse().map_err(|_| bad("kind"))?,
        outcome: outcome.parse().map_err(|_| bad("outcome"))?,
        agent: agent
            .map(harombe_core::AgentId::new)
            .transpose()
            .map_err(|_| bad("agent"))?,
        target,
        threat_level: threat
            .map(|t| {
                u8::try_from(t)
                    .ok()
                    .and_then(harombe_core::ThreatLevel::from_rank)
                    .ok_or_else(|| bad("threat level"))
            })
            .transpose()?,
    })
}

pub(crate) fn count_query(dialect: Dialect, filter: &EventFilter) -> (String, Vec<Param>) {
    let w = Where::new(dialect).filter(filter);
    (
        format!("SELECT COUNT(*) FROM audit_events{}", w.sql()),
        w.params,
    )
}

pub(crate) fn micros(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// Sequence numbers are stored as signed 64-bit integers.
pub(crate) fn seq_param(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Decodes one stored row, naming the row when it is damaged.
pub(crate) fn decode_row(
    backend: Backend,
    seq: i64,
    hash: &[u8],
    body: &[u8],
) -> Result<StoredEvent, StoreError> {
    let damaged = |problem: String| StoreError::Database {
        backend,
        message: format!(
            "stored event seq {seq} is damaged ({problem}); run `harombe audit verify`"
        ),
        retriable: false,
    };
    let event = AuditEvent::decode(body).map_err(|e| damaged(e.to_string()))?;
    let hash = ChainHash::from_slice(hash).ok_or_else(|| damaged("hash is not 32 bytes".into()))?;
    Ok(StoredEvent {
        seq: seq as u64,
        hash,
        event,
    })
}

/// Turns `limit + 1` rows into a page.
pub(crate) fn into_page(
    mut events: Vec<StoredEvent>,
    page: &PageRequest,
) -> harombe_core::EventPage {
    let limit = page.effective_limit() as usize;
    let more = events.len() > limit;
    events.truncate(limit);
    let next_cursor = if more {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    harombe_core::EventPage {
        events,
        next_cursor,
    }
}

/// Columns derived from an event for indexing.
pub(crate) struct Columns<'a> {
    pub id: uuid::Uuid,
    pub ts: i64,
    pub agent: Option<&'a str>,
    pub session: Option<&'a str>,
    pub kind: &'static str,
    pub target: Option<&'a str>,
    pub outcome: &'static str,
    pub decision: Option<&'static str>,
    pub threat: Option<i64>,
}

impl<'a> Columns<'a> {
    pub fn of(e: &'a AuditEvent) -> Self {
        Self {
            id: *e.id.as_uuid(),
            ts: e.unix_micros(),
            agent: e.agent.as_ref().map(|a| a.as_str()),
            session: e.session.as_ref().map(|s| s.as_str()),
            kind: e.kind.as_str(),
            target: e.target.as_deref(),
            outcome: e.outcome.as_str(),
            decision: e.verdict.as_ref().map(|v| v.decision.as_str()),
            threat: e.threat_level.map(|t| i64::from(t.rank())),
        }
    }
}

/// Start of the hour (unix seconds) of a timestamp in microseconds.
pub(crate) fn hour_of(ts_micros: i64) -> i64 {
    let secs = ts_micros.div_euclid(1_000_000);
    secs - secs.rem_euclid(3600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use harombe_core::{AgentId, EventKind, ThreatLevel};

    #[test]
    fn filters_become_bind_parameters() {
        let f = EventFilter {
            agent: Some(AgentId::new("bot").unwrap()),
            target: Some("x' OR '1'='1".into()),
            kind: Some(EventKind::Auth),
            min_threat: Some(ThreatLevel::High),
            ..Default::default()
        };
        let (sql, params) = page_query(
            Dialect::Postgres,
            &f,
            &PageRequest {
                cursor: Some(9),
                ..PageRequest::newest(10)
            },
        );
        assert_eq!(
            sql,
            "SELECT seq, hash, body FROM audit_events WHERE agent = $1 AND kind = $2 AND target = $3 \
             AND threat >= $4 AND seq < $5 ORDER BY seq DESC LIMIT 11"
        );
        assert!(!sql.contains("OR '1'"));
        assert_eq!(params[2], Param::Text("x' OR '1'='1".into()));
        let (sql, _) = count_query(Dialect::Sqlite, &EventFilter::default());
        assert_eq!(sql, "SELECT COUNT(*) FROM audit_events");
    }

    #[test]
    fn hours_floor() {
        assert_eq!(hour_of(3_599_999_999), 0);
        assert_eq!(hour_of(3_600_000_000), 3600);
        assert_eq!(hour_of(-1), -3600);
    }
}
