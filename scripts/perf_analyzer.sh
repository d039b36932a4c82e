#!/usr/bin/env bash
# Run NVIDIA's perf_analyzer on this machine, fetching it first if needed.
#
#   scripts/perf_analyzer.sh [perf_analyzer arguments...]   run it (no arguments: its usage)
#   scripts/perf_analyzer.sh --setup                        only fetch and unpack
#
# `pip install perf-analyzer` without a version gives an empty placeholder; the real wheels
# (2.58-2.60) hold a binary built for glibc 2.38 and a matching libstdc++, newer than Debian
# 12's. So the binary is run through the dynamic loader of Debian 13's C library, unpacked (not
# installed) into a private folder with its C++ runtime:
#   1. the wheel, by `pip download --platform manylinux_2_38_x86_64`, unzipped;
#   2. libc6, libstdc++6 and libgcc-s1 from Debian 13 (trixie), by `apt-get download` with a
#      private apt configuration (its own sources list, package lists and cache; the system's
#      apt state is neither read nor changed), unpacked with `dpkg-deb -x`;
#   3. `<folder>/ld-linux-x86-64.so.2 --library-path <folder>:<system libs> perf_analyzer ...`
#      (on a system with glibc >= 2.38 the binary runs as it is).
# Everything lands in $NEUROPOD_BENCH_CACHE (default: .bench/ at the repository root), which
# holds a .gitignore of its own.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${NEUROPOD_BENCH_CACHE:-$ROOT/.bench}"
VERSION="${PERF_ANALYZER_VERSION:-2.60.0}"
SUITE="${PERF_ANALYZER_DEBIAN_SUITE:-trixie}"
PYTHON="${PYTHON:-$(command -v python3)}"

PA_DIR="$CACHE/perf_analyzer-$VERSION"
PA_BIN="$PA_DIR/perf_analyzer/bin/perf_analyzer"
LIBC_DIR="$CACHE/glibc-$SUITE"
LIBS="$LIBC_DIR/usr/lib/x86_64-linux-gnu"
LOADER="$LIBS/ld-linux-x86-64.so.2"

log() { echo "perf_analyzer.sh: $*" >&2; }

mkdir -p "$CACHE"
[[ -f "$CACHE/.gitignore" ]] || echo '*' > "$CACHE/.gitignore"

fetch_perf_analyzer() {
    [[ -x "$PA_BIN" ]] && return
    log "downloading perf-analyzer $VERSION (manylinux_2_38 wheel)"
    local wheels="$CACHE/wheels"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux_2_38_x86_64 "perf-analyzer==$VERSION" -d "$wheels"
    rm -rf "$PA_DIR.tmp" && mkdir -p "$PA_DIR.tmp"
    "$PYTHON" -m zipfile -e "$wheels/perf_analyzer-$VERSION-"*.whl "$PA_DIR.tmp"
    chmod +x "$PA_DIR.tmp/perf_analyzer/bin/perf_analyzer"
    rm -rf "$PA_DIR" && mv "$PA_DIR.tmp" "$PA_DIR"
}

system_glibc_is_new_enough() {
    local version
    version="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
    [[ -n "$version" ]] && printf '2.38\n%s\n' "$version" | sort -V -C
}

fetch_glibc() {
    [[ -x "$LOADER" ]] && return
    log "downloading libc6, libstdc++6, libgcc-s1 from Debian $SUITE into $LIBC_DIR"
    local apt="$CACHE/apt-$SUITE"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main" \
        > "$apt/sources.list"
    local opts=(
        -o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
        -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1"
    )
    apt-get "${opts[@]}" -qq update
    (cd "$apt/debs" && rm -f ./*.deb && apt-get "${opts[@]}" -qq download libc6 libstdc++6 libgcc-s1)
    rm -rf "$LIBC_DIR.tmp" && mkdir -p "$LIBC_DIR.tmp"
    for deb in "$apt/debs"/*.deb; do
        dpkg-deb -x "$deb" "$LIBC_DIR.tmp"
    done
    rm -rf "$LIBC_DIR" && mv "$LIBC_DIR.tmp" "$LIBC_DIR"
}

fetch_perf_analyzer
if system_glibc_is_new_enough; then
    run=("$PA_BIN")
else
    fetch_glibc
    run=("$LOADER" --library-path "$LIBS:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" "$PA_BIN")
fi
if [[ "${1:-}" == "--setup" ]]; then
    log "ready: ${run[*]}"
    exit 0
fi
exec "${run[@]}" "$@"
