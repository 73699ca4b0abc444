//! The real binary end to end: `agents add` issues a token, `serve` runs the MCP gateway in
//! front of the reference server (server-everything over stdio), an agent lists and calls
//! tools with its token, and every call lands in the audit log; `wrap` does the same over
//! stdio. Needs the peers scripts/test.sh installs.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::{Value, json};

fn peer(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/test.sh, which installs the MCP peers")
    })
}

fn harombe(data: &Path) -> Command {
    let mut c = Command::cargo_bin("harombe").unwrap();
    c.arg("--data-dir")
        .arg(data)
        .env_remove("HAROMBE_CONFIG")
        .env("RUST_LOG", "warn");
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 POST; returns status, headers (lowercased names) and body.
fn post(
    port: u16,
    token: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let payload = body.to_string();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        payload.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(sid) = session {
        req.push_str(&format!(
            "Mcp-Session-Id: {sid}\r\nMCP-Protocol-Version: 2025-06-18\r\n"
        ));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    (
        status,
        headers,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// The JSON-RPC message in a JSON or SSE response body.
fn message(body: &str) -> Value {
    if let Ok(v) = serde_json::from_str(body) {
        return v;
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC response in {body:?}"))
}

fn config(dir: &Path, gateway_port: u16, control_port: u16) -> std::path::PathBuf {
    let path = dir.join("harombe.toml");
    let text = format!(
        "[server]\ncontrol_addr = \"127.0.0.1:{control_port}\"\n\n[gateway]\nlisten = \"127.0.0.1:{gateway_port}\"\n\n\
         [gateway.upstreams.everything]\ntype = \"stdio\"\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n",
        peer("HAROMBE_NODE22"),
        peer("HAROMBE_MCP_EVERYTHING"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn tool_calls(data: &Path) -> Vec<Value> {
    let out = harombe(data)
        .args(["audit", "query", "--kind", "tool_call", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// Sends SIGTERM to `harombe serve` and requires a clean exit (it drains and closes the
/// store first).
fn stop_cleanly(child: &mut std::process::Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// `harombe agents add NAME`: the token it prints once.
fn add_agent(data: &Path, cfg: &Path, name: &str) -> String {
    let add = harombe(data)
        .arg("--config")
        .arg(cfg)
        .args(["agents", "add", name])
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    String::from_utf8(add.stdout).unwrap().trim().to_owned()
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}})
}

/// Starts `harombe serve` and initializes an MCP session with `token` once the gateway
/// listens on `port`: the child, the session id and the initialize answer's body.
fn serve_and_initialize(
    data: &Path,
    cfg: &Path,
    port: u16,
    token: &str,
) -> (std::process::Child, String, String) {
    let child = harombe(data)
        .arg("--config")
        .arg(cfg)
        .arg("serve")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let init = initialize();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, headers, body) = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break post(port, Some(token), None, &init);
        }
        assert!(Instant::now() < deadline, "gateway did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "{body}");
    let session = headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("session id");
    (child, session, body)
}

#[test]
fn serve_gateway_with_agent_tokens_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (gw, cp) = (free_port(), free_port());
    let cfg = config(dir.path(), gw, cp);

    let token = add_agent(&data, &cfg, "billing-bot");
    assert!(token.starts_with("hrb_") && token.len() == 47, "{token}");
    let stored = std::fs::read_to_string(data.join("agents.json")).unwrap();
    assert!(
        !stored.contains(&token[4..]),
        "only a hash of the token is stored"
    );
    let list = harombe(&data)
        .arg("--config")
        .arg(&cfg)
        .args(["agents", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(
        listed.contains("billing-bot") && !listed.contains(&token),
        "{listed}"
    );

    let (mut child, session, body) = serve_and_initialize(&data, &cfg, gw, &token);
    assert!(
        message(&body)["result"]["protocolVersion"].is_string(),
        "{body}"
    );
    post(
        gw,
        Some(&token),
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );

    let (status, _, body) = post(
        gw,
        Some(&token),
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    assert_eq!(status, 200);
    let tools = message(&body)["result"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{body}");

    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "hello through harombe"}}});
    let (status, _, body) = post(gw, Some(&token), Some(&session), &call);
    assert_eq!(status, 200);
    assert!(
        message(&body)["result"]
            .to_string()
            .contains("hello through harombe"),
        "{body}"
    );

    // A credential in the arguments: refused with -32004 before it reaches the tool.
    let token_like = format!(
        "ghp_{}",
        "aB3xK9mQ2wE7rT5yU1iO4pL8sD6fG0hJ2kZc"
            .chars()
            .take(36)
            .collect::<String>()
    );
    let leak = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": format!("deploy with {token_like} please")}}});
    let (status, _, body) = post(gw, Some(&token), Some(&session), &leak);
    assert_eq!(status, 200);
    assert_eq!(message(&body)["error"]["code"], -32004, "{body}");
    assert!(
        !body.contains(&token_like),
        "the secret is not echoed back: {body}"
    );

    // Without the token, or with a wrong one: refused and audited.
    let (status, _, _) = post(gw, None, None, &initialize());
    assert_eq!(status, 401);
    let (status, _, body) = post(gw, Some("hrb_wrong"), None, &initialize());
    assert_eq!(status, 401);
    assert_eq!(message(&body)["error"]["code"], -32000, "{body}");

    stop_cleanly(&mut child);

    let calls = tool_calls(&data);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let refused = &calls[0];
    assert_eq!(refused["outcome"], "denied");
    assert_eq!(refused["verdict"]["decision"], "deny");
    // Refused calls are scored too: the leaked credential raises the threat.
    assert!(refused["threat_level"].is_string(), "{refused}");
    assert!(refused["scores"]["threat"].as_f64().is_some(), "{refused}");
    let audit_text = refused.to_string();
    assert!(
        audit_text.contains("github"),
        "the finding names its rule: {audit_text}"
    );
    assert!(
        !audit_text.contains(&token_like),
        "the secret never reaches the audit log: {audit_text}"
    );
    let export = harombe(&data).args(["audit", "export"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&export.stdout).contains(&token_like));
    let c = &calls[1];
    assert_eq!(c["agent"], "billing-bot");
    assert_eq!(c["target"], "echo");
    assert_eq!(c["outcome"], "success");
    assert_eq!(c["verdict"]["decision"], "allow");
    // Every call is scored: a threat level and the threat and anomaly scores.
    assert!(c["threat_level"].is_string(), "{c}");
    let threat = c["scores"]["threat"].as_f64().expect("threat score");
    assert!((0.0..=1.0).contains(&threat), "{c}");
    assert!(c["scores"]["anomaly"].is_f64(), "{c}");

    // Models train from the audit log and are saved for serve to load.
    let out = harombe(&data)
        .arg("--config")
        .arg(&cfg)
        .args(["train"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("billing-bot: trained on 2 tool calls"));
    assert!(data.join("models").join("billing-bot.model").is_file());
    let out = harombe(&data)
        .arg("--config")
        .arg(&cfg)
        .args(["audit", "query", "--kind", "auth", "--format", "json"])
        .output()
        .unwrap();
    let auth: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        auth["events"].as_array().unwrap().len(),
        2,
        "both refusals audited: {auth}"
    );
    let admin = harombe(&data)
        .arg("--config")
        .arg(&cfg)
        .args(["audit", "query", "--tool", "agents.add", "--format", "json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&admin.stdout).contains("billing-bot"));
    let v = harombe(&data)
        .arg("--config")
        .arg(&cfg)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));

    // A revoked token no longer works.
    assert!(
        harombe(&data)
            .arg("--config")
            .arg(&cfg)
            .args(["agents", "revoke", "billing-bot"])
            .status()
            .unwrap()
            .success()
    );
    let mut child = harombe(&data)
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", gw)).is_err() {
        assert!(Instant::now() < deadline, "gateway did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _, _) = post(gw, Some(&token), None, &initialize());
    assert_eq!(status, 401, "revoked token refused");
    stop_cleanly(&mut child);
}

#[test]
fn wrap_puts_a_stdio_server_behind_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = harombe(&data)
        .args(["wrap", "--agent", "local-agent", "--"])
        .arg(peer("HAROMBE_NODE22"))
        .arg(peer("HAROMBE_MCP_EVERYTHING"))
        .arg("stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |v: Value| {
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    };
    let mut recv = |id: i64| -> Value {
        loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "wrap closed its output"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}}),
    );
    assert!(recv(1)["result"].is_object());
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "over stdio"}}}),
    );
    assert!(recv(2)["result"].to_string().contains("over stdio"));
    send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "no-such-tool", "arguments": {}}}),
    );
    let unknown = recv(3);
    assert!(
        unknown["error"].is_object() || unknown["result"]["isError"] == true,
        "{unknown}"
    );
    // A batch: one line holding an array with an answer for each request (not for the
    // notification), matched by id.
    send(json!([
        {"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "first"}}},
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "x", "progress": 1}},
        {"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "second"}}},
    ]));
    let batch = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "wrap closed its output"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        if v.is_array() {
            break v;
        }
        assert!(
            v["id"] != 10 && v["id"] != 11,
            "a batch member answered on its own line: {v}"
        );
    };
    let answers = batch.as_array().unwrap();
    assert_eq!(answers.len(), 2, "{batch}");
    for (id, text) in [(10, "first"), (11, "second")] {
        let a = answers
            .iter()
            .find(|a| a["id"] == id)
            .expect("answer by id");
        assert!(a["result"].to_string().contains(text), "{a}");
    }
    drop(stdin); // end of input: wrap drains and exits
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let calls = tool_calls(&data);
    let echo: Vec<&Value> = calls.iter().filter(|c| c["target"] == "echo").collect();
    assert_eq!(echo.len(), 3);
    let echo: Vec<&Value> = echo
        .into_iter()
        .filter(|c| c["arguments"]["message"] == "over stdio")
        .collect();
    assert_eq!(echo.len(), 1);
    assert_eq!(echo[0]["agent"], "local-agent");
    assert_eq!(echo[0]["outcome"], "success");
}

