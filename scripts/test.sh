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
