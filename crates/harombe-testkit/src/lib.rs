//! Test support shared by harombe's crates: real peers started for a test and stopped
//! after it. Only tests and benchmarks depend on this crate.
//!
//! PostgreSQL: when `HAROMBE_TEST_PG_URL` names a running server (scripts/test.sh starts
//! one throwaway cluster for the whole run), each test gets a fresh database on it.
//! Otherwise the test starts its own throwaway cluster with `initdb` and `pg_ctl` in a
//! temporary directory on a free port and stops it when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh, empty PostgreSQL database for one test.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    _cluster: Option<PgCluster>,
}

impl TestDb {
    /// Creates a database on the shared server, or on a cluster of its own.
    pub async fn new() -> TestDb {
        let (admin_url, cluster) = match std::env::var("HAROMBE_TEST_PG_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let c = PgCluster::start(false);
                (c.url("postgres"), Some(c))
            }
        };
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot connect to the test PostgreSQL at {admin_url}: {e}")
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let url = with_database(&admin_url, &name);
        TestDb {
            url,
            _cluster: cluster,
        }
    }
}

/// `url` with its database replaced by `db` (query parameters kept).
pub fn with_database(url: &str, db: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let (head, tail) = url.split_at(after_scheme);
    let host_end = tail.find(['/', '?']).unwrap_or(tail.len());
    let query = tail.find('?').map_or("", |q| &tail[q..]);
    format!("{head}{}/{db}{query}", &tail[..host_end])
}

/// A throwaway PostgreSQL cluster: `initdb` into a temporary directory, `pg_ctl start` on a
/// free loopback port, `pg_ctl stop` on drop.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

/// Finds PostgreSQL's server binaries: `HAROMBE_PG_BIN`, then Debian's layout, then PATH.
pub fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HAROMBE_PG_BIN") {
        return PathBuf::from(dir);
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .collect();
        versions.sort();
        if let Some(newest) = versions.pop() {
            return newest;
        }
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        if Path::new(dir).join("initdb").exists() {
            return PathBuf::from(dir);
        }
    }
    panic!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/test.sh, which installs them"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (PostgreSQL refuses root).
fn pg_command(bin: &Path, tool: &str) -> Command {
    let path = bin.join(tool);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

impl PgCluster {
    /// Starts a cluster; `durable` keeps fsync on (for benchmarks), otherwise it is off.
    pub fn start(durable: bool) -> PgCluster {
        let bin = pg_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("harombe-pg-")
            .tempdir()
            .expect("temp dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chown of the cluster directory to postgres failed"
            );
        }
        let data = dir.path().join("data");
        let out = pg_command(&bin, "initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let fsync = if durable { "on" } else { "off" };
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync={fsync} -c max_connections=200",
            dir.path().display()
        );
        let out = pg_command(&bin, "pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-l"])
            .arg(dir.path().join("log"))
            .args(["-o", &opts, "start"])
            .output()
            .expect("run pg_ctl");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{log}",
            String::from_utf8_lossy(&out.stderr)
        );
        PgCluster { dir, port, bin }
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
