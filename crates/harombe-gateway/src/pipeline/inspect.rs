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
    /// Nothing found, nothing to replace, allowed: what was inspected goes on as is.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
            && self.replacement.is_none()
            && self.verdict.decision == harombe_core::Decision::Allow
    }

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
    /// `params` of a message `upstream` started on its way to an agent: a request
    /// (`sampling/createMessage`, `elicitation/create`), a log message, progress. What it
    /// carries reaches the agent's model or user like a result does. A deny withholds the
    /// message (a request is answered with an error); a replacement (the params with
    /// findings cut out) is delivered instead. Not async: it runs on the upstream's reader,
    /// so these messages keep their order with the call's answer.
    fn inspect_upstream_message(
        &self,
        _upstream: &str,
        _method: &str,
        _params: &RawValue,
    ) -> Inspection {
        Inspection::pass()
    }
    /// The agent's answer (its `result`) to a request `upstream` started (`method`: a
    /// sampling completion, what the user entered for an elicitation): it leaves the agent
    /// for the tool server, as arguments do. A deny sends the upstream an error instead;
    /// a replacement is sent in its place.
    async fn inspect_agent_answer(
        &self,
        _upstream: &str,
        _method: &str,
        _answer: &RawValue,
    ) -> Inspection {
        Inspection::pass()
    }
}

/// Passes everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThroughInspect;

impl InspectStage for PassThroughInspect {}
