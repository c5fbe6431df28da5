//! Deterministic simulation of replication (tests only), in the manner of
//! TigerBeetle's and FoundationDB's simulators: the real sans-IO sessions
//! over a simulated network, simulated time and fake engines, with faults
//! and workloads drawn from a seed, so any failure replays exactly.
//!
//! - `pair.rs`: one primary and one follower session over in-memory
//!   queues, and five scripted scenarios (quinn-proto's `Pair` style).
//! - `rng.rs`: the seeded generator (SplitMix64).
//! - `net.rs`: QUIC connections over a path with latency, jitter,
//!   bandwidth, flow-control windows, partitions, idle timeouts, resets at
//!   any byte and closes; optionally a hostile transport that drops,
//!   duplicates and reorders whole frames.
//! - `store.rs`: the fake engine (real ring records, the keyspace as the
//!   bytes applied, full syncs, restarts, promotion).
//! - `world.rs`: one primary and two or three followers, the workload of
//!   writes and faults (resets, partitions, pauses, follower restarts,
//!   primary crashes with a failover or a restart, bandwidth changes, the
//!   hostile transport), the coordinator (promotion of the most advanced
//!   follower, re-pointing, the old primary rejoining), the clock.
//! - `primary_end.rs`, `follower_end.rs`: how the drivers (`primary.rs`,
//!   `follower.rs`) carry the sessions' actions out, over the simulated
//!   streams and stores.
//! - `check.rs`: the invariants (its module docs list them).
//! - `tests.rs`: a few hundred seeds in the test command
//!   (`RINGKV_SIM_SEEDS`, default 300), one seed replayed with its trace
//!   (`RINGKV_SIM_SEED=<n>`), and a test per seed that found a bug.
//!
//! `scripts/sim-seeds.sh` runs 100,000 seeds in release mode.

mod check;
mod follower_end;
mod net;
mod pair;
mod primary_end;
mod rng;
mod store;
mod tests;
mod world;
