//! The AuditStore conformance suite: the same cases against SQLite, PostgreSQL and the
//! in-memory fake. Each backend must agree with `EventFilter::matches` (the reference
//! semantics) on every filter, page and count.

use std::collections::BTreeMap;
use std::sync::Arc;

use harombe_core::chain::ChainProblem;
use harombe_core::fake::MemoryAuditStore;
use harombe_core::{
    AgentId, AuditEvent, AuditStore, Decision, EventFilter, EventKind, EventSummary, Order,
    Outcome, PageRequest, SessionId, StoreError, ThreatLevel, Verdict, store::hour_floor,
};
use harombe_store::{FullPolicy, Location, StoreOptions};
use harombe_testkit::TestDb;
use time::OffsetDateTime;
use time::macros::datetime;

/// A backend under test; `open` can be called again to reopen the same log.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
    Memory(Arc<MemoryAuditStore>),
}

impl Backend {
    async fn sqlite() -> Self {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }
    async fn postgres() -> Self {
        Backend::Postgres(TestDb::new().await)
    }
    async fn memory() -> Self {
        Backend::Memory(Arc::new(MemoryAuditStore::new()))
    }

    fn location(&self) -> Option<Location> {
        match self {
            Backend::Sqlite(dir) => Some(Location::Sqlite(dir.path().join("audit.db"))),
            Backend::Postgres(db) => Some(Location::Postgres(db.url.clone().into())),
            Backend::Memory(_) => None,
        }
    }

    async fn open_with(&self, options: StoreOptions) -> Arc<dyn AuditStore> {
        match (self, self.location()) {
            (Backend::Memory(m), _) => m.clone(),
            (_, Some(loc)) => harombe_store::open(&loc, options)
                .await
                .expect("open store"),
            _ => unreachable!(),
        }
    }

    async fn open(&self) -> Arc<dyn AuditStore> {
        self.open_with(StoreOptions::default()).await
    }

    fn is_durable(&self) -> bool {
        !matches!(self, Backend::Memory(_))
    }

    /// Runs raw SQL against the backend's database (tamper tests).
    async fn tamper(&self, sql_text: &str) {
        match self {
            Backend::Sqlite(dir) => {
                let c = rusqlite_conn(&dir.path().join("audit.db"));
                c.execute_batch(sql_text).unwrap();
            }
            Backend::Postgres(db) => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql_text.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Backend::Memory(_) => unreachable!("no SQL behind the memory store"),
        }
    }
}

fn rusqlite_conn(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

const T0: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

/// A varied, deterministic set of events spread over six hours.
fn corpus(n: usize) -> Vec<AuditEvent> {
    let agents = ["alpha", "beta", "gamma"];
    let tools = [
        "fs.read",
        "fs.write",
        "http.get",
        "x'; DROP TABLE audit_events; --",
    ];
    (0..n)
        .map(|i| {
            let at = T0 + time::Duration::seconds((i as i64 * 97) % (6 * 3600));
            let kind = EventKind::ALL[i % 5];
            let outcome = Outcome::ALL[i % 4];
            let mut e = AuditEvent::new(at, kind, outcome)
                .with_agent(AgentId::new(agents[i % 3]).unwrap())
                .with_target(tools[i % 4]);
            if i % 2 == 0 {
                e.session = Some(SessionId::new(format!("s{}", i % 6)).unwrap());
            }
            if i % 3 == 0 {
                e.verdict = Some(Verdict {
                    decision: Decision::ALL[(i / 3) % 3],
                    reasons: vec![format!("r{i}")],
                });
            }
            if i % 4 != 3 {
                e.threat_level = Some(ThreatLevel::ALL[(i / 2) % 5]);
            }
            e.arguments = Some(
                serde_json::json!({ "i": i, "q": "' OR 1=1 --", "nested": { "k": [i, "v"] } }),
            );
            e.correlation_id = Some(format!("corr-{}'\"", i % 10));
            e.error = (outcome == Outcome::Failure)
                .then(|| "boom\"); DELETE FROM audit_head; --".to_string());
            e.duration_us = Some(i as u64 * 10);
            e.bytes_in = i as u64;
            e.scores.insert("anomaly".into(), (i % 10) as f64 / 10.0);
            e
        })
        .collect()
}

async fn append_all(store: &dyn AuditStore, events: &[AuditEvent]) {
    for r in store.append_many(events.to_vec()).await {
        r.expect("append");
    }
}

fn filters() -> Vec<EventFilter> {
    let mut v = vec![EventFilter::default()];
    v.push(EventFilter {
        agent: Some(AgentId::new("beta").unwrap()),
        ..Default::default()
    });
    v.push(EventFilter {
        session: Some(SessionId::new("s2").unwrap()),
        ..Default::default()
    });
    v.push(EventFilter {
        kind: Some(EventKind::Decision),
        ..Default::default()
    });
    v.push(EventFilter {
        target: Some("x'; DROP TABLE audit_events; --".into()),
        ..Default::default()
    });
    v.push(EventFilter {
        target: Some("' OR '1'='1".into()),
        ..Default::default()
    });
    v.push(EventFilter {
        outcome: Some(Outcome::Denied),
        ..Default::default()
    });
    v.push(EventFilter {
        decision: Some(Decision::Hold),
        ..Default::default()
    });
    v.push(EventFilter {
        min_threat: Some(ThreatLevel::High),
        ..Default::default()
    });
    v.push(EventFilter {
        since: Some(T0 + time::Duration::hours(1)),
        until: Some(T0 + time::Duration::hours(2)),
        ..Default::default()
    });
    v.push(EventFilter {
        agent: Some(AgentId::new("alpha").unwrap()),
        kind: Some(EventKind::ToolCall),
        min_threat: Some(ThreatLevel::Low),
        since: Some(T0 + time::Duration::minutes(30)),
        ..Default::default()
    });
    v
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::sqlite().await).await; } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::postgres().await).await; } )* }
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::memory().await).await; } )* }
    };
}

