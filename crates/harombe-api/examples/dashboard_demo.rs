//! Serves the control plane over a temporary SQLite store seeded with a day of events and
//! two pending approvals, for trying the dashboard by hand or from a browser script.
//!
//! `cargo run -p harombe-api --example dashboard_demo -- [ADDR] [SECONDS]`
//! (defaults: 127.0.0.1:8089, run until killed). Prints the admin token once on stdout.

use std::sync::Arc;
use std::time::Duration;

use harombe_api::{ApiState, InstrumentedStore, LogTail, Tokens, router};
use harombe_core::{
    AgentId, ApprovalId, ApprovalRequest, AuditEvent, AuditStore, EventKind, Outcome, SystemClock,
    ThreatLevel, Verdict,
};
use harombe_store::{Location, StoreOptions};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

fn seed(now: OffsetDateTime) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    for i in 0..600u64 {
        let at = now - time::Duration::seconds((i * 137 % 86_400) as i64);
        let agent = AgentId::new(["planner", "coder", "browser"][(i % 3) as usize]).unwrap();
        let mut e = AuditEvent::new(at, EventKind::ToolCall, Outcome::Success)
            .with_agent(agent)
            .with_target(["fs.read", "http.get", "shell.exec"][(i % 3) as usize])
            .with_verdict(Verdict::allow());
        e.duration_us = Some(200 + (i * 7919) % 9_000);
        e.threat_level = ThreatLevel::from_rank((i % 4) as u8);
        if i % 40 == 0 {
            e.outcome = Outcome::Denied;
            e.verdict = Some(Verdict::deny("policy: shell.exec is not allowed"));
        }
        if i % 97 == 0 {
            e.details = Some(serde_json::json!({"findings": [
                {"in": "arguments", "pointer": "/body", "rule": "aws-access-key", "tags": ["secret"], "severity": "high"}
            ]}));
            e.scores.insert("anomalous".into(), 1.0);
        }
        out.push(e);
    }
    out.push(
        AuditEvent::new(now, EventKind::EgressConnection, Outcome::Denied)
            .with_target("evil.example"),
    );
    out.push(AuditEvent::new(now, EventKind::Auth, Outcome::Denied).with_target("/mcp"));
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8089".into());
    let seconds: Option<u64> = args.next().map(|s| s.parse()).transpose()?;
    let dir = tempfile::tempdir()?;
    let stores = harombe_store::open_stores(
        &Location::Sqlite(dir.path().join("audit.db")),
        StoreOptions::default(),
    )
    .await?;
    let instrumented = InstrumentedStore::new(stores.audit.clone());
    let telemetry = instrumented.telemetry();
    let store: Arc<dyn AuditStore> = Arc::new(instrumented);
    let now = OffsetDateTime::now_utc();
    for r in store.append_many(seed(now)).await {
        r?;
    }
    for tool in ["shell.exec", "http.post"] {
        let agent = AgentId::new("coder")?;
        let args = serde_json::json!({"cmd": "rm -rf /tmp/build"});
        stores
            .approvals
            .create(ApprovalRequest {
                id: ApprovalId::new(),
                binding: harombe_core::binding(&agent, tool, &args),
                agent,
                session: None,
                tool: tool.into(),
                arguments: args,
                reasons: vec!["risk 0.82 above the hold threshold".into()],
                threat_level: Some(ThreatLevel::High),
                risk: Some(0.82),
                created: now,
                deadline: now + time::Duration::minutes(30),
            })
            .await?;
    }
    let (tokens, admin) = Tokens::generate_admin();
    let cancel = CancellationToken::new();
    let state = ApiState::new(
        store.clone(),
        stores.approvals.clone(),
        tokens,
        Arc::new(SystemClock),
    )
    .with_store_telemetry(telemetry)
    .with_shutdown(cancel.clone());
    LogTail::new(&state).spawn(cancel.clone());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "http://{} admin token: {}",
        listener.local_addr()?,
        admin.expose()
    );
    // Keep events flowing so the live stream moves.
    let feeder = {
        let store = store.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !cancel.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let mut e = AuditEvent::new(
                    OffsetDateTime::now_utc(),
                    EventKind::ToolCall,
                    Outcome::Success,
                )
                .with_agent(AgentId::new("planner").unwrap())
                .with_target("fs.read")
                .with_verdict(Verdict::allow());
                e.duration_us = Some(300 + i % 500);
                e.threat_level = Some(ThreatLevel::Low);
                let _ = store.append(e).await;
                i += 1;
            }
        })
    };
    let c2 = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(c2.cancelled_owned())
            .await
    });
    match seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => tokio::signal::ctrl_c().await?,
    }
    cancel.cancel();
    feeder.await?;
    server.await??;
    Ok(())
}
