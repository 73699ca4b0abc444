//! harombe-hitl: the human-in-the-loop decision — allow, hold for a human, or deny — for
//! a tool call, from the agent's trust, the tool's historical risk, the call's threat
//! level and anomaly flag, and configured auto-approval rules.
//!
//! It owns [`HistoricalRiskScorer`] (per-tool failure, denial and incident rates over the
//! last 100 calls), [`TrustManager`] (per-agent compliance, approval success and tenure
//! over the last 1000 events), the validated [`RuleSet`] (priorities, contradiction and
//! unreachable-rule checks, the critical guard) and [`ContextAwareEngine`], which
//! combines them; plus [`replay`], the seeded workload that measures how many human
//! approvals the engine saves (`docs/hitl-replay.md`).
//!
//! It must not depend on the gateway, on a concrete audit store or on an async runtime:
//! history comes through the [`harombe_core::AuditStore`] port, and the gateway decides
//! when to load and which events to feed.
//!
//! Key design decision: all state is derived from the audit log, never stored apart from
//! it. Per-key sliding windows with running counts are updated in O(1) from the log tail
//! ([`ContextAwareEngine::observe`]) and rebuilt with one indexed query when missing or
//! older than a TTL ([`ContextAwareEngine::prepare`]), so `decide` is a synchronous,
//! microsecond-scale read of cached counts, restarts lose nothing, and replicas sharing
//! one log converge.

mod cache;
pub mod engine;
pub mod error;
pub mod replay;
pub mod risk;
pub mod rules;
pub mod trust;
mod window;

pub use engine::{
    ContextAwareEngine, DEFAULT_RISKY_TOOLS, DecisionInput, HitlConfig, HitlDecision,
};
pub use error::{HitlError, RuleError};
pub use risk::{HistoricalRiskScorer, RiskFactors, RiskScore, RiskWeights};
pub use rules::{
    CRITICAL_RISK, Rule, RuleAction, RuleConfig, RuleInput, RuleSet, default_rules,
    unfamiliar_or_elevated_risk,
};
pub use trust::{Trust, TrustFactor, TrustLevel, TrustManager};
