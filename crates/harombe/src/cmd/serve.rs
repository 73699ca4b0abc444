//! `harombe serve`: the MCP gateway, the control plane (health for now), the audit store
//! and the background jobs, until SIGINT or SIGTERM; then a drain (in-flight calls finish,
//! then the audit writer), so nothing acknowledged is lost.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use harombe_core::{AuditEvent, AuditStore, EventKind, Outcome};
use tokio_util::sync::CancellationToken;

use crate::Context;

#[derive(Debug, Args)]
pub struct ServeArgs {}

pub async fn run(_args: &ServeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store().await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));

    record(&*store, "serve.start", ctx).await?;
    let retention = ctx
        .config
        .store
        .retention_days
        .map(|days| tokio::spawn(retention_loop(store.clone(), days.get(), shutdown.clone())));

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
    tracing::info!(
        mcp = %format!("http://{}{}", gateway_listener.local_addr()?, ctx.config.gateway.path),
        "MCP gateway listening"
    );
    tracing::info!(
        control = %format!("http://{}", control.local_addr()?),
        data_dir = %ctx.data_dir.display(),
        "harombe is up"
    );
    let (deps, detection) = ctx.gateway_deps(store.clone())?;
    let training =
        tokio::spawn(detection.retrain_loop(store.clone(), ctx.active_agents()?, shutdown.clone()));
    let gateway = tokio::spawn(harombe_gateway::serve_with_listener(
        gateway_listener,
        ctx.config.gateway.clone(),
        deps,
        shutdown.clone(),
    ));

    let app = Router::new()
        .route("/healthz", get(healthz))
        .with_state(store.clone());
    let done = shutdown.clone();
    let control =
        axum::serve(control, app).with_graceful_shutdown(async move { done.cancelled().await });
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
    control?;
    gateway
        .context("the gateway task failed")?
        .context("the gateway failed")?;

    if let Some(r) = retention {
        r.abort();
    }
    training.abort();
    record(&*store, "serve.stop", ctx).await?;
    store.close().await?;
    tracing::info!("harombe stopped; every acknowledged event is durable");
    Ok(ExitCode::SUCCESS)
}

async fn healthz(
    State(store): State<Arc<dyn AuditStore>>,
) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    match store.head().await {
        Ok(head) => (
            axum::http::StatusCode::OK,
            Json(serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "audit": { "head_seq": head.map_or(0, |h| h.seq) },
            })),
        ),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "degraded", "audit": { "error": e.to_string() } })),
        ),
    }
}

/// Audits the server's own start and stop, with a digest of the configuration in force.
async fn record(store: &dyn AuditStore, what: &str, ctx: &Context) -> anyhow::Result<()> {
    use sha2::Digest;
    let config_digest = match &ctx.config_path {
        Some(p) => std::fs::read(p)
            .map(|b| hex::encode(sha2::Sha256::digest(b)))
            .unwrap_or_default(),
        None => String::from("defaults"),
    };
    let mut e = AuditEvent::new(
        time::OffsetDateTime::now_utc(),
        EventKind::ConfigChange,
        Outcome::Success,
    )
    .with_target(what);
    e.details = Some(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": ctx.config_path.as_ref().map(|p| p.display().to_string()),
        "config_sha256": config_digest,
    }));
    store
        .append(e)
        .await
        .context("cannot write to the audit log")?;
    Ok(())
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

async fn signal_shutdown(token: CancellationToken) {
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
