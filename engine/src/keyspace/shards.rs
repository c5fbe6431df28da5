//! The shards of one keyspace and the one way to lock them: write locks
//! are always taken in shard index order (a batch, a rename, a multi-key
//! write, a snapshot's cut), and no guard of one shard is held while
//! another is locked out of order, which keeps writers deadlock-free.

use crossbeam::utils::CachePadded;
use parking_lot::{RwLock, RwLockWriteGuard};

use super::{Hashing, Shard, Value};
use crate::blob::Blob;

/// The shards and the hashing that places keys in them.
pub(crate) struct Keyspace {
    shards: Box<[CachePadded<RwLock<Shard>>]>,
    hashing: Hashing,
}

impl Keyspace {
    /// `shards` empty shards (a power of two) placed by a hashing seeded
    /// with `seed`; `slot_index` keeps keys by cluster slot (`slots.rs`).
    pub(crate) fn new(shards: usize, seed: u64, slot_index: bool) -> Keyspace {
        Keyspace {
            shards: (0..shards)
                .map(|_| CachePadded::new(RwLock::new(Shard::new(slot_index))))
                .collect(),
            hashing: Hashing::new(seed, shards),
        }
    }

    #[inline]
    pub(crate) fn hashing(&self) -> &Hashing {
        &self.hashing
    }

    /// The 64-bit hash of `key` (shard in the high half, table hash in the low).
    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hashing.hash(key)
    }

    #[inline]
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Shard `s`'s lock.
    #[inline]
    pub(crate) fn shard(&self, s: usize) -> &RwLock<Shard> {
        &self.shards[s]
    }

    /// The lock of the shard that holds keys hashing to `hash`.
    #[inline]
    pub(crate) fn shard_for(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[self.hashing.shard_of(hash)]
    }

    /// Every shard's lock, in index order.
    #[inline]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &RwLock<Shard>> {
        self.shards.iter().map(|s| &**s)
    }

    /// Accounted memory in bytes (exact sum over shards).
    pub(crate) fn used_memory(&self) -> u64 {
        self.iter().map(|s| s.read().memory() as u64).sum()
    }

    /// An order-independent digest of every key, type, value, hash field
    /// and expiry (see `Engine::digest`). O(n), one shard at a time.
    pub(crate) fn digest(&self) -> u64 {
        let fixed = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let mut total = 0u64;
        for shard in self.iter() {
            let s = shard.read();
            for e in s.table.iter() {
                let key_part = fixed.hash_one((&e.key[..], e.expire_at));
                let value_part = match &e.value {
                    Value::Str(b) => fixed.hash_one((0u8, &b[..])),
                    Value::Hash(hv) => hv.table.iter().fold(fixed.hash_one(1u8), |acc, f| {
                        acc.wrapping_add(fixed.hash_one((&f.field[..], &f.value[..])))
                    }),
                };
                total = total.wrapping_add(fixed.hash_one((key_part, value_part)));
            }
        }
        total
    }

    /// Keys in `slot` over every shard, or `None` without the index.
    pub(crate) fn count_keys_in_slot(&self, slot: u16) -> Option<u64> {
        let mut total = 0u64;
        for shard in self.iter() {
            total += u64::from(shard.read().slot_index()?.count(slot));
        }
        Some(total)
    }

    /// Up to `limit` keys of `slot` after `after` in byte order (a cursor:
    /// pass the last key returned to continue), or `None` without the index.
    /// Reads at most `limit` keys of each shard, one shard at a time.
    pub(crate) fn keys_in_slot(&self, slot: u16, after: Option<&[u8]>, limit: usize) -> Option<Vec<Blob>> {
        let mut out = Vec::new();
        for shard in self.iter() {
            shard.read().slot_index()?.keys_after(slot, after, limit, &mut out);
        }
        // Each shard gave its first `limit`: the first `limit` of them all
        // are the slot's first `limit` after the cursor.
        out.sort_unstable();
        out.truncate(limit);
        Some(out)
    }

    /// Write-locks the shards of `hashes`, in index order.
    #[inline]
    pub(crate) fn lock_hashes(&self, hashes: &[u64]) -> Locked<'_> {
        if let [h] = hashes {
            let s = self.hashing.shard_of(*h);
            return Locked::One(s, self.shards[s].write());
        }
        self.lock_indices(hashes.iter().map(|h| self.hashing.shard_of(*h)).collect())
    }

    /// Write-locks these shards (in any order, repeats allowed), in index order.
    #[inline]
    pub(crate) fn lock_indices(&self, mut idx: Vec<usize>) -> Locked<'_> {
        debug_assert!(!idx.is_empty(), "a write locks at least one shard");
        idx.sort_unstable();
        idx.dedup();
        match idx[..] {
            [s] => Locked::One(s, self.shards[s].write()),
            _ => Locked::Many(idx.into_iter().map(|s| (s, self.shards[s].write())).collect()),
        }
    }

    /// Write-locks shard `s` alone.
    #[inline]
    pub(crate) fn lock_one(&self, s: usize) -> Locked<'_> {
        Locked::One(s, self.shards[s].write())
    }

    /// Write-locks every shard, in index order.
    #[inline]
    pub(crate) fn lock_all(&self) -> Locked<'_> {
        Locked::Many(self.shards.iter().enumerate().map(|(s, l)| (s, l.write())).collect())
    }
}

/// Write guards on a set of shards, taken in index order (one for most
/// operations, several for batches, renames and multi-key writes).
pub(crate) enum Locked<'a> {
    One(usize, RwLockWriteGuard<'a, Shard>),
    Many(Vec<(usize, RwLockWriteGuard<'a, Shard>)>),
}

impl Locked<'_> {
    /// The shard `idx`, which must be locked.
    pub(crate) fn shard(&mut self, idx: usize) -> &mut Shard {
        match self {
            Locked::One(i, g) => {
                assert_eq!(*i, idx, "shard {idx} is not locked");
                g
            }
            Locked::Many(gs) => {
                let pos = gs
                    .binary_search_by_key(&idx, |(i, _)| *i)
                    .unwrap_or_else(|_| panic!("shard {idx} is not locked"));
                &mut gs[pos].1
            }
        }
    }

    /// Every locked shard.
    pub(crate) fn for_each(&mut self, mut f: impl FnMut(usize, &mut Shard)) {
        match self {
            Locked::One(i, g) => f(*i, g),
            Locked::Many(gs) => gs.iter_mut().for_each(|(i, g)| f(*i, g)),
        }
    }
}
