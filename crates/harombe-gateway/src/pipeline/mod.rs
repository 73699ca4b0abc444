//! The tool-call pipeline. One [`CallRecord`] travels through every stage and becomes the
//! audit event. The order is fixed, and it matters:
//!
//! 1. `authn`    — who is calling. Nothing else may run for an unknown caller (done by the
//!    transport before a message is dispatched; stdio `wrap` names its agent).
//! 2. `policy`   — allow/deny globs, then rate limits: cheapest refusals first, and before
//!    we spend CPU on an argument we may not even be allowed to see.
//! 3. `validate` — arguments against the tool's inputSchema, so the later stages only see
//!    well-formed arguments.
//! 4. `inspect`  — content inspection of the arguments (secrets, injection markers).
//! 5. `detect`   — threat scoring; may use the inspection findings.
//! 6. `decide`   — allow / hold / deny from everything gathered so far.
//! 7. `hold`     — a held call waits for a human (or fails closed).
//! 8. `forward`  — only now does the upstream see the call.
//! 9. `inspect`  — the result, before the agent sees it (leaks, injection aimed at it).
//! 10. `audit`   — last, so the record is complete; the agent is answered only after the
//!     event is durable.
//!
//! Inspect, detect, decide and hold are seams: traits with pass-through defaults that the
//! content-inspection engine, the threat scorer and the approval engine plug into.

pub mod audit;
pub mod authn;
pub mod decide;
pub mod detect;
pub mod forward;
pub mod hold;
pub mod inspect;
pub mod policy;
mod run;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use harombe_core::{AgentId, Decision, SessionId, ThreatLevel, Verdict};

pub use decide::{DecideStage, Decided, PassThroughDecide};
pub use detect::{DetectStage, Detection, PassThroughDetect};
pub use hold::{HoldStage, PassThroughHold};
pub use inspect::{InspectStage, Inspection, PassThroughInspect};

/// Everything known about one tool call; it becomes the `tool_call` audit event.
#[derive(Clone)]
pub struct CallRecord {
    pub agent: AgentId,
    pub session: Option<SessionId>,
    /// The tool name the agent used.
    pub tool: String,
    /// The upstream that serves it, and the tool's name there.
    pub upstream: Option<String>,
    pub upstream_tool: Option<String>,
    /// The arguments as sent (may hold secrets: never logged, never in Debug).
    pub arguments: serde_json::Value,
    /// What the audit log keeps instead of `arguments` (set by inspection, or the default
    /// key-based redaction).
    pub redacted_arguments: Option<serde_json::Value>,
    pub verdict: Verdict,
    pub threat_level: Option<ThreatLevel>,
    pub scores: BTreeMap<String, f64>,
    pub findings: Vec<serde_json::Value>,
    /// What the decide stage recorded (rule that fired, confidence, trust, risk).
    pub decision: Option<serde_json::Value>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub started: Instant,
    /// The JSON-RPC error code and message when the call was refused or failed.
    pub error: Option<(i64, String)>,
    /// The upstream's own tool error (`isError: true`).
    pub tool_error: bool,
}

impl fmt::Debug for CallRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallRecord")
            .field("agent", &self.agent)
            .field("session", &self.session)
            .field("tool", &self.tool)
            .field("upstream", &self.upstream)
            .field("verdict", &self.verdict)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl CallRecord {
    pub fn new(agent: AgentId, session: Option<SessionId>, tool: String, bytes_in: u64) -> Self {
        Self {
            agent,
            session,
            tool,
            upstream: None,
            upstream_tool: None,
            arguments: serde_json::Value::Null,
            redacted_arguments: None,
            verdict: Verdict::allow(),
            threat_level: None,
            scores: BTreeMap::new(),
            findings: Vec::new(),
            decision: None,
            bytes_in,
            bytes_out: 0,
            started: Instant::now(),
            error: None,
            tool_error: false,
        }
    }

    /// Merges a stage's verdict: the most severe decision wins, reasons accumulate.
    pub fn merge_verdict(&mut self, v: Verdict) {
        let rank = |d: Decision| match d {
            Decision::Allow => 0,
            Decision::Hold => 1,
            Decision::Deny => 2,
        };
        if rank(v.decision) > rank(self.verdict.decision) {
            self.verdict.decision = v.decision;
        }
        self.verdict.reasons.extend(v.reasons);
    }
}

/// The pluggable stages.
#[derive(Clone, Debug)]
pub struct Seams {
    pub inspect: Arc<dyn InspectStage>,
    pub detect: Arc<dyn DetectStage>,
    pub decide: Arc<dyn DecideStage>,
    pub hold: Arc<dyn HoldStage>,
}

impl Default for Seams {
    fn default() -> Self {
        Self {
            inspect: Arc::new(PassThroughInspect),
            detect: Arc::new(PassThroughDetect),
            decide: Arc::new(PassThroughDecide),
            hold: Arc::new(PassThroughHold),
        }
    }
}
