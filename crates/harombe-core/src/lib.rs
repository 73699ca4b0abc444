//! harombe-core: the vocabulary every harombe crate shares.
//!
//! It owns the identifiers (agents, sessions, events), the audit event and its canonical,
//! hash-chained encoding, verdicts and threat levels, the `Redacted` and `SecretRef`
//! wrappers that keep secret material out of logs, the injected `Clock`, and the ports
//! (traits) that the planes talk through, starting with [`AuditStore`].
//!
//! It must not depend on any other harombe crate, on an async runtime, or on a database:
//! the gateway and the control plane hold `Arc<dyn AuditStore>` and only the binary picks
//! SQLite or PostgreSQL.
//!
//! Key design decision: the hash chain is defined here, once, over the exact bytes a store
//! keeps (`hash_n = SHA-256(hash_{n-1} ‖ seq_n ‖ body_n)`), and [`chain::ChainVerifier`] is
//! the single verifier every backend feeds. Two stores can therefore never disagree about
//! what "intact" means.

pub mod approval;
pub mod chain;
pub mod clock;
pub mod event;
pub mod ids;
pub mod redact;
pub mod store;
pub mod verdict;

#[cfg(feature = "test-util")]
pub mod fake;

pub use approval::{
    Approval, ApprovalDecision, ApprovalError, ApprovalId, ApprovalRequest, ApprovalState,
    ApprovalStore, approval_event, binding, is_refused_decision, refused_decision_event,
};
pub use chain::{ChainHash, ChainHead, Checkpoint};
pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{AuditEvent, EventKind, Outcome};
pub use ids::{AgentId, EventId, IdError, SessionId};
pub use redact::{Redacted, SecretRef};
pub use store::{
    Appended, AuditStore, EventFilter, EventPage, EventSummary, HourBucket, Order, PageRequest,
    RetentionReport, StoreError, StoredEvent, VerifyReport,
};
pub use verdict::{Decision, ThreatLevel, Verdict};
