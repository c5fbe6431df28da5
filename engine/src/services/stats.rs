//! [`Stats`]: one read of every sub-state's figures (keyspace per shard,
//! ring log, recovery, snapshots, command counters).

use crate::core::Inner;
use crate::stats::{LogStats, Op, Stats};

/// Current statistics of the engine.
pub(crate) fn collect(inner: &Inner) -> Stats {
    let mut stats = Stats {
        maxmemory: inner.memory.limit(),
        shards: inner.keyspace.shard_count() as u64,
        ..Stats::default()
    };
    let ops = inner.ops.totals();
    for shard in inner.keyspace.iter() {
        let s = shard.read();
        stats.keys += s.table.len() as u64;
        stats.keys_with_expiry += s.expires.len() as u64;
        stats.used_memory += s.memory() as u64;
        stats.expired_keys += s.expired;
        stats.evicted_keys += s.evicted;
        stats.rehashing_shards += u64::from(s.table.is_rehashing());
    }
    if let Some(ring) = inner.log() {
        let recovered = inner.recovered.lock().clone();
        stats.log = Some(LogStats {
            capacity: ring.capacity(),
            oldest_offset: ring.oldest(),
            offset: ring.published(),
            synced_offset: ring.synced(),
            durability: ring.durability(),
            replid: ring.replid(),
            recovered_records: recovered.records,
            recovered_bytes: recovered.bytes,
            torn_bytes: ring.torn_bytes(),
        });
    }
    stats.snapshot = inner.snapshot.stats();
    stats.commands = Op::ALL
        .iter()
        .map(|op| (op.name().to_string(), ops[*op as usize]))
        .collect();
    stats
}
