//! The approvals port: a held tool call files an [`ApprovalRequest`] and waits; a human
//! approves or denies it (REST, CLI, dashboard) before its deadline, or it expires.
//!
//! Rules every backend keeps (the conformance tests check them):
//! - A decision is a compare-and-set from `pending`: exactly one of approve, deny and
//!   expire wins, even when they race from different processes.
//! - A pending approval past its deadline is `expired` for every reader and can no longer
//!   be approved, whether or not its waiter is still there to mark it.
//! - An approval is bound to one call: [`binding`] hashes agent, tool and the exact
//!   arguments, and the waiter checks it before it lets the call through.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::{AuditEvent, EventKind, Outcome};
use crate::ids::{AgentId, IdError, SessionId};
use crate::store::StoreError;
use crate::verdict::ThreatLevel;

/// An approval's id (UUIDv7, so ids sort by creation time).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApprovalId(Uuid);

impl ApprovalId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for ApprovalId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0.hyphenated().to_string())
    }
}

impl fmt::Debug for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApprovalId({})", self.0)
    }
}

impl FromStr for ApprovalId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| IdError::BadUuid(s.chars().take(64).collect()))
    }
}

impl TryFrom<String> for ApprovalId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ApprovalId> for String {
    fn from(id: ApprovalId) -> Self {
        id.to_string()
    }
}

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
        }
    }

    pub fn is_final(self) -> bool {
        self != ApprovalState::Pending
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ApprovalState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(ApprovalState::Pending),
            "approved" => Ok(ApprovalState::Approved),
            "denied" => Ok(ApprovalState::Denied),
            "expired" => Ok(ApprovalState::Expired),
            other => Err(format!(
                "unknown approval state {other:?}; expected pending, approved, denied or expired"
            )),
        }
    }
}

/// The hash that binds an approval to one exact call:
/// `hex(SHA-256(agent ‖ 0x00 ‖ tool ‖ 0x00 ‖ canonical JSON of the arguments))`.
/// `serde_json` writes object keys sorted (no `preserve_order`), so equal arguments hash
/// equally whatever order the agent sent them in.
pub fn binding(agent: &AgentId, tool: &str, arguments: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(agent.as_str().as_bytes());
    h.update([0]);
    h.update(tool.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(arguments).unwrap_or_default());
    hex::encode(h.finalize())
}

/// What a held call files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub id: ApprovalId,
    pub agent: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
    pub tool: String,
    /// The arguments as a human may see them (redacted: secrets never reach this record).
    pub arguments: serde_json::Value,
    /// [`binding`] of agent, tool and the exact (unredacted) arguments.
    pub binding: String,
    /// Why the call was held.
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_level: Option<ThreatLevel>,
    /// The risk score (0..=1) the decision engine saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<f64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
}

/// An approval as stored, with its state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    #[serde(flatten)]
    pub request: ApprovalRequest,
    pub state: ApprovalState,
    /// Who decided (`None` while pending or when it expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub decided_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Approval {
    pub fn pending(request: ApprovalRequest) -> Self {
        Self {
            request,
            state: ApprovalState::Pending,
            decided_by: None,
            decided_at: None,
            reason: None,
        }
    }

    pub fn id(&self) -> ApprovalId {
        self.request.id
    }

    /// The state as of `now`: a pending approval past its deadline reads as expired.
    pub fn state_at(&self, now: OffsetDateTime) -> ApprovalState {
        if self.state == ApprovalState::Pending && now >= self.request.deadline {
            ApprovalState::Expired
        } else {
            self.state
        }
    }
}

/// A human's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalDecision {
    pub approve: bool,
    /// Who decided: a token's name (`token:ops`), or `cli:<user>`.
    pub by: String,
    pub reason: Option<String>,
    pub at: OffsetDateTime,
}

/// Why a decision was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    #[error("no approval with id {0}")]
    NotFound(ApprovalId),
    #[error("approval {id} was already {state}{}", by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default())]
    AlreadyDecided {
        id: ApprovalId,
        state: ApprovalState,
        by: Option<String>,
    },
    #[error("approval {id} expired at {deadline}")]
    Expired {
        id: ApprovalId,
        deadline: OffsetDateTime,
    },
    #[error("approval store: {0}")]
    Store(#[from] StoreError),
}

/// The approvals port. SQLite and PostgreSQL implement it next to the audit log, and
/// `harombe_store::MemoryApprovalStore` in memory.
#[async_trait]
pub trait ApprovalStore: Send + Sync + fmt::Debug {
    /// Files a pending approval (its id must be new).
    async fn create(&self, request: ApprovalRequest) -> Result<Approval, StoreError>;

    /// One approval, with its state as of now (a pending one past its deadline reads as
    /// expired).
    async fn get(&self, id: ApprovalId) -> Result<Option<Approval>, StoreError>;

    /// Approvals newest first, optionally in one state (as of now), at most `limit`.
    async fn list(
        &self,
        state: Option<ApprovalState>,
        limit: u32,
    ) -> Result<Vec<Approval>, StoreError>;

