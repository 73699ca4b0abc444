//! End-to-end benchmark: the latency the gateway adds to one tools/call, against calling
//! the same upstream directly in the same run, with authn, policy, schema validation and
//! durable audit (a SQLite audit store in a temporary directory, opened as `harombe serve`
//! opens it) on. Prints p50/p99 at a paced 1,000 calls/s, the max sustained calls/s
//! (direct and through the gateway, alternating), the gateway's own CPU time per call
//! with the capacity it implies on 2 cores, and VmRSS with 1,000 open sessions.
//!
//! The client, the gateway (with its audit writer) and the upstream each run on their own
//! tokio runtime with named threads, so the CPU time of each part is read per thread from
//! `/proc/self/task/<tid>/schedstat` even though all three share the machine's cores.
//!
//! Run: `cargo bench -p harombe-gateway --bench added_latency`
//! (`HAROMBE_BENCH_QUICK=1` shortens it for smoke runs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use harombe_core::{AgentId, AuditStore, SystemClock};
use harombe_gateway::{
    AgentPolicy, AgentRegistry, GatewayConfig, GatewayDeps, MemoryAgentRegistry, RateLimit,
    UpstreamConfig,
};
use harombe_store::{Location, StoreOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Thread-name prefixes of the three runtimes.
const GW: &str = "bench-gw";
const UP: &str = "bench-up";
const CL: &str = "bench-cl";
/// The gateway runtime's blocking threads and the audit store's writer and checkpointer
/// threads: the SQLite audit commits.
const GW_BLOCKING: &str = "gw-blocking";

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

/// CPU time (ns) used so far by this process's threads, by thread-name prefix
/// (`bench-gw`, `bench-up`, `bench-cl`, and `other` for the rest, e.g. the main thread),
/// plus `GW_BLOCKING` for the audit threads alone (see there).
fn cpu_by_part() -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        // The audit store's writer and checkpointer threads serve the gateway only.
        let audit = comm.starts_with("harombe-audit");
        let part = [GW, UP, CL]
            .into_iter()
            .find(|n| comm.starts_with(n))
            .unwrap_or(if audit { GW } else { "other" });
        *out.entry(part).or_default() += ns;
        if audit || comm.trim_end() == format!("{GW}-b") {
            *out.entry(GW_BLOCKING).or_default() += ns;
        }
    }
    out
}

/// CPU ns per part between two readings.
fn cpu_delta(
    a: &BTreeMap<&'static str, u64>,
    b: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    b.iter()
        .map(|(k, v)| (*k, v.saturating_sub(a.get(k).copied().unwrap_or(0))))
        .collect()
}

async fn paced(t: &Target, n: usize, rate: f64, out: &mut Vec<Duration>) {
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        out.push(t.call().await);
    }
}

async fn max_rate(t: Arc<Target>, concurrency: usize, dur: Duration) -> u64 {
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
    done.load(Ordering::Relaxed)
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn runtime(name: &'static str, workers: usize) -> tokio::runtime::Runtime {
    // The first `workers` threads a runtime starts are its workers; later ones belong to
    // its blocking pool (for the gateway: the SQLite audit commits). Their names differ
    // by suffix so the two are reported apart.
    let started = AtomicU64::new(0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name_fn(move || {
            let n = started.fetch_add(1, Ordering::Relaxed);
            let kind = if n < workers as u64 { "w" } else { "b" };
            format!("{name}-{kind}")
        })
        // Blocking threads (the audit store's commits) must not exit between two CPU
        // readings, or their time would be lost.
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .unwrap()
}

struct Gateway {
    addr: std::net::SocketAddr,
    token: String,
    store: Arc<dyn AuditStore>,
    shutdown: CancellationToken,
    handle: tokio::runtime::Handle,
}

async fn start_gateway(up_addr: std::net::SocketAddr, dir: &std::path::Path) -> Gateway {
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
    // Durable audit, as `harombe serve` opens it (default store options).
    let stores = harombe_store::open_stores(
        &Location::Sqlite(dir.join("audit.db")),
        StoreOptions::default(),
    )
    .await
    .expect("open the SQLite audit store");
    let store = stores.audit;
    let agents = Arc::new(MemoryAgentRegistry::new());
    let token = agents.add(&AgentId::new("bench").unwrap()).unwrap();
    let deps = GatewayDeps::new(store.clone(), Arc::new(SystemClock), agents);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(harombe_gateway::serve_with_listener(
        listener,
        config,
        deps,
        shutdown.clone(),
    ));
    Gateway {
        addr,
        token: token.expose().clone(),
        store,
        shutdown,
        handle: tokio::runtime::Handle::current(),
    }
}

fn main() {
    let up_rt = runtime(UP, 2);
    let gw_rt = runtime(GW, 2);
    let cl_rt = runtime(CL, 2);
    let up_addr = up_rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(l, Router::new().route("/mcp", post(upstream)))
                .await
                .unwrap();
        });
        addr
    });
    let dir = tempfile::tempdir().unwrap();
    let gw = gw_rt.block_on(gw_rt.spawn({
        let dir = dir.path().to_owned();
        async move { start_gateway(up_addr, &dir).await }
    }));
    let gw = gw.unwrap();
    let cl = cl_rt.handle().clone();
    cl_rt.block_on(async move { cl.spawn(run(up_addr, gw)).await.unwrap() });
    drop(cl_rt);
    drop(gw_rt);
    drop(up_rt);
}

fn us(x: Duration) -> f64 {
    x.as_secs_f64() * 1e6
}

