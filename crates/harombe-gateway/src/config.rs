//! `[gateway]` in harombe.toml. Every field has a default, unknown fields are refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::GatewayError;

/// The gateway's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Where the streamable-HTTP MCP endpoint listens.
    pub listen: SocketAddr,
    /// The endpoint's path.
    pub path: String,
    pub limits: Limits,
    /// Upstream MCP servers by name (the name is the collision prefix).
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub tool_names: ToolNaming,
    pub policy: PolicyConfig,
    /// Requests WITHOUT an Authorization header are served as this agent (local testing,
    /// e.g. the MCP conformance suite). Off by default; a wrong token is still refused.
    pub anonymous_agent: Option<String>,
    /// Browser origins allowed to call the endpoint (`https://app.example.com`). Requests
    /// without an `Origin` header (agents, CLIs) and from loopback origins are always
    /// served; any other origin is refused with 403, which stops DNS-rebinding pages from
    /// reaching a gateway on localhost.
    pub allowed_origins: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8100)),
            path: "/mcp".into(),
            limits: Limits::default(),
            upstreams: BTreeMap::new(),
            tool_names: ToolNaming::default(),
            policy: PolicyConfig::default(),
            anonymous_agent: None,
            allowed_origins: Vec::new(),
        }
    }
}

impl GatewayConfig {
    /// Checks what serde cannot: names, globs, positive limits.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let bad = |m: String| Err(GatewayError::Config(m));
        if !self.path.starts_with('/') {
            return bad(format!("gateway.path {:?} must start with '/'", self.path));
        }
        for o in &self.allowed_origins {
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.trim_end_matches('/').contains(['?', '#'])
                && o.split_once("://").is_some_and(|(_, h)| !h.is_empty());
            if !ok {
                return bad(format!(
                    "gateway.allowed_origins: {o:?} is not an origin (scheme://host[:port])"
                ));
            }
        }
        for name in self.upstreams.keys() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return bad(format!(
                    "gateway.upstreams.{name:?}: names are 1+ of A-Z a-z 0-9 _ -"
                ));
            }
        }
        for (name, up) in &self.upstreams {
            match up {
                UpstreamConfig::Stdio { command, .. } if command.is_empty() => {
                    return bad(format!("gateway.upstreams.{name}.command is empty"));
                }
                UpstreamConfig::Http { url, .. }
                    if !(url.starts_with("http://") || url.starts_with("https://")) =>
                {
                    return bad(format!(
                        "gateway.upstreams.{name}.url {url:?} must be http:// or https://"
                    ));
                }
                _ => {}
            }
        }
        if let Some(a) = &self.anonymous_agent
            && let Err(e) = harombe_core::AgentId::new(a.clone())
        {
            return bad(format!("gateway.anonymous_agent: {e}"));
        }
        let l = &self.limits;
        if l.max_body_bytes == 0 || l.max_depth == 0 || l.max_sessions == 0 {
            return bad("gateway.limits: sizes and counts must be positive".into());
        }
        for (who, p) in std::iter::once(("default", &self.policy.default))
            .chain(self.policy.agents.iter().map(|(k, v)| (k.as_str(), v)))
        {
            for g in p
                .allow
                .iter()
                .chain(&p.deny)
                .chain(p.tool_rate_limits.keys())
            {
                if let Err(e) = globset::Glob::new(g) {
                    return bad(format!("gateway.policy.{who}: bad glob {g:?}: {e}"));
                }
            }
            for r in p.rate_limit.iter().chain(p.tool_rate_limits.values()) {
                if !(r.per_second.is_finite() && r.per_second > 0.0) || r.burst == 0 {
                    return bad(format!(
                        "gateway.policy.{who}: rate limits need per_second > 0 and burst > 0"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Size, depth, time and count limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body, checked before parsing.
    pub max_body_bytes: usize,
    /// Deepest accepted JSON nesting.
    pub max_depth: usize,
    /// How long one forwarded call may take.
    #[serde(with = "duration")]
    pub call_timeout: Duration,
    /// How many MCP sessions may be open at once.
    pub max_sessions: usize,
    /// Sessions idle this long are closed (a session whose client keeps its `GET` stream
    /// open is not idle).
    #[serde(with = "duration")]
    pub session_idle_timeout: Duration,
    /// Messages kept per session for its GET stream (and for resuming it with
    /// `Last-Event-ID`); older ones are dropped.
    pub stream_buffer: usize,
    /// How long shutdown waits for in-flight calls.
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
    /// Failed authentications written to the audit log per second (a burst of 10 times
    /// as many is allowed); failures over the cap are counted, and the count is recorded
    /// with the next written one. Every failure is still refused.
    pub auth_failure_audit_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_depth: 64,
            call_timeout: Duration::from_secs(60),
            max_sessions: 10_000,
            session_idle_timeout: Duration::from_secs(30 * 60),
            stream_buffer: 64,
            drain_timeout: Duration::from_secs(30),
            auth_failure_audit_per_second: 20,
        }
    }
}

/// An upstream MCP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum UpstreamConfig {
    /// A child process speaking MCP over stdin/stdout (restarted with backoff).
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default)]
        cwd: Option<PathBuf>,
    },
    /// A streamable-HTTP MCP server.
    Http {
        url: String,
        #[serde(default = "default_http_timeout", with = "duration")]
        timeout: Duration,
    },
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(30)
}

