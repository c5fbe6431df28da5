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
//! - FLUSHALL during a snapshot does not serialize anything: the shard's
//!   table is *frozen* (moved, as it is, into the shard's [`ShardSnap`]) and
//!   replaced by an empty one. Nothing can change a frozen table, so the walk
//!   takes it out under the lock and serializes what it holds older than `V`
//!   with no lock held ([`walk_frozen`]); the new table holds only entries
//!   stamped `V` or later.
//!
//! Each entry and each chunk is serialized exactly once, so the image is
//! exactly the state at the cut.
//!
//! Nothing here waits for the output while a shard lock is held. Serialized
//! buffers go into the snapshot's [`SnapOutput`], a queue that never blocks
//! its producers and counts the bytes waiting in it (its backlog). The
//! backlog is bounded from outside the locks: the walk pauses, holding no
//! lock, while the backlog is above half of `SnapshotConfig::buffer_bytes`,
//! and a write that leaves it above the whole of it waits (up to
//! `SnapshotConfig::writer_wait_ms`) once it has released its shard locks
//! (`core/writer.rs`, `Writer::finish`). The other half is the writers'
//! headroom: a stalled output slows the walk, not the writes. A single
//! write can add more than the bound at once (deleting a large hash writes
//! all of it), and writes go on after their bounded wait, so the bound is on
//! what the walk adds and on how fast writers may add to a stalled output.
//! A frozen table is memory the shard no longer accounts for until the walk
//! has written it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam::channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::keyspace::table::Table;
use crate::keyspace::{FieldEntry, HashValue, Hashing, KeyEntry, Shard, Value};
use crate::snapshot::format::{put_hash_fields, put_hash_head, put_string};

/// A buffer is handed to the snapshot's output once it holds this much.
pub(crate) const FLUSH_BYTES: usize = 64 * 1024;
/// Bytes the walk serializes per lock hold (a few microseconds of work).
const WALK_STEP_BYTES: usize = 16 * 1024;
/// Entries the walk looks at per lock hold.
const WALK_STEP_ENTRIES: usize = 256;
/// How often a wait without a deadline looks again (a missed wake-up costs
/// at most this).
const RECHECK: Duration = Duration::from_millis(100);

/// What the producers of a snapshot hand to the thread writing its output.
pub(crate) enum Sent {
    /// Serialized items and their count.
    Chunk(Vec<u8>, u64),
    /// The walk is over: nothing more comes.
    Done,
}

/// The output side of one running snapshot, shared by its shards' parts,
/// its walk and the thread that writes the output: a queue that never
/// blocks the producers (they may hold shard locks), with the bytes waiting
/// in it counted so that the producers can wait for room once they hold no
/// lock.
pub(crate) struct SnapOutput {
    tx: Sender<Sent>,
    /// Bytes the walk may leave waiting is half of this; writers wait above it.
    bound: usize,
    /// Bytes queued and not yet written to the output.
    backlog: AtomicUsize,
    /// The largest backlog seen.
    peak: AtomicUsize,
    /// Time the walk and writers waited for room.
    wait_ns: AtomicU64,
    /// The output failed or went away: producers drop what they serialize,
    /// the walk stops.
    cancelled: AtomicBool,
    room: Mutex<()>,
    room_changed: Condvar,
}

impl SnapOutput {
    /// An output whose backlog is bounded by `bound` bytes, and the receiving end.
    pub(crate) fn new(bound: usize) -> (Arc<SnapOutput>, Receiver<Sent>) {
        let (tx, rx) = crossbeam::channel::unbounded();
        let out = SnapOutput {
            tx,
            bound: bound.max(2 * FLUSH_BYTES),
            backlog: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            wait_ns: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            room: Mutex::new(()),
            room_changed: Condvar::new(),
        };
        (Arc::new(out), rx)
    }

    /// Queues a buffer; never blocks (called under a shard lock).
    fn push(&self, buf: Vec<u8>, items: u64) {
        if self.is_cancelled() {
            return;
        }
        let len = buf.len();
        let now = self.backlog.fetch_add(len, Ordering::AcqRel) + len;
        self.peak.fetch_max(now, Ordering::Relaxed);
        if self.tx.send(Sent::Chunk(buf, items)).is_err() {
            self.backlog.fetch_sub(len, Ordering::AcqRel);
        }
    }

    /// The walk is over (sent by the walk, after its last buffer).
    pub(crate) fn done(&self) {
        let _ = self.tx.send(Sent::Done);
    }

    /// The writing thread took `bytes` off the queue (written, or dropped).
    pub(crate) fn written(&self, bytes: usize) {
        self.backlog.fetch_sub(bytes, Ordering::AcqRel);
        self.wake();
    }

    /// The output failed or went away: the walk stops and nothing more is
    /// serialized for it.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        // Taking the lock orders this wake-up after a waiter's last check.
        drop(self.room.lock());
        self.room_changed.notify_all();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// More bytes wait than writers may leave waiting.
    pub(crate) fn over_bound(&self) -> bool {
        self.backlog.load(Ordering::Acquire) > self.bound && !self.is_cancelled()
    }

