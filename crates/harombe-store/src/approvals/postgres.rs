//! Approvals on PostgreSQL, shared by every replica. A decision is one statement: the
//! compare-and-set `UPDATE … RETURNING` and a `pg_notify` on [`CHANNEL`] (payload: the id)
//! in the same transaction, so a notification is sent exactly when a decision commits.
//!
//! One listener task per store (started by the first waiter) LISTENs on that channel and
//! wakes the waiters of the id it names. Notifications are lost while the connection is
//! down, so after every (re)connect the listener wakes all waiters and they re-read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use harombe_core::store::Backend;
use harombe_core::{
    Approval, ApprovalDecision, ApprovalError, ApprovalId, ApprovalRequest, ApprovalState,
    ApprovalStore, StoreError,
};
use sqlx::Row as _;
use sqlx::postgres::{PgListener, PgPool, PgRow};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::{COLUMNS, Row, Waiters, clamp_limit, wait_until_decided};
use crate::PostgresStore;
use crate::postgres::db_err;
use crate::sql::micros;

/// The NOTIFY channel decisions are announced on.
pub(crate) const CHANNEL: &str = "harombe_approvals";
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Waiters of one store and its listener task (stopped when the store is dropped).
#[derive(Debug, Default)]
pub(crate) struct Watch {
    waiters: Arc<Waiters>,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(h) = self
            .listener
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

impl Watch {
    fn start_listener(&self, pool: PgPool) {
        let waiters = self.waiters.clone();
        let task = tokio::spawn(listen(pool, waiters));
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }
}

async fn listen(pool: PgPool, waiters: Arc<Waiters>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut listener = match connect(&pool).await {
            Ok(l) => l,
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "approvals listener cannot connect");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        // Anything decided before LISTEN took effect was not announced to us.
        waiters.wake_all();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Ok(id) = n.payload().parse::<ApprovalId>() {
                        waiters.wake(id);
                    }
                }
                // The connection dropped and was re-established (LISTEN included):
                // notifications in between are lost.
                Ok(None) => waiters.wake_all(),
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "approvals listener lost its connection");
                    waiters.wake_all();
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen(CHANNEL).await?;
    Ok(l)
}

fn row_of(r: &PgRow) -> Result<Approval, StoreError> {
    Row {
        id: ApprovalId::from_uuid(r.try_get(0).map_err(db_err)?),
        agent: r.try_get(1).map_err(db_err)?,
        session: r.try_get(2).map_err(db_err)?,
        tool: r.try_get(3).map_err(db_err)?,
        arguments: r.try_get(4).map_err(db_err)?,
        binding: r.try_get(5).map_err(db_err)?,
        reasons: r.try_get(6).map_err(db_err)?,
        threat_level: r.try_get(7).map_err(db_err)?,
        risk: r.try_get(8).map_err(db_err)?,
        created: r.try_get(9).map_err(db_err)?,
        deadline: r.try_get(10).map_err(db_err)?,
        state: r.try_get(11).map_err(db_err)?,
        decided_by: r.try_get(12).map_err(db_err)?,
        decided_at: r.try_get(13).map_err(db_err)?,
        reason: r.try_get(14).map_err(db_err)?,
    }
    .decode(Backend::Postgres)
}

impl PostgresStore {
    async fn stored_approval(&self, id: ApprovalId) -> Result<Option<Approval>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM approvals WHERE id = $1"
        )))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(row_of)
        .transpose()
    }
}

#[async_trait]
impl ApprovalStore for PostgresStore {
    async fn create(&self, request: ApprovalRequest) -> Result<Approval, StoreError> {
        super::validate(&request)?;
        let a = Approval::pending(super::normalised(request));
        let r = &a.request;
        let (arguments, reasons) = super::json_columns(r);
        let inserted = sqlx::query(
            "INSERT INTO approvals (id, agent, session, tool, arguments, binding, reasons,
             threat_level, risk, created, deadline, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending')
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(r.id.as_uuid())
        .bind(r.agent.as_str())
        .bind(r.session.as_ref().map(|s| s.as_str()))
        .bind(&r.tool)
        .bind(arguments)
        .bind(&r.binding)
        .bind(reasons)
        .bind(r.threat_level.map(|t| t.as_str()))
        .bind(r.risk)
        .bind(micros(r.created))
        .bind(micros(r.deadline))
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
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
        let limit = i64::from(clamp_limit(limit));
        let order = "ORDER BY created DESC, id DESC";
        let q = match state {
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM approvals {order} LIMIT $1"
            )))
            .bind(limit),
            Some(ApprovalState::Pending) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM approvals WHERE state = 'pending' AND deadline > $1
                 {order} LIMIT $2"
            )))
            .bind(micros(now))
            .bind(limit),
            Some(ApprovalState::Expired) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM approvals
                 WHERE state = 'expired' OR (state = 'pending' AND deadline <= $1)
                 {order} LIMIT $2"
            )))
            .bind(micros(now))
            .bind(limit),
            Some(s) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM approvals WHERE state = $1 {order} LIMIT $2"
            )))
            .bind(s.as_str())
            .bind(limit),
        };
        q.fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| row_of(r).map(|a| super::as_of(a, now)))
            .collect()
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH d AS (
                UPDATE approvals SET state = $1, decided_by = $2, decided_at = $3, reason = $4
                WHERE id = $5 AND state = 'pending' AND deadline > $3 RETURNING {COLUMNS}
             )
             SELECT {COLUMNS}, pg_notify('{CHANNEL}', id::text)::text FROM d"
        )))
        .bind(state.as_str())
        .bind(&decision.by)
        .bind(micros(decision.at))
        .bind(&decision.reason)
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            Some(r) => {
                let a = row_of(&r)?;
                self.approvals.waiters.wake(id);
                Ok(a)
            }
            None => Err(super::refusal(id, self.stored_approval(id).await?)),
        }
    }

    async fn expire(&self, id: ApprovalId, at: OffsetDateTime) -> Result<Approval, ApprovalError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH d AS (
                UPDATE approvals SET state = 'expired', decided_at = $1
                WHERE id = $2 AND state = 'pending' RETURNING {COLUMNS}
             )
             SELECT {COLUMNS}, pg_notify('{CHANNEL}', id::text)::text FROM d"
        )))
        .bind(micros(at))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            Some(r) => {
                let a = row_of(&r)?;
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
            self.approvals.start_listener(self.pool.clone());
        }
        wait_until_decided(guard, timeout, || self.stored_approval(id)).await
    }
}
