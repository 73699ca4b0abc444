//! Human-in-the-loop through the real binary: an agent's call to a risky tool is held by
//! `harombe serve`, shows up in the approvals queue, and a human approves or denies it from
//! the CLI or the REST API; the agent's call then completes or fails. With PostgreSQL, two
//! replicas share the queue: approve on one, the call held on the other proceeds.
//!
//! The upstream is harombe's own demo MCP server (`harombe demo-upstream`), so these tests
//! need no peer besides PostgreSQL.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ADMIN, READER, add_agent, config, free_port, harombe, start, up};
use serde_json::{Value, json};

/// A minimal streamable-HTTP MCP client (blocking; one request per call).
struct Agent {
    http: reqwest::blocking::Client,
    url: String,
    token: String,
    session: Option<String>,
}

impl Agent {
    fn connect(port: u16, token: &str) -> Agent {
        let mut a = Agent {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            url: format!("http://127.0.0.1:{port}/mcp"),
            token: token.to_owned(),
            session: None,
        };
        let r = a.post(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}));
        assert!(r["result"]["serverInfo"].is_object(), "{r}");
        a.post(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        a
    }

    fn post(&mut self, body: &Value) -> Value {
        let mut req = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(s) = &self.session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-06-18");
        }
        let resp = req.send().unwrap();
        if let Some(s) = resp.headers().get("mcp-session-id") {
            self.session = Some(s.to_str().unwrap().to_owned());
        }
        let sse = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
        let text = resp.text().unwrap();
        if text.is_empty() {
            return Value::Null;
        }
        if sse {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .rfind(|v| v.get("id").is_some())
                .unwrap_or(Value::Null)
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    fn call(&mut self, tool: &str, args: Value) -> Value {
        self.post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
            "params":{"name": tool, "arguments": args}}))
    }
}

/// Calls `tool` on a thread (it will be held) and returns its handle.
fn call_in_background(
    port: u16,
    token: &str,
    tool: &'static str,
    args: Value,
) -> std::thread::JoinHandle<Value> {
    let token = token.to_owned();
    std::thread::spawn(move || Agent::connect(port, &token).call(tool, args))
}

