//! Real clients: `wrap` over stdio (in-memory pipes, then the Python MCP SDK through a
//! TCP bridge), and the Python SDK over streamable HTTP.

use std::sync::Arc;
use std::time::Duration;

use harombe_core::fake::MemoryAuditStore;
use harombe_core::{AgentId, EventKind, Outcome, SystemClock};
use harombe_gateway::{GatewayDeps, MemoryAgentRegistry};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::{config_with, everything_stdio, peer, start};

fn wrap_command() -> Vec<String> {
    vec![
        peer("HAROMBE_NODE22"),
        peer("HAROMBE_MCP_EVERYTHING"),
        "stdio".into(),
    ]
}

fn deps(store: &Arc<MemoryAuditStore>) -> GatewayDeps {
    GatewayDeps::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(MemoryAgentRegistry::new()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrap_over_pipes() {
    let store = Arc::new(MemoryAuditStore::new());
    let (client_w, wrap_r) = tokio::io::duplex(1 << 16);
    let (wrap_w, client_r) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(harombe_gateway::wrap(
        config_with(vec![]),
        deps(&store),
        AgentId::new("cli-bot").unwrap(),
        wrap_command(),
        wrap_r,
        wrap_w,
    ));
    let mut w = client_w;
    let mut lines = BufReader::new(client_r).lines();
    let mut send = async |v: Value| {
        w.write_all(format!("{v}\n").as_bytes()).await.unwrap();
    };
    send(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await;
    send(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})).await;
    send(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"piped"}}})).await;
    send(json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":"x"}}})).await;
    w.write_all(b"{not json\n").await.unwrap();
    let mut got = std::collections::BTreeMap::new();
    let mut parse_error = false;
    while got.len() < 4 || !parse_error {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("wrap answered in time")
            .unwrap()
            .expect("a line");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["id"].is_i64() {
            got.insert(v["id"].as_i64().unwrap(), v);
        } else if v["error"]["code"] == -32700 {
            parse_error = true;
        }
    }
    assert_eq!(
        got[&1]["result"]["serverInfo"]["name"],
        "mcp-servers/everything"
    );
    assert!(got[&2]["result"]["tools"].as_array().unwrap().len() > 5);
    assert!(
        got[&3]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("piped")
    );
    assert_eq!(got[&4]["error"]["code"], -32602);
    drop(w);
    let code = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
    let calls: Vec<_> = store
        .events()
        .into_iter()
        .filter(|e| e.kind == EventKind::ToolCall)
        .collect();
    assert_eq!(calls.len(), 2);
    // Calls run concurrently: find them by tool.
    let by = |t: &str| {
        calls
            .iter()
            .find(|e| e.target.as_deref() == Some(t))
            .unwrap()
    };
    assert_eq!(by("echo").agent.as_ref().unwrap().as_str(), "cli-bot");
    assert_eq!(by("echo").outcome, Outcome::Success);
    assert_eq!(by("get-sum").outcome, Outcome::Denied);
}

fn python_client(args: &[&str]) -> Value {
    let py = peer("HAROMBE_PYTHON");
    let script = format!("{}/tests/it/py_client.py", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(py)
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python client failed (is the `mcp` package installed? run scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_stdio_wrap() {
    let store = Arc::new(MemoryAuditStore::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let d = deps(&store);
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, w) = sock.into_split();
        harombe_gateway::wrap(
            config_with(vec![]),
            d,
            AgentId::new("py").unwrap(),
            wrap_command(),
            r,
            w,
        )
        .await
    });
    let bridge = format!("{}/tests/it/bridge.py", env!("CARGO_MANIFEST_DIR"));
    let port_s = port.to_string();
    let out = tokio::task::spawn_blocking(move || python_client(&["stdio", &bridge, &port_s]))
        .await
        .unwrap();
    assert!(
        out["tools"].as_array().unwrap().iter().any(|t| t == "echo"),
        "{out}"
    );
    assert!(
        out["text"].as_str().unwrap().contains("from python"),
        "{out}"
    );
    let code = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
    assert!(store.events().iter().any(|e| e.kind == EventKind::ToolCall
        && e.agent.as_ref().is_some_and(|a| a.as_str() == "py")
        && e.outcome == Outcome::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http() {
    let gw = start(config_with(vec![("everything", everything_stdio())])).await;
    let (url, token) = (gw.url.clone(), gw.token.clone());
    let out = tokio::task::spawn_blocking(move || python_client(&["http", &url, &token]))
        .await
        .unwrap();
    assert!(
        out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "get-sum"),
        "{out}"
    );
    assert!(
        out["text"].as_str().unwrap().contains("from python"),
        "{out}"
    );
    let calls = gw.events_of(EventKind::ToolCall);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, Outcome::Success);
    assert_eq!(gw.events_of(EventKind::ToolsListed).len(), 1);
    gw.stop().await;
}

/// The scenarios the MCP conformance suite passes and fails against `url`.
async fn conformance(url: String) -> (Vec<String>, Vec<String>) {
    let out = tokio::process::Command::new(peer("HAROMBE_NODE22"))
        .arg(peer("HAROMBE_MCP_CONFORMANCE"))
        .args(["server", "--url", &url])
        .output()
        .await
        .expect("conformance suite runs (scripts/test.sh installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if std::env::var_os("HAROMBE_CONFORMANCE_LOG").is_some() {
        eprintln!("{text}");
    }
    let summary = text
        .split("=== SUMMARY ===")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary: {text}"));
    let (mut pass, mut fail) = (Vec::new(), Vec::new());
    for line in summary.lines() {
        let name = |l: &str| l.split(':').next().unwrap_or_default().trim().to_owned();
        if let Some(l) = line.strip_prefix("✓ ") {
            pass.push(name(l));
        } else if let Some(l) = line.strip_prefix("✗ ") {
            fail.push(name(l));
        }
    }
    assert!(!pass.is_empty(), "{text}");
    (pass, fail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_same_direct_and_through_the_gateway() {
    let (mut child, url) = crate::common::everything_http().await;
    let direct = conformance(url).await;

    let mut cfg = config_with(vec![("everything", everything_stdio())]);
    cfg.anonymous_agent = Some("conformance".into());
    let gw = start(cfg).await;
    let through = conformance(gw.url.clone()).await;
    // The gateway adds one thing the reference server lacks: it refuses foreign browser
    // origins, so the DNS-rebinding check passes through it whatever the server does.
    // Everything else must be exactly as direct.
    const GATEWAY_OWN: &str = "dns-rebinding-protection";
    assert!(
        through.0.iter().any(|s| s == GATEWAY_OWN),
        "the gateway must pass {GATEWAY_OWN}: {through:?}"
    );
    let without = |v: &Vec<String>| {
        v.iter()
            .filter(|s| *s != GATEWAY_OWN)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (without(&through.0), without(&through.1)),
        (without(&direct.0), without(&direct.1)),
        "(passed, failed) through the gateway vs direct"
    );
    assert!(!gw.events_of(EventKind::ToolCall).is_empty());
    gw.stop().await;
    let _ = child.kill().await;
}
