//! SQLite-specific failure modes: a corrupt or foreign file is refused and left untouched;
//! a full database fails the append visibly and loses nothing already acknowledged.

use harombe_core::{AuditEvent, AuditStore, EventFilter, EventKind, Outcome, StoreError};
use harombe_store::{SqliteStore, StoreOptions};
use time::macros::datetime;

fn event(i: u64) -> AuditEvent {
    let mut e = AuditEvent::new(
        datetime!(2026-02-01 00:00 UTC) + time::Duration::seconds(i as i64),
        EventKind::ToolCall,
        Outcome::Success,
    )
    .with_target(format!("tool-{i}"));
    e.arguments = Some(serde_json::json!({ "payload": "x".repeat(200), "i": i }));
    e
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotAnAuditDatabase { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "names the file: {msg}"
    );
    assert!(msg.contains("not an SQLite database"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "never overwritten");
}

#[tokio::test]
async fn a_corrupt_sqlite_file_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    // A valid header followed by garbage pages.
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend((0..8192u32).map(|i| (i * 13) as u8));
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "names the file: {msg}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "never overwritten");
}

#[tokio::test]
async fn another_applications_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotAnAuditDatabase { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("another application"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_fails_appends_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let limited = StoreOptions {
        max_db_bytes: Some(256 * 1024),
        batch_max: 16,
        ..Default::default()
    };
    let store = SqliteStore::open(&path, limited).await.unwrap();
    let mut acked = Vec::new();
    let mut full = None;
    for i in 0..10_000 {
        let e = event(i);
        let id = e.id;
        match store.append(e).await {
            Ok(_) => acked.push(id),
            Err(err) => {
                full = Some(err);
                break;
            }
        }
    }
    let err = full.expect("the size limit must be reached");
    assert!(matches!(err, StoreError::Full(_)), "{err:?}");
    assert!(err.to_string().contains("full"), "{err}");
    assert!(err.is_retriable());
    assert!(
        acked.len() > 100,
        "some events fit before the limit: {}",
        acked.len()
    );
    // Later appends keep failing visibly rather than vanishing.
    assert!(store.append(event(20_000)).await.is_err());
    store.close().await.unwrap();
    drop(store);

    let reopened = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        reopened.count(&EventFilter::default()).await.unwrap(),
        acked.len() as u64
    );
    for id in &acked {
        assert!(
            reopened.get(*id).await.unwrap().is_some(),
            "acknowledged event {id} lost"
        );
    }
    let report = reopened.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    // With room again, the chain continues.
    reopened.append(event(30_000)).await.unwrap();
    assert!(reopened.verify().await.unwrap().is_intact());
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)")
        .unwrap();
    let err = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

/// A tmpfs mounted over a test directory, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a small tmpfs at `dir`, or says why it cannot (it needs root with the
    /// capability to mount, which not every test machine grants).
    fn mount(dir: &std::path::Path) -> Result<Self, String> {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Self(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn remount(&self, mode: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_fails_appends_visibly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Root ignores file permissions, so the directory is made read-only the way an
    // operator's mount would: a tmpfs remounted read-only.
    let mnt = match Tmpfs::mount(dir.path()) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs for a read-only directory ({why})");
            return;
        }
    };
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        let e = event(i);
        acked.push(e.id);
        store.append(e).await.unwrap();
    }
    store.close().await.unwrap();
    drop(store);

    mnt.remount("ro");
    // Whether refused at open or at the append, the caller gets an error.
    match SqliteStore::open(&path, StoreOptions::default()).await {
        Err(err) => assert!(err.to_string().contains("read"), "{err}"),
        Ok(store) => {
            let err = store
                .append(event(100))
                .await
                .expect_err("an append to a read-only directory must fail");
            assert!(err.to_string().contains("read"), "{err}");
            store.close().await.unwrap();
        }
    }
    let fresh = dir.path().join("new.db");
    let err = SqliteStore::open(&fresh, StoreOptions::default())
        .await
        .expect_err("a new database in a read-only directory must be refused");
    assert!(err.to_string().contains("new.db"), "{err}");

    mnt.remount("rw");
    let reopened = SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        reopened.count(&EventFilter::default()).await.unwrap(),
        acked.len() as u64
    );
    for id in &acked {
        assert!(
            reopened.get(*id).await.unwrap().is_some(),
            "event {id} lost"
        );
    }
    assert!(reopened.verify().await.unwrap().is_intact());
    reopened.close().await.unwrap();
}
