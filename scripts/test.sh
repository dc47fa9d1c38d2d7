#!/usr/bin/env bash
# Runs the whole test suite: installs what it needs, then fmt, clippy and
# every test (unit, MiniCluster, real binaries) through cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_deps
ensure_python_clients
ensure_test_tools
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/granary-target}"
# Warnings fail the build through clippy -D warnings below; RUSTFLAGS stays
# unset so the cached RocksDB build is reused.

# RocksDB's C++ is most of a cold build: it must be compiled once per run at
# most. A second copy means two commands below resolved different features or
# profiles for librocksdb-sys; the check at the end fails the run if so.
stamp="$(mktemp)"
trap 'rm -f "$stamp"' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo build (binaries used by the tests)"
cargo build --workspace --bins --locked
step "container image granary:test (for the compose tests)"
scripts/docker-image.sh --debug --no-build --tag granary:test
step "cargo nextest (profile ci)"
cargo nextest run --workspace --locked --profile ci --no-tests=fail

step "RocksDB compiled at most once in this run"
rocksdb_builds="$(find "$CARGO_TARGET_DIR/debug/build" -path '*/librocksdb-sys-*/out/librocksdb.a' -newer "$stamp" 2>/dev/null | wc -l)"
if [ "$rocksdb_builds" -gt 1 ]; then
    echo "librocksdb.a was built $rocksdb_builds times: the commands above disagree on its features or profile" >&2
    exit 1
fi
