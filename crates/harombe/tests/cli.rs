//! The `harombe` binary end to end: serve, audit query/export/import/verify, config
//! validate — against SQLite in a temporary data directory, and PostgreSQL.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use harombe_core::chain::ChainHash;
use harombe_core::{
    AgentId, AuditEvent, Decision, EventKind, Outcome, StoredEvent, ThreatLevel, Verdict,
};
use time::macros::datetime;

fn harombe(data: &Path) -> Command {
    let mut c = Command::cargo_bin("harombe").unwrap();
    c.arg("--data-dir")
        .arg(data)
        .env_remove("HAROMBE_CONFIG")
        .env("RUST_LOG", "warn");
    c
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(c: &mut Command) -> Out {
    let o = c.output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Writes an export file of `n` chained events (as `harombe audit export` would).
fn export_file(path: &Path, n: u64) -> Vec<AuditEvent> {
    let mut prev = ChainHash::GENESIS;
    let mut lines = String::new();
    let mut events = Vec::new();
    for seq in 1..=n {
        let mut e = AuditEvent::new(
            datetime!(2026-04-01 08:00 UTC) + time::Duration::seconds(seq as i64 * 61),
            [EventKind::ToolCall, EventKind::Auth, EventKind::Decision][(seq % 3) as usize],
            [Outcome::Success, Outcome::Denied][(seq % 2) as usize],
        )
        .with_agent(AgentId::new(["alpha", "beta"][(seq % 2) as usize]).unwrap())
        .with_target(if seq == 7 {
            "x'; DROP TABLE audit_events; --".to_string()
        } else {
            format!("tool.{}", seq % 4)
        });
        e.verdict = Some(Verdict {
            decision: [Decision::Allow, Decision::Deny, Decision::Hold][(seq % 3) as usize],
            reasons: vec!["r".into()],
        });
        e.threat_level = Some(ThreatLevel::ALL[(seq % 5) as usize]);
        e.arguments = Some(serde_json::json!({ "n": seq, "text": "héllo \"quoted\"" }));
        e.scores.insert("anomaly".into(), seq as f64 / 7.0);
        let body = e.encode().unwrap();
        prev = prev.next(seq, &body);
        let stored = StoredEvent {
            seq,
            hash: prev,
            event: e.clone(),
        };
        lines.push_str(&serde_json::to_string(&stored).unwrap());
        lines.push('\n');
        events.push(e);
    }
    std::fs::write(path, lines).unwrap();
    events
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn serve_answers_health_audits_itself_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("harombe.toml");
    std::fs::write(
        &cfg,
        format!("[server]\ncontrol_addr = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let mut child = harombe(&dir.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        if let Some(r) = http_get(port, "/healthz").filter(|r| !r.is_empty()) {
            break r;
        }
        assert!(Instant::now() < deadline, "serve did not come up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "serve exits cleanly on SIGTERM: {status:?}"
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("harombe is up"), "{stderr}");

    let q = run(harombe(&dir.path().join("data")).args([
        "audit",
        "query",
        "--kind",
        "config_change",
        "--format",
        "json",
    ]));
    assert_eq!(q.code, 0, "{}", q.stderr);
    let page: serde_json::Value = serde_json::from_str(&q.stdout).unwrap();
    let targets: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, vec!["serve.stop", "serve.start"]);
    let v = run(harombe(&dir.path().join("data")).args(["audit", "verify"]));
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.starts_with("intact: 2 events"), "{}", v.stdout);
}

#[test]
fn export_import_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.jsonl");
    let events = export_file(&original, 40);
    let a = dir.path().join("a");
    let imp = run(harombe(&a).args(["audit", "import"]).arg(&original));
    assert_eq!(imp.code, 0, "{}{}", imp.stdout, imp.stderr);
    assert!(
        imp.stdout.contains("imported 40 events (seq 1..=40)"),
        "{}",
        imp.stdout
    );

    let first = dir.path().join("first.jsonl");
    let exp = run(harombe(&a)
        .args(["audit", "export", "--format", "jsonl", "-o"])
        .arg(&first));
    assert_eq!(exp.code, 0, "{}", exp.stderr);
    let first_text = std::fs::read_to_string(&first).unwrap();
    let first_lines: Vec<&str> = first_text.lines().collect();
    assert_eq!(first_lines.len(), 41, "40 events and the audited import");
    // Events come back exactly as written, with the same chain.
    assert_eq!(
        first_lines[..40].join("\n") + "\n",
        std::fs::read_to_string(&original).unwrap()
    );
    let last: serde_json::Value = serde_json::from_str(first_lines[40]).unwrap();
    assert_eq!(last["target"], "audit.import");
    assert_eq!(last["details"]["imported"], 40);

    let b = dir.path().join("b");
    let imp = run(harombe(&b).args(["audit", "import"]).arg(&first));
    assert_eq!(imp.code, 0, "{}{}", imp.stdout, imp.stderr);
    let exp = run(harombe(&b).args(["audit", "export"]));
    let second: Vec<&str> = exp.stdout.lines().collect();
    assert_eq!(
        second[..41],
        first_lines[..],
        "a second round trip changes nothing"
    );
    for e in &events {
        let q = run(harombe(&b)
            .args(["audit", "query", "--format", "json", "--agent"])
            .arg(e.agent.as_ref().unwrap().as_str()));
        assert!(q.stdout.contains(&e.id.to_string()));
    }
    // Importing the same events again refuses each as a duplicate, and says so.
    let again = run(harombe(&b).args(["audit", "import"]).arg(&original));
    assert_eq!(again.code, 1);
    assert!(
        again.stdout.contains("imported 0 events"),
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("refused 40:"), "{}", again.stdout);
    assert!(
        again.stdout.contains(&format!(
            "line 1: event {} is already in the log",
            events[0].id
        )),
        "{}",
        again.stdout
    );
}

