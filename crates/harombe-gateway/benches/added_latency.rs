//! End-to-end benchmark: the latency the gateway adds to one tools/call, against calling
//! the same upstream directly in the same run, with authn, policy, schema validation and
//! audit on. Prints p50/p99 at a paced 1,000 calls/s, the max sustained calls/s through
//! the gateway, and VmRSS with 1,000 open sessions.
//!
//! Run: `cargo bench -p harombe-gateway --bench added_latency`
//! (`HAROMBE_BENCH_QUICK=1` shortens it for smoke runs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use harombe_core::fake::MemoryAuditStore;
use harombe_core::{AgentId, SystemClock};
use harombe_gateway::{
    AgentPolicy, AgentRegistry, GatewayConfig, GatewayDeps, MemoryAgentRegistry, RateLimit,
    UpstreamConfig,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A minimal streamable-HTTP MCP server with one `echo` tool.
async fn upstream(h: HeaderMap, body: Bytes) -> Response {
    let _ = h;
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let Some(id) = v.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match v["method"].as_str().unwrap_or_default() {
        "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                               "serverInfo": {"name": "bench", "version": "0"}}),
        "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object",
            "properties": {"message": {"type": "string"}}, "required": ["message"]}}]}),
        "tools/call" => {
            json!({"content": [{"type": "text", "text": v["params"]["arguments"]["message"]}]})
        }
        _ => json!({}),
    };
    let mut r = axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
    r.headers_mut()
        .insert("mcp-session-id", "bench-session".parse().unwrap());
    r
}

struct Target {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    session: Option<String>,
    next: AtomicU64,
}

impl Target {
    async fn send(&self, body: String) -> reqwest::Response {
        let mut r = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        r.send().await.expect("request")
    }

    async fn init(&mut self) {
        let resp = self
            .send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}).to_string())
            .await;
        self.session = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let _ = resp.bytes().await;
    }

    async fn call(&self) -> Duration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"message":"bench payload 0123456789"}}}).to_string();
        let t = Instant::now();
        let resp = self.send(body).await;
        let bytes = resp.bytes().await.unwrap();
        let e = t.elapsed();
        assert!(
            bytes.windows(6).any(|w| w == b"result"),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        e
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn paced(t: &Target, n: usize, rate: f64) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        out.push(t.call().await);
    }
    out.sort();
    out
}

async fn max_rate(t: Arc<Target>, concurrency: usize, dur: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + dur;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let t = t.clone();
            let done = done.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    t.call().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / dur.as_secs_f64()
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let quick = std::env::var_os("HAROMBE_BENCH_QUICK").is_some();
    let n = if quick { 300 } else { 5_000 };
    let sustain = Duration::from_secs(if quick { 1 } else { 5 });

    let up_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up_listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(up_listener, Router::new().route("/mcp", post(upstream)))
            .await
            .unwrap();
    });

    let mut config = GatewayConfig::default();
    config.upstreams.insert(
        "bench".into(),
        UpstreamConfig::Http {
            url: format!("http://{up_addr}/mcp"),
            timeout: Duration::from_secs(10),
        },
    );
    config.policy.agents.insert(
        "bench".into(),
        AgentPolicy {
            allow: vec!["echo".into(), "bench__*".into()],
            deny: vec!["*delete*".into()],
            rate_limit: Some(RateLimit {
                per_second: 1e9,
                burst: 1_000_000_000,
            }),
            ..AgentPolicy::default()
        },
    );
    let store = Arc::new(MemoryAuditStore::new());
    let agents = Arc::new(MemoryAgentRegistry::new());
    let token = agents.add(&AgentId::new("bench").unwrap()).unwrap();
    let deps = GatewayDeps::new(store.clone(), Arc::new(SystemClock), agents);
    let gw_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw_addr = gw_listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let gw = tokio::spawn(harombe_gateway::serve_with_listener(
        gw_listener,
        config,
        deps,
        shutdown.clone(),
    ));

    let mut direct = Target {
        http: reqwest::Client::new(),
        url: format!("http://{up_addr}/mcp"),
        token: None,
        session: None,
        next: AtomicU64::new(1),
    };
    direct.init().await;
    let mut via = Target {
        http: reqwest::Client::new(),
        url: format!("http://{gw_addr}/mcp"),
        token: Some(token.expose().clone()),
        session: None,
        next: AtomicU64::new(1),
    };
    via.init().await;
    // Warm up (and wait for the catalogue).
    for _ in 0..200 {
        direct.call().await;
        via.call().await;
    }

    let d = paced(&direct, n, 1000.0).await;
    let g = paced(&via, n, 1000.0).await;
    let us = |x: Duration| x.as_secs_f64() * 1e6;
    println!("tools/call latency at a paced 1,000 calls/s, {n} calls each:");
    println!(
        "  direct   p50 {:8.1} us   p99 {:8.1} us",
        us(pct(&d, 0.5)),
        us(pct(&d, 0.99))
    );
    println!(
        "  gateway  p50 {:8.1} us   p99 {:8.1} us",
        us(pct(&g, 0.5)),
        us(pct(&g, 0.99))
    );
    println!(
        "  added    p50 {:8.1} us   p99 {:8.1} us   (targets: p50 <= 300 us, p99 <= 2000 us)",
        us(pct(&g, 0.5)) - us(pct(&d, 0.5)),
        us(pct(&g, 0.99)) - us(pct(&d, 0.99))
    );

    let via = Arc::new(via);
    let direct = Arc::new(direct);
    let rd = max_rate(direct, 64, sustain).await;
    let rg = max_rate(via, 64, sustain).await;
    println!("max sustained tools/call, 64 concurrent clients, {sustain:?}:");
    println!("  direct {rd:9.0} calls/s");
    println!("  gateway {rg:8.0} calls/s   (target >= 10,000)");
    println!("  audit events written: {}", store.events().len());

    let before = vm_rss_kib();
    let mut sessions = Vec::new();
    // One HTTP client (one connection pool) for all the sessions: the figure is about the
    // gateway's per-session state, not 1,000 client stacks.
    let shared_http = reqwest::Client::new();
    for _ in 0..1000 {
        let mut t = Target {
            http: shared_http.clone(),
            url: format!("http://{gw_addr}/mcp"),
            token: Some(token.expose().clone()),
            session: None,
            next: AtomicU64::new(1),
        };
        t.init().await;
        t.call().await;
        sessions.push(t);
    }
    let after = vm_rss_kib();
    println!(
        "VmRSS with 1,000 open sessions: {:.1} MiB (process total, gateway + upstream + clients + {} audit events in memory; +{:.1} MiB for the sessions)   (target <= 150 MB)",
        after as f64 / 1024.0,
        store.events().len(),
        (after.saturating_sub(before)) as f64 / 1024.0
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), gw).await;
}
