//! The control plane on an ephemeral port, over a real SQLite store (audit log and
//! approvals), driven with reqwest and tokio-tungstenite.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use harombe_api::{ApiState, InstrumentedStore, LogTail, ROUTES, Role, Tokens, router};
use harombe_core::{
    AgentId, ApprovalId, ApprovalRequest, ApprovalStore, AuditEvent, AuditStore, EventFilter,
    EventKind, Outcome, PageRequest, Redacted, SystemClock, ThreatLevel, Verdict,
};
use harombe_store::{Location, StoreOptions};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "hrb_admin_test-admin-token-0123456789abcdefghijkl";
const READER: &str = "hrb_read_test-reader-token-0123456789abcdefghijk";

struct Harness {
    base: String,
    addr: std::net::SocketAddr,
    store: Arc<dyn AuditStore>,
    approvals: Arc<dyn ApprovalStore>,
    notify: Arc<Notify>,
    http: reqwest::Client,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start_with(configure: impl FnOnce(ApiState) -> ApiState) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let stores = harombe_store::open_stores(
        &Location::Sqlite(dir.path().join("audit.db")),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    let instrumented = InstrumentedStore::new(stores.audit.clone());
    let telemetry = instrumented.telemetry();
    let store: Arc<dyn AuditStore> = Arc::new(instrumented);
    let mut tokens = Tokens::new();
    tokens
        .add_plaintext("ops", Role::Admin, &Redacted::new(ADMIN.to_owned()))
        .unwrap();
    tokens
        .add_plaintext("viewer", Role::Read, &Redacted::new(READER.to_owned()))
        .unwrap();
    let cancel = CancellationToken::new();
    let state = configure(
        ApiState::new(
            store.clone(),
            stores.approvals.clone(),
            tokens,
            Arc::new(SystemClock),
        )
        .with_store_telemetry(telemetry)
        .with_shutdown(cancel.clone()),
    );
    let tail = LogTail::new(&state).with_poll_interval(Duration::from_millis(50));
    let notify = tail.notifier();
    tail.spawn(cancel.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(c2.cancelled_owned())
            .await
            .unwrap();
    });
    Harness {
        base: format!("http://{addr}"),
        addr,
        store,
        approvals: stores.approvals,
        notify,
        http: reqwest::Client::new(),
        cancel,
        _dir: dir,
    }
}

async fn start() -> Harness {
    start_with(|s| s).await
}

