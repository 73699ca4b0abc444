//! `harombe demo` comes alive on its own: the workload's calls, attacks and held calls show
//! up in the control plane's metrics and approvals queue, and it stops by itself.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{ADMIN, free_port, harombe};
use serde_json::Value;

#[test]
fn the_demo_fills_the_dashboard_with_calls_attacks_and_held_calls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let (gw, cp) = (free_port(), free_port());
    // The demo adds its own upstream; the file only moves the listeners and sets a token.
    let cfg = dir.path().join("demo.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ncontrol_addr = \"127.0.0.1:{cp}\"\n[gateway]\nlisten = \"127.0.0.1:{gw}\"\n\
             [[api.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"env:HAROMBE_TEST_ADMIN\"\n"
        ),
    )
    .unwrap();
    let mut child = harombe(&data, &cfg)
        .args(["demo", "--duration", "40"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::blocking::Client::new();
    let get = |path: &str| -> Option<Value> {
        http.get(format!("http://127.0.0.1:{cp}{path}"))
            .bearer_auth(ADMIN)
            .send()
            .ok()?
            .json()
            .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(35);
    let mut seen = Value::Null;
    let alive = loop {
        if let (Some(m), Some(a)) = (get("/api/metrics"), get("/api/approvals?state=pending")) {
            let n = |k: &str| m[k].as_u64().unwrap_or(0);
            let pending = a["approvals"].as_array().map_or(0, Vec::len);
            if n("tool_calls_24h") >= 10
                && n("active_agents_24h") >= 3
                && n("auth_failures_1h") >= 1
                && n("secrets_detected_24h") >= 1
                && pending >= 1
            {
                break true;
            }
            seen = serde_json::json!({"metrics": m, "pending": pending});
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        alive,
        "the demo did not produce the expected activity: {seen}"
    );
    assert!(data.join(".harombe-demo").exists());
}
