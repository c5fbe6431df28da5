#!/usr/bin/env bash
# Generates ffi/include/ringkv.h and ffi/include/ringkv_php.h with the pinned
# cbindgen (installed from crates.io when missing). With --check, generates
# into a temporary directory and fails if the checked-in headers differ.
set -euo pipefail
cd "$(dirname "$0")/.."
CBINDGEN_VERSION="0.27.0"

if ! command -v cbindgen >/dev/null 2>&1 || ! cbindgen --version | grep -q " ${CBINDGEN_VERSION}$"; then
    echo "== installing cbindgen ${CBINDGEN_VERSION}"
    cargo install cbindgen --version "${CBINDGEN_VERSION}" --locked --force
fi

out="ffi/include"
if [ "${1:-}" = "--check" ]; then
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
cbindgen --quiet --config ffi/cbindgen.toml --crate ringkv-ffi --output "$out/ringkv.h" ffi
cbindgen --quiet --config ffi/cbindgen-php.toml --crate ringkv-ffi --output "$out/ringkv_php.h" ffi

if [ "${1:-}" = "--check" ]; then
    for h in ringkv.h ringkv_php.h; do
        if ! diff -u "ffi/include/$h" "$out/$h"; then
            echo "ffi/include/$h is out of date: run bash scripts/ffi-header.sh and commit it" >&2
            exit 1
        fi
    done
    echo "ffi headers are up to date"
fi