/// `[inspect]` policies that redact: a finding in the arguments is cut out before the tool
/// sees it, a finding in the result before the agent sees it; the call goes on, and the
/// audit event says what was redacted where, never the value.
#[test]
fn redact_policies_cut_findings_out_of_arguments_and_results() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (gw, cp) = (free_port(), free_port());
    let cfg = config(dir.path(), gw, cp);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    // GitHub tokens are redacted in arguments; AWS key ids pass the arguments (logged) and
    // are redacted in results. A call carrying a credential scores a high threat, which
    // HITL would hold for a human: switched off here, this test is about inspection.
    text.push_str(
        "\n[hitl]\nenabled = false\n\n[inspect.arguments]\nblock = []\nredact = [\"github\"]\nlog = [\"aws\"]\n\n\
         [inspect.results]\nblock = []\nredact = [\"secret\"]\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let token = add_agent(&data, &cfg, "ops-bot");
    let (mut child, session, _) = serve_and_initialize(&data, &cfg, gw, &token);
    let github = format!("ghp_{}", "Zq8wE3rT5yU1iO4pL8sD6fG0hJ2kXc7vB9nM");
    let aws = "AKIAQ3RT5ZW7XK2LM4NP";
    let call = |id: u64, message: &str| {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": message}}});
        let (status, _, body) = post(gw, Some(&token), Some(&session), &req);
        assert_eq!(status, 200, "{body}");
        message_text(&message_of(&body))
    };
    let echoed = call(2, &format!("deploy with {github} now"));
    assert!(
        echoed.contains("deploy with [REDACTED:github-pat] now"),
        "the tool saw the redacted arguments: {echoed}"
    );
    let echoed = call(3, &format!("key {aws} end"));
    assert!(
        echoed.contains("[REDACTED:aws-access-key-id]") && !echoed.contains(aws),
        "the agent gets the result with the key cut out: {echoed}"
    );
    let echoed = call(4, "nothing to see");
    assert!(echoed.contains("nothing to see"), "{echoed}");

    stop_cleanly(&mut child);
    let calls = tool_calls(&data);
    assert_eq!(calls.len(), 3, "{calls:?}");
    // Newest first.
    let (clean, result_cut, args_cut) = (&calls[0], &calls[1], &calls[2]);
    let reasons = |c: &Value| c["verdict"]["reasons"].to_string();
    assert_eq!(args_cut["outcome"], "success", "{args_cut}");
    assert_eq!(args_cut["verdict"]["decision"], "allow");
    assert!(
        reasons(args_cut).contains("redacted github-pat in arguments"),
        "{args_cut}"
    );
    assert!(
        !reasons(args_cut).contains("in result"),
        "the tool never received the token, so its answer held none: {args_cut}"
    );
    assert_eq!(args_cut["details"]["findings"][0]["action"], "redact");
    assert_eq!(result_cut["outcome"], "success", "{result_cut}");
    assert!(
        reasons(result_cut).contains("redacted aws-access-key-id in result"),
        "{result_cut}"
    );
    let actions: Vec<&Value> = result_cut["details"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["action"])
        .collect();
    assert!(actions.contains(&&json!("log")) && actions.contains(&&json!("redact")));
    assert!(clean["details"]["findings"].is_null(), "{clean}");
    let export = harombe(&data).args(["audit", "export"]).output().unwrap();
    let export = String::from_utf8_lossy(&export.stdout);
    assert!(!export.contains(&github) && !export.contains(aws));
}

