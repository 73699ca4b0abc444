//! Live updates: `GET /api/ws` (WebSocket) and the snapshot publisher.
//!
//! Messages are JSON text frames, serialised once and shared by every client:
//! - `{"type":"snapshot","metrics":{..},"trend":{..},"approvals":[..]}` on connect, then
//!   whenever the metrics changed (at most every 250 ms) and at least every 2 s;
//! - `{"type":"event","event":{..}}` for each event the log tail reads;
//! - `{"type":"error","error":{"code","message"}}` before the server closes the socket.
//!
//! Authentication: an `Authorization: Bearer` header on the upgrade request, or (browsers
//! cannot set headers on a WebSocket) a first message `{"type":"auth","token":"..."}`
//! within 10 s. The token never goes in the URL, where proxies and logs would keep it.
//!
//! A client that does not keep up is dropped, never waited for: each client reads the
//! shared broadcast ring (bounded, [`crate::LIVE_CAPACITY`] messages) at its own position.
//! A client that falls a whole ring behind, or whose socket accepts no frame for
//! [`crate::SEND_TIMEOUT`], is closed; senders never block, so the others carry on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt as _, StreamExt as _};
use harombe_core::{ApprovalState, StoredEvent};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::ApiState;
use crate::auth::{self, Caller};
use crate::error::ApiError;

/// One message for live clients, already serialised.
#[derive(Clone, Debug)]
pub enum LiveMessage {
    Event {
        event: Arc<StoredEvent>,
        json: Utf8Bytes,
    },
    Snapshot {
        json: Utf8Bytes,
    },
}

impl LiveMessage {
    pub fn event(event: Arc<StoredEvent>) -> Self {
        let json = serde_json::json!({ "type": "event", "event": &*event }).to_string();
        LiveMessage::Event {
            event,
            json: json.into(),
        }
    }

    /// The JSON text sent to clients.
    pub fn json(&self) -> &str {
        match self {
            LiveMessage::Event { json, .. } | LiveMessage::Snapshot { json } => json.as_str(),
        }
    }

    fn frame(&self) -> Message {
        match self {
            LiveMessage::Event { json, .. } | LiveMessage::Snapshot { json } => {
                Message::Text(json.clone())
            }
        }
    }
}

/// Most pending approvals a snapshot carries.
pub const SNAPSHOT_APPROVALS: u32 = 200;
const AUTH_WAIT: Duration = Duration::from_secs(10);
const CHECK_EVERY: Duration = Duration::from_millis(250);
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The snapshot message: metrics, the 24-hour trend and pending approvals.
pub async fn snapshot_json(state: &ApiState) -> Result<String, ApiError> {
    let now = state.clock.now();
    let approvals = state
        .approvals
        .list(Some(ApprovalState::Pending), SNAPSHOT_APPROVALS)
        .await?;
    Ok(serde_json::json!({
        "type": "snapshot",
        "metrics": state.metrics.snapshot(now),
        "trend": state.metrics.trend(now, 24),
        "approvals": approvals,
    })
    .to_string())
}

/// Publishes a snapshot when the metrics changed (checked every 250 ms) and at least every
/// 2 s, while any live client is connected. Stops on `cancel`.
pub async fn run_publisher(state: ApiState, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_version = u64::MAX;
    let mut last_sent: Option<Instant> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if state.live.receiver_count() == 0 {
            continue;
        }
        let v = state.metrics.version();
        let due = last_sent.is_none_or(|t| t.elapsed() >= HEARTBEAT);
        if v == last_version && !due {
            continue;
        }
        match snapshot_json(&state).await {
            Ok(json) => {
                let _ = state.live.send(LiveMessage::Snapshot { json: json.into() });
                last_version = v;
                last_sent = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "could not build the live snapshot"),
        }
    }
}

fn error_json(e: &ApiError) -> Utf8Bytes {
    serde_json::json!({"type": "error", "error": {"code": e.reason(), "message": e.to_string()}})
        .to_string()
        .into()
}

/// `GET /api/ws`.
pub(crate) async fn ws_handler(
    State(state): State<ApiState>,
    parts: Parts,
    upgrade: WebSocketUpgrade,
) -> Response {
    let path = parts.uri.path().to_owned();
    // A header token is checked before the upgrade (a plain 401 for non-browser clients).
    let caller = match auth::bearer(&parts) {
        Some(t) => match auth::authenticate(&state, &path, Some(t)).await {
            Ok(c) => Some(c),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| serve_client(state, socket, caller, path))
}

/// Waits for `{"type":"auth","token":"..."}`.
async fn first_message_auth(
    state: &ApiState,
    socket: &mut WebSocket,
    path: &str,
) -> Result<Caller, ApiError> {
    let msg = tokio::time::timeout(AUTH_WAIT, socket.recv()).await;
    let token = match msg {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<serde_json::Value>(&t)
            .ok()
            .filter(|v| v["type"] == "auth")
            .and_then(|v| v["token"].as_str().map(str::to_owned)),
        _ => None,
    };
    auth::authenticate(state, path, token.as_deref()).await
}

async fn serve_client(
    state: ApiState,
    mut socket: WebSocket,
    caller: Option<Caller>,
    path: String,
) {
    let caller = match caller {
        Some(c) => c,
        None => match first_message_auth(&state, &mut socket, &path).await {
            Ok(c) => c,
            Err(e) => {
                let _ = socket.send(Message::Text(error_json(&e))).await;
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 4401,
                        reason: "unauthorized".into(),
                    })))
                    .await;
                return;
            }
        },
    };
    state.ws_clients.fetch_add(1, Ordering::Relaxed);
    let _gauge = ClientGauge(state.clone());
    // Subscribe before the first snapshot so nothing falls between the two.
    let mut rx = state.live.subscribe();
    let (mut sink, mut stream) = socket.split();
    // Incoming frames are only watched for the client going away.
    let gone = CancellationToken::new();
    let gone2 = gone.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
        gone2.cancel();
    });
    let first = match snapshot_json(&state).await {
        Ok(json) => Message::Text(json.into()),
        Err(e) => Message::Text(error_json(&e)),
    };
    let limit = state.send_timeout;
    let mut dropped: Option<&str> = None;
    match tokio::time::timeout(limit, sink.send(first)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => dropped = Some(""),
        Err(_) => dropped = Some("it stopped reading"),
    }
    tracing::debug!(token = %caller.name, "live client connected");
    while dropped.is_none() {
        let next = tokio::select! {
            () = state.shutdown.cancelled() => {
                let close = Message::Close(Some(CloseFrame { code: 1001, reason: "shutting down".into() }));
                let _ = tokio::time::timeout(limit, sink.send(close)).await;
                break;
            }
            () = gone.cancelled() => break,
            m = rx.recv() => m,
        };
        match next {
            Ok(m) => match tokio::time::timeout(limit, sink.send(m.frame())).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => dropped = Some("it stopped reading"),
            },
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "live client lagged");
                dropped = Some("it fell behind the live ring");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    if let Some(why) = dropped.filter(|w| !w.is_empty()) {
        tracing::info!(token = %caller.name, "dropped a live client: {why}");
    }
    reader.abort();
}

struct ClientGauge(ApiState);

impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.ws_clients.fetch_sub(1, Ordering::Relaxed);
    }
}