impl Harness {
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Polls `path` until `ok` holds (the tail reads behind the writer); panics after 10 s.
    async fn eventually(&self, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
        self.notify.notify_one();
        for _ in 0..400 {
            let (status, v) = self.get(path, Some(READER)).await;
            if status == 200 && ok(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let (_, last) = self.get(path, Some(READER)).await;
        let shown = match &last {
            Value::String(t) => t
                .lines()
                .filter(|l| l.contains("live_clients"))
                .collect::<Vec<_>>()
                .join("\n"),
            v => v.to_string(),
        };
        panic!("{path} never satisfied the condition; last: {shown}");
    }

    async fn auth_events(&self) -> Vec<Value> {
        let page = self
            .store
            .query(
                &EventFilter {
                    kind: Some(EventKind::Auth),
                    ..EventFilter::default()
                },
                PageRequest::newest(100),
            )
            .await
            .unwrap();
        page.events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }
}

fn call(agent: &str, tool: &str, us: u64) -> AuditEvent {
    let mut e = AuditEvent::new(
        OffsetDateTime::now_utc(),
        EventKind::ToolCall,
        Outcome::Success,
    )
    .with_agent(AgentId::new(agent).unwrap())
    .with_target(tool)
    .with_verdict(Verdict::allow());
    e.duration_us = Some(us);
    e.threat_level = Some(ThreatLevel::Low);
    e
}

fn request(tool: &str, created: OffsetDateTime, deadline: OffsetDateTime) -> ApprovalRequest {
    let agent = AgentId::new("bot").unwrap();
    let args = json!({"path": "/etc/passwd"});
    ApprovalRequest {
        id: ApprovalId::new(),
        binding: harombe_core::binding(&agent, tool, &args),
        agent,
        session: None,
        tool: tool.into(),
        arguments: args,
        reasons: vec!["high risk".into()],
        threat_level: Some(ThreatLevel::High),
        risk: Some(0.8),
        created,
        deadline,
    }
}

#[tokio::test]
async fn missing_wrong_and_read_tokens_are_refused_and_audited() {
    let h = start().await;
    let (s, body) = h.get("/api/events", None).await;
    assert_eq!(s, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = "hrb_admin_this-is-not-a-valid-token-xyz";
    let (s, _) = h.get("/api/metrics", Some(wrong)).await;
    assert_eq!(s, 401);
    let (s, body) = h
        .post(
            &format!("/api/approvals/{}/approve", ApprovalId::new()),
            READER,
            None,
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("viewer")
    );

    let audited = h.auth_events().await;
    assert_eq!(audited.len(), 3, "{audited:?}");
    let text = serde_json::to_string(&audited).unwrap();
    assert!(!text.contains(wrong) && !text.contains(READER) && !text.contains(ADMIN));
    let by_target = |t: &str| {
        audited
            .iter()
            .find(|e| e["target"].as_str().is_some_and(|x| x.starts_with(t)))
            .unwrap_or_else(|| panic!("no auth event for {t}: {audited:?}"))
            .clone()
    };
    assert_eq!(by_target("/api/events")["outcome"], "failure");
    assert_eq!(by_target("/api/metrics")["outcome"], "failure");
    let forbidden = by_target("/api/approvals/");
    assert_eq!(forbidden["outcome"], "denied");
    assert_eq!(forbidden["details"]["token"], "viewer");

    // Public routes need no token; valid tokens pass.
    assert_eq!(h.get("/healthz", None).await.0, 200);
    assert_eq!(h.get("/", None).await.0, 200);
    assert_eq!(h.get("/assets/app.js", None).await.0, 200);
    assert_eq!(h.get("/assets/uPlot-LICENSE.txt", None).await.0, 200);
    assert_eq!(h.get("/api/events", Some(READER)).await.0, 200);
    assert_eq!(h.auth_events().await.len(), 3);
}

#[tokio::test]
async fn events_filter_paginate_and_name_bad_parameters() {
    let h = start().await;
    let mut ids = Vec::new();
    for i in 0u32..25 {
        let agent = if i.is_multiple_of(2) { "alpha" } else { "beta" };
        let mut e = call(
            agent,
            if i.is_multiple_of(3) {
                "fs.write"
            } else {
                "fs.read"
            },
            100,
        );
        if i.is_multiple_of(5) {
            e.outcome = Outcome::Denied;
            e.verdict = Some(Verdict::deny("policy"));
            e.threat_level = Some(ThreatLevel::Critical);
        }
        ids.push(e.id);
        h.store.append(e).await.unwrap();
    }
    // Page through alpha's events, 4 at a time.
    let mut seen = BTreeSet::new();
    let mut cursor: Option<u64> = None;
    loop {
        let q = match cursor {
            Some(c) => format!("/api/events?agent=alpha&limit=4&cursor={c}"),
            None => "/api/events?agent=alpha&limit=4".into(),
        };
        let (s, page) = h.get(&q, Some(READER)).await;
        assert_eq!(s, 200, "{page}");
        for e in page["events"].as_array().unwrap() {
            assert_eq!(e["agent"], "alpha");
            assert!(seen.insert(e["seq"].as_u64().unwrap()), "duplicate {e}");
        }
        match page["next_cursor"].as_u64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 13);

    let (_, p) = h
        .get(
            "/api/events?tool=fs.write&verdict=deny&min_threat=critical&order=oldest",
            Some(READER),
        )
        .await;
    let seqs: Vec<u64> = p["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    // i = 0 and 15 are multiples of both 3 and 5.
    assert_eq!(seqs, vec![1, 16]);
    let (_, p) = h
        .get(
            "/api/events?kind=tool_call&outcome=denied&since=1h",
            Some(READER),
        )
        .await;
    assert_eq!(p["events"].as_array().unwrap().len(), 5);

    for (q, param) in [
        ("limit=5000", "\"limit\""),
        ("kind=tool-call", "\"kind\""),
        ("since=last-week", "\"since\""),
        ("colour=red", "\"colour\""),
        ("min_threat=severe", "\"min_threat\""),
    ] {
        let (s, body) = h.get(&format!("/api/events?{q}"), Some(READER)).await;
        assert_eq!(s, 400, "{q}");
        assert_eq!(body["error"]["code"], "bad_request");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(param), "{q}: {msg}");
    }

    let (s, e) = h
        .get(&format!("/api/events/{}", ids[3]), Some(READER))
        .await;
    assert_eq!(s, 200);
    assert_eq!(e["seq"], 4);
    assert_eq!(e["id"], ids[3].to_string());
    let (s, _) = h
        .get(
            &format!("/api/events/{}", harombe_core::EventId::new()),
            Some(READER),
        )
        .await;
    assert_eq!(s, 404);
    let (s, body) = h.get("/api/events/not-a-uuid", Some(READER)).await;
    assert_eq!(s, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("id"));
}

#[tokio::test]
async fn approvals_are_decided_once_audited_and_errors_are_distinct() {
    let h = start().await;
    let now = OffsetDateTime::now_utc();
    let a = h
        .approvals
        .create(request("fs.delete", now, now + time::Duration::minutes(5)))
        .await
        .unwrap();
    let b = h
        .approvals
        .create(request("net.post", now, now + time::Duration::minutes(5)))
        .await
        .unwrap();
    let old = h
        .approvals
        .create(request(
            "fs.read",
            now - time::Duration::minutes(10),
            now - time::Duration::minutes(1),
        ))
        .await
        .unwrap();

    let (s, list) = h.get("/api/approvals?state=pending", Some(READER)).await;
    assert_eq!(s, 200);
    let pending: BTreeSet<&str> = list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        pending,
        [a.id().to_string(), b.id().to_string()]
            .iter()
            .map(String::as_str)
            .collect()
    );
    let (s, body) = h.get("/api/approvals?state=maybe", Some(READER)).await;
    assert_eq!(s, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("state"));

    let (s, got) = h
        .post(
            &format!("/api/approvals/{}/approve", a.id()),
            ADMIN,
            Some(json!({"reason": "expected maintenance"})),
        )
        .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["state"], "approved");
    assert_eq!(got["decided_by"], "token:ops");
    assert_eq!(got["reason"], "expected maintenance");

    let (s, body) = h
        .post(&format!("/api/approvals/{}/deny", a.id()), ADMIN, None)
        .await;
    assert_eq!(s, 409);
    assert_eq!(body["error"]["code"], "already_decided");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approved by token:ops")
    );

