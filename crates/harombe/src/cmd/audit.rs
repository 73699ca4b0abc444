//! `harombe audit {query,export,import,verify}`.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use harombe_core::chain::ChainHash;
use harombe_core::{
    AgentId, AuditEvent, AuditStore, Decision, EventFilter, EventKind, Order, Outcome, PageRequest,
    SessionId, StoreError, ThreatLevel,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Context;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List events, newest first, with filters.
    Query(Box<QueryArgs>),
    /// Write every event (with its seq and hash) to stdout or a file.
    Export(ExportArgs),
    /// Append the events of an export to this log (re-chained); reports what it refused.
    Import(ImportArgs),
    /// Walk the hash chain: exit 0 when intact, 1 naming the first bad event.
    Verify(VerifyArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum QueryFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[arg(long)]
    agent: Option<String>,
    #[arg(long)]
    session: Option<String>,
    /// Event kind (tool_call, tool_result, tools_listed, decision, approval, auth, ...).
    #[arg(long)]
    kind: Option<String>,
    /// Tool, resource or host the event is about.
    #[arg(long)]
    tool: Option<String>,
    #[arg(long)]
    outcome: Option<String>,
    /// allow, hold or deny.
    #[arg(long)]
    verdict: Option<String>,
    /// Events at this threat level or above (none, low, medium, high, critical).
    #[arg(long)]
    min_threat: Option<String>,
    /// RFC 3339 time, or a duration ago such as 15m, 2h, 7d.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 time, or a duration ago (exclusive).
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Continue after this seq (the `next_cursor` of the previous page).
    #[arg(long)]
    cursor: Option<u64>,
    /// Oldest first instead of newest first.
    #[arg(long)]
    oldest_first: bool,
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    format: QueryFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,
    /// Write here instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A JSONL file written by `harombe audit export` (`-` for stdin is not accepted: the
    /// file is read twice, once to check its chain).
    file: PathBuf,
    /// Import even when the file's own hash chain is broken (events changed, removed or
    /// reordered since export). The import is audited either way.
    #[arg(long)]
    allow_broken_chain: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VerifyFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    format: VerifyFormat,
}

pub async fn run(cmd: AuditCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store().await?;
    let code = match cmd {
        AuditCommand::Query(a) => query(&a, &*store).await,
        AuditCommand::Export(a) => export(&a, &*store).await,
        AuditCommand::Import(a) => import(&a, &*store).await,
        AuditCommand::Verify(a) => verify(&a, &*store).await,
    };
    store.close().await?;
    code
}

/// `--since 2h` (ago) or an RFC 3339 time.
pub fn parse_time(flag: &str, s: &str, now: OffsetDateTime) -> anyhow::Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| {
        anyhow::anyhow!(
            "--{flag}: {s:?} is neither an RFC 3339 time nor a duration like 15m, 2h, 7d"
        )
    })?;
    let d = match unit {
        "s" => time::Duration::seconds(n),
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => bail!("--{flag}: unknown unit {unit:?} in {s:?} (s, m, h, d)"),
    };
    Ok(now - d)
}

fn flag<T, E: std::fmt::Display>(
    name: &str,
    v: Option<&str>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> anyhow::Result<Option<T>> {
    v.map(|s| parse(s).map_err(|e| anyhow::anyhow!("--{name}: {e}")))
        .transpose()
}

fn filter_of(a: &QueryArgs) -> anyhow::Result<EventFilter> {
    let now = OffsetDateTime::now_utc();
    Ok(EventFilter {
        agent: flag("agent", a.agent.as_deref(), str::parse::<AgentId>)?,
        session: flag("session", a.session.as_deref(), str::parse::<SessionId>)?,
        kind: flag("kind", a.kind.as_deref(), str::parse::<EventKind>)?,
        target: a.tool.clone(),
        outcome: flag("outcome", a.outcome.as_deref(), str::parse::<Outcome>)?,
        decision: flag("verdict", a.verdict.as_deref(), str::parse::<Decision>)?,
        min_threat: flag(
            "min-threat",
            a.min_threat.as_deref(),
            str::parse::<ThreatLevel>,
        )?,
        since: a
            .since
            .as_deref()
            .map(|s| parse_time("since", s, now))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| parse_time("until", s, now))
            .transpose()?,
    })
}

