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

/// Caps how many failed authentications reach the audit log, so that a flood of bad
/// tokens (which costs the sender nothing) cannot become a flood of durable writes: a
/// token bucket of `10 × per_second` refilled at `per_second`. Failures over the cap are
/// counted, and the count is recorded in the next event that is written.
#[derive(Debug)]
pub struct FailureAuditLimiter {
    per_second: f64,
    burst: f64,
    state: std::sync::Mutex<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    tokens: f64,
    at: std::time::Instant,
    suppressed: u64,
}

impl FailureAuditLimiter {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        Self {
            per_second,
            burst: (per_second * 10.0).max(1.0),
            state: std::sync::Mutex::new(LimiterState {
                tokens: (per_second * 10.0).max(1.0),
                at: std::time::Instant::now(),
                suppressed: 0,
            }),
        }
    }

    /// Whether this failure is written: `Some(n)` with the failures suppressed since the
    /// last written one, or `None` (counted).
    pub fn admit(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        let refill = now.duration_since(s.at).as_secs_f64() * self.per_second;
        s.tokens = (s.tokens + refill).min(self.burst);
        s.at = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

/// Records in a failure event how many failures before it were not written.
pub fn with_suppressed(mut e: AuditEvent, suppressed: u64) -> AuditEvent {
    if suppressed > 0
        && let Some(serde_json::Value::Object(d)) = e.details.as_mut()
    {
        d.insert("suppressed_before".into(), suppressed.into());
    }
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

    #[test]
    fn failure_audit_is_capped_and_the_excess_counted() {
        let l = FailureAuditLimiter::new(1);
        // A burst of 10 is written, the rest counted.
        let written = (0..25).filter(|_| l.admit().is_some()).count();
        assert_eq!(written, 10);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(
            l.admit(),
            Some(15),
            "the next written failure carries the count"
        );
        assert_eq!(l.admit(), None);
        let e = with_suppressed(
            failure_event(
                &harombe_core::SystemClock,
                &GatewayError::Authentication("x"),
                None,
            ),
            15,
        );
        assert_eq!(e.details.unwrap()["suppressed_before"], 15);
    }
}
