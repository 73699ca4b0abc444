//! The seams: fake stages that deny, hold and flag, and their effect on answers and audit.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use harombe_core::{Decision, EventKind, Outcome, ThreatLevel, Verdict};
use harombe_gateway::{
    CallRecord, DecideStage, Decided, DetectStage, Detection, HoldStage, InspectStage, Inspection,
};
use serde_json::json;
use serde_json::value::RawValue;

use crate::common::{config_with, everything_stdio, fake, start_with};

#[derive(Debug)]
struct SecretSpotter;

#[async_trait]
impl InspectStage for SecretSpotter {
    async fn inspect_arguments(&self, call: &CallRecord) -> Inspection {
        if call.arguments.to_string().contains("AKIA") {
            Inspection {
                verdict: Verdict::deny("aws access key in arguments"),
                secret_detected: true,
                findings: vec![json!({"rule": "aws-key", "path": "/message"})],
                redacted_arguments: Some(json!({"message": "[REDACTED:aws-key]"})),
                replacement: None,
            }
        } else {
            Inspection::pass()
        }
    }
    async fn inspect_result(&self, _call: &CallRecord, result: &RawValue) -> Inspection {
        if result.get().contains("LEAK") {
            Inspection {
                verdict: Verdict::deny("secret in result"),
                secret_detected: true,
                findings: vec![],
                redacted_arguments: None,
                replacement: None,
            }
        } else {
            Inspection::pass()
        }
    }
}

#[derive(Debug)]
struct Flagger;

#[async_trait]
impl DetectStage for Flagger {
    async fn detect(&self, call: &CallRecord) -> Detection {
        let mut scores = BTreeMap::new();
        let high = call.tool == "get-sum";
        scores.insert("anomaly".to_owned(), if high { 0.9 } else { 0.1 });
        Detection {
            scores,
            threat_level: Some(if high {
                ThreatLevel::High
            } else {
                ThreatLevel::Low
            }),
            reasons: vec![],
        }
    }
}

#[derive(Debug)]
struct HoldHighThreat;

#[async_trait]
impl DecideStage for HoldHighThreat {
    async fn decide(&self, _call: &CallRecord, d: &Detection) -> Decided {
        if d.threat_level >= Some(ThreatLevel::High) {
            Verdict::hold("high threat: needs a human").into()
        } else {
            Verdict::allow().into()
        }
    }
}

#[derive(Debug)]
struct HumanSays(Decision);

