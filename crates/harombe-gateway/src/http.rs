//! The streamable-HTTP transport: POST (JSON or SSE answers), GET (the session's
//! server-to-client stream), DELETE (end a session), `Mcp-Session-Id`, and
//! `MCP-Protocol-Version` checks. The body limit is enforced before anything is parsed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::{self, ClientCtx, Engine};
use crate::error::GatewayError;
use crate::jsonrpc::{self, Incoming, Kind, Message};
use crate::pipeline::authn;
use crate::session::Session;
use crate::upstream::CallSink;
use crate::{GatewayConfig, GatewayDeps, sse};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

#[derive(Clone, Debug)]
struct AppState {
    engine: Arc<Engine>,
    shutdown: CancellationToken,
    auth_audit: Arc<authn::FailureAuditLimiter>,
}

/// Binds `config.listen` and serves until `shutdown`, then drains in-flight calls.
pub async fn serve(
    config: GatewayConfig,
    deps: GatewayDeps,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let listener = TcpListener::bind(config.listen).await?;
    serve_with_listener(listener, config, deps, shutdown).await
}

/// Serves on an already bound listener (tests bind 127.0.0.1:0 and read the address).
pub async fn serve_with_listener(
    listener: TcpListener,
    config: GatewayConfig,
    deps: GatewayDeps,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    // Upstreams outlive the listener so that calls in flight at shutdown can finish.
    let upstream_stop = CancellationToken::new();
    let drain = config.limits.drain_timeout;
    let path = config.path.clone();
    let engine = Engine::start(config, deps, upstream_stop.clone(), None)?;
    let warm = engine.clone();
    tokio::spawn(async move { warm.refresh_catalog().await });
    let state = AppState {
        auth_audit: Arc::new(authn::FailureAuditLimiter::new(
            engine.config.limits.auth_failure_audit_per_second,
        )),
        engine: engine.clone(),
        shutdown: shutdown.clone(),
    };
    let app = Router::new()
        .route(&path, post(on_post).get(on_get).delete(on_delete))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_origin,
        ))
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    tracing::info!(addr = ?listener.local_addr().ok(), %path, "MCP endpoint listening");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    engine.tracker.close();
    if tokio::time::timeout(drain, engine.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(in_flight = engine.tracker.len(), "drain timed out");
    }
    upstream_stop.cancel();
    served.map_err(GatewayError::Io)
}

/// Whether a request's `Origin` may reach the endpoint: absent (not a browser), a
/// loopback origin, or one listed in `gateway.allowed_origins`.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    let origin = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split_once(']').map(|(h, _)| h)
    } else {
        rest.split(':').next()
    };
    matches!(host, Some(h) if h.eq_ignore_ascii_case("localhost") || h == "::1" || h.starts_with("127.") && h.parse::<std::net::Ipv4Addr>().is_ok())
}

async fn check_origin(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let origin = header_str(req.headers(), "origin");
    if origin_allowed(origin, &st.engine.config.allowed_origins) {
        return next.run(req).await;
    }
    tracing::warn!(origin = ?origin, "request from a foreign origin refused");
    error_response(
        &GatewayError::Denied(format!(
            "origin {:?} is not allowed (gateway.allowed_origins)",
            origin
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        )),
        None,
    )
}

fn json_response(status: StatusCode, body: Vec<u8>, session: Option<&Session>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(s) = session
        && let Ok(v) = HeaderValue::from_str(s.id.as_str())
    {
        r.headers_mut().insert(SESSION_HEADER, v);
    }
    r
}

fn error_response(e: &GatewayError, id: Option<&serde_json::value::RawValue>) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_response(status, e.to_rpc().response(id), None);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn authenticate(st: &AppState, h: &HeaderMap) -> Result<harombe_core::AgentId, Response> {
    if h.get("authorization").is_none()
        && let Some(anon) = &st.engine.config.anonymous_agent
        && let Ok(a) = harombe_core::AgentId::new(anon.clone())
    {
        return Ok(a);
    }
    match authn::authenticate(
        st.engine.deps.agents.as_ref(),
        header_str(h, "authorization"),
    ) {
        Ok(a) => Ok(a),
        Err(e) => {
            if let Some(suppressed) = st.auth_audit.admit() {
                let ev = authn::with_suppressed(
                    authn::failure_event(st.engine.deps.clock.as_ref(), &e, None),
                    suppressed,
                );
                if let Err(ae) = st.engine.deps.audit.append(ev).await {
                    tracing::error!(error = %ae, "audit append failed");
                }
            }
            Err(error_response(&e, None))
        }
    }
}

