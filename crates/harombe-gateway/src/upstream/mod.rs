//! Upstream MCP servers. Every upstream is ONE shared MCP session (a stdio child or an
//! HTTP session) onto which client requests are multiplexed: the gateway gives each
//! forwarded request its own numeric id and maps the answer back to the client's raw id.
//!
//! Messages the upstream starts are routed to the client whose call they belong to, and to
//! no one else: one upstream session serves every agent, so a message routed by guess
//! could carry one agent's data to another.
//! - Progress: by `progressToken`. The gateway replaces a client's token with the call's
//!   upstream id on the way in and restores it on the way out, so two agents that pick the
//!   same token never see each other's progress.
//! - A notification or request sent on the HTTP response stream of a call belongs to that
//!   call.
//! - A request with no such stream (stdio, the upstream's `GET` stream) goes to the newest
//!   call in flight only if every call in flight belongs to one agent; otherwise the
//!   gateway answers it itself (see the engine's unrouted loop).
//! - Any other notification goes to the engine as [`Unrouted`], with the agent it can only
//!   belong to when every call in flight is that agent's.
//!
//! Before any of them reaches an agent, the upstream's [`Screen`] (the engine's content
//! inspection) sees it, on the reader that received it, so what it lets through keeps its
//! order with the call's answer: it may pass the message, redact it, or withhold it (a
//! withheld request is answered upstream with the error).

pub mod http;
pub mod stdio;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use harombe_core::{AgentId, SessionId};
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

/// Who made a forwarded call and where its side messages go.
#[derive(Clone, Debug, Default)]
pub struct CallOrigin {
    /// The calling agent (`None` for the gateway's own requests).
    pub owner: Option<AgentId>,
    /// The caller's session (`None` for the gateway's own requests and sessionless calls).
    pub session: Option<SessionId>,
    /// The call's stream, when the client takes one.
    pub sink: Option<CallSink>,
    /// The least severe log message the caller's session asked for
    /// ([`crate::session::log_rank`]; 0: it never asked).
    pub log_level: u8,
}

/// Whom a message an upstream started would reach: the agent, when it can only be one
/// agent's, and the session, when it belongs to one call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recipient<'a> {
    pub agent: Option<&'a AgentId>,
    pub session: Option<&'a SessionId>,
}

impl<'a> Recipient<'a> {
    /// The caller of a call in flight.
    fn of(origin: &'a CallOrigin) -> Self {
        Self {
            agent: origin.owner.as_ref(),
            session: origin.session.as_ref(),
        }
    }

    /// An agent, with no one call (hence no session) to tie the message to.
    fn agent(agent: Option<&'a AgentId>) -> Self {
        Self {
            agent,
            session: None,
        }
    }
}

/// Screens a message an upstream started before it reaches its recipient: `Ok` with what
/// to deliver (the message, or a redacted copy), `Err` with why it is withheld.
pub trait Screen: Send + Sync {
    fn screen(
        &self,
        upstream: &str,
        to: Recipient<'_>,
        msg: Message,
    ) -> Result<Message, GatewayError>;
}

/// A server request relayed to a client.
struct Relayed {
    /// The upstream's raw id.
    orig: Box<RawValue>,
    /// The agent it went to.
    owner: Option<AgentId>,
    method: String,
}

struct Pending {
    tx: oneshot::Sender<Result<Message, GatewayError>>,
    origin: CallOrigin,
    /// The client's `progressToken`, raw (the upstream sees the call's id instead).
    progress_token: Option<String>,
}

/// A message an upstream started that names no call (list changes, log messages, resource
/// updates, requests no call could take).
#[derive(Debug)]
pub struct Unrouted {
    /// The upstream's index.
    pub upstream: usize,
    pub msg: Message,
    /// The agent it can only belong to: every call in flight when it arrived was this
    /// agent's. `None` when calls of several agents (or none) were in flight.
    pub owner: Option<AgentId>,
    /// A request the screen withheld: answer it upstream with this error.
    pub refuse: Option<GatewayError>,
}

