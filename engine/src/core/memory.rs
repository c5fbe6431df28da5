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

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use bytes::Bytes;

use parking_lot::Mutex;

use super::Inner;
use crate::config::EvictionPolicy;
use crate::error::{Error, Result};
use crate::keyspace::Shard;
use crate::mutation::{DeleteReason, Mutation};

/// Candidates kept between evictions (Redis: `EVPOOL_SIZE`).
pub(crate) const EVICTION_POOL_SIZE: usize = 16;

/// Most evictions one write may trigger before it gives up with an error.
const MAX_EVICTIONS_PER_WRITE: usize = 1024;

/// The engine-wide memory figures and the eviction sampler's state.
pub(crate) struct MemoryState {
    /// Approximate engine-wide accounted memory (each shard reports changes
    /// larger than `slack`).
    total: AtomicI64,
    slack: AtomicUsize,
    /// `maxmemory` in force (0: no limit); changed at run time by
    /// [`MemoryState::set_limit`] (Redis' `CONFIG SET maxmemory`).
    limit: AtomicU64,
    /// The eviction policy in force, as [`policy_code`].
    policy: AtomicU8,
    rng: AtomicU64,
    /// Eviction candidates: (LRU clock when sampled, key).
    eviction_pool: Mutex<Vec<(u32, Bytes)>>,
}

impl MemoryState {
    /// `maxmemory` 0 is no limit; `shards` is the shard count; `rng_seed`
    /// seeds eviction sampling.
    pub(crate) fn new(maxmemory: u64, policy: EvictionPolicy, shards: usize, rng_seed: u64) -> MemoryState {
        MemoryState {
            total: AtomicI64::new(0),
            slack: AtomicUsize::new(slack_for(maxmemory, shards)),
            limit: AtomicU64::new(maxmemory),
            policy: AtomicU8::new(policy_code(policy)),
            rng: AtomicU64::new(rng_seed | 1),
            eviction_pool: Mutex::new(Vec::new()),
        }
    }

    /// The memory limit in force (0: none).
    #[inline]
    pub(crate) fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// The eviction policy in force.
    #[inline]
    pub(crate) fn policy(&self) -> EvictionPolicy {
        match self.policy.load(Ordering::Relaxed) {
            1 => EvictionPolicy::AllkeysLru,
            2 => EvictionPolicy::VolatileTtl,
            _ => EvictionPolicy::Noeviction,
        }
    }

    /// Adds the shard's memory change to the engine-wide total if it is
    /// larger than the slack (or at all, with `force`).
    #[inline]
    pub(crate) fn publish(&self, shard: &mut Shard, force: bool) {
        let now = shard.memory();
        let diff = now.abs_diff(shard.memory_reported);
        if diff > self.slack.load(Ordering::Relaxed) || (force && diff > 0) {
            self.total
                .fetch_add(now as i64 - shard.memory_reported as i64, Ordering::Relaxed);
            shard.memory_reported = now;
        }
    }

    /// Adds `delta` to the engine-wide accounted memory (a keyspace swap).
    #[inline]
    pub(crate) fn add(&self, delta: i64) {
        self.total.fetch_add(delta, Ordering::Relaxed);
    }

    /// The engine-wide total, as the check before a write sees it.
    #[inline]
    pub(crate) fn used_approx(&self) -> u64 {
        self.total.load(Ordering::Relaxed).max(0) as u64
    }

    /// A pseudo-random number (xorshift: eviction sampling, RANDOMKEY,
    /// HRANDFIELD; not for anything that needs unpredictability).
    pub(crate) fn random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }
}

/// How far each shard may be off in the engine-wide total: ~1% of
/// `maxmemory` over all shards, and at most 64 KiB per shard.
fn slack_for(maxmemory: u64, shards: usize) -> usize {
    if maxmemory == 0 {
        64 * 1024
    } else {
        (maxmemory as usize / (shards.max(1) * 100)).clamp(64, 64 * 1024)
    }
}

/// [`EvictionPolicy`] as the byte [`MemoryState`] keeps.
fn policy_code(policy: EvictionPolicy) -> u8 {
    match policy {
        EvictionPolicy::Noeviction => 0,
        EvictionPolicy::AllkeysLru => 1,
        EvictionPolicy::VolatileTtl => 2,
    }
}

impl Inner {
    /// The LRU clock (seconds) when the policy needs one, else 0.
    #[inline]
    pub(crate) fn lru_now(&self) -> u32 {
        if self.memory.policy() == EvictionPolicy::AllkeysLru {
            (self.clock.now_ms() / 1000) as u32
        } else {
            0
        }
    }

    /// Changes the limit and the policy for the writes that follow (Redis'
    /// `CONFIG SET maxmemory`), then brings the engine-wide total up to
    /// date under each shard's lock in turn, so the next write's check sees
    /// the memory in use within the new slack.
    pub(crate) fn set_memory_limit(&self, maxmemory: u64, policy: EvictionPolicy) {
        let m = &self.memory;
        m.slack
            .store(slack_for(maxmemory, self.keyspace.shard_count()), Ordering::Relaxed);
        m.policy.store(policy_code(policy), Ordering::Relaxed);
        m.limit.store(maxmemory, Ordering::Relaxed);
        for shard in self.keyspace.iter() {
            m.publish(&mut shard.write(), true);
        }
    }

    /// Makes room under `maxmemory` before a write that may add memory.
    pub(crate) fn ensure_memory(&self) -> Result<()> {
        // A follower's keyspace changes only through its primary's stream:
        // it never evicts (Redis' replica-ignore-maxmemory), and refuses the
        // write itself before anything is logged.
        if self.replica.is_follower() {
            return Err(Error::ReadOnly);
        }
        let max = self.memory.limit();
        if max == 0 {
            return Ok(());
        }
        let mut evictions = 0;
        loop {
            let used = self.memory.used_approx();
            if used <= max {
                return Ok(());
            }
            let evicted = evictions < MAX_EVICTIONS_PER_WRITE
                && match self.memory.policy() {
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
        let shards = self.keyspace.shard_count() as u64;
        let samples = self.config.maxmemory_samples;
        let mut pool = self.memory.eviction_pool.lock();
        let mut taken = 0;
        for _ in 0..samples * 8 {
            if taken == samples {
                break;
            }
            let shard = self.keyspace.shard((self.memory.random() % shards) as usize).read();
            let len = shard.table.len();
            if len == 0 {
                continue;
            }
            taken += 1;
            let e = shard.entry((self.memory.random() % len as u64) as usize);
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
            let h = self.keyspace.hash(&key);
            let shard = self.keyspace.shard_for(h).read();
            // Still there and not used since it was sampled?
            if let Some(idx) = shard.find(h, &key) {
                if shard.entry(idx).lru.load(Ordering::Relaxed) == lru {
                    return Some(key);
                }
            }
        }
        if taken == 0 {
            // Sampling found only empty shards: take any key at all.
            for shard in self.keyspace.iter() {
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
        for shard in self.keyspace.iter() {
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
        if !self.replica.logs_own_deletions() {
            // A fenced primary does not extend its history.
            return false;
        }
        let h = self.keyspace.hash(&key);
        let result = self.write_internal(&[h], false, |w| {
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
