#!/usr/bin/env bash
# Runs the Python binding's tests against a built libringkv.
#   ffi/python/run-tests.sh [LIBDIR]     (default: <repo>/target/debug)
# Uses (creating it if missing) the venv <repo>/target/py-venv with pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
libdir="${1:-$repo/target/debug}"
if [[ ! -d "$libdir" ]]; then
    echo "run-tests.sh: no directory $libdir (build first: cargo build -p ringkv-ffi)" >&2
    exit 2
fi
libdir="$(cd "$libdir" && pwd)"
lib="$libdir/libringkv.so"
if [[ ! -f "$lib" ]]; then
    echo "run-tests.sh: no $lib (build it: cargo build -p ringkv-ffi)" >&2
    exit 2
fi

venv="$repo/target/py-venv"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pytest' 2>/dev/null; then
    "$venv/bin/python" -m pip install -q pytest
fi
if ! "$venv/bin/python" -c 'import redis' 2>/dev/null; then
    # redis-py is for bench.py only; the tests do not need it.
    "$venv/bin/python" -m pip install -q redis || echo "run-tests.sh: could not install redis-py (only bench.py needs it)" >&2
fi

cd "$repo"
export RINGKV_LIB="$lib"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the work tree
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider ffi/python/tests
