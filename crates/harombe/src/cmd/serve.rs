//! `harombe serve`: the MCP gateway, the control plane (REST API, dashboard, metrics), the
//! audit store and the background jobs, until SIGINT or SIGTERM; then a drain (in-flight
//! calls finish, then the audit writer), so nothing acknowledged is lost.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use harombe_api::{ApiState, InstrumentedStore, LogTail, Role, Tokens};
use harombe_core::{AuditEvent, AuditStore, Clock, EventKind, Outcome, StoredEvent, SystemClock};
use harombe_hitl::ContextAwareEngine;
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::config::ApiRole;

#[derive(Debug, Args)]
pub struct ServeArgs {}

pub async fn run(_args: &ServeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    start(ctx, shutdown).await?.wait().await?;
    Ok(ExitCode::SUCCESS)
}

/// A started server: where it listens, and its task (which drains and closes the store
/// after the shutdown token fires).
#[derive(Debug)]
pub struct Running {
    pub gateway_addr: SocketAddr,
    pub control_addr: SocketAddr,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn wait(self) -> anyhow::Result<()> {
        self.done.await.context("the server task failed")?
    }
}

/// Opens the stores, binds both listeners and starts every part: the gateway (with
/// inspection, detection, the HITL decision and approvals), the control plane (REST API,
/// dashboard, WebSocket, `/metrics`), the log tail behind the metrics and the HITL caches,
/// and the background jobs (retention, retraining, intel feeds).
pub async fn start(ctx: &Context, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let stores = ctx.open_stores().await?;
    let instrumented = Arc::new(InstrumentedStore::new(stores.audit.clone()));
    let telemetry = instrumented.telemetry();
    let store: Arc<dyn AuditStore> = instrumented;
    let approvals = stores.approvals;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let digest = config_digest(ctx);

    record(&*store, "serve.start", &digest).await?;

    let control = tokio::net::TcpListener::bind(ctx.config.server.control_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.control_addr)",
                ctx.config.server.control_addr
            )
        })?;
    let gateway_listener = tokio::net::TcpListener::bind(ctx.config.gateway.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (gateway.listen)",
                ctx.config.gateway.listen
            )
        })?;
    let gateway_addr = gateway_listener.local_addr()?;
    let control_addr = control.local_addr()?;
    let tokens = api_tokens(ctx)?;

    // The gateway and its seams.
    let engine = Arc::new(
        ContextAwareEngine::new(ctx.config.hitl.clone(), clock.clone())
            .map_err(|e| anyhow::anyhow!("hitl: {e}"))?,
    );
    let (deps, detection) = ctx.gateway_deps(store.clone())?;
    detection
        .audit_load_failures(store.as_ref(), clock.as_ref())
        .await?;
    let deps = deps
        .with_decide(Arc::new(crate::hitl::HitlDecide {
            engine: engine.clone(),
            audit: store.clone(),
            clock: clock.clone(),
        }))
        .with_hold(Arc::new(crate::hitl::ApprovalHold {
            approvals: approvals.clone(),
            audit: store.clone(),
            clock: clock.clone(),
            timeout: ctx.config.hitl.approval_timeout(),
        }));

    // The control plane.
    let api = ApiState::new(store.clone(), approvals.clone(), tokens, clock.clone())
        .with_store_telemetry(telemetry)
        .with_shutdown(shutdown.clone());
    let metrics = api.metrics.clone();
    let api = api.with_insights(Arc::new(crate::hitl::Insights::new(
        metrics,
        clock.clone(),
        engine.clone(),
        detection.clone(),
        store.clone(),
    )));
    // The HITL caches load what they need from the store on first use; the tail keeps
    // them current with everything appended after start (on any replica).
    let start_seq = store.head().await?.map_or(0, |h| h.seq);
    let observer = engine.clone();
    let tail = LogTail::new(&api).with_observer(Arc::new(move |e: &StoredEvent| {
        if e.seq > start_seq {
            observer.observe(&e.event);
        }
    }));
    let tail = tail.spawn(shutdown.clone());

    let mut background = vec![
        tokio::spawn(detection.clone().retrain_loop(
            store.clone(),
            ctx.active_agents()?,
            shutdown.clone(),
        )),
        tokio::spawn(detection.intel_loop(shutdown.clone())),
        tokio::spawn(hitl_refresh_loop(
            engine.clone(),
            store.clone(),
            shutdown.clone(),
        )),
    ];
    if let Some(days) = ctx.config.store.retention_days {
        background.push(tokio::spawn(retention_loop(
            store.clone(),
            days.get(),
            shutdown.clone(),
        )));
    }

    let gateway = tokio::spawn(harombe_gateway::serve_with_listener(
        gateway_listener,
        ctx.config.gateway.clone(),
        deps,
        shutdown.clone(),
    ));
    let app = harombe_api::router(api);
    let stop = shutdown.clone();
    let control =
        axum::serve(control, app).with_graceful_shutdown(async move { stop.cancelled().await });
    tracing::info!(
        mcp = %format!("http://{gateway_addr}{}", ctx.config.gateway.path),
        "MCP gateway listening"
    );
    tracing::info!(
        dashboard = %format!("http://{control_addr}/"),
        data_dir = %ctx.data_dir.display(),
        "harombe is up"
    );

    let done = tokio::spawn(async move {
        // Whichever side stops first (a signal, or a failure) stops the other; both drain.
        let (control, gateway) = tokio::join!(
            async {
                let r = control.await;
                shutdown.cancel();
                r
            },
            async {
                let r = gateway.await;
                shutdown.cancel();
                r
            }
        );
        for b in background {
            b.abort();
        }
        let _ = tail.await;
        control.context("the control plane failed")?;
        gateway
            .context("the gateway task failed")?
            .context("the gateway failed")?;
        record(&*store, "serve.stop", &digest).await?;
        store.close().await?;
        tracing::info!("harombe stopped; every acknowledged event is durable");
        Ok(())
    });
    Ok(Running {
        gateway_addr,
        control_addr,
        done,
    })
}

