//! The SQLite audit store: one file in the data directory, WAL mode; an append is
//! answered only once its commit is in the fsynced WAL.
//!
//! One writer connection (owned by the group-commit writer thread, `harombe-audit-w`),
//! one connection for administrative writes (cursors, retention), one checkpointer
//! connection on its own thread (`harombe-audit-c`), and a small pool of read-only
//! connections for queries.
//!
//! A commit only appends the group's pages to the WAL (the writer connection runs with
//! `synchronous=NORMAL`); the sync thread (`harombe-audit-s`) then fsyncs the WAL
//! (`fdatasync`) once for every group committed before that call began, and answers
//! their producers when it returns. The writer meanwhile commits the next group, so a
//! group's B-tree work overlaps the previous group's fsync instead of waiting for it.
//! Durability is unchanged: nothing is answered before its frames are on disk, and SQLite
//! replays the WAL after a crash. A failed fsync fails its groups and every later append
//! until the store is reopened (after such a failure a later fsync may succeed without
//! the lost pages ever reaching the disk). Consumers reading after a cursor see only
//! synced events; queries may see a group a few milliseconds before its producers are
//! answered.
//!
//! Copying WAL pages into the database file (a checkpoint, with its own fsyncs of the WAL
//! and the database) happens on the checkpointer thread, concurrently with the next group.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use harombe_core::chain::{ChainHash, ChainHead, ChainVerifier, Checkpoint, RawRow};
use harombe_core::store::{Backend, hour_range, validate_cursor_name};
use harombe_core::{
    Appended, AuditEvent, AuditStore, EventFilter, EventId, EventKind, EventPage, HourBucket,
    PageRequest, RetentionReport, StoreError, StoredEvent, VerifyReport,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;

use crate::StoreOptions;
use crate::migrate;
use crate::queue::{Answers, BlockingCommitter, Pending, Queue};
use crate::sql::{self, Columns, Dialect, Param};

/// `PRAGMA application_id` of a harombe audit database ("hrmb").
const APPLICATION_ID: i64 = 0x6872_6d62;
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
const VERIFY_BATCH: i64 = 8_192;
const MAX_IDLE_READERS: usize = 8;
/// The writer's page cache in KiB: large enough that a whole group's dirty pages stay in
/// memory, so each page reaches the WAL once per commit instead of spilling mid-group.
const WRITER_CACHE_KIB: i64 = 65_536;
/// WAL pages after which the writer checkpoints inline: a safety net only, the
/// checkpointer thread normally keeps the WAL far smaller.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16_384;
/// Events committed between two checkpoint wake-ups: a checkpoint (and its fsync of the
/// database file) per few thousand events keeps the WAL small without competing with
/// every commit's own fsync when events come one at a time.
const CHECKPOINT_EVERY_EVENTS: usize = 4_096;
/// Least time between two checkpoints.
const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// Page size of a new database: twice SQLite's default, so a group's rows fill half as
/// many pages (fewer WAL frames, fewer B-tree splits) while index pages stay small.
const NEW_PAGE_SIZE: i64 = 8_192;
/// Once reset, the WAL file is truncated back to this size.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// Per hour and kind, how many events retention is about to remove (`?1`: first kept seq).
pub(crate) const HOURLY_OF_REMOVED: &str =
    "SELECT (ts / 1000000) - ((ts / 1000000) % 3600) AS hour, kind, COUNT(*)
     FROM audit_events WHERE seq < ?1 GROUP BY hour, kind";

/// The SQLite implementation of [`AuditStore`].
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    queue: Queue,
    readers: Arc<Readers>,
    admin: Arc<Mutex<Connection>>,
    /// What the writer has made durable (and whether an fsync failed).
    synced: Arc<Synced>,
    pub(crate) approvals: Arc<crate::approvals::sqlite::Watch>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating and migrating it when needed. A file that is
    /// not a harombe audit database is refused and left untouched.
    pub async fn open(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let p = path.clone();
        let max = options.max_db_bytes;
        let (writer, admin, checkpoints, syncer) = blocking(move || {
            let writer = open_writer(&p, max)?;
            let admin = open_conn(&p, false)?;
            let checkpoints = start_checkpointer(&p)?;
            let syncer = Syncer::start(&p, read_head(&writer)?.0)?;
            Ok((writer, admin, checkpoints, syncer))
        })
        .await?;
        let synced = syncer.synced.clone();
        let readers = Arc::new(Readers {
            path: path.clone(),
            idle: Mutex::new(Vec::new()),
        });
        let queue = Queue::start_thread(
            SqliteCommitter {
                conn: writer,
                checkpoints,
                syncer,
                since_wake: 0,
            },
            &options,
            "harombe-audit-w",
        )
        .map_err(|e| fatal(format!("cannot start the audit writer thread: {e}")))?;
        Ok(Self {
            path,
            queue,
            readers,
            admin: Arc::new(Mutex::new(admin)),
            synced,
            approvals: Arc::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let readers = self.readers.clone();
        blocking(move || readers.with(f)).await
    }

    pub(crate) async fn admin<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let admin = self.admin.clone();
        blocking(move || f(&mut admin.lock().unwrap_or_else(|e| e.into_inner()))).await
    }
}

pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| fatal(format!("storage task failed: {e}")))?
}

