//! The read path: one shard's read lock, an LRU touch when the policy
//! needs it, and lazy expiry (a key found expired is reported missing and
//! deleted afterwards, under the write lock, with a logged deletion).

use std::sync::atomic::Ordering;

use super::Inner;
use crate::config::EvictionPolicy;
use crate::keyspace::KeyEntry;
use crate::stats::Op;

impl Inner {
    /// Reads the live entry of `key` under the shard's read lock. A key found
    /// expired is reported missing and deleted afterwards under the write lock.
    pub(crate) fn read<R>(&self, key: &[u8], op: Op, f: impl FnOnce(&KeyEntry) -> R) -> Option<R> {
        self.ops.count(op);
        let h = self.keyspace.hash(key);
        {
            let shard = self.keyspace.shard_for(h).read();
            let idx = shard.find(h, key)?;
            let e = shard.entry(idx);
            if e.expire_at == 0 || !e.is_expired(self.clock.now_ms()) {
                if self.memory.policy() == EvictionPolicy::AllkeysLru {
                    e.lru.store(self.lru_now(), Ordering::Relaxed);
                }
                return Some(f(e));
            }
        }
        // Lazy expiry. A failure to log the deletion only delays it. A
        // follower leaves the deletion to its primary's stream, and so does
        // a primary whose gate refuses internal writes (a deposed leader).
        if self.replica.logs_own_deletions() {
            let _ = self.write_internal(&[h], false, |w| w.live(key, h));
        }
        None
    }
}
