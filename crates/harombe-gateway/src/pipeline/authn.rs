//! Stage 1: who is calling. A bearer token is looked up in the agent registry (hashes
//! only, constant-time comparison); failures are audited as `auth` events.

use harombe_core::{AgentId, AuditEvent, Clock, EventKind, Outcome, Verdict};

use crate::error::GatewayError;
use crate::registry::AgentRegistry;

/// The agent behind an `Authorization` header value.
pub fn authenticate(
    registry: &dyn AgentRegistry,
    authorization: Option<&str>,
) -> Result<AgentId, GatewayError> {
    let header = authorization.ok_or(GatewayError::Authentication("missing bearer token"))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(GatewayError::Authentication(
            "expected an Authorization: Bearer token",
        ))?
        .trim();
    registry
        .authenticate(token)
        .ok_or(GatewayError::Authentication("unknown or revoked token"))
}

/// The audit event for a failed authentication (the token itself is never recorded).
pub fn failure_event(clock: &dyn Clock, err: &GatewayError, peer: Option<String>) -> AuditEvent {
    let mut e = AuditEvent::new(clock.now(), EventKind::Auth, Outcome::Denied)
        .with_target("mcp")
        .with_verdict(Verdict::deny(err.to_string()))
        .with_error(err.to_string());
    e.details = Some(serde_json::json!({"code": err.code(), "reason": err.reason(), "peer": peer}));
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::MemoryAgentRegistry;

    #[test]
    fn bearer_tokens() {
        let reg = MemoryAgentRegistry::new();
        let bot = AgentId::new("bot").unwrap();
        let t = reg.add(&bot).unwrap();
        let h = format!("Bearer {}", t.expose());
        assert_eq!(authenticate(&reg, Some(&h)).unwrap(), bot);
        for bad in [None, Some("Basic abc"), Some("Bearer hrb_nope")] {
            let e = authenticate(&reg, bad).unwrap_err();
            assert_eq!(e.code(), -32000);
            assert!(!e.to_string().contains(t.expose().as_str()));
        }
    }
}
