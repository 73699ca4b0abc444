//! A streamable-HTTP upstream: one MCP session on a pooled reqwest client. Each message is
//! a POST; a JSON answer or an SSE stream of messages is fed back into [`Shared`]. An
//! expired session (404) is re-initialized once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::header::{self, HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;

use super::{Link, LinkState, Shared, Upstream};
use crate::error::GatewayError;
use crate::sse::SseParser;

#[derive(Debug)]
struct HttpLink {
    shared: Arc<Shared>,
    client: reqwest::Client,
    url: String,
    /// `url` parsed once (host normalisation is not cheap); `None` leaves the error to
    /// each request, as before.
    parsed: Option<reqwest::Url>,
    timeout: Duration,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    max_event: usize,
}

/// Connects (in the background) and returns the handle at once.
pub fn spawn(
    shared: Arc<Shared>,
    url: String,
    timeout: Duration,
    max_event: usize,
    shutdown: CancellationToken,
) -> Result<Upstream, GatewayError> {
    let client = reqwest::Client::builder()
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| GatewayError::Config(format!("upstream {}: {e}", shared.name)))?;
    let link = Arc::new(HttpLink {
        shared: shared.clone(),
        client,
        parsed: reqwest::Url::parse(&url).ok(),
        url,
        timeout,
        session: Mutex::new(None),
        version: Mutex::new(None),
        max_event,
    });
    let up = Upstream::new(shared, Arc::new(HttpLinkHandle(link.clone())));
    let up2 = up.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match up2.handshake(link.timeout).await {
                Ok(init) => {
                    #[derive(serde::Deserialize)]
                    struct I {
                        #[serde(rename = "protocolVersion")]
                        v: Option<String>,
                    }
                    let v = serde_json::from_str::<I>(init.get()).ok().and_then(|i| i.v);
                    *link.version.lock().unwrap_or_else(|e| e.into_inner()) = v;
                    up2.shared.state.send_replace(LinkState::Up);
                    tracing::info!(upstream = %up2.shared.name, "upstream ready");
                    backoff = Duration::from_millis(100);
                    let mut rx = up2.shared.state.subscribe();
                    // The upstream's own server-to-client stream, for as long as this
                    // upstream session lives.
                    let down = async {
                        let _ = rx.wait_for(|s| matches!(s, LinkState::Down(_))).await;
                    };
                    let listen = async {
                        link.listen().await;
                        std::future::pending::<()>().await;
                    };
                    tokio::select! {
                        () = down => continue,
                        () = listen => {}
                        () = shutdown.cancelled() => return,
                    }
                }
                Err(e) => {
                    up2.shared
                        .state
                        .send_replace(LinkState::Down(e.to_string()));
                    tracing::warn!(upstream = %up2.shared.name, error = %e, "upstream initialize failed; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    });
    Ok(up)
}

impl HttpLink {
    fn unavailable(&self, problem: impl Into<String>) -> GatewayError {
        GatewayError::UpstreamUnavailable {
            upstream: self.shared.name.clone(),
            problem: problem.into(),
        }
    }

    async fn post(&self, bytes: Vec<u8>) -> Result<reqwest::Response, GatewayError> {
        let req = match &self.parsed {
            Some(u) => self.client.post(u.clone()),
            None => self.client.post(&self.url),
        };
        let mut req = req
            .timeout(self.timeout)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(
                header::ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            )
            .body(bytes);
        if let Some(s) = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            req = req.header(HeaderName::from_static("mcp-session-id"), s);
        }
        if let Some(v) = self
            .version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            req = req.header(HeaderName::from_static("mcp-protocol-version"), v);
        }
        req.send().await.map_err(|e| {
            if e.is_timeout() {
                GatewayError::UpstreamTimeout {
                    upstream: self.shared.name.clone(),
                    timeout_ms: self.timeout.as_millis() as u64,
                }
            } else {
                self.unavailable(e.without_url().to_string())
            }
        })
    }

    /// Reads the answer to a `POST`: what its stream carries belongs to `call`.
    async fn consume(
        &self,
        resp: reqwest::Response,
        call: Option<u64>,
    ) -> Result<(), GatewayError> {
        if let Some(s) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.to_owned());
        }
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if sse {
            let mut parser = SseParser::new(self.max_event);
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.unavailable(e.without_url().to_string()))?;
                let events = parser
                    .push(&chunk)
                    .map_err(|e| self.unavailable(e.to_string()))?;
                for ev in events {
                    if ev.event.as_deref().is_none_or(|e| e == "message") {
                        self.shared.on_bytes(ev.data.as_bytes(), call);
                    }
                }
            }
        } else {
            // A JSON answer is bounded like one SSE event: an upstream cannot make the
            // gateway buffer without limit.
            let too_large = || {
                self.unavailable(format!(
                    "the answer is larger than {} bytes",
                    self.max_event
                ))
            };
            if resp
                .content_length()
                .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > self.max_event))
            {
                return Err(too_large());
            }
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.unavailable(e.without_url().to_string()))?;
                if body.len() + chunk.len() > self.max_event {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            self.shared.on_bytes(&body, call);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct HttpLinkHandle(Arc<HttpLink>);

impl HttpLink {
    /// Keeps a `GET` stream open to the upstream and feeds what it sends (notifications,
    /// requests) to [`Shared`], reconnecting with `Last-Event-ID` so that nothing sent
    /// while the connection was down is missed. Returns when the upstream says it offers
    /// no such stream (405) or refuses it otherwise.
    async fn listen(&self) {
        let mut last_id: Option<String> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut req = self
                .client
                .get(&self.url)
                .header("accept", "text/event-stream");
            if let Some(s) = self
                .session
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                req = req.header("mcp-session-id", s);
            }
            if let Some(v) = self
                .version
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                req = req.header("mcp-protocol-version", v);
            }
            if let Some(id) = &last_id {
                req = req.header("last-event-id", id.as_str());
            }
            match req.send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED => {
                    tracing::debug!(upstream = %self.shared.name, "upstream offers no GET stream");
                    return;
                }
                Ok(resp) if resp.status().is_success() => {
                    backoff = Duration::from_millis(100);
                    let mut parser = SseParser::new(self.max_event);
                    let mut stream = resp.bytes_stream();
                    while let Some(Ok(chunk)) = stream.next().await {
                        let Ok(events) = parser.push(&chunk) else {
                            tracing::warn!(upstream = %self.shared.name, "upstream stream event too large; reconnecting");
                            break;
                        };
                        for ev in events {
                            if ev.id.is_some() {
                                last_id = ev.id.clone();
                            }
                            if ev.event.as_deref().is_none_or(|e| e == "message") {
                                self.shared.on_bytes(ev.data.as_bytes(), None);
                            }
                        }
                    }
                }
                Ok(resp) => {
                    tracing::warn!(upstream = %self.shared.name, status = %resp.status(), "upstream refused its GET stream");
                    return;
                }
                Err(e) => {
                    tracing::debug!(upstream = %self.shared.name, error = %e.without_url(), "upstream GET stream failed; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

impl HttpLink {
    /// Posts one message; `call` is the gateway id of a request (whose answer is read),
    /// `None` for a notification or response.
    async fn round_trip(&self, bytes: Vec<u8>, call: Option<u64>) -> Result<(), GatewayError> {
        let resp = self.post(bytes).await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND
            && self
                .session
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
        {
            // The upstream forgot our session: initialize again in the background.
            *self.session.lock().unwrap_or_else(|e| e.into_inner()) = None;
            self.shared
                .state
                .send_replace(LinkState::Down("the upstream session expired".into()));
            return Err(self.unavailable("the upstream session expired"));
        }
        if !status.is_success() {
            return Err(self.unavailable(format!("HTTP {status}")));
        }
        if status == reqwest::StatusCode::ACCEPTED || call.is_none() {
            return Ok(());
        }
        self.consume(resp, call).await
    }
}

#[async_trait]
impl Link for HttpLinkHandle {
    async fn send(&self, id: Option<u64>, bytes: Vec<u8>) -> Result<(), GatewayError> {
        match id {
            None => self.0.round_trip(bytes, None).await,
            Some(id) => {
                // The answer streams back in the background; the caller waits on its id
                // under its own timeout.
                let link = self.0.clone();
                tokio::spawn(async move {
                    if let Err(e) = link.round_trip(bytes, Some(id)).await {
                        link.shared.fail(id, e);
                    }
                });
                Ok(())
            }
        }
    }
}
