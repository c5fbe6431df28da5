//! Memory limit: `maxmemory` with `noeviction`, approximated `allkeys-lru`
//! and `volatile-ttl`. Evictions are logged deletions (`DeleteReason::Evicted`).
//!
//! The accounting counts what the engine allocates: table slabs and bucket
//! arrays, heap parts of keys and values, hash tables, and an estimate for the
//! expiry index (see `Shard::memory`). Each shard reports its changes to an
//! engine-wide total once they exceed a small slack, so the check before a
//! write is one atomic load.
//!
//! Eviction runs before the write takes its shard lock: it never holds one
//! shard's guard while locking another.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::config::EvictionPolicy;
use crate::engine::Inner;
use crate::error::{Error, Result};
use crate::mutation::{DeleteReason, Mutation};

/// Candidates kept between evictions (Redis: `EVPOOL_SIZE`).
pub(crate) const EVICTION_POOL_SIZE: usize = 16;

/// Most evictions one write may trigger before it gives up with an error.
const MAX_EVICTIONS_PER_WRITE: usize = 1024;

impl Inner {
    /// Makes room under `maxmemory` before a write that may add memory.
    pub(crate) fn ensure_memory(&self) -> Result<()> {
        // A follower's keyspace changes only through its primary's stream:
        // it never evicts (Redis' replica-ignore-maxmemory), and refuses the
        // write itself before anything is logged.
        if self.replica.is_follower() {
            return Err(Error::ReadOnly);
        }
        let max = self.config.maxmemory;
        if max == 0 {
            return Ok(());
        }
        let mut evictions = 0;
        loop {
            let used = self.used_memory_approx();
            if used <= max {
                return Ok(());
            }
            let evicted = evictions < MAX_EVICTIONS_PER_WRITE
                && match self.config.maxmemory_policy {
                    EvictionPolicy::Noeviction => false,
                    EvictionPolicy::AllkeysLru => self.evict(self.lru_candidate()),
                    EvictionPolicy::VolatileTtl => self.evict(self.ttl_candidate()),
                };
            if !evicted {
                return Err(Error::OutOfMemory { used, max });
            }
            evictions += 1;
        }
    }

    /// The least recently used key known: each call samples
    /// `maxmemory_samples` random keys into a pool of the
    /// [`EVICTION_POOL_SIZE`] oldest candidates seen so far (Redis' eviction
    /// pool), then takes the oldest candidate whose access time has not
    /// changed since it was sampled.
    fn lru_candidate(&self) -> Option<Bytes> {
        let shards = self.shards.len() as u64;
        let samples = self.config.maxmemory_samples;
        let mut pool = self.eviction_pool.lock();
        let mut taken = 0;
        for _ in 0..samples * 8 {
            if taken == samples {
                break;
            }
            let shard = self.shards[(self.random() % shards) as usize].read();
            let len = shard.table.len();
            if len == 0 {
                continue;
            }
            taken += 1;
            let e = shard.entry((self.random() % len as u64) as usize);
            if pool.iter().any(|(_, k)| k[..] == e.key[..]) {
                continue;
            }
            pool.push((e.lru.load(Ordering::Relaxed), Bytes::copy_from_slice(&e.key)));
        }
        // Oldest last, so `pop` takes it; keep only the oldest candidates.
        pool.sort_by_key(|c| std::cmp::Reverse(c.0));
        let excess = pool.len().saturating_sub(EVICTION_POOL_SIZE);
        pool.drain(..excess);
        while let Some((lru, key)) = pool.pop() {
            let h = self.hashing.hash(&key);
            let shard = self.shards[self.hashing.shard_of(h)].read();
            // Still there and not used since it was sampled?
            if let Some(idx) = shard.find(h, &key) {
                if shard.entry(idx).lru.load(Ordering::Relaxed) == lru {
                    return Some(key);
                }
            }
        }
        if taken == 0 {
            // Sampling found only empty shards: take any key at all.
            for shard in self.shards.iter() {
                let shard = shard.read();
                if let Some(idx) = shard.table.last_index() {
                    return Some(Bytes::copy_from_slice(&shard.entry(idx).key));
                }
            }
        }
        None
    }

    /// The key with the nearest expiry among the shards' expiry indexes
    /// (exact per shard; shards are all looked at, O(shards)).
    fn ttl_candidate(&self) -> Option<Bytes> {
        let mut best: Option<(u64, Bytes)> = None;
        for shard in self.shards.iter() {
            let shard = shard.read();
            if let Some((t, slot)) = shard.next_expiry() {
                if best.as_ref().is_none_or(|(b, _)| t < *b) {
                    best = Some((t, Bytes::copy_from_slice(&shard.entry(slot).key)));
                }
            }
        }
        best.map(|(_, k)| k)
    }

    /// Deletes `key` as an eviction; false if there was nothing to evict.
    fn evict(&self, key: Option<Bytes>) -> bool {
        let Some(key) = key else { return false };
        let h = self.hashing.hash(&key);
        let result = self.write_unchecked(&[h], false, |w| {
            if w.shard(h).find(h, &key).is_none() {
                // Gone meanwhile: that freed memory too.
                return Ok(());
            }
            w.commit(Mutation::Delete {
                keys: vec![key.clone()],
                reason: DeleteReason::Evicted,
            })?;
            w.publish_memory_now(h);
            Ok(())
        });
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "eviction failed");
                false
            }
        }
    }
}
