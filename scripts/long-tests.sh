#!/usr/bin/env bash
# The long run of the test command: many more proptest cases (model tests,
# parser round trips, the differential test against redis-server), long
# fuzzing, and 100,000 seeds of the replication simulation first
# (scripts/sim-seeds.sh). Takes hours on 2 cores; the test command
# (scripts/test.sh) runs the same tests with short defaults.
#
#   PROPTEST_CASES=5000      proptest cases where a test does not fix its own
#   RINGKV_DIFF_CASES=20000  differential sequences against redis-server
#   FUZZ_SECONDS=1800        seconds per fuzz target
#   RINGKV_CRASH_ROUNDS=500  SIGKILL rounds per crash test (two tests: 1,000
#                            kills of a writer, and of recoveries after them)
#   RINGKV_LONG_SIM_SEEDS=100000  seeds of the replication simulation (release)
#   LOOM_MAX_PREEMPTIONS=3   preemptions per execution in the loom model of
#                            the ring log (the test command uses 2)
#   RINGKV_FAILOVER_ROUNDS=30  kill + pause rounds, and partition rounds, of
#                            the failover tests (tests/failover.rs; the test
#                            command runs 1 of each)
#   RINGKV_MIGRATION_ROUNDS=20  slot moves back and forth under four writers
#                            (tests/cluster.rs; the test command runs 1)
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-5000}"
export RINGKV_DIFF_CASES="${RINGKV_DIFF_CASES:-20000}"
export FUZZ_SECONDS="${FUZZ_SECONDS:-1800}"
export RINGKV_CRASH_ROUNDS="${RINGKV_CRASH_ROUNDS:-500}"
export RINGKV_FAILOVER_ROUNDS="${RINGKV_FAILOVER_ROUNDS:-30}"
export RINGKV_MIGRATION_ROUNDS="${RINGKV_MIGRATION_ROUNDS:-20}"
RINGKV_SIM_SEEDS="${RINGKV_LONG_SIM_SEEDS:-100000}" bash scripts/sim-seeds.sh
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
exec bash scripts/test.sh