conformance!(
    append_get_and_reopen,
    concurrent_producers_make_one_chain,
    queries_match_reference_semantics,
    summaries_match_whole_events,
    pagination_walks_every_event_once,
    injection_strings_are_data,
    hourly_counts_match_reference,
    consumer_cursors,
    retention_keeps_chain_verifiable,
    duplicates_and_invalid_events_are_refused_alone,
    small_groups_keep_results_in_order,
    close_drains_and_refuses,
    reject_policy_never_drops_silently,
);

async fn append_get_and_reopen(b: Backend) {
    let store = b.open().await;
    assert_eq!(store.head().await.unwrap(), None);
    let events = corpus(20);
    let mut last = None;
    for (i, e) in events.iter().enumerate() {
        let a = store.append(e.clone()).await.unwrap();
        assert_eq!(a.seq, i as u64 + 1);
        last = Some(a);
    }
    let head = store.head().await.unwrap().unwrap();
    assert_eq!((head.seq, head.hash), (20, last.unwrap().hash));
    for (i, e) in events.iter().enumerate() {
        let got = store.get(e.id).await.unwrap().expect("stored event");
        assert_eq!(got.event, *e);
        assert_eq!(got.seq, i as u64 + 1);
    }
    assert!(
        store
            .get(harombe_core::EventId::new())
            .await
            .unwrap()
            .is_none()
    );
    store.close().await.unwrap();
    if b.is_durable() {
        let again = b.open().await;
        assert_eq!(again.count(&EventFilter::default()).await.unwrap(), 20);
        assert_eq!(again.head().await.unwrap(), Some(head));
        let next = again.append(corpus(21).pop().unwrap()).await.unwrap();
        assert_eq!(next.seq, 21);
        assert!(again.verify().await.unwrap().is_intact());
    }
}

