//! The audit event: one record per call, connection, decision or administrative act.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{AgentId, EventId, SessionId};
use crate::verdict::{ThreatLevel, Verdict};

/// What an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ToolCall,
    ToolResult,
    ToolsListed,
    Decision,
    Approval,
    EgressConnection,
    SecretAccess,
    SecretRotation,
    Alert,
    Anomaly,
    Auth,
    ConfigChange,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        EventKind::ToolCall,
        EventKind::ToolResult,
        EventKind::ToolsListed,
        EventKind::Decision,
        EventKind::Approval,
        EventKind::EgressConnection,
        EventKind::SecretAccess,
        EventKind::SecretRotation,
        EventKind::Alert,
        EventKind::Anomaly,
        EventKind::Auth,
        EventKind::ConfigChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ToolCall => "tool_call",
            EventKind::ToolResult => "tool_result",
            EventKind::ToolsListed => "tools_listed",
            EventKind::Decision => "decision",
            EventKind::Approval => "approval",
            EventKind::EgressConnection => "egress_connection",
            EventKind::SecretAccess => "secret_access",
            EventKind::SecretRotation => "secret_rotation",
            EventKind::Alert => "alert",
            EventKind::Anomaly => "anomaly",
            EventKind::Auth => "auth",
            EventKind::ConfigChange => "config_change",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown event kind {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// How the recorded action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened and succeeded.
    Success,
    /// It happened and failed (a tool error, an upstream failure, a failed rotation).
    Failure,
    /// harombe refused it (authentication, policy, inspection, a human).
    Denied,
    /// It is waiting (a held call).
    Pending,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Denied,
        Outcome::Pending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
            Outcome::Pending => "pending",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown outcome {s:?} (success, failure, denied, pending)"))
    }
}

/// One audit record. Arguments are stored *already redacted* by the producer: no stage may
/// put a secret value into an event.
///
/// Timestamps are kept at microsecond precision (what both databases store exactly).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub id: EventId,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub kind: EventKind,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The tool, resource, host or secret the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Redacted arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_in: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_out: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_level: Option<ThreatLevel>,
    /// Named scores in 0..=1 (anomaly, threat, risk, ...). Finite values only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, f64>,
    /// Kind-specific details (upstream, findings, rule that fired, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Why an event was refused by a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid audit event {id}: {field}: {problem}")]
pub struct InvalidEvent {
    pub id: EventId,
    pub field: &'static str,
    pub problem: String,
}

/// Longest accepted free-text field (target, correlation id, error), in bytes.
pub const MAX_TEXT: usize = 4096;
/// Largest accepted canonical encoding of one event, in bytes.
pub const MAX_BODY: usize = 1 << 20;

impl AuditEvent {
    /// A new event at `at` (truncated to microseconds) with a UUIDv7 for that time.
    pub fn new(at: OffsetDateTime, kind: EventKind, outcome: Outcome) -> Self {
        let at = truncate_to_micros(at);
        Self {
            id: EventId::at(at),
            timestamp: at,
            kind,
            outcome,
            agent: None,
            session: None,
            correlation_id: None,
            target: None,
            arguments: None,
            error: None,
            duration_us: None,
            bytes_in: 0,
            bytes_out: 0,
            verdict: None,
            threat_level: None,
            scores: BTreeMap::new(),
            details: None,
        }
    }

    pub fn with_agent(mut self, agent: AgentId) -> Self {
        self.agent = Some(agent);
        self
    }