async fn run(up_addr: std::net::SocketAddr, gw: Gateway) {
    let quick = std::env::var_os("HAROMBE_BENCH_QUICK").is_some();
    let n = if quick { 300 } else { 5_000 };
    let sustain = Duration::from_secs(if quick { 1 } else { 5 });
    let rounds = if quick { 1 } else { 2 };

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
        url: format!("http://{}/mcp", gw.addr),
        token: Some(gw.token.clone()),
        session: None,
        next: AtomicU64::new(1),
    };
    via.init().await;
    // Warm up (and wait for the catalogue).
    for _ in 0..200 {
        direct.call().await;
        via.call().await;
    }

    // Paced latency, direct and gateway alternating in blocks of 250 calls so that both
    // see the same background load.
    let (mut d, mut g) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut gw_cpu_paced, mut gw_commit_paced) = (0u64, 0u64);
    let block = 250.min(n);
    for _ in 0..n.div_ceil(block) {
        paced(&direct, block, 1000.0, &mut d).await;
        let c0 = cpu_by_part();
        paced(&via, block, 1000.0, &mut g).await;
        let c = cpu_delta(&c0, &cpu_by_part());
        gw_cpu_paced += c.get(GW).copied().unwrap_or(0);
        gw_commit_paced += c.get(GW_BLOCKING).copied().unwrap_or(0);
    }
    d.sort();
    g.sort();
    let calls_paced = g.len();
    println!("tools/call latency at a paced 1,000 calls/s, {calls_paced} calls each:");
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
    println!(
        "  gateway CPU per call at this pace: {:.1} us (of which audit commits {:.1} us: one commit per call at this pace)",
        gw_cpu_paced as f64 / 1e3 / calls_paced as f64,
        gw_commit_paced as f64 / 1e3 / calls_paced as f64
    );

    let via = Arc::new(via);
    let direct = Arc::new(direct);
    println!(
        "max sustained tools/call, 64 concurrent clients, {sustain:?} per window, alternating:"
    );
    let (mut best_d, mut best_g, mut gw_ns, mut gw_calls) = (0f64, 0f64, 0u64, 0u64);
    let mut gw_blocking_ns = 0u64;
    for round in 1..=rounds {
        let c0 = cpu_by_part();
        let nd = max_rate(direct.clone(), 64, sustain).await;
        let c1 = cpu_by_part();
        let ng = max_rate(via.clone(), 64, sustain).await;
        let c2 = cpu_by_part();
        let (dd, dg) = (cpu_delta(&c0, &c1), cpu_delta(&c1, &c2));
        let per = |m: &BTreeMap<&str, u64>, k: &str, calls: u64| {
            m.get(k).copied().unwrap_or(0) as f64 / 1e3 / calls.max(1) as f64
        };
        let (rd, rg) = (
            nd as f64 / sustain.as_secs_f64(),
            ng as f64 / sustain.as_secs_f64(),
        );
        println!(
            "  round {round}: direct  {rd:8.0} calls/s   CPU per call: upstream {:6.1} us, client {:6.1} us",
            per(&dd, UP, nd),
            per(&dd, CL, nd)
        );
        println!(
            "  round {round}: gateway {rg:8.0} calls/s   CPU per call: gateway {:6.1} us (of which audit commits {:5.1} us), upstream {:6.1} us, client {:6.1} us, other {:6.1} us",
            per(&dg, GW, ng),
            per(&dg, GW_BLOCKING, ng),
            per(&dg, UP, ng),
            per(&dg, CL, ng),
            per(&dg, "other", ng)
        );
        best_d = best_d.max(rd);
        best_g = best_g.max(rg);
        gw_ns += dg.get(GW).copied().unwrap_or(0);
        gw_blocking_ns += dg.get(GW_BLOCKING).copied().unwrap_or(0);
        gw_calls += ng;
    }
    let gw_us = gw_ns as f64 / 1e3 / gw_calls.max(1) as f64;
    println!(
        "  best: direct {best_d:.0} calls/s, gateway {best_g:.0} calls/s end to end (target >= 10,000; client, gateway and upstream share the cores)"
    );
    println!(
        "  gateway CPU per call (with its audit writer): {gw_us:.1} us -> implied capacity on 2 cores: {:.0} calls/s",
        2e6 / gw_us
    );
    let commit_us = gw_blocking_ns as f64 / 1e3 / gw_calls.max(1) as f64;
    println!(
        "  of which SQLite audit commits (audit threads): {commit_us:.1} us; without them: {:.1} us -> {:.0} calls/s",
        gw_us - commit_us,
        2e6 / (gw_us - commit_us)
    );
    let store = gw.store.clone();
    let head = gw
        .handle
        .spawn(async move { store.head().await })
        .await
        .unwrap()
        .unwrap();
    println!(
        "  audit events in the SQLite store: {}",
        head.map_or(0, |h| h.seq)
    );

    let before = vm_rss_kib();
    let mut sessions = Vec::new();
    // One HTTP client (one connection pool) for all the sessions: the figure is about the
    // gateway's per-session state, not 1,000 client stacks.
    let shared_http = reqwest::Client::new();
    for _ in 0..1000 {
        let mut t = Target {
            http: shared_http.clone(),
            url: format!("http://{}/mcp", gw.addr),
            token: Some(gw.token.clone()),
            session: None,
            next: AtomicU64::new(1),
        };
        t.init().await;
        t.call().await;
        sessions.push(t);
    }
    let after = vm_rss_kib();
    println!(
        "VmRSS with 1,000 open sessions: {:.1} MiB (process total: gateway + upstream + clients + SQLite cache; +{:.1} MiB for the sessions)   (target <= 150 MB)",
        after as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / 1024.0
    );
    gw.shutdown.cancel();
    let store = gw.store.clone();
    let _ = gw.handle.spawn(async move { store.close().await }).await;
}