#[test]
fn import_reports_bad_lines_and_refuses_a_broken_chain() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    export_file(&file, 10);
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.insert(3, "{not json".into());
    lines.insert(
        6,
        r#"{"seq": 99, "hash": "00", "kind": "tool_call"}"#.into(),
    );
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = run(harombe(&dir.path().join("d"))
        .args(["audit", "import"])
        .arg(&file));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("imported 10 events"), "{}", out.stdout);
    assert!(
        out.stdout.contains("line 4: not a JSON object"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("line 7: invalid \"hash\""),
        "{}",
        out.stdout
    );

    // A changed event in the file: refused unless asked.
    let tampered = dir.path().join("tampered.jsonl");
    export_file(&tampered, 10);
    let text = std::fs::read_to_string(&tampered)
        .unwrap()
        .replacen("\"n\":5", "\"n\":6", 1);
    std::fs::write(&tampered, text).unwrap();
    let data = dir.path().join("t");
    let out = run(harombe(&data).args(["audit", "import"]).arg(&tampered));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("line 5: event seq 5") && out.stderr.contains("changed"),
        "{}",
        out.stderr
    );
    let out = run(harombe(&data)
        .args(["audit", "import", "--allow-broken-chain"])
        .arg(&tampered));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let q = run(harombe(&data).args([
        "audit",
        "query",
        "--tool",
        "audit.import",
        "--format",
        "json",
    ]));
    assert!(q.stdout.contains("file_chain_broken_at"), "{}", q.stdout);
    assert!(
        q.stdout.contains("line 5"),
        "the import is audited with the break: {}",
        q.stdout
    );
}

#[test]
fn verify_names_the_tampered_event() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let events = export_file(&file, 30);
    let data = dir.path().join("d");
    assert_eq!(
        run(harombe(&data).args(["audit", "import"]).arg(&file)).code,
        0
    );
    let db = rusqlite::Connection::open(data.join("audit.db")).unwrap();
    db.execute_batch(
        "UPDATE audit_events SET body = CAST(replace(CAST(body AS TEXT), '\"n\":12', '\"n\":13') AS BLOB) WHERE seq = 12",
    )
    .unwrap();
    drop(db);
    let v = run(harombe(&data).args(["audit", "verify"]));
    assert_eq!(v.code, 1, "{}{}", v.stdout, v.stderr);
    assert!(
        v.stdout
            .contains(&format!("event seq 12 (id {}) was changed", events[11].id)),
        "{}",
        v.stdout
    );
    let v = run(harombe(&data).args(["audit", "verify", "--format", "json"]));
    let report: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(report["problem"]["problem"], "changed");
    assert_eq!(report["problem"]["seq"], 12);
    assert_eq!(report["checked"], 11);
}

