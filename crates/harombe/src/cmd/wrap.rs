//! `harombe wrap --agent NAME -- <server command ...>`: run a stdio MCP server behind the
//! gateway's pipeline and audit, speaking MCP on our own stdin/stdout.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use harombe_core::AgentId;

use crate::Context;

#[derive(Debug, Args)]
pub struct WrapArgs {
    /// The agent the calls are attributed to (policies and audit use this name).
    #[arg(long)]
    pub agent: String,
    /// The MCP server to run, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub async fn run(args: WrapArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let agent = AgentId::new(args.agent).context("invalid agent name")?;
    let store = ctx.open_store().await?;
    let (deps, detection) = ctx.gateway_deps(store.clone())?;
    detection
        .audit_load_failures(store.as_ref(), &harombe_core::SystemClock)
        .await?;
    // stdout is the MCP stream: logs must go to stderr (init_logging does).
    let code = harombe_gateway::wrap(
        ctx.config.gateway.clone(),
        deps,
        agent,
        args.command,
        tokio::io::stdin(),
        tokio::io::stdout(),
    )
    .await
    .context("wrap failed")?;
    Ok(ExitCode::from(
        u8::try_from(code.clamp(0, 255)).unwrap_or(1),
    ))
}
