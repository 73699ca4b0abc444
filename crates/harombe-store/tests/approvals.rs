//! The ApprovalStore conformance suite: the same cases against SQLite, PostgreSQL and the
//! in-memory store, plus waiters woken by a decision made through another instance on
//! the same database (another replica, or the CLI on the same SQLite file).

use std::sync::Arc;
use std::time::Duration;

use harombe_core::{
    AgentId, Approval, ApprovalDecision, ApprovalError, ApprovalId, ApprovalRequest, ApprovalState,
    ApprovalStore, SessionId, StoreError, ThreatLevel, binding,
};
use harombe_store::{Location, MemoryApprovalStore, StoreOptions};
use harombe_testkit::TestDb;
use time::OffsetDateTime;

/// Long enough that a waiter only returns this late when nothing woke it.
const LONG: Duration = Duration::from_secs(10);

enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
    Memory(MemoryApprovalStore),
}

impl Backend {
    async fn sqlite() -> Self {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }
    async fn postgres() -> Self {
        Backend::Postgres(TestDb::new().await)
    }
    async fn memory() -> Self {
        Backend::Memory(MemoryApprovalStore::new())
    }

    /// A new store instance on the backend's database (the memory store shares its rows).
    async fn open(&self) -> Arc<dyn ApprovalStore> {
        let loc = match self {
            Backend::Sqlite(dir) => Location::Sqlite(dir.path().join("audit.db")),
            Backend::Postgres(db) => Location::Postgres(db.url.clone().into()),
            Backend::Memory(m) => return Arc::new(m.clone()),
        };
        harombe_store::open_stores(&loc, StoreOptions::default())
            .await
            .expect("open store")
            .approvals
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A request filed `age` ago with a deadline `left` from now (negative: already past).
fn request_at(created: OffsetDateTime, deadline: OffsetDateTime) -> ApprovalRequest {
    let agent = AgentId::new("agent-7").unwrap();
    let arguments = serde_json::json!({
        "path": "/etc/passwd",
        "q": "x'; DROP TABLE approvals; --",
        "nul": "a\u{0}b",
        "n": [1, 2.5, -3],
    });
    ApprovalRequest {
        id: ApprovalId::new(),
        session: Some(SessionId::new("s-1").unwrap()),
        tool: "fs.read".into(),
        binding: binding(&agent, "fs.read", &arguments),
        agent,
        arguments,
        reasons: vec!["sensitive path".into(), "risk 0.73 ≥ 0.7".into()],
        threat_level: Some(ThreatLevel::High),
        risk: Some(0.73),
        created,
        deadline,
    }
}

fn request() -> ApprovalRequest {
    request_at(now(), now() + time::Duration::hours(1))
}

fn decision(approve: bool, by: &str) -> ApprovalDecision {
    ApprovalDecision {
        approve,
        by: by.into(),
        reason: Some(format!("{by} says {approve}")),
        at: now(),
    }
}

/// Times are stored in microseconds.
fn micros(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::sqlite().await).await; } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::postgres().await).await; } )* }
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::memory().await).await; } )* }
    };
}

conformance!(
    create_get_list,
    approve_and_deny,
    second_decision_is_refused_naming_the_winner,
    unknown_ids_are_not_found,
    deadline_passed_reads_expired_and_refuses_decisions,
    expire_yields_to_an_earlier_decision,
    decide_racing_expire_has_one_winner,
    approve_racing_deny_has_one_winner,
    wait_wakes_on_local_decision,
    wait_returns_at_once_when_decided,
    wait_times_out_still_pending,
);

macro_rules! shared {
    ($($case:ident),* $(,)?) => {
        mod sqlite_two_instances { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::sqlite().await).await; } )* }
        mod postgres_two_instances { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::postgres().await).await; } )* }
    };
}

shared!(
    waiter_wakes_on_decision_by_another_instance,
    waiter_wakes_on_expiry_by_another_instance,
    decisions_survive_reopening,
);

