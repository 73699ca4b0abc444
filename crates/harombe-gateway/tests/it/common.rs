#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use harombe_core::fake::MemoryAuditStore;
use harombe_core::{AgentId, AuditEvent, EventKind, SystemClock};
use harombe_gateway::{
    AgentRegistry, GatewayConfig, GatewayDeps, GatewayError, MemoryAgentRegistry, UpstreamConfig,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A peer's path from the environment (written by scripts/setup/*.sh into
/// $HAROMBE_PEERS/env.d/). Missing peers fail the test: they are not optional.
pub fn peer(var: &str) -> String {
    if let Ok(v) = std::env::var(var) {
        return v;
    }
    let peers = std::env::var("HAROMBE_PEERS")
        .unwrap_or_else(|_| format!("{}/../../target/peers", env!("CARGO_MANIFEST_DIR")));
    if let Ok(dir) = std::fs::read_dir(format!("{peers}/env.d")) {
        for f in dir.flatten() {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix(&format!("export {var}=")) {
                    let v = rest.trim_matches('"').to_owned();
                    if std::path::Path::new(&v).exists() {
                        return v;
                    }
                }
            }
        }
    }
    panic!(
        "peer {var} is missing: run scripts/test.sh (or scripts/setup/10-python.sh and \
         scripts/setup/40-mcp.sh with HAROMBE_PEERS set) to install the MCP peers"
    );
}

pub fn everything_stdio() -> UpstreamConfig {
    UpstreamConfig::Stdio {
        command: peer("HAROMBE_NODE22"),
        args: vec![peer("HAROMBE_MCP_EVERYTHING"), "stdio".into()],
        env: BTreeMap::new(),
        cwd: None,
    }
}

/// server-everything in its streamable-HTTP mode on a free port, once it accepts
/// connections: the child (killed on drop) and its MCP URL.
pub async fn everything_http() -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(peer("HAROMBE_NODE22"))
        .arg(peer("HAROMBE_MCP_EVERYTHING"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, format!("http://127.0.0.1:{port}/mcp"))
}

/// The small stdio MCP server in `fake_upstream.py`.
pub fn fake() -> UpstreamConfig {
    UpstreamConfig::Stdio {
        command: "python3".into(),
        args: vec![format!(
            "{}/tests/it/fake_upstream.py",
            env!("CARGO_MANIFEST_DIR")
        )],
        env: BTreeMap::new(),
        cwd: None,
    }
}

pub fn config_with(upstreams: Vec<(&str, UpstreamConfig)>) -> GatewayConfig {
    let mut c = GatewayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..GatewayConfig::default()
    };
    c.limits.call_timeout = Duration::from_secs(20);
    c.limits.drain_timeout = Duration::from_secs(5);
    for (n, u) in upstreams {
        c.upstreams.insert(n.to_owned(), u);
    }
    c
}

pub struct Gw {
    pub url: String,
    pub store: Arc<MemoryAuditStore>,
    pub agents: Arc<MemoryAgentRegistry>,
    pub token: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), GatewayError>>,
}

impl Gw {
    pub fn events(&self) -> Vec<AuditEvent> {
        self.store.events()
    }

    pub fn events_of(&self, kind: EventKind) -> Vec<AuditEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, &self.token)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        assert!(
            matches!(r, Ok(Ok(Ok(())))),
            "gateway did not stop cleanly: {r:?}"
        );
    }
}

pub async fn start(config: GatewayConfig) -> Gw {
    start_with(config, |d| d).await
}

pub async fn start_with(config: GatewayConfig, f: impl FnOnce(GatewayDeps) -> GatewayDeps) -> Gw {
    let store = Arc::new(MemoryAuditStore::new());
    let agents = Arc::new(MemoryAgentRegistry::new());
    let token = agents.add(&AgentId::new("bot").unwrap()).unwrap();
    let deps = f(GatewayDeps::new(
        store.clone(),
        Arc::new(SystemClock),
        agents.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let path = config.path.clone();
    let task = tokio::spawn(harombe_gateway::serve_with_listener(
        listener,
        config,
        deps,
        shutdown.clone(),
    ));
    Gw {
        url: format!("http://{addr}{path}"),
        store,
        agents,
        token: token.expose().clone(),
        shutdown,
        task,
    }
}

/// A small streamable-HTTP MCP client.
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
    pub session: Option<String>,
    next: u64,
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    /// Every JSON-RPC message in the answer (one for JSON, all events for SSE).
    pub messages: Vec<Value>,
    pub text: String,
}

impl Reply {
    pub fn last(&self) -> &Value {
        self.messages.last().unwrap_or(&Value::Null)
    }
    pub fn code(&self) -> i64 {
        self.last()["error"]["code"].as_i64().unwrap_or(0)
    }
}

impl Client {
    pub fn new(url: &str, token: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            token: token.to_owned(),
            session: None,
            next: 1,
        }
    }

    pub async fn post(&self, body: impl Into<reqwest::Body>, sse: bool) -> Reply {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(
                "accept",
                if sse {
                    "application/json, text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(body);
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.send().await.expect("request");
        read_reply(resp).await
    }

    pub async fn initialize(&mut self) -> Value {
        let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}});
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .json(&body)
            .send()
            .await
            .unwrap();
        self.session = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(self.session.is_some(), "no session id");
        let r = read_reply(resp).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let n = self
            .post(
                json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string(),
                false,
            )
            .await;
        assert_eq!(n.status, 202);
        r.last().clone()
    }

    pub async fn rpc(&mut self, method: &str, params: Value) -> Reply {
        self.next += 1;
        let body = json!({"jsonrpc":"2.0","id":self.next,"method":method,"params":params});
        self.post(body.to_string(), false).await
    }

    pub async fn call(&mut self, tool: &str, args: Value) -> Reply {
        self.rpc("tools/call", json!({"name": tool, "arguments": args}))
            .await
    }
}

pub async fn read_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap_or_default();
    let messages = if content_type.starts_with("text/event-stream") {
        text.split("\n\n")
            .filter_map(|ev| {
                let data: Vec<&str> = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).unwrap())
            })
            .collect()
    } else if text.is_empty() {
        vec![]
    } else {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(a)) => a,
            Ok(v) => vec![v],
            Err(_) => vec![],
        }
    };
    Reply {
        status,
        content_type,
        messages,
        text,
    }
}

/// Waits until `f` holds over the audit log (events are appended before answers, so
/// this is only needed for events of things that are not answered, like notifications).
pub async fn eventually(gw: &Gw, f: impl Fn(&[AuditEvent]) -> bool) {
    for _ in 0..100 {
        if f(&gw.events()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition on the audit log never held: {:#?}", gw.events());
}