/// The control plane's tokens: from `[api] tokens`, or the admin token generated on the
/// first start (printed once; only its hash is kept, in `<data_dir>/api-token.json`).
fn api_tokens(ctx: &Context) -> anyhow::Result<Tokens> {
    let mut tokens = Tokens::new();
    if !ctx.config.api.tokens.is_empty() {
        for t in &ctx.config.api.tokens {
            let role = match t.role {
                ApiRole::Admin => Role::Admin,
                ApiRole::Read => Role::Read,
            };
            tokens
                .add_plaintext(&t.name, role, &t.resolve()?)
                .with_context(|| format!("api.tokens {:?}", t.name))?;
        }
        return Ok(tokens);
    }
    let path = ctx.data_dir.join("api-token.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let hash = v["sha256"]
            .as_str()
            .with_context(|| format!("{}: no \"sha256\"", path.display()))?;
        tokens
            .add_hex("admin", Role::Admin, hash)
            .with_context(|| format!("{}", path.display()))?;
        tracing::info!(file = %path.display(), "control plane: using the admin token generated on first start");
        return Ok(tokens);
    }
    let (tokens, plain) = Tokens::generate_admin();
    let hash = hex::encode(harombe_api::auth::hash_token(plain.expose()));
    harombe_gateway::registry::write_private(
        &path,
        serde_json::to_string_pretty(&serde_json::json!({
            "name": "admin",
            "role": "admin",
            "sha256": hash,
        }))?
        .as_bytes(),
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "\n  control-plane admin token (shown once; only its hash is kept in {}):\n\n    {}\n\n  \
         delete that file and restart to issue a new one.\n",
        path.display(),
        plain.expose()
    );
    Ok(tokens)
}

/// The digest of the configuration in force, for the start and stop events.
fn config_digest(ctx: &Context) -> (Option<String>, String) {
    use sha2::Digest;
    let digest = match &ctx.config_path {
        Some(p) => std::fs::read(p)
            .map(|b| hex::encode(sha2::Sha256::digest(b)))
            .unwrap_or_default(),
        None => String::from("defaults"),
    };
    (
        ctx.config_path.as_ref().map(|p| p.display().to_string()),
        digest,
    )
}

/// Audits the server's own start and stop, with a digest of the configuration in force.
async fn record(
    store: &dyn AuditStore,
    what: &str,
    (config, digest): &(Option<String>, String),
) -> anyhow::Result<()> {
    let mut e = AuditEvent::new(
        time::OffsetDateTime::now_utc(),
        EventKind::ConfigChange,
        Outcome::Success,
    )
    .with_target(what);
    e.details = Some(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": config,
        "config_sha256": digest,
    }));
    store
        .append(e)
        .await
        .context("cannot write to the audit log")?;
    Ok(())
}

/// Reloads the HITL risk and trust entries that are half-way to their TTL, so a decision
/// on the request path rarely waits for a load from the store.
async fn hitl_refresh_loop(
    engine: Arc<ContextAwareEngine>,
    store: Arc<dyn AuditStore>,
    shutdown: CancellationToken,
) {
    let c = engine.config();
    let half = (c.risk_ttl.min(c.trust_ttl) / 2).max(1);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(half)) => {}
        }
        let older = time::Duration::seconds(i64::try_from(half).unwrap_or(i64::MAX));
        if let Err(e) = engine.refresh(store.as_ref(), older).await {
            tracing::warn!(error = %e, "HITL cache refresh failed");
        }
    }
}

async fn retention_loop(store: Arc<dyn AuditStore>, days: u32, shutdown: CancellationToken) {
    loop {
        let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
        match store.apply_retention(cutoff).await {
            Ok(r) if r.deleted > 0 => tracing::info!(deleted = r.deleted, days, "audit retention"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "audit retention failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

pub async fn signal_shutdown(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            token.cancel();
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: draining in-flight work");
    token.cancel();
}
