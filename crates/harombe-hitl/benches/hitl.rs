//! HITL decision latency.
//!
//! - `decide/warm`: `ContextAwareEngine::decide` with warm caches (target p99 ≤ 20 µs; a
//!   manual loop of 100,000 timed decisions prints p50/p99/max);
//! - `lookup/risk`, `lookup/trust`: cached lookups (target ≤ 5 µs);
//! - `load/risk`, `load/trust`: a cold load from a SQLite audit log of 1,000,000 events
//!   (target ≤ 5 ms; `HAROMBE_BENCH_EVENTS` shrinks the log; p50/p99 printed).
//!
//! `cargo bench -j2 -p harombe-hitl --bench hitl`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use harombe_core::fake::MemoryAuditStore;
use harombe_core::{AgentId, AuditEvent, AuditStore, EventKind, ManualClock, Outcome, ThreatLevel};
use harombe_hitl::{
    ContextAwareEngine, DecisionInput, HistoricalRiskScorer, HitlConfig, RiskWeights, TrustManager,
};
use harombe_store::{SqliteStore, StoreOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-01-05 00:00 UTC);
const AGENTS: usize = 100;
const TOOLS: usize = 200;

fn agent(i: usize) -> AgentId {
    AgentId::new(format!("agent-{i}")).unwrap()
}

fn tool(i: usize) -> String {
    let verbs = ["read", "write", "list", "delete", "query"];
    format!("{}_{i}", verbs[i % verbs.len()])
}

fn event(rng: &mut ChaCha8Rng, at: OffsetDateTime) -> AuditEvent {
    let outcome = match rng.random_range(0..100) {
        0..=2 => Outcome::Failure,
        3 => Outcome::Denied,
        _ => Outcome::Success,
    };
    let kind = if rng.random_range(0..20) == 0 {
        EventKind::Approval
    } else {
        EventKind::ToolCall
    };
    let mut e = AuditEvent::new(at, kind, outcome)
        .with_agent(agent(rng.random_range(0..AGENTS)))
        .with_target(tool(rng.random_range(0..TOOLS)));
    e.threat_level = Some(if rng.random_range(0..200) == 0 {
        ThreatLevel::High
    } else {
        ThreatLevel::None
    });
    e
}

fn percentiles(mut ns: Vec<u128>) -> (f64, f64, f64) {
    ns.sort_unstable();
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((ns.len() as f64 - 1.0) * q) as usize;
        #[allow(clippy::cast_precision_loss)]
        let v = ns[i] as f64 / 1000.0;
        v
    };
    (at(0.5), at(0.99), at(1.0))
}

fn warm_engine(rt: &tokio::runtime::Runtime) -> ContextAwareEngine {
    let clock = Arc::new(ManualClock::new(T0 + Duration::days(120)));
    let engine = ContextAwareEngine::new(HitlConfig::default(), clock).unwrap();
    let empty = MemoryAuditStore::new();
    rt.block_on(async {
        for i in 0..AGENTS.max(TOOLS) {
            engine
                .prepare(&empty, &agent(i % AGENTS), &tool(i % TOOLS))
                .await
                .unwrap();
        }
    });
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for i in 0..200_000 {
        engine.observe(&event(&mut rng, T0 + Duration::seconds(i * 40)));
    }
    engine
}

