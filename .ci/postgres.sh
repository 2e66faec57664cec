#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the tests and export
# PERFSMITH_TEST_PG_URL. Installs Debian's postgresql when it is missing.
# Use: `source .ci/postgres.sh` (CI does); `pg_test_stop` stops it (CI traps EXIT).
set -euo pipefail

# A free port, so a server a developer already runs (or a parallel CI job) is no obstacle.
PG_PORT=${PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "[ci] installing postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PG_DATA=$(mktemp -d /tmp/perfsmith-pg.XXXXXX)

as_pg() {
  # initdb refuses to run as root: use the postgres account the package created.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres: "$PG_DATA"
as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w \
  -o "-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
export PERFSMITH_TEST_PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
echo "[ci] postgresql $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"

pg_test_stop() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DATA"
}
