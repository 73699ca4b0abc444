//! Upstream MCP servers. Every upstream is ONE shared MCP session (a stdio child or an
//! HTTP session) onto which client requests are multiplexed: the gateway gives each
//! forwarded request its own numeric id and maps the answer back to the client's raw id.
//!
//! Messages the upstream starts (progress, server-to-client requests such as sampling or
//! elicitation) are routed to the client whose call they belong to: progress by its
//! `progressToken`, requests to the newest in-flight call; everything else (list-changed,
//! log messages) is broadcast through the engine.

pub mod http;
pub mod stdio;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::GatewayError;
use crate::jsonrpc::{self, Kind, Message};

/// The protocol version the gateway asks upstreams for.
pub const UPSTREAM_PROTOCOL: &str = "2025-06-18";

/// Where messages for one client call go while it is in flight (progress, server
/// requests). The response itself comes back through the call's future.
#[derive(Clone, Debug)]
pub struct CallSink {
    pub tx: mpsc::Sender<Vec<u8>>,
}

/// Link state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    Starting,
    Up,
    Down(String),
    /// Stopped for good (shutdown, or a wrapped child exited) with its exit code.
    Exited(i32),
}

struct Pending {
    tx: oneshot::Sender<Result<Message, GatewayError>>,
    sink: Option<CallSink>,
    progress_token: Option<String>,
}

/// What an upstream sends that belongs to no call: list changes, log messages, ...
pub type Broadcast = mpsc::Sender<(usize, Message)>;

