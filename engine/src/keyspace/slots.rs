//! The per-shard index of keys by cluster slot (`Config::cluster_slots`):
//! a count per slot and an ordered set of `(slot, key)`, so CLUSTER
//! COUNTKEYSINSLOT is O(shards) and CLUSTER GETKEYSINSLOT (or a slot's
//! scan, for migrating it) reads only that slot's keys.
//!
//! It is kept by `Shard::insert`, `Shard::remove` and `Shard::clear`, the
//! primitives under every change of the key set (live writes, replay,
//! expiry, eviction, rename, rollback, snapshot load), and it moves with
//! the keys in `Shard::swap_data` (a full sync's swap). Without the flag a
//! shard has no index and each primitive pays one branch on a `None`.

use std::collections::BTreeSet;
use std::ops::Bound;

use crate::blob::Blob;
use crate::slot::{key_slot, SLOT_COUNT};

/// Estimated heap bytes of one index entry
/// (a `(u16, Blob)` of 24 bytes in a B-tree node of 11, about two-thirds
/// full, plus node headers; a long key's buffer is shared with its entry).
const SLOT_INDEX_ENTRY_BYTES: usize = 40;

/// One shard's keys by slot.
pub(crate) struct SlotIndex {
    counts: Box<[u32]>,
    keys: BTreeSet<(u16, Blob)>,
}

impl SlotIndex {
    pub(crate) fn new() -> SlotIndex {
        SlotIndex {
            counts: vec![0; SLOT_COUNT].into_boxed_slice(),
            keys: BTreeSet::new(),
        }
    }

    /// Counts `key` (which the shard just gained) in its slot.
    pub(crate) fn add(&mut self, key: &Blob) {
        let slot = key_slot(key);
        if self.keys.insert((slot, key.clone())) {
            self.counts[slot as usize] += 1;
        }
    }

    /// Forgets `key` (which the shard just lost).
    pub(crate) fn remove(&mut self, key: &Blob) {
        let slot = key_slot(key);
        // The set is ordered by (slot, key): look the pair up without a clone.
        if self.keys.remove(&(slot, key.clone())) {
            self.counts[slot as usize] -= 1;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.counts.fill(0);
        self.keys.clear();
    }

    /// Keys of this shard in `slot`.
    pub(crate) fn count(&self, slot: u16) -> u32 {
        self.counts[slot as usize]
    }

    /// Up to `limit` keys of `slot` after `after` (exclusive; `None` starts
    /// at the slot's first key), in byte order, appended to `out`.
    pub(crate) fn keys_after(&self, slot: u16, after: Option<&[u8]>, limit: usize, out: &mut Vec<Blob>) {
        let start = match after {
            Some(k) => Bound::Excluded((slot, Blob::copy_from_slice(k))),
            None => Bound::Included((slot, Blob::empty())),
        };
        out.extend(
            self.keys
                .range((start, Bound::Unbounded))
                .take_while(|(s, _)| *s == slot)
                .take(limit)
                .map(|(_, k)| k.clone()),
        );
    }

    /// Accounted heap bytes of the index (a key's heap part, if it has
    /// one, is shared with the entry and counted there).
    pub(crate) fn memory(&self) -> usize {
        self.counts.len() * 4 + self.keys.len() * SLOT_INDEX_ENTRY_BYTES
    }
}
