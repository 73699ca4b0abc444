//! Content inspection: a linear-time rule engine that finds secrets, prompt-injection
//! markers and PII in bytes, streams and JSON values.
//!
//! Owns the rule model ([`RuleSpec`] → compiled [`Rule`]), the built-in rule set, the
//! gitleaks TOML loader, the streaming scanner with its decoders (base64, percent
//! encoding, gzip/deflate) and the JSON scan/redact API the gateway calls.
//!
//! Key design decisions:
//! - **Linear time only.** Every regex is compiled with `regex-automata`'s meta engine
//!   (no backtracking), in ASCII mode like Go's RE2, so a hostile payload cannot make a
//!   scan super-linear.
//! - **Keywords gate regexes.** One ASCII-case-insensitive Aho-Corasick automaton over all
//!   rules' keywords runs first; a rule's regex then runs only inside windows around its
//!   keyword hits (`window` bytes either side, less on a side where no match holding the
//!   hit can reach further: `reach`). A SIMD prefilter (Teddy over a lowercased
//!   copy, on a rare substring of each keyword) narrows where that automaton runs, and
//!   the keyword-less card / IBAN rules run only where a cheap necessary condition holds
//!   (`prefilter`); both only narrow, never change, what is found (property-tested).
//! - **Some regexes are matched by hand** where their form makes every match forced: the
//!   generic assignment rule (`assign`) and token rules that are a fixed sequence of byte
//!   classes (`shape`). The regex stays the rule's definition, and property tests compare
//!   the two.
//! - **A finding never holds the secret.** [`Finding`] stores offsets and a redacted
//!   preview only, so no `Debug`, `Display`, serde output or log line can leak it.
//! - **Nothing is silently skipped.** Inputs of any size are scanned in overlapping chunks;
//!   a decoder that hits its cap (decompression bomb) reports a finding instead of
//!   giving up quietly.

mod assign;
mod builtin;
mod classes;
mod decode;
mod engine;
mod finding;
mod gitleaks;
mod inspectors;
mod json;
mod policy;
mod prefilter;
mod reach;
mod rule;
mod runs;
mod shape;

pub use builtin::{builtin_rules, builtin_secrets};
pub use engine::{ScanConfig, Scanner};
pub use finding::{Encoding, Finding, Span};
pub use gitleaks::{GitleaksRules, SkippedRule, load_gitleaks_file, parse_gitleaks_toml};
pub use inspectors::{builtin_pii, builtin_prompt_injection};
pub use json::{JsonFinding, redact_bytes};
pub use policy::{Action, InspectPolicy};
pub use rule::{
    Allowlist, RegexDialect, RegexTarget, Rule, RuleSpec, Severity, Validator, shannon_entropy,
};

/// Rule id of the finding reported when a decoder refuses a body (a compressed body
/// inflating past the caps). Tagged `decoder` and `decompression-bomb`. Encodings nested
/// deeper than [`ScanConfig::max_decode_depth`] are not decoded, and not reported.
pub const DECODE_BOMB_RULE_ID: &str = "harombe-decompression-bomb";

/// Errors of the inspection module. Findings are not errors: a scan that finds secrets
/// succeeds and returns them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// A rule's regex (or one of its allowlist regexes) does not compile.
    #[error("rule `{rule_id}`{}: invalid regex: {message}", at_line(*line))]
    InvalidRegex {
        /// Id of the rule.
        rule_id: String,
        /// 1-based line in the rule file, when the rule came from one.
        line: Option<usize>,
        /// Why the regex was rejected.
        message: String,
    },
    /// A rule is well-formed TOML but not a usable rule (missing regex, bad group...).
    #[error("rule `{rule_id}`{}: {message}", at_line(*line))]
    InvalidRule {
        /// Id of the rule (`<unnamed>` when it has none).
        rule_id: String,
        /// 1-based line in the rule file, when the rule came from one.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A rule file has a field harombe does not know.
    #[error("unknown field `{field}`{}", at_line(*line))]
    UnknownField {
        /// The field's name.
        field: String,
        /// 1-based line of the field.
        line: Option<usize>,
    },
    /// A rule file is not valid TOML or does not have the expected shape.
    #[error("rule file{}: {message}", at_line(*line))]
    RuleFile {
        /// 1-based line of the problem.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// Two rules share an id.
    #[error("duplicate rule id `{rule_id}`{}", at_line(*line))]
    DuplicateRule {
        /// The repeated id.
        rule_id: String,
        /// 1-based line of the second definition, when known.
        line: Option<usize>,
    },
    /// Reading the input or a rule file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

impl InspectError {
    /// Short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidRegex { .. } => "invalid_regex",
            Self::InvalidRule { .. } => "invalid_rule",
            Self::UnknownField { .. } => "unknown_field",
            Self::RuleFile { .. } => "rule_file",
            Self::DuplicateRule { .. } => "duplicate_rule",
            Self::Io(_) => "io",
        }
    }

    /// Whether retrying the same operation could succeed (only I/O errors may).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Io(e) if matches!(
            e.kind(),
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ))
    }
}
