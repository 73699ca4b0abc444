//! Approvals on SQLite. Writes go through the store's administrative connection; each
//! decision is one `UPDATE … WHERE state = 'pending' AND deadline > at RETURNING …`.
//!
//! Another process (the CLI) may decide on the same file, and SQLite cannot notify across
//! processes, so while someone waits one poller task per store checks `PRAGMA
//! data_version` (it changes when another connection commits; reading it costs no I/O)
//! every [`POLL_INTERVAL`] and re-reads the waited rows only when it changed. With nobody
//! waiting the poller exits.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use harombe_core::store::Backend;
use harombe_core::{
    Approval, ApprovalDecision, ApprovalError, ApprovalId, ApprovalRequest, ApprovalState,
    ApprovalStore, StoreError,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::{COLUMNS, Row, Waiters, clamp_limit, wait_until_decided};
use crate::SqliteStore;
use crate::sql::micros;
use crate::sqlite::{blocking, db_err, open_conn};

/// How often the poller looks for commits by other connections while someone waits.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Waiters of one store, and the poller's connection (kept between pollers).
#[derive(Debug, Default)]
pub(crate) struct Watch {
    waiters: Arc<Waiters>,
    poll: Arc<Mutex<PollState>>,
}

#[derive(Debug, Default)]
struct PollState {
    conn: Option<Connection>,
    data_version: Option<i64>,
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let id: String = r.get(0)?;
    let id = id.parse::<ApprovalId>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Row {
        id,
        agent: r.get(1)?,
        session: r.get(2)?,
        tool: r.get(3)?,
        arguments: r.get(4)?,
        binding: r.get(5)?,
        reasons: r.get(6)?,
        threat_level: r.get(7)?,
        risk: r.get(8)?,
        created: r.get(9)?,
        deadline: r.get(10)?,
        state: r.get(11)?,
        decided_by: r.get(12)?,
        decided_at: r.get(13)?,
        reason: r.get(14)?,
    })
}

fn read_one(c: &Connection, id: ApprovalId) -> Result<Option<Approval>, StoreError> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"))
        .map_err(db_err)?
        .query_row(params![id.to_string()], row_of)
        .optional()
        .map_err(db_err)?
        .map(|r| r.decode(Backend::Sqlite))
        .transpose()
}

impl SqliteStore {
    async fn stored_approval(&self, id: ApprovalId) -> Result<Option<Approval>, StoreError> {
        self.read(move |c| read_one(c, id)).await
    }
}

