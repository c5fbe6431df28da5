#!/usr/bin/env bash
# The project's test command (README, .ci/run): formatting, lints, every test.
# Works on a fresh machine with only the Rust toolchain; installs nothing yet
# (later issues add fuzz targets and client tools here).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace
