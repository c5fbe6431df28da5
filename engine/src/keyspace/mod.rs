//! The sharded keyspace: shards, their entries, and the primitives every
//! write goes through (which keep the memory accounting and the expiry index
//! right).

pub(crate) mod apply;
pub(crate) mod cow;
mod shards;
mod slots;
pub(crate) mod table;

pub(crate) use shards::{Keyspace, Locked};

use std::collections::BTreeSet;
use std::mem;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use crate::blob::{alloc_size, Blob};
use crate::keyspace::cow::{freeze, touch_entry, HashMut, ShardSnap, SnapOutput};
use slots::SlotIndex;
use table::{Table, TableEntry};

/// Estimated heap bytes of one expiry-index entry (a `(u64, u32)` in a
/// B-tree node of 11, about two-thirds full, plus node headers).
const EXPIRE_INDEX_ENTRY_BYTES: usize = 26;

/// Key hashing: one 64-bit ahash per key; the high half picks the shard, the
/// low half is the table hash.
pub(crate) struct Hashing {
    state: ahash::RandomState,
    shard_mask: usize,
    seed: u64,
}

impl Hashing {
    pub(crate) fn new(seed: u64, shards: usize) -> Hashing {
        let s = seed;
        Hashing {
            state: ahash::RandomState::with_seeds(
                s,
                s.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15,
                s.rotate_left(31) ^ 0xbf58_476d_1ce4_e5b9,
                s.rotate_left(47) ^ 0x94d0_49bb_1331_11eb,
            ),
            shard_mask: shards - 1,
            seed,
        }
    }

    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.state.hash_one(key)
    }

    /// The seed this hashing was built from (a staging engine for a full
    /// sync must place keys exactly as this one does).
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    #[inline]
    pub(crate) fn shard_of(&self, hash: u64) -> usize {
        (hash >> 32) as usize & self.shard_mask
    }
}

/// The value a key holds.
pub(crate) enum Value {
    Str(Blob),
    Hash(Box<HashValue>),
}

impl Value {
    fn heap_size(&self) -> usize {
        match self {
            Value::Str(b) => b.heap_size(),
            Value::Hash(h) => alloc_size(mem::size_of::<HashValue>()) + h.memory(),
        }
    }
}

/// One key of the keyspace.
pub(crate) struct KeyEntry {
    pub(crate) key: Blob,
    pub(crate) value: Value,
    /// Absolute expiry in unix ms; 0 means none.
    pub(crate) expire_at: u64,
    /// Coarse last-access time in seconds (approximated LRU).
    pub(crate) lru: AtomicU32,
    /// Snapshot generation the entry was created or last serialized in
    /// (`keyspace/cow.rs`); it fits in what was padding.
    pub(crate) version: u32,
}

impl KeyEntry {
    pub(crate) fn expire(&self) -> Option<u64> {
        (self.expire_at != 0).then_some(self.expire_at)
    }

    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now_ms
    }

    fn heap_size(&self) -> usize {
        self.key.copied_heap_size() + self.value.heap_size()
    }
}

impl TableEntry for KeyEntry {
    fn key(&self) -> &[u8] {
        &self.key
    }
}

/// Stores an optional expiry in the `expire_at` field (0 = none).
pub(crate) fn encode_expire(expire_at: Option<u64>) -> u64 {
    expire_at.map_or(0, |t| t.max(1))
}

/// One field of a hash.
pub(crate) struct FieldEntry {
    pub(crate) field: Blob,
    pub(crate) value: Blob,
}

impl TableEntry for FieldEntry {
    fn key(&self) -> &[u8] {
        &self.field
    }
}

/// A hash value: the same incremental table as the keyspace, so HSCAN has
/// the same guarantees and no write pays for a whole resize.
pub(crate) struct HashValue {
    pub(crate) table: Table<FieldEntry>,
    data_bytes: usize,
}

