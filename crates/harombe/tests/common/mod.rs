//! Helpers for tests that run `harombe serve` with the built-in demo upstream and API
//! tokens from the environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

pub const ADMIN: &str = "hrb_admin_test_token_for_hitl_e2e_0123456789";
pub const READER: &str = "hrb_read_test_token_for_hitl_e2e_0123456789";

pub fn harombe(data: &Path, config: &Path) -> Command {
    let mut c = Command::cargo_bin("harombe").unwrap();
    c.arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("HAROMBE_TEST_ADMIN", ADMIN)
        .env("HAROMBE_TEST_READER", READER);
    c
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub child: Child,
    pub gateway: u16,
    pub control: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config with the demo upstream, API tokens from the environment, an approval
/// deadline of `timeout` seconds and `store` (TOML lines for `[store]`).
pub fn config(dir: &Path, gateway: u16, control: u16, timeout: u64, store: &str) -> PathBuf {
    let exe = assert_cmd::cargo::cargo_bin("harombe");
    let path = dir.join(format!("harombe-{gateway}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[server]
control_addr = "127.0.0.1:{control}"

[store]
{store}

[gateway]
listen = "127.0.0.1:{gateway}"

[gateway.upstreams.demo]
type = "stdio"
command = "{exe}"
args = ["demo-upstream"]

[hitl]
approval_timeout = {timeout}

[[api.tokens]]
name = "ops"
role = "admin"
token = "env:HAROMBE_TEST_ADMIN"

[[api.tokens]]
name = "viewer"
role = "read"
token = "env:HAROMBE_TEST_READER"
"#,
            exe = exe.display()
        ),
    )
    .unwrap();
    path
}

pub fn start(data: &Path, config: &Path, gateway: u16, control: u16) -> Server {
    up(harombe(data, config), gateway, control)
}

/// Spawns `harombe serve` from `cmd` and waits until both listeners accept.
pub fn up(mut cmd: Command, gateway: u16, control: u16) -> Server {
    let child = cmd
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Owned by the guard from here on: killed and reaped whatever happens next.
    let server = Server {
        child,
        gateway,
        control,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", gateway)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", control)).is_err()
    {
        assert!(Instant::now() < deadline, "harombe serve did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

pub fn add_agent(data: &Path, config: &Path, name: &str) -> String {
    let out = harombe(data, config)
        .args(["agents", "add", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
