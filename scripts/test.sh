#!/usr/bin/env bash
# Installs what the test suite needs that is not already on the machine, then runs the
# whole suite: fmt, clippy (benches and examples included), rustdoc, every test (SQLite and a
# throwaway PostgreSQL cluster, real peers). Benchmarks are run by hand (docs/benchmarks.md).
#
# Peers go under target/peers (Python venv, npm packages); Debian packages through apt.
# Each file in scripts/setup/ installs one group of peers and is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export HAROMBE_PEERS="$root/target/peers"
mkdir -p "$HAROMBE_PEERS"

log() { printf '\n==> %s\n' "$*"; }

for setup in scripts/setup/*.sh; do
  log "setup: $setup"
  bash "$setup"
done
# Setup scripts write the environment the tests need (paths of peers) into env.d/.
for env in "$HAROMBE_PEERS"/env.d/*; do
  # shellcheck disable=SC1090
  [ -f "$env" ] && source "$env"
done

log "format"
cargo fmt --all -- --check

log "clippy"
cargo clippy -j2 --workspace --all-targets -- -D warnings

log "rustdoc (broken or redundant intra-doc links fail the run)"
RUSTDOCFLAGS="-D warnings" cargo doc -j2 --workspace --no-deps --quiet

log "shared PostgreSQL cluster for the tests"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh
pg_start "$root/target/pg-test"
trap pg_stop EXIT
export HAROMBE_TEST_PG_URL="$PG_URL"

log "tests"
cargo nextest run -j2 --workspace --no-fail-fast "$@"
