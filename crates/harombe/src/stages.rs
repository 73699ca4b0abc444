//! The gateway's seams filled with concrete engines: content inspection of tool arguments
//! and results with harombe-detect's rule engine.
//!
//! The seam can refuse a call or flag it, but not rewrite what the tool or the agent
//! receives; so a finding whose policy says "redact" is refused here (fail closed), and
//! the audit log keeps a redacted copy of the arguments.

use async_trait::async_trait;
use harombe_core::Verdict;
use harombe_detect::inspect::{Action, InspectPolicy, JsonFinding, Scanner};
use harombe_gateway::{CallRecord, InspectStage, Inspection};
use serde::Deserialize;
use serde_json::value::RawValue;

/// `[inspect]` in harombe.toml.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectConfig {
    /// Scan arguments and results at all.
    pub enabled: bool,
    /// What to do with findings in tool arguments (tags or rule ids → block / redact /
    /// log). Redact refuses the call (the tool must not receive the secret).
    pub arguments: InspectPolicy,
    /// What to do with findings in tool results. Block and redact refuse the result;
    /// log flags it in the audit log.
    pub results: InspectPolicy,
}

impl Default for InspectConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|t| (*t).to_owned()).collect();
        Self {
            enabled: true,
            arguments: InspectPolicy {
                block: s(&["secret", "private-key", "decompression-bomb"]),
                redact: Vec::new(),
                log: s(&["pii", "injection"]),
                default: Action::Log,
            },
            results: InspectPolicy {
                block: s(&["private-key", "secret", "decompression-bomb"]),
                redact: Vec::new(),
                log: s(&["pii", "injection"]),
                default: Action::Log,
            },
        }
    }
}

/// Content inspection with the built-in rules.
#[derive(Debug)]
pub struct ContentInspection {
    scanner: Scanner,
    config: InspectConfig,
}

impl ContentInspection {
    pub fn new(config: InspectConfig) -> Self {
        Self {
            scanner: Scanner::builtin(),
            config,
        }
    }

    fn judge(
        &self,
        policy: &InspectPolicy,
        findings: &[JsonFinding],
        place: &str,
    ) -> (Verdict, bool) {
        let action = policy.decide(findings.iter().map(|f| &f.finding));
        let refusing: Vec<&str> = findings
            .iter()
            .filter(|f| {
                matches!(
                    policy.action_for(&f.finding),
                    Action::Block | Action::Redact
                )
            })
            .map(|f| f.finding.rule_id.as_str())
            .collect();
        let secret = findings.iter().any(|f| {
            matches!(
                policy.action_for(&f.finding),
                Action::Block | Action::Redact
            ) && f
                .finding
                .tags
                .iter()
                .any(|t| t == "secret" || t == "private-key")
        });
        match action {
            Action::Block | Action::Redact => (
                Verdict::deny(format!(
                    "content inspection: {} in {place}",
                    refusing.join(", ")
                )),
                secret,
            ),
            Action::Log | Action::Allow => (Verdict::allow(), false),
        }
    }
}

/// A finding as the audit log keeps it: where and what, never the value.
fn describe(place: &str, f: &JsonFinding) -> serde_json::Value {
    serde_json::json!({
        "in": place,
        "pointer": f.pointer,
        "rule": f.finding.rule_id,
        "tags": f.finding.tags,
        "severity": f.finding.severity,
        "start": f.finding.span.start,
        "end": f.finding.span.end,
        "preview": f.finding.preview,
    })
}

#[async_trait]
impl InspectStage for ContentInspection {
    async fn inspect_arguments(&self, call: &CallRecord) -> Inspection {
        if !self.config.enabled {
            return Inspection::pass();
        }
        let findings = self.scanner.scan_json(&call.arguments);
        if findings.is_empty() {
            return Inspection::pass();
        }
        let (verdict, secret_detected) = self.judge(&self.config.arguments, &findings, "arguments");
        let mut redacted = call
            .redacted_arguments
            .clone()
            .unwrap_or_else(|| call.arguments.clone());
        self.scanner.redact_json(&mut redacted);
        Inspection {
            verdict,
            secret_detected,
            findings: findings.iter().map(|f| describe("arguments", f)).collect(),
            redacted_arguments: Some(redacted),
        }
    }

    async fn inspect_result(&self, _call: &CallRecord, result: &RawValue) -> Inspection {
        if !self.config.enabled {
            return Inspection::pass();
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(result.get()) else {
            return Inspection::pass();
        };
        let findings = self.scanner.scan_json(&value);
        if findings.is_empty() {
            return Inspection::pass();
        }
        let (verdict, secret_detected) = self.judge(&self.config.results, &findings, "result");
        Inspection {
            verdict,
            secret_detected,
            findings: findings.iter().map(|f| describe("result", f)).collect(),
            redacted_arguments: None,
        }
    }
}