async fn refuse(
    st: &AppState,
    agent: &harombe_core::AgentId,
    session: Option<&Session>,
    e: GatewayError,
) -> Response {
    st.engine.audit_refusal(Some(agent), session, "", &e).await;
    error_response(&e, None)
}

fn session_for(
    st: &AppState,
    h: &HeaderMap,
    agent: &harombe_core::AgentId,
) -> Result<Arc<Session>, GatewayError> {
    let sid = header_str(h, SESSION_HEADER).ok_or_else(|| {
        GatewayError::InvalidRequest("missing Mcp-Session-Id header; initialize first".into())
    })?;
    st.engine.sessions.get(sid, agent)
}

fn check_version(h: &HeaderMap) -> Result<(), GatewayError> {
    match header_str(h, VERSION_HEADER) {
        Some(v) if !engine::SUPPORTED_VERSIONS.contains(&v) => Err(
            GatewayError::UnsupportedVersion(v.chars().take(40).collect()),
        ),
        _ => Ok(()),
    }
}

async fn on_post(State(st): State<AppState>, h: HeaderMap, body: Body) -> Response {
    let agent = match authenticate(&st, &h).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let max = st.engine.config.limits.max_body_bytes;
    let declared = header_str(&h, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        let e = GatewayError::ResourceLimit(format!("request body is larger than {max} bytes"));
        return refuse(&st, &agent, None, e).await;
    }
    let bytes: Bytes = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => {
            let e = GatewayError::ResourceLimit(format!("request body is larger than {max} bytes"));
            return refuse(&st, &agent, None, e).await;
        }
    };
    if let Err(e) = check_version(&h) {
        return refuse(&st, &agent, None, e).await;
    }
    let incoming = match jsonrpc::decode(&bytes, st.engine.config.limits.max_depth) {
        Ok(i) => i,
        Err(e) => return refuse(&st, &agent, None, e).await,
    };
    let is_init = matches!(&incoming, Incoming::Single(Ok(m)) if m.method() == Some("initialize") && m.kind() == Kind::Request);
    let session = if is_init {
        let Incoming::Single(Ok(m)) = &incoming else {
            return refuse(
                &st,
                &agent,
                None,
                GatewayError::Internal("unreachable".into()),
            )
            .await;
        };
        let v = engine::negotiate(engine::requested_version(m).as_deref());
        match st.engine.sessions.create(agent.clone(), v.to_owned()) {
            Ok(s) => s,
            Err(e) => return refuse(&st, &agent, None, e).await,
        }
    } else {
        match session_for(&st, &h, &agent) {
            Ok(s) => s,
            Err(e) => return refuse(&st, &agent, None, e).await,
        }
    };
    let accepts_sse = header_str(&h, "accept").is_some_and(|a| a.contains("text/event-stream"));
    let len = bytes.len();
    match incoming {
        Incoming::Single(Err(inv)) => {
            st.engine
                .audit_refusal(Some(&agent), Some(&session), "", &inv.error)
                .await;
            let mut r = error_response(&inv.error, inv.id.as_deref());
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
        Incoming::Single(Ok(m)) if m.kind() != Kind::Request => {
            let ctx = ClientCtx {
                agent,
                session: Some(session),
                sink: None,
            };
            st.engine.handle(&ctx, m, len).await;
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::ACCEPTED;
            r
        }
        Incoming::Single(Ok(m)) => {
            single_request(st, agent, session, m, len, accepts_sse, is_init).await
        }
        Incoming::Batch(items) => batch(st, agent, session, items, len).await,
    }
}

async fn single_request(
    st: AppState,
    agent: harombe_core::AgentId,
    session: Arc<Session>,
    m: Message,
    len: usize,
    accepts_sse: bool,
    is_init: bool,
) -> Response {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let ctx = ClientCtx {
        agent,
        session: Some(session.clone()),
        sink: accepts_sse.then_some(CallSink { tx }),
    };
    let eng = st.engine.clone();
    // The call runs to completion even if the client goes away (MCP: a disconnect is
    // not a cancellation), and shutdown waits for it.
    let mut task = st
        .engine
        .tracker
        .spawn(async move { eng.handle(&ctx, m, len).await });
    tokio::select! {
        biased;
        r = &mut task => {
            let body = r.ok().flatten().unwrap_or_default();
            // What the upstream sent for the call just before answering (a request, a log
            // message) is still queued: it goes first, on a stream, not lost.
            let mut early = Vec::new();
            while let Ok(m) = rx.try_recv() {
                early.push(m);
            }
            if early.is_empty() {
                return json_response(StatusCode::OK, body, is_init.then_some(&*session));
            }
            early.push(body);
            let stream = futures::stream::iter(early)
                .filter(|m| std::future::ready(!m.is_empty()))
                .map(|m| Ok::<_, Infallible>(Bytes::from(sse::encode(&m, None))));
            sse_response(Body::from_stream(stream), is_init.then_some(&*session))
        }
        Some(first) = rx.recv() => {
            struct S {
                rx: mpsc::Receiver<Vec<u8>>,
                task: Option<tokio::task::JoinHandle<Option<Vec<u8>>>>,
                first: Option<Vec<u8>>,
            }
            let stream = futures::stream::unfold(
                S { rx, task: Some(task), first: Some(first) },
                |mut s| async move {
                    if let Some(f) = s.first.take() {
                        return Some((f, s));
                    }
                    let task = s.task.as_mut()?;
                    tokio::select! {
                        biased;
                        Some(m) = s.rx.recv() => Some((m, s)),
                        r = task => {
                            s.task = None;
                            Some((r.ok().flatten().unwrap_or_default(), s))
                        }
                    }
                },
            )
            .filter(|m| std::future::ready(!m.is_empty()))
            .map(|m| Ok::<_, Infallible>(Bytes::from(sse::encode(&m, None))));
            sse_response(Body::from_stream(stream), is_init.then_some(&*session))
        }
    }
}

