//! Test helpers for unit tests.

use std::time::Duration;

use async_trait::async_trait;
use harombe_core::{
    Approval, ApprovalDecision, ApprovalError, ApprovalId, ApprovalRequest, ApprovalState,
    ApprovalStore, StoreError,
};
use time::OffsetDateTime;

/// An approvals store that holds nothing.
#[derive(Debug)]
pub(crate) struct NoApprovals;

#[async_trait]
impl ApprovalStore for NoApprovals {
    async fn create(&self, _: ApprovalRequest) -> Result<Approval, StoreError> {
        Err(StoreError::Closed)
    }
    async fn get(&self, _: ApprovalId) -> Result<Option<Approval>, StoreError> {
        Ok(None)
    }
    async fn list(&self, _: Option<ApprovalState>, _: u32) -> Result<Vec<Approval>, StoreError> {
        Ok(Vec::new())
    }
    async fn decide(&self, id: ApprovalId, _: ApprovalDecision) -> Result<Approval, ApprovalError> {
        Err(ApprovalError::NotFound(id))
    }
    async fn expire(&self, id: ApprovalId, _: OffsetDateTime) -> Result<Approval, ApprovalError> {
        Err(ApprovalError::NotFound(id))
    }
    async fn wait(&self, id: ApprovalId, _: Duration) -> Result<Approval, ApprovalError> {
        Err(ApprovalError::NotFound(id))
    }
}