/// State shared between an upstream's handle and its I/O tasks.
pub struct Shared {
    pub index: usize,
    pub name: String,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Server-to-client requests relayed to clients: gateway id -> upstream raw id.
    relayed: Mutex<HashMap<String, Box<RawValue>>>,
    relay_seq: AtomicU64,
    pub state: watch::Sender<LinkState>,
    /// The upstream's `initialize` result.
    pub init: Mutex<Option<Box<RawValue>>>,
    broadcast: Broadcast,
    max_depth: usize,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(index: usize, name: String, broadcast: Broadcast, max_depth: usize) -> Arc<Self> {
        Arc::new(Self {
            index,
            name,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            relayed: Mutex::new(HashMap::new()),
            relay_seq: AtomicU64::new(1),
            state: watch::channel(LinkState::Starting).0,
            init: Mutex::new(None),
            broadcast,
            max_depth,
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Fails every call in flight (the link went down).
    pub fn fail_all(&self, problem: &str) {
        let drained: Vec<Pending> = self.pending().drain().map(|(_, p)| p).collect();
        for p in drained {
            let _ = p.tx.send(Err(GatewayError::UpstreamUnavailable {
                upstream: self.name.clone(),
                problem: problem.to_owned(),
            }));
        }
    }

    pub fn fail(&self, id: u64, err: GatewayError) {
        if let Some(p) = self.pending().remove(&id) {
            let _ = p.tx.send(Err(err));
        }
    }

    /// Handles one line / event read from the upstream.
    pub fn on_bytes(&self, bytes: &[u8]) {
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() {
            return;
        }
        if trimmed.first() == Some(&b'[') {
            match serde_json::from_slice::<Vec<Box<RawValue>>>(trimmed) {
                Ok(items) => {
                    for i in items {
                        self.on_bytes(i.get().as_bytes());
                    }
                }
                Err(e) => self.garbage(trimmed, &e.to_string()),
            }
            return;
        }
        match jsonrpc::decode_one(trimmed, self.max_depth) {
            Ok(m) => self.on_message(m),
            Err(e) => self.garbage(trimmed, &e.error.to_string()),
        }
    }

    fn garbage(&self, bytes: &[u8], why: &str) {
        let preview = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
        tracing::warn!(upstream = %self.name, %why, %preview, "upstream sent a message that is not JSON-RPC; ignored");
    }

    fn on_message(&self, m: Message) {
        match m.kind() {
            Kind::Response => {
                let id = m.id().and_then(|i| i.get().parse::<u64>().ok());
                let p = id.and_then(|id| self.pending().remove(&id));
                match p {
                    Some(p) => {
                        let _ = p.tx.send(Ok(m));
                    }
                    None => tracing::debug!(upstream = %self.name, "response to no call in flight"),
                }
            }
            Kind::Notification => {
                if m.method() == Some("notifications/progress")
                    && let Some(tok) = progress_token(m.params())
                {
                    let sink = self
                        .pending()
                        .values()
                        .find(|p| p.progress_token.as_deref() == Some(tok.as_str()))
                        .and_then(|p| p.sink.clone());
                    if let Some(s) = sink {
                        let _ = s.tx.try_send(m.encode());
                    }
                    return;
                }
                if self.broadcast.try_send((self.index, m)).is_err() {
                    tracing::warn!(upstream = %self.name, "broadcast queue full; notification dropped");
                }
            }
            Kind::Request => {
                // To the newest call in flight that can take it.
                let sink = {
                    let p = self.pending();
                    p.iter()
                        .filter(|(_, p)| p.sink.is_some())
                        .max_by_key(|(id, _)| **id)
                        .and_then(|(_, p)| p.sink.clone())
                };
                let Some(orig) = m.id().map(ToOwned::to_owned) else {
                    return;
                };
                match sink {
                    Some(s) => {
                        let gid = format!(
                            "{}:{}",
                            self.name,
                            self.relay_seq.fetch_add(1, Ordering::Relaxed)
                        );
                        let raw = serde_json::value::to_raw_value(&gid)
                            .unwrap_or_else(|_| jsonrpc::null());
                        self.relayed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(gid, orig);
                        let _ = s.tx.try_send(m.encode_with_id(&raw));
                    }
                    None => {
                        if self.broadcast.try_send((self.index, m)).is_err() {
                            tracing::warn!(upstream = %self.name, "server request dropped");
                        }
                    }
                }
            }
        }
    }

    /// The upstream id of a relayed server request answered by a client.
    pub fn take_relayed(&self, gateway_id: &str) -> Option<Box<RawValue>> {
        self.relayed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(gateway_id)
    }

    fn register(
        &self,
        id: u64,
        sink: Option<CallSink>,
        progress_token: Option<String>,
    ) -> oneshot::Receiver<Result<Message, GatewayError>> {
        let (tx, rx) = oneshot::channel();
        self.pending().insert(
            id,
            Pending {
                tx,
                sink,
                progress_token,
            },
        );
        rx
    }

    pub fn in_flight(&self) -> usize {
        self.pending().len()
    }
}

fn progress_token(params: Option<&RawValue>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(borrow, rename = "progressToken")]
        token: Option<&'a RawValue>,
    }
    let p: P<'_> = serde_json::from_str(params?.get()).ok()?;
    p.token.map(|t| t.get().to_owned())
}

/// The `_meta.progressToken` of a request's params, raw.
pub fn request_progress_token(params: Option<&RawValue>) -> Option<String> {
    // Most calls carry no `_meta`: skip the parse unless the key may be there (spelt out,
    // or hidden behind a `\u` escape).
    let text = params?.get();
    if !text.contains("_meta") && !text.contains("\\u") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct M<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<&'a RawValue>,
    }
    let m: M<'_> = serde_json::from_str(params?.get()).ok()?;
    progress_token(m.meta)
}

/// How bytes reach an upstream.
#[async_trait]
pub trait Link: Send + Sync + fmt::Debug {
    /// Sends one message. For requests `id` is the gateway-assigned id; the answer comes
    /// back through [`Shared::on_bytes`].
    async fn send(&self, id: Option<u64>, bytes: Vec<u8>) -> Result<(), GatewayError>;
}

/// A handle to one upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub shared: Arc<Shared>,
    link: Arc<dyn Link>,
}