/// How tool names from several upstreams are kept apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolNaming {
    pub prefix: PrefixMode,
    /// Between the upstream name and the tool name.
    pub separator: String,
}

impl Default for ToolNaming {
    fn default() -> Self {
        Self {
            prefix: PrefixMode::OnCollision,
            separator: "__".into(),
        }
    }
}

/// When tools get their upstream's name as a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefixMode {
    /// Only tools whose name more than one upstream offers.
    OnCollision,
    /// Every tool.
    Always,
}

/// Per-agent policies. Agents without an entry get `default`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub default: AgentPolicy,
    pub agents: BTreeMap<String, AgentPolicy>,
}

/// What one agent may call. Deny beats allow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentPolicy {
    /// Tool name globs (client-facing names) the agent may call.
    pub allow: Vec<String>,
    /// Tool name globs the agent may never call.
    pub deny: Vec<String>,
    /// Calls per second across all tools.
    pub rate_limit: Option<RateLimit>,
    /// Calls per second per tool, keyed by tool glob (each matching tool has its own bucket).
    pub tool_rate_limits: BTreeMap<String, RateLimit>,
}

impl Default for AgentPolicy {
    fn default() -> Self {
        Self {
            allow: vec!["*".into()],
            deny: Vec::new(),
            rate_limit: None,
            tool_rate_limits: BTreeMap::new(),
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// Durations as `"250ms"`, `"30s"`, `"5m"`, `"1h"`, or a number of seconds.
pub mod duration {
    use super::{Deserialize, Deserializer, Duration, Serializer};

    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like \"30s\" or \"250ms\""))?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "" | "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            u => {
                return Err(format!(
                    "unknown duration unit {u:?} in {s:?} (ms, s, m, h)"
                ));
            }
        };
        Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_millis() == 0 {
            s.serialize_str(&format!("{}s", d.as_secs()))
        } else {
            s.serialize_str(&format!("{}ms", d.as_millis()))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Duration::try_from_secs_f64(n).map_err(serde::de::Error::custom),
            Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_round_trip() {
        let c = GatewayConfig::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8100");
        assert_eq!(c.limits.max_body_bytes, 4 << 20);
        assert_eq!(c.limits.max_depth, 64);
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: GatewayConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let empty: GatewayConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, c);
    }

    #[test]
    fn upstreams_are_tagged_and_unknown_fields_refused() {
        let c: GatewayConfig = serde_json::from_value(serde_json::json!({
            "upstreams": {
                "fs": {"type": "stdio", "command": "node", "args": ["x.js"]},
                "web": {"type": "http", "url": "http://127.0.0.1:1/mcp", "timeout": "250ms"}
            },
            "limits": {"call_timeout": "5s"},
            "policy": {"agents": {"bot": {"allow": ["fs__*"], "deny": ["*delete*"],
                        "rate_limit": {"per_second": 5, "burst": 10}}}}
        }))
        .unwrap();
        c.validate().unwrap();
        assert!(matches!(
            c.upstreams["web"],
            UpstreamConfig::Http { timeout, .. } if timeout == Duration::from_millis(250)
        ));
        assert_eq!(c.limits.call_timeout, Duration::from_secs(5));
        let err =
            serde_json::from_value::<GatewayConfig>(serde_json::json!({"listn": 1})).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        let err = serde_json::from_value::<GatewayConfig>(
            serde_json::json!({"upstreams": {"x": {"type": "ftp"}}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("ftp"), "{err}");
        assert!(duration::parse("3 weeks").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = GatewayConfig::default();
        c.policy.default.allow = vec!["[".into()];
        assert!(c.validate().unwrap_err().to_string().contains("bad glob"));
        let mut c = GatewayConfig::default();
        c.upstreams.insert(
            "a b".into(),
            UpstreamConfig::Http {
                url: "http://x".into(),
                timeout: Duration::from_secs(1),
            },
        );
        assert!(c.validate().unwrap_err().to_string().contains("a b"));
    }
}
