//! A human's decision on a held call, from any front end (REST and the dashboard here, the
//! `harombe approvals` CLI in the binary): the compare-and-set, then its audit event. A
//! refused attempt (unknown id, already decided, expired) is audited too: a stale page, a
//! replayed request or a race with the deadline is worth knowing about.

use harombe_core::{
    Approval, ApprovalDecision, ApprovalError, ApprovalId, ApprovalStore, AuditStore, Clock,
    StoreError, approval_event, refused_decision_event,
};

/// Why [`decide_and_audit`] failed.
#[derive(Debug)]
pub enum DecideError {
    /// The store refused or failed the decision (a refusal is already audited).
    Decision(ApprovalError),
    /// The decision is stored, but its audit event could not be appended.
    Audit {
        approval: Box<Approval>,
        source: StoreError,
    },
}

/// Decides `id` and appends the decision's audit event.
pub async fn decide_and_audit(
    approvals: &dyn ApprovalStore,
    audit: &dyn AuditStore,
    clock: &dyn Clock,
    id: ApprovalId,
    decision: ApprovalDecision,
) -> Result<Approval, DecideError> {
    let (approve, by) = (decision.approve, decision.by.clone());
    let a = match approvals.decide(id, decision).await {
        Ok(a) => a,
        Err(e) => {
            if matches!(
                e,
                ApprovalError::NotFound(_)
                    | ApprovalError::AlreadyDecided { .. }
                    | ApprovalError::Expired { .. }
            ) && let Err(ae) = audit
                .append(refused_decision_event(id, approve, &by, &e, clock.now()))
                .await
            {
                tracing::error!(error = %ae, "cannot audit a refused approval decision");
            }
            return Err(DecideError::Decision(e));
        }
    };
    if let Err(source) = audit.append(approval_event(&a, clock.now())).await {
        return Err(DecideError::Audit {
            approval: Box::new(a),
            source,
        });
    }
    Ok(a)
}