async fn concurrent_producers_make_one_chain(b: Backend) {
    let store = b.open().await;
    let events = corpus(64 * 20);
    let mut tasks = Vec::new();
    for chunk in events.chunks(20) {
        let store = store.clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for e in chunk {
                seqs.push(store.append(e).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one producer's events keep their order"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=events.len() as u64).collect::<Vec<_>>());
    let report = store.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, events.len() as u64);
}

async fn summaries_match_whole_events(b: Backend) {
    let store = b.open().await;
    let events = corpus(200);
    append_all(&*store, &events).await;
    for f in filters() {
        for page in [
            PageRequest::newest(10_000),
            PageRequest::newest(7),
            PageRequest::oldest(1),
        ] {
            let whole: Vec<EventSummary> = store
                .query(&f, page)
                .await
                .unwrap()
                .events
                .iter()
                .map(EventSummary::of)
                .collect();
            let got = store.summaries(&f, page).await.unwrap();
            assert_eq!(got, whole, "filter {f:?}, page {page:?}");
        }
    }
}

async fn queries_match_reference_semantics(b: Backend) {
    let store = b.open().await;
    let events = corpus(300);
    append_all(&*store, &events).await;
    for f in filters() {
        let expected: Vec<_> = events
            .iter()
            .rev()
            .filter(|e| f.matches(e))
            .map(|e| e.id)
            .collect();
        let page = store.query(&f, PageRequest::newest(10_000)).await.unwrap();
        let got: Vec<_> = page.events.iter().map(|s| s.event.id).collect();
        assert_eq!(got, expected, "filter {f:?}");
        assert_eq!(page.next_cursor, None);
        assert_eq!(
            store.count(&f).await.unwrap(),
            expected.len() as u64,
            "count {f:?}"
        );
        assert!(
            !expected.is_empty() || f.target.is_some(),
            "filter {f:?} should match something"
        );
    }
}

async fn pagination_walks_every_event_once(b: Backend) {
    let store = b.open().await;
    let events = corpus(101);
    append_all(&*store, &events).await;
    for order in [Order::NewestFirst, Order::OldestFirst] {
        let f = EventFilter {
            agent: Some(AgentId::new("gamma").unwrap()),
            ..Default::default()
        };
        let mut expected: Vec<_> = events
            .iter()
            .filter(|e| f.matches(e))
            .map(|e| e.id)
            .collect();
        if order == Order::NewestFirst {
            expected.reverse();
        }
        let mut got = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = store
                .query(
                    &f,
                    PageRequest {
                        limit: 7,
                        cursor,
                        order,
                    },
                )
                .await
                .unwrap();
            assert!(page.events.len() <= 7);
            got.extend(page.events.iter().map(|s| s.event.id));
            pages += 1;
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(got, expected, "{order:?}");
        assert_eq!(pages, expected.len().div_ceil(7));
    }
}

async fn injection_strings_are_data(b: Backend) {
    let store = b.open().await;
    let nasty = [
        "'; DROP TABLE audit_events; --",
        "\" OR \"\"=\"",
        "1; DELETE FROM audit_head",
        "%' OR 1=1 --",
        "\\'; SELECT pg_sleep(10); --",
        "x\u{1}y\u{7f}",
    ];
    let mut ids = Vec::new();
    for (i, s) in nasty.iter().enumerate() {
        let mut e = AuditEvent::new(
            T0 + time::Duration::seconds(i as i64),
            EventKind::ToolCall,
            Outcome::Success,
        )
        .with_target(*s)
        .with_error(*s);
        e.correlation_id = Some((*s).to_string());
        e.arguments = Some(serde_json::json!({ *s: *s }));
        e.scores.insert((*s).to_string(), 0.5);
        e.details = Some(serde_json::json!([s]));
        ids.push(e.id);
        store.append(e).await.unwrap();
    }
    for (s, id) in nasty.iter().zip(&ids) {
        let f = EventFilter {
            target: Some((*s).to_string()),
            ..Default::default()
        };
        let page = store.query(&f, PageRequest::newest(100)).await.unwrap();
        assert_eq!(
            page.events.iter().map(|e| e.event.id).collect::<Vec<_>>(),
            vec![*id],
            "{s:?}"
        );
        assert_eq!(page.events[0].event.error.as_deref(), Some(*s));
    }
    assert_eq!(
        store.count(&EventFilter::default()).await.unwrap(),
        nasty.len() as u64
    );
    assert!(store.verify().await.unwrap().is_intact());
    assert!(
        store
            .cursor("'; DROP TABLE consumer_cursors; --")
            .await
            .is_err()
    );
    // NUL cannot be indexed by every backend: refused up front, with the field named.
    let e = AuditEvent::new(T0, EventKind::ToolCall, Outcome::Success).with_target("a\u{0}b");
    match store.append(e).await {
        Err(StoreError::InvalidEvent(inv)) => assert_eq!(inv.field, "target"),
        other => panic!("{other:?}"),
    }
}

async fn hourly_counts_match_reference(b: Backend) {
    let store = b.open().await;
    let events = corpus(400);
    append_all(&*store, &events).await;
    let since = T0 - time::Duration::minutes(30);
    let until = T0 + time::Duration::hours(7);
    for kind in [None, Some(EventKind::ToolCall), Some(EventKind::Auth)] {
        let buckets = store.hourly_counts(since, until, kind).await.unwrap();
        assert_eq!(buckets.len(), 8, "one bucket per hour, zeros included");
        let mut expected: BTreeMap<OffsetDateTime, u64> = BTreeMap::new();
        for e in events.iter().filter(|e| kind.is_none_or(|k| e.kind == k)) {
            *expected.entry(hour_floor(e.timestamp)).or_default() += 1;
        }
        for bucket in &buckets {
            assert_eq!(
                bucket.count,
                expected.get(&bucket.hour).copied().unwrap_or(0),
                "{kind:?} {}",
                bucket.hour
            );
        }
        assert_eq!(
            buckets.iter().map(|b| b.count).sum::<u64>(),
            expected.values().sum::<u64>()
        );
    }
    assert!(matches!(
        store.hourly_counts(until, since, None).await,
        Err(StoreError::InvalidInput { .. })
    ));
}

async fn consumer_cursors(b: Backend) {
    let store = b.open().await;
    append_all(&*store, &corpus(30)).await;
    assert_eq!(store.cursor("siem.splunk").await.unwrap(), 0);
    let first = store.read_after(0, 10).await.unwrap();
    assert_eq!(
        first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    store.commit_cursor("siem.splunk", 10).await.unwrap();
    assert_eq!(store.cursor("siem.splunk").await.unwrap(), 10);
    assert_eq!(
        store.cursor("alerts").await.unwrap(),
        0,
        "cursors are independent"
    );
    let next = store
        .read_after(store.cursor("siem.splunk").await.unwrap(), 100)
        .await
        .unwrap();
    assert_eq!(next.first().map(|e| e.seq), Some(11));
    assert_eq!(next.len(), 20);
    assert!(matches!(
        store.commit_cursor("siem.splunk", 31).await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.commit_cursor("Bad Name", 1).await,
        Err(StoreError::InvalidInput { .. })
    ));
    store.commit_cursor("siem.splunk", 30).await.unwrap();
    store.close().await.unwrap();
    if b.is_durable() {
        assert_eq!(b.open().await.cursor("siem.splunk").await.unwrap(), 30);
    }
}

async fn retention_keeps_chain_verifiable(b: Backend) {
    let store = b.open().await;
    // Strictly increasing timestamps, one per minute.
    let events: Vec<AuditEvent> = (0..120)
        .map(|i| {
            AuditEvent::new(
                T0 + time::Duration::minutes(i),
                EventKind::ALL[(i % 3) as usize],
                Outcome::Success,
            )
            .with_target(format!("t{i}"))
        })
        .collect();
    append_all(&*store, &events).await;
    let head = store.head().await.unwrap();
    let cutoff = T0 + time::Duration::minutes(90);
    let report = store.apply_retention(cutoff).await.unwrap();
    assert_eq!(report.deleted, 90);
    assert_eq!(report.checkpoint.unwrap().seq, 91);
    assert_eq!(store.count(&EventFilter::default()).await.unwrap(), 30);
    assert_eq!(store.head().await.unwrap(), head);
    let v = store.verify().await.unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.checked, 30);
    let buckets = store
        .hourly_counts(T0, T0 + time::Duration::hours(2), None)
        .await
        .unwrap();
    assert_eq!(
        buckets.iter().map(|b| b.count).collect::<Vec<_>>(),
        vec![0, 30],
        "aggregates follow retention"
    );
    // Nothing more to delete.
    assert_eq!(store.apply_retention(cutoff).await.unwrap().deleted, 0);
    // The chain goes on after retention.
    store
        .append(AuditEvent::new(
            T0 + time::Duration::hours(3),
            EventKind::Auth,
            Outcome::Denied,
        ))
        .await
        .unwrap();
    assert!(store.verify().await.unwrap().is_intact());
    // Everything old: the log becomes empty and still verifies.
    let r = store
        .apply_retention(T0 + time::Duration::hours(5))
        .await
        .unwrap();
    assert_eq!(r.deleted, 31);
    assert_eq!(store.count(&EventFilter::default()).await.unwrap(), 0);
    let v = store.verify().await.unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(
        store
            .append(AuditEvent::new(T0, EventKind::Auth, Outcome::Denied))
            .await
            .unwrap()
            .seq,
        122
    );
    assert!(store.verify().await.unwrap().is_intact());
}

async fn duplicates_and_invalid_events_are_refused_alone(b: Backend) {
    let store = b.open().await;
    let events = corpus(5);
    store.append(events[0].clone()).await.unwrap();
    let mut bad = events[2].clone();
    bad.scores.insert("nan".into(), f64::NAN);
    let results = store
        .append_many(vec![
            events[1].clone(),
            events[0].clone(),
            bad,
            events[3].clone(),
            events[3].clone(),
        ])
        .await;
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(StoreError::Duplicate { id }) if id == events[0].id));
    assert!(matches!(results[2], Err(StoreError::InvalidEvent(_))));
    assert!(results[3].is_ok());
    assert!(matches!(results[4], Err(StoreError::Duplicate { .. })));
    assert_eq!(store.count(&EventFilter::default()).await.unwrap(), 3);
    let seqs: Vec<u64> = store
        .query(&EventFilter::default(), PageRequest::oldest(10))
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3],
        "refused events take no place in the chain"
    );
    assert!(store.verify().await.unwrap().is_intact());
}