/// Maps a SQLite error to the store's vocabulary.
pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        let text = msg.clone().unwrap_or_else(|| f.to_string());
        match f.code {
            ErrorCode::DiskFull => return StoreError::Full(text),
            ErrorCode::ReadOnly => return StoreError::ReadOnly(text),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return StoreError::Database {
                    backend: Backend::Sqlite,
                    message: text,
                    retriable: true,
                };
            }
            _ => {}
        }
    }
    fatal(e.to_string())
}

fn not_audit_db(path: &Path, problem: impl Into<String>) -> StoreError {
    StoreError::NotAnAuditDatabase {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

/// Refuses anything that is not an SQLite file before SQLite touches it.
fn check_header(path: &Path) -> Result<(), StoreError> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(not_audit_db(path, format!("cannot be read: {e}"))),
    };
    let mut head = [0u8; 16];
    let n = f
        .read(&mut head)
        .map_err(|e| not_audit_db(path, format!("cannot be read: {e}")))?;
    if n == 0 {
        return Ok(());
    }
    if n < 16 || &head != SQLITE_HEADER {
        return Err(not_audit_db(
            path,
            "it is not an SQLite database; it was left untouched",
        ));
    }
    Ok(())
}

pub(crate) fn open_conn(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err)?;
    Ok(conn)
}

fn open_err(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => not_audit_db(
            path,
            "it is not an SQLite database (or it is corrupt); it was left untouched",
        ),
        Some(rusqlite::ErrorCode::CannotOpen) if let Some(why) = unwritable(path) => {
            StoreError::ReadOnly(format!("{} cannot be written: {why}", path.display()))
        }
        _ => match db_err(e) {
            StoreError::Database {
                message, retriable, ..
            } => StoreError::Database {
                backend: Backend::Sqlite,
                message: format!("{}: {message}", path.display()),
                retriable,
            },
            other => other,
        },
    }
}

/// Why `path` cannot be opened for writing (an existing file) or created (a new one),
/// when that is the reason SQLite could not open it.
fn unwritable(path: &Path) -> Option<std::io::Error> {
    let existed = path.exists();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(!existed)
        .open(path)
    {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            None
        }
        Err(e) => Some(e),
    }
}

fn open_writer(path: &Path, max_bytes: Option<u64>) -> Result<Connection, StoreError> {
    check_header(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| fatal(format!("cannot create {}: {e}", dir.display())))?;
    }
    let conn = Connection::open(path).map_err(|e| open_err(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err)?;
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| open_err(path, e))?;
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| open_err(path, e))?;
    if app != 0 && app != APPLICATION_ID {
        return Err(not_audit_db(
            path,
            format!("its application id {app:#x} is not harombe's; it was left untouched"),
        ));
    }
    if app == 0 && tables > 0 {
        return Err(not_audit_db(
            path,
            "it holds another application's tables; it was left untouched",
        ));
    }
    if tables == 0 {
        // Only a new file takes a page size (an existing one keeps its own).
        conn.execute_batch(&format!("PRAGMA page_size = {NEW_PAGE_SIZE};"))
            .map_err(db_err)?;
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(fatal(format!(
            "{}: WAL mode is not available (journal mode {mode})",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -{WRITER_CACHE_KIB};
         PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES};
         PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
    ))
    .map_err(db_err)?;
    migrate(&conn, path)?;
    if let Some(max) = max_bytes {
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(db_err)?;
        let pages = (max / page.max(1) as u64).max(1);
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(db_err)?;
    }
    Ok(conn)
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);",
    )
    .map_err(db_err)?;
    let result = (|| {
        let newest: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        let known = migrate::SQLITE.last().map_or(0, |m| m.0);
        if newest > known {
            return Err(not_audit_db(
                path,
                format!("its schema version {newest} is newer than this harombe knows ({known})"),
            ));
        }
        for (version, ddl) in migrate::SQLITE.iter().filter(|(v, _)| *v > newest) {
            conn.execute_batch(ddl).map_err(db_err)?;
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, OffsetDateTime::now_utc().unix_timestamp()],
            )
            .map_err(db_err)?;
        }
        conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))
            .map_err(db_err)
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT;").map_err(db_err),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            Err(e)
        }
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Text(s) => s.to_sql(),
            Param::Int(i) => i.to_sql(),
        }
    }
}

