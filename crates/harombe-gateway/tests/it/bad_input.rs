//! Bad input: each gets its specific error and an audit event, nothing panics, and other
//! sessions are unaffected.

use std::time::Duration;

use harombe_core::{EventKind, Outcome};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Client, Gw, config_with, fake, start};

async fn gateway() -> (Gw, Client, Client) {
    let mut cfg = config_with(vec![("fake", fake())]);
    cfg.limits.call_timeout = Duration::from_secs(2);
    let gw = start(cfg).await;
    let mut a = gw.client();
    a.initialize().await;
    let mut b = gw.client();
    b.initialize().await;
    (gw, a, b)
}

/// The bystander session still works and the refusal was audited with `code`.
async fn check(gw: &Gw, b: &mut Client, code: i64) {
    let r = b.call("ok", json!({})).await;
    assert_eq!(r.last()["result"]["content"][0]["text"], "ok", "{}", r.text);
    let found = gw.events().iter().any(|e| {
        e.details.as_ref().is_some_and(|d| d["code"] == code) && e.outcome != Outcome::Success
    });
    assert!(found, "no audit event with code {code}: {:#?}", gw.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages() {
    let (gw, a, mut b) = gateway().await;
    let cases: Vec<(Vec<u8>, u16, i64)> = vec![
        (b"{\"jsonrpc\":\"2.0\",\"id\":1,".to_vec(), 400, -32700),
        (b"{\"a\":\"\xff\xfe\"}".to_vec(), 400, -32700),
        (
            br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.to_vec(),
            400,
            -32600,
        ),
        (
            br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"ok"}}"#.to_vec(),
            400,
            -32600,
        ),
        (
            br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#.to_vec(),
            400,
            -32600,
        ),
    ];
    for (body, status, code) in cases {
        let r = a.post(body.clone(), false).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{}: {}",
            String::from_utf8_lossy(&body),
            r.text
        );
        check(&gw, &mut b, code).await;
    }
    // Duplicate ids in a batch: the first is answered, the second refused.
    let batch =
        r#"[{"jsonrpc":"2.0","id":9,"method":"ping"},{"jsonrpc":"2.0","id":9,"method":"ping"}]"#;
    let r = a.post(batch, false).await;
    assert_eq!(r.messages.len(), 2, "{}", r.text);
    assert!(r.messages.iter().any(|m| m["result"].is_object()));
    assert!(r.messages.iter().any(|m| m["error"]["code"] == -32600));
    // Huge numbers: an id beyond u64 is echoed byte for byte; an argument beyond f64 is
    // refused as invalid params.
    let big = "123456789012345678901234567890";
    let r = a
        .post(
            format!(r#"{{"jsonrpc":"2.0","id":{big},"method":"ping"}}"#),
            false,
        )
        .await;
    assert!(r.text.contains(&format!("\"id\":{big}")), "{}", r.text);
    let r = a
        .post(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ok","arguments":{"n":1e400}}}"#, false)
        .await;
    assert_eq!(r.code(), -32602, "{}", r.text);
    check(&gw, &mut b, -32602).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_depth_limits() {
    let (gw, a, mut b) = gateway().await;
    // 10,000-deep nesting: refused before serde recurses.
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"ok","arguments":{{"x":{}{}}}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let r = a.post(deep, false).await;
    assert_eq!((r.status, r.code()), (413, -32006), "{}", r.text);
    check(&gw, &mut b, -32006).await;

    // A 100 MB body is refused from its Content-Length, before it is read.
    let url: reqwest::Url = gw.url.parse().unwrap();
    let mut s = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap()))
        .await
        .unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nmcp-session-id: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        url.path(),
        a.token,
        a.session.as_deref().unwrap(),
        100 * 1024 * 1024
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The server answers from the header alone (it may close before reading any body).
    let _ = s.write_all(&[b' '; 1024]).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("-32006"), "{text}");
    // Streamed (chunked, no length): cut off once the limit is passed, not read to the end.
    let mut s = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap()))
        .await
        .unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nmcp-session-id: {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        url.path(),
        a.token,
        a.session.as_deref().unwrap(),
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = [
        format!("{:x}\r\n", 1 << 20).into_bytes(),
        vec![b' '; 1 << 20],
        b"\r\n".to_vec(),
    ]
    .concat();
    for _ in 0..6 {
        if s.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.starts_with("HTTP/1.1 413") && text.contains("-32006"),
        "{text}"
    );
    check(&gw, &mut b, -32006).await;
    gw.stop().await;
}

