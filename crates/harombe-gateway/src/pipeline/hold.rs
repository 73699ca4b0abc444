//! Seam: a held call waits here for a human. The approval engine plugs in and turns a
//! `Hold` into `Allow` or `Deny` (a timeout fails closed). The default returns the verdict
//! unchanged, so a call still held after this stage is refused (outcome `pending`).

use async_trait::async_trait;
use harombe_core::Verdict;

use super::CallRecord;

#[async_trait]
pub trait HoldStage: Send + Sync + std::fmt::Debug {
    async fn hold(&self, _call: &CallRecord, verdict: Verdict) -> Verdict {
        verdict
    }
}

/// Leaves the verdict as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThroughHold;

impl HoldStage for PassThroughHold {}
