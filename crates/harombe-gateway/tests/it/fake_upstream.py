# A misbehaving stdio MCP server for the gateway's bad-input tests.
# Tools: ok (answers), crash (exits mid-call), garbage (writes non-JSON, never answers).
import json, os, sys

def send(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()

for line in sys.stdin:
    try:
        m = json.loads(line)
    except Exception:
        continue
    method, mid = m.get("method"), m.get("id")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": "2025-06-18",
              "capabilities": {"tools": {}}, "serverInfo": {"name": "fake", "version": "0"}}})
    elif method == "tools/list":
        tools = [{"name": n, "inputSchema": {"type": "object"}} for n in ("ok", "crash", "garbage")]
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": tools}})
    elif method == "tools/call":
        name = m["params"]["name"]
        if name == "crash":
            sys.stderr.write("fake: crashing on purpose\n")
            os._exit(3)
        if name == "garbage":
            sys.stdout.write("this is not json {{{\n\x00\x01garbage\n")
            sys.stdout.flush()
            continue
        send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "ok"}]}})
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "nope"}})
