//! `harombe agents {add,list,revoke}`: the agents allowed through the MCP gateway and
//! their bearer tokens (stored as SHA-256 hashes in `<data_dir>/agents.json`).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use harombe_core::{AgentId, AuditEvent, EventKind, Outcome};
use harombe_gateway::{AgentRegistry, FileAgentRegistry};

use crate::Context;

#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub command: AgentsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Add an agent and print its token (shown this once; only its hash is kept).
    Add { name: String },
    /// List agents (never their tokens).
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an agent's token.
    Revoke { name: String },
}

pub async fn run(args: AgentsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let reg = FileAgentRegistry::open(&ctx.data_dir).with_context(|| {
        format!(
            "cannot open the agent registry in {}",
            ctx.data_dir.display()
        )
    })?;
    match args.command {
        AgentsCommand::Add { name } => {
            let agent = AgentId::new(name).context("invalid agent name")?;
            let token = reg.add(&agent)?;
            audit(ctx, "agents.add", &agent).await?;
            eprintln!("added agent {agent}; its token is shown once, store it now:");
            println!("{}", token.expose());
            Ok(ExitCode::SUCCESS)
        }
        AgentsCommand::List { json } => {
            let agents = reg.list()?;
            if json {
                for a in &agents {
                    println!("{}", serde_json::to_string(a)?);
                }
            } else {
                println!("{:<32} {:<26} {:<26}", "AGENT", "CREATED", "REVOKED");
                for a in &agents {
                    let fmt = |t: time::OffsetDateTime| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default()
                    };
                    println!(
                        "{:<32} {:<26} {:<26}",
                        a.name.as_str(),
                        fmt(a.created),
                        a.revoked.map(fmt).unwrap_or_else(|| "-".into())
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentsCommand::Revoke { name } => {
            let agent = AgentId::new(name).context("invalid agent name")?;
            if reg.revoke(&agent)? {
                audit(ctx, "agents.revoke", &agent).await?;
                eprintln!("revoked agent {agent}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no active agent named {agent}");
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// Records an administrative change to the agents in the audit log.
async fn audit(ctx: &Context, what: &str, agent: &AgentId) -> anyhow::Result<()> {
    let store = ctx.open_store().await?;
    let e = AuditEvent::new(
        time::OffsetDateTime::now_utc(),
        EventKind::ConfigChange,
        Outcome::Success,
    )
    .with_target(what)
    .with_agent(agent.clone());
    store.append(e).await.context("cannot audit the change")?;
    store.close().await?;
    Ok(())
}