/// Where an upstream's unrouted messages go.
pub type Broadcast = mpsc::Sender<Unrouted>;

/// State shared between an upstream's handle and its I/O tasks.
pub struct Shared {
    pub index: usize,
    pub name: String,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Server-to-client requests relayed to clients, by gateway id.
    relayed: Mutex<HashMap<String, Relayed>>,
    relay_seq: AtomicU64,
    pub state: watch::Sender<LinkState>,
    /// The upstream's `initialize` result.
    pub init: Mutex<Option<Box<RawValue>>>,
    broadcast: Broadcast,
    max_depth: usize,
    screen: Option<Arc<dyn Screen>>,
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
    pub fn new(
        index: usize,
        name: String,
        broadcast: Broadcast,
        max_depth: usize,
        screen: Option<Arc<dyn Screen>>,
    ) -> Arc<Self> {
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
            screen,
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

    /// Handles one line / event read from the upstream; `call` is the upstream id of the
    /// call whose response stream carried it (HTTP), `None` when it came outside any call.
    pub fn on_bytes(&self, bytes: &[u8], call: Option<u64>) {
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() {
            return;
        }
        if trimmed.first() == Some(&b'[') {
            match serde_json::from_slice::<Vec<Box<RawValue>>>(trimmed) {
                Ok(items) => {
                    for i in items {
                        self.on_bytes(i.get().as_bytes(), call);
                    }
                }
                Err(e) => self.garbage(trimmed, &e.to_string()),
            }
            return;
        }
        match jsonrpc::decode_one(trimmed, self.max_depth) {
            Ok(m) => self.on_message(m, call),
            Err(e) => self.garbage(trimmed, &e.error.to_string()),
        }
    }

    fn garbage(&self, bytes: &[u8], why: &str) {
        let preview = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
        tracing::warn!(upstream = %self.name, %why, %preview, "upstream sent a message that is not JSON-RPC; ignored");
    }

    fn on_message(&self, m: Message, call: Option<u64>) {
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
            Kind::Notification if m.method() == Some("notifications/progress") => {
                self.route_progress(&m);
            }
            Kind::Notification => match call {
                Some(id) => {
                    let origin = self.pending().get(&id).map(|p| p.origin.clone());
                    match origin.as_ref().and_then(|o| Some((o.sink.as_ref()?, o))) {
                        Some((_, o)) if !wanted(&m, o.log_level) => {}
                        Some((s, o)) => {
                            if let Some(m) = self.screened_notification(Recipient::of(o), m) {
                                let _ = s.tx.try_send(m.encode());
                            }
                        }
                        _ => {
                            tracing::debug!(upstream = %self.name, method = ?m.method(), "notification for a call without a stream; not relayed");
                        }
                    }
                }
                None => {
                    let owner = self.sole_owner();
                    if let Some(m) = self.screened_notification(Recipient::agent(owner.as_ref()), m)
                    {
                        self.unrouted(m, owner, None);
                    }
                }
            },
            Kind::Request => {
                let target = {
                    let p = self.pending();
                    match call {
                        Some(id) => p.get(&id).map(|p| p.origin.clone()),
                        None => sole_owner(&p).and_then(|owner| {
                            p.iter()
                                .filter(|(_, c)| {
                                    c.origin.owner.as_ref() == Some(&owner)
                                        && c.origin.sink.is_some()
                                })
                                .max_by_key(|(id, _)| **id)
                                .map(|(_, c)| c.origin.clone())
                        }),
                    }
                };
                let Some(orig) = m.id().map(ToOwned::to_owned) else {
                    return;
                };
                match target {
                    Some(CallOrigin {
                        owner,
                        session,
                        sink: Some(s),
                        ..
                    }) => {
                        let to = Recipient {
                            agent: owner.as_ref(),
                            session: session.as_ref(),
                        };
                        let m = match self.screened(to, m.clone()) {
                            Ok(m) => m,
                            Err(e) => return self.unrouted(m, owner, Some(e)),
                        };
                        let gid = format!(
                            "{}:{}",
                            self.name,
                            self.relay_seq.fetch_add(1, Ordering::Relaxed)
                        );
                        let raw = serde_json::value::to_raw_value(&gid)
                            .unwrap_or_else(|_| jsonrpc::null());
                        let method = m.method().unwrap_or_default().to_owned();
                        self.relayed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(
                                gid,
                                Relayed {
                                    orig,
                                    owner,
                                    method,
                                },
                            );
                        let _ = s.tx.try_send(m.encode_with_id(&raw));
                    }
                    _ => self.unrouted(m, None, None),
                }
            }
        }
    }

