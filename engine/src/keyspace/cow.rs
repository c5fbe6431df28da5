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
//! With one snapshot running, each entry and each chunk is serialized
//! exactly once, so the image is exactly the state at the cut.
//!
//! Two snapshots may run at once (a save beside a follower's full sync,
//! `core/snapshot_state.rs`), each with its own generation, cursor and
//! output, and a part in each shard ([`ShardSnap`], oldest first). The
//! stamps are shared, and mean (see `stamp`): a stamp older than `V` says
//! "not changed since `V`'s cut, maybe not in `V` yet", a stamp of `V` or
//! later says "in `V`, or created after its cut". A writer's serialize
//! before write writes into *every* snapshot the entry or chunk is older
//! than and stamps the newest generation. A walk writes into its own
//! snapshot and into the others only while their output has room (a save's
//! walk must not fill a stalled follower's backlog); what it leaves out of
//! another keeps a stamp older than that one's generation, so that one
//! writes it itself. An item may then reach a snapshot twice, always with
//! its content at that snapshot's cut (loading is idempotent). The walk
//! writes a hash's head after its chunks and counts another snapshot as
//! having the hash only if every chunk's stamp says so, so that a snapshot
//! that starts while the walk is in the middle of a large hash gets all of
//! it. A frozen table is shared by the snapshots running at the FLUSHALL;
//! each walks it for its own generation, without stamping.
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
/// Bytes the walk serializes per lock hold (about a microsecond of copying;
/// a step may end one item past it). A writer that meets the walk on its
/// shard waits for at most one step.
pub(crate) const WALK_STEP_BYTES: usize = 4 * 1024;
/// Entries the walk looks at per lock hold.
pub(crate) const WALK_STEP_ENTRIES: usize = 64;
/// Spare buffers an output keeps for its producers (each about
/// [`FLUSH_BYTES`]): a producer under a shard lock starts a new buffer
/// with room for a flush's worth instead of growing one from empty.
const SPARE_BUFFERS: usize = 16;
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
    /// Time writers waited for room (after releasing their locks), and
    /// how many times one did.
    writer_wait_ns: AtomicU64,
    writer_waits: AtomicU64,
    /// Time the walk waited for room (between steps, no lock held).
    walk_wait_ns: AtomicU64,
    /// Emptied buffers handed back by the writing thread, for producers to
    /// fill again (their pages already touched, their capacity reserved).
    spare: crossbeam::queue::ArrayQueue<Vec<u8>>,
    /// The output failed or went away: producers drop what they serialize,
    /// the walk stops.
    cancelled: AtomicBool,
    room: Mutex<()>,
    room_changed: Condvar,
    /// Only the keys this accepts are written (a filtered snapshot, as a
    /// slot migration's); every entry is still stamped as if written.
    keep: Option<KeyFilter>,
}

/// Which keys a filtered snapshot holds ([`Engine::snapshot_filtered_to`](crate::Engine::snapshot_filtered_to)).
pub(crate) type KeyFilter = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

impl SnapOutput {
    /// An output whose backlog is bounded by `bound` bytes, and the receiving end.
    #[cfg(test)]
    pub(crate) fn new(bound: usize) -> (Arc<SnapOutput>, Receiver<Sent>) {
        SnapOutput::filtered(bound, None)
    }

    /// As [`SnapOutput::new`], writing only the keys `keep` accepts.
    pub(crate) fn filtered(bound: usize, keep: Option<KeyFilter>) -> (Arc<SnapOutput>, Receiver<Sent>) {
        let (tx, rx) = crossbeam::channel::unbounded();
        let out = SnapOutput {
            tx,
            bound: bound.max(2 * FLUSH_BYTES),
            backlog: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            writer_wait_ns: AtomicU64::new(0),
            writer_waits: AtomicU64::new(0),
            walk_wait_ns: AtomicU64::new(0),
            spare: crossbeam::queue::ArrayQueue::new(SPARE_BUFFERS),
            cancelled: AtomicBool::new(false),
            room: Mutex::new(()),
            room_changed: Condvar::new(),
            keep,
        };
        (Arc::new(out), rx)
    }