fn read_head(conn: &Connection) -> Result<(u64, ChainHash), StoreError> {
    let (seq, hash): (i64, Vec<u8>) = conn
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(db_err)?;
    let hash = ChainHash::from_slice(&hash).ok_or_else(|| fatal("the chain head is damaged"))?;
    Ok((seq as u64, hash))
}

fn head_of(seq: u64, hash: ChainHash) -> Option<ChainHead> {
    (seq > 0).then_some(ChainHead { seq, hash })
}

fn rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut out = Vec::new();
    let mut rows = stmt.query(params).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        let seq: i64 = r.get(0).map_err(db_err)?;
        let hash = r
            .get_ref(1)
            .map_err(db_err)?
            .as_blob()
            .map_err(|e| db_err(e.into()))?;
        let body = r
            .get_ref(2)
            .map_err(db_err)?
            .as_blob()
            .map_err(|e| db_err(e.into()))?;
        out.push(sql::decode_row(Backend::Sqlite, seq, hash, body)?);
    }
    Ok(out)
}

/// Starts the checkpointer thread; a message on the returned channel asks for a passive
/// checkpoint (it never waits for readers or the writer), at most one per
/// `CHECKPOINT_PAUSE`. The thread ends when the
/// channel's sender is dropped, that is when the writer stops.
fn start_checkpointer(path: &Path) -> Result<Checkpointer, StoreError> {
    let conn = open_conn(path, false)?;
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(db_err)?;
    let (wake, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let thread = std::thread::Builder::new()
        .name("harombe-audit-c".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "audit WAL checkpoint failed");
                }
                // Commits during the pause leave one wake-up: one checkpoint (and its fsync)
                // serves them all instead of one per commit.
                std::thread::sleep(CHECKPOINT_PAUSE);
            }
        })
        .map_err(|e| fatal(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(Checkpointer { wake, thread })
}

/// The checkpointer thread and the channel that wakes it.
struct Checkpointer {
    wake: SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// The WAL file, held open to fsync what the writer connection committed.
struct Wal {
    path: PathBuf,
    file: std::fs::File,
}

impl Wal {
    fn open(db: &Path) -> Result<Self, StoreError> {
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        let path = PathBuf::from(path);
        // Read-only is enough for fsync on Linux, and keeps a read-only remount possible.
        let file = std::fs::File::open(&path).map_err(|e| {
            fatal(format!(
                "{}: cannot be opened to sync it: {e}",
                path.display()
            ))
        })?;
        Ok(Self { path, file })
    }

    /// `fdatasync` of the WAL: everything committed before this call is durable once it
    /// returns. Refuses a WAL file that is no longer the one at its path (SQLite only
    /// replaces it when every connection is closed, which the writer's never is). The
    /// error says what failed, naming the file.
    fn sync(&self) -> Result<(), String> {
        let failed = |e: &dyn std::fmt::Display| {
            format!("{} could not be synced ({e})", self.path.display())
        };
        let here = std::fs::metadata(&self.path).map_err(|e| failed(&e))?;
        let held = self.file.metadata().map_err(|e| failed(&e))?;
        if (here.dev(), here.ino()) != (held.dev(), held.ino()) {
            return Err(failed(
                &"the file was replaced while the store held it open",
            ));
        }
        self.file.sync_data().map_err(|e| failed(&e))
    }
}

/// A SQLite failure that retrying does not mend.
fn fatal(message: impl Into<String>) -> StoreError {
    StoreError::Database {
        backend: Backend::Sqlite,
        message: message.into(),
        retriable: false,
    }
}

/// The answer to events committed but not known to be durable after `cause`. Not
/// retriable, whatever the cause (a full disk too): after a failed fsync the kernel may
/// have dropped the pages, so the store refuses appends until it is reopened (SQLite then
/// reads back what the WAL really holds).
fn not_durable(cause: &str) -> StoreError {
    fatal(format!(
        "{cause}: these events are in the log but may not survive a crash; appends are \
         refused until harombe restarts"
    ))
}

/// The answer to events refused after `cause`.
fn refused_after(cause: &str) -> StoreError {
    fatal(format!(
        "appends are refused until harombe restarts: earlier, {cause}"
    ))
}

/// What is durable, shared by the store, the writer and the sync thread.
#[derive(Debug, Default)]
struct Synced {
    /// The last chain position known to be on disk.
    seq: AtomicU64,
    /// What made the first failed fsync fail: every later group is refused.
    failed: Mutex<Option<String>>,
    #[cfg(test)]
    hooks: tests::SyncHooks,
}

impl Synced {
    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The sync thread (`harombe-audit-s`): it makes committed groups durable, one
/// `fdatasync` of the WAL for every group committed before it began, and answers them.
struct Syncer {
    groups: std::sync::mpsc::Sender<Answers>,
    thread: std::thread::JoinHandle<()>,
    synced: Arc<Synced>,
}

impl Syncer {
    /// Opens the WAL and fsyncs it once (what an earlier run or the migrations left there
    /// is durable from here on, up to `head`), then starts the thread.
    fn start(db: &Path, head: u64) -> Result<Self, StoreError> {
        let wal = Wal::open(db)?;
        wal.sync().map_err(fatal)?;
        let synced = Arc::new(Synced {
            seq: AtomicU64::new(head),
            ..Synced::default()
        });
        let (groups, rx) = std::sync::mpsc::channel::<Answers>();
        let shared = synced.clone();
        let thread = std::thread::Builder::new()
            .name("harombe-audit-s".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut groups = vec![first];
                    groups.extend(rx.try_iter());
                    sync(&wal, &shared, groups);
                }
            })
            .map_err(|e| fatal(format!("cannot start the audit sync thread: {e}")))?;
        Ok(Self {
            groups,
            thread,
            synced,
        })
    }
}

/// One fsync for `groups` (all committed before it begins), then their answers.
fn sync(wal: &Wal, synced: &Synced, groups: Vec<Answers>) {
    #[cfg(test)]
    synced.hooks.before_sync();
    #[cfg(test)]
    let injected = synced.hooks.injected_failure(&wal.path);
    #[cfg(not(test))]
    let injected = None;
    let outcome = match synced.failure() {
        Some(cause) => Err(cause),
        None => injected.map_or_else(|| wal.sync(), Err),
    };
    match outcome {
        Ok(()) => {
            if let Some(last) = groups.iter().filter_map(Answers::last_seq).max() {
                synced.seq.fetch_max(last, Ordering::Release);
            }
            groups.into_iter().for_each(Answers::send);
        }
        Err(cause) => {
            let e = not_durable(&cause);
            synced
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(cause);
            for group in groups {
                group.fail(&e);
            }
        }
    }
}

struct SqliteCommitter {
    conn: Connection,
    /// Woken after each commit (a wake-up already pending is enough); stopped and joined
    /// when the writer stops, so a closed store has no connection left open.
    checkpoints: Checkpointer,
    /// Answers each committed group once the WAL holding it is synced.
    syncer: Syncer,
    /// Events committed since the checkpointer was last woken.
    since_wake: usize,
}

impl BlockingCommitter for SqliteCommitter {
    fn commit(
        &mut self,
        batch: Vec<Pending>,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        if let Some(cause) = self.syncer.synced.failure() {
            return Err(refused_after(&cause));
        }
        let results = commit_batch(&self.conn, &batch)?;
        self.since_wake += batch.len();
        if self.since_wake >= CHECKPOINT_EVERY_EVENTS {
            self.since_wake = 0;
            let _ = self.checkpoints.wake.try_send(());
        }
        Ok(results)
    }

    fn deliver(&mut self, answers: Answers) {
        if !answers.committed() {
            return answers.send();
        }
        if let Err(unsent) = self.syncer.groups.send(answers) {
            unsent.0.fail(&fatal("the audit sync thread has stopped"));
        }
    }

    fn finish(self) {
        // The sync thread answers what is still waiting; then the connections close.
        let Syncer { groups, thread, .. } = self.syncer;
        drop(groups);
        let _ = thread.join();
        let Checkpointer { wake, thread } = self.checkpoints;
        drop(wake);
        drop(self.conn);
        let _ = thread.join();
    }
}

const INSERT_SQL: &str = "INSERT INTO audit_events
     (seq, id, ts, agent, session, kind, target, outcome, decision, threat, body, hash)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (id) DO NOTHING";

/// Binds one row's twelve columns.
fn bind_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    first: usize,
    seq: u64,
    c: &Columns<'_>,
    body: &[u8],
    hash: &ChainHash,
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(first, sql::seq_param(seq))?;
    stmt.raw_bind_parameter(first + 1, c.id.as_bytes().as_slice())?;
    stmt.raw_bind_parameter(first + 2, c.ts)?;
    stmt.raw_bind_parameter(first + 3, c.agent)?;
    stmt.raw_bind_parameter(first + 4, c.session)?;
    stmt.raw_bind_parameter(first + 5, c.kind)?;
    stmt.raw_bind_parameter(first + 6, c.target)?;
    stmt.raw_bind_parameter(first + 7, c.outcome)?;
    stmt.raw_bind_parameter(first + 8, c.decision)?;
    stmt.raw_bind_parameter(first + 9, c.threat)?;
    stmt.raw_bind_parameter(first + 10, body)?;
    stmt.raw_bind_parameter(first + 11, hash.0.as_slice())
}