/// An upstream that is down is left out of the tool catalogue without costing the others
/// anything: calls to a healthy upstream do not make the gateway list its tools again, and
/// when an upstream says its list changed only that upstream is asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_costs_the_others_nothing() {
    let dead = harombe_gateway::UpstreamConfig::Stdio {
        command: "python3".into(),
        args: vec!["-c".into(), "import sys; sys.exit(4)".into()],
        env: Default::default(),
        cwd: None,
    };
    let gw = start(config_with(vec![("fake", fake()), ("dead", dead)])).await;
    let mut c = gw.client();
    c.initialize().await;
    async fn listed(c: &mut Client) -> u64 {
        let r = c.call("listed", json!({})).await;
        let text = r.last()["result"]["content"][0]["text"].as_str();
        text.unwrap_or_else(|| panic!("{}", r.text))
            .parse()
            .unwrap()
    }
    for _ in 0..30 {
        let r = c.call("ok", json!({})).await;
        assert!(r.last()["result"].is_object(), "{}", r.text);
    }
    // Its list was asked for once when the catalogue was built (and at most once more
    // if the catalogue was built twice while the dead upstream was starting), not per call.
    let before = listed(&mut c).await;
    assert!(
        (1..=2).contains(&before),
        "{before} tools/list for 31 calls"
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for _ in 0..5 {
        c.call("ok", json!({})).await;
    }
    assert_eq!(
        listed(&mut c).await,
        before,
        "the dead upstream's retry asked the healthy one"
    );
    // A list change of the healthy upstream: it alone is asked again, once.
    assert!(c.call("relist", json!({})).await.last()["result"].is_object());
    let mut after = before;
    for _ in 0..50 {
        after = listed(&mut c).await;
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(listed(&mut c).await, before + 1);
    assert_eq!(after, before + 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_upstream() {
    let (gw, mut a, mut b) = gateway().await;
    // Garbage on stdout is ignored; the call times out.
    let r = a.call("garbage", json!({})).await;
    assert_eq!(r.code(), -32003, "{}", r.text);
    check(&gw, &mut b, -32003).await;
    // A crash mid-call fails that call; the upstream is restarted for everyone else.
    let r = a.call("crash", json!({})).await;
    assert_eq!(r.code(), -32002, "{}", r.text);
    let e = gw
        .events_of(EventKind::ToolCall)
        .into_iter()
        .find(|e| e.target.as_deref() == Some("crash"))
        .unwrap();
    assert_eq!(e.outcome, Outcome::Failure);
    let mut ok = false;
    for _ in 0..50 {
        let r = b.call("ok", json!({})).await;
        if r.last()["result"].is_object() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "upstream was not restarted");
    check(&gw, &mut b, -32002).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_browser_origin_is_refused_and_a_listed_one_served() {
    let mut cfg = config_with(vec![("fake", fake())]);
    cfg.allowed_origins = vec!["https://console.example.com".into()];
    let gw = start(cfg).await;
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}});
    let post = |origin: &'static str| {
        reqwest::Client::new()
            .post(&gw.url)
            .bearer_auth(&gw.token)
            .header("accept", "application/json, text/event-stream")
            .header("origin", origin)
            .json(&init)
            .send()
    };
    let r = post("http://evil.example").await.unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32001, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("evil.example"),
        "{body}"
    );
    assert_eq!(
        post("https://console.example.com").await.unwrap().status(),
        200
    );
    assert_eq!(post("http://localhost:5173").await.unwrap().status(), 200);
    gw.stop().await;
}

