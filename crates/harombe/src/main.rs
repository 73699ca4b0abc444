//! The `harombe` binary: command line, configuration, and the wiring of concrete backends
//! (SQLite or PostgreSQL, ...) into the ports the planes use. It is the only crate that
//! names concrete implementations.

mod cmd;
mod config;
mod hitl;
mod stages;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use harombe_core::AuditStore;

/// The security gateway AI agents run behind.
#[derive(Debug, Parser)]
#[command(name = "harombe", version, about)]
struct Cli {
    /// Configuration file (harombe.toml, or .yaml/.yml). Without one, defaults apply.
    #[arg(long, global = true, env = "HAROMBE_CONFIG")]
    config: Option<PathBuf>,
    /// Where harombe keeps its state (audit database, agents, models).
    #[arg(long, global = true, env = "HAROMBE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway and the control plane until interrupted.
    Serve(cmd::serve::ServeArgs),
    /// Query, export, import and verify the audit log.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Check configuration files.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Manage the agents allowed through the gateway and their tokens.
    Agents(cmd::agents::AgentsArgs),
    /// Run a stdio MCP server behind the gateway, speaking MCP on stdin/stdout.
    Wrap(cmd::wrap::WrapArgs),
    /// Scan a file or stdin for secrets, injection markers and PII (exit 1 when found).
    Scan(cmd::scan::ScanArgs),
    /// Train the agents' anomaly models from the audit log and save them.
    Train(cmd::train::TrainArgs),
    /// List, approve and deny tool calls held for a human.
    #[command(subcommand)]
    Approvals(cmd::approvals::ApprovalsCommand),
    /// Run the server with a demo MCP upstream and a synthetic workload of agents (attacks
    /// and held calls included): the dashboard comes alive with one command.
    Demo(cmd::demo::DemoArgs),
    /// The built-in demo MCP server on stdin/stdout (used by `harombe demo`).
    #[command(hide = true)]
    DemoUpstream,
}

/// What every command gets: the loaded configuration and where state lives.
#[derive(Debug)]
pub struct Context {
    pub config: config::Config,
    pub config_path: Option<PathBuf>,
    pub data_dir: PathBuf,
}

impl Context {
    /// The agent registry (`<data_dir>/agents.json`).
    pub fn agents(&self) -> anyhow::Result<harombe_gateway::FileAgentRegistry> {
        harombe_gateway::FileAgentRegistry::open(&self.data_dir).with_context(|| {
            format!(
                "cannot open the agent registry in {}",
                self.data_dir.display()
            )
        })
    }

    /// The names of the agents that hold a valid token.
    pub fn active_agents(&self) -> anyhow::Result<Vec<harombe_core::AgentId>> {
        use harombe_gateway::AgentRegistry;
        Ok(self
            .agents()?
            .list()?
            .into_iter()
            .filter(|a| a.revoked.is_none())
            .map(|a| a.name)
            .collect())
    }

    /// The gateway's dependencies: the audit store, the agent registry and the engines
    /// that fill its seams (content inspection; detection, with the agents' saved models).
    pub fn gateway_deps(
        &self,
        store: Arc<dyn AuditStore>,
    ) -> anyhow::Result<(harombe_gateway::GatewayDeps, Arc<stages::DetectionStage>)> {
        let detection = Arc::new(stages::DetectionStage::new(
            self.config.detect.clone(),
            &self.data_dir,
        )?);
        detection.load(&self.active_agents()?);
        let deps = harombe_gateway::GatewayDeps::new(
            store,
            Arc::new(harombe_core::SystemClock),
            Arc::new(self.agents()?),
        )
        .with_inspect(Arc::new(stages::ContentInspection::new(
            self.config.inspect.clone(),
        )))
        .with_detect(detection.clone());
        Ok((deps, detection))
    }

    /// Opens the configured audit store and the approvals queue beside it.
    pub async fn open_stores(&self) -> anyhow::Result<harombe_store::Stores> {
        let location = self.config.store.location(&self.data_dir)?;
        harombe_store::open_stores(&location, self.config.store.options())
            .await
            .context("cannot open the audit store")
    }

    /// Opens the configured audit store.
    pub async fn open_store(&self) -> anyhow::Result<Arc<dyn AuditStore>> {
        let location = self.config.store.location(&self.data_dir)?;
        harombe_store::open(&location, self.config.store.options())
            .await
            .context("cannot open the audit store")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `config validate` reports problems itself instead of failing to start; `scan` needs
    // no configuration or state.
    match &cli.command {
        Command::Config(c) => return cmd::config::run(c, cli.config.as_deref()),
        Command::Scan(a) => return cmd::scan::run(a),
        Command::DemoUpstream => return cmd::demo_upstream::run(),
        _ => {}
    }
    let config = match &cli.config {
        Some(path) => config::load(path)?,
        None => config::Config::default(),
    };
    let data_dir_given = cli.data_dir.is_some();
    let data_dir = cli
        .data_dir
        .clone()
        .or_else(|| config.server.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("harombe-data"));
    cmd::init_logging(&config.log);
    let ctx = Context {
        config,
        config_path: cli.config,
        data_dir,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(&args, &ctx).await,
            Command::Audit(c) => cmd::audit::run(c, &ctx).await,
            Command::Agents(a) => cmd::agents::run(a, &ctx).await,
            Command::Wrap(a) => cmd::wrap::run(a, &ctx).await,
            Command::Train(a) => cmd::train::run(&a, &ctx).await,
            Command::Approvals(c) => cmd::approvals::run(c, &ctx).await,
            Command::Demo(a) => cmd::demo::run(&a, ctx, data_dir_given).await,
            Command::Config(_) | Command::Scan(_) | Command::DemoUpstream => {
                unreachable!("handled above")
            }
        }
    })
}
