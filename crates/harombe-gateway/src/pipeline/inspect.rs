//! Seam: content inspection of arguments and results (secrets, injection markers, URLs).
//! The content-inspection engine plugs in here; the default passes everything.

use async_trait::async_trait;
use harombe_core::Verdict;
use serde_json::value::RawValue;

use super::CallRecord;

/// What an inspection found.
#[derive(Clone, Debug, PartialEq)]
pub struct Inspection {
    pub verdict: Verdict,
    /// A secret was found: a deny is answered with -32004 instead of -32001.
    pub secret_detected: bool,
    /// Findings for the audit event's details (no secret values in them).
    pub findings: Vec<serde_json::Value>,
    /// A redacted copy of the arguments for the audit log.
    pub redacted_arguments: Option<serde_json::Value>,
    /// What to send on instead of the inspected value when the verdict allows it: the
    /// arguments the tool receives, or the `result` the agent receives (findings cut out).
    pub replacement: Option<serde_json::Value>,
}

impl Inspection {
    pub fn pass() -> Self {
        Self {
            verdict: Verdict::allow(),
            secret_detected: false,
            findings: Vec::new(),
            redacted_arguments: None,
            replacement: None,
        }
    }
}

#[async_trait]
pub trait InspectStage: Send + Sync + std::fmt::Debug {
    async fn inspect_arguments(&self, _call: &CallRecord) -> Inspection {
        Inspection::pass()
    }
    /// `result` is the upstream's raw `result` member.
    async fn inspect_result(&self, _call: &CallRecord, _result: &RawValue) -> Inspection {
        Inspection::pass()
    }
    /// `definition` is one tool as `upstream` listed it (name, description, inputSchema):
    /// what a description says reaches the model as trusted text. A deny hides the tool;
    /// a replacement (the definition with findings cut out) is listed instead.
    async fn inspect_tool(&self, _upstream: &str, _definition: &RawValue) -> Inspection {
        Inspection::pass()
    }
}

/// Passes everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThroughInspect;

impl InspectStage for PassThroughInspect {}
