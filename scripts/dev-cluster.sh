#!/usr/bin/env bash
# A local Granary cluster: one namenode and three datanodes as separate
# processes on loopback, data under granary-data/dev-cluster.
#
#   scripts/dev-cluster.sh          build, start, and show it serving
#   scripts/dev-cluster.sh status   what is running
#   scripts/dev-cluster.sh stop     stop every process (data is kept)
#   scripts/dev-cluster.sh clean    stop and delete the data
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ROOT="${GRANARY_DEV_DIR:-$PWD/granary-data/dev-cluster}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/granary-target}"
BIN="$CARGO_TARGET_DIR/debug"
NN_RPC=127.0.0.1:8020
NN_HTTP=127.0.0.1:9870
DATANODES=3

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_all() {
    local any=0
    for pidfile in "$ROOT"/run/*.pid; do
        [ -e "$pidfile" ] || continue
        if running "$pidfile"; then
            kill -TERM "$(cat "$pidfile")" && any=1
        fi
    done
    # Graceful shutdown, bounded.
    for _ in $(seq 1 50); do
        local alive=0
        for pidfile in "$ROOT"/run/*.pid; do
            [ -e "$pidfile" ] && running "$pidfile" && alive=1
        done
        [ $alive -eq 0 ] && break
        sleep 0.2
    done
    rm -f "$ROOT"/run/*.pid
    [ $any -eq 1 ] && echo "stopped the dev cluster (data kept in $ROOT)" || echo "no dev cluster running"
}

wait_http() {
    for _ in $(seq 1 100); do
        curl -fsS "http://$1/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "timed out waiting for http://$1 (see $ROOT/logs)" >&2
    return 1
}

start() {
    ensure_build_deps
    command -v curl >/dev/null || apt_install curl ca-certificates
    step "building (cargo build --bins)"
    cargo build --workspace --bins --locked
    mkdir -p "$ROOT/logs" "$ROOT/run"
    if running "$ROOT/run/namenode.pid"; then
        echo "a dev cluster is already running; 'scripts/dev-cluster.sh stop' first" >&2
        exit 1
    fi
    if [ ! -f "$ROOT/name/VERSION" ]; then
        step "formatting the namenode metadata in $ROOT/name"
        "$BIN/granary-namenode" format --data-dir "$ROOT/name"
    fi
    step "starting namenode on $NN_RPC (http $NN_HTTP)"
    nohup "$BIN/granary-namenode" --data-dir "$ROOT/name" --rpc-addr "$NN_RPC" --http-addr "$NN_HTTP" \
        >"$ROOT/logs/namenode.log" 2>&1 &
    echo $! >"$ROOT/run/namenode.pid"
    wait_http "$NN_HTTP"
    for i in $(seq 1 $DATANODES); do
        local rpc="127.0.0.1:$((9866 + 10 * i))" http="127.0.0.1:$((9864 + 10 * i))"
        step "starting datanode $i on $rpc (http $http)"
        # Datanodes prove they belong with the secret `format` wrote.
        nohup "$BIN/granary-datanode" --namenode "$NN_RPC" --data-dir "$ROOT/dn$i" \
            --cluster-secret-file "$ROOT/name/cluster-secret" \
            --rpc-addr "$rpc" --http-addr "$http" --rack "/rack$(( (i + 1) / 2 ))" \
            --heartbeat-interval-ms 1000 >"$ROOT/logs/datanode$i.log" 2>&1 &
        echo $! >"$ROOT/run/datanode$i.pid"
        wait_http "$http"
    done
    step "waiting for $DATANODES datanodes to register"
    for _ in $(seq 1 100); do
        curl -fsS "http://$NN_HTTP/readyz" | grep -q "^datanodes $DATANODES$" && break
        sleep 0.1
    done
    curl -fsS "http://$NN_HTTP/readyz"

    local g="$BIN/granary --namenode $NN_RPC"
    # A restarted cluster stays read-only until its blocks are reported.
    timeout 120 $g admin safemode wait
    step "showing it serving: put, ls, get, compare"
    local sample="$ROOT/sample.bin"
    head -c $((5 * 1024 * 1024 + 123)) /dev/urandom >"$sample"
    $g fs mkdir -p /demo
    $g fs put -f "$sample" /demo/sample.bin
    $g fs setrep 3 /demo/sample.bin >/dev/null
    $g fs ls -h /demo
    rm -f "$ROOT/sample.back"
    $g fs get /demo/sample.bin "$ROOT/sample.back"
    if cmp -s "$sample" "$ROOT/sample.back"; then
        echo "round trip OK: $(stat -c %s "$sample") bytes written and read back identical"
    else
        echo "round trip FAILED: bytes differ" >&2
        exit 1
    fi
    $g fs checksum /demo/sample.bin
    cat <<MSG

Granary dev cluster is running (logs in $ROOT/logs):
  namenode  rpc $NN_RPC  http http://$NN_HTTP/readyz
  datanodes 127.0.0.1:9876, :9886, :9896
Try:
  export PATH="$BIN:\$PATH"
  granary fs ls /demo
  echo hello | granary fs put - /demo/hello.txt && granary fs cat /demo/hello.txt
Stop it with: scripts/dev-cluster.sh stop
MSG
}

case "${1:-start}" in
    start) start ;;
    stop) stop_all ;;
    clean) stop_all; rm -rf "$ROOT"; echo "removed $ROOT" ;;
    status)
        for pidfile in "$ROOT"/run/*.pid; do
            [ -e "$pidfile" ] || { echo "no dev cluster running"; exit 0; }
            name=$(basename "$pidfile" .pid)
            running "$pidfile" && echo "$name: running (pid $(cat "$pidfile"))" || echo "$name: not running"
        done ;;
    *) echo "usage: $0 [start|status|stop|clean]" >&2; exit 2 ;;
esac
