//! Generations: how a snapshot captures the state at its cut while writers
//! go on (the Dragonfly scheme, adapted to our table).
//!
//! - Every keyspace entry carries the generation it was last serialized in
//!   or created in (`KeyEntry::version`, in what was padding), and every slab
//!   chunk of a hash carries one too (`Table::chunk_version`).
//! - Starting snapshot `V` (under all shard locks, O(shards)) sets each
//!   shard's generation to `V`; entries and chunks created from then on are
//!   stamped `V` and are not part of the image.
//! - Serialize before write: a change to an entry older than `V` first
//!   writes it into the snapshot stream and stamps it. A string is one item;
//!   for a hash, a change of its fields writes only the chunks it touches
//!   (a write never copies a whole large hash), while deleting, renaming or
//!   re-expiring it writes its head and every chunk still older than `V`.
//! - The walk visits each shard's slab from the end towards the start,
//!   serializing what is still older than `V`, a bounded amount per lock
//!   hold. Walking backwards is what makes the slab's swap-remove safe: a
//!   removal moves the *last* entry into the hole, so an entry only ever
//!   moves from the walked part (or from beyond the walk's start) into a hole,
//!   never from the unwalked part into the walked one.
//!
//! Each entry and each chunk is serialized exactly once, so the image is
//! exactly the state at the cut.

use std::time::Instant;

use bytes::Bytes;
use crossbeam::channel::{Sender, TrySendError};

use crate::keyspace::table::Table;
use crate::keyspace::{FieldEntry, HashValue, Hashing, KeyEntry, Shard, Value};
use crate::snapshot::format::{put_hash_fields, put_hash_head, put_string};

/// A buffer is handed to the snapshot's writer once it holds this much.
pub(crate) const FLUSH_BYTES: usize = 64 * 1024;
/// Bytes the walk serializes per lock hold (a few microseconds of work).
const WALK_STEP_BYTES: usize = 16 * 1024;
/// Entries the walk looks at per lock hold.
const WALK_STEP_ENTRIES: usize = 256;

/// A serialized buffer and the number of items in it.
pub(crate) type Piece = (Vec<u8>, u64);

/// A shard's part of a running snapshot.
pub(crate) struct ShardSnap {
    pub(crate) version: u32,
    buf: Vec<u8>,
    items: u64,
    /// Bytes handed over so far (with `buf.len()`: bytes produced).
    handed: usize,
    tx: Sender<Piece>,
    /// Time writers and the walk spent blocked on a full output channel.
    pub(crate) wait_ns: u64,
    /// Entries at indexes `>= cursor` have been walked.
    cursor: usize,
    /// A hash whose head the walk wrote and whose chunks it is writing.
    pending_hash: Option<Bytes>,
}

impl ShardSnap {
    pub(crate) fn new(version: u32, tx: Sender<Piece>, len: usize) -> ShardSnap {
        ShardSnap {
            version,
            buf: Vec::new(),
            items: 0,
            handed: 0,
            tx,
            wait_ns: 0,
            cursor: len,
            pending_hash: None,
        }
    }

    /// Hands the buffer to the writer; blocks (and counts the wait) if the
    /// writer is behind: this is what bounds the snapshot's memory.
    pub(crate) fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.handed += self.buf.len();
        let piece = (std::mem::take(&mut self.buf), std::mem::take(&mut self.items));
        match self.tx.try_send(piece) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(piece)) => {
                let started = Instant::now();
                let _ = self.tx.send(piece);
                self.wait_ns += started.elapsed().as_nanos() as u64;
            }
        }
    }

    /// Bytes serialized so far by this shard (monotonic).
    fn produced(&self) -> usize {
        self.handed + self.buf.len()
    }

    fn flush_if_full(&mut self) {
        if self.buf.len() >= FLUSH_BYTES {
            self.flush();
        }
    }
}

/// Serializes one chunk of a hash if it is older than the snapshot.
fn touch_chunk(snap: &mut ShardSnap, key: &[u8], table: &mut Table<FieldEntry>, c: usize) {
    if c >= table.chunk_count() || table.chunk_version(c) >= snap.version {
        return;
    }
    let fields: Vec<(&[u8], &[u8])> = table.chunk_entries(c).map(|f| (&f.field[..], &f.value[..])).collect();
    if !fields.is_empty() {
        put_hash_fields(&mut snap.buf, key, fields.into_iter());
        snap.items += 1;
    }
    table.set_chunk_version(c, snap.version);
    snap.flush_if_full();
}

