//! The PostgreSQL audit store, for several replicas sharing one database.
//!
//! Each group commit locks the chain head row (`SELECT … FOR UPDATE`), so commits from
//! different replicas serialise into one chain; rows go in with one `UNNEST` insert per
//! group. Migrations run under an advisory lock, so replicas can start together.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use harombe_core::chain::{ChainHash, ChainHead, ChainVerifier, Checkpoint, RawRow};
use harombe_core::store::{Backend, hour_range, validate_cursor_name};
use harombe_core::{
    Appended, AuditEvent, AuditStore, EventFilter, EventId, EventKind, EventPage, HourBucket,
    PageRequest, RetentionReport, StoreError, StoredEvent, VerifyReport,
};
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::{Arguments, Row};
use time::OffsetDateTime;

use crate::StoreOptions;
use crate::migrate;
use crate::queue::{Committer, Pending, Queue};
use crate::sql::{self, Columns, Dialect, Param};

/// Rows per `verify` fetch: one query per batch, the next fetched while this one is hashed
/// (two batches of a few hundred bytes per row in memory at most).
const VERIFY_BATCH: i64 = 32_768;
/// `pg_advisory_xact_lock` key for migrations ("hrmb").
const MIGRATION_LOCK: i64 = 0x6872_6d62;

/// The PostgreSQL implementation of [`AuditStore`].
#[derive(Debug)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    queue: Queue,
    pub(crate) approvals: crate::approvals::postgres::Watch,
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    let retriable = matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    );
    if let sqlx::Error::Database(db) = &e {
        match db.code().as_deref() {
            Some("53100") => return StoreError::Full(db.message().to_owned()),
            Some("25006") => return StoreError::ReadOnly(db.message().to_owned()),
            Some("40001" | "40P01" | "55P03" | "57P01") => {
                return StoreError::Database {
                    backend: Backend::Postgres,
                    message: db.message().to_owned(),
                    retriable: true,
                };
            }
            _ => {}
        }
    }
    StoreError::Database {
        backend: Backend::Postgres,
        message: e.to_string(),
        retriable,
    }
}

impl PostgresStore {
    /// Connects, migrates (under an advisory lock) and starts the writer.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Database {
                    message, retriable, ..
                } => StoreError::Database {
                    backend: Backend::Postgres,
                    message: format!("cannot connect to the audit database: {message}"),
                    retriable,
                },
                other => other,
            })?;
        migrate_pg(&pool).await?;
        let queue = Queue::start(PgCommitter { pool: pool.clone() }, &options);
        Ok(Self {
            pool,
            queue,
            approvals: Default::default(),
        })
    }
}

async fn migrate_pg(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    let known = migrate::POSTGRES.last().map_or(0, |m| m.0);
    if newest > known {
        return Err(StoreError::NotAnAuditDatabase {
            path: "the PostgreSQL database".into(),
            problem: format!(
                "its schema version {newest} is newer than this harombe knows ({known})"
            ),
        });
    }
    for (version, ddl) in migrate::POSTGRES.iter().filter(|(v, _)| *v > newest) {
        sqlx::raw_sql(*ddl)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(OffsetDateTime::now_utc().unix_timestamp())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)
}

fn bind_all(params: Vec<Param>) -> PgArguments {
    let mut args = PgArguments::default();
    for p in params {
        // Encoding a String or an i64 cannot fail.
        let _ = match p {
            Param::Text(s) => args.add(s),
            Param::Int(i) => args.add(i),
        };
    }
    args
}

fn stored(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let seq: i64 = row.try_get(0).map_err(db_err)?;
    let hash: &[u8] = row.try_get(1).map_err(db_err)?;
    let body: &[u8] = row.try_get(2).map_err(db_err)?;
    sql::decode_row(Backend::Postgres, seq, hash, body)
}

fn hash_of(bytes: &[u8]) -> Result<ChainHash, StoreError> {
    ChainHash::from_slice(bytes).ok_or_else(|| StoreError::Database {
        backend: Backend::Postgres,
        message: "a stored hash is not 32 bytes".into(),
        retriable: false,
    })
}

