//! The stdio transport: `harombe wrap --agent NAME -- <server command>` sits between a
//! stdio MCP client (our stdin/stdout) and a stdio MCP server (a child), with the same
//! pipeline and audit as the HTTP endpoint. The agent is named on the command line: the
//! client is the local process that started us.

use std::sync::Arc;

use harombe_core::AgentId;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::{ClientCtx, Engine};
use crate::error::GatewayError;
use crate::jsonrpc::{self, Incoming};
use crate::upstream::stdio::{StdioSpec, read_line_bounded};
use crate::upstream::{CallSink, LinkState};
use crate::{GatewayConfig, GatewayDeps};

/// Runs `command` as the upstream and serves the client on `stdin`/`stdout` until the
/// client closes stdin (then 0, after draining) or the server exits (then its code).
pub async fn wrap<R, W>(
    config: GatewayConfig,
    deps: GatewayDeps,
    agent: AgentId,
    command: Vec<String>,
    stdin: R,
    stdout: W,
) -> Result<i32, GatewayError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (program, args) = command
        .split_first()
        .ok_or_else(|| GatewayError::Config("wrap needs a server command".into()))?;
    let name: String = std::path::Path::new(program)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let name = if name.is_empty() {
        "wrapped".to_owned()
    } else {
        name
    };
    let limits = config.limits.clone();
    let spec = StdioSpec {
        command: program.clone(),
        args: args.to_vec(),
        env: Default::default(),
        cwd: None,
        restart: false,
        handshake_timeout: limits.call_timeout,
        max_line: limits.max_body_bytes.saturating_mul(4).max(1 << 20),
    };
    let stop = CancellationToken::new();
    let engine = Engine::start(config, deps, stop.clone(), Some((name, spec)))?;
    let session = engine
        .sessions
        .create(agent.clone(), crate::engine::DEFAULT_VERSION.to_owned())?;

    // Everything for the client goes through one writer, a line per message.
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
    session.attach(out_tx.clone());
    let writer = tokio::spawn(async move {
        let mut stdout = stdout;
        while let Some(mut m) = out_rx.recv().await {
            m.push(b'\n');
            if stdout.write_all(&m).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });

    let mut state = engine.upstreams[0].shared.state.subscribe();
    let mut reader = BufReader::new(stdin);
    let mut line = Vec::new();
    let max = limits.max_body_bytes;
    let exit = loop {
        tokio::select! {
            r = read_line_bounded(&mut reader, &mut line, max) => {
                match r {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => {
                        if n > 1 && line.is_empty() {
                            // Over the limit: the line was skipped.
                            let e = GatewayError::ResourceLimit(format!("message larger than {max} bytes"));
                            engine.audit_refusal(Some(&agent), Some(&session), "", &e).await;
                            let _ = out_tx.send(e.to_rpc().response(None)).await;
                            continue;
                        }
                        if line.trim_ascii().is_empty() {
                            continue;
                        }
                        dispatch(&engine, &agent, &session, &out_tx, std::mem::take(&mut line)).await;
                    }
                }
            }
            r = async { state.wait_for(|s| matches!(s, LinkState::Exited(_))).await.map(|s| s.clone()) } => {
                let code = match r {
                    Ok(LinkState::Exited(c)) => c,
                    _ => -1,
                };
                break Some(code);
            }
        }
    };
    engine.tracker.close();
    let _ = tokio::time::timeout(limits.drain_timeout, engine.tracker.wait()).await;
    stop.cancel();
    let code = match exit {
        Some(c) => c,
        None => {
            // The client hung up: the server is stopped; that is a clean exit for us.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                let _ = state.wait_for(|s| matches!(s, LinkState::Exited(_))).await;
            })
            .await;
            0
        }
    };
    drop(out_tx);
    session.attach(mpsc::channel(1).0);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    Ok(code)
}

async fn dispatch(
    engine: &Arc<Engine>,
    agent: &AgentId,
    session: &Arc<crate::session::Session>,
    out: &mpsc::Sender<Vec<u8>>,
    line: Vec<u8>,
) {
    let len = line.len();
    let incoming = match jsonrpc::decode(&line, engine.config.limits.max_depth) {
        Ok(i) => i,
        Err(e) => {
            engine
                .audit_refusal(Some(agent), Some(session), "", &e)
                .await;
            let _ = out.send(e.to_rpc().response(None)).await;
            return;
        }
    };
    let ctx = ClientCtx {
        agent: agent.clone(),
        session: Some(session.clone()),
        sink: Some(CallSink { tx: out.clone() }),
    };
    let engine2 = engine.clone();
    let out = out.clone();
    match incoming {
        Incoming::Single(item) => {
            engine.tracker.spawn(async move {
                if let Some(a) = answer(&engine2, &ctx, item, len).await {
                    let _ = out.send(a).await;
                }
            });
        }
        // A batch is answered with one array on one line (JSON-RPC 2.0), holding the
        // answers of its requests; a batch of notifications gets no answer.
        Incoming::Batch(items) => {
            engine.tracker.spawn(async move {
                let per = len / items.len().max(1);
                let answers: Vec<Vec<u8>> = futures::future::join_all(
                    items
                        .into_iter()
                        .map(|item| answer(&engine2, &ctx, item, per)),
                )
                .await
                .into_iter()
                .flatten()
                .collect();
                if answers.is_empty() {
                    return;
                }
                let mut line = vec![b'['];
                for (i, a) in answers.iter().enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    line.extend_from_slice(a);
                }
                line.push(b']');
                let _ = out.send(line).await;
            });
        }
    }
}

async fn answer(
    engine: &Engine,
    ctx: &ClientCtx,
    item: Result<jsonrpc::Message, jsonrpc::Invalid>,
    len: usize,
) -> Option<Vec<u8>> {
    match item {
        Ok(m) => engine.handle(ctx, m, len).await,
        Err(inv) => {
            engine
                .audit_refusal(Some(&ctx.agent), ctx.session.as_deref(), "", &inv.error)
                .await;
            Some(inv.error.to_rpc().response(inv.id.as_deref()))
        }
    }
}