    /// Whether this snapshot holds `key` (every key, unless filtered).
    #[inline]
    fn keeps(&self, key: &[u8]) -> bool {
        self.keep.as_ref().is_none_or(|keep| keep(key))
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

    /// The writing thread is done with `buf`: kept (emptied) for a producer
    /// to fill again, unless enough are kept already.
    pub(crate) fn recycle(&self, mut buf: Vec<u8>) {
        if buf.capacity() >= FLUSH_BYTES && buf.capacity() <= 4 * FLUSH_BYTES {
            buf.clear();
            let _ = self.spare.push(buf);
        }
    }

    /// An empty buffer with room for a flush's worth: a spare one, or a new
    /// one (never waits: called under a shard lock).
    fn fresh_buffer(&self) -> Vec<u8> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(FLUSH_BYTES + FLUSH_BYTES / 4))
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
    /// snapshot is cancelled, or `deadline` passes; adds the time waited to
    /// `counter`. Returns whether it waited.
    fn wait_below(&self, limit: usize, deadline: Option<Instant>, counter: &AtomicU64) -> bool {
        let above = || self.backlog.load(Ordering::Acquire) > limit && !self.is_cancelled();
        if !above() {
            return false;
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
        counter.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        true
    }

    /// A writer that left the backlog over the bound: waits for the output
    /// to take it down to the bound, until `deadline`. Only with no shard
    /// lock held.
    pub(crate) fn wait_for_room(&self, deadline: Instant) {
        if self.wait_below(self.bound, Some(deadline), &self.writer_wait_ns) {
            self.writer_waits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The walk, between steps (no lock held): waits until the backlog is at
    /// most half the bound, leaving the other half to writers.
    pub(crate) fn pace_walk(&self) {
        self.wait_below(self.bound / 2, None, &self.walk_wait_ns);
    }

    /// Another snapshot's walk may write into this one (the backlog is
    /// within what a walk may leave).
    fn walk_has_room(&self) -> bool {
        self.backlog.load(Ordering::Acquire) <= self.bound / 2 && !self.is_cancelled()
    }

    /// The largest backlog seen, bytes.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Time writers waited for room, nanoseconds, and how many waits.
    pub(crate) fn writer_wait(&self) -> (u64, u64) {
        (
            self.writer_wait_ns.load(Ordering::Relaxed),
            self.writer_waits.load(Ordering::Relaxed),
        )
    }

    /// Time the walk waited for room, nanoseconds.
    pub(crate) fn walk_wait_ns(&self) -> u64 {
        self.walk_wait_ns.load(Ordering::Relaxed)
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
    /// A hash whose chunks the walk is writing, and the chunk it goes on from.
    pending_hash: Option<Bytes>,
    pending_chunk: usize,
    /// Tables FLUSHALL froze, for the walk to write outside the lock (shared
    /// with the other snapshot running in this shard, if any).
    frozen: Vec<Arc<Table<KeyEntry>>>,
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
            pending_chunk: 0,
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
        let next = self.out.fresh_buffer();
        self.out
            .push(std::mem::replace(&mut self.buf, next), std::mem::take(&mut self.items));
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
    fn freeze(&mut self, table: &Arc<Table<KeyEntry>>) {
        if table.len() > 0 {
            self.frozen.push(Arc::clone(table));
        }
        self.cursor = 0;
        self.pending_hash = None;
        self.pending_chunk = 0;
    }

    /// Frozen tables for the walk to write with no lock held.
    pub(crate) fn take_frozen(&mut self) -> Vec<Arc<Table<KeyEntry>>> {
        std::mem::take(&mut self.frozen)
    }
}

/// FLUSHALL during snapshots: `table` (the shard's whole table, replaced by
/// an empty one) goes to every snapshot running in the shard, for their
/// walks to write outside the lock.
pub(crate) fn freeze(snaps: &mut [ShardSnap], table: Table<KeyEntry>) {
    let table = Arc::new(table);
    for snap in snaps {
        snap.freeze(&table);
    }
}

/// Snapshots of a shard as a set of bits over `Shard::snaps` (a shard has
/// at most a few: one save and one stream).
type Mask = u64;
/// Every snapshot: what a writer's serialize-before-write writes into.
const ALL: Mask = Mask::MAX;

fn bit(i: usize) -> Mask {
    debug_assert!(i < Mask::BITS as usize, "more snapshots than a mask holds");
    1 << i
}

/// The newest generation of the running snapshots.
fn newest(snaps: &[ShardSnap]) -> u32 {
    snaps.iter().map(|s| s.version).max().unwrap_or(0)
}

/// Bytes serialized so far by this shard for all its snapshots (monotonic).
fn produced(snaps: &[ShardSnap]) -> usize {
    snaps.iter().map(ShardSnap::produced).sum()
}

/// The snapshots something stamped `v` is older than: those it may still
/// have to be written into.
fn needing(snaps: &[ShardSnap], v: u32) -> Mask {
    snaps
        .iter()
        .enumerate()
        .filter(|(_, s)| v < s.version)
        .fold(0, |m, (i, _)| m | bit(i))
}

/// The new stamp of something stamped `v`, needed by `need`, just written
/// into `wrote` (a part of `need`). If every snapshot that needed it has it,
/// the newest generation; if not, it stays older than every snapshot that
/// does not have it (each of those writes it itself later), and is raised
/// only past those that have it below that.
///
/// So a stamp older than `V` means: not changed since `V`'s cut (a change
/// always writes into every snapshot and stamps the newest generation), and
/// maybe not written into `V` yet. A stamp at least `V` means: written into
/// `V`, or created after its cut.
fn stamp(snaps: &[ShardSnap], v: u32, need: Mask, wrote: Mask) -> u32 {
    let skipped = need & !wrote;
    if skipped == 0 {
        return newest(snaps).max(v);
    }
    let below = snaps
        .iter()
        .enumerate()
        .filter(|(i, _)| skipped & bit(*i) != 0)
        .map(|(_, s)| s.version)
        .min()
        .unwrap_or(u32::MAX);
    snaps
        .iter()
        .enumerate()
        .filter(|(i, s)| wrote & bit(*i) != 0 && s.version < below)
        .map(|(_, s)| s.version)
        .fold(v, u32::max)
}

/// Serializes one chunk of a hash into the snapshots of `allowed` it is
/// older than, then stamps it.
fn touch_chunk(snaps: &mut [ShardSnap], allowed: Mask, key: &[u8], table: &mut Table<FieldEntry>, c: usize) {
    if c >= table.chunk_count() {
        return;
    }
    let v = table.chunk_version(c);
    let need = needing(snaps, v);
    let wrote = need & allowed;
    if wrote == 0 {
        return;
    }
    // Snapshots that filter the key out take only the stamp: nothing is
    // collected or written for them.
    let kept = snaps
        .iter()
        .enumerate()
        .filter(|(i, s)| wrote & bit(*i) != 0 && s.out.keeps(key))
        .fold(0, |m, (i, _)| m | bit(i));
    if kept == 0 {
        table.set_chunk_version(c, stamp(snaps, v, need, wrote));
        return;
    }
    let fields: Vec<(&[u8], &[u8])> = table.chunk_entries(c).map(|f| (&f.field[..], &f.value[..])).collect();
    for (i, snap) in snaps.iter_mut().enumerate() {
        if kept & bit(i) == 0 {
            continue;
        }
        if !fields.is_empty() {
            put_hash_fields(&mut snap.buf, key, fields.iter().copied());
            snap.items += 1;
        }
        snap.dirty = true;
        snap.flush_if_full();
    }
    drop(fields);
    table.set_chunk_version(c, stamp(snaps, v, need, wrote));
}

/// Writes a hash's head into the snapshots of `mask`.
fn put_heads(snaps: &mut [ShardSnap], mask: Mask, key: &[u8], expire: Option<u64>) {
    for (i, snap) in snaps.iter_mut().enumerate() {
        if mask & bit(i) != 0 && snap.out.keeps(key) {
            put_hash_head(&mut snap.buf, key, expire);
            snap.items += 1;
            snap.dirty = true;
            snap.flush_if_full();
        }
    }
}

/// Serialize before write, for a change of the whole entry (its value, its
/// expiry, or its removal): writes it into every snapshot it is older than
/// (for a hash: head and every chunk still older) and stamps it with the
/// newest generation. A no-op for entries created after every cut or
/// already written.
pub(crate) fn touch_entry(snaps: &mut [ShardSnap], e: &mut KeyEntry) {
    let v = e.version;
    let need = needing(snaps, v);
    if need == 0 {
        return;
    }
    let expire = e.expire();
    let KeyEntry {
        key, value, version, ..
    } = e;
    match value {
        Value::Str(val) => {
            for (i, snap) in snaps.iter_mut().enumerate() {
                if need & bit(i) != 0 && snap.out.keeps(key) {
                    put_string(&mut snap.buf, key, val, expire);
                    snap.items += 1;
                    snap.dirty = true;
                    snap.flush_if_full();
                }
            }
        }
        Value::Hash(hv) => {
            put_heads(snaps, need, key, expire);
            for c in 0..hv.table.chunk_count() {
                touch_chunk(snaps, ALL, key, &mut hv.table, c);
            }
        }
    }
    *version = stamp(snaps, v, need, need);
}

/// The walk of snapshot `w` over an entry older than it. It writes into
/// `w`, and into the other snapshots of `allowed` (those whose output has
/// room: a walk must not fill another snapshot's backlog, so a save's walk
/// never grows a stalled follower's) that need it. For a hash: its chunks
/// from `from` on, until `budget` bytes were produced since `start`
/// (`Err(chunk)` to go on from), then the head into `w` (its pass has
/// written every chunk `w` needed) and into each other allowed snapshot
/// that now has every chunk, which is also what the stamp is raised for.
/// Writing the head after the chunks means that a snapshot starting while
/// the walk is in the middle of the hash is not counted as having it.
fn walk_entry(
    snaps: &mut [ShardSnap],
    w: usize,
    allowed: Mask,
    e: &mut KeyEntry,
    from: usize,
    start: usize,
) -> Result<(), usize> {
    let v = e.version;
    let need = needing(snaps, v);
    let expire = e.expire();
    let KeyEntry {
        key, value, version, ..
    } = e;
    let done = match value {
        Value::Str(val) => {
            let wrote = need & allowed;
            for (i, snap) in snaps.iter_mut().enumerate() {
                if wrote & bit(i) != 0 && snap.out.keeps(key) {
                    put_string(&mut snap.buf, key, val, expire);
                    snap.items += 1;
                    snap.flush_if_full();
                }
            }
            wrote
        }
        Value::Hash(hv) => {
            for c in from..hv.table.chunk_count() {
                if needing(snaps, hv.table.chunk_version(c)) & allowed == 0 {
                    continue;
                }
                if produced(snaps) - start >= WALK_STEP_BYTES {
                    return Err(c);
                }
                touch_chunk(snaps, allowed, key, &mut hv.table, c);
            }
            let table = &hv.table;
            let complete = |s: &ShardSnap| (0..table.chunk_count()).all(|c| table.chunk_version(c) >= s.version);
            let headed = snaps
                .iter()
                .enumerate()
                .filter(|(i, s)| *i == w || (need & allowed & bit(*i) != 0 && complete(s)))
                .fold(0, |m, (i, _)| m | bit(i))
                & need;
            put_heads(snaps, headed, key, expire);
            headed
        }
    };
    *version = stamp(snaps, v, need, done);
    Ok(())
}

/// A hash being changed field by field during snapshots: touches each chunk
/// before the change, so every snapshot gets the chunk as it was at its cut.
pub(crate) struct HashMut<'a> {
    pub(crate) hv: &'a mut HashValue,
    pub(crate) snap: Option<(&'a mut [ShardSnap], &'a [u8])>,
}

impl HashMut<'_> {
    /// Sets a field; returns the previous value.
    pub(crate) fn set(&mut self, hash: u32, field: &[u8], value: crate::blob::Blob) -> Option<crate::blob::Blob> {
        if let Some((snaps, key)) = &mut self.snap {
            let c = match self.hv.table.find(hash, field) {
                Some(idx) => Some(Table::<FieldEntry>::chunk_of(idx)),
                None => self.hv.table.next_insert_chunk(),
            };
            if let Some(c) = c {
                touch_chunk(snaps, ALL, key, &mut self.hv.table, c);
            }
        }
        self.hv.set(hash, field, value)
    }

    /// Removes a field; returns its value.
    pub(crate) fn remove(&mut self, hash: u32, field: &[u8]) -> Option<crate::blob::Blob> {
        let idx = self.hv.table.find(hash, field)?;
        if let Some((snaps, key)) = &mut self.snap {
            // The field's chunk, and the last chunk (its last field moves into the hole).
            touch_chunk(snaps, ALL, key, &mut self.hv.table, Table::<FieldEntry>::chunk_of(idx));
            if let Some(last) = self.hv.table.last_index() {
                touch_chunk(snaps, ALL, key, &mut self.hv.table, Table::<FieldEntry>::chunk_of(last));
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
        if e.version >= version || !out.keeps(&e.key) {
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

/// One bounded step of the walk of snapshot `version` over `shard`; returns
/// true when the shard is done for it (its last buffer handed over).
/// Frozen tables are the caller's to take out first
/// ([`ShardSnap::take_frozen`]). What the walk writes goes into every
/// snapshot running in the shard that needs it, since the stamps are shared.
pub(crate) fn walk_step(shard: &mut Shard, hashing: &Hashing, version: u32) -> bool {
    // What the walk serializes is not a writer's to wait for.
    let dirty: Vec<bool> = shard.snaps.iter().map(|s| s.dirty).collect();
    let done = step(shard, hashing, version);
    for (snap, dirty) in shard.snaps.iter_mut().zip(dirty) {
        snap.dirty = dirty;
    }
    done
}

fn step(shard: &mut Shard, hashing: &Hashing, version: u32) -> bool {
    let Shard { table, snaps, .. } = shard;
    let Some(w) = snaps.iter().position(|s| s.version == version) else {
        return true;
    };
    let allowed = snaps
        .iter()
        .enumerate()
        .filter(|(i, s)| *i == w || s.out.walk_has_room())
        .fold(0, |m, (i, _)| m | bit(i));
    let start = produced(snaps);
    if let Some(key) = snaps[w].pending_hash.clone() {
        let h = hashing.hash(&key);
        if let Some(idx) = table.find(h as u32, &key) {
            let e = table.at_mut(idx);
            // Unless gone, or written by a change (or another walk) meanwhile.
            if e.version < version {
                let from = snaps[w].pending_chunk;
                if let Err(c) = walk_entry(snaps, w, allowed, e, from, start) {
                    snaps[w].pending_chunk = c;
                    return false;
                }
            }
        }
        snaps[w].pending_hash = None;
        snaps[w].pending_chunk = 0;
    }
    let mut looked = 0;
    snaps[w].cursor = snaps[w].cursor.min(table.len());
    while snaps[w].cursor > 0 && looked < WALK_STEP_ENTRIES && produced(snaps) - start < WALK_STEP_BYTES {
        snaps[w].cursor -= 1;
        looked += 1;
        let e = table.at_mut(snaps[w].cursor);
        if e.version >= version {
            continue;
        }
        if let Err(c) = walk_entry(snaps, w, allowed, e, 0, start) {
            snaps[w].pending_hash = Some(Bytes::copy_from_slice(&e.key));
            snaps[w].pending_chunk = c;
            return false;
        }
    }
    let snap = &mut snaps[w];
    if snap.cursor == 0 && snap.pending_hash.is_none() {
        snap.flush();
        return true;
    }
    snap.flush_if_full();
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Blob;

    /// Items and bytes received so far from the output's queue.
    fn drain(rx: &Receiver<Sent>, out: &SnapOutput) -> u64 {
        let mut items = 0;
        for sent in rx.try_iter() {
            if let Sent::Chunk(buf, n) = sent {
                items += n;
                out.written(buf.len());
                out.recycle(buf);
            }
        }
        items
    }

    #[test]
    fn a_walk_step_is_bounded_and_every_entry_is_written_once() {
        const KEYS: usize = 3000;
        const VALUE: usize = 1000;
        let hashing = Hashing::new(7, 1);
        let mut shard = Shard::new(false);
        for i in 0..KEYS {
            let key = format!("key:{i:08}");
            let h = hashing.hash(key.as_bytes());
            shard.insert(
                h,
                Blob::from(key.as_str()),
                Value::Str(Blob::from(vec![i as u8; VALUE])),
                0,
                0,
            );
        }
        // The cut of snapshot 1.
        shard.generation = 1;
        let (out, rx) = SnapOutput::new(1 << 30);
        let len = shard.table.len();
        shard.snaps.push(ShardSnap::new(1, Arc::clone(&out), len));
        let (mut steps, mut items, mut touched) = (0usize, 0u64, 0usize);
        loop {
            let before = produced(&shard.snaps);
            let done = walk_step(&mut shard, &hashing, 1);
            let step = produced(&shard.snaps) - before;
            // One lock hold: at most the step's bytes plus the item that crossed them.
            assert!(step <= WALK_STEP_BYTES + VALUE + 64, "a step serialized {step} bytes");
            steps += 1;
            // A writer between steps changes an entry the walk has not reached.
            if steps % 7 == 0 && shard.snaps[0].cursor > 0 {
                let idx = shard.snaps[0].cursor - 1;
                touch_entry(&mut shard.snaps, shard.table.at_mut(idx));
                touched += 1;
                assert!(
                    shard.snaps[0].take_dirty(),
                    "a write's serializing marks the part dirty"
                );
            }
            items += drain(&rx, &out);
            if done {
                break;
            }
        }
        items += drain(&rx, &out);
        // Each entry once: by the walk or by the write that came first.
        assert_eq!(items, KEYS as u64);
        assert!(touched > 0);
        assert!(steps >= KEYS * VALUE / (WALK_STEP_BYTES + VALUE + 64), "{steps} steps");
        assert!(
            !shard.snaps[0].take_dirty(),
            "the walk's own serializing is not a writer's"
        );
        // The emptied buffers came back for the producers to fill again.
        assert!(!out.spare.is_empty());
        assert!(shard.snaps[0].buf.capacity() >= FLUSH_BYTES);
    }
}