/// `append_many` split into several jobs and groups (a queue of 5, groups of 7) still
/// answers every event in order, refusing invalid and duplicate events alone.
async fn small_groups_keep_results_in_order(b: Backend) {
    let store = b
        .open_with(StoreOptions {
            queue_capacity: 5,
            batch_max: 7,
            ..Default::default()
        })
        .await;
    let events = corpus(23);
    let mut batch = events.clone();
    batch[4].scores.insert("nan".into(), f64::NAN);
    batch[11].scores.insert("inf".into(), f64::INFINITY);
    batch[17] = events[2].clone();
    let results = store.append_many(batch).await;
    assert_eq!(results.len(), 23);
    let mut expected_seq = 0;
    for (i, r) in results.iter().enumerate() {
        match i {
            4 | 11 => assert!(matches!(r, Err(StoreError::InvalidEvent(_))), "{i}: {r:?}"),
            17 => assert!(
                matches!(r, Err(StoreError::Duplicate { id }) if *id == events[2].id),
                "{i}: {r:?}"
            ),
            _ => {
                expected_seq += 1;
                let appended = r.as_ref().unwrap_or_else(|e| panic!("{i}: {e}"));
                assert_eq!(appended.seq, expected_seq, "event {i}");
                let stored = store.get(events[i].id).await.unwrap().unwrap();
                assert_eq!(stored.seq, expected_seq);
            }
        }
    }
    assert_eq!(store.count(&EventFilter::default()).await.unwrap(), 20);
    assert!(store.verify().await.unwrap().is_intact());
}

