//! Server-to-client streams: the agent's `GET` stream carries event ids and resumes with
//! `Last-Event-ID`; the gateway keeps its own `GET` stream open to HTTP upstreams, so what
//! they send outside any call reaches the agents.

use std::time::Duration;

use futures::StreamExt;
use harombe_gateway::sse::SseParser;
use serde_json::{Value, json};

use harombe_core::AgentId;
use harombe_gateway::AgentRegistry;

use crate::common::{Client, config_with, fake, start};

/// An open `GET` stream of the gateway.
struct Stream {
    inner: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: SseParser,
    pending: std::collections::VecDeque<(u64, Value)>,
}

async fn open(c: &Client, last_event_id: Option<u64>) -> Stream {
    let mut req = c
        .http
        .get(&c.url)
        .bearer_auth(&c.token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.as_deref().unwrap());
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    Stream {
        inner: resp.bytes_stream().boxed(),
        parser: SseParser::new(1 << 20),
        pending: Default::default(),
    }
}

impl Stream {
    /// The next event: its id and message.
    async fn next(&mut self, within: Duration) -> (u64, Value) {
        tokio::time::timeout(within, async {
            loop {
                if let Some(e) = self.pending.pop_front() {
                    return e;
                }
                let chunk = self.inner.next().await.expect("stream ended").unwrap();
                for ev in self.parser.push(&chunk).unwrap() {
                    let id = ev.id.as_deref().expect("every event has an id");
                    self.pending
                        .push_back((id.parse().unwrap(), serde_json::from_str(&ev.data).unwrap()));
                }
            }
        })
        .await
        .expect("no event in time")
    }
}

impl Stream {
    /// Every message that arrives within `within`.
    async fn drain(&mut self, within: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.pending.drain(..).map(|(_, m)| m).collect();
        let _ = tokio::time::timeout(within, async {
            while let Some(Ok(chunk)) = self.inner.next().await {
                for ev in self.parser.push(&chunk).unwrap() {
                    out.push(serde_json::from_str(&ev.data).unwrap());
                }
            }
        })
        .await;
        out
    }
}

/// The fake upstream's `progress` tool for `tag`, with progress token `p` and the answer
/// streamed: the progress messages it got (their `message`s) and its answer's text.
async fn progress_call(c: &Client, id: u64, tag: &str) -> (Vec<String>, String) {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
        "name":"progress","arguments":{"tag":tag},"_meta":{"progressToken":"p"}}});
    let r = c.post(body.to_string(), true).await;
    let mut progress = Vec::new();
    for m in &r.messages {
        if m["method"] == "notifications/progress" {
            assert_eq!(
                m["params"]["progressToken"], "p",
                "the client's own token: {m}"
            );
            progress.push(m["params"]["message"].as_str().unwrap().to_owned());
        }
    }
    let text = r.last()["result"]["content"][0]["text"].as_str();
    (progress, text.unwrap_or_default().to_owned())
}

/// The gateway in front of the fake upstream, with two agents' sessions and their streams.
async fn two_agents() -> (crate::common::Gw, Client, Client, Stream, Stream) {
    let gw = start(config_with(vec![("fake", fake())])).await;
    let mut a = gw.client();
    a.initialize().await;
    let other = gw.agents.add(&AgentId::new("other").unwrap()).unwrap();
    let mut b = Client::new(&gw.url, other.expose());
    b.initialize().await;
    let sa = open(&a, None).await;
    let sb = open(&b, None).await;
    (gw, a, b, sa, sb)
}

/// Two agents share one upstream session. Each gets the progress of its own calls even
/// when both pick the same progress token at the same time, and a log message the upstream
/// sends outside any call reaches an agent only when that agent's calls were all that was
/// in flight: never the other agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_messages_never_reach_another_agent() {
    let (gw, a, b, mut sa, mut sb) = two_agents().await;

    // Alice alone: her progress on her call's stream, the log on her session's stream.
    let (progress, text) = progress_call(&a, 10, "a-solo").await;
    assert_eq!(text, "a-solo");
    assert_eq!(progress, ["a-solo", "a-solo"]);
    let (_, m) = sa.next(Duration::from_secs(5)).await;
    assert_eq!(m["params"]["data"], "log of a-solo", "{m}");

    // Both at once, same token: each call gets its own progress only.
    let ((pa, ta), (pb, tb)) = tokio::join!(
        progress_call(&a, 11, "a-both"),
        progress_call(&b, 11, "b-both")
    );
    assert_eq!((ta.as_str(), tb.as_str()), ("a-both", "b-both"));
    assert_eq!(pa, ["a-both", "a-both"]);
    assert_eq!(pb, ["b-both", "b-both"]);

    // Whatever the session streams got, none of it is the other agent's.
    let got_a = sa.drain(Duration::from_millis(1500)).await;
    let got_b = sb.drain(Duration::from_millis(500)).await;
    for m in &got_a {
        assert!(
            !m.to_string().contains("b-"),
            "alice got bob's message: {m}"
        );
    }
    for m in &got_b {
        assert!(
            !m.to_string().contains("a-"),
            "bob got alice's message: {m}"
        );
    }
    drop((sa, sb));
    gw.stop().await;
}