async fn query(a: &QueryArgs, store: &dyn AuditStore) -> anyhow::Result<ExitCode> {
    let filter = filter_of(a)?;
    let order = if a.oldest_first {
        Order::OldestFirst
    } else {
        Order::NewestFirst
    };
    let page = store
        .query(
            &filter,
            PageRequest {
                limit: a.limit,
                cursor: a.cursor,
                order,
            },
        )
        .await?;
    let mut out = std::io::stdout().lock();
    match a.format {
        QueryFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &page)?;
            writeln!(out)?;
        }
        QueryFormat::Table => {
            writeln!(
                out,
                "{:>8}  {:<27}  {:<17}  {:<16}  {:<24}  {:<8}  {:<6}  THREAT",
                "SEQ", "TIME", "KIND", "AGENT", "TARGET", "OUTCOME", "VERDICT"
            )?;
            for s in &page.events {
                let e = &s.event;
                writeln!(
                    out,
                    "{:>8}  {:<27}  {:<17}  {:<16}  {:<24}  {:<8}  {:<6}  {}",
                    s.seq,
                    e.timestamp.format(&Rfc3339).unwrap_or_default(),
                    e.kind,
                    e.agent.as_ref().map_or("-", |a| a.as_str()),
                    clip(e.target.as_deref().unwrap_or("-"), 24),
                    e.outcome,
                    e.verdict.as_ref().map_or("-", |v| v.decision.as_str()),
                    e.threat_level.map_or("-", |t| t.as_str()),
                )?;
            }
            if let Some(c) = page.next_cursor {
                writeln!(out, "(more: --cursor {c})")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Shortens for the table, replacing control characters so a hostile value cannot rewrite
/// the terminal.
fn clip(s: &str, n: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() <= n {
        clean
    } else {
        let mut t: String = clean.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

async fn export(a: &ExportArgs, store: &dyn AuditStore) -> anyhow::Result<ExitCode> {
    let ExportFormat::Jsonl = a.format;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut after = 0;
    let mut n = 0u64;
    loop {
        let batch = store.read_after(after, 5_000).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for s in &batch {
            serde_json::to_writer(&mut out, s)?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    eprintln!("exported {n} events");
    Ok(ExitCode::SUCCESS)
}

/// One line of an export: the event with the seq and hash it had.
fn parse_line(line: &str) -> Result<(u64, ChainHash, AuditEvent), String> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let seq = v
        .remove("seq")
        .and_then(|s| s.as_u64())
        .ok_or("missing or invalid \"seq\"")?;
    let hash: ChainHash = v
        .remove("hash")
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| format!("invalid \"hash\": {e}"))?
        .ok_or("missing \"hash\"")?;
    let event: AuditEvent = serde_json::from_value(serde_json::Value::Object(v))
        .map_err(|e| format!("invalid event: {e}"))?;
    event.validate().map_err(|e| e.to_string())?;
    Ok((seq, hash, event))
}

/// First pass: is the file's own chain continuous? Returns the first break.
fn check_file_chain(path: &std::path::Path) -> anyhow::Result<Option<String>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut prev: Option<(u64, ChainHash)> = None;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line
            .with_context(|| format!("{}: line {} is not readable text", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok((seq, hash, event)) = parse_line(&line) else {
            continue;
        };
        let body = event
            .encode()
            .map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?;
        let expected_prev = match prev {
            Some((p, h)) if seq == p + 1 => Some(h),
            Some((p, _)) => {
                return Ok(Some(format!(
                    "line {}: seq {seq} follows seq {p} (events missing or reordered)",
                    i + 1
                )));
            }
            None if seq == 1 => Some(ChainHash::GENESIS),
            None => None,
        };
        if let Some(ph) = expected_prev
            && ph.next(seq, &body) != hash
        {
            return Ok(Some(format!(
                "line {}: event seq {seq} (id {}) does not match its hash (changed)",
                i + 1,
                event.id
            )));
        }
        prev = Some((seq, hash));
    }
    Ok(None)
}

async fn import(a: &ImportArgs, store: &dyn AuditStore) -> anyhow::Result<ExitCode> {
    let broken = check_file_chain(&a.file)?;
    if let Some(b) = &broken {
        if !a.allow_broken_chain {
            eprintln!(
                "refusing to import {}: its hash chain is broken at {b}",
                a.file.display()
            );
            eprintln!("(pass --allow-broken-chain to import it anyway; the import is audited)");
            return Ok(ExitCode::from(1));
        }
        eprintln!("warning: the file's hash chain is broken at {b}; importing anyway");
    }
    let f = std::fs::File::open(&a.file)
        .with_context(|| format!("cannot open {}", a.file.display()))?;
    let mut refused: Vec<String> = Vec::new();
    let mut imported = 0u64;
    let mut range: Option<(u64, u64)> = None;
    let mut chunk: Vec<(usize, AuditEvent)> = Vec::new();
    let mut lines = BufReader::new(f).lines().enumerate().peekable();
    while lines.peek().is_some() {
        for (i, line) in lines.by_ref() {
            let n = i + 1;
            match line {
                Err(e) => refused.push(format!("line {n}: not readable text ({e})")),
                Ok(l) if l.trim().is_empty() => {}
                Ok(l) => match parse_line(&l) {
                    Ok((_, _, event)) => chunk.push((n, event)),
                    Err(why) => refused.push(format!("line {n}: {why}")),
                },
            }
            if chunk.len() >= 1_000 {
                break;
            }
        }
        let (numbers, events): (Vec<usize>, Vec<AuditEvent>) = chunk.drain(..).unzip();
        for (n, result) in numbers.into_iter().zip(store.append_many(events).await) {
            match result {
                Ok(a) => {
                    imported += 1;
                    range = Some(range.map_or((a.seq, a.seq), |(lo, _)| (lo, a.seq)));
                }
                Err(StoreError::Duplicate { id }) => {
                    refused.push(format!("line {n}: event {id} is already in the log"));
                }
                Err(e @ StoreError::InvalidEvent(_)) => refused.push(format!("line {n}: {e}")),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("import stopped at line {n}; {imported} events were imported")
                    });
                }
            }
        }
    }
    let mut audit = AuditEvent::new(
        OffsetDateTime::now_utc(),
        EventKind::ConfigChange,
        if refused.is_empty() {
            Outcome::Success
        } else {
            Outcome::Failure
        },
    )
    .with_target("audit.import");
    audit.details = Some(serde_json::json!({
        "file": a.file.display().to_string(),
        "imported": imported,
        "refused": refused.len(),
        "file_chain_broken_at": broken,
    }));
    store.append(audit).await?;
    match range {
        Some((lo, hi)) => println!("imported {imported} events (seq {lo}..={hi})"),
        None => println!("imported 0 events"),
    }
    if refused.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    println!("refused {}:", refused.len());
    for r in &refused {
        println!("  {r}");
    }
    Ok(ExitCode::from(1))
}

async fn verify(a: &VerifyArgs, store: &dyn AuditStore) -> anyhow::Result<ExitCode> {
    let report = store.verify().await?;
    match a.format {
        VerifyFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        VerifyFormat::Text => match (&report.problem, report.head) {
            (None, Some(head)) => println!(
                "intact: {} events verified (seq {}..={}), head {}",
                report.checked, report.start.seq, head.seq, head.hash
            ),
            (None, None) => println!("intact: the log is empty"),
            (Some(p), _) => println!(
                "TAMPERED: {p} ({} events before it verified)",
                report.checked
            ),
        },
    }
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
