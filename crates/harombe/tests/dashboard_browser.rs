//! The dashboard in headless Chromium (Debian `chromium`, driven by npm playwright-core;
//! scripts/setup/50-browser.sh installs both): the real binary serves the page, the
//! browser logs in, watches the metrics move while an agent's calls flow through the
//! gateway, approves a held call from the page, and the agent's call completes.
//! Screenshots go to `target/test-artifacts/dashboard/`.

mod common;

use std::process::Command;

use common::{ADMIN, add_agent, config, free_port, harombe, start};

fn peer(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/test.sh, which installs Chromium and playwright-core")
    })
}

#[test]
fn approve_a_held_call_from_the_dashboard_in_a_real_browser() {
    let chromium = peer("HAROMBE_CHROMIUM");
    let modules = peer("HAROMBE_NODE_MODULES");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (gw, cp) = (free_port(), free_port());
    let cfg = config(dir.path(), gw, cp, 120, "backend = \"sqlite\"");
    let token = add_agent(&data, &cfg, "browser-bot");
    let server = start(&data, &cfg, gw, cp);

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-artifacts/dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs");
    let out = Command::new(std::env::var("HAROMBE_NODE22").unwrap_or_else(|_| "node".into()))
        .arg(&script)
        .env(
            "DASHBOARD_URL",
            format!("http://127.0.0.1:{}/", server.control),
        )
        .env("ADMIN_TOKEN", ADMIN)
        .env(
            "MCP_URL",
            format!("http://127.0.0.1:{}/mcp", server.gateway),
        )
        .env("AGENT_TOKEN", &token)
        .env("SCREENSHOTS", &shots)
        .env("HAROMBE_CHROMIUM", &chromium)
        .env("HAROMBE_NODE_MODULES", &modules)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser scenario failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("held call completed after approval"),
        "{stdout}"
    );
    for shot in ["1-metrics.png", "2-held.png", "3-approved.png"] {
        let len = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "{shot} is missing or empty ({len} bytes)");
    }

    // The decision was made with the dashboard's token and is in the audit log.
    let out = harombe(&data, &cfg)
        .args(["approvals", "list", "--state", "approved", "--json"])
        .output()
        .unwrap();
    let approved = String::from_utf8(out.stdout).unwrap();
    assert!(
        approved.contains("\"decided_by\":\"token:ops\""),
        "{approved}"
    );
    assert!(
        approved.contains("\"tool\":\"delete_records\""),
        "{approved}"
    );
    drop(server);
}