    /// Waits, holding no lock, until at most `limit` bytes wait, the
    /// snapshot is cancelled, or `deadline` passes.
    fn wait_below(&self, limit: usize, deadline: Option<Instant>) {
        let above = || self.backlog.load(Ordering::Acquire) > limit && !self.is_cancelled();
        if !above() {
            return;
        }
        let started = Instant::now();
        let mut guard = self.room.lock();
        while above() {
            let until = Instant::now() + RECHECK;
            let until = deadline.map_or(until, |d| d.min(until));
            self.room_changed.wait_until(&mut guard, until);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        drop(guard);
        self.wait_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// A writer that left the backlog over the bound: waits for the output
    /// to take it down to the bound, until `deadline`. Only with no shard
    /// lock held.
    pub(crate) fn wait_for_room(&self, deadline: Instant) {
        self.wait_below(self.bound, Some(deadline));
    }

    /// The walk, between steps (no lock held): waits until the backlog is at
    /// most half the bound, leaving the other half to writers.
    pub(crate) fn pace_walk(&self) {
        self.wait_below(self.bound / 2, None);
    }

    /// The largest backlog seen, bytes.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Time the walk and writers waited for room, nanoseconds.
    pub(crate) fn wait_ns(&self) -> u64 {
        self.wait_ns.load(Ordering::Relaxed)
    }
}

/// A shard's part of a running snapshot.
pub(crate) struct ShardSnap {
    pub(crate) version: u32,
    buf: Vec<u8>,
    items: u64,
    /// Bytes handed over so far (with `buf.len()`: bytes produced).
    handed: usize,
    out: Arc<SnapOutput>,
    /// Entries at indexes `>= cursor` have been walked.
    cursor: usize,
    /// A hash whose head the walk wrote and whose chunks it is writing.
    pending_hash: Option<Bytes>,
    /// Tables FLUSHALL froze, for the walk to write outside the lock.
    frozen: Vec<Table<KeyEntry>>,
    /// A write serialized something since the last [`ShardSnap::take_dirty`].
    dirty: bool,
}

impl ShardSnap {
    pub(crate) fn new(version: u32, out: Arc<SnapOutput>, len: usize) -> ShardSnap {
        ShardSnap {
            version,
            buf: Vec::new(),
            items: 0,
            handed: 0,
            out,
            cursor: len,
            pending_hash: None,
            frozen: Vec::new(),
            dirty: false,
        }
    }

    /// Hands the buffer to the output's queue; never waits.
    pub(crate) fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.handed += self.buf.len();
        self.out
            .push(std::mem::take(&mut self.buf), std::mem::take(&mut self.items));
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

    /// The snapshot's output.
    pub(crate) fn output(&self) -> &Arc<SnapOutput> {
        &self.out
    }

    /// Whether a write serialized into this snapshot since the last call
    /// (the walk's own serializing does not count).
    pub(crate) fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// FLUSHALL: `table` (the shard's whole table, replaced by an empty one)
    /// is the snapshot's to walk; the shard's new table holds nothing
    /// older than the cut.
    pub(crate) fn freeze(&mut self, table: Table<KeyEntry>) {
        if table.len() > 0 {
            self.frozen.push(table);
        }
        self.cursor = 0;
        self.pending_hash = None;
    }

    /// Frozen tables for the walk to write with no lock held.
    pub(crate) fn take_frozen(&mut self) -> Vec<Table<KeyEntry>> {
        std::mem::take(&mut self.frozen)
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
    snap.dirty = true;
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
    snap.dirty = true;
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

/// Writes what a frozen table holds older than `version` into `out`,
/// pacing itself like the walk; called with no lock held (nothing can
/// change a frozen table, so nothing is stamped).
pub(crate) fn walk_frozen(table: &Table<KeyEntry>, version: u32, out: &SnapOutput) {
    let mut buf = Vec::new();
    let mut items = 0u64;
    for e in table.iter() {
        if e.version >= version {
            continue;
        }
        items += 1;
        match &e.value {
            Value::Str(v) => put_string(&mut buf, &e.key, v, e.expire()),
            Value::Hash(hv) => {
                put_hash_head(&mut buf, &e.key, e.expire());
                for c in 0..hv.table.chunk_count() {
                    if hv.table.chunk_version(c) >= version {
                        continue;
                    }
                    let fields: Vec<(&[u8], &[u8])> = hv
                        .table
                        .chunk_entries(c)
                        .map(|f| (&f.field[..], &f.value[..]))
                        .collect();
                    if !fields.is_empty() {
                        put_hash_fields(&mut buf, &e.key, fields.into_iter());
                        items += 1;
                    }
                    if buf.len() >= FLUSH_BYTES {
                        out.push(std::mem::take(&mut buf), std::mem::take(&mut items));
                        out.pace_walk();
                    }
                }
            }
        }
        if buf.len() >= FLUSH_BYTES {
            out.push(std::mem::take(&mut buf), std::mem::take(&mut items));
            out.pace_walk();
        }
        if out.is_cancelled() {
            return;
        }
    }
    if !buf.is_empty() {
        out.push(buf, items);
    }
}

/// One bounded step of the walk over `shard`; returns true when the shard
/// is done (its last buffer handed over). Frozen tables are the caller's to
/// take out first ([`ShardSnap::take_frozen`]).
pub(crate) fn walk_step(shard: &mut Shard, hashing: &Hashing) -> bool {
    // What the walk serializes is not a writer's to wait for.
    let dirty = shard.snap.as_ref().map(|s| s.dirty);
    let done = step(shard, hashing);
    if let (Some(dirty), Some(snap)) = (dirty, shard.snap.as_mut()) {
        snap.dirty = dirty;
    }
    done
}

fn step(shard: &mut Shard, hashing: &Hashing) -> bool {
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