/// A flood of bad tokens: every request is refused, but only a capped number of failures
/// is written to the audit log; the next written one counts those that were not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_audit_is_capped_and_counted() {
    let mut cfg = config_with(vec![("fake", fake())]);
    cfg.limits.auth_failure_audit_per_second = 1;
    let gw = start(cfg).await;
    let bad = Client::new(&gw.url, "hrb_not-a-token");
    for _ in 0..30 {
        let r = bad
            .post(
                json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(),
                false,
            )
            .await;
        assert_eq!(r.status, 401);
        assert_eq!(r.code(), -32000);
    }
    let auth = |gw: &Gw| gw.events_of(EventKind::Auth);
    // A burst of 10, plus one a second if the loop was slow.
    let written = auth(&gw).len();
    assert!((10..20).contains(&written), "{written} written");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = bad
        .post(
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(),
            false,
        )
        .await;
    assert_eq!(r.status, 401);
    let events = auth(&gw);
    assert_eq!(events.len(), written + 1);
    let suppressed = |e: &harombe_core::AuditEvent| {
        e.details.as_ref().unwrap()["suppressed_before"]
            .as_u64()
            .unwrap_or(0)
    };
    let last = events.last().unwrap();
    assert_eq!(last.outcome, Outcome::Denied);
    assert!(suppressed(last) > 0, "{last:?}");
    // Nothing unaccounted for: written + counted = sent.
    let counted: u64 = events.iter().map(suppressed).sum();
    assert_eq!(events.len() as u64 + counted, 31);
    gw.stop().await;
}

/// A streamable-HTTP MCP server whose `tools/call` answer is a JSON body of `size` bytes.
async fn bloated_http_upstream(size: usize) -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/mcp",
        post(move |body: axum::body::Bytes| async move {
            let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let id = m["id"].clone();
            let result = match m["method"].as_str().unwrap_or_default() {
                "initialize" => {
                    json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                    "serverInfo": {"name": "bloated", "version": "0"}})
                }
                "tools/list" => {
                    json!({"tools": [{"name": "big", "inputSchema": {"type": "object"}}]})
                }
                "tools/call" => json!({"content": [{"type": "text", "text": "x".repeat(size)}]}),
                _ => return (axum::http::StatusCode::ACCEPTED, String::new()),
            };
            let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
            (axum::http::StatusCode::OK, answer.to_string())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/mcp")
}

/// An HTTP upstream answering with more than the gateway buffers for one message (four
/// times the body limit, at least 1 MiB): the call fails as upstream-unavailable with the
/// reason, audited, and the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upstream_answer_is_refused_not_buffered() {
    let url = bloated_http_upstream(3 << 20).await;
    let up = harombe_gateway::UpstreamConfig::Http {
        url,
        timeout: Duration::from_secs(10),
    };
    let mut cfg = config_with(vec![("bloated", up)]);
    cfg.limits.max_body_bytes = 64 << 10;
    let gw = start(cfg).await;
    let mut c = gw.client();
    c.initialize().await;
    let r = c.call("big", json!({})).await;
    assert_eq!(r.code(), -32002, "{}", r.text);
    assert!(r.text.contains("larger than"), "{}", r.text);
    let audited = gw.events().iter().any(|e| {
        e.kind == EventKind::ToolCall
            && e.outcome == Outcome::Failure
            && e.error
                .as_deref()
                .is_some_and(|m| m.contains("larger than"))
    });
    assert!(audited, "{:#?}", gw.events());
    assert_eq!(c.rpc("ping", json!({})).await.status, 200);
    gw.stop().await;
}
