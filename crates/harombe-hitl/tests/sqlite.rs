//! Against the real SQLite audit store: a cold `load` reproduces exactly what `observe`
//! built from the same events, and `prepare` + `decide` work end to end.

use std::sync::Arc;

use harombe_core::{
    AgentId, AuditEvent, AuditStore, Clock, Decision, EventKind, ManualClock, Outcome, ThreatLevel,
};
use harombe_hitl::{
    ContextAwareEngine, DecisionInput, HistoricalRiskScorer, HitlConfig, RiskWeights, TrustLevel,
    TrustManager,
};
use harombe_store::{SqliteStore, StoreOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-01-05 00:00 UTC);
const TOOLS: [&str; 4] = ["fs_read", "fs_delete", "db_query", "http_post"];

fn events(n: usize, seed: u64) -> Vec<AuditEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let agents: Vec<AgentId> = (0..3)
        .map(|i| AgentId::new(format!("agent-{i}")).unwrap())
        .collect();
    (0..n)
        .map(|i| {
            let at = T0 + Duration::minutes(i as i64 * 7);
            let kind = if rng.random::<f64>() < 0.15 {
                EventKind::Approval
            } else {
                EventKind::ToolCall
            };
            let outcome = [
                Outcome::Success,
                Outcome::Success,
                Outcome::Success,
                Outcome::Failure,
                Outcome::Denied,
                Outcome::Pending,
            ][rng.random_range(0..6)];
            let mut e = AuditEvent::new(at, kind, outcome)
                .with_agent(agents[rng.random_range(0..agents.len())].clone())
                .with_target(TOOLS[rng.random_range(0..TOOLS.len())]);
            e.threat_level = Some(ThreatLevel::ALL[rng.random_range(0..5)]);
            e
        })
        .collect()
}

#[tokio::test]
async fn load_from_sqlite_matches_observe() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("audit.db"), StoreOptions::default())
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(T0 + Duration::days(30)));
    let ttl = Duration::minutes(10);
    let observed_risk =
        HistoricalRiskScorer::new(RiskWeights::default(), 100, ttl, clock.clone()).unwrap();
    let observed_trust = TrustManager::new(1000, ttl, clock.clone()).unwrap();
    let evs = events(3000, 11);
    for e in &evs {
        observed_risk.observe(e);
        observed_trust.observe(e);
    }
    for r in store.append_many(evs).await {
        r.unwrap();
    }

    let loaded_risk =
        HistoricalRiskScorer::new(RiskWeights::default(), 100, ttl, clock.clone()).unwrap();
    let loaded_trust = TrustManager::new(1000, ttl, clock.clone()).unwrap();
    for tool in TOOLS {
        let r = loaded_risk.load(&store, tool).await.unwrap();
        assert_eq!(Some(r), observed_risk.score(tool), "tool {tool}");
        assert_eq!(r.sample_size, 100);
    }
    for i in 0..3 {
        let a = AgentId::new(format!("agent-{i}")).unwrap();
        let t = loaded_trust.load(&store, &a).await.unwrap();
        assert_eq!(Some(&t), observed_trust.trust(&a).as_ref(), "agent {a}");
        assert!(t.sample_size > 900, "{}", t.sample_size);
    }
    // Unknown keys load as "no history".
    let none = loaded_risk.load(&store, "never_called").await.unwrap();
    assert_eq!(none.sample_size, 0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn prepare_then_decide_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("audit.db"), StoreOptions::default())
        .await
        .unwrap();
    let agent = AgentId::new("veteran").unwrap();
    let batch: Vec<AuditEvent> = (0..500)
        .map(|i| {
            AuditEvent::new(
                T0 + Duration::hours(i),
                EventKind::ToolCall,
                Outcome::Success,
            )
            .with_agent(agent.clone())
            .with_target("fs_delete")
        })
        .collect();
    for r in store.append_many(batch).await {
        r.unwrap();
    }
    let clock = ManualClock::new(T0 + Duration::days(100));
    let engine = ContextAwareEngine::new(HitlConfig::default(), Arc::new(clock.clone())).unwrap();
    let input = DecisionInput {
        agent: &agent,
        tool: "fs_delete",
        threat_level: Some(ThreatLevel::None),
        threat_score: Some(0.01),
        anomalous: false,
        anomaly_score: Some(0.1),
        at: clock.now(),
    };
    engine.prepare(&store, &agent, "fs_delete").await.unwrap();
    let d = engine.decide(&input);
    assert_eq!(d.trust.level, TrustLevel::High);
    assert_eq!(d.decision, Decision::Allow, "{:?}", d.reasons);
    assert_eq!(d.rule.as_deref(), Some("high_trust_low_risk"));
    // A newcomer calling the same tool is held: neutral trust, and fs_delete is risky.
    let newcomer = AgentId::new("newcomer").unwrap();
    engine
        .prepare(&store, &newcomer, "fs_delete")
        .await
        .unwrap();
    let d = engine.decide(&DecisionInput {
        agent: &newcomer,
        ..input
    });
    assert_eq!(d.decision, Decision::Hold, "{:?}", d.reasons);
    assert_eq!(d.trust.score, 50.0);
    store.close().await.unwrap();
}