async fn read_head<'c, E: sqlx::PgExecutor<'c>>(
    e: E,
    lock: bool,
) -> Result<(u64, ChainHash), StoreError> {
    let q = if lock {
        "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT seq, hash FROM audit_head WHERE id = 1"
    };
    let row = sqlx::query(q).fetch_one(e).await.map_err(db_err)?;
    let seq: i64 = row.try_get(0).map_err(db_err)?;
    let hash: &[u8] = row.try_get(1).map_err(db_err)?;
    Ok((seq as u64, hash_of(hash)?))
}

/// One batch of rows for verification, from `from` on in chain order.
async fn verify_batch(
    conn: &mut sqlx::PgConnection,
    from: u64,
) -> Result<Vec<(i64, Vec<u8>, Vec<u8>)>, StoreError> {
    sqlx::query_as("SELECT seq, body, hash FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2")
        .bind(sql::seq_param(from))
        .bind(VERIFY_BATCH)
        .fetch_all(conn)
        .await
        .map_err(db_err)
}

fn head_of(seq: u64, hash: ChainHash) -> Option<ChainHead> {
    (seq > 0).then_some(ChainHead { seq, hash })
}

struct PgCommitter {
    pool: PgPool,
}

#[derive(Default)]
struct Columnar {
    seq: Vec<i64>,
    id: Vec<uuid::Uuid>,
    ts: Vec<i64>,
    agent: Vec<Option<String>>,
    session: Vec<Option<String>>,
    kind: Vec<&'static str>,
    target: Vec<Option<String>>,
    outcome: Vec<&'static str>,
    decision: Vec<Option<&'static str>>,
    threat: Vec<Option<i16>>,
    body: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl Committer for PgCommitter {
    async fn commit(
        &mut self,
        batch: Vec<Pending>,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let (mut seq, mut prev) = read_head(&mut *tx, true).await?;
        let ids: Vec<uuid::Uuid> = batch.iter().map(|p| *p.event.id.as_uuid()).collect();
        let existing: HashSet<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM audit_events WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?
                .into_iter()
                .collect();
        let mut seen = HashSet::new();
        let mut cols = Columnar::default();
        let mut hourly: HashMap<(i64, &'static str), i64> = HashMap::new();
        let mut results = Vec::with_capacity(batch.len());
        for p in batch {
            let c = Columns::of(&p.event);
            if existing.contains(&c.id) || !seen.insert(c.id) {
                results.push(Err(StoreError::Duplicate { id: p.event.id }));
                continue;
            }
            seq += 1;
            prev = prev.next(seq, &p.body);
            *hourly.entry((sql::hour_of(c.ts), c.kind)).or_default() += 1;
            cols.seq.push(sql::seq_param(seq));
            cols.id.push(c.id);
            cols.ts.push(c.ts);
            cols.agent.push(c.agent.map(str::to_owned));
            cols.session.push(c.session.map(str::to_owned));
            cols.kind.push(c.kind);
            cols.target.push(c.target.map(str::to_owned));
            cols.outcome.push(c.outcome);
            cols.decision.push(c.decision);
            cols.threat.push(c.threat.map(|t| t as i16));
            cols.hash.push(prev.0.to_vec());
            cols.body.push(p.body);
            results.push(Ok(Appended { seq, hash: prev }));
        }
        if !cols.seq.is_empty() {
            sqlx::query(
                "INSERT INTO audit_events (seq, id, ts, agent, session, kind, target, outcome, decision, threat, body, hash)
                 SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                                      $7::text[], $8::text[], $9::text[], $10::smallint[], $11::bytea[], $12::bytea[])",
            )
            .bind(&cols.seq)
            .bind(&cols.id)
            .bind(&cols.ts)
            .bind(&cols.agent)
            .bind(&cols.session)
            .bind(&cols.kind)
            .bind(&cols.target)
            .bind(&cols.outcome)
            .bind(&cols.decision)
            .bind(&cols.threat)
            .bind(&cols.body)
            .bind(&cols.hash)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let (hours, kinds, counts): (Vec<i64>, Vec<&str>, Vec<i64>) = hourly
                .into_iter()
                .map(|((h, k), n)| (h, k, n))
                .fold((vec![], vec![], vec![]), |mut acc, (h, k, n)| {
                    acc.0.push(h);
                    acc.1.push(k);
                    acc.2.push(n);
                    acc
                });
            sqlx::query(
                "INSERT INTO audit_hourly (hour, kind, count) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[])
                 ON CONFLICT (hour, kind) DO UPDATE SET count = audit_hourly.count + excluded.count",
            )
            .bind(&hours)
            .bind(&kinds)
            .bind(&counts)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(sql::seq_param(seq))
                .bind(prev.0.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(results)
    }
}

async fn latest_checkpoint<'c, E: sqlx::PgExecutor<'c>>(e: E) -> Result<Checkpoint, StoreError> {
    let row = sqlx::query("SELECT seq, prev_hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
        .fetch_optional(e)
        .await
        .map_err(db_err)?;
    Ok(match row {
        Some(r) => {
            let seq: i64 = r.try_get(0).map_err(db_err)?;
            let h: &[u8] = r.try_get(1).map_err(db_err)?;
            Checkpoint {
                seq: seq as u64,
                prev_hash: hash_of(h)?,
            }
        }
        None => Checkpoint::START,
    })
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append(&self, event: AuditEvent) -> Result<Appended, StoreError> {
        self.queue.append(event).await
    }

    async fn append_many(&self, events: Vec<AuditEvent>) -> Vec<Result<Appended, StoreError>> {
        self.queue.append_many(events).await
    }

    async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        let row = sqlx::query("SELECT seq, hash, body FROM audit_events WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(stored).transpose()
    }

    async fn query(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<EventPage, StoreError> {
        let (q, params) = sql::page_query(Dialect::Postgres, filter, &page);
        // Built from fixed column names and placeholders only; every value is bound.
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(q), bind_all(params))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let events = rows.iter().map(stored).collect::<Result<Vec<_>, _>>()?;
        Ok(sql::into_page(events, &page))
    }

    async fn summaries(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<Vec<harombe_core::EventSummary>, StoreError> {
        let (q, params) = sql::summary_query(Dialect::Postgres, filter, &page);
        // Built from fixed column names and placeholders only; every value is bound.
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(q), bind_all(params))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let kind: &str = r.try_get(3).map_err(db_err)?;
                let outcome: &str = r.try_get(4).map_err(db_err)?;
                let threat: Option<i16> = r.try_get(7).map_err(db_err)?;
                sql::summary_row(
                    Backend::Postgres,
                    r.try_get(0).map_err(db_err)?,
                    r.try_get(1).map_err(db_err)?,
                    r.try_get(2).map_err(db_err)?,
                    kind,
                    outcome,
                    r.try_get(5).map_err(db_err)?,
                    r.try_get(6).map_err(db_err)?,
                    threat.map(i64::from),
                )
            })
            .collect()
    }

    async fn count(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let (q, params) = sql::count_query(Dialect::Postgres, filter);
        let n: i64 = sqlx::query_scalar_with(sqlx::AssertSqlSafe(q), bind_all(params))
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(n as u64)
    }

    async fn hourly_counts(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
        kind: Option<EventKind>,
    ) -> Result<Vec<HourBucket>, StoreError> {
        let hours = hour_range(since, until)?;
        let (Some(first), Some(last)) = (hours.first().copied(), hours.last().copied()) else {
            return Ok(Vec::new());
        };
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT hour, SUM(count)::bigint FROM audit_hourly
             WHERE hour >= $1 AND hour < $2 AND ($3::text IS NULL OR kind = $3) GROUP BY hour",
        )
        .bind(first.unix_timestamp())
        .bind(last.unix_timestamp() + 3600)
        .bind(kind.map(EventKind::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let counts: HashMap<i64, i64> = rows.into_iter().collect();
        Ok(hours
            .into_iter()
            .map(|hour| HourBucket {
                hour,
                count: counts.get(&hour.unix_timestamp()).copied().unwrap_or(0) as u64,
            })
            .collect())
    }

    async fn read_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, hash, body FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(sql::seq_param(after))
        .bind(i64::from(limit.clamp(1, PageRequest::MAX_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(stored).collect()
    }

    async fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        validate_cursor_name(name)?;
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM consumer_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(seq.unwrap_or(0) as u64)
    }

    async fn commit_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        validate_cursor_name(name)?;
        let (head, _) = read_head(&self.pool, false).await?;
        if seq > head {
            return Err(StoreError::InvalidInput {
                field: "cursor",
                problem: format!("seq {seq} is past the head of the log ({head})"),
            });
        }
        sqlx::query(
            "INSERT INTO consumer_cursors (name, seq, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(sql::seq_param(seq))
        .bind(OffsetDateTime::now_utc().unix_timestamp())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let start = latest_checkpoint(&mut *tx).await?;
        let (head_seq, head_hash) = read_head(&mut *tx, false).await?;
        let head = head_of(head_seq, head_hash);
        // Batch n is hashed on the blocking pool while batch n + 1 is fetched.
        let mut verifier = ChainVerifier::new(start);
        let mut rows = verify_batch(&mut tx, start.seq).await?;
        loop {
            let next = match rows.last() {
                Some(last) if rows.len() as i64 == VERIFY_BATCH => Some(last.0 as u64 + 1),
                _ => None,
            };
            let hashing = tokio::task::spawn_blocking(move || {
                let raw: Vec<RawRow<'_>> = rows
                    .iter()
                    .map(|(seq, body, hash)| RawRow {
                        seq: *seq as u64,
                        body,
                        hash: ChainHash::from_slice(hash).unwrap_or_default(),
                    })
                    .collect();
                let ok = verifier.feed(&raw);
                (verifier, ok)
            });
            let upcoming = match next {
                Some(from) => Some(verify_batch(&mut tx, from).await?),
                None => None,
            };
            let ok;
            (verifier, ok) = hashing.await.map_err(|e| StoreError::Database {
                backend: Backend::Postgres,
                message: format!("verification task failed: {e}"),
                retriable: false,
            })?;
            match upcoming {
                Some(more) if ok => rows = more,
                _ => break,
            }
        }
        tx.commit().await.map_err(db_err)?;
        let (checked, problem) = verifier.finish(head);
        Ok(VerifyReport {
            checked,
            start,
            head,
            problem,
        })
    }

    async fn apply_retention(&self, before: OffsetDateTime) -> Result<RetentionReport, StoreError> {
        let cutoff = sql::micros(before);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let (head_seq, head_hash) = read_head(&mut *tx, true).await?;
        let first_kept: Option<i64> =
            sqlx::query_scalar("SELECT MIN(seq) FROM audit_events WHERE ts >= $1")
                .bind(cutoff)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        let keep_from = first_kept.map_or(head_seq + 1, |s| s as u64);
        let first_row: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM audit_events")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if first_row.is_none_or(|f| (f as u64) >= keep_from) {
            return Ok(RetentionReport {
                deleted: 0,
                checkpoint: None,
            });
        }
        let prev_hash = if keep_from > head_seq {
            head_hash
        } else {
            let h: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = $1")
                .bind(sql::seq_param(keep_from - 1))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            hash_of(&h)?
        };
        let keep = sql::seq_param(keep_from);
        sqlx::query(
            "UPDATE audit_hourly h SET count = h.count - r.n FROM (
                 SELECT (ts / 1000000) - ((ts / 1000000) % 3600) AS hour, kind, COUNT(*) AS n
                 FROM audit_events WHERE seq < $1 GROUP BY 1, 2) r
             WHERE h.hour = r.hour AND h.kind = r.kind",
        )
        .bind(keep)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("DELETE FROM audit_hourly WHERE count <= 0")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let deleted = sqlx::query("DELETE FROM audit_events WHERE seq < $1")
            .bind(keep)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, prev_hash, deleted, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (seq) DO UPDATE SET deleted = audit_checkpoints.deleted + excluded.deleted",
        )
        .bind(keep)
        .bind(prev_hash.0.as_slice())
        .bind(deleted as i64)
        .bind(OffsetDateTime::now_utc().unix_timestamp())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(RetentionReport {
            deleted,
            checkpoint: Some(Checkpoint {
                seq: keep_from,
                prev_hash,
            }),
        })
    }

    async fn head(&self) -> Result<Option<ChainHead>, StoreError> {
        let (s, h) = read_head(&self.pool, false).await?;
        Ok(head_of(s, h))
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.queue.close().await;
        Ok(())
    }
}