#[test]
fn query_filters_and_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let events = export_file(&file, 30);
    let data = dir.path().join("d");
    assert_eq!(
        run(harombe(&data).args(["audit", "import"]).arg(&file)).code,
        0
    );
    let q = run(harombe(&data).args([
        "audit",
        "query",
        "--format",
        "json",
        "--tool",
        "x'; DROP TABLE audit_events; --",
    ]));
    let page: serde_json::Value = serde_json::from_str(&q.stdout).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["id"], events[6].id.to_string());
    let q = run(harombe(&data).args([
        "audit",
        "query",
        "--format",
        "json",
        "--agent",
        "beta",
        "--min-threat",
        "high",
        "--verdict",
        "deny",
    ]));
    let got: Vec<String> = serde_json::from_str::<serde_json::Value>(&q.stdout).unwrap()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = events
        .iter()
        .rev()
        .filter(|e| {
            e.agent.as_ref().unwrap().as_str() == "beta"
                && e.threat_level >= Some(ThreatLevel::High)
                && e.verdict.as_ref().unwrap().decision == Decision::Deny
        })
        .map(|e| e.id.to_string())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    let q = run(harombe(&data).args([
        "audit",
        "query",
        "--since",
        "2026-04-01T08:05:00Z",
        "--until",
        "2026-04-01T08:10:00Z",
        "--format",
        "json",
    ]));
    let n = serde_json::from_str::<serde_json::Value>(&q.stdout).unwrap()["events"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        n,
        events
            .iter()
            .filter(|e| e.timestamp >= datetime!(2026-04-01 08:05 UTC)
                && e.timestamp < datetime!(2026-04-01 08:10 UTC))
            .count()
    );
    // Table output pages with a cursor.
    let q = run(harombe(&data).args(["audit", "query", "--limit", "5"]));
    assert_eq!(q.stdout.lines().count(), 7, "{}", q.stdout);
    assert!(q.stdout.contains("(more: --cursor 27)"), "{}", q.stdout);
    for (flag, value, needle) in [
        ("--kind", "tool-call", "unknown event kind"),
        ("--since", "yesterday", "--since"),
        ("--min-threat", "severe", "unknown threat level"),
        ("--agent", "bad name", "agent id"),
    ] {
        let q = run(harombe(&data).args(["audit", "query", flag, value]));
        assert_eq!(q.code, 2, "{flag}");
        assert!(q.stderr.contains(needle), "{flag}: {}", q.stderr);
    }
}