#[async_trait]
impl HoldStage for HumanSays {
    async fn hold(&self, _call: &CallRecord, v: Verdict) -> Verdict {
        Verdict {
            decision: self.0,
            reasons: [v.reasons, vec![format!("human: {}", self.0)]].concat(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_detect_decide_hold_take_effect() {
    let gw = start_with(config_with(vec![("everything", everything_stdio())]), |d| {
        d.with_inspect(Arc::new(SecretSpotter))
            .with_detect(Arc::new(Flagger))
            .with_decide(Arc::new(HoldHighThreat))
    })
    .await;
    let mut c = gw.client();
    c.initialize().await;
    let r = c
        .call("echo", json!({"message": "key AKIAABCDEFGHIJKLMNOP"}))
        .await;
    assert_eq!(r.code(), -32004, "{}", r.text);
    let r = c.call("echo", json!({"message": "LEAK"})).await;
    assert_eq!(r.code(), -32004, "result inspection: {}", r.text);
    // Held with the pass-through hold stage: refused, outcome pending.
    let r = c.call("get-sum", json!({"a": 1, "b": 2})).await;
    assert_eq!(r.code(), -32001, "{}", r.text);
    let r = c.call("echo", json!({"message": "fine"})).await;
    assert!(r.last()["result"].is_object());
    // Arguments that fail the tool's schema are refused, and still stored redacted.
    let r = c
        .call("get-sum", json!({"a": "AKIAABCDEFGHIJKLMNOP", "b": 2}))
        .await;
    assert_eq!(r.code(), -32602, "{}", r.text);

    let calls = gw.events_of(EventKind::ToolCall);
    assert_eq!(calls.len(), 5);
    assert_eq!(calls[4].outcome, Outcome::Denied);
    assert!(
        !serde_json::to_string(&calls[4]).unwrap().contains("AKIA"),
        "{:?}",
        calls[4].arguments
    );
    assert_eq!(
        calls[4].details.as_ref().unwrap()["findings"][0]["rule"],
        "aws-key"
    );
    assert_eq!(calls[0].outcome, Outcome::Denied);
    assert_eq!(
        calls[0].threat_level,
        Some(ThreatLevel::Low),
        "a call refused at inspection is still scored"
    );
    assert_eq!(
        calls[0].arguments.as_ref().unwrap()["message"],
        "[REDACTED:aws-key]"
    );
    assert!(!serde_json::to_string(&calls[0]).unwrap().contains("AKIA"));
    assert_eq!(
        calls[0].details.as_ref().unwrap()["findings"][0]["rule"],
        "aws-key"
    );
    assert_eq!(calls[1].outcome, Outcome::Denied);
    assert_eq!(calls[2].outcome, Outcome::Pending);
    assert_eq!(calls[2].threat_level, Some(ThreatLevel::High));
    assert_eq!(calls[2].scores["anomaly"], 0.9);
    assert_eq!(calls[3].outcome, Outcome::Success);
    assert_eq!(calls[3].scores["anomaly"], 0.1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_stage_resolves_holds() {
    for (human, want) in [(Decision::Allow, None), (Decision::Deny, Some(-32001))] {
        let gw = start_with(config_with(vec![("everything", everything_stdio())]), |d| {
            d.with_detect(Arc::new(Flagger))
                .with_decide(Arc::new(HoldHighThreat))
                .with_hold(Arc::new(HumanSays(human)))
        })
        .await;
        let mut c = gw.client();
        c.initialize().await;
        let r = c.call("get-sum", json!({"a": 1, "b": 2})).await;
        match want {
            None => assert!(r.last()["result"].is_object(), "{}", r.text),
            Some(code) => assert_eq!(r.code(), code),
        }
        let e = gw.events_of(EventKind::ToolCall).pop().unwrap();
        assert_eq!(e.verdict.as_ref().unwrap().decision, human);
        assert!(
            e.verdict
                .as_ref()
                .unwrap()
                .reasons
                .iter()
                .any(|r| r.starts_with("human"))
        );
        gw.stop().await;
    }
}

/// Replaces what the tool and the agent receive.
#[derive(Debug)]
struct Redactor;

#[async_trait]
impl InspectStage for Redactor {
    async fn inspect_arguments(&self, call: &CallRecord) -> Inspection {
        if call.arguments.to_string().contains("cut-me") {
            Inspection {
                replacement: Some(json!({"message": "[cut in arguments]"})),
                ..Inspection::pass()
            }
        } else {
            Inspection::pass()
        }
    }
    async fn inspect_result(&self, _call: &CallRecord, result: &RawValue) -> Inspection {
        if result.get().contains("LEAK") {
            Inspection {
                replacement: Some(
                    json!({"content": [{"type": "text", "text": "[cut in result]"}]}),
                ),
                ..Inspection::pass()
            }
        } else {
            Inspection::pass()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_replacements_reach_the_tool_and_the_agent() {
    let gw = start_with(config_with(vec![("everything", everything_stdio())]), |d| {
        d.with_inspect(Arc::new(Redactor))
    })
    .await;
    let mut c = gw.client();
    c.initialize().await;
    // The tool (echo) answers with what it received: the replaced arguments.
    let r = c.call("echo", json!({"message": "please cut-me"})).await;
    let text = r.last()["result"].to_string();
    assert!(
        text.contains("[cut in arguments]") && !text.contains("cut-me"),
        "{text}"
    );
    // The agent receives the replaced result, with its own request id.
    let r = c.call("echo", json!({"message": "a LEAK"})).await;
    assert_eq!(
        r.last()["result"]["content"][0]["text"],
        "[cut in result]",
        "{}",
        r.text
    );
    assert!(r.last()["id"].is_number());
    let r = c.call("echo", json!({"message": "plain"})).await;
    assert!(r.last()["result"].to_string().contains("plain"));
    let calls = gw.events_of(EventKind::ToolCall);
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|e| e.outcome == Outcome::Success));
    gw.stop().await;
}

/// Flags `LEAK` (blocks it) and `cut` (redacts it, in what the agent receives) in
/// answers; `logged` is only reported.
#[derive(Debug)]
struct AnswerInspector;

#[async_trait]
impl InspectStage for AnswerInspector {
    async fn inspect_arguments(&self, _call: &CallRecord) -> Inspection {
        Inspection::pass()
    }
    async fn inspect_result(&self, _call: &CallRecord, result: &RawValue) -> Inspection {
        answer_inspection(result)
    }
    async fn inspect_tool(&self, _upstream: &str, definition: &RawValue) -> Inspection {
        answer_inspection(definition)
    }
    fn inspect_upstream_message(
        &self,
        _upstream: &str,
        _method: &str,
        params: &RawValue,
    ) -> Inspection {
        answer_inspection(params)
    }
    async fn inspect_agent_answer(
        &self,
        _upstream: &str,
        _method: &str,
        answer: &RawValue,
    ) -> Inspection {
        answer_inspection(answer)
    }
}

/// What the fake upstream got as the answer to its request `id` (polled: a refusal is
/// sent in the background).
async fn answered(c: &mut crate::common::Client, id: &str) -> serde_json::Value {
    for _ in 0..50 {
        let r = c.call("answered", json!({ "id": id })).await;
        let text = r.last()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if text != "none" {
            return serde_json::from_str(&text).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the upstream got no answer to {id}");
}

fn answer_inspection(result: &RawValue) -> Inspection {
    {
        let text = result.get();
        let finding = |rule: &str| vec![json!({"rule": rule})];
        if text.contains("LEAK") {
            Inspection {
                verdict: Verdict::deny("secret in the answer"),
                secret_detected: true,
                findings: finding("leak"),
                ..Inspection::pass()
            }
        } else if text.contains("cut") {
            Inspection {
                findings: finding("cut"),
                replacement: Some(serde_json::from_str(&text.replace("cut", "[CUT]")).unwrap()),
                ..Inspection::pass()
            }
        } else if text.contains("logged") {
            Inspection {
                findings: finding("logged"),
                ..Inspection::pass()
            }
        } else {
            Inspection::pass()
        }
    }
}

/// An upstream's JSON-RPC error is inspected like a result: blocked, redacted for the
/// agent, and never copied into the audit log with a finding in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_are_inspected_like_results() {
    let gw = start_with(config_with(vec![("fake", fake())]), |d| {
        d.with_inspect(Arc::new(AnswerInspector))
    })
    .await;
    let mut c = gw.client();
    c.initialize().await;
    let r = c.call("fail", json!({"why": "token LEAK"})).await;
    assert_eq!(r.code(), -32004, "{}", r.text);
    assert!(!r.text.contains("LEAK"), "{}", r.text);
    let r = c.call("fail", json!({"why": "please cut"})).await;
    assert_eq!(r.code(), -32010, "{}", r.text);
    assert_eq!(
        r.last()["error"]["message"],
        "tool failed: please [CUT]",
        "{}",
        r.text
    );
    let r = c.call("fail", json!({"why": "logged"})).await;
    assert_eq!(
        r.last()["error"]["message"],
        "tool failed: logged",
        "{}",
        r.text
    );
    let r = c.call("fail", json!({"why": "plain"})).await;
    assert_eq!(
        r.last()["error"]["message"],
        "tool failed: plain",
        "{}",
        r.text
    );

    let calls = gw.events_of(EventKind::ToolCall);
    assert_eq!(calls.len(), 4);
    let stored = |i: usize| calls[i].error.clone().unwrap_or_default();
    assert_eq!(calls[0].outcome, Outcome::Denied);
    // (The test inspector looks at answers only, so the arguments keep the words.)
    for (i, call) in calls.iter().enumerate().take(3) {
        let e = stored(i);
        assert!(
            !e.contains("LEAK") && !e.contains("please cut") && !e.contains("logged"),
            "event {i}: {e}"
        );
        assert!(
            call.details.as_ref().unwrap()["findings"].is_array(),
            "event {i}"
        );
    }
    assert!(stored(1).contains("[CUT]"), "{}", stored(1));
    assert!(stored(2).contains("withheld"), "{}", stored(2));
    assert!(stored(3).contains("tool failed: plain"), "{}", stored(3));
    gw.stop().await;
}

/// What an upstream hands the agent outside a tool call (a resource, a prompt) goes
/// through the same inspection; a finding is audited with its action, a clean read is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_and_prompts_are_inspected_like_results() {
    let gw = start_with(config_with(vec![("fake", fake())]), |d| {
        d.with_inspect(Arc::new(AnswerInspector))
    })
    .await;
    let mut c = gw.client();
    c.initialize().await;
    let read = |uri: &str| json!({"uri": uri});
    let r = c.rpc("resources/read", read("file:///LEAK")).await;
    assert_eq!(r.code(), -32004, "{}", r.text);
    assert!(!r.text.contains("content of"), "{}", r.text);
    let r = c.rpc("resources/read", read("file:///cut")).await;
    assert_eq!(
        r.last()["result"]["contents"][0]["text"],
        "content of file:///[CUT]",
        "{}",
        r.text
    );
    let r = c.rpc("prompts/get", json!({"name": "logged"})).await;
    assert_eq!(
        r.last()["result"]["messages"][0]["content"]["text"],
        "prompt logged",
        "{}",
        r.text
    );
    let r = c.rpc("resources/read", read("file:///plain")).await;
    assert_eq!(
        r.last()["result"]["contents"][0]["text"],
        "content of file:///plain"
    );

    // (The fake upstream's poisoned and snipped tool definitions make decisions too.)
    let decisions: Vec<_> = gw
        .events_of(EventKind::Decision)
        .into_iter()
        .filter(|e| matches!(e.target.as_deref(), Some("resources/read" | "prompts/get")))
        .collect();
    assert_eq!(decisions.len(), 3, "{decisions:#?}");
    let action = |i: usize| decisions[i].details.as_ref().unwrap()["action"].clone();
    assert_eq!(decisions[0].outcome, Outcome::Denied);
    assert_eq!(action(0), "blocked");
    // The URI (the agent's own text) is withheld from the record when it holds a finding.
    let withheld = "[withheld: inspection found something in it]";
    assert_eq!(decisions[0].details.as_ref().unwrap()["uri"], withheld);
    assert_eq!(decisions[1].details.as_ref().unwrap()["uri"], withheld);
    assert_eq!(action(1), "redacted");
    assert_eq!(action(2), "logged");
    assert_eq!(decisions[2].target.as_deref(), Some("prompts/get"));
    assert_eq!(decisions[2].details.as_ref().unwrap()["name"], withheld);
    for d in &decisions {
        assert!(d.details.as_ref().unwrap()["findings"][0]["rule"].is_string());
    }
    gw.stop().await;
}

/// A tool whose definition fails inspection is hidden and cannot be called; one with a
/// finding to cut is listed with it cut out; each is audited as a decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_definitions_are_inspected() {
    let gw = start_with(config_with(vec![("fake", fake())]), |d| {
        d.with_inspect(Arc::new(AnswerInspector))
    })
    .await;
    let mut c = gw.client();
    c.initialize().await;
    let list = c.rpc("tools/list", json!({})).await;
    let tools = list.last()["result"]["tools"].as_array().unwrap().clone();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&"poisoned"), "{names:?}");
    assert!(names.contains(&"ok"), "{names:?}");
    let snipped = tools.iter().find(|t| t["name"] == "snipped").unwrap();
    assert_eq!(snipped["description"], "Reads files; [CUT] this part.");
    let r = c.call("poisoned", json!({})).await;
    assert_eq!(r.code(), -32001, "{}", r.text);
    assert!(r.text.contains("withheld"), "{}", r.text);
    assert_eq!(
        c.call("snipped", json!({})).await.last()["result"]["content"][0]["text"],
        "ok"
    );

    let decisions = gw.events_of(EventKind::Decision);
    let about = |tool: &str| {
        decisions
            .iter()
            .find(|e| e.target.as_deref() == Some(tool))
            .unwrap_or_else(|| panic!("no decision about {tool}: {decisions:#?}"))
            .clone()
    };
    let p = about("poisoned");
    assert_eq!(p.outcome, Outcome::Denied);
    assert_eq!(p.details.as_ref().unwrap()["action"], "hidden");
    assert_eq!(
        about("snipped").details.as_ref().unwrap()["action"],
        "redacted"
    );
    // The upstream says its list changed: the catalogue is rebuilt, the same definitions
    // are withheld again, and not reported again.
    assert!(c.call("relist", json!({})).await.last()["result"].is_object());
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let r = c.call("poisoned", json!({})).await;
    assert_eq!(r.code(), -32001, "{}", r.text);
    let reports = gw
        .events_of(EventKind::Decision)
        .iter()
        .filter(|e| e.target.as_deref() == Some("poisoned"))
        .count();
    assert_eq!(reports, 1);
    gw.stop().await;
}

/// What an upstream starts on its way to the agent (a sampling request, progress, a log
/// message) is inspected like a result: cut, or withheld (a request is then answered
/// upstream with the error), and each such message is audited with its action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_upstreams_start_are_inspected() {
    let gw = start_with(config_with(vec![("fake", fake())]), |d| {
        d.with_inspect(Arc::new(AnswerInspector))
    })
    .await;
    let mut c = gw.client();
    c.initialize().await;
    let tool = |id: u64, name: &str, args: serde_json::Value| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
            "name":name,"arguments":args,"_meta":{"progressToken":"p"}}})
        .to_string()
    };
    let sampling = |r: &crate::common::Reply| {
        r.messages
            .iter()
            .filter(|m| m["method"] == "sampling/createMessage")
            .cloned()
            .collect::<Vec<_>>()
    };

    // A sampling request with something to cut reaches the agent with it cut.
    let r = c
        .post(
            tool(10, "ask", json!({"tag": "c", "text": "please cut this"})),
            true,
        )
        .await;
    let asked = sampling(&r);
    assert_eq!(asked.len(), 1, "{}", r.text);
    assert_eq!(
        asked[0]["params"]["messages"][0]["content"]["text"],
        "please [CUT] this"
    );
    assert_eq!(r.last()["result"]["content"][0]["text"], "asked");
    // One that fails inspection never reaches the agent; the upstream gets the error.
    let r = c
        .post(tool(11, "ask", json!({"tag": "l", "text": "a LEAK"})), true)
        .await;
    assert!(sampling(&r).is_empty(), "{}", r.text);
    assert!(!r.text.contains("LEAK"), "{}", r.text);
    let answer = answered(&mut c, "s-l").await;
    assert_eq!(answer["error"]["code"], -32004, "{answer}");

    // The agent's answers to the upstream's requests are inspected on the way back.
    let reply = |id: &serde_json::Value, text: &str| {
        json!({"jsonrpc":"2.0","id":id,"result":{"role":"assistant","model":"m",
            "content":{"type":"text","text":text}}})
        .to_string()
    };
    assert_eq!(
        c.post(reply(&asked[0]["id"], "a cut reply"), false)
            .await
            .status,
        202
    );
    let answer = answered(&mut c, "s-c").await;
    assert_eq!(
        answer["result"]["content"]["text"], "a [CUT] reply",
        "{answer}"
    );
    let r = c
        .post(tool(14, "ask", json!({"tag": "b", "text": "plain"})), true)
        .await;
    let asked = sampling(&r);
    assert_eq!(asked.len(), 1, "{}", r.text);
    c.post(reply(&asked[0]["id"], "a LEAK"), false).await;
    let answer = answered(&mut c, "s-b").await;
    assert_eq!(answer["error"]["code"], -32004, "{answer}");
    assert!(!answer.to_string().contains("LEAK"), "{answer}");

    // Progress for the call: cut, or withheld.
    let r = c
        .post(tool(12, "progress", json!({"tag": "cut it"})), true)
        .await;
    let progress: Vec<_> = r
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["message"].clone())
        .collect();
    assert_eq!(progress, ["[CUT] it", "[CUT] it"], "{}", r.text);
    let r = c
        .post(tool(13, "progress", json!({"tag": "LEAK"})), true)
        .await;
    assert!(!r.text.contains("notifications/progress"), "{}", r.text);

    // Audited (in the background): per message, its method, upstream and action.
    let of = |events: &[harombe_core::AuditEvent], method: &str, action: &str| {
        events
            .iter()
            .filter(|e| {
                e.kind == EventKind::Decision
                    && e.target.as_deref() == Some(method)
                    && e.details.as_ref().unwrap()["action"] == action
            })
            .count()
    };
    crate::common::eventually(&gw, |ev| {
        of(ev, "notifications/message", "withheld") == 1
            && of(ev, "notifications/progress", "withheld") == 2
    })
    .await;
    let events = gw.events();
    assert_eq!(of(&events, "sampling/createMessage", "redacted"), 2);
    assert_eq!(of(&events, "sampling/createMessage", "withheld"), 1);
    assert_eq!(of(&events, "sampling/createMessage", "blocked"), 1);
    assert_eq!(of(&events, "notifications/progress", "redacted"), 2);
    assert_eq!(of(&events, "notifications/message", "redacted"), 1);
    let upstream_decisions: Vec<_> = events
        .iter()
        .filter(|e| {
            e.kind == EventKind::Decision
                && e.target
                    .as_deref()
                    .is_some_and(|t| t.starts_with("notifications/") || t.starts_with("sampling/"))
        })
        .collect();
    assert_eq!(upstream_decisions.len(), 10, "{upstream_decisions:#?}");
    for d in upstream_decisions {
        let details = d.details.as_ref().unwrap();
        assert_eq!(details["upstream"], "fake");
        assert!(details["findings"][0]["rule"].is_string(), "{details}");
        assert!(d.agent.is_some());
        // Progress and requests go to one of the client's calls: its session is recorded.
        // A stdio upstream's log message names no call, so it has no session to record.
        let session = d.session.as_ref().map(|s| s.as_str());
        if d.target.as_deref() == Some("notifications/message") {
            assert_eq!(session, None, "{d:#?}");
        } else {
            assert_eq!(session, c.session.as_deref(), "{d:#?}");
        }
        let refused = details["action"] == "withheld" || details["action"] == "blocked";
        assert_eq!(d.outcome == Outcome::Denied, refused);
    }
    // The agent's two answers (one cut, one blocked) are marked as answers.
    let answers: Vec<_> = events
        .iter()
        .filter(|e| e.details.as_ref().is_some_and(|d| d["answer"] == true))
        .collect();
    assert_eq!(answers.len(), 2, "{answers:#?}");
    assert!(
        answers
            .iter()
            .all(|e| e.session.is_some() && e.target.as_deref() == Some("sampling/createMessage"))
    );
    gw.stop().await;
}
