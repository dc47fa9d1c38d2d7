# Shared helpers for the scripts in this folder.

step() { printf '\n==> %s\n' "$*" >&2; }

# apt-get as root, or through sudo when not root.
apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

# Everything a build needs on a fresh Debian machine: a C++ toolchain and
# libclang for RocksDB's bindings, Rust, and cargo-nextest.
ensure_build_deps() {
    local missing=()
    command -v c++ >/dev/null || missing+=(g++)
    command -v curl >/dev/null || missing+=(curl ca-certificates)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
        missing+=(libclang-dev)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        step "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    if ! command -v cargo >/dev/null; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            step "installing Rust (rustup)"
            curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy -c rustfmt
            export PATH="$HOME/.cargo/bin:$PATH"
        fi
    fi
    if ! cargo nextest --version >/dev/null 2>&1; then
        step "installing cargo-nextest"
        cargo install cargo-nextest --locked
    fi
}
