//! The gateway in front of the MCP reference server (server-everything, stdio).

use harombe_core::{Decision, EventKind, Outcome};
use harombe_gateway::{AgentPolicy, AgentRegistry, RateLimit};
use serde_json::json;

use crate::common::{Client, config_with, everything_stdio, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_calls_tools_and_audits_them() {
    let gw = start(config_with(vec![("everything", everything_stdio())])).await;
    let mut c = gw.client();
    let init = c.initialize().await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert!(init["result"]["capabilities"]["tools"].is_object());

    let list = c.rpc("tools/list", json!({})).await;
    let tools = list.last()["result"]["tools"].as_array().unwrap().clone();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"echo") && names.contains(&"get-sum"),
        "{names:?}"
    );
    assert_eq!(gw.events_of(EventKind::ToolsListed).len(), 1);

    let r = c
        .call(
            "echo",
            json!({"message": "hello harombe", "password": "p4ss"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let text = r.last()["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("hello harombe"), "{text}");
    assert_eq!(r.last()["id"], 3);

    let calls = gw.events_of(EventKind::ToolCall);
    assert_eq!(calls.len(), 1);
    let e = &calls[0];
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.agent.as_ref().unwrap().as_str(), "bot");
    assert_eq!(
        e.session.as_ref().unwrap().as_str(),
        c.session.as_deref().unwrap()
    );
    assert_eq!(e.target.as_deref(), Some("echo"));
    assert_eq!(e.details.as_ref().unwrap()["upstream"], "everything");
    assert_eq!(e.verdict.as_ref().unwrap().decision, Decision::Allow);
    assert_eq!(e.arguments.as_ref().unwrap()["message"], "hello harombe");
    assert_eq!(e.arguments.as_ref().unwrap()["password"], "[REDACTED]");
    assert!(e.duration_us.unwrap() > 0 && e.bytes_in > 0 && e.bytes_out > 0);

    // Resources and prompts pass through; unknown methods are forwarded untouched.
    let res = c.rpc("resources/list", json!({})).await;
    assert!(res.last()["result"]["resources"].is_array(), "{}", res.text);
    let pr = c.rpc("prompts/list", json!({})).await;
    assert!(pr.last()["result"]["prompts"].is_array(), "{}", pr.text);
    let unknown = c.rpc("x-vendor/thing", json!({"k": 1})).await;
    assert_eq!(unknown.code(), -32601, "{}", unknown.text);
    let ping = c.rpc("ping", json!({})).await;
    assert!(ping.last()["result"].is_object());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collisions_are_prefixed_and_routed() {
    let gw = start(config_with(vec![
        ("a", everything_stdio()),
        ("b", everything_stdio()),
    ]))
    .await;
    let mut c = gw.client();
    let init = c.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "harombe");
    let list = c.rpc("tools/list", json!({})).await;
    let names: Vec<String> = list.last()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"a__echo".to_owned()) && names.contains(&"b__echo".to_owned()),
        "{names:?}"
    );
    assert!(!names.contains(&"echo".to_owned()));
    let r = c.call("b__get-sum", json!({"a": 2, "b": 3})).await;
    assert!(
        r.last()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains('5'),
        "{}",
        r.text
    );
    let e = gw.events_of(EventKind::ToolCall).pop().unwrap();
    assert_eq!(e.details.as_ref().unwrap()["upstream"], "b");
    assert_eq!(e.details.as_ref().unwrap()["upstream_tool"], "get-sum");
    assert_eq!(e.target.as_deref(), Some("b__get-sum"));
    // Several upstreams: an unlisted tool has no owner.
    let r = c.call("echo", json!({"message": "x"})).await;
    assert_eq!(r.code(), -32601, "{}", r.text);
    let prompts = c.rpc("prompts/list", json!({})).await;
    assert!(
        prompts.last()["result"]["prompts"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );
    gw.stop().await;
}

/// With several upstreams, a completion goes to the upstream that listed the prompt, not
/// to the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_reach_the_upstream_of_their_prompt() {
    let gw = start(config_with(vec![
        ("a-fake", crate::common::fake()),
        ("z-everything", everything_stdio()),
    ]))
    .await;
    let mut c = gw.client();
    c.initialize().await;
    let prompts = c.rpc("prompts/list", json!({})).await;
    assert!(
        prompts.text.contains("completable-prompt"),
        "{}",
        prompts.text
    );
    let complete = |value: &str| {
        json!({"ref": {"type": "ref/prompt", "name": "completable-prompt"},
               "argument": {"name": "department", "value": value}})
    };
    let r = c.rpc("completion/complete", complete("Eng")).await;
    assert_eq!(
        r.last()["result"]["completion"]["values"],
        json!(["Engineering"]),
        "{}",
        r.text
    );
    // A prompt no upstream listed goes to the first upstream, which does not know it.
    let r = c
        .rpc(
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "nobody-lists-this"},
                   "argument": {"name": "x", "value": ""}}),
        )
        .await;
    assert_eq!(r.code(), -32601, "{}", r.text);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_rate_limits_and_schema_validation() {
    let mut cfg = config_with(vec![("everything", everything_stdio())]);
    let mut bot = AgentPolicy {
        deny: vec!["get-env".into()],
        ..AgentPolicy::default()
    };
    bot.tool_rate_limits.insert(
        "echo".into(),
        RateLimit {
            per_second: 0.001,
            burst: 1,
        },
    );
    cfg.policy.agents.insert("bot".into(), bot);
    let gw = start(cfg).await;
    let mut c = gw.client();
    c.initialize().await;

    let list = c.rpc("tools/list", json!({})).await;
    let names: Vec<&str> = list.last()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"get-env"), "denied tools are hidden");

    let r = c.call("get-env", json!({})).await;
    assert_eq!(r.code(), -32001, "{}", r.text);
    let r = c.call("echo", json!({"message": "1"})).await;
    assert!(r.last()["result"].is_object());
    let r = c.call("echo", json!({"message": "2"})).await;
    assert_eq!(r.code(), -32005, "{}", r.text);
    let r = c.call("get-sum", json!({"a": "two", "b": 3})).await;
    assert_eq!(r.code(), -32602, "{}", r.text);
    assert!(
        r.last()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/a")
    );
    // One upstream: a tool it did not list is still its to answer.
    let r = c.call("no-such-tool", json!({})).await;
    assert_eq!(r.last()["result"]["isError"], true, "{}", r.text);

    let calls = gw.events_of(EventKind::ToolCall);
    let denied: Vec<_> = calls
        .iter()
        .filter(|e| e.outcome == Outcome::Denied)
        .collect();
    assert_eq!(denied.len(), 3, "{calls:#?}");
    for (e, code) in denied.iter().zip([-32001, -32005, -32602]) {
        assert_eq!(e.details.as_ref().unwrap()["code"], code);
        assert_eq!(e.verdict.as_ref().unwrap().decision, Decision::Deny);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_sessions_and_progress() {
    let gw = start(config_with(vec![("everything", everything_stdio())])).await;
    // No token, wrong token.
    for token in ["", "hrb_wrong"] {
        let mut c = Client::new(&gw.url, token);
        c.session = None;
        let r = c
            .post(
                json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}).to_string(),
                false,
            )
            .await;
        assert_eq!(r.status, 401);
        assert_eq!(r.code(), -32000);
        assert!(!r.text.contains("hrb_wrong"));
    }
    assert_eq!(gw.events_of(EventKind::Auth).len(), 2);

    let mut a = gw.client();
    a.initialize().await;
    let mut b = gw.client();
    b.initialize().await;
    assert_ne!(a.session, b.session);
    // Unknown session id.
    let mut ghost = gw.client();
    ghost.session = Some("deadbeef".into());
    let r = ghost.rpc("tools/list", json!({})).await;
    assert_eq!((r.status, r.code()), (404, -32600));
    // A session cannot be used by another agent.
    let other = gw
        .agents
        .add(&harombe_core::AgentId::new("other").unwrap())
        .unwrap();
    let mut thief = Client::new(&gw.url, other.expose());
    thief.session = a.session.clone();
    assert_eq!(thief.rpc("ping", json!({})).await.status, 404);
    // DELETE ends a session; the other one is unaffected.
    let del = a
        .http
        .delete(&a.url)
        .bearer_auth(&a.token)
        .header("mcp-session-id", a.session.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(a.rpc("ping", json!({})).await.status, 404);
    assert!(b.rpc("ping", json!({})).await.last()["result"].is_object());
    // Unsupported protocol version header.
    let r = b
        .http
        .post(&b.url)
        .bearer_auth(&b.token)
        .header("mcp-session-id", b.session.as_deref().unwrap())
        .header("mcp-protocol-version", "1999-01-01")
        .body(json!({"jsonrpc":"2.0","id":5,"method":"ping"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Progress notifications relayed on an SSE answer.
    let body = json!({"jsonrpc":"2.0","id":77,"method":"tools/call","params":{
        "name":"trigger-long-running-operation","arguments":{"duration":1,"steps":3},
        "_meta":{"progressToken":"tok-1"}}});
    let r = b.post(body.to_string(), true).await;
    assert!(
        r.content_type.starts_with("text/event-stream"),
        "{}",
        r.text
    );
    let progress = r
        .messages
        .iter()
        .filter(|m| {
            m["method"] == "notifications/progress" && m["params"]["progressToken"] == "tok-1"
        })
        .count();
    assert_eq!(progress, 3, "{}", r.text);
    assert_eq!(r.last()["id"], 77);
    assert!(r.last()["result"].is_object());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstream() {
    let (mut child, url) = crate::common::everything_http().await;
    let up = harombe_gateway::UpstreamConfig::Http {
        url,
        timeout: std::time::Duration::from_secs(10),
    };
    let gw = start(config_with(vec![
        ("web", up),
        ("local", everything_stdio()),
    ]))
    .await;
    let mut c = gw.client();
    c.initialize().await;
    let r = c.call("web__echo", json!({"message": "over http"})).await;
    assert!(
        r.last()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("over http"),
        "{}",
        r.text
    );
    let r = c
        .call("local__echo", json!({"message": "over stdio"}))
        .await;
    assert!(
        r.last()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("over stdio"),
        "{}",
        r.text
    );
    let e = gw.events_of(EventKind::ToolCall);
    assert_eq!(e[0].details.as_ref().unwrap()["upstream"], "web");
    assert_eq!(e[1].details.as_ref().unwrap()["upstream"], "local");
    gw.stop().await;
    let _ = child.kill().await;
}
