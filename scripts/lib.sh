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
    # bindgen (rocksdb) loads libclang.so*/libclang-N.so*; libclang-cpp does not count.
    if ! compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null \
        && ! compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null \
        && ! compgen -G '/usr/lib/*-linux-gnu/libclang.so*' >/dev/null \
        && ! compgen -G '/usr/lib/*-linux-gnu/libclang-[0-9]*.so*' >/dev/null; then
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

# A virtualenv with the unmodified WebHDFS clients the tests drive (HdfsCLI,
# fsspec, Dask), pinned in scripts/python-requirements.txt. Exports
# GRANARY_PYTHON, the interpreter the WebHDFS tests run.
ensure_python_clients() {
    local venv="${GRANARY_VENV:-$HOME/.cache/granary-venv}"
    local stamp="$venv/.requirements"
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        step "installing python3-venv"
        apt_install python3 python3-venv python3-pip
    fi
    if ! cmp -s scripts/python-requirements.txt "$stamp"; then
        step "installing Python WebHDFS clients into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/python-requirements.txt
        cp scripts/python-requirements.txt "$stamp"
    fi
    export GRANARY_PYTHON="$venv/bin/python"
}

# Programs the tests drive besides the project's own: Debian's chromium for
# the web UI test, Java for Hadoop's own client (the jars come with pyspark,
# scripts/python-requirements.txt), curl for downloads, docker for the
# compose tests.
ensure_test_tools() {
    local missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v java >/dev/null || missing+=(default-jre-headless)
    command -v curl >/dev/null || missing+=(curl)
    command -v strip >/dev/null || missing+=(binutils)
    if [ ${#missing[@]} -gt 0 ]; then
        step "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    command -v docker >/dev/null || { echo "docker is needed for the compose tests" >&2; return 1; }
}