async fn close_drains_and_refuses(b: Backend) {
    let store = b.open().await;
    let events = corpus(500);
    let s2 = store.clone();
    let ev = events.clone();
    let producer = tokio::spawn(async move { s2.append_many(ev).await });
    let results = producer.await.unwrap();
    store.close().await.unwrap();
    let acked = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(acked, 500);
    assert!(matches!(
        store.append(corpus(501).pop().unwrap()).await,
        Err(StoreError::Closed)
    ));
    if b.is_durable() {
        let again = b.open().await;
        assert_eq!(
            again.count(&EventFilter::default()).await.unwrap(),
            acked as u64
        );
    }
}

async fn reject_policy_never_drops_silently(b: Backend) {
    let store = b
        .open_with(StoreOptions {
            queue_capacity: 1,
            batch_max: 1,
            full_policy: FullPolicy::Reject,
            ..Default::default()
        })
        .await;
    let mut tasks = Vec::new();
    for e in corpus(200) {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { (e.id, s.append(e).await) }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        let (id, r) = t.await.unwrap();
        match r {
            Ok(_) => acked.push(id),
            Err(StoreError::QueueFull { capacity: 1 }) => {
                assert!(store.get(id).await.unwrap().is_none());
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(!acked.is_empty());
    assert_eq!(
        store.count(&EventFilter::default()).await.unwrap(),
        acked.len() as u64
    );
    for id in acked {
        assert!(store.get(id).await.unwrap().is_some());
    }
}

// ---- Tampering: only where there is SQL behind the store. ----

macro_rules! tamper {
    ($($case:ident),* $(,)?) => {
        mod tamper_sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::sqlite().await).await; } )* }
        mod tamper_postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::postgres().await).await; } )* }
    };
}

tamper!(
    changed_field_is_named,
    deleted_row_is_named,
    swapped_rows_are_named,
    truncated_tail_is_named,
    problems_past_the_first_verify_batch_are_named
);

async fn tampered(b: &Backend, n: usize) -> Vec<AuditEvent> {
    let store = b.open().await;
    let events = corpus(n);
    append_all(&*store, &events).await;
    assert!(store.verify().await.unwrap().is_intact());
    store.close().await.unwrap();
    events
}

