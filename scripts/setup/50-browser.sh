#!/usr/bin/env bash
# The dashboard's browser test drives Debian's headless Chromium (/usr/bin/chromium, from
# 00-debian.sh) with npm playwright-core (no browser download: it launches the system
# binary). Writes env.d/browser. Idempotent.
set -euo pipefail
npm_dir="$HAROMBE_PEERS/npm"
mkdir -p "$npm_dir"
if [ ! -f "$npm_dir/node_modules/playwright-core/package.json" ]; then
  npm install --prefix "$npm_dir" --no-audit --no-fund --loglevel=error playwright-core@1
fi
[ -x /usr/bin/chromium ] || { echo "50-browser.sh: /usr/bin/chromium is missing (00-debian.sh)" >&2; exit 1; }
mkdir -p "$HAROMBE_PEERS/env.d"
cat > "$HAROMBE_PEERS/env.d/browser" <<ENV
export HAROMBE_CHROMIUM=/usr/bin/chromium
export HAROMBE_NODE_MODULES="$npm_dir/node_modules"
ENV
echo "playwright-core: $(node -p "require('$npm_dir/node_modules/playwright-core/package.json').version")"