async fn create_get_list(b: Backend) {
    let s = b.open().await;
    let t = now();
    let mut filed = Vec::new();
    for i in 0..3 {
        let r = request_at(t + time::Duration::seconds(i), t + time::Duration::hours(1));
        let a = s.create(r.clone()).await.unwrap();
        assert_eq!(a.state, ApprovalState::Pending);
        assert_eq!(a.request.id, r.id);
        assert_eq!(micros(a.request.created), micros(r.created));
        assert_eq!((a.decided_by.as_ref(), a.decided_at), (None, None));
        filed.push(a);
    }
    for a in &filed {
        let got = s.get(a.id()).await.unwrap().expect("filed approval");
        assert_eq!(&got, a, "get returns what create returned");
        assert_eq!(got.request.arguments["nul"], "a\u{0}b");
        assert_eq!(got.request.arguments["q"], "x'; DROP TABLE approvals; --");
    }
    let ids = |v: Vec<Approval>| v.into_iter().map(|a| a.id()).collect::<Vec<_>>();
    let newest_first: Vec<ApprovalId> = filed.iter().rev().map(|a| a.id()).collect();
    assert_eq!(ids(s.list(None, 100).await.unwrap()), newest_first);
    assert_eq!(
        ids(s.list(Some(ApprovalState::Pending), 100).await.unwrap()),
        newest_first
    );
    assert_eq!(
        ids(s.list(None, 2).await.unwrap()),
        newest_first[..2].to_vec()
    );
    assert_eq!(s.list(None, 0).await.unwrap().len(), 1, "limit 0 reads one");
    assert!(
        s.list(Some(ApprovalState::Approved), 100)
            .await
            .unwrap()
            .is_empty()
    );

    let again = s.create(filed[0].request.clone()).await.unwrap_err();
    assert!(
        matches!(again, StoreError::InvalidInput { field: "id", .. }),
        "{again:?}"
    );
    let mut bad = request();
    bad.deadline = bad.created - time::Duration::seconds(1);
    assert!(matches!(
        s.create(bad).await.unwrap_err(),
        StoreError::InvalidInput {
            field: "deadline",
            ..
        }
    ));
}

