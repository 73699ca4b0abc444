//! `harombe approvals list|show|approve|deny`: the approvals queue from the command line.
//! It writes to the same store the gateway waits on (SQLite file or PostgreSQL), so a
//! decision here releases a call held by a running `harombe serve`, on any replica.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use harombe_api::DecideError;
use harombe_core::{
    Approval, ApprovalDecision, ApprovalError, ApprovalId, ApprovalState, Clock as _, SystemClock,
};

use crate::Context;

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List approvals, newest first (pending ones by default).
    List(ListArgs),
    /// Show one approval in full (JSON).
    Show { id: String },
    /// Approve a held call: it proceeds to its upstream.
    Approve(DecideArgs),
    /// Deny a held call: the agent gets an error.
    Deny(DecideArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// pending, approved, denied, expired or all.
    #[arg(long, default_value = "pending")]
    pub state: String,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The approval's id (from `harombe approvals list`).
    pub id: String,
    /// Why (kept in the audit log).
    #[arg(long)]
    pub reason: Option<String>,
}

fn parse_id(s: &str) -> anyhow::Result<ApprovalId> {
    s.parse()
        .with_context(|| format!("{s:?} is not an approval id (a UUID, as `approvals list` shows)"))
}

/// Who decided: the operating-system user running the CLI.
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

pub async fn run(c: ApprovalsCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let stores = ctx.open_stores().await?;
    let code = match c {
        ApprovalsCommand::List(a) => {
            let state = match a.state.as_str() {
                "all" => None,
                s => Some(s.parse::<ApprovalState>().map_err(anyhow::Error::msg)?),
            };
            let list = stores.approvals.list(state, a.limit).await?;
            if a.json {
                for x in &list {
                    println!("{}", serde_json::to_string(x)?);
                }
            } else {
                print_table(&list);
            }
            ExitCode::SUCCESS
        }
        ApprovalsCommand::Show { id } => {
            let id = parse_id(&id)?;
            if let Some(a) = stores.approvals.get(id).await? {
                println!("{}", serde_json::to_string_pretty(&a)?);
                ExitCode::SUCCESS
            } else {
                eprintln!("error: no approval with id {id}");
                ExitCode::from(1)
            }
        }
        ApprovalsCommand::Approve(a) => decide(&stores, &a, true).await?,
        ApprovalsCommand::Deny(a) => decide(&stores, &a, false).await?,
    };
    stores.audit.close().await?;
    Ok(code)
}

async fn decide(
    stores: &harombe_store::Stores,
    a: &DecideArgs,
    approve: bool,
) -> anyhow::Result<ExitCode> {
    let id = parse_id(&a.id)?;
    let decision = ApprovalDecision {
        approve,
        by: operator(),
        reason: a.reason.clone(),
        at: SystemClock.now(),
    };
    match harombe_api::decide_and_audit(
        stores.approvals.as_ref(),
        stores.audit.as_ref(),
        &SystemClock,
        id,
        decision,
    )
    .await
    {
        Ok(x) => {
            println!(
                "{} {} ({} {} by {})",
                x.state,
                x.id(),
                x.request.agent,
                x.request.tool,
                x.decided_by.as_deref().unwrap_or("-")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(DecideError::Decision(
            e @ (ApprovalError::NotFound(_)
            | ApprovalError::AlreadyDecided { .. }
            | ApprovalError::Expired { .. }),
        )) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
        Err(DecideError::Decision(e)) => Err(e.into()),
        Err(DecideError::Audit { approval, source }) => Err(anyhow::anyhow!(
            "approval {} is {}, but its audit event was not written: {source}",
            approval.id(),
            approval.state
        )),
    }
}

fn print_table(list: &[Approval]) {
    println!(
        "{:<36}  {:<8}  {:<20}  {:<24}  {:<20}  REASONS",
        "ID", "STATE", "AGENT", "TOOL", "CREATED"
    );
    let now = time::OffsetDateTime::now_utc();
    for a in list {
        let created = a
            .request
            .created
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        println!(
            "{:<36}  {:<8}  {:<20}  {:<24}  {:<20}  {}",
            a.id(),
            a.state_at(now),
            a.request.agent,
            a.request.tool,
            created,
            a.request.reasons.join("; ")
        );
    }
}