    /// `m` as the screen lets it reach `to`.
    fn screened(&self, to: Recipient<'_>, m: Message) -> Result<Message, GatewayError> {
        match &self.screen {
            Some(s) => s.screen(&self.name, to, m),
            None => Ok(m),
        }
    }

    /// A notification as the screen lets it through; `None` when it is withheld.
    fn screened_notification(&self, to: Recipient<'_>, m: Message) -> Option<Message> {
        let method = m.method().map(ToOwned::to_owned);
        match self.screened(to, m) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::info!(upstream = %self.name, ?method, error = %e, "upstream notification withheld");
                None
            }
        }
    }

    /// Progress goes to the call whose upstream id is its token, with the client's own
    /// token put back.
    fn route_progress(&self, m: &Message) {
        let call = progress_token(m.params()).and_then(|t| t.parse::<u64>().ok());
        let target = call.and_then(|id| {
            let p = self.pending();
            let c = p.get(&id)?;
            Some((
                c.origin.sink.clone()?,
                c.progress_token.clone()?,
                c.origin.clone(),
            ))
        });
        let Some((sink, token, origin)) = target else {
            tracing::debug!(upstream = %self.name, "progress for no call in flight with a stream; not relayed");
            return;
        };
        match RawValue::from_string(token)
            .map_err(|e| GatewayError::Internal(e.to_string()))
            .and_then(|t| m.with_param("progressToken", &t))
        {
            Ok(out) => {
                if let Some(out) = self.screened_notification(Recipient::of(&origin), out) {
                    let _ = sink.tx.try_send(out.encode());
                }
            }
            Err(e) => tracing::debug!(upstream = %self.name, error = %e, "progress not relayed"),
        }
    }

    /// The one agent every owned call in flight belongs to.
    fn sole_owner(&self) -> Option<AgentId> {
        sole_owner(&self.pending())
    }

    fn unrouted(&self, msg: Message, owner: Option<AgentId>, refuse: Option<GatewayError>) {
        let u = Unrouted {
            upstream: self.index,
            msg,
            owner,
            refuse,
        };
        if self.broadcast.try_send(u).is_err() {
            tracing::warn!(upstream = %self.name, "unrouted message queue full; message dropped");
        }
    }

    /// The upstream id and method of a relayed server request, when `agent` is the one it
    /// was relayed to (an answer from anyone else is ignored and the request stays open).
    pub fn take_relayed(
        &self,
        gateway_id: &str,
        agent: &AgentId,
    ) -> Option<(Box<RawValue>, String)> {
        let mut r = self.relayed.lock().unwrap_or_else(|e| e.into_inner());
        match r.get(gateway_id) {
            Some(rel) if rel.owner.as_ref() == Some(agent) => {
                r.remove(gateway_id).map(|rel| (rel.orig, rel.method))
            }
            _ => None,
        }
    }

    fn register(
        &self,
        id: u64,
        origin: CallOrigin,
        progress_token: Option<String>,
    ) -> oneshot::Receiver<Result<Message, GatewayError>> {
        let (tx, rx) = oneshot::channel();
        self.pending().insert(
            id,
            Pending {
                tx,
                origin,
                progress_token,
            },
        );
        rx
    }

    pub fn in_flight(&self) -> usize {
        self.pending().len()
    }
}

