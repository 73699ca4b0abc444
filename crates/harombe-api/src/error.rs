//! The API's one error type, and the one place it becomes an HTTP response:
//! `{"error": {"code": "...", "message": "..."}}` with the matching status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use harombe_core::{ApprovalError, StoreError};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No or an unknown bearer token. The message never contains token material.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid token whose role may not use the route.
    #[error("token {token:?} has the read role; {route} needs an admin token")]
    Forbidden { token: String, route: String },
    /// A malformed query parameter, path segment or body field, named.
    #[error("invalid {param}: {problem}")]
    BadParam { param: String, problem: String },
    #[error("{0}")]
    NotFound(String),
    /// The approval was already decided.
    #[error("{0}")]
    Conflict(String),
    /// The approval expired.
    #[error("{0}")]
    Gone(String),
    #[error("audit store: {0}")]
    Store(#[from] StoreError),
    #[error("agent insights: {0}")]
    Insights(String),
    /// A decision was stored but its audit event could not be written.
    #[error("{what} was recorded, but its audit event could not be written: {source}")]
    AuditFailed { what: String, source: StoreError },
}

impl ApiError {
    pub fn bad_param(param: impl Into<String>, problem: impl Into<String>) -> Self {
        ApiError::BadParam {
            param: param.into(),
            problem: problem.into(),
        }
    }

    /// A short, stable label (the `code` of the JSON body, and a metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::BadParam { .. } => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "already_decided",
            ApiError::Gone(_) => "expired",
            ApiError::Store(_) => "store_unavailable",
            ApiError::Insights(_) => "insights_unavailable",
            ApiError::AuditFailed { .. } => "audit_failed",
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ApiError::Store(e) | ApiError::AuditFailed { source: e, .. } => e.is_retriable(),
            ApiError::Insights(_) => true,
            _ => false,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::BadParam { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Store(StoreError::InvalidInput { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Store(_) | ApiError::Insights(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::AuditFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::decide::DecideError> for ApiError {
    fn from(e: crate::decide::DecideError) -> Self {
        match e {
            crate::decide::DecideError::Decision(e) => e.into(),
            crate::decide::DecideError::Audit { approval, source } => ApiError::AuditFailed {
                what: format!("approval {} ({})", approval.id(), approval.state),
                source,
            },
        }
    }
}

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> Self {
        match e {
            ApprovalError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ApprovalError::AlreadyDecided { .. } => ApiError::Conflict(e.to_string()),
            ApprovalError::Expired { .. } => ApiError::Gone(e.to_string()),
            ApprovalError::Store(s) => ApiError::Store(s),
            // A future variant: report it as a store problem, message intact.
            other => ApiError::Store(StoreError::InvalidInput {
                field: "approval",
                problem: other.to_string(),
            }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.reason(), error = %self, "API request failed");
        }
        let body = serde_json::json!({
            "error": { "code": self.reason(), "message": self.to_string() }
        });
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"harombe\""),
            );
        }
        resp
    }
}
