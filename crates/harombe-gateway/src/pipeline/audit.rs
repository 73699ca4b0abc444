//! Stage 10: the CallRecord becomes one `tool_call` audit event. Arguments are stored
//! redacted: by the inspection stage when it says how, otherwise by key name.

use harombe_core::{AuditEvent, AuditStore, Clock, Decision, EventKind, Outcome};

use super::CallRecord;
use crate::error::GatewayError;

const SECRET_KEYS: [&str; 10] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "credential",
];

/// Replaces values under secret-looking keys with `[REDACTED]`.
pub fn redact_by_key(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let lk = k.to_ascii_lowercase();
                if SECRET_KEYS.iter().any(|s| lk.contains(s)) {
                    (k.clone(), serde_json::Value::String("[REDACTED]".into()))
                } else {
                    (k.clone(), redact_by_key(v))
                }
            })
            .collect(),
        serde_json::Value::Array(a) => a.iter().map(redact_by_key).collect(),
        other => other.clone(),
    }
}

/// The audit event for a finished call.
pub fn event(record: &CallRecord, clock: &dyn Clock) -> AuditEvent {
    let outcome = match (record.verdict.decision, &record.error) {
        (Decision::Deny, _) => Outcome::Denied,
        (Decision::Hold, _) => Outcome::Pending,
        (Decision::Allow, Some(_)) => Outcome::Failure,
        (Decision::Allow, None) if record.tool_error => Outcome::Failure,
        (Decision::Allow, None) => Outcome::Success,
    };
    let mut e = AuditEvent::new(clock.now(), EventKind::ToolCall, outcome)
        .with_agent(record.agent.clone())
        .with_target(truncate(&record.tool, 512))
        .with_verdict(record.verdict.clone());
    e.session = record.session.clone();
    e.arguments = Some(
        record
            .redacted_arguments
            .clone()
            .unwrap_or_else(|| redact_by_key(&record.arguments)),
    );
    e.duration_us = Some(record.started.elapsed().as_micros() as u64);
    e.bytes_in = record.bytes_in;
    e.bytes_out = record.bytes_out;
    e.threat_level = record.threat_level;
    e.scores = record
        .scores
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let mut details = serde_json::json!({
        "upstream": record.upstream,
        "upstream_tool": record.upstream_tool,
    });
    if let Some((code, msg)) = &record.error {
        details["code"] = (*code).into();
        e.error = Some(truncate(msg, 1024).to_owned());
    }
    if record.tool_error {
        details["tool_error"] = true.into();
    }
    if !record.findings.is_empty() {
        details["findings"] = record.findings.clone().into();
    }
    if let Some(d) = &record.decision {
        details["decision"] = d.clone();
    }
    e.details = Some(details);
    e
}

fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = n;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// Appends; a refused append is an error (the agent is not answered as if all were well).
pub async fn append(store: &dyn AuditStore, e: AuditEvent) -> Result<(), GatewayError> {
    store
        .append(e)
        .await
        .map(|_| ())
        .map_err(|e| GatewayError::Audit(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_secret_looking_keys() {
        let v = json!({"path": "/x", "API_KEY": "k", "nested": [{"password": "p", "n": 1}]});
        assert_eq!(
            redact_by_key(&v),
            json!({"path": "/x", "API_KEY": "[REDACTED]", "nested": [{"password": "[REDACTED]", "n": 1}]})
        );
    }
}