async fn approve_and_deny(b: Backend) {
    let s = b.open().await;
    let yes = s.create(request()).await.unwrap();
    let no = s.create(request()).await.unwrap();

    let d = decision(true, "token:ops");
    let a = s.decide(yes.id(), d.clone()).await.unwrap();
    assert_eq!(a.state, ApprovalState::Approved);
    assert_eq!(a.decided_by.as_deref(), Some("token:ops"));
    assert_eq!(a.reason, d.reason);
    assert_eq!(a.decided_at.map(micros), Some(micros(d.at)));
    assert_eq!(a.request, yes.request);
    assert_eq!(s.get(yes.id()).await.unwrap(), Some(a.clone()));

    let n = s
        .decide(no.id(), decision(false, "cli:alice"))
        .await
        .unwrap();
    assert_eq!(n.state, ApprovalState::Denied);
    assert_eq!(n.decided_by.as_deref(), Some("cli:alice"));

    let approved = s.list(Some(ApprovalState::Approved), 10).await.unwrap();
    assert_eq!(approved, vec![a]);
    let denied = s.list(Some(ApprovalState::Denied), 10).await.unwrap();
    assert_eq!(denied, vec![n]);
    assert!(
        s.list(Some(ApprovalState::Pending), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn second_decision_is_refused_naming_the_winner(b: Backend) {
    let s = b.open().await;
    let a = s.create(request()).await.unwrap();
    s.decide(a.id(), decision(true, "token:ops")).await.unwrap();
    for approve in [true, false] {
        let e = s
            .decide(a.id(), decision(approve, "token:late"))
            .await
            .unwrap_err();
        match &e {
            ApprovalError::AlreadyDecided { id, state, by } => {
                assert_eq!(*id, a.id());
                assert_eq!(*state, ApprovalState::Approved);
                assert_eq!(by.as_deref(), Some("token:ops"));
            }
            other => panic!("expected AlreadyDecided, got {other:?}"),
        }
        assert!(e.to_string().contains("approved by token:ops"), "{e}");
    }
    let stored = s.get(a.id()).await.unwrap().unwrap();
    assert_eq!(stored.decided_by.as_deref(), Some("token:ops"));
}

async fn unknown_ids_are_not_found(b: Backend) {
    let s = b.open().await;
    s.create(request()).await.unwrap();
    let ghost = ApprovalId::new();
    assert_eq!(s.get(ghost).await.unwrap(), None);
    assert!(matches!(
        s.decide(ghost, decision(true, "x")).await,
        Err(ApprovalError::NotFound(id)) if id == ghost
    ));
    assert!(matches!(
        s.expire(ghost, now()).await,
        Err(ApprovalError::NotFound(id)) if id == ghost
    ));
    assert!(matches!(
        s.wait(ghost, LONG).await,
        Err(ApprovalError::NotFound(id)) if id == ghost
    ));
}

async fn deadline_passed_reads_expired_and_refuses_decisions(b: Backend) {
    let s = b.open().await;
    let t = now();
    // Filed earlier; its deadline passed and nobody marked it.
    let stale = s
        .create(request_at(
            t - time::Duration::minutes(10),
            t - time::Duration::seconds(1),
        ))
        .await
        .unwrap();
    let live = s.create(request()).await.unwrap();

    assert_eq!(
        s.get(stale.id()).await.unwrap().unwrap().state,
        ApprovalState::Expired
    );
    let expired = s.list(Some(ApprovalState::Expired), 10).await.unwrap();
    assert_eq!(
        expired.iter().map(|a| a.id()).collect::<Vec<_>>(),
        vec![stale.id()]
    );
    assert_eq!(expired[0].state, ApprovalState::Expired);
    let pending = s.list(Some(ApprovalState::Pending), 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|a| a.id()).collect::<Vec<_>>(),
        vec![live.id()]
    );
    let all = s.list(None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].state, ApprovalState::Expired, "list reads as of now");

    match s.decide(stale.id(), decision(true, "token:ops")).await {
        Err(ApprovalError::Expired { id, deadline }) => {
            assert_eq!(id, stale.id());
            assert_eq!(micros(deadline), micros(stale.request.deadline));
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    // A decision stamped at or after the deadline is refused even while the row is pending.
    let mut late = decision(true, "token:ops");
    late.at = live.request.deadline;
    assert!(matches!(
        s.decide(live.id(), late).await,
        Err(ApprovalError::Expired { .. })
    ));
    assert_eq!(
        s.get(live.id()).await.unwrap().unwrap().state,
        ApprovalState::Pending
    );
}

async fn expire_yields_to_an_earlier_decision(b: Backend) {
    let s = b.open().await;
    let a = s.create(request()).await.unwrap();
    let at = now();
    let e = s.expire(a.id(), at).await.unwrap();
    assert_eq!(e.state, ApprovalState::Expired);
    assert_eq!(e.decided_by, None);
    assert_eq!(e.decided_at.map(micros), Some(micros(at)));
    // Expiring again returns what is stored; deciding is refused.
    assert_eq!(s.expire(a.id(), now()).await.unwrap(), e);
    assert!(matches!(
        s.decide(a.id(), decision(true, "token:ops")).await,
        Err(ApprovalError::Expired { .. })
    ));
    assert_eq!(
        s.list(Some(ApprovalState::Expired), 10).await.unwrap(),
        vec![e]
    );

    let d = s.create(request()).await.unwrap();
    let decided = s
        .decide(d.id(), decision(false, "token:ops"))
        .await
        .unwrap();
    let after = s.expire(d.id(), now()).await.unwrap();
    assert_eq!(after, decided, "the earlier decision stands");
    assert_eq!(after.state, ApprovalState::Denied);
}

async fn decide_racing_expire_has_one_winner(b: Backend) {
    let s = b.open().await;
    let (mut decided, mut expired) = (0, 0);
    for _ in 0..40 {
        let id = s.create(request()).await.unwrap().id();
        let (s1, s2) = (s.clone(), s.clone());
        let d = tokio::spawn(async move { s1.decide(id, decision(true, "token:ops")).await });
        let e = tokio::spawn(async move { s2.expire(id, now()).await });
        let (d, e) = (d.await.unwrap(), e.await.unwrap().unwrap());
        let stored = s.get(id).await.unwrap().unwrap();
        assert_eq!(e, stored, "expire returns what is stored");
        match d {
            Ok(a) => {
                decided += 1;
                assert_eq!(a, stored);
                assert_eq!(stored.state, ApprovalState::Approved);
            }
            Err(ApprovalError::Expired { id: eid, .. }) => {
                expired += 1;
                assert_eq!(eid, id);
                assert_eq!(stored.state, ApprovalState::Expired);
                assert_eq!(stored.decided_by, None);
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(decided + expired, 40);
}

async fn approve_racing_deny_has_one_winner(b: Backend) {
    let s = b.open().await;
    for _ in 0..40 {
        let id = s.create(request()).await.unwrap().id();
        let tasks: Vec<_> = [(true, "token:a"), (false, "token:b"), (true, "token:c")]
            .into_iter()
            .map(|(approve, by)| {
                let s = s.clone();
                tokio::spawn(async move { s.decide(id, decision(approve, by)).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let stored = s.get(id).await.unwrap().unwrap();
        let winners: Vec<&Approval> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners, vec![&stored], "exactly one decision wins");
        for r in &results {
            if let Err(e) = r {
                match e {
                    ApprovalError::AlreadyDecided { state, by, .. } => {
                        assert_eq!(*state, stored.state);
                        assert_eq!(by, &stored.decided_by);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
}

async fn wait_wakes_on_local_decision(b: Backend) {
    let s = b.open().await;
    let a = s.create(request()).await.unwrap();
    let waiter = {
        let s = s.clone();
        let id = a.id();
        tokio::spawn(async move { s.wait(id, LONG).await })
    };
    // Give the waiter a chance to be asleep before the decision (either order must work).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let d = s.decide(a.id(), decision(true, "token:ops")).await.unwrap();
    let woke = waiter.await.unwrap().unwrap();
    assert_eq!(woke, d, "woken by the decision, not by the timeout");
}

async fn wait_returns_at_once_when_decided(b: Backend) {
    let s = b.open().await;
    let a = s.create(request()).await.unwrap();
    let d = s
        .decide(a.id(), decision(false, "token:ops"))
        .await
        .unwrap();
    let got = tokio::time::timeout(LONG, s.wait(a.id(), Duration::from_secs(3600)))
        .await
        .expect("a decided approval does not wait")
        .unwrap();
    assert_eq!(got, d);
}

async fn wait_times_out_still_pending(b: Backend) {
    let s = b.open().await;
    let a = s.create(request()).await.unwrap();
    let got = s.wait(a.id(), Duration::from_millis(30)).await.unwrap();
    assert_eq!(got.state, ApprovalState::Pending);
    assert_eq!(got, a);
    // The waiter gives up and marks it; a late decision is refused.
    let e = s.expire(a.id(), now()).await.unwrap();
    assert_eq!(e.state, ApprovalState::Expired);
    assert!(matches!(
        s.decide(a.id(), decision(true, "token:ops")).await,
        Err(ApprovalError::Expired { .. })
    ));
}

async fn waiter_wakes_on_decision_by_another_instance(b: Backend) {
    let waiting = b.open().await;
    let deciding = b.open().await;
    for round in 0..5 {
        let a = waiting.create(request()).await.unwrap();
        let waiter = {
            let s = waiting.clone();
            let id = a.id();
            tokio::spawn(async move { s.wait(id, LONG).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let d = deciding
            .decide(a.id(), decision(round % 2 == 0, "cli:alice"))
            .await
            .unwrap();
        let woke = waiter.await.unwrap().unwrap();
        assert_eq!(
            woke, d,
            "round {round}: woken by the other instance's decision"
        );
    }
}

async fn waiter_wakes_on_expiry_by_another_instance(b: Backend) {
    let waiting = b.open().await;
    let other = b.open().await;
    let a = waiting.create(request()).await.unwrap();
    // Two waiters on one id, and one on another id that nobody decides.
    let spawn_wait = |id, timeout| {
        let s = waiting.clone();
        tokio::spawn(async move { s.wait(id, timeout).await })
    };
    let (w1, w2) = (spawn_wait(a.id(), LONG), spawn_wait(a.id(), LONG));
    let idle = waiting.create(request()).await.unwrap();
    let w3 = spawn_wait(idle.id(), Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = other.expire(a.id(), now()).await.unwrap();
    assert_eq!(w1.await.unwrap().unwrap(), e);
    assert_eq!(w2.await.unwrap().unwrap(), e);
    assert_eq!(w3.await.unwrap().unwrap().state, ApprovalState::Pending);
}

async fn decisions_survive_reopening(b: Backend) {
    let s = b.open().await;
    let a = s.create(request()).await.unwrap();
    let d = s.decide(a.id(), decision(true, "token:ops")).await.unwrap();
    drop(s);
    let reopened = b.open().await;
    assert_eq!(reopened.get(a.id()).await.unwrap(), Some(d));
}

/// The waiting instance's LISTEN connection is killed; a decision made by another instance
/// meanwhile or afterwards still wakes the waiter (the listener reconnects and has every
/// waiter re-read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_waiter_survives_a_lost_listen_connection() {
    use sqlx::Connection;
    let b = Backend::postgres().await;
    let Backend::Postgres(db) = &b else {
        unreachable!()
    };
    let waiting = b.open().await;
    let deciding = b.open().await;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for round in 0..3 {
        let a = waiting.create(request()).await.unwrap();
        let waiter = {
            let s = waiting.clone();
            let id = a.id();
            tokio::spawn(async move { s.wait(id, LONG).await })
        };
        // Wait until the listener is connected, then kill its connection.
        let killed = loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            )
            .fetch_one(&mut admin)
            .await
            .unwrap();
            if n > 0 {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(killed, 1, "one listener per waiting instance");
        let d = deciding
            .decide(a.id(), decision(true, "token:ops"))
            .await
            .unwrap();
        let woke = waiter.await.unwrap().unwrap();
        assert_eq!(
            woke, d,
            "round {round}: woken after the listener reconnected"
        );
    }
}