    /// Pending → approved or denied, if `decision.at` is before the deadline. Atomic.
    async fn decide(
        &self,
        id: ApprovalId,
        decision: ApprovalDecision,
    ) -> Result<Approval, ApprovalError>;

    /// Pending → expired (the waiter gave up at `at`). When someone decided first, returns
    /// that decision instead: the caller honours whatever is stored.
    async fn expire(&self, id: ApprovalId, at: OffsetDateTime) -> Result<Approval, ApprovalError>;

    /// Waits until the approval is no longer pending, or `timeout` passes, and returns it
    /// as stored (still `pending` on timeout). Decisions made through this instance wake
    /// the waiter at once; those made elsewhere (another process or replica) within tens
    /// of milliseconds.
    async fn wait(&self, id: ApprovalId, timeout: Duration) -> Result<Approval, ApprovalError>;
}

/// The audit event for a decided or expired approval: kind `approval`, outcome success
/// (approved), denied (denied) or failure (expired); who decided and why in `details`.
pub fn approval_event(a: &Approval, at: OffsetDateTime) -> AuditEvent {
    let outcome = match a.state {
        ApprovalState::Approved => Outcome::Success,
        ApprovalState::Denied => Outcome::Denied,
        ApprovalState::Expired => Outcome::Failure,
        ApprovalState::Pending => Outcome::Pending,
    };
    let mut e = AuditEvent::new(at, EventKind::Approval, outcome)
        .with_agent(a.request.agent.clone())
        .with_target(a.request.tool.chars().take(512).collect::<String>());
    e.session = a.request.session.clone();
    e.correlation_id = Some(a.request.id.to_string());
    e.threat_level = a.request.threat_level;
    let mut details = serde_json::json!({
        "approval_id": a.request.id.to_string(),
        "state": a.state.as_str(),
        "binding": a.request.binding,
    });
    if let Some(by) = &a.decided_by {
        details["decided_by"] = by.chars().take(256).collect::<String>().into();
    }
    if let Some(r) = &a.reason {
        details["reason"] = r.chars().take(1024).collect::<String>().into();
    }
    e.details = Some(details);
    e
}

/// The audit event for a refused decision (unknown id, already decided, expired): kind
/// `approval`, outcome failure, `details.refused = true`, who tried and why it failed.
/// Readers that count human denials skip events marked `refused`.
pub fn refused_decision_event(
    id: ApprovalId,
    approve: bool,
    by: &str,
    error: &ApprovalError,
    at: OffsetDateTime,
) -> AuditEvent {
    let mut e = AuditEvent::new(at, EventKind::Approval, Outcome::Failure).with_target("approval");
    e.correlation_id = Some(id.to_string());
    e.error = Some(error.to_string().chars().take(1024).collect());
    e.details = Some(serde_json::json!({
        "approval_id": id.to_string(),
        "refused": true,
        "action": if approve { "approve" } else { "deny" },
        "by": by.chars().take(256).collect::<String>(),
    }));
    e
}

/// Whether `e` records a refused decision attempt (see [`refused_decision_event`]).
pub fn is_refused_decision(e: &AuditEvent) -> bool {
    e.kind == EventKind::Approval
        && e.details
            .as_ref()
            .and_then(|d| d.get("refused"))
            .and_then(serde_json::Value::as_bool)
            == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binding_ignores_key_order_but_not_values_agent_or_tool() {
        let a = AgentId::new("a").unwrap();
        let b = AgentId::new("b").unwrap();
        let x: serde_json::Value = serde_json::from_str(r#"{"x":1,"y":[1,2]}"#).unwrap();
        let y: serde_json::Value = serde_json::from_str(r#"{"y":[1,2],"x":1}"#).unwrap();
        assert_eq!(binding(&a, "t", &x), binding(&a, "t", &y));
        assert_ne!(binding(&a, "t", &x), binding(&b, "t", &x));
        assert_ne!(binding(&a, "t", &x), binding(&a, "u", &x));
        assert_ne!(
            binding(&a, "t", &x),
            binding(&a, "t", &json!({"x": 2, "y": [1, 2]}))
        );
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            binding(&a, "t\0u", &json!(null)),
            binding(&a, "t", &json!("u"))
        );
    }

    #[test]
    fn pending_past_deadline_reads_expired() {
        let now = OffsetDateTime::now_utc();
        let req = ApprovalRequest {
            id: ApprovalId::new(),
            agent: AgentId::new("a").unwrap(),
            session: None,
            tool: "t".into(),
            arguments: json!({}),
            binding: String::new(),
            reasons: vec![],
            threat_level: None,
            risk: None,
            created: now,
            deadline: now + time::Duration::seconds(1),
        };
        let a = Approval::pending(req);
        assert_eq!(a.state_at(now), ApprovalState::Pending);
        assert_eq!(
            a.state_at(now + time::Duration::seconds(1)),
            ApprovalState::Expired
        );
    }

    #[test]
    fn ids_round_trip_and_bad_ids_are_named() {
        let id = ApprovalId::new();
        assert_eq!(id.to_string().parse::<ApprovalId>().unwrap(), id);
        let e = "nope".parse::<ApprovalId>().unwrap_err();
        assert!(e.to_string().contains("nope"));
    }
}