#[test]
fn a_corrupt_database_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("d")).unwrap();
    let db = dir.path().join("d").join("audit.db");
    std::fs::write(&db, b"this is not a database at all, just text\n").unwrap();
    let out = run(harombe(&dir.path().join("d")).args(["audit", "verify"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(&db.display().to_string()),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        b"this is not a database at all, just text\n"
    );
}

#[test]
fn config_validate_names_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[server]\ncontrol_addr = \"127.0.0.1:9\"\n\n[store]\nretention_days = 30\n",
    )
    .unwrap();
    let out = run(Command::cargo_bin("harombe")
        .unwrap()
        .args(["config", "validate"])
        .arg(&good));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\ncontrol_addr = \"127.0.0.1:9\"\n\n[store]\nretention_dayz = 30\n",
    )
    .unwrap();
    let out = run(Command::cargo_bin("harombe")
        .unwrap()
        .args(["config", "validate"])
        .arg(&bad));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("line 5") && out.stderr.contains("retention_dayz"),
        "{}",
        out.stderr
    );
    let yaml = dir.path().join("c.yaml");
    std::fs::write(&yaml, "store:\n  full_policy: drop\n").unwrap();
    let out = run(Command::cargo_bin("harombe")
        .unwrap()
        .args(["config", "validate"])
        .arg(&yaml));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("drop"), "{}", out.stderr);
    // A threat-intelligence feed with both a path and a URL is refused by name.
    let feeds = dir.path().join("feeds.toml");
    std::fs::write(
        &feeds,
        "[[detect.intel_feeds]]\nname = \"drop-list\"\nformat = \"spamhaus_drop\"\n\
         path = \"/tmp/drop.txt\"\nurl = \"https://feeds.example/drop.txt\"\n",
    )
    .unwrap();
    let out = run(Command::cargo_bin("harombe")
        .unwrap()
        .args(["config", "validate"])
        .arg(&feeds));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("drop-list") && out.stderr.contains("exactly one of path and url"),
        "{}",
        out.stderr
    );
    // A broken --config stops every other command before it does anything.
    let out = run(harombe(&dir.path().join("d"))
        .arg("--config")
        .arg(&bad)
        .args(["audit", "verify"]));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("retention_dayz"));
    assert!(!dir.path().join("d").exists());
}

#[test]
fn config_validate_names_both_rules_of_a_contradiction_or_an_unreachable_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |name: &str, priority: u32, action: &str, tools: &str| {
        format!(
            "[[hitl.rules]]\nname = \"{name}\"\npriority = {priority}\naction = \"{action}\"\n\
             reason = \"r\"\ntools = [{tools}]\n"
        )
    };
    let check = |text: String, want: &[&str]| {
        let f = dir.path().join("rules.toml");
        std::fs::write(&f, text).unwrap();
        let out = run(Command::cargo_bin("harombe")
            .unwrap()
            .args(["config", "validate"])
            .arg(&f));
        assert_eq!(out.code, 1, "{}", out.stderr);
        for w in want {
            assert!(out.stderr.contains(w), "{w:?} missing: {}", out.stderr);
        }
    };
    // Same conditions, different actions.
    check(
        rule("approve-deletes", 10, "auto_approve", "\"delete_*\"")
            + &rule("deny-deletes", 10, "deny", "\"delete_*\""),
        &["approve-deletes", "deny-deletes", "contradict"],
    );
    // A broader rule of higher priority hides a narrower one.
    check(
        rule("everything", 50, "require_approval", "\"*\"")
            + &rule("just-deletes", 10, "deny", "\"delete_records\""),
        &["everything", "just-deletes", "unreachable"],
    );
    // Rules that can both fire are fine.
    let f = dir.path().join("ok.toml");
    std::fs::write(
        &f,
        rule("deny-drops", 50, "deny", "\"drop_*\"")
            + &rule("approve-reads", 10, "auto_approve", "\"read_*\""),
    )
    .unwrap();
    let out = run(Command::cargo_bin("harombe")
        .unwrap()
        .args(["config", "validate"])
        .arg(&f));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend_through_the_cli() {
    let db = harombe_testkit::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("harombe.toml");
    std::fs::write(
        &cfg,
        "[store]\nbackend = \"postgres\"\nurl = \"env:HAROMBE_TEST_AUDIT_URL\"\n",
    )
    .unwrap();
    let file = dir.path().join("events.jsonl");
    export_file(&file, 25);
    let pg = |args: &[&str]| {
        let mut c = harombe(&dir.path().join("unused"));
        c.arg("--config")
            .arg(&cfg)
            .env("HAROMBE_TEST_AUDIT_URL", &db.url)
            .args(args);
        run(&mut c)
    };
    let out = pg(&["audit", "import", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = pg(&["audit", "verify"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with("intact: 26 events"),
        "{}",
        out.stdout
    );
    let exported = pg(&["audit", "export"]);
    let lines: Vec<&str> = exported.stdout.lines().collect();
    let original = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        lines[..25].join("\n") + "\n",
        original,
        "same bytes and chain from PostgreSQL"
    );
    assert!(
        !dir.path().join("unused").exists(),
        "nothing written to the data dir"
    );
}
