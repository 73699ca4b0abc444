//! Approval resume latency for docs/benchmarks.md: the time from `decide` returning to the
//! held call's `wait` returning, when both go through one store instance and when they go
//! through two instances on the same database (the CLI next to a gateway on one SQLite
//! file; two replicas on one PostgreSQL). SQLite in a temporary directory and PostgreSQL in
//! a throwaway cluster with fsync on, in the same run.
//!
//! `cargo bench -p harombe-store --bench approvals` (HAROMBE_BENCH_ROUNDS sets the rounds
//! per figure, default 200; HAROMBE_BENCH_BACKENDS=sqlite,postgres picks backends).

use std::sync::Arc;
use std::time::{Duration, Instant};

use harombe_core::{AgentId, ApprovalDecision, ApprovalId, ApprovalRequest, ApprovalStore};
use harombe_store::{Location, StoreOptions};
use time::OffsetDateTime;

fn request() -> ApprovalRequest {
    let agent = AgentId::new("agent-1").unwrap();
    let arguments = serde_json::json!({ "path": "/srv/data/report.csv" });
    let now = OffsetDateTime::now_utc();
    ApprovalRequest {
        id: ApprovalId::new(),
        binding: harombe_core::binding(&agent, "fs.write", &arguments),
        agent,
        session: None,
        tool: "fs.write".into(),
        arguments,
        reasons: vec!["write outside the workspace".into()],
        threat_level: None,
        risk: Some(0.8),
        created: now,
        deadline: now + time::Duration::minutes(5),
    }
}

fn quantiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort_unstable();
    let at = |q: usize| v[(v.len() * q / 100).min(v.len() - 1)];
    (at(50), at(99), v[v.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Resume latency over `rounds`: a waiter parks on `waiting`, `deciding` approves.
async fn resume(
    label: &str,
    waiting: Arc<dyn ApprovalStore>,
    deciding: Arc<dyn ApprovalStore>,
    rounds: usize,
) {
    let mut resume = Vec::with_capacity(rounds);
    let mut decide = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let id = waiting.create(request()).await.unwrap().id();
        let w = waiting.clone();
        let waiter = tokio::spawn(async move {
            let a = w.wait(id, Duration::from_secs(30)).await.unwrap();
            (a, Instant::now())
        });
        // Let the waiter park (and a SQLite poller take its first look).
        tokio::time::sleep(Duration::from_millis(30)).await;
        let start = Instant::now();
        deciding
            .decide(
                id,
                ApprovalDecision {
                    approve: true,
                    by: "bench".into(),
                    reason: None,
                    at: OffsetDateTime::now_utc(),
                },
            )
            .await
            .unwrap();
        let returned = Instant::now();
        let (a, woke) = waiter.await.unwrap();
        assert!(a.state.is_final(), "{label}: the waiter timed out");
        decide.push(returned - start);
        resume.push(woke.saturating_duration_since(returned));
    }
    let (p50, p99, max) = quantiles(resume);
    let (d50, d99, _) = quantiles(decide);
    println!(
        "| {label} | p50 {}, p99 {}, max {} | decide itself p50 {}, p99 {} |",
        ms(p50),
        ms(p99),
        ms(max),
        ms(d50),
        ms(d99)
    );
}

async fn open(loc: &Location) -> Arc<dyn ApprovalStore> {
    harombe_store::open_stores(loc, StoreOptions::default())
        .await
        .unwrap()
        .approvals
}

async fn run(name: &str, loc: Location, rounds: usize) {
    println!("\n## {name} ({rounds} rounds each)\n");
    println!("| figure | resume latency | |\n|---|---|---|");
    let a = open(&loc).await;
    resume("same instance", a.clone(), a.clone(), rounds).await;
    let b = open(&loc).await;
    resume("two instances, same database", a, b, rounds).await;
}

fn main() {
    let rounds: usize = std::env::var("HAROMBE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .max(1);
    let backends =
        std::env::var("HAROMBE_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if backends.contains("sqlite") {
            let dir = tempfile::tempdir().unwrap();
            let loc = Location::Sqlite(dir.path().join("audit.db"));
            run("SQLite (WAL, synchronous=FULL)", loc, rounds).await;
        }
        if backends.contains("postgres") {
            let cluster = harombe_testkit::PgCluster::start(true);
            let loc = Location::Postgres(cluster.url("postgres").into());
            run("PostgreSQL (fsync on, synchronous_commit on)", loc, rounds).await;
        }
    });
}
