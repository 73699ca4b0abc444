//! The gateway's one error enum and the single place where errors and refusals become
//! JSON-RPC error codes and HTTP statuses.
//!
//! A deny or a hold is a [`Verdict`](harombe_core::Verdict), never an error; only at this
//! boundary does a refusal turn into a JSON-RPC error object, through [`RpcError`].

use serde::Serialize;
use serde_json::value::RawValue;

/// JSON-RPC error codes used by the gateway (the standard ones and harombe's -320xx).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    pub const AUTHENTICATION_FAILED: i64 = -32000;
    pub const AUTHORIZATION_DENIED: i64 = -32001;
    pub const UPSTREAM_UNAVAILABLE: i64 = -32002;
    pub const UPSTREAM_TIMEOUT: i64 = -32003;
    pub const SECRET_DETECTED: i64 = -32004;
    pub const RATE_LIMITED: i64 = -32005;
    pub const RESOURCE_LIMIT: i64 = -32006;
}

/// Everything that can go wrong in the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    #[error("parse error at byte {offset}: {problem}")]
    Parse { offset: usize, problem: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("unknown session {0:?}; initialize a new session")]
    UnknownSession(String),
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    #[error("invalid params: {0}")]
    InvalidParams(String),
    #[error("authentication failed: {0}")]
    Authentication(&'static str),
    #[error("authorization denied: {0}")]
    Denied(String),
    #[error("upstream {upstream} is unavailable: {problem}")]
    UpstreamUnavailable { upstream: String, problem: String },
    #[error("upstream {upstream} did not answer within {timeout_ms} ms")]
    UpstreamTimeout { upstream: String, timeout_ms: u64 },
    #[error("secret detected: {0}")]
    SecretDetected(String),
    #[error("rate limit exceeded: {0}")]
    RateLimited(String),
    #[error("resource limit exceeded: {0}")]
    ResourceLimit(String),
    #[error("unsupported protocol version {0:?}")]
    UnsupportedVersion(String),
    #[error("audit store refused the event: {0}")]
    Audit(String),
    #[error("invalid gateway configuration: {0}")]
    Config(String),
    #[error("agent registry {path}: {problem}")]
    Registry { path: String, problem: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::Parse { .. } => "parse_error",
            GatewayError::InvalidRequest(_) => "invalid_request",
            GatewayError::UnknownSession(_) => "unknown_session",
            GatewayError::UnknownMethod(_) => "unknown_method",
            GatewayError::UnknownTool(_) => "unknown_tool",
            GatewayError::InvalidParams(_) => "invalid_params",
            GatewayError::Authentication(_) => "authentication_failed",
            GatewayError::Denied(_) => "authorization_denied",
            GatewayError::UpstreamUnavailable { .. } => "upstream_unavailable",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::SecretDetected(_) => "secret_detected",
            GatewayError::RateLimited(_) => "rate_limited",
            GatewayError::ResourceLimit(_) => "resource_limit",
            GatewayError::UnsupportedVersion(_) => "unsupported_version",
            GatewayError::Audit(_) => "audit",
            GatewayError::Config(_) => "config",
            GatewayError::Registry { .. } => "registry",
            GatewayError::Io(_) => "io",
            GatewayError::Internal(_) => "internal",
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamUnavailable { .. }
                | GatewayError::UpstreamTimeout { .. }
                | GatewayError::RateLimited(_)
                | GatewayError::Audit(_)
        )
    }

    /// The JSON-RPC error code (the one mapping for the MCP boundary).
    pub fn code(&self) -> i64 {
        match self {
            GatewayError::Parse { .. } => code::PARSE_ERROR,
            GatewayError::InvalidRequest(_)
            | GatewayError::UnknownSession(_)
            | GatewayError::UnsupportedVersion(_) => code::INVALID_REQUEST,
            GatewayError::UnknownMethod(_) | GatewayError::UnknownTool(_) => code::METHOD_NOT_FOUND,
            GatewayError::InvalidParams(_) => code::INVALID_PARAMS,
            GatewayError::Authentication(_) => code::AUTHENTICATION_FAILED,
            GatewayError::Denied(_) => code::AUTHORIZATION_DENIED,
            GatewayError::UpstreamUnavailable { .. } => code::UPSTREAM_UNAVAILABLE,
            GatewayError::UpstreamTimeout { .. } => code::UPSTREAM_TIMEOUT,
            GatewayError::SecretDetected(_) => code::SECRET_DETECTED,
            GatewayError::RateLimited(_) => code::RATE_LIMITED,
            GatewayError::ResourceLimit(_) => code::RESOURCE_LIMIT,
            GatewayError::Audit(_)
            | GatewayError::Config(_)
            | GatewayError::Registry { .. }
            | GatewayError::Io(_)
            | GatewayError::Internal(_) => code::INTERNAL,
        }
    }

    /// The HTTP status for errors that refuse a whole HTTP request (before any JSON-RPC
    /// message is dispatched). Per-message errors travel in a 200 response.
    pub fn http_status(&self) -> u16 {
        match self {
            GatewayError::Parse { .. }
            | GatewayError::InvalidRequest(_)
            | GatewayError::UnsupportedVersion(_) => 400,
            GatewayError::Authentication(_) => 401,
            GatewayError::Denied(_) => 403,
            GatewayError::UnknownSession(_) => 404,
            GatewayError::ResourceLimit(_) => 413,
            GatewayError::RateLimited(_) => 429,
            GatewayError::UpstreamUnavailable { .. } => 502,
            GatewayError::UpstreamTimeout { .. } => 504,
            _ => 500,
        }
    }

    /// The JSON-RPC error object for this error.
    pub fn to_rpc(&self) -> RpcError {
        let message = match self {
            // Internal details stay in the log, not in the answer to an agent.
            GatewayError::Io(_) | GatewayError::Internal(_) | GatewayError::Registry { .. } => {
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        RpcError {
            code: self.code(),
            message,
            data: Some(serde_json::json!({ "reason": self.reason() })),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl RpcError {
    /// A complete JSON-RPC error response for `id` (`null` when the id is unknown).
    pub fn response(&self, id: Option<&RawValue>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Resp<'a> {
            jsonrpc: &'static str,
            id: Option<&'a RawValue>,
            error: &'a RpcError,
        }
        serde_json::to_vec(&Resp {
            jsonrpc: "2.0",
            id,
            error: self,
        })
        .unwrap_or_else(|_| {
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#
                .to_vec()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let up = || "u".to_owned();
        let cases: Vec<(GatewayError, i64)> = vec![
            (
                GatewayError::Parse {
                    offset: 0,
                    problem: String::new(),
                },
                -32700,
            ),
            (GatewayError::InvalidRequest(String::new()), -32600),
            (GatewayError::UnknownTool(String::new()), -32601),
            (GatewayError::UnknownMethod(String::new()), -32601),
            (GatewayError::InvalidParams(String::new()), -32602),
            (GatewayError::Internal(String::new()), -32603),
            (GatewayError::Authentication("x"), -32000),
            (GatewayError::Denied(String::new()), -32001),
            (
                GatewayError::UpstreamUnavailable {
                    upstream: up(),
                    problem: up(),
                },
                -32002,
            ),
            (
                GatewayError::UpstreamTimeout {
                    upstream: up(),
                    timeout_ms: 1,
                },
                -32003,
            ),
            (GatewayError::SecretDetected(String::new()), -32004),
            (GatewayError::RateLimited(String::new()), -32005),
            (GatewayError::ResourceLimit(String::new()), -32006),
        ];
        for (e, c) in cases {
            assert_eq!(e.code(), c, "{e}");
            assert!(!e.reason().is_empty());
        }
        assert!(GatewayError::RateLimited(String::new()).is_retriable());
        assert!(!GatewayError::Denied(String::new()).is_retriable());
    }

    #[test]
    fn internal_details_are_not_sent() {
        let e = GatewayError::Internal("secret path /etc/x".into());
        assert_eq!(e.to_rpc().message, "internal error");
        let body = e.to_rpc().response(None);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], serde_json::Value::Null);
        assert_eq!(v["error"]["code"], -32603);
    }
}