impl Upstream {
    pub fn new(shared: Arc<Shared>, link: Arc<dyn Link>) -> Self {
        Self { shared, link }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Waits until the link is up (bounded), or says why it is not.
    pub async fn ready(&self, within: Duration) -> Result<(), GatewayError> {
        if *self.shared.state.borrow() == LinkState::Up {
            return Ok(());
        }
        let mut rx = self.shared.state.subscribe();
        let unavailable = |problem: String| GatewayError::UpstreamUnavailable {
            upstream: self.shared.name.clone(),
            problem,
        };
        let wait = rx.wait_for(|s| *s != LinkState::Starting);
        match tokio::time::timeout(within, wait).await {
            Err(_) => Err(unavailable("still starting".into())),
            Ok(Err(_)) => Err(unavailable("stopped".into())),
            Ok(Ok(s)) => match &*s {
                LinkState::Up => Ok(()),
                LinkState::Down(why) => Err(unavailable(why.clone())),
                LinkState::Exited(code) => Err(unavailable(format!("exited with code {code}"))),
                LinkState::Starting => Err(unavailable("still starting".into())),
            },
        }
    }

    /// Forwards a client request (its id rewritten) and waits for the answer.
    /// `id` comes from [`Shared::next_id`] so the caller can relay cancellation.
    pub async fn forward(
        &self,
        id: u64,
        msg: &Message,
        sink: Option<CallSink>,
        timeout: Duration,
    ) -> Result<Message, GatewayError> {
        self.ready(timeout).await?;
        let bytes = msg.encode_with_id(&jsonrpc::int_id(id));
        let token = request_progress_token(msg.params());
        self.exchange(id, bytes, sink, token, timeout).await
    }

    /// Sends a request built by the gateway and waits for the answer.
    pub async fn request<T: serde::Serialize + Sync>(
        &self,
        method: &str,
        params: &T,
        timeout: Duration,
    ) -> Result<Message, GatewayError> {
        self.ready(timeout).await?;
        let id = self.shared.next_id();
        let bytes = jsonrpc::request(id, method, params);
        self.exchange(id, bytes, None, None, timeout).await
    }

    /// The initialize handshake, used by the links right after connecting (the link is
    /// not `Up` yet, so it bypasses `ready`).
    pub(crate) async fn handshake(&self, timeout: Duration) -> Result<Box<RawValue>, GatewayError> {
        let id = self.shared.next_id();
        let params = serde_json::json!({
            "protocolVersion": UPSTREAM_PROTOCOL,
            "capabilities": {"roots": {"listChanged": true}, "sampling": {}, "elicitation": {}},
            "clientInfo": {"name": "harombe-gateway", "version": env!("CARGO_PKG_VERSION")},
        });
        let resp = self
            .exchange(
                id,
                jsonrpc::request(id, "initialize", &params),
                None,
                None,
                timeout,
            )
            .await?;
        let result = resp.field("result").map(ToOwned::to_owned).ok_or_else(|| {
            GatewayError::UpstreamUnavailable {
                upstream: self.shared.name.clone(),
                problem: format!(
                    "initialize failed: {}",
                    resp.field("error")
                        .map(RawValue::get)
                        .unwrap_or("no result")
                ),
            }
        })?;
        self.link
            .send(
                None,
                jsonrpc::notification("notifications/initialized", &serde_json::json!({})),
            )
            .await?;
        *self.shared.init.lock().unwrap_or_else(|e| e.into_inner()) = Some(result.clone());
        Ok(result)
    }

    async fn exchange(
        &self,
        id: u64,
        bytes: Vec<u8>,
        sink: Option<CallSink>,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Message, GatewayError> {
        let rx = self.shared.register(id, sink, token);
        if let Err(e) = self.link.send(Some(id), bytes).await {
            self.shared.fail(id, GatewayError::Internal(String::new()));
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(GatewayError::UpstreamUnavailable {
                upstream: self.shared.name.clone(),
                problem: "the link closed".into(),
            }),
            Err(_) => {
                self.shared.fail(id, GatewayError::Internal(String::new()));
                // Tell the upstream to stop working on it.
                let cancel = jsonrpc::notification(
                    "notifications/cancelled",
                    &serde_json::json!({"requestId": id, "reason": "harombe: timeout"}),
                );
                let _ = self.link.send(None, cancel).await;
                Err(GatewayError::UpstreamTimeout {
                    upstream: self.shared.name.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Sends a notification or a response as is.
    pub async fn send_raw(&self, bytes: Vec<u8>) -> Result<(), GatewayError> {
        self.link.send(None, bytes).await
    }

    /// Relays a client's `notifications/cancelled` for a call it made through us.
    pub async fn cancel(&self, upstream_id: u64, reason: Option<&RawValue>) {
        let mut params = serde_json::json!({"requestId": upstream_id});
        if let Some(r) =
            reason.and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
        {
            params["reason"] = r;
        }
        let _ = self
            .link
            .send(
                None,
                jsonrpc::notification("notifications/cancelled", &params),
            )
            .await;
    }
}