fn api(port: u16, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut req = match method {
        "POST" => c.post(url),
        _ => c.get(url),
    }
    .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Waits until exactly one pending approval for `tool` shows up (CLI) and returns its id.
fn pending_id(data: &Path, config: &Path, tool: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let out = harombe(data, config)
            .args(["approvals", "list", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let list: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|a: &Value| a["tool"] == tool)
            .collect();
        if let Some(a) = list.first() {
            assert_eq!(a["state"], "pending");
            return a["id"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no pending approval for {tool}");
}

fn audit_events(data: &Path, config: &Path, kind: &str) -> Vec<Value> {
    let out = harombe(data, config)
        .args([
            "audit", "query", "--kind", kind, "--format", "json", "--limit", "1000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    page["events"].as_array().unwrap().clone()
}

#[test]
fn a_held_call_is_approved_from_the_cli_and_denied_over_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (gw, cp) = (free_port(), free_port());
    let cfg = config(dir.path(), gw, cp, 120, "backend = \"sqlite\"");
    let token = add_agent(&data, &cfg, "ops-bot");
    let server = start(&data, &cfg, gw, cp);

    // An ordinary call is allowed without a human.
    let mut agent = Agent::connect(server.gateway, &token);
    let r = agent.call("read_file", json!({"path": "README.md"}));
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("README.md"),
        "{r}"
    );

    // A risky call waits; the CLI approves it; the agent gets the upstream's answer.
    let held = call_in_background(
        server.gateway,
        &token,
        "delete_records",
        json!({"table": "sessions"}),
    );
    let id = pending_id(&data, &cfg, "delete_records");
    let out = harombe(&data, &cfg)
        .args(["approvals", "approve", &id, "--reason", "cleanup ticket 42"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = held.join().unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"], "deleted 17 rows from sessions",
        "{r}"
    );

    // Deciding again is refused and says who decided.
    let out = harombe(&data, &cfg)
        .args(["approvals", "deny", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already approved by cli:"), "{err}");

    // Over REST: a read-only token may list but not decide; the admin denies.
    let held = call_in_background(
        server.gateway,
        &token,
        "run_command",
        json!({"command": "rm -rf /tmp/cache"}),
    );
    let id2 = pending_id(&data, &cfg, "run_command");
    let (status, list) = api(cp, "GET", "/api/approvals?state=pending", READER, None);
    assert_eq!(status, 200, "{list}");
    assert!(list.to_string().contains(&id2), "{list}");
    let (status, body) = api(
        cp,
        "POST",
        &format!("/api/approvals/{id2}/approve"),
        READER,
        Some(json!({})),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = api(
        cp,
        "POST",
        &format!("/api/approvals/{id2}/deny"),
        ADMIN,
        Some(json!({"reason": "not during business hours"})),
    );
    assert_eq!(status, 200, "{body}");
    let r = held.join().unwrap();
    assert_eq!(r["error"]["code"], -32001, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("denied by token:ops"), "{msg}");
    assert!(msg.contains("not during business hours"), "{msg}");
    // Unknown ids are 404.
    let (status, _) = api(
        cp,
        "POST",
        "/api/approvals/01900000-0000-7000-8000-000000000000/approve",
        ADMIN,
        Some(json!({})),
    );
    assert_eq!(status, 404);

    // The audit log has who decided, when and why, and the calls' outcomes.
    let approvals = audit_events(&data, &cfg, "approval");
    let decided: Vec<&Value> = approvals
        .iter()
        .filter(|e| e["details"]["state"] != "pending")
        .collect();
    assert_eq!(decided.len(), 4, "{approvals:?}");
    // The refused second decision and the unknown id are audited as refused attempts.
    let refused: Vec<&&Value> = decided
        .iter()
        .filter(|e| e["details"]["refused"] == true)
        .collect();
    assert_eq!(refused.len(), 2, "{approvals:?}");
    let errors: Vec<&str> = refused
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("already approved")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("no approval with id")),
        "{errors:?}"
    );
    let decided: Vec<&Value> = decided
        .into_iter()
        .filter(|e| e["details"]["refused"] != true)
        .collect();
    assert_eq!(decided.len(), 2, "{approvals:?}");
    assert!(decided.iter().any(|e| {
        e["details"]["state"] == "approved"
            && e["details"]["decided_by"]
                .as_str()
                .unwrap()
                .starts_with("cli:")
            && e["details"]["reason"] == "cleanup ticket 42"
    }));
    assert!(decided.iter().any(|e| e["details"]["state"] == "denied"
        && e["details"]["decided_by"] == "token:ops"));
    let calls = audit_events(&data, &cfg, "tool_call");
    let outcome = |tool: &str| {
        calls
            .iter()
            .find(|e| e["target"] == tool)
            .map(|e| e["outcome"].clone())
    };
    assert_eq!(outcome("delete_records"), Some(json!("success")));
    assert_eq!(outcome("run_command"), Some(json!("denied")));
    assert_eq!(outcome("read_file"), Some(json!("success")));
    // Every tool call records the decision engine's rule, risk and trust.
    assert!(
        calls
            .iter()
            .all(|e| e["details"]["decision"]["hitl"].is_object())
    );
    drop(server);
}

#[test]
fn an_unanswered_call_expires_and_cannot_be_approved_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (gw, cp) = (free_port(), free_port());
    let cfg = config(dir.path(), gw, cp, 2, "backend = \"sqlite\"");
    let token = add_agent(&data, &cfg, "night-bot");
    let server = start(&data, &cfg, gw, cp);
    let held = call_in_background(
        server.gateway,
        &token,
        "write_file",
        json!({"path": "a.txt", "content": "x"}),
    );
    let id = pending_id(&data, &cfg, "write_file");
    let r = held.join().unwrap();
    assert_eq!(r["error"]["code"], -32001, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("expired"),
        "{r}"
    );
    let out = harombe(&data, &cfg)
        .args(["approvals", "approve", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expired"), "{err}");
    let (status, body) = api(
        cp,
        "POST",
        &format!("/api/approvals/{id}/approve"),
        ADMIN,
        Some(json!({})),
    );
    assert_eq!(status, 410, "{body}");
    drop(server);
}

#[test]
fn two_replicas_on_postgresql_share_the_approvals_queue() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(harombe_testkit::TestDb::new());
    let dir = tempfile::tempdir().unwrap();
    // Replicas share the database and the agent registry (one data directory).
    let data = dir.path().join("data");
    let store = "backend = \"postgres\"\nurl = \"env:HAROMBE_TEST_STORE_URL\"";
    let (gw_a, cp_a, gw_b, cp_b) = (free_port(), free_port(), free_port(), free_port());
    let cfg_a = config(dir.path(), gw_a, cp_a, 120, store);
    let cfg_b = config(dir.path(), gw_b, cp_b, 120, store);
    let with_url = |mut c: Command| {
        c.env("HAROMBE_TEST_STORE_URL", &db.url);
        c
    };
    let out = with_url(harombe(&data, &cfg_a))
        .args(["agents", "add", "replica-bot"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let spawn = |cfg: &Path, gw: u16, cp: u16| up(with_url(harombe(&data, cfg)), gw, cp);
    let a = spawn(&cfg_a, gw_a, cp_a);
    let b = spawn(&cfg_b, gw_b, cp_b);

    // Held on replica A ...
    let held = call_in_background(
        a.gateway,
        &token,
        "delete_records",
        json!({"table": "carts"}),
    );
    // ... visible and approved on replica B.
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let (status, list) = api(
            b.control,
            "GET",
            "/api/approvals?state=pending",
            ADMIN,
            None,
        );
        assert_eq!(status, 200, "{list}");
        if let Some(x) = list["approvals"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["tool"] == "delete_records"))
        {
            break x["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the approval never reached B");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, body) = api(
        b.control,
        "POST",
        &format!("/api/approvals/{id}/approve"),
        ADMIN,
        Some(json!({"reason": "approved on B"})),
    );
    assert_eq!(status, 200, "{body}");
    let r = held.join().unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"], "deleted 17 rows from carts",
        "{r}"
    );
    drop(a);
    drop(b);
}