/// Runs one statement kept prepared on `conn` (no parameters, no rows).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// An immediate write transaction whose `BEGIN`, `COMMIT` and `ROLLBACK` stay prepared
/// on the writer's connection: a single-event commit otherwise parses them every time.
/// Dropped without [`WriteTx::commit`], it rolls back.
struct WriteTx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> WriteTx<'c> {
    fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        run_cached(conn, "BEGIN IMMEDIATE").map_err(db_err)?;
        Ok(Self { conn, open: true })
    }

    fn commit(mut self) -> Result<(), StoreError> {
        run_cached(self.conn, "COMMIT").map_err(db_err)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        // Still open after an error on the way or a failed COMMIT (which may or may not
        // have ended it): a ROLLBACK that finds no transaction fails and changes nothing.
        if self.open {
            let _ = run_cached(self.conn, "ROLLBACK");
        }
    }
}

fn commit_batch(
    conn: &Connection,
    batch: &[Pending],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let tx = WriteTx::begin(conn)?;
    let (mut seq, mut prev) = read_head(conn)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut hourly: HashMap<(i64, &'static str), i64> = HashMap::new();
    insert_rows(conn, batch, &mut seq, &mut prev, &mut hourly, &mut results)?;
    let mut bump = conn
        .prepare_cached(
            "INSERT INTO audit_hourly (hour, kind, count) VALUES (?1, ?2, ?3)
             ON CONFLICT (hour, kind) DO UPDATE SET count = count + excluded.count",
        )
        .map_err(db_err)?;
    for ((hour, kind), n) in hourly {
        bump.execute(params![hour, kind, n]).map_err(db_err)?;
    }
    conn.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")
        .and_then(|mut s| s.execute(params![sql::seq_param(seq), prev.0.as_slice()]))
        .map_err(db_err)?;
    tx.commit()?;
    Ok(results)
}

/// Inserts rows one prepared statement at a time (single-row inserts need no statement
/// journal), refusing duplicates without failing the batch.
fn insert_rows(
    tx: &Connection,
    rows: &[Pending],
    seq: &mut u64,
    prev: &mut ChainHash,
    hourly: &mut HashMap<(i64, &'static str), i64>,
    results: &mut Vec<Result<Appended, StoreError>>,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(INSERT_SQL).map_err(db_err)?;
    for p in rows {
        let c = Columns::of(&p.event);
        let next = *seq + 1;
        let hash = prev.next(next, &p.body);
        bind_row(&mut stmt, 1, next, &c, &p.body, &hash).map_err(db_err)?;
        if stmt.raw_execute().map_err(db_err)? == 0 {
            results.push(Err(StoreError::Duplicate { id: p.event.id }));
            continue;
        }
        (*seq, *prev) = (next, hash);
        *hourly.entry((sql::hour_of(c.ts), c.kind)).or_default() += 1;
        results.push(Ok(Appended { seq: next, hash }));
    }
    Ok(())
}

#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn with<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path, true)?,
        };
        let r = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        r
    }
}

