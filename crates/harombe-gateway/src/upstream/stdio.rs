//! A stdio upstream: a child process (its own process group, killed with the gateway)
//! speaking newline-delimited JSON-RPC. It is restarted with exponential backoff when it
//! exits; its stderr is logged line by line and the last lines are kept for errors.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Link, LinkState, Shared, Upstream};
use crate::error::GatewayError;

/// What to run.
#[derive(Clone, Debug)]
pub struct StdioSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Restart after exit (`false` for `harombe wrap`: the child's exit ends the wrap).
    pub restart: bool,
    pub handshake_timeout: Duration,
    pub max_line: usize,
}

#[derive(Debug)]
struct StdioLink {
    name: String,
    writer: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
}

#[async_trait]
impl Link for StdioLink {
    async fn send(&self, _id: Option<u64>, bytes: Vec<u8>) -> Result<(), GatewayError> {
        let tx = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match tx {
            Some(tx) => tx.send(bytes).await.map_err(|_| self.down()),
            None => Err(self.down()),
        }
    }
}

impl StdioLink {
    fn down(&self) -> GatewayError {
        GatewayError::UpstreamUnavailable {
            upstream: self.name.clone(),
            problem: "the process is not running".into(),
        }
    }
}

/// Starts the supervisor; returns the upstream handle at once (state `Starting`).
pub fn spawn(shared: Arc<Shared>, spec: StdioSpec, shutdown: CancellationToken) -> Upstream {
    let link = Arc::new(StdioLink {
        name: shared.name.clone(),
        writer: Mutex::new(None),
    });
    let up = Upstream::new(shared, link.clone());
    tokio::spawn(supervise(up.clone(), link, spec, shutdown));
    up
}

async fn supervise(
    up: Upstream,
    link: Arc<StdioLink>,
    spec: StdioSpec,
    shutdown: CancellationToken,
) {
    let shared = up.shared.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        shared.state.send_replace(LinkState::Starting);
        let started = tokio::time::Instant::now();
        let code = match run_once(&up, &link, &spec, &shutdown).await {
            Ok(code) => code,
            Err(e) => {
                tracing::warn!(upstream = %shared.name, error = %e, "upstream failed to start");
                -1
            }
        };
        *link.writer.lock().unwrap_or_else(|e| e.into_inner()) = None;
        shared.fail_all(&format!("the process exited (code {code})"));
        if shutdown.is_cancelled() || !spec.restart {
            shared.state.send_replace(LinkState::Exited(code));
            return;
        }
        shared.state.send_replace(LinkState::Down(format!(
            "exited with code {code}; restarting"
        )));
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(100);
        }
        tracing::warn!(upstream = %shared.name, code, backoff_ms = backoff.as_millis() as u64, "upstream exited; restarting");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => {
                shared.state.send_replace(LinkState::Exited(code));
                return;
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn run_once(
    up: &Upstream,
    link: &StdioLink,
    spec: &StdioSpec,
    shutdown: &CancellationToken,
) -> Result<i32, GatewayError> {
    let shared = &up.shared;
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child: Child = cmd.spawn().map_err(|e| GatewayError::UpstreamUnavailable {
        upstream: shared.name.clone(),
        problem: format!("cannot start {:?}: {e}", spec.command),
    })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(GatewayError::Internal("child pipes missing".into()));
    };

    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    *link.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    let writer = tokio::spawn(async move {
        while let Some(mut line) = rx.recv().await {
            line.push(b'\n');
            if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });

    let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let name = shared.name.clone();
    let tail2 = tail.clone();
    let err_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(upstream = %name, stderr = %line, "upstream stderr");
            let mut t = tail2.lock().unwrap_or_else(|e| e.into_inner());
            if t.len() == 20 {
                t.pop_front();
            }
            t.push_back(line);
        }
    });

    let reader_shared = shared.clone();
    let max_line = spec.max_line;
    let mut reader = tokio::spawn(async move {
        let mut r = BufReader::with_capacity(64 * 1024, stdout);
        let mut buf = Vec::new();
        loop {
            match read_line_bounded(&mut r, &mut buf, max_line).await {
                Ok(0) => break,
                Ok(_) => reader_shared.on_bytes(&buf, None),
                Err(e) => {
                    tracing::warn!(upstream = %reader_shared.name, error = %e, "upstream stdout unreadable");
                    break;
                }
            }
        }
    });

    // Handshake, then Up.
    let hs = tokio::select! {
        r = up.handshake(spec.handshake_timeout) => r,
        _ = &mut reader => Err(GatewayError::UpstreamUnavailable { upstream: shared.name.clone(), problem: "exited during initialize".into() }),
    };
    match hs {
        Ok(_) => {
            shared.state.send_replace(LinkState::Up);
            tracing::info!(upstream = %shared.name, "upstream ready");
            tokio::select! {
                _ = &mut reader => {}
                () = shutdown.cancelled() => {}
            }
        }
        Err(e) => {
            let t: Vec<String> = tail
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect();
            tracing::warn!(upstream = %shared.name, error = %e, stderr = ?t, "upstream handshake failed");
        }
    }
    writer.abort();
    reader.abort();
    // Give a wrapped server the chance to exit on its own after stdin closes.
    *link.writer.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let status = match tokio::time::timeout(Duration::from_millis(500), child.wait()).await {
        Ok(Ok(s)) => s.code().unwrap_or(-1),
        _ => {
            let _ = child.start_kill();
            child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1)
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(200), err_task).await;
    let t: Vec<String> = tail
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    if !t.is_empty() && status != 0 {
        tracing::warn!(upstream = %shared.name, status, stderr_tail = ?t, "upstream stopped");
    }
    Ok(status)
}

/// Reads one line (without its `\n`) into `buf`, refusing lines longer than `max`
/// (they are skipped). Returns 0 at EOF.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    buf.clear();
    let mut total = 0usize;
    let mut overflow = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if total == 0 { 0 } else { total.max(1) });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        total += take;
        if !overflow {
            let piece = &chunk[..if done { take - 1 } else { take }];
            if buf.len() + piece.len() > max {
                overflow = true;
                buf.clear();
            } else {
                buf.extend_from_slice(piece);
            }
        }
        r.consume(take);
        if done {
            if overflow {
                tracing::warn!(max, "line longer than the limit skipped");
                buf.clear();
            }
            return Ok(total);
        }
    }
}