/// Whether `m` goes to a session that asked for log messages at `min` and up: anything but
/// a log message does.
pub(crate) fn wanted(m: &Message, min: u8) -> bool {
    if m.method() != Some("notifications/message") {
        return true;
    }
    #[derive(serde::Deserialize)]
    struct P {
        level: Option<String>,
    }
    let level = m.params_as::<P>().ok().flatten().and_then(|p| p.level);
    crate::session::log_wanted(min, level.as_deref())
}

/// The one agent that owns every owned call in `pending` (`None` if none or several do).
fn sole_owner(pending: &HashMap<u64, Pending>) -> Option<AgentId> {
    let mut owners = pending.values().filter_map(|p| p.origin.owner.as_ref());
    let first = owners.next()?;
    owners.all(|o| o == first).then(|| first.clone())
}

/// A copy of `msg` whose `params._meta.progressToken` is `token` (everything else byte for
/// byte).
fn with_progress_token(msg: &Message, token: &RawValue) -> Result<Message, GatewayError> {
    let meta = msg
        .params()
        .and_then(|p| jsonrpc::object_fields(p.get()))
        .and_then(|f| f.into_iter().find(|(k, _)| k == "_meta"))
        .and_then(|(_, m)| jsonrpc::with_member(m.get(), "progressToken", token))
        .ok_or_else(|| GatewayError::InvalidParams("_meta must be an object".into()))?;
    msg.with_param("_meta", &meta)
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
    /// A client's `progressToken` is replaced by `id` upstream (see the module doc).
    pub async fn forward(
        &self,
        id: u64,
        msg: &Message,
        origin: CallOrigin,
        timeout: Duration,
    ) -> Result<Message, GatewayError> {
        self.ready(timeout).await?;
        let token = request_progress_token(msg.params());
        let bytes = match &token {
            Some(_) => with_progress_token(msg, &jsonrpc::int_id(id))?,
            None => msg.clone(),
        }
        .encode_with_id(&jsonrpc::int_id(id));
        self.exchange(id, bytes, origin, token, timeout).await
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
        self.exchange(id, bytes, CallOrigin::default(), None, timeout)
            .await
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
                CallOrigin::default(),
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
        origin: CallOrigin,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Message, GatewayError> {
        let rx = self.shared.register(id, origin, token);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(n: &str) -> Option<AgentId> {
        Some(AgentId::new(n).unwrap())
    }

    fn sink() -> (CallSink, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(16);
        (CallSink { tx }, rx)
    }

    fn shared() -> (Arc<Shared>, mpsc::Receiver<Unrouted>) {
        let (tx, rx) = mpsc::channel(16);
        (Shared::new(0, "up".into(), tx, 64, None), rx)
    }

    /// A call `id` of `owner`, with a stream when `with_sink`, and its client's token.
    fn call(
        sh: &Shared,
        id: u64,
        owner: &str,
        token: Option<&str>,
    ) -> (
        mpsc::Receiver<Vec<u8>>,
        oneshot::Receiver<Result<Message, GatewayError>>,
    ) {
        let (s, rx) = sink();
        let origin = CallOrigin {
            owner: agent(owner),
            session: Some(SessionId::new(format!("{owner}-session")).unwrap()),
            sink: Some(s),
            log_level: 0,
        };
        let done = sh.register(id, origin, token.map(str::to_owned));
        (rx, done)
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn the_clients_progress_token_is_replaced_by_the_call_id_upstream() {
        let msg = jsonrpc::decode_one(
            br#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"x","_meta":{"progressToken":"t","k":[1]},"arguments":{}}}"#,
            64,
        )
        .unwrap();
        let out = with_progress_token(&msg, &jsonrpc::int_id(7)).unwrap();
        let v = json(&out.encode());
        assert_eq!(v["params"]["_meta"]["progressToken"], 7);
        assert_eq!(v["params"]["_meta"]["k"], serde_json::json!([1]));
        assert_eq!(v["params"]["name"], "x");
        assert_eq!(v["id"], "c1");
    }

    #[test]
    fn progress_reaches_only_its_call_with_the_clients_own_token() {
        let (sh, _u) = shared();
        // Two agents picked the same token.
        let (mut a, _da) = call(&sh, 1, "alice", Some(r#""t""#));
        let (mut b, _db) = call(&sh, 2, "bob", Some(r#""t""#));
        sh.on_bytes(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":2,"progress":1,"message":"bob's"}}"#,
            None,
        );
        let m = json(&b.try_recv().unwrap());
        assert_eq!(m["params"]["progressToken"], "t");
        assert_eq!(m["params"]["message"], "bob's");
        assert!(a.try_recv().is_err(), "alice got bob's progress");
        // A token that is no call in flight goes nowhere.
        sh.on_bytes(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#,
            None,
        );
        assert!(a.try_recv().is_err() && b.try_recv().is_err());
    }

    /// Cuts "secret" and withholds anything with "LEAK", noting who each message was for
    /// (agent, session).
    struct Cutter(Mutex<Vec<(Option<String>, Option<String>)>>);

    impl Screen for Cutter {
        fn screen(
            &self,
            _upstream: &str,
            to: Recipient<'_>,
            msg: Message,
        ) -> Result<Message, GatewayError> {
            self.0.lock().unwrap().push((
                to.agent.map(|a| a.as_str().to_owned()),
                to.session.map(|s| s.as_str().to_owned()),
            ));
            let params = msg.params().map(|p| p.get().to_owned()).unwrap_or_default();
            if params.contains("LEAK") {
                return Err(GatewayError::Denied("leak".into()));
            }
            let cut = RawValue::from_string(params.replace("secret", "[cut]")).unwrap();
            msg.with_field("params", &cut)
        }
    }

    #[test]
    fn the_screen_sees_every_message_before_an_agent_does() {
        let (tx, mut u) = mpsc::channel(16);
        let screen = Arc::new(Cutter(Mutex::new(Vec::new())));
        let sh = Shared::new(0, "up".into(), tx, 64, Some(screen.clone()));
        let (mut a, _da) = call(&sh, 1, "alice", Some(r#""t""#));
        // On the call's stream, by progress token, and outside any call: cut, in order.
        for (bytes, call) in [
            (
                &br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"a secret"}}"#[..],
                Some(1),
            ),
            (
                br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1,"message":"secret"}}"#,
                None,
            ),
            (
                br#"{"jsonrpc":"2.0","id":"r1","method":"sampling/createMessage","params":{"text":"secret"}}"#,
                Some(1),
            ),
        ] {
            sh.on_bytes(bytes, call);
        }
        assert_eq!(json(&a.try_recv().unwrap())["params"]["data"], "a [cut]");
        let p = json(&a.try_recv().unwrap());
        assert_eq!(
            (
                p["params"]["message"].clone(),
                p["params"]["progressToken"].clone()
            ),
            ("[cut]".into(), "t".into())
        );
        let r = json(&a.try_recv().unwrap());
        assert_eq!(r["params"]["text"], "[cut]");
        assert!(
            sh.take_relayed(r["id"].as_str().unwrap(), &agent("alice").unwrap())
                .is_some()
        );
        sh.on_bytes(
            br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"secret of one agent"}}"#,
            None,
        );
        let out = u.try_recv().unwrap();
        assert_eq!(
            json(&out.msg.encode())["params"]["data"],
            "[cut] of one agent"
        );
        assert_eq!(out.owner, agent("alice"));
        // Withheld: nothing reaches the agent; a request goes back to be refused upstream.
        sh.on_bytes(
            br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"LEAK"}}"#,
            Some(1),
        );
        sh.on_bytes(
            br#"{"jsonrpc":"2.0","id":"r2","method":"elicitation/create","params":{"message":"LEAK"}}"#,
            Some(1),
        );
        assert!(a.try_recv().is_err());
        let refused = u.try_recv().unwrap();
        assert_eq!(refused.msg.id().unwrap().get(), r#""r2""#);
        assert!(matches!(refused.refuse, Some(GatewayError::Denied(_))));
        // The screen knew whose each message was, and the call's session for those that
        // belong to one call (all but the notification outside any call).
        let seen = screen.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 6);
        assert!(
            seen.iter().all(|(a, _)| a.as_deref() == Some("alice")),
            "{seen:?}"
        );
        let sessions: Vec<_> = seen.iter().map(|(_, s)| s.as_deref()).collect();
        let s = Some("alice-session");
        assert_eq!(sessions, [s, s, s, None, s, s]);
    }

    #[test]
    fn log_messages_on_a_calls_stream_keep_to_the_callers_level() {
        let (sh, _u) = shared();
        let (s, mut rx) = sink();
        let origin = CallOrigin {
            owner: agent("alice"),
            sink: Some(s),
            log_level: crate::session::log_rank("warning").unwrap(),
            ..CallOrigin::default()
        };
        let _done = sh.register(1, origin, None);
        for level in ["info", "error", "debug", "warning"] {
            let m = format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"{level}","data":"x"}}}}"#
            );
            sh.on_bytes(m.as_bytes(), Some(1));
        }
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|b| json(&b)["params"]["level"].clone())
            .collect();
        assert_eq!(got, ["error", "warning"]);
    }

    #[test]
    fn messages_on_a_calls_stream_belong_to_that_call() {
        let (sh, mut u) = shared();
        let (mut a, _da) = call(&sh, 1, "alice", None);
        let (mut b, _db) = call(&sh, 2, "bob", None);
        sh.on_bytes(
            br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"for bob"}}"#,
            Some(2),
        );
        assert_eq!(json(&b.try_recv().unwrap())["params"]["data"], "for bob");
        sh.on_bytes(
            br#"{"jsonrpc":"2.0","id":40,"method":"sampling/createMessage","params":{}}"#,
            Some(1),
        );
        let req = json(&a.try_recv().unwrap());
        assert!(b.try_recv().is_err() && u.try_recv().is_err());
        let gid = req["id"].as_str().unwrap().to_owned();
        // Only the agent it was relayed to can answer it.
        assert!(sh.take_relayed(&gid, &agent("bob").unwrap()).is_none());
        let (orig, method) = sh.take_relayed(&gid, &agent("alice").unwrap()).unwrap();
        assert_eq!(
            (orig.get(), method.as_str()),
            ("40", "sampling/createMessage")
        );
    }

    #[test]
    fn a_request_outside_any_call_goes_to_a_call_only_when_one_agent_has_calls_in_flight() {
        let (sh, mut u) = shared();
        let (mut a1, _d1) = call(&sh, 1, "alice", None);
        let (mut a2, _d2) = call(&sh, 2, "alice", None);
        let req = br#"{"jsonrpc":"2.0","id":9,"method":"elicitation/create","params":{}}"#;
        sh.on_bytes(req, None);
        assert!(a2.try_recv().is_ok(), "the newest call of the only agent");
        assert!(a1.try_recv().is_err());
        // Bob's call (without a stream) is in flight too: the request could be his.
        let (tx, _done) = oneshot::channel();
        sh.pending().insert(
            3,
            Pending {
                tx,
                origin: CallOrigin {
                    owner: agent("bob"),
                    ..CallOrigin::default()
                },
                progress_token: None,
            },
        );
        sh.on_bytes(req, None);
        assert!(a1.try_recv().is_err() && a2.try_recv().is_err());
        let un = u.try_recv().unwrap();
        assert_eq!(un.msg.method(), Some("elicitation/create"));
        assert_eq!(un.owner, None);
    }

    #[test]
    fn notifications_outside_any_call_name_their_only_possible_owner() {
        let (sh, mut u) = shared();
        let log = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#;
        sh.on_bytes(log, None);
        assert_eq!(u.try_recv().unwrap().owner, None, "no call in flight");
        let (_a, _da) = call(&sh, 1, "alice", None);
        sh.on_bytes(log, None);
        assert_eq!(u.try_recv().unwrap().owner, agent("alice"));
        let (_b, _db) = call(&sh, 2, "bob", None);
        sh.on_bytes(log, None);
        assert_eq!(u.try_recv().unwrap().owner, None, "two agents in flight");
    }
}