/// The first JSON-RPC response in a JSON or SSE body.
fn message_of(body: &str) -> Value {
    message(body)
}

/// The text of a tool result's content.
fn message_text(v: &Value) -> String {
    v["result"]["content"].to_string()
}

/// `harombe serve` in front of a stdio server whose tool description, resource text and
/// sampling request hold a GitHub token: with the default `[inspect]` policy the agent sees
/// each with the token cut out, each finding is a `decision` event, and nothing in the
/// audit log holds it.
#[test]
fn tool_definitions_and_resources_are_inspected_by_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (gw, cp) = (free_port(), free_port());
    let cfg = dir.path().join("harombe.toml");
    let fake = format!(
        "{}/../harombe-gateway/tests/it/fake_upstream.py",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::write(
        &cfg,
        format!(
            "[server]\ncontrol_addr = \"127.0.0.1:{cp}\"\n\n[gateway]\nlisten = \"127.0.0.1:{gw}\"\n\n\
             [gateway.upstreams.fake]\ntype = \"stdio\"\ncommand = \"python3\"\nargs = [{fake:?}]\n\n\
             [hitl]\nenabled = false\n"
        ),
    )
    .unwrap();
    let token = add_agent(&data, &cfg, "ops-bot");
    let (mut child, session, _) = serve_and_initialize(&data, &cfg, gw, &token);
    let key = "ghp_Zq8wE3rT5yU1iO4pL8sD6fG0hJ2kXc7vB9nM";

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let (status, _, body) = post(gw, Some(&token), Some(&session), &list);
    assert_eq!(status, 200, "{body}");
    let tools = message_of(&body)["result"]["tools"].clone();
    let leaky = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "leaky")
        .unwrap_or_else(|| panic!("leaky is listed (redacted, not hidden): {tools}"))
        .clone();
    let description = leaky["description"].as_str().unwrap();
    assert!(
        description.contains("[REDACTED:") && !description.contains(key),
        "{description}"
    );

    let read = json!({"jsonrpc": "2.0", "id": 3, "method": "resources/read",
        "params": {"uri": format!("file:///{key}")}});
    let (status, _, body) = post(gw, Some(&token), Some(&session), &read);
    assert_eq!(status, 200, "{body}");
    let text = message_of(&body)["result"]["contents"][0]["text"].clone();
    assert!(
        text.as_str().unwrap().contains("[REDACTED:") && !body.contains(key),
        "{body}"
    );

    // The server asks the agent's model something with the key in it, during a call.
    let ask = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "ask", "arguments": {"tag": "k", "text": "Use", "with_key": true}}});
    let (status, _, body) = post(gw, Some(&token), Some(&session), &ask);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("sampling/createMessage") && body.contains("Use [REDACTED:"),
        "{body}"
    );
    assert!(!body.contains(key), "{body}");
    // The agent's answer holds another token: the server gets -32004 instead.
    let request = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|m| m["method"] == "sampling/createMessage")
        .unwrap();
    let leaked = "ghp_Lk3jH8gF2dS5aP9oI1uY7tR4eW6qZ0xC5vB8";
    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"role": "assistant",
        "model": "m", "content": {"type": "text", "text": format!("Sure: {leaked}")}}});
    let (status, _, body) = post(gw, Some(&token), Some(&session), &answer);
    assert_eq!(status, 202, "{body}");
    let got = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "answered", "arguments": {"id": "s-k"}}});
    let (_, _, body) = post(gw, Some(&token), Some(&session), &got);
    let text = message_of(&body)["result"]["content"][0]["text"].clone();
    let got: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
    assert_eq!(got["error"]["code"], -32004, "{got}");
    assert!(!body.contains(leaked), "{body}");

    stop_cleanly(&mut child);
    let out = harombe(&data)
        .args(["audit", "query", "--kind", "decision", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let decisions = serde_json::from_slice::<Value>(&out.stdout).unwrap()["events"].clone();
    let about = |target: &str| {
        decisions
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["target"] == target)
            .unwrap_or_else(|| panic!("no decision about {target}: {decisions}"))
            .clone()
    };
    assert_eq!(about("leaky")["details"]["action"], "redacted");
    assert_eq!(about("resources/read")["details"]["action"], "redacted");
    let sampling: Vec<Value> = decisions
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == "sampling/createMessage")
        .cloned()
        .collect();
    let actions: Vec<&Value> = sampling.iter().map(|e| &e["details"]["action"]).collect();
    assert_eq!(actions.len(), 2, "{sampling:?}");
    assert!(actions.contains(&&json!("redacted")) && actions.contains(&&json!("blocked")));
    assert!(sampling.iter().all(|e| e["agent"] == "ops-bot"));
    // Both belong to the agent's call: the screened request and the agent's answer name
    // its session.
    assert!(
        sampling.iter().all(|e| e["session"] == session.as_str()),
        "{sampling:?}"
    );
    let export = harombe(&data).args(["audit", "export"]).output().unwrap();
    let export = String::from_utf8_lossy(&export.stdout).into_owned();
    assert!(!export.contains(key) && !export.contains(leaked));
}
