#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL server for zentalk-storage's mailbox tests.
#
#   eval "$(scripts/pg-test-server.sh start)"   # prints: export ZENTALK_TEST_POSTGRES_URL=...
#   cargo test -p zentalk-storage
#   scripts/pg-test-server.sh stop
#
# PostgreSQL refuses to run as root, so the cluster belongs to a system user (PG_TEST_USER,
# default `postgres`, created with useradd if missing) and every server command runs through
# `runuser -u USER --` when this script runs as root. The data directory is a fresh temp dir,
# the socket lives in /tmp, the port is a free local one; only 127.0.0.1 listens, with trust
# authentication (a test server: never use these settings for real data).
# State (data dir, port, user) is kept in $PG_TEST_STATE (default /tmp/zentalk-pg-test.state).
# Everything except the final export line goes to stderr, so `eval "$(... start)"` is safe.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
STATE=${PG_TEST_STATE:-/tmp/zentalk-pg-test.state}
PGUSER_SYS=${PG_TEST_USER:-postgres}
DB=zentalk_test

log() { echo "pg-test-server: $*" >&2; }

as_user() {
    # From /, so the server user never needs access to the caller's working directory.
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u "$PGUSER_SYS" -- "$@")
    else
        (cd / && "$@")
    fi
}

free_port() {
    python3 - <<'PY' 2>/dev/null || echo 54329
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

start() {
    if [ ! -x "$PG_BIN/initdb" ]; then
        log "no PostgreSQL binaries in $PG_BIN"
        exit 1
    fi
    if [ -f "$STATE" ]; then
        log "state file $STATE exists: stopping the previous server first"
        stop || true
    fi
    local run_user
    if [ "$(id -u)" = 0 ]; then
        if ! id -u "$PGUSER_SYS" >/dev/null 2>&1; then
            log "creating system user $PGUSER_SYS"
            useradd --system --no-create-home --shell /usr/sbin/nologin "$PGUSER_SYS"
        fi
        run_user=$PGUSER_SYS
    else
        run_user=$(id -un)
    fi
    local dir port
    dir=$(mktemp -d /tmp/zentalk-pg.XXXXXX)
    chmod 700 "$dir"
    if [ "$(id -u)" = 0 ]; then chown "$run_user" "$dir"; fi
    port=$(free_port)
    printf 'DIR=%q\nPORT=%q\nRUN_USER=%q\n' "$dir" "$port" "$run_user" >"$STATE"

    as_user "$PG_BIN/initdb" -D "$dir/data" -U "$run_user" --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
        log "initdb failed:"; cat "$dir/initdb.log" >&2; exit 1; }
    as_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on -c synchronous_commit=on" \
        start >&2 || { log "pg_ctl start failed:"; cat "$dir/server.log" >&2; exit 1; }
    as_user "$PG_BIN/createdb" -h /tmp -p "$port" -U "$run_user" "$DB" >&2
    log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') up on 127.0.0.1:$port (data $dir/data, user $run_user)"
    echo "export ZENTALK_TEST_POSTGRES_URL=postgres://$run_user@127.0.0.1:$port/$DB"
}

stop() {
    if [ ! -f "$STATE" ]; then
        log "no server recorded in $STATE"
        return 0
    fi
    # shellcheck disable=SC1090
    . "$STATE"
    if [ -d "$DIR/data" ]; then
        as_user "$PG_BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || log "pg_ctl stop failed (already stopped?)"
    fi
    rm -rf "$DIR"
    rm -f "$STATE"
    log "stopped and removed $DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