async fn verify_problem(b: &Backend) -> ChainProblem {
    let report = b.open().await.verify().await.unwrap();
    report.problem.expect("tampering must be detected")
}

fn body_replace_sql(b: &Backend, seq: u64, from: &str, to: &str) -> String {
    match b {
        Backend::Sqlite(_) => format!(
            "UPDATE audit_events SET body = CAST(replace(CAST(body AS TEXT), '{from}', '{to}') AS BLOB) WHERE seq = {seq}"
        ),
        _ => format!(
            "UPDATE audit_events SET body = convert_to(replace(convert_from(body, 'UTF8'), '{from}', '{to}'), 'UTF8') WHERE seq = {seq}"
        ),
    }
}

async fn changed_field_is_named(b: Backend) {
    let events = tampered(&b, 50).await;
    b.tamper(&body_replace_sql(
        &b,
        17,
        "\"outcome\":\"",
        "\"outcome\":\"x",
    ))
    .await;
    match verify_problem(&b).await {
        ChainProblem::Changed { seq: 17, id } => assert_eq!(id, events[16].id.to_string()),
        ChainProblem::Undecodable { seq: 17, .. } => {}
        other => panic!("{other:?}"),
    }
    // A change that still decodes is named with the event's id.
    let b2 = Backend::sqlite().await;
    let b2 = if matches!(b, Backend::Postgres(_)) {
        Backend::postgres().await
    } else {
        b2
    };
    let events = tampered(&b2, 50).await;
    b2.tamper(&body_replace_sql(
        &b2,
        23,
        "\"bytes_in\":22",
        "\"bytes_in\":0",
    ))
    .await;
    assert_eq!(
        verify_problem(&b2).await,
        ChainProblem::Changed {
            seq: 23,
            id: events[22].id.to_string()
        }
    );
}

async fn deleted_row_is_named(b: Backend) {
    tampered(&b, 50).await;
    b.tamper("DELETE FROM audit_events WHERE seq = 30").await;
    assert_eq!(
        verify_problem(&b).await,
        ChainProblem::Missing {
            first_missing: 30,
            last_missing: 30
        }
    );
}

async fn swapped_rows_are_named(b: Backend) {
    let events = tampered(&b, 50).await;
    b.tamper(
        "UPDATE audit_events SET seq = -1 WHERE seq = 12;
         UPDATE audit_events SET seq = 12 WHERE seq = 13;
         UPDATE audit_events SET seq = 13 WHERE seq = -1;",
    )
    .await;
    assert_eq!(
        verify_problem(&b).await,
        ChainProblem::Reordered {
            seq: 13,
            id: events[11].id.to_string(),
            original_seq: 12
        }
    );
}

async fn truncated_tail_is_named(b: Backend) {
    tampered(&b, 50).await;
    b.tamper("DELETE FROM audit_events WHERE seq > 45").await;
    assert_eq!(
        verify_problem(&b).await,
        ChainProblem::TruncatedTail {
            last_seq: 45,
            head_seq: 50
        }
    );
}

/// Verification reads the log in batches (and may hash one while fetching the next):
/// problems in later batches, and at a batch's first row, are found and named the same.
/// Row 32,769 starts a batch on both backends (SQLite reads 8,192 rows at a time,
/// PostgreSQL 32,768); row 8,193 starts one on SQLite.
async fn problems_past_the_first_verify_batch_are_named(b: Backend) {
    let n = 40_000;
    let events = tampered(&b, n).await;
    assert_eq!(b.open().await.verify().await.unwrap().checked, n as u64);
    b.tamper("DELETE FROM audit_events WHERE seq = 37000").await;
    let report = b.open().await.verify().await.unwrap();
    assert_eq!(report.checked, 36_999);
    assert_eq!(
        report.problem,
        Some(ChainProblem::Missing {
            first_missing: 37_000,
            last_missing: 37_000
        })
    );
    for seq in [32_769u64, 8_193] {
        let i = seq as usize - 1;
        b.tamper(&body_replace_sql(
            &b,
            seq,
            &format!("\"bytes_in\":{i}"),
            "\"bytes_in\":0",
        ))
        .await;
        let report = b.open().await.verify().await.unwrap();
        assert_eq!(report.checked, seq - 1);
        assert_eq!(
            report.problem,
            Some(ChainProblem::Changed {
                seq,
                id: events[i].id.to_string()
            })
        );
    }
}
