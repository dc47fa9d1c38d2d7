#!/usr/bin/env bash
# Runs the benchmarks behind docs/performance.md with release binaries and
# prints their result lines (RUNS times each; the doc quotes the median).
#
#   scripts/bench.sh                 # everything, 3 runs
#   RUNS=1 SCALE_FILES=1000000 scripts/bench.sh
#
# Knobs: RUNS, NN_OPS (100000), NN_THREADS (64), BR_BLOCKS (1000000),
# DFSIO_FILES (4), DFSIO_MIB (256), HDFS_MIB (1024), SCALE_FILES (10000000), WORK (a dir on
# the disk to measure; default under /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_deps
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/granary-target}"
step "cargo build --release"
cargo build --release --workspace --bins --locked
B="$CARGO_TARGET_DIR/release"
RUNS="${RUNS:-3}"
WORK="${WORK:-$(mktemp -d /var/tmp/granary-bench.XXXXXX)}"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

step "namenode throughput"
for _ in $(seq "$RUNS"); do
    "$B/granary-bench" namenode --ops "${NN_OPS:-100000}" --threads "${NN_THREADS:-64}"
    # The namespace called from each thread, without the mutation thread.
    "$B/granary-bench" namenode --mode direct --ops "${NN_OPS:-100000}" --threads "${NN_THREADS:-64}"
done

step "block report"
for _ in $(seq "$RUNS"); do
    "$B/granary-bench" blockreport --blocks "${BR_BLOCKS:-1000000}"
done

step "dfsio against namenode + 3 datanodes on loopback"
"$B/granary-namenode" format --data-dir "$WORK/name" --superuser bench >/dev/null
"$B/granary-namenode" --data-dir "$WORK/name" --superuser bench \
    --rpc-addr 127.0.0.1:28020 --http-addr 127.0.0.1:29870 2>"$WORK/nn.log" &
pids+=($!)
for i in 1 2 3; do
    "$B/granary-datanode" --namenode 127.0.0.1:28020 --data-dir "$WORK/dn$i" \
        --cluster-secret-file "$WORK/name/cluster-secret" \
        --rpc-addr "127.0.0.$i:2986$i" --http-addr "127.0.0.$i:2987$i" 2>"$WORK/dn$i.log" &
    pids+=($!)
done
for _ in $(seq 100); do
    curl -s 127.0.0.1:29870/readyz | grep -q '^datanodes 3$' && break
    sleep 0.2
done
for _ in $(seq "$RUNS"); do
    "$B/granary-bench" dfsio --namenode 127.0.0.1:28020 --user bench \
        --files "${DFSIO_FILES:-4}" --size-mib "${DFSIO_MIB:-256}" --replication 3 --dd-dir "$WORK"
done

step "hdfs:// (hdfs-native from PyPI) against Granary's client, same cluster"
ensure_python_clients
"$GRANARY_PYTHON" scripts/bench_hdfs.py --namenode 127.0.0.1:28020 --cli "$B/granary" \
    --user bench --size-mib "${HDFS_MIB:-1024}" --rounds "$RUNS" --work "$WORK"

step "scale"
"$B/granary-bench" scale --files "${SCALE_FILES:-10000000}" --data-dir "$WORK/scale"