/// Serializes every chunk of a hash still older than the snapshot, up to
/// `budget` bytes; returns true when none is left.
fn hash_chunks(snap: &mut ShardSnap, key: &[u8], hv: &mut HashValue, budget: usize) -> bool {
    let start = snap.produced();
    for c in 0..hv.table.chunk_count() {
        if hv.table.chunk_version(c) < snap.version {
            if snap.produced() - start >= budget {
                return false;
            }
            touch_chunk(snap, key, &mut hv.table, c);
        }
    }
    true
}

/// Serialize before write, for a change of the whole entry (its value, its
/// expiry, or its removal): writes it (for a hash: head and every old chunk)
/// and stamps it. A no-op for entries created after the cut or already written.
pub(crate) fn touch_entry(snap: &mut ShardSnap, e: &mut KeyEntry) {
    if e.version >= snap.version {
        return;
    }
    let expire = e.expire();
    match &mut e.value {
        Value::Str(v) => put_string(&mut snap.buf, &e.key, v, expire),
        Value::Hash(hv) => {
            put_hash_head(&mut snap.buf, &e.key, expire);
            snap.items += 1;
            snap.flush_if_full();
            hash_chunks(snap, &e.key, hv, usize::MAX);
            e.version = snap.version;
            return;
        }
    }
    snap.items += 1;
    e.version = snap.version;
    snap.flush_if_full();
}

/// A hash being changed field by field during a snapshot: touches each chunk
/// before the change, so the snapshot gets the chunk as it was at the cut.
pub(crate) struct HashMut<'a> {
    pub(crate) hv: &'a mut HashValue,
    pub(crate) snap: Option<(&'a mut ShardSnap, &'a [u8])>,
}

impl HashMut<'_> {
    /// Sets a field; returns the previous value.
    pub(crate) fn set(&mut self, hash: u32, field: &[u8], value: crate::blob::Blob) -> Option<crate::blob::Blob> {
        if let Some((snap, key)) = &mut self.snap {
            let c = match self.hv.table.find(hash, field) {
                Some(idx) => Some(Table::<FieldEntry>::chunk_of(idx)),
                None => self.hv.table.next_insert_chunk(),
            };
            if let Some(c) = c {
                touch_chunk(snap, key, &mut self.hv.table, c);
            }
        }
        self.hv.set(hash, field, value)
    }

    /// Removes a field; returns its value.
    pub(crate) fn remove(&mut self, hash: u32, field: &[u8]) -> Option<crate::blob::Blob> {
        let idx = self.hv.table.find(hash, field)?;
        if let Some((snap, key)) = &mut self.snap {
            // The field's chunk, and the last chunk (its last field moves into the hole).
            touch_chunk(snap, key, &mut self.hv.table, Table::<FieldEntry>::chunk_of(idx));
            if let Some(last) = self.hv.table.last_index() {
                touch_chunk(snap, key, &mut self.hv.table, Table::<FieldEntry>::chunk_of(last));
            }
        }
        Some(self.hv.remove_at(idx).1)
    }
}

/// One bounded step of the walk over `shard`; returns true when the shard
/// is done (its last buffer handed over).
pub(crate) fn walk_step(shard: &mut Shard, hashing: &Hashing) -> bool {
    let Shard { table, snap, .. } = shard;
    let Some(snap) = snap.as_mut() else { return true };
    let start = snap.produced();
    if let Some(key) = snap.pending_hash.clone() {
        let h = hashing.hash(&key);
        if let Some(idx) = table.find(h as u32, &key) {
            let e = table.at_mut(idx);
            if e.version < snap.version {
                if let Value::Hash(hv) = &mut e.value {
                    if !hash_chunks(snap, &key, hv, WALK_STEP_BYTES) {
                        return false;
                    }
                }
                e.version = snap.version;
            }
        }
        // Gone, or written by a change meanwhile.
        snap.pending_hash = None;
    }
    let mut looked = 0;
    snap.cursor = snap.cursor.min(table.len());
    while snap.cursor > 0 && looked < WALK_STEP_ENTRIES && snap.produced() - start < WALK_STEP_BYTES {
        snap.cursor -= 1;
        looked += 1;
        let e = table.at_mut(snap.cursor);
        if e.version >= snap.version {
            continue;
        }
        let expire = e.expire();
        match &mut e.value {
            Value::Str(_) => touch_entry(snap, e),
            Value::Hash(hv) => {
                put_hash_head(&mut snap.buf, &e.key, expire);
                snap.items += 1;
                if hash_chunks(snap, &e.key, hv, WALK_STEP_BYTES) {
                    e.version = snap.version;
                } else {
                    snap.pending_hash = Some(Bytes::copy_from_slice(&e.key));
                    return false;
                }
            }
        }
    }
    if snap.cursor == 0 && snap.pending_hash.is_none() {
        snap.flush();
        return true;
    }
    snap.flush_if_full();
    false
}
