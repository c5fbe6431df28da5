#!/usr/bin/env bash
# The project's test command (README, .ci/run): formatting, lints, every
# test, and every fuzz target for a short bounded time.
# Works on a fresh machine with the Rust toolchains (stable and nightly):
# installs cargo-fuzz and cbindgen from crates.io, redis-server, redis-tools,
# php-cli, php-redis, phpunit, valgrind and etcd-server from Debian, and redis-py and
# pytest into a venv, when they are missing.
#
#   FUZZ_SECONDS=30   seconds per fuzz target (0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"

# What the tests drive besides our own binaries, from Debian: redis-server
# (differential tests), redis-cli / redis-benchmark and phpredis (client
# tests).
need_pkgs=()
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_pkgs+=(redis-tools)
command -v php >/dev/null 2>&1 || need_pkgs+=(php-cli)
php -r 'exit(class_exists("Redis") ? 0 : 1);' 2>/dev/null || need_pkgs+=(php-redis)
# The C ABI's tests: PHP's through phpunit, C's under valgrind.
command -v phpunit >/dev/null 2>&1 || need_pkgs+=(phpunit)
command -v valgrind >/dev/null 2>&1 || need_pkgs+=(valgrind)
# The failover coordinator (coord, tests/etcd.rs, tests/failover.rs): each
# test starts its own single-node etcd on loopback and kills it.
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    echo "== installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq "${need_pkgs[@]}" >/dev/null; }
fi

# redis-py for the client tests and pytest for the Python binding's, in a
# venv under target/ (PyPI).
venv="target/py-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import redis, pytest" 2>/dev/null; then
    echo "== preparing $venv with redis-py and pytest"
    mkdir -p target
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q redis pytest
fi
export RINGKV_TEST_PYTHON="$PWD/$venv/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check
rustfmt --edition 2021 --check fuzz/fuzz_targets/*.rs

echo "== the C headers match ffi/src (cbindgen)"
bash scripts/ffi-header.sh --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
# The failpoints (engine/src/failpoints.rs) compile to nothing without
# their feature: lint the engine with them too.
cargo clippy -p ringkv --features failpoints --all-targets -- -D warnings

echo "== cargo check of the libraries and binaries as users build them (no internals feature)"
cargo check --workspace --lib --bins

echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

echo "== cargo test"
test_log="$(mktemp)"
trap 'rm -f "$test_log"' EXIT
cargo test --workspace 2>&1 | tee "$test_log"
# Fault injection at every failpoint (global to the process: the tests
# serialize themselves); only the engine is rebuilt with the feature.
echo "== cargo test: failpoints"
cargo test -p ringkv --features failpoints --test failpoints 2>&1 | tee -a "$test_log"

# The cluster demo's short form (about 25 s, etcd and redis-py as above),
# on the binaries cargo test just built: a SIGKILL of one shard's primary
# under a RedisCluster load, then a slot move under load. Fails if that
# shard does not take writes again within the bound, a write acknowledged
# after WAIT 1 counted a replica is lost, or a write acknowledged during
# the move is missing afterwards.
echo "== cluster demo (short form)"
DEMO_BEFORE=3 DEMO_AFTER=2 RINGKV_BIN_DIR="${CARGO_TARGET_DIR:-target}/debug" bash scripts/cluster-demo.sh

# The ring's publish protocol (reserve, copy, publish, lap, read, reset)
# under the loom model checker: the real ring.rs over loom's atomics, a
# 64-byte ring, two writers lapping a reader. Its own target directory, as
# `--cfg loom` rebuilds every dependency; bounded by the preemption count
# (2 here, about a minute of models on 2 cores after the build;
# scripts/long-tests.sh uses 3).
echo "== loom model of the ring log (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2})"
LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}" RUSTFLAGS="${RUSTFLAGS:-} --cfg loom" \
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
    cargo test -p ringkv --lib log::loom_tests -- --nocapture 2>&1 | tee -a "$test_log"
passed=$(awk '/^test result:/ {p += $4} END {print p + 0}' "$test_log")
failed=$(awk '/^test result:/ {f += $6} END {print f + 0}' "$test_log")

echo "== libringkv through C (ASan, UBSan, valgrind), PHP (phpunit) and Python (pytest)"
cargo build -p ringkv-ffi
ln -sf libringkv.so target/debug/libringkv.so.0
bash ffi/tests/c/run.sh "$PWD/target/debug" "$PWD/ffi/include"
bash ffi/php/run-tests.sh "$PWD/target/debug"
bash ffi/python/run-tests.sh "$PWD/target/debug"

if [ "$FUZZ_SECONDS" -gt 0 ]; then
    # An allocation sized by an untrusted length is a crash: no single
    # allocation above 512 MB, no more than 2 GB resident.
    echo "== fuzz targets (${FUZZ_SECONDS}s each, nightly)"
    if ! command -v cargo-fuzz >/dev/null 2>&1; then
        cargo install cargo-fuzz --locked
    fi
    for target in $(cd fuzz && cargo +nightly fuzz list); do
        echo "-- fuzz $target"
        # A crash makes cargo fuzz exit non-zero, which fails the run. The
        # checked-in regression seeds (fuzz/seeds/<target>, inputs shaped like
        # the defects found so far) are a second, read-only corpus.
        mkdir -p "fuzz/corpus/$target"
        seeds=()
        [ -d "fuzz/seeds/$target" ] && seeds=("seeds/$target")
        (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=0 2>&1 | tail -n 3)
    done
fi
echo "== all checks passed"
echo "tests: $passed passed, $failed failed"
