#!/usr/bin/env bash
# Builds the container image granary:latest from binaries built here, with no
# registry: a FROM-scratch image holding granary-namenode, granary-datanode and
# granary, exactly the shared libraries they load (found with ldd), and
# nothing else. Works where no base image can be pulled.
#
#   scripts/docker-image.sh [--debug|--release] [--tag NAME] [--no-build]
#
# --release (default) is what to deploy; --debug reuses the test build (the
# suite's compose tests use it). Binaries are stripped either way.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

profile=release
tag=granary:latest
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --release) profile=release ;;
        --debug) profile=debug ;;
        --tag) tag="$2"; shift ;;
        --no-build) build=0 ;;
        *) echo "usage: $0 [--debug|--release] [--tag NAME] [--no-build]" >&2; exit 2 ;;
    esac
    shift
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/granary-target}"
if [ "$build" = 1 ]; then
    ensure_build_deps
    step "cargo build ($profile)"
    if [ "$profile" = release ]; then
        cargo build --workspace --bins --locked --release
    else
        cargo build --workspace --bins --locked
    fi
fi
bins=(granary-namenode granary-datanode granary)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/data"
chmod 1777 "$root/tmp"
for b in "${bins[@]}"; do
    src="$CARGO_TARGET_DIR/$profile/$b"
    [ -x "$src" ] || { echo "$src is missing: build first (drop --no-build)" >&2; exit 1; }
    strip -o "$root/usr/local/bin/$b" "$src"
done
# Every shared library the binaries load, at the same path, and the loader.
for lib in $(ldd "${bins[@]/#/$root/usr/local/bin/}" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/:/usr/local/bin/granary\ngranary:x:1000:1000:granary:/data:/usr/local/bin/granary\n' > "$root/etc/passwd"
printf 'root:x:0:\ngranary:x:1000:\nsupergroup:x:1001:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin RUST_LOG=info
VOLUME ["/data"]
EXPOSE 8020 9870 9866 9864
CMD ["granary", "--help"]
DOCKERFILE
step "docker build -t $tag"
docker build -q -t "$tag" "$ctx" >/dev/null
docker image ls "$tag" --format '{{.Repository}}:{{.Tag}} {{.Size}}'