    let (s, got) = h
        .post(&format!("/api/approvals/{}/deny", b.id()), ADMIN, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(got["state"], "denied");

    let (s, body) = h
        .post(&format!("/api/approvals/{}/approve", old.id()), ADMIN, None)
        .await;
    assert_eq!(s, 410, "{body}");
    assert_eq!(body["error"]["code"], "expired");

    let unknown = ApprovalId::new();
    let (s, body) = h
        .post(&format!("/api/approvals/{unknown}/approve"), ADMIN, None)
        .await;
    assert_eq!(s, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&unknown.to_string())
    );
    let (s, body) = h
        .post("/api/approvals/xyz/approve", ADMIN, Some(json!({"why": 1})))
        .await;
    assert_eq!(s, 400, "{body}");

    // Both decisions are in the audit log, with who decided.
    let page = h
        .store
        .query(
            &EventFilter {
                kind: Some(EventKind::Approval),
                ..EventFilter::default()
            },
            PageRequest::oldest(100),
        )
        .await
        .unwrap();
    // Refused attempts (twice, unknown, expired) are audited too, marked `refused`.
    let refused: Vec<&str> = page
        .events
        .iter()
        .filter(|e| harombe_core::is_refused_decision(&e.event))
        .map(|e| e.event.error.as_deref().unwrap_or(""))
        .collect();
    assert!(refused.iter().any(|e| e.contains("already")), "{refused:?}");
    assert!(
        refused.iter().any(|e| e.contains("no approval")),
        "{refused:?}"
    );
    assert!(refused.iter().any(|e| e.contains("expired")), "{refused:?}");
    let decided: Vec<(Outcome, String, String)> = page
        .events
        .iter()
        .filter(|e| !harombe_core::is_refused_decision(&e.event))
        .map(|e| {
            let d = e.event.details.as_ref().unwrap();
            (
                e.event.outcome,
                d["approval_id"].as_str().unwrap().to_owned(),
                d["decided_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        vec![
            (Outcome::Success, a.id().to_string(), "token:ops".into()),
            (Outcome::Denied, b.id().to_string(), "token:ops".into()),
        ]
    );
    let (s, got) = h
        .get(&format!("/api/approvals/{}", old.id()), Some(READER))
        .await;
    assert_eq!(s, 200);
    assert_eq!(got["state"], "expired");

    // The denial shows up as a HITL denial once the tail has read it.
    h.eventually("/api/metrics", |m| m["hitl_denials_24h"] == 1)
        .await;
}

#[tokio::test]
async fn metrics_trends_and_prometheus_follow_the_log() {
    let h = start().await;
    let (_, m) = h.get("/api/metrics", Some(READER)).await;
    assert_eq!(m["events_last_hour"], 0);
    assert_eq!(m["latency_p95_us_1h"], Value::Null);

    let mut events = Vec::new();
    for i in 0..10 {
        events.push(call(if i < 6 { "alpha" } else { "beta" }, "fs.read", 1_000));
    }
    let mut leak = call("alpha", "http.post", 3_000);
    leak.scores.insert("anomalous".into(), 1.0);
    leak.details = Some(json!({"findings": [
        {"in": "arguments", "pointer": "/body", "rule": "aws-access-key", "tags": ["secret"], "severity": "high"}
    ]}));
    events.push(leak);
    events.push(AuditEvent::new(
        OffsetDateTime::now_utc(),
        EventKind::EgressConnection,
        Outcome::Denied,
    ));
    for r in h.store.append_many(events).await {
        r.unwrap();
    }
    let m = h
        .eventually("/api/metrics", |m| m["events_last_hour"] == 12)
        .await;
    assert_eq!(m["events_last_24h"], 12);
    assert_eq!(m["tool_calls_24h"], 11);
    assert_eq!(m["active_agents_24h"], 2);
    assert_eq!(m["secrets_detected_24h"], 1);
    assert_eq!(m["anomalies_1h"], 1);
    assert_eq!(m["network_blocks_1h"], 1);
    assert_eq!(m["threat_levels_24h"]["low"], 11);
    let avg = m["latency_avg_us_1h"].as_f64().unwrap();
    assert!((avg - 13_000.0 / 11.0).abs() < 1e-6, "{avg}");

    let (s, t) = h.get("/api/trends?hours=3", Some(READER)).await;
    assert_eq!(s, 200);
    assert_eq!(t["hours"].as_array().unwrap().len(), 3);
    let events: u64 = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(events, 12);
    assert_eq!(
        t["denials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        1
    );
    let (s, body) = h.get("/api/trends?hours=0", Some(READER)).await;
    assert_eq!(s, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("hours"));

    let (_, agents) = h.get("/api/agents", Some(READER)).await;
    assert_eq!(agents["agents"][0]["agent"], "alpha");
    assert_eq!(agents["agents"][0]["events_24h"], 7);
    let (s, one) = h.get("/api/agents/beta", Some(READER)).await;
    assert_eq!((s, &one["events_24h"]), (200, &json!(4)));
    assert_eq!(h.get("/api/agents/gamma", Some(READER)).await.0, 404);

    let resp = h
        .http
        .get(format!("{}/metrics", h.base))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"));
    for line in [
        "harombe_gateway_latency_seconds_count 11",
        "harombe_decisions_total{decision=\"allow\"} 11",
        "harombe_findings_total{rule=\"aws-access-key\"} 1",
        "harombe_store_appends_in_flight 0",
        "harombe_approvals_pending 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let appends = text
        .lines()
        .find_map(|l| l.strip_prefix("harombe_store_append_seconds_count "))
        .unwrap();
    assert!(appends.parse::<u64>().unwrap() >= 1);
    assert_eq!(h.get("/metrics", None).await.0, 401);
}

/// docs/openapi.json documents exactly the routes the router serves.
#[tokio::test]
async fn openapi_document_matches_the_router() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented = BTreeSet::new();
    for (p, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&m.as_str()) {
                documented.insert((m.to_uppercase(), p.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(documented, served);

    // And the router really serves each of them (no fallback 404 / 405).
    let h = start().await;
    for r in ROUTES {
        let path = r
            .path
            .replace("{id}", &ApprovalId::new().to_string())
            .replace("{name}", "alpha");
        let path = if path == "/assets/{name}" {
            "/assets/app.css".into()
        } else {
            path
        };
        let req = match r.method {
            "GET" => h.http.get(format!("{}{path}", h.base)),
            _ => h.http.post(format!("{}{path}", h.base)),
        };
        let resp = req.bearer_auth(ADMIN).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_ne!(status, 405, "{} {path}", r.method);
        assert!(!body.contains("no route"), "{} {path}: {body}", r.method);
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(h: &Harness, token: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/ws", h.addr))
        .await
        .unwrap();
    ws.send(WsMessage::text(
        json!({"type": "auth", "token": token}).to_string(),
    ))
    .await
    .unwrap();
    ws
}

async fn next_json<S>(ws: &mut S) -> Option<Value>
where
    S: futures::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no WebSocket message within 10 s");
        match m {
            Some(Ok(WsMessage::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn next_event<S>(ws: &mut S) -> Option<Value>
where
    S: futures::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let v = next_json(ws).await?;
        if v["type"] == "event" {
            return Some(v);
        }
    }
}

#[tokio::test]
async fn websocket_sends_a_snapshot_then_live_events() {
    let h = start().await;
    let now = OffsetDateTime::now_utc();
    let pending = h
        .approvals
        .create(request("fs.delete", now, now + time::Duration::minutes(5)))
        .await
        .unwrap();
    let mut ws = ws_connect(&h, READER).await;
    let snap = next_json(&mut ws).await.unwrap();
    assert_eq!(snap["type"], "snapshot");
    assert!(snap["metrics"]["events_last_hour"].is_u64());
    assert_eq!(snap["trend"]["hours"].as_array().unwrap().len(), 24);
    assert_eq!(snap["approvals"][0]["id"], pending.id().to_string());

    let e = call("alpha", "fs.read", 500);
    let id = e.id.to_string();
    h.store.append(e).await.unwrap();
    h.notify.notify_one();
    let got = next_event(&mut ws).await.unwrap();
    assert_eq!(got["event"]["id"], id);
    assert_eq!(got["event"]["kind"], "tool_call");
    // A fresh snapshot follows the change.
    loop {
        let m = next_json(&mut ws).await.unwrap();
        if m["type"] == "snapshot" && m["metrics"]["tool_calls_24h"] == 1 {
            break;
        }
    }

    // The header form works too.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/api/ws", h.addr),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    let (mut ws2, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(next_json(&mut ws2).await.unwrap()["type"], "snapshot");

    // A wrong token gets an error and a close, and is audited.
    let mut bad = ws_connect(&h, "hrb_read_nope").await;
    let err = next_json(&mut bad).await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["code"], "unauthorized");
    assert!(next_json(&mut bad).await.is_none());
    assert!(
        h.auth_events()
            .await
            .iter()
            .any(|e| e["target"] == "/api/ws" && e["outcome"] == "failure")
    );
}

/// A client that stops reading is dropped once its socket takes no frame for the send
/// timeout; the others keep receiving every event.
#[tokio::test]
async fn a_client_that_never_reads_is_dropped_without_slowing_others() {
    let h = start_with(|s| s.with_send_timeout(Duration::from_secs(1))).await;
    let mut good = ws_connect(&h, READER).await;
    assert_eq!(next_json(&mut good).await.unwrap()["type"], "snapshot");

    // The stalled client has a tiny receive buffer, so the server's writes block soon.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(h.addr).await.unwrap();
    let (mut stalled, _) =
        tokio_tungstenite::client_async(format!("ws://{}/api/ws", h.addr), stream)
            .await
            .unwrap();
    stalled
        .send(WsMessage::text(
            json!({"type": "auth", "token": READER}).to_string(),
        ))
        .await
        .unwrap();
    let gauge = |n: i64| {
        move |v: &Value| {
            v.as_str()
                .is_some_and(|t| t.lines().any(|l| l == format!("harombe_live_clients {n}")))
        }
    };
    h.eventually("/metrics", gauge(2)).await;

    // 400 events of ~32 KiB: far more than the socket buffers and the queue hold.
    let pad = "x".repeat(32 * 1024);
    let mut last = String::new();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while let Some(v) = next_event(&mut good).await {
            n += 1;
            if n == 400 {
                // Hand the socket back: the client stays connected.
                return (v["event"]["id"].as_str().unwrap().to_owned(), good);
            }
        }
        panic!("the reading client was dropped after {n} events");
    });
    for batch in 0..8 {
        let events: Vec<AuditEvent> = (0..50)
            .map(|i| {
                let mut e = call("alpha", "fs.read", 100);
                e.arguments = Some(json!({"pad": pad, "i": batch * 50 + i}));
                e
            })
            .collect();
        last = events.last().unwrap().id.to_string();
        for r in h.store.append_many(events).await {
            r.unwrap();
        }
        h.notify.notify_one();
    }
    let (last_seen, _good) = reader.await.unwrap();
    assert_eq!(last_seen, last);
    h.eventually("/metrics", gauge(1)).await;

    // The stalled client finds its stream closed before all 400 events.
    let mut got = 0;
    while let Some(v) = next_json(&mut stalled).await {
        if v["type"] == "event" {
            got += 1;
        }
    }
    assert!(got < 400, "the stalled client got all {got} events");
}