fn bench_decide(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let engine = warm_engine(&rt);
    let agents: Vec<AgentId> = (0..AGENTS).map(agent).collect();
    let tools: Vec<String> = (0..TOOLS).map(tool).collect();
    let at = T0 + Duration::days(120);
    let input = |i: usize| DecisionInput {
        agent: &agents[i % AGENTS],
        tool: &tools[(i * 7) % TOOLS],
        threat_level: Some(if i.is_multiple_of(50) {
            ThreatLevel::High
        } else {
            ThreatLevel::None
        }),
        threat_score: Some(0.05),
        anomalous: i.is_multiple_of(97),
        anomaly_score: Some(0.2),
        at,
    };

    let mut i = 0usize;
    c.bench_function("decide/warm", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(engine.decide(&input(i)))
        });
    });
    c.bench_function("lookup/risk", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(engine.risk().score(&tools[i % TOOLS]))
        });
    });
    c.bench_function("lookup/trust", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(engine.trust().trust(&agents[i % AGENTS]))
        });
    });

    let mut times = Vec::with_capacity(100_000);
    for i in 0..100_000 {
        let inp = input(i);
        let t = Instant::now();
        black_box(engine.decide(black_box(&inp)));
        times.push(t.elapsed().as_nanos());
    }
    let (p50, p99, max) = percentiles(times);
    println!(
        "decide, warm caches, 100,000 decisions: p50 {p50:.2} µs, p99 {p99:.2} µs, max {max:.1} µs (target p99 ≤ 20 µs)"
    );
    for (name, f) in [
        (
            "risk lookup",
            &(|i: usize| {
                black_box(engine.risk().score(&tools[i % TOOLS]));
            }) as &dyn Fn(usize),
        ),
        ("trust lookup", &|i: usize| {
            black_box(engine.trust().trust(&agents[i % AGENTS]));
        }),
    ] {
        let mut times = Vec::with_capacity(100_000);
        for i in 0..100_000 {
            let t = Instant::now();
            f(i);
            times.push(t.elapsed().as_nanos());
        }
        let (p50, p99, max) = percentiles(times);
        println!(
            "{name}, 100,000 lookups: p50 {p50:.2} µs, p99 {p99:.2} µs, max {max:.1} µs (target ≤ 5 µs)"
        );
    }
}

fn bench_load(c: &mut Criterion) {
    let n: usize = std::env::var("HAROMBE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        let store = SqliteStore::open(&dir.path().join("audit.db"), StoreOptions::default())
            .await
            .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let started = Instant::now();
        let mut done = 0usize;
        while done < n {
            let k = (n - done).min(10_000);
            let batch: Vec<AuditEvent> = (done..done + k)
                .map(|i| {
                    #[allow(clippy::cast_possible_wrap)]
                    let at = T0 + Duration::seconds(i as i64 * 8);
                    event(&mut rng, at)
                })
                .collect();
            for r in store.append_many(batch).await {
                r.unwrap();
            }
            done += k;
        }
        println!(
            "built a {n}-event SQLite audit log in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        store
    });
    let clock = Arc::new(ManualClock::new(
        T0 + Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX) * 8),
    ));
    let ttl = Duration::minutes(10);
    let cold_risk =
        || HistoricalRiskScorer::new(RiskWeights::default(), 100, ttl, clock.clone()).unwrap();
    let cold_trust = || TrustManager::new(1000, ttl, clock.clone()).unwrap();

    let mut i = 0usize;
    c.bench_function("load/risk (cold, 100 calls of a tool)", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let s = cold_risk();
            rt.block_on(s.load(&store, &tool(i % TOOLS))).unwrap()
        });
    });
    c.bench_function(
        "load/trust (cold, 1000 events of an agent + first event)",
        |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let m = cold_trust();
                rt.block_on(m.load(&store, &agent(i % AGENTS))).unwrap()
            });
        },
    );
    for (name, risk) in [("risk", true), ("trust", false)] {
        let mut times = Vec::with_capacity(500);
        for i in 0..500 {
            let t = Instant::now();
            if risk {
                let s = cold_risk();
                rt.block_on(s.load(&store, &tool(i % TOOLS))).unwrap();
            } else {
                let m = cold_trust();
                rt.block_on(m.load(&store, &agent(i % AGENTS))).unwrap();
            }
            times.push(t.elapsed().as_nanos());
        }
        let (p50, p99, max) = percentiles(times);
        println!(
            "cold {name} load over {n} events, 500 loads: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (target ≤ 5 ms)",
            p50 / 1000.0,
            p99 / 1000.0,
            max / 1000.0
        );
    }
    rt.block_on(store.close()).unwrap();
}

criterion_group!(benches, bench_decide, bench_load);
criterion_main!(benches);