impl HashValue {
    pub(crate) fn new() -> HashValue {
        HashValue {
            table: Table::new(),
            data_bytes: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn memory(&self) -> usize {
        self.table.heap_bytes() + self.data_bytes
    }

    pub(crate) fn get(&self, hash: u32, field: &[u8]) -> Option<&Blob> {
        self.table.get(hash, field).map(|f| &f.value)
    }

    /// Sets a field; returns the previous value.
    pub(crate) fn set(&mut self, hash: u32, field: &[u8], value: Blob) -> Option<Blob> {
        match self.table.find(hash, field) {
            Some(idx) => {
                let e = self.table.at_mut(idx);
                self.data_bytes = self.data_bytes - e.value.heap_size() + value.heap_size();
                Some(mem::replace(&mut e.value, value))
            }
            None => {
                let field = Blob::copy_from_slice(field);
                // Entries own their heap parts; the table's slab is counted by the table.
                self.data_bytes += field.copied_heap_size() + value.heap_size();
                self.table.insert_new(hash, FieldEntry { field, value });
                None
            }
        }
    }

    pub(crate) fn remove_at(&mut self, idx: usize) -> (Blob, Blob) {
        let (e, _) = self.table.remove_at(idx);
        self.data_bytes -= e.field.copied_heap_size() + e.value.heap_size();
        (e.field, e.value)
    }
}

/// One shard: a table of keys, the index of their expiry times, and what the
/// memory accounting needs.
pub(crate) struct Shard {
    pub(crate) table: Table<KeyEntry>,
    /// `(expire_at, slot)` of every key with an expiry.
    pub(crate) expires: BTreeSet<(u64, u32)>,
    /// Heap bytes owned by keys and values (not the table structure).
    data_bytes: usize,
    /// Memory last added to the engine-wide approximate total.
    pub(crate) memory_reported: usize,
    pub(crate) expired: u64,
    pub(crate) evicted: u64,
    /// Bucket arrays of finished resizes (this shard's table and its
    /// hashes'), freed by the background thread after it unlocks the shard.
    pub(crate) retired: Vec<table::Buckets>,
    /// Mutations applied to this shard (for `save <seconds> <changes>`).
    pub(crate) changes: u64,
    /// Generation stamped on entries and hash chunks created now.
    pub(crate) generation: u32,
    /// This shard's parts of the running snapshots (at most one save and
    /// one stream, `core/snapshot_state.rs`), oldest first.
    pub(crate) snaps: Vec<ShardSnap>,
    /// Keys by cluster slot, with `Config::cluster_slots` (`slots.rs`).
    slots: Option<Box<SlotIndex>>,
}

impl Shard {
    /// An empty shard; `slot_index` keeps its keys by cluster slot.
    pub(crate) fn new(slot_index: bool) -> Shard {
        Shard {
            table: Table::new(),
            expires: BTreeSet::new(),
            data_bytes: 0,
            memory_reported: 0,
            expired: 0,
            evicted: 0,
            retired: Vec::new(),
            changes: 0,
            generation: 0,
            snaps: Vec::new(),
            slots: slot_index.then(|| Box::new(SlotIndex::new())),
        }
    }

    /// Exchanges the keyspace data (keys, expiry index, accounted bytes)
    /// with `other`, leaving counters, generation and snapshot state.
    pub(crate) fn swap_data(&mut self, other: &mut Shard) {
        std::mem::swap(&mut self.table, &mut other.table);
        std::mem::swap(&mut self.expires, &mut other.expires);
        std::mem::swap(&mut self.data_bytes, &mut other.data_bytes);
        std::mem::swap(&mut self.memory_reported, &mut other.memory_reported);
        std::mem::swap(&mut self.slots, &mut other.slots);
    }

    /// This shard's keys by cluster slot, if it keeps them.
    pub(crate) fn slot_index(&self) -> Option<&SlotIndex> {
        self.slots.as_deref()
    }

    /// Accounted memory of this shard.
    pub(crate) fn memory(&self) -> usize {
        self.table.heap_bytes()
            + self.data_bytes
            + self.expires.len() * EXPIRE_INDEX_ENTRY_BYTES
            + self.retired.iter().map(|b| b.len() * 4).sum::<usize>()
            + self.slots.as_ref().map_or(0, |ix| ix.memory())
    }

    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.table.find(hash as u32, key)
    }

    pub(crate) fn entry(&self, idx: usize) -> &KeyEntry {
        self.table.at(idx)
    }

    pub(crate) fn insert(&mut self, hash: u64, key: Blob, mut value: Value, expire_at: u64, lru: u32) -> usize {
        if let Value::Hash(hv) = &mut value {
            // A hash that moves to a new entry (rename, rollback) belongs to
            // this generation now; any snapshot already has its old content.
            for c in 0..hv.table.chunk_count() {
                hv.table.set_chunk_version(c, self.generation);
            }
            hv.table.set_birth_version(self.generation);
        }
        let entry = KeyEntry {
            key,
            value,
            expire_at,
            lru: AtomicU32::new(lru),
            version: self.generation,
        };
        self.data_bytes += entry.heap_size();
        if let Some(ix) = &mut self.slots {
            ix.add(&entry.key);
        }
        let idx = self.table.insert_new(hash as u32, entry);
        if expire_at != 0 {
            self.expires.insert((expire_at, slot(idx)));
        }
        self.collect_retired();
        idx
    }

    /// Serialize before write: if snapshots run and the entry predates
    /// them, the entry goes to each of them first.
    fn touch(&mut self, idx: usize) {
        if !self.snaps.is_empty() {
            touch_entry(&mut self.snaps, self.table.at_mut(idx));
        }
    }

    pub(crate) fn remove(&mut self, idx: usize) -> KeyEntry {
        self.touch(idx);
        let expire_at = self.table.at(idx).expire_at;
        if expire_at != 0 {
            self.expires.remove(&(expire_at, slot(idx)));
        }
        let (entry, moved) = self.table.remove_at(idx);
        if let Some((from, to)) = moved {
            let moved_expire = self.table.at(to).expire_at;
            if moved_expire != 0 {
                self.expires.remove(&(moved_expire, slot(from)));
                self.expires.insert((moved_expire, slot(to)));
            }
        }
        self.data_bytes -= entry.heap_size();
        if let Some(ix) = &mut self.slots {
            ix.remove(&entry.key);
        }
        self.collect_retired();
        entry
    }

    fn collect_retired(&mut self) {
        if self.table.has_retired() {
            self.retired.append(&mut self.table.take_retired());
        }
    }

    /// Takes the retired bucket arrays, for the caller to drop once it has
    /// released the shard lock (the `Drop` unmaps megabytes).
    pub(crate) fn take_retired(&mut self) -> Vec<table::Buckets> {
        self.collect_retired();
        std::mem::take(&mut self.retired)
    }

    /// Sets the expiry of the entry at `idx`; returns the previous one (0 = none).
    pub(crate) fn set_expire(&mut self, idx: usize, expire_at: u64) -> u64 {
        let old = self.table.at(idx).expire_at;
        if old != expire_at {
            self.touch(idx);
        }
        if old != 0 {
            self.expires.remove(&(old, slot(idx)));
        }
        if expire_at != 0 {
            self.expires.insert((expire_at, slot(idx)));
        }
        self.table.at_mut(idx).expire_at = expire_at;
        old
    }

    /// Replaces the value at `idx`; returns the previous one.
    pub(crate) fn replace_value(&mut self, idx: usize, value: Value) -> Value {
        self.touch(idx);
        let e = self.table.at_mut(idx);
        let old = mem::replace(&mut e.value, value);
        self.data_bytes = self.data_bytes - old.heap_size() + e.value.heap_size();
        old
    }

    /// Runs `f` on the hash at `idx` (which must hold a hash), keeping the
    /// memory accounting right.
    pub(crate) fn with_hash<R>(&mut self, idx: usize, f: impl FnOnce(&mut HashMut<'_>) -> R) -> Option<R> {
        let Shard {
            table,
            snaps,
            generation,
            ..
        } = self;
        let KeyEntry {
            key, value, version, ..
        } = table.at_mut(idx);
        match value {
            Value::Hash(h) => {
                let before = h.memory();
                h.table.set_birth_version(*generation);
                // Only a hash that predates a running snapshot has chunks to save.
                let older = snaps.iter().any(|s| *version < s.version);
                let snap = older.then(|| (&mut snaps[..], &key[..]));
                let r = f(&mut HashMut { hv: h, snap });
                if h.table.has_retired() {
                    self.retired.append(&mut h.table.take_retired());
                }
                let after = h.memory();
                self.data_bytes = self.data_bytes - before + after;
                Some(r)
            }
            Value::Str(_) => None,
        }
    }

    pub(crate) fn clear(&mut self) {
        if self.snaps.is_empty() {
            self.table.clear();
        } else {
            // FLUSHALL during snapshots: the table goes to them as it is, for
            // their walks to write outside the lock (`cow.rs`).
            freeze(&mut self.snaps, mem::replace(&mut self.table, Table::new()));
        }
        self.expires.clear();
        self.data_bytes = 0;
        if let Some(ix) = &mut self.slots {
            ix.clear();
        }
    }

    /// Adds to `behind` the output of each snapshot running here that the
    /// write ending now serialized into and whose backlog is over its bound
    /// (the writer waits for them once it has released its locks).
    pub(crate) fn snapshots_behind(&mut self, behind: &mut Vec<Arc<SnapOutput>>) {
        for snap in self.snaps.iter_mut() {
            if !snap.take_dirty() {
                continue;
            }
            let out = snap.output();
            if out.over_bound() && !behind.iter().any(|b| Arc::ptr_eq(b, out)) {
                behind.push(Arc::clone(out));
            }
        }
    }

    /// Whether a snapshot runs in this shard.
    pub(crate) fn has_snapshot(&self) -> bool {
        !self.snaps.is_empty()
    }

    /// Removes this shard's part of snapshot `version` (its walk is done
    /// here, or it ended), for the caller to drop outside the lock.
    pub(crate) fn take_snapshot_part(&mut self, version: u32) -> Option<ShardSnap> {
        let i = self.snaps.iter().position(|s| s.version == version)?;
        Some(self.snaps.remove(i))
    }

    /// Slot of the key with the nearest expiry, and that expiry.
    pub(crate) fn next_expiry(&self) -> Option<(u64, usize)> {
        self.expires.first().map(|&(t, s)| (t, s as usize))
    }
}

fn slot(idx: usize) -> u32 {
    idx as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_small() {
        // The per-key memory aim (≤ 48 B beyond key and value) depends on these.
        assert_eq!(mem::size_of::<Value>(), 16);
        assert_eq!(mem::size_of::<KeyEntry>(), 48);
        assert_eq!(mem::size_of::<table::Node<KeyEntry>>(), 56);
        assert_eq!(mem::size_of::<table::Node<FieldEntry>>(), 40);
    }
}