impl Watch {
    fn start_poller(self: &Arc<Self>, path: PathBuf) {
        let watch = self.clone();
        tokio::spawn(async move {
            let mut first = true;
            while !watch.waiters.stop_watching_if_idle() {
                let ids = watch.waiters.ids();
                let (poll, p, force) = (watch.poll.clone(), path.clone(), first);
                first = false;
                match blocking(move || poll_once(&poll, &p, &ids, force)).await {
                    Ok(done) => done.into_iter().for_each(|id| watch.waiters.wake(id)),
                    Err(e) => {
                        tracing::warn!(error = %e, "approvals poller: cannot read the database");
                        // Waiters re-read and meet the problem themselves.
                        watch.waiters.wake_all();
                    }
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        });
    }
}

/// One look: when another connection committed since the last look (or `force`), the
/// waited ids that are no longer pending (or are gone).
fn poll_once(
    poll: &Mutex<PollState>,
    path: &Path,
    ids: &[ApprovalId],
    force: bool,
) -> Result<Vec<ApprovalId>, StoreError> {
    let mut st = poll.lock().unwrap_or_else(|e| e.into_inner());
    if st.conn.is_none() {
        st.conn = Some(open_conn(path, true)?);
    }
    let PollState { conn, data_version } = &mut *st;
    let Some(conn) = conn.as_ref() else {
        return Ok(Vec::new());
    };
    let v: i64 = match conn.query_row("PRAGMA data_version", [], |r| r.get(0)) {
        Ok(v) => v,
        Err(e) => {
            st.conn = None;
            return Err(db_err(e));
        }
    };
    if !force && *data_version == Some(v) {
        return Ok(Vec::new());
    }
    *data_version = Some(v);
    let mut stmt = conn
        .prepare_cached("SELECT state FROM approvals WHERE id = ?1")
        .map_err(db_err)?;
    let mut done = Vec::new();
    for id in ids {
        let state: Option<String> = stmt
            .query_row(params![id.to_string()], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        if state.as_deref() != Some(ApprovalState::Pending.as_str()) {
            done.push(*id);
        }
    }
    Ok(done)
}

#[async_trait]
impl ApprovalStore for SqliteStore {
    async fn create(&self, request: ApprovalRequest) -> Result<Approval, StoreError> {
        super::validate(&request)?;
        let a = Approval::pending(super::normalised(request));
        let r = a.request.clone();
        let (arguments, reasons) = super::json_columns(&r);
        let inserted = self
            .admin(move |c| {
                c.prepare_cached(
                    "INSERT INTO approvals (id, agent, session, tool, arguments, binding, reasons,
                     threat_level, risk, created, deadline, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending')
                     ON CONFLICT (id) DO NOTHING",
                )
                .map_err(db_err)?
                .execute(params![
                    r.id.to_string(),
                    r.agent.as_str(),
                    r.session.as_ref().map(|s| s.as_str()),
                    r.tool,
                    arguments,
                    r.binding,
                    reasons,
                    r.threat_level.map(|t| t.as_str()),
                    r.risk,
                    micros(r.created),
                    micros(r.deadline),
                ])
                .map_err(db_err)
            })
            .await?;
        if inserted == 0 {
            return Err(super::duplicate(a.id()));
        }
        Ok(a)
    }

    async fn get(&self, id: ApprovalId) -> Result<Option<Approval>, StoreError> {
        let now = OffsetDateTime::now_utc();
        Ok(self
            .stored_approval(id)
            .await?
            .map(|a| super::as_of(a, now)))
    }

    async fn list(
        &self,
        state: Option<ApprovalState>,
        limit: u32,
    ) -> Result<Vec<Approval>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let (filter, mut args): (&str, Vec<Value>) = match state {
            None => ("", vec![]),
            Some(ApprovalState::Pending) => (
                "WHERE state = 'pending' AND deadline > ?1",
                vec![Value::Integer(micros(now))],
            ),
            Some(ApprovalState::Expired) => (
                "WHERE state = 'expired' OR (state = 'pending' AND deadline <= ?1)",
                vec![Value::Integer(micros(now))],
            ),
            Some(s) => ("WHERE state = ?1", vec![Value::Text(s.as_str().into())]),
        };
        let q = format!(
            "SELECT {COLUMNS} FROM approvals {filter} ORDER BY created DESC, id DESC LIMIT ?{}",
            args.len() + 1
        );
        args.push(Value::Integer(i64::from(clamp_limit(limit))));
        let rows = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(&q).map_err(db_err)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args), row_of)
                    .map_err(db_err)?;
                rows.map(|r| r.map_err(db_err)?.decode(Backend::Sqlite))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(rows.into_iter().map(|a| super::as_of(a, now)).collect())
    }

    async fn decide(
        &self,
        id: ApprovalId,
        decision: ApprovalDecision,
    ) -> Result<Approval, ApprovalError> {
        let state = if decision.approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Denied
        };
        let decided = self
            .admin(move |c| {
                c.prepare_cached(&format!(
                    "UPDATE approvals SET state = ?1, decided_by = ?2, decided_at = ?3, reason = ?4
                     WHERE id = ?5 AND state = 'pending' AND deadline > ?3 RETURNING {COLUMNS}"
                ))
                .map_err(db_err)?
                .query_row(
                    params![
                        state.as_str(),
                        decision.by,
                        micros(decision.at),
                        decision.reason,
                        id.to_string()
                    ],
                    row_of,
                )
                .optional()
                .map_err(db_err)?
                .map(|r| r.decode(Backend::Sqlite))
                .transpose()
            })
            .await?;
        match decided {
            Some(a) => {
                self.approvals.waiters.wake(id);
                Ok(a)
            }
            None => Err(super::refusal(id, self.stored_approval(id).await?)),
        }
    }

    async fn expire(&self, id: ApprovalId, at: OffsetDateTime) -> Result<Approval, ApprovalError> {
        let expired = self
            .admin(move |c| {
                c.prepare_cached(&format!(
                    "UPDATE approvals SET state = 'expired', decided_at = ?1
                     WHERE id = ?2 AND state = 'pending' RETURNING {COLUMNS}"
                ))
                .map_err(db_err)?
                .query_row(params![micros(at), id.to_string()], row_of)
                .optional()
                .map_err(db_err)?
                .map(|r| r.decode(Backend::Sqlite))
                .transpose()
            })
            .await?;
        match expired {
            Some(a) => {
                self.approvals.waiters.wake(id);
                Ok(a)
            }
            None => self
                .stored_approval(id)
                .await?
                .ok_or(ApprovalError::NotFound(id)),
        }
    }

    async fn wait(&self, id: ApprovalId, timeout: Duration) -> Result<Approval, ApprovalError> {
        let (guard, start) = self.approvals.waiters.register(id);
        if start {
            self.approvals.start_poller(self.path().to_path_buf());
        }
        wait_until_decided(guard, timeout, || self.stored_approval(id)).await
    }
}