/// `logging/setLevel` is each session's own: the upstream (shared by every agent) is asked
/// for the most verbose level any session wants, and each session gets only the log
/// messages at or above its own level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_gets_the_log_level_it_asked_for() {
    let (gw, mut a, mut b, mut sa, mut sb) = two_agents().await;
    async fn upstream_level(c: &mut Client) -> String {
        let r = c.call("level", json!({})).await;
        r.last()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    let set = |level: &str| json!({ "level": level });
    assert!(b.rpc("logging/setLevel", set("debug")).await.last()["result"].is_object());
    assert_eq!(upstream_level(&mut a).await, "debug");
    // Alice asks for warnings and up: the upstream stays at Bob's debug.
    assert!(a.rpc("logging/setLevel", set("warning")).await.last()["result"].is_object());
    assert_eq!(upstream_level(&mut a).await, "debug");
    let r = a.rpc("logging/setLevel", set("loud")).await;
    assert_eq!(r.code(), -32602, "{}", r.text);

    // The fake logs at info during its progress tool: Bob gets it, Alice does not.
    let (_, text) = progress_call(&a, 20, "a-quiet").await;
    assert_eq!(text, "a-quiet");
    let (_, text) = progress_call(&b, 20, "b-loud").await;
    assert_eq!(text, "b-loud");
    let (_, m) = sb.next(Duration::from_secs(5)).await;
    assert_eq!(m["params"]["data"], "log of b-loud", "{m}");
    let got_a = sa.drain(Duration::from_millis(800)).await;
    assert!(
        got_a.iter().all(|m| m["method"] != "notifications/message"),
        "{got_a:?}"
    );
    drop((sa, sb));
    gw.stop().await;
}

/// server-everything's simulated logging sends a `notifications/message` at once and
/// then every 5 s on its own stream (outside any call): through the gateway's upstream
/// `GET` stream to the agent's. The agent drops its stream, misses one, and gets it by
/// reconnecting with the last id it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_notifications_reach_the_agent_and_resume_after_a_drop() {
    let (_server, url) = crate::common::everything_http().await;
    let up = harombe_gateway::UpstreamConfig::Http {
        url,
        timeout: Duration::from_secs(10),
    };
    let gw = start(config_with(vec![("web", up)])).await;
    let mut c = gw.client();
    c.initialize().await;
    let mut s = open(&c, None).await;
    let r = c.call("toggle-simulated-logging", json!({})).await;
    assert!(r.last()["result"].is_object(), "{}", r.text);
    let (first, m) = s.next(Duration::from_secs(15)).await;
    assert_eq!(m["method"], "notifications/message", "{m}");
    drop(s);
    // While no stream is open, the next message arrives and is kept.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut s = open(&c, Some(first)).await;
    let (next, m) = s.next(Duration::from_secs(5)).await;
    assert_eq!(next, first + 1, "resumes right after the last seen id");
    assert_eq!(m["method"], "notifications/message", "{m}");
    // A reconnect that names an event id it could not have seen is an error.
    let bad = c
        .http
        .get(&c.url)
        .bearer_auth(&c.token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .header("last-event-id", "not-a-number")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let _ = c.call("toggle-simulated-logging", json!({})).await;
    drop(s);
    gw.stop().await;
}

/// Shutdown while a call is in flight: the listener closes, the call still completes, its
/// answer reaches the agent and its audit event is written before `serve` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_calls_in_flight() {
    let gw = start(config_with(vec![(
        "local",
        crate::common::everything_stdio(),
    )]))
    .await;
    let mut c = gw.client();
    c.initialize().await;
    let call = tokio::spawn(async move {
        c.call(
            "trigger-long-running-operation",
            json!({"duration": 2, "steps": 2}),
        )
        .await
    });
    // Shut down once the call is in flight (the upstream has it for 2 s).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let store = gw.store.clone();
    assert!(
        !store
            .events()
            .iter()
            .any(|e| e.kind == harombe_core::EventKind::ToolCall),
        "the call is still running"
    );
    gw.stop().await;
    let r = call.await.unwrap();
    assert!(
        r.last()["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("completed")),
        "{}",
        r.text
    );
    let calls: Vec<_> = store
        .events()
        .into_iter()
        .filter(|e| e.kind == harombe_core::EventKind::ToolCall)
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, harombe_core::Outcome::Success);
}

/// A session unused for longer than `session_idle_timeout` is closed; one in use is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire() {
    let mut cfg = config_with(vec![("local", crate::common::everything_stdio())]);
    cfg.limits.session_idle_timeout = Duration::from_secs(2);
    let gw = start(cfg).await;
    let mut idle = gw.client();
    idle.initialize().await;
    let mut busy = gw.client();
    busy.initialize().await;
    // Only listens on its stream, sending nothing.
    let mut listener = gw.client();
    listener.initialize().await;
    let stream = open(&listener, None).await;
    // 4.5 s or more: past the timeout plus one sweep (every 1 s here).
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = busy.rpc("ping", json!({})).await;
        assert_eq!(r.status, 200, "a session in use stays open: {}", r.text);
    }
    let r = idle.rpc("ping", json!({})).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.text.contains("session"), "{}", r.text);
    let r = listener.rpc("ping", json!({})).await;
    assert_eq!(
        r.status, 200,
        "a session with an open stream stays open: {}",
        r.text
    );
    drop(stream);
    gw.stop().await;
}