    pub fn with_session(mut self, session: SessionId) -> Self {
        self.session = Some(session);
        self
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn with_verdict(mut self, verdict: Verdict) -> Self {
        self.verdict = Some(verdict);
        self
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Microseconds since the Unix epoch (what stores index).
    pub fn unix_micros(&self) -> i64 {
        (self.timestamp.unix_timestamp_nanos() / 1_000) as i64
    }

    /// Checks what a store must refuse: non-UTC or sub-microsecond timestamps, non-finite
    /// scores, oversized text.
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        let bad = |field, problem: String| {
            Err(InvalidEvent {
                id: self.id,
                field,
                problem,
            })
        };
        if self.timestamp.offset() != time::UtcOffset::UTC {
            return bad("timestamp", "must be in UTC".into());
        }
        if !self.timestamp.nanosecond().is_multiple_of(1_000) {
            return bad("timestamp", "has sub-microsecond precision".into());
        }
        for (name, v) in &self.scores {
            if !v.is_finite() {
                return bad("scores", format!("score {name:?} is not a finite number"));
            }
        }
        if self.target.as_deref().is_some_and(|t| t.contains('\0')) {
            return bad("target", "contains a NUL character".into());
        }
        for (field, text) in [
            ("target", &self.target),
            ("correlation_id", &self.correlation_id),
            ("error", &self.error),
        ] {
            if let Some(t) = text
                && t.len() > MAX_TEXT
            {
                return bad(
                    field,
                    format!("is {} bytes; the maximum is {MAX_TEXT}", t.len()),
                );
            }
        }
        Ok(())
    }

    /// The canonical encoding: the exact bytes a store keeps and the hash chain covers.
    /// Validates first; encoding is deterministic and `decode(encode(e)) == e`.
    pub fn encode(&self) -> Result<Vec<u8>, InvalidEvent> {
        self.validate()?;
        let body = serde_json::to_vec(self).map_err(|e| InvalidEvent {
            id: self.id,
            field: "event",
            problem: e.to_string(),
        })?;
        if body.len() > MAX_BODY {
            return Err(InvalidEvent {
                id: self.id,
                field: "event",
                problem: format!("encodes to {} bytes; the maximum is {MAX_BODY}", body.len()),
            });
        }
        Ok(body)
    }

    /// Parses a canonical encoding.
    pub fn decode(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// Drops sub-microsecond precision and converts to UTC.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Decision;
    use proptest::prelude::*;

    fn sample() -> AuditEvent {
        let mut e = AuditEvent::new(
            time::macros::datetime!(2026-05-01 10:20:30.123456789 UTC),
            EventKind::ToolCall,
            Outcome::Success,
        )
        .with_agent(AgentId::new("bot").unwrap())
        .with_target("fs.read");
        e.arguments = Some(serde_json::json!({"path": "/tmp/x", "n": 3}));
        e.scores.insert("anomaly".into(), 0.25);
        e.verdict = Some(Verdict {
            decision: Decision::Allow,
            reasons: vec!["ok".into()],
        });
        e
    }

    #[test]
    fn new_truncates_to_micros() {
        let e = sample();
        assert_eq!(e.timestamp.nanosecond(), 123_456_000);
        assert!(e.validate().is_ok());
    }

    #[test]
    fn encoding_is_canonical() {
        let e = sample();
        let body = e.encode().unwrap();
        let back = AuditEvent::decode(&body).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.encode().unwrap(), body);
    }

    #[test]
    fn refuses_bad_events() {
        let mut e = sample();
        e.scores.insert("x".into(), f64::NAN);
        assert_eq!(e.encode().unwrap_err().field, "scores");
        let mut e = sample();
        e.target = Some("t".repeat(MAX_TEXT + 1));
        assert_eq!(e.validate().unwrap_err().field, "target");
        let mut e = sample();
        e.timestamp = e.timestamp.replace_nanosecond(1).unwrap();
        assert_eq!(e.validate().unwrap_err().field, "timestamp");
        assert!(AuditEvent::decode(br#"{"id":"nope"}"#).is_err());
        let mut json: serde_json::Value =
            serde_json::from_slice(&sample().encode().unwrap()).unwrap();
        json["surprise"] = serde_json::json!(1);
        let err = AuditEvent::decode(json.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
    }

    #[test]
    fn kinds_and_outcomes_parse() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), o);
        }
        assert!("tool-call".parse::<EventKind>().is_err());
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(
            micros in 0i64..4_000_000_000_000_000,
            target in proptest::option::of("\\PC{0,40}"),
            err in proptest::option::of("\\PC{0,40}"),
            score in proptest::option::of(-1e300f64..1e300),
            bytes in any::<u64>(),
            arg in "\\PC{0,30}",
        ) {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).unwrap();
            let mut e = AuditEvent::new(at, EventKind::Alert, Outcome::Failure);
            e.target = target;
            e.error = err;
            if let Some(s) = score { e.scores.insert("s".into(), s); }
            e.bytes_out = bytes;
            e.arguments = Some(serde_json::json!({ "k": arg, "z": [1, 2.5, null, true] }));
            let body = e.encode().unwrap();
            let back = AuditEvent::decode(&body).unwrap();
            prop_assert_eq!(&back, &e);
            prop_assert_eq!(back.encode().unwrap(), body);
        }
    }
}
