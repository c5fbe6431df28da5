#!/usr/bin/env bash
# The replication simulation at scale: RINGKV_SIM_SEEDS seeded worlds
# (default 100,000) of a primary and 2-3 followers over simulated QUIC with
# faults, restarts, crashes, promotions and a hostile transport
# (replication/src/session/sim/), in release mode, on every core. The test
# command runs 300 of them in debug mode. Prints the summary line (seeds,
# writes, syncs, faults) and fails with the first failing seed, which
# replays with its trace:
#
#   RINGKV_SIM_SEED=<n> cargo test -p ringkv-replication --lib \
#       session::sim::tests::seeded_worlds_keep_every_invariant -- --nocapture
#
#   RINGKV_SIM_SEEDS=100000    seeds to run
#   RINGKV_SIM_FIRST_SEED=0    the first seed
#   RINGKV_SIM_THREADS=nproc   worker threads
set -euo pipefail
cd "$(dirname "$0")/.."
export RINGKV_SIM_SEEDS="${RINGKV_SIM_SEEDS:-100000}"
export RINGKV_SIM_FIRST_SEED="${RINGKV_SIM_FIRST_SEED:-0}"
export RINGKV_SIM_THREADS="${RINGKV_SIM_THREADS:-$(nproc)}"
echo "== replication simulation: $RINGKV_SIM_SEEDS seeds from $RINGKV_SIM_FIRST_SEED on $RINGKV_SIM_THREADS threads (release)"
start=$(date +%s)
cargo test --release -p ringkv-replication --lib session::sim::tests::seeded_worlds_keep_every_invariant \
    -- --exact --nocapture 2>&1 | grep -Ev '^(running|test result|$)'
echo "== simulation: $(( $(date +%s) - start )) s"
