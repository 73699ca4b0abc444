//! Seam: the decision (auto-approve, hold for a human, deny), with reasons. The
//! context-aware decision engine plugs in here; the default allows.

use async_trait::async_trait;
use harombe_core::Verdict;

use super::CallRecord;
use super::detect::Detection;

#[async_trait]
pub trait DecideStage: Send + Sync + std::fmt::Debug {
    async fn decide(&self, _call: &CallRecord, _detection: &Detection) -> Verdict {
        Verdict::allow()
    }
}

/// Allows.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThroughDecide;

impl DecideStage for PassThroughDecide {}
