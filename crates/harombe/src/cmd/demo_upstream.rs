//! `harombe demo-upstream` (hidden): a small MCP server on stdin/stdout with a handful of
//! made-up business tools, so `harombe demo` has an upstream without anything installed.
//! Newline-delimited JSON-RPC, as the MCP stdio transport specifies. Nothing it does
//! touches the machine: every tool answers with canned, deterministic text.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use serde_json::{Value, json};

/// The demo tools: (name, description, input schema properties, required).
fn tools() -> Value {
    let tool = |name: &str, description: &str, props: Value, required: &[&str]| {
        json!({
            "name": name,
            "description": description,
            "inputSchema": {"type": "object", "properties": props, "required": required},
        })
    };
    let s = json!({"type": "string"});
    json!([
        tool(
            "search_docs",
            "Search the internal documentation.",
            json!({"query": s}),
            &["query"]
        ),
        tool(
            "read_file",
            "Read a file from the project workspace.",
            json!({"path": s}),
            &["path"]
        ),
        tool(
            "send_email",
            "Send an e-mail.",
            json!({"to": s, "subject": s, "body": s}),
            &["to", "subject"]
        ),
        tool(
            "write_file",
            "Write a file in the project workspace.",
            json!({"path": s, "content": s}),
            &["path", "content"]
        ),
        tool(
            "delete_records",
            "Delete rows from a customer table.",
            json!({"table": s, "filter": s}),
            &["table"]
        ),
        tool(
            "run_command",
            "Run a shell command on the build host.",
            json!({"command": s}),
            &["command"]
        ),
    ])
}

fn call(name: &str, args: &Value) -> Option<String> {
    let arg = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("");
    Some(match name {
        "search_docs" => format!(
            "3 results for {:?}: onboarding.md, runbook.md, api.md",
            arg("query")
        ),
        "read_file" => format!("contents of {}: (42 lines)", arg("path")),
        "send_email" => format!("queued mail to {}", arg("to")),
        "write_file" => format!("wrote {} bytes to {}", arg("content").len(), arg("path")),
        "delete_records" => format!("deleted 17 rows from {}", arg("table")),
        "run_command" => format!("ran {:?}: exit 0", arg("command")),
        _ => return None,
    })
}

fn answer(msg: &Value) -> Option<Value> {
    let id = msg.get("id")?.clone();
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "initialize" => json!({
            "protocolVersion": params.get("protocolVersion").cloned().unwrap_or_else(|| json!("2025-06-18")),
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "harombe-demo", "version": env!("CARGO_PKG_VERSION")},
        }),
        "ping" => json!({}),
        "tools/list" => json!({"tools": tools()}),
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or("");
            let args = params.get("arguments").cloned().unwrap_or(Value::Null);
            match call(name, &args) {
                Some(text) => {
                    json!({"content": [{"type": "text", "text": text}], "isError": false})
                }
                None => {
                    return Some(json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": -32602, "message": format!("unknown tool {name:?}")}}));
                }
            }
        }
        other => {
            return Some(json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": format!("method {other:?} not found")}}));
        }
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

pub fn run() -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(msg) => answer(&msg),
            Err(e) => Some(json!({"jsonrpc": "2.0", "id": null,
                "error": {"code": -32700, "message": format!("parse error: {e}")}})),
        };
        if let Some(r) = reply {
            serde_json::to_writer(&mut stdout, &r)?;
            stdout.write_all(b"\n")?;
            stdout.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_mcp_lifecycle_and_every_listed_tool() {
        let init = answer(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-03-26"}}))
        .unwrap();
        assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
        assert!(
            answer(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).is_none()
        );
        let list = answer(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).unwrap();
        let tools = list["result"]["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 6);
        for t in tools {
            let name = t["name"].as_str().unwrap();
            let r = answer(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": name, "arguments": {}}}))
            .unwrap();
            assert_eq!(r["result"]["isError"], false, "{name}");
        }
        let bad = answer(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
            "params": {"name": "nope"}}))
        .unwrap();
        assert_eq!(bad["error"]["code"], -32602);
    }
}