fn sse_response(body: Body, session: Option<&Session>) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(s) = session
        && let Ok(v) = HeaderValue::from_str(s.id.as_str())
    {
        h.insert(SESSION_HEADER, v);
    }
    r
}

async fn batch(
    st: AppState,
    agent: harombe_core::AgentId,
    session: Arc<Session>,
    items: Vec<Result<Message, jsonrpc::Invalid>>,
    len: usize,
) -> Response {
    let per = len / items.len().max(1);
    let futs = items.into_iter().map(|item| {
        let st = st.clone();
        let ctx = ClientCtx {
            agent: agent.clone(),
            session: Some(session.clone()),
            sink: None,
        };
        st.engine.tracker.clone().spawn(async move {
            match item {
                Ok(m) => st.engine.handle(&ctx, m, per).await,
                Err(inv) => {
                    st.engine
                        .audit_refusal(Some(&ctx.agent), ctx.session.as_deref(), "", &inv.error)
                        .await;
                    Some(inv.error.to_rpc().response(inv.id.as_deref()))
                }
            }
        })
    });
    let answers: Vec<Vec<u8>> = futures::future::join_all(futs)
        .await
        .into_iter()
        .filter_map(|r| r.ok().flatten())
        .collect();
    if answers.is_empty() {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::ACCEPTED;
        return r;
    }
    let mut body = vec![b'['];
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(a);
    }
    body.push(b']');
    json_response(StatusCode::OK, body, None)
}

async fn on_get(State(st): State<AppState>, h: HeaderMap) -> Response {
    let agent = match authenticate(&st, &h).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !header_str(&h, "accept").is_some_and(|a| a.contains("text/event-stream")) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return r;
    }
    let session = match session_for(&st, &h, &agent) {
        Ok(s) => s,
        Err(e) => return refuse(&st, &agent, None, e).await,
    };
    // Resumption: a client that lost its stream reconnects with the last event id it saw.
    let last_event_id = match header_str(&h, "last-event-id").map(str::parse::<u64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            let e = GatewayError::InvalidRequest(
                "Last-Event-ID is not an event id of this session".into(),
            );
            return refuse(&st, &agent, Some(&session), e).await;
        }
    };
    let rx = session.open_stream(st.engine.config.limits.stream_buffer, last_event_id);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
            .map(|(id, m)| Ok::<_, Infallible>(Bytes::from(sse::encode(&m, Some(&id.to_string())))))
            .take_until(st.shutdown.clone().cancelled_owned());
    sse_response(Body::from_stream(stream), None)
}

async fn on_delete(State(st): State<AppState>, h: HeaderMap) -> Response {
    let agent = match authenticate(&st, &h).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let sid = header_str(&h, SESSION_HEADER)
        .unwrap_or_default()
        .to_owned();
    match st.engine.sessions.remove(&sid, &agent) {
        Ok(()) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(e) => refuse(&st, &agent, None, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_outside_loopback_need_to_be_listed() {
        let none: Vec<String> = vec![];
        assert!(origin_allowed(None, &none));
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://127.0.0.2:8443",
            "http://[::1]:80",
            "http://LOCALHOST",
        ] {
            assert!(origin_allowed(Some(ok), &none), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example",
            "null",
            "file://",
            "http://[::2]",
        ] {
            assert!(!origin_allowed(Some(bad), &none), "{bad}");
        }
        let listed = vec!["https://app.example.com".to_owned()];
        assert!(origin_allowed(Some("https://app.example.com"), &listed));
        assert!(!origin_allowed(Some("http://app.example.com"), &listed));
    }
}