fn latest_checkpoint(conn: &Connection) -> Result<Checkpoint, StoreError> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, prev_hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_err)?;
    Ok(match row {
        Some((seq, h)) => Checkpoint {
            seq: seq as u64,
            prev_hash: ChainHash::from_slice(&h).unwrap_or(ChainHash::GENESIS),
        },
        None => Checkpoint::START,
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append(&self, event: AuditEvent) -> Result<Appended, StoreError> {
        self.queue.append(event).await
    }

    async fn append_many(&self, events: Vec<AuditEvent>) -> Vec<Result<Appended, StoreError>> {
        self.queue.append_many(events).await
    }

    async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.read(move |c| {
            let mut found = rows(
                c,
                "SELECT seq, hash, body FROM audit_events WHERE id = ?1",
                params![id.as_uuid().as_bytes().as_slice()],
            )?;
            Ok(found.pop())
        })
        .await
    }

    async fn query(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<EventPage, StoreError> {
        let (q, params) = sql::page_query(Dialect::Sqlite, filter, &page);
        let events = self
            .read(move |c| rows(c, &q, rusqlite::params_from_iter(params)))
            .await?;
        Ok(sql::into_page(events, &page))
    }

    async fn summaries(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<Vec<harombe_core::EventSummary>, StoreError> {
        let (q, params) = sql::summary_query(Dialect::Sqlite, filter, &page);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&q).map_err(db_err)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params))
                .map_err(db_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db_err)? {
                let seq: i64 = r.get(0).map_err(db_err)?;
                let id: [u8; 16] = r.get(1).map_err(db_err)?;
                let kind: String = r.get(3).map_err(db_err)?;
                let outcome: String = r.get(4).map_err(db_err)?;
                out.push(sql::summary_row(
                    Backend::Sqlite,
                    seq,
                    uuid::Uuid::from_bytes(id),
                    r.get(2).map_err(db_err)?,
                    &kind,
                    &outcome,
                    r.get(5).map_err(db_err)?,
                    r.get(6).map_err(db_err)?,
                    r.get(7).map_err(db_err)?,
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn count(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let (q, params) = sql::count_query(Dialect::Sqlite, filter);
        self.read(move |c| {
            let n: i64 = c
                .query_row(&q, rusqlite::params_from_iter(params), |r| r.get(0))
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
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
        let (from, to) = (first.unix_timestamp(), last.unix_timestamp() + 3600);
        let counts = self
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT hour, SUM(count) FROM audit_hourly
                         WHERE hour >= ?1 AND hour < ?2 AND (?3 IS NULL OR kind = ?3) GROUP BY hour",
                    )
                    .map_err(db_err)?;
                let mut map = HashMap::new();
                let mut rows = stmt.query(params![from, to, kind.map(EventKind::as_str)]).map_err(db_err)?;
                while let Some(r) = rows.next().map_err(db_err)? {
                    let (h, n): (i64, i64) = (r.get(0).map_err(db_err)?, r.get(1).map_err(db_err)?);
                    map.insert(h, n as u64);
                }
                Ok(map)
            })
            .await?;
        Ok(hours
            .into_iter()
            .map(|hour| HourBucket {
                hour,
                count: counts.get(&hour.unix_timestamp()).copied().unwrap_or(0),
            })
            .collect())
    }

    async fn read_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = i64::from(limit.clamp(1, PageRequest::MAX_LIMIT));
        // Consumers (SIEM export, alerting) only see what is on disk: an event they shipped
        // can then not vanish in a power cut and have its position taken by another.
        let synced = self.synced.seq.load(Ordering::Acquire);
        self.read(move |c| {
            rows(
                c,
                "SELECT seq, hash, body FROM audit_events WHERE seq > ?1 AND seq <= ?3
                 ORDER BY seq LIMIT ?2",
                params![sql::seq_param(after), limit, sql::seq_param(synced)],
            )
        })
        .await
    }

    async fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        validate_cursor_name(name)?;
        let name = name.to_owned();
        self.read(move |c| {
            let seq: Option<i64> = c
                .query_row(
                    "SELECT seq FROM consumer_cursors WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            Ok(seq.unwrap_or(0) as u64)
        })
        .await
    }

    async fn commit_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        validate_cursor_name(name)?;
        let name = name.to_owned();
        self.admin(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
            let (head, _) = read_head(&tx)?;
            if seq > head {
                return Err(StoreError::InvalidInput {
                    field: "cursor",
                    problem: format!("seq {seq} is past the head of the log ({head})"),
                });
            }
            tx.execute(
                "INSERT INTO consumer_cursors (name, seq, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
                params![name, sql::seq_param(seq), OffsetDateTime::now_utc().unix_timestamp()],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.read(|c| {
            // One read transaction: a consistent snapshot of head and rows.
            c.execute_batch("BEGIN").map_err(db_err)?;
            let result = (|| {
                let start = latest_checkpoint(c)?;
                let (head_seq, head_hash) = read_head(c)?;
                let head = head_of(head_seq, head_hash);
                let mut verifier = ChainVerifier::new(start);
                let mut stmt = c
                    .prepare_cached("SELECT seq, body, hash FROM audit_events WHERE seq >= ?1 ORDER BY seq LIMIT ?2")
                    .map_err(db_err)?;
                let mut from = start.seq;
                loop {
                    let mut batch: Vec<(u64, Vec<u8>, ChainHash)> = Vec::with_capacity(VERIFY_BATCH as usize);
                    let mut q = stmt.query(params![sql::seq_param(from), VERIFY_BATCH]).map_err(db_err)?;
                    while let Some(r) = q.next().map_err(db_err)? {
                        let seq: i64 = r.get(0).map_err(db_err)?;
                        let body: Vec<u8> = r.get(1).map_err(db_err)?;
                        let hash: Vec<u8> = r.get(2).map_err(db_err)?;
                        let hash = ChainHash::from_slice(&hash).unwrap_or_default();
                        batch.push((seq as u64, body, hash));
                    }
                    let raw: Vec<RawRow<'_>> =
                        batch.iter().map(|(seq, body, hash)| RawRow { seq: *seq, body, hash: *hash }).collect();
                    let ok = verifier.feed(&raw);
                    match batch.last() {
                        Some(last) if ok && batch.len() as i64 == VERIFY_BATCH => from = last.0 + 1,
                        _ => break,
                    }
                }
                let (checked, problem) = verifier.finish(head);
                Ok(VerifyReport { checked, start, head, problem })
            })();
            let _ = c.execute_batch("COMMIT");
            result
        })
        .await
    }

    async fn apply_retention(&self, before: OffsetDateTime) -> Result<RetentionReport, StoreError> {
        let cutoff = sql::micros(before);
        self.admin(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
            let (head_seq, head_hash) = read_head(&tx)?;
            let first_kept: Option<i64> = tx
                .query_row("SELECT MIN(seq) FROM audit_events WHERE ts >= ?1", params![cutoff], |r| r.get(0))
                .map_err(db_err)?;
            let keep_from = first_kept.map_or(head_seq + 1, |s| s as u64);
            let first_row: Option<i64> =
                tx.query_row("SELECT MIN(seq) FROM audit_events", [], |r| r.get(0)).map_err(db_err)?;
            let Some(first_row) = first_row.map(|s| s as u64).filter(|&f| f < keep_from) else {
                return Ok(RetentionReport { deleted: 0, checkpoint: None });
            };
            let prev_hash = if keep_from > head_seq {
                head_hash
            } else {
                let h: Vec<u8> = tx
                    .query_row("SELECT hash FROM audit_events WHERE seq = ?1", params![sql::seq_param(keep_from - 1)], |r| r.get(0))
                    .map_err(db_err)?;
                ChainHash::from_slice(&h).unwrap_or_default()
            };
            let keep = sql::seq_param(keep_from);
            let removed: Vec<(i64, String, i64)> = {
                let mut stmt = tx.prepare(HOURLY_OF_REMOVED).map_err(db_err)?;
                let mapped = stmt
                    .query_map(params![keep], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(db_err)?;
                mapped.collect::<Result<_, _>>().map_err(db_err)?
            };
            for (hour, kind, n) in removed {
                tx.execute(
                    "UPDATE audit_hourly SET count = count - ?3 WHERE hour = ?1 AND kind = ?2",
                    params![hour, kind, n],
                )
                .map_err(db_err)?;
            }
            tx.execute("DELETE FROM audit_hourly WHERE count <= 0", []).map_err(db_err)?;
            let deleted = tx.execute("DELETE FROM audit_events WHERE seq < ?1", params![keep]).map_err(db_err)? as u64;
            let checkpoint = Checkpoint { seq: keep_from, prev_hash };
            tx.execute(
                "INSERT INTO audit_checkpoints (seq, prev_hash, deleted, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (seq) DO UPDATE SET deleted = deleted + excluded.deleted",
                params![keep, prev_hash.0.as_slice(), deleted as i64, OffsetDateTime::now_utc().unix_timestamp()],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            tracing::info!(deleted, first_row, checkpoint_seq = keep_from, "audit retention applied");
            Ok(RetentionReport { deleted, checkpoint: Some(checkpoint) })
        })
        .await
    }

    async fn head(&self) -> Result<Option<ChainHead>, StoreError> {
        self.read(|c| read_head(c).map(|(s, h)| head_of(s, h)))
            .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.queue.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Condvar;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    use harombe_core::{AuditEvent, EventKind, Outcome};

    use super::*;

    /// Lets a test hold the sync thread before its fsync, or make the next fsync fail.
    #[derive(Debug, Default)]
    pub(super) struct SyncHooks {
        held: Mutex<bool>,
        released: Condvar,
        fail_next: AtomicBool,
    }

    impl SyncHooks {
        pub(super) fn before_sync(&self) {
            let mut held = self.held.lock().unwrap();
            while *held {
                held = self.released.wait(held).unwrap();
            }
        }

        pub(super) fn injected_failure(&self, path: &Path) -> Option<String> {
            self.fail_next.swap(false, Ordering::SeqCst).then(|| {
                let e = std::io::Error::from_raw_os_error(5);
                format!("{} could not be synced ({e})", path.display())
            })
        }

        fn hold(&self, on: bool) {
            *self.held.lock().unwrap() = on;
            self.released.notify_all();
        }
    }

    fn event(note: &str) -> AuditEvent {
        let mut e = AuditEvent::new(
            OffsetDateTime::now_utc(),
            EventKind::ToolCall,
            Outcome::Success,
        );
        e.error = Some(note.into());
        e
    }

    /// A committed group is visible to queries at once, but its producer is answered and
    /// consumers reading after a cursor see it only once the WAL holding it is synced.
    #[tokio::test]
    async fn an_append_is_answered_and_consumed_only_once_its_wal_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("audit.db"), StoreOptions::default())
                .await
                .unwrap(),
        );
        store.synced.hooks.hold(true);
        let e = event("held");
        let id = e.id;
        let s = store.clone();
        let append = tokio::spawn(async move { s.append(e).await });
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.get(id).await.unwrap().is_none() {
            assert!(Instant::now() < deadline, "the event was never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !append.is_finished(),
            "the append was answered before its WAL was synced"
        );
        assert!(
            store.read_after(0, 10).await.unwrap().is_empty(),
            "a consumer saw an event that was not yet durable"
        );
        store.synced.hooks.hold(false);
        assert_eq!(append.await.unwrap().unwrap().seq, 1);
        let consumed = store.read_after(0, 10).await.unwrap();
        assert_eq!(consumed.len(), 1);
        assert_eq!(consumed[0].event.id, id);
        store.close().await.unwrap();
    }

    /// A failed fsync fails the appends it covered and refuses every later one (the
    /// kernel may have dropped the pages, so a later fsync proves nothing); reopened, the
    /// store holds what the WAL really holds and appends again.
    #[tokio::test]
    async fn a_failed_sync_fails_its_appends_and_refuses_more_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let store = SqliteStore::open(&path, StoreOptions::default())
            .await
            .unwrap();
        store.append(event("before")).await.unwrap();
        store.synced.hooks.fail_next.store(true, Ordering::SeqCst);
        let unsynced = event("unsynced");
        let id = unsynced.id;
        let err = store.append(unsynced).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("audit.db-wal could not be synced (Input/output error")
                && text.contains("in the log but may not survive a crash"),
            "{text}"
        );
        assert!(!err.is_retriable(), "{err:?}");
        let refused = store.append(event("after")).await.unwrap_err();
        let why = refused.to_string();
        assert!(
            why.contains("appends are refused until harombe restarts")
                && why.contains("audit.db-wal could not be synced"),
            "{why}"
        );
        assert!(!refused.is_retriable(), "{refused:?}");
        assert_eq!(store.read_after(0, 10).await.unwrap().len(), 1);
        store.close().await.unwrap();

        let store = SqliteStore::open(&path, StoreOptions::default())
            .await
            .unwrap();
        assert!(store.get(id).await.unwrap().is_some());
        assert!(store.verify().await.unwrap().is_intact());
        assert_eq!(store.append(event("again")).await.unwrap().seq, 3);
        assert_eq!(store.read_after(0, 10).await.unwrap().len(), 3);
        store.close().await.unwrap();
    }

    fn pending(i: u64) -> Pending {
        let mut event = AuditEvent::new(
            OffsetDateTime::now_utc(),
            EventKind::ToolCall,
            Outcome::Success,
        );
        event.error = Some(format!("event {i}"));
        let body = event.encode().unwrap();
        Pending { event, body }
    }

    /// A batch that fails part-way leaves nothing behind and no transaction open (a
    /// statement error does not end the transaction by itself): the writer's next batch
    /// commits, and the chain head counts only what was committed.
    #[test]
    fn a_failed_batch_is_rolled_back_and_the_next_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("audit.db"), None).unwrap();
        commit_batch(&conn, &[pending(0), pending(1)]).unwrap();
        conn.execute_batch(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON audit_events WHEN NEW.seq = 4
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
        let err = commit_batch(&conn, &[pending(2), pending(3)]).unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(
            conn.is_autocommit(),
            "the failed batch left its transaction open"
        );
        assert_eq!(read_head(&conn).unwrap().0, 2);
        conn.execute_batch("DROP TRIGGER refuse").unwrap();
        let results = commit_batch(&conn, &[pending(2), pending(3)]).unwrap();
        assert_eq!(results[1].as_ref().unwrap().seq, 4);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 4);
    }
}
