//! Seam: the decision (auto-approve, hold for a human, deny), with reasons. The
//! context-aware decision engine plugs in here; the default allows.

use std::collections::BTreeMap;

use async_trait::async_trait;
use harombe_core::Verdict;

use super::CallRecord;
use super::detect::Detection;

/// What the decide stage concluded: the verdict, scores it computed (risk, trust), and
/// structured details for the audit event (the rule that fired, confidence, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub verdict: Verdict,
    pub scores: BTreeMap<String, f64>,
    pub details: Option<serde_json::Value>,
}

impl From<Verdict> for Decided {
    fn from(verdict: Verdict) -> Self {
        Self {
            verdict,
            scores: BTreeMap::new(),
            details: None,
        }
    }
}

#[async_trait]
pub trait DecideStage: Send + Sync + std::fmt::Debug {
    async fn decide(&self, _call: &CallRecord, _detection: &Detection) -> Decided {
        Verdict::allow().into()
    }
}

/// Allows.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThroughDecide;

impl DecideStage for PassThroughDecide {}
