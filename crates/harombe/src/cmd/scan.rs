//! `harombe scan <file|->`: scan a file or standard input for secrets, prompt-injection
//! markers and PII with the built-in rules and/or a gitleaks-format rule file.
//!
//! Exit codes: 0 clean, 1 findings, 2 error (bad rule file, unreadable input). Findings
//! show a redacted preview only; the secret itself is never printed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use harombe_detect::inspect::{Finding, ScanConfig, Scanner, builtin_rules, load_gitleaks_file};

/// Output format of `harombe scan`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanFormat {
    /// One line per finding: `path:line: rule-id [severity] preview`.
    Text,
    /// One JSON document: `{"path": ..., "findings": [...], "skipped_rules": [...]}`.
    Json,
}

/// Arguments of `harombe scan`.
#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// File to scan, or `-` for standard input.
    pub path: String,
    /// gitleaks-format TOML rule file, used alongside the built-in rules.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Do not use the built-in rules (needs --rules).
    #[arg(long)]
    pub no_builtin: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ScanFormat,
}

/// Runs the scan. Errors are reported on stderr and turned into exit code 2 here, so the
/// caller can return the `ExitCode` as is.
pub fn run(args: &ScanArgs) -> anyhow::Result<ExitCode> {
    match scan(args) {
        Ok(found) => Ok(ExitCode::from(u8::from(found))),
        Err(e) => {
            eprintln!("harombe scan: error: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Returns whether anything was found.
fn scan(args: &ScanArgs) -> anyhow::Result<bool> {
    let mut specs = if args.no_builtin {
        Vec::new()
    } else {
        builtin_rules()
    };
    let mut skipped = Vec::new();
    if let Some(path) = &args.rules {
        let loaded = load_gitleaks_file(path)
            .map_err(|e| anyhow::anyhow!("rule file {}: {e}", path.display()))?;
        for s in &loaded.skipped {
            eprintln!(
                "harombe scan: skipped rule `{}` (line {}): {}",
                s.id, s.line, s.reason
            );
        }
        skipped = loaded.skipped;
        specs.extend(loaded.rules);
    }
    if specs.is_empty() {
        anyhow::bail!("no rules to scan with (--no-builtin needs --rules with at least one rule)");
    }
    let scanner = Scanner::new(specs, ScanConfig::default()).map_err(|e| match &args.rules {
        Some(path) => anyhow::anyhow!("rule file {}: {e}", path.display()),
        None => anyhow::anyhow!("{e}"),
    })?;

    let input: Box<dyn std::io::Read> = if args.path == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&args.path)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", args.path))?,
        )
    };
    let label = if args.path == "-" {
        "<stdin>"
    } else {
        args.path.as_str()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut findings: Vec<Finding> = Vec::new();
    let mut count = 0usize;
    let mut write_err = None;
    // A read error ends the scan after the findings before it: they are printed either
    // way, then the error is returned.
    let scanned = scanner
        .scan_reader(input, |f| {
            count += 1;
            match args.format {
                ScanFormat::Text => {
                    if write_err.is_none()
                        && let Err(e) = writeln!(
                            out,
                            "{label}:{}: {} [{:?}] {} (bytes {}..{})",
                            f.line, f.rule_id, f.severity, f.preview, f.span.start, f.span.end
                        )
                    {
                        write_err = Some(e);
                    }
                }
                ScanFormat::Json => findings.push(f),
            }
        })
        .map_err(|e| anyhow::anyhow!("scanning {label}: {e}"));
    if let Some(e) = write_err {
        return Err(e.into());
    }
    if args.format == ScanFormat::Json {
        let skipped: Vec<serde_json::Value> = skipped
            .iter()
            .map(|s| serde_json::json!({"id": s.id, "line": s.line, "reason": s.reason}))
            .collect();
        let mut doc =
            serde_json::json!({"path": label, "findings": findings, "skipped_rules": skipped});
        if let Err(e) = &scanned {
            doc["error"] = format!("{e:#}").into();
        }
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    }
    out.flush()?;
    scanned?;
    Ok(count > 0)
}
