//! Control-plane benchmarks.
//!
//! - `metrics/snapshot` and `metrics/trend_24h` with 1,000,000 events folded into the
//!   aggregates (target ≤ 5 ms each), and the fold rate of `Metrics::observe`.
//! - The CPU cost of 100 idle dashboard WebSocket clients over 10 s (target ≤ 5 % of one
//!   core), measured from /proc/self/stat. Clients and server share the process, so the
//!   figure is an upper bound for the server. Skip with `HAROMBE_BENCH_SKIP_WS=1`.
//!
//! Run: `cargo bench -p harombe-api --bench api`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures::{SinkExt as _, StreamExt as _};
use harombe_api::metrics::Metrics;
use harombe_api::{ApiState, LogTail, Role, Tokens, router};
use harombe_core::chain::ChainHash;
use harombe_core::fake::MemoryAuditStore;
use harombe_core::{
    AgentId, Approval, ApprovalDecision, ApprovalError, ApprovalId, ApprovalRequest, ApprovalState,
    ApprovalStore, AuditEvent, EventKind, Outcome, Redacted, StoreError, StoredEvent, SystemClock,
    ThreatLevel, Verdict,
};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

const EVENTS: u64 = 1_000_000;

fn events(now: OffsetDateTime) -> Vec<StoredEvent> {
    let agents: Vec<AgentId> = (0..20)
        .map(|i| AgentId::new(format!("agent-{i}")).unwrap())
        .collect();
    // Just under 24 hours, so every event is inside the 24-hour window.
    let span_us = (23 * 3600 + 1800) * 1_000_000i64;
    (0..EVENTS)
        .map(|i| {
            let at = now - time::Duration::microseconds(span_us * i as i64 / EVENTS as i64);
            let kind = if i % 4 == 0 {
                EventKind::ALL[(i / 4 % 12) as usize]
            } else {
                EventKind::ToolCall
            };
            let mut e = AuditEvent::new(at, kind, Outcome::ALL[(i % 7 % 4) as usize])
                .with_agent(agents[(i % 20) as usize].clone());
            if kind == EventKind::ToolCall {
                e.duration_us = Some(50 + (i * 7919) % 20_000);
                e.verdict = Some(Verdict::allow());
                e.threat_level = ThreatLevel::from_rank((i % 5) as u8);
            }
            StoredEvent {
                seq: i + 1,
                hash: ChainHash::GENESIS,
                event: e,
            }
        })
        .collect()
}

fn bench_metrics(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let evs = events(now);
    let m = Metrics::new();
    let start = Instant::now();
    for e in &evs {
        m.observe(e);
    }
    let fold = start.elapsed();
    println!(
        "fold: {EVENTS} events into the aggregates in {:.2?} ({:.0} events/s)",
        fold,
        EVENTS as f64 / fold.as_secs_f64()
    );
    let s = m.snapshot(now);
    assert_eq!(s.events_last_24h, EVENTS);
    let mut g = c.benchmark_group("metrics");
    g.bench_function("snapshot_1M_events", |b| {
        b.iter(|| black_box(m.snapshot(black_box(now))));
    });
    g.bench_function("trend_24h_1M_events", |b| {
        b.iter(|| black_box(m.trend(black_box(now), 24)));
    });
    g.finish();
}

#[derive(Debug)]
struct NoApprovals;

#[async_trait::async_trait]
impl ApprovalStore for NoApprovals {
    async fn create(&self, _: ApprovalRequest) -> Result<Approval, StoreError> {
        Err(StoreError::Closed)
    }
    async fn get(&self, _: ApprovalId) -> Result<Option<Approval>, StoreError> {
        Ok(None)
    }
    async fn list(&self, _: Option<ApprovalState>, _: u32) -> Result<Vec<Approval>, StoreError> {
        Ok(Vec::new())
    }
    async fn decide(&self, id: ApprovalId, _: ApprovalDecision) -> Result<Approval, ApprovalError> {
        Err(ApprovalError::NotFound(id))
    }
    async fn expire(&self, id: ApprovalId, _: OffsetDateTime) -> Result<Approval, ApprovalError> {
        Err(ApprovalError::NotFound(id))
    }
    async fn wait(&self, id: ApprovalId, _: Duration) -> Result<Approval, ApprovalError> {
        Err(ApprovalError::NotFound(id))
    }
}

/// User + system CPU time of this process, from /proc/self/stat (clock ticks → seconds).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name and state.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn idle_clients() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let token = "hrb_read_bench-token-0123456789";
        let mut tokens = Tokens::new();
        tokens
            .add_plaintext("bench", Role::Read, &Redacted::new(token.to_owned()))
            .unwrap();
        let state = ApiState::new(
            Arc::new(MemoryAuditStore::new()),
            Arc::new(NoApprovals),
            tokens,
            Arc::new(SystemClock),
        );
        let cancel = CancellationToken::new();
        LogTail::new(&state).spawn(cancel.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/ws"))
                .await
                .unwrap();
            ws.send(tokio_tungstenite::tungstenite::Message::text(format!(
                "{{\"type\":\"auth\",\"token\":\"{token}\"}}"
            )))
            .await
            .unwrap();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while let Some(Ok(_)) = ws.next().await {
                    n += 1;
                }
                n
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (c0, t0) = (cpu_seconds().unwrap_or(0.0), Instant::now());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (c1, wall) = (cpu_seconds().unwrap_or(0.0), t0.elapsed());
        cancel.cancel();
        println!(
            "idle_ws_clients: 100 clients for {:.1?}: {:.3} s CPU = {:.2} % of one core \
             (server and clients in one process; snapshots every 2 s)",
            wall,
            c1 - c0,
            100.0 * (c1 - c0) / wall.as_secs_f64()
        );
        for t in tasks {
            t.abort();
        }
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_metrics(&mut c);
    c.final_summary();
    if std::env::var_os("HAROMBE_BENCH_SKIP_WS").is_none() {
        idle_clients();
    }
}
