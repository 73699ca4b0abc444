//! harombe-api: the control plane. REST over the audit log and the approvals queue, the
//! live dashboard (page, assets, WebSocket), Prometheus `/metrics`, and the incremental
//! aggregates behind them.
//!
//! It owns bearer-token authentication for the control plane, the dashboard metrics
//! ([`metrics::Metrics`]), the [`tail::LogTail`] that feeds them, and the mapping of errors
//! to HTTP responses ([`error::ApiError`], converted in exactly one place). It depends only
//! on harombe-core: stores, approvals and agent insights arrive as `Arc<dyn Port>`, and
//! only the binary picks SQLite or PostgreSQL.
//!
//! Key design decision: every number the API shows comes from aggregates folded once per
//! event by a tail that reads the audit log behind a cursor, never from scans per
//! request. A snapshot or a trend adds up at most 2,880 per-minute buckets whatever the
//! size of the log, and because the tail re-reads the last 48 hours on start, the numbers
//! are right after a restart and the same on every replica sharing one database.

pub mod auth;
mod dashboard;
pub mod decide;
pub mod error;
pub mod insights;
pub mod instrumented;
pub mod live;
pub mod metrics;
pub mod prom;
pub mod routes;
pub mod tail;
#[cfg(test)]
mod testing;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use axum::Router;
use harombe_core::{ApprovalStore, AuditStore, Clock};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use auth::{Caller, Role, TokenError, Tokens};
pub use decide::{DecideError, decide_and_audit};
pub use error::ApiError;
pub use insights::{AgentInsights, InsightsError, MetricsInsights};
pub use instrumented::{InstrumentedStore, StoreTelemetry};
pub use live::LiveMessage;
pub use metrics::{Metrics, MetricsSnapshot, Trend};
pub use routes::{Access, ROUTES, Route};
pub use tail::{EventObserver, LogTail};

/// Messages the live broadcast ring holds before a slow receiver is dropped.
pub const LIVE_CAPACITY: usize = 1024;
/// How long one frame may wait for a WebSocket client's socket before the client is
/// dropped.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn AuditStore>,
    pub approvals: Arc<dyn ApprovalStore>,
    pub metrics: Arc<Metrics>,
    pub tokens: Arc<Tokens>,
    pub insights: Arc<dyn AgentInsights>,
    pub clock: Arc<dyn Clock>,
    /// New events and snapshots for live clients (fed by the [`LogTail`]).
    pub live: broadcast::Sender<LiveMessage>,
    /// Append measurements for `/metrics` (from an [`InstrumentedStore`]).
    pub store_telemetry: Arc<StoreTelemetry>,
    /// Connected WebSocket clients.
    pub ws_clients: Arc<AtomicI64>,
    /// A live client whose socket takes no frame for this long is dropped.
    pub send_timeout: std::time::Duration,
    /// Fired on shutdown: live clients are sent a close frame.
    pub shutdown: CancellationToken,
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("store", &self.store)
            .field("approvals", &self.approvals)
            .field("tokens", &self.tokens)
            .field("insights", &self.insights)
            .field("live_receivers", &self.live.receiver_count())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// A state with fresh metrics, the default [`MetricsInsights`], empty store telemetry
    /// and a live ring of [`LIVE_CAPACITY`].
    pub fn new(
        store: Arc<dyn AuditStore>,
        approvals: Arc<dyn ApprovalStore>,
        tokens: Tokens,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let insights = Arc::new(MetricsInsights::new(metrics.clone(), clock.clone()));
        Self {
            store,
            approvals,
            metrics,
            tokens: Arc::new(tokens),
            insights,
            clock,
            live: broadcast::channel(LIVE_CAPACITY).0,
            store_telemetry: Arc::new(StoreTelemetry::default()),
            ws_clients: Arc::new(AtomicI64::new(0)),
            send_timeout: SEND_TIMEOUT,
            shutdown: CancellationToken::new(),
        }
    }

    pub fn with_insights(mut self, insights: Arc<dyn AgentInsights>) -> Self {
        self.insights = insights;
        self
    }

    pub fn with_store_telemetry(mut self, t: Arc<StoreTelemetry>) -> Self {
        self.store_telemetry = t;
        self
    }

    /// Sets the live ring's capacity (receivers further behind are dropped).
    pub fn with_live_capacity(mut self, capacity: usize) -> Self {
        self.live = broadcast::channel(capacity.max(1)).0;
        self
    }

    pub fn with_send_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }
}

/// The control plane's router: every route in [`ROUTES`], and a JSON 404 for the rest.
pub fn router(state: ApiState) -> Router {
    let mut r: Router<ApiState> = Router::new();
    for route in ROUTES {
        r = r.route(route.path, routes::method_router(route));
    }
    r.fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no route {method} {}",
        uri.path().chars().take(200).collect::<String>()
    ))
}
