#!/usr/bin/env bash
# A Python venv for the Python peers (oracles, reference clients, scanners).
set -euo pipefail
venv="$HAROMBE_PEERS/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
mkdir -p "$HAROMBE_PEERS/env.d"
echo "export HAROMBE_PYTHON=\"$venv/bin/python\"" > "$HAROMBE_PEERS/env.d/python"
