//! An in-memory [`ApprovalStore`] with the same semantics as the SQL backends, for other
//! crates' tests. Nothing survives the process, and nothing is shared between processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use harombe_core::{
    Approval, ApprovalDecision, ApprovalError, ApprovalId, ApprovalRequest, ApprovalState,
    ApprovalStore, StoreError,
};
use time::OffsetDateTime;

use super::{Waiters, clamp_limit, wait_until_decided};

/// The in-memory approvals store. Clones share the same approvals.
#[derive(Clone, Debug, Default)]
pub struct MemoryApprovalStore {
    rows: Arc<Mutex<HashMap<ApprovalId, Approval>>>,
    waiters: Arc<Waiters>,
}

impl MemoryApprovalStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<ApprovalId, Approval>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stored(&self, id: ApprovalId) -> Option<Approval> {
        self.rows().get(&id).cloned()
    }
}

#[async_trait]
impl ApprovalStore for MemoryApprovalStore {
    async fn create(&self, request: ApprovalRequest) -> Result<Approval, StoreError> {
        super::validate(&request)?;
        let a = Approval::pending(super::normalised(request));
        let mut rows = self.rows();
        if rows.contains_key(&a.id()) {
            return Err(super::duplicate(a.id()));
        }
        rows.insert(a.id(), a.clone());
        Ok(a)
    }

    async fn get(&self, id: ApprovalId) -> Result<Option<Approval>, StoreError> {
        let now = OffsetDateTime::now_utc();
        Ok(self.stored(id).map(|a| super::as_of(a, now)))
    }

    async fn list(
        &self,
        state: Option<ApprovalState>,
        limit: u32,
    ) -> Result<Vec<Approval>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut all: Vec<Approval> = self
            .rows()
            .values()
            .filter(|a| super::in_state(a, state, now))
            .cloned()
            .map(|a| super::as_of(a, now))
            .collect();
        all.sort_by(|a, b| {
            (b.request.created, b.request.id).cmp(&(a.request.created, a.request.id))
        });
        all.truncate(clamp_limit(limit) as usize);
        Ok(all)
    }

    async fn decide(
        &self,
        id: ApprovalId,
        decision: ApprovalDecision,
    ) -> Result<Approval, ApprovalError> {
        let decided = {
            let mut rows = self.rows();
            let Some(a) = rows.get_mut(&id) else {
                return Err(ApprovalError::NotFound(id));
            };
            if a.state != ApprovalState::Pending || decision.at >= a.request.deadline {
                return Err(super::refusal(id, Some(a.clone())));
            }
            a.state = if decision.approve {
                ApprovalState::Approved
            } else {
                ApprovalState::Denied
            };
            a.decided_by = Some(decision.by);
            a.decided_at = Some(super::to_micros_precision(decision.at));
            a.reason = decision.reason;
            a.clone()
        };
        self.waiters.wake(id);
        Ok(decided)
    }

    async fn expire(&self, id: ApprovalId, at: OffsetDateTime) -> Result<Approval, ApprovalError> {
        let stored = {
            let mut rows = self.rows();
            let Some(a) = rows.get_mut(&id) else {
                return Err(ApprovalError::NotFound(id));
            };
            if a.state != ApprovalState::Pending {
                return Ok(a.clone());
            }
            a.state = ApprovalState::Expired;
            a.decided_at = Some(super::to_micros_precision(at));
            a.clone()
        };
        self.waiters.wake(id);
        Ok(stored)
    }

    async fn wait(&self, id: ApprovalId, timeout: Duration) -> Result<Approval, ApprovalError> {
        let (guard, _) = self.waiters.register(id);
        wait_until_decided(guard, timeout, || async move { Ok(self.stored(id)) }).await
    }
}
