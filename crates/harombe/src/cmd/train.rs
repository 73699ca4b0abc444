//! `harombe train`: trains each agent's anomaly model (baseline and Isolation Forest) from
//! its latest tool calls in the audit log and saves it under `<data_dir>/models/`, where
//! `serve` loads it. `serve` also retrains on its own schedule (`detect.retrain_minutes`).

use std::process::ExitCode;

use clap::Args;
use harombe_core::AgentId;

use crate::Context;
use crate::stages::DetectionStage;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Only this agent (default: every agent with a valid token).
    #[arg(long)]
    agent: Option<String>,
}

pub async fn run(args: &TrainArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let agents = match &args.agent {
        Some(a) => vec![AgentId::new(a.clone()).map_err(|e| anyhow::anyhow!("--agent: {e}"))?],
        None => ctx.active_agents()?,
    };
    let store = ctx.open_store().await?;
    let stage = DetectionStage::new(ctx.config.detect.clone(), &ctx.data_dir)?;
    for agent in &agents {
        let n = stage.train(&*store, agent).await?;
        println!("{agent}: trained on {n} tool calls");
    }
    if agents.is_empty() {
        println!("no agents to train (add one with `harombe agents add NAME`)");
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}
