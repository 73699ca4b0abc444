# Sourced by scripts/test.sh: a throwaway PostgreSQL cluster for the whole test run.
# pg_start DIR sets PG_URL; pg_stop stops the cluster. Runs the server as the postgres
# user when we are root (PostgreSQL refuses to run as root).
pg_bin() {
  if [ -n "${HAROMBE_PG_BIN:-}" ]; then echo "$HAROMBE_PG_BIN"; return; fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$newest" ]; then echo "$newest"; else dirname "$(command -v initdb)"; fi
}

pg_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  PG_DIR=$1
  local bin port
  bin=$(pg_bin)
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then pg_as "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR"
  # The directory and its parents must be reachable by the postgres user.
  [ "$(id -u)" = 0 ] && chmod o+x "$PG_DIR/.." "$PG_DIR/../.." 2>/dev/null || true
  pg_as "$bin/initdb" -A trust -U postgres -E UTF8 --no-sync -D "$PG_DIR/data" >"$PG_DIR/initdb.log"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  pg_as "$bin/pg_ctl" -w -t 60 -D "$PG_DIR/data" -l "$PG_DIR/log" \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $PG_DIR -c fsync=off -c max_connections=300" start >/dev/null
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL test cluster on port $port ($PG_DIR)"
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] || return 0
  pg_as "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
}
