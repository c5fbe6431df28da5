//! The per-shard hash table: power-of-two bucket arrays with chained entries,
//! incremental rehash, and a dense slab for the entries themselves.
//!
//! Why our own table and not hashbrown: the scan cursor needs stable bucket
//! positions across resizes (Redis' reverse-binary cursor), snapshots need a
//! version per bucket, and no single operation may pay for a whole resize.
//!
//! Layout:
//! - Entries live in a [`Slab`]: a list of chunks (4, 4, 8, 16, ... 4096, 4096,
//!   ... slots) that never reallocates, so growth never copies entries. The
//!   slab is kept dense: removal moves the last entry into the hole (and
//!   re-links it), so memory shrinks with the data and random sampling (for
//!   eviction) is a uniform index.
//! - A bucket array ([`Buckets`]) holds `u32` chain heads; a link is `slot
//!   index + 1` and `0` ends a chain. Arrays of 256 KiB and more are
//!   anonymous mappings: fresh zero pages, so starting a resize costs O(1)
//!   whatever glibc's malloc would do (after large frees it serves big
//!   requests from the heap and zeroes them, ~1 ms for 8 MiB). An array
//!   replaced by a finished resize is not freed in the write that finishes
//!   it (unmapping megabytes takes ~0.5 ms): it is parked in `retired` for the
//!   owner to free outside its lock.
//! - Memory prepared off the write path ([`Table::growth_needs`],
//!   [`Table::add_prepared`]): a growing table can be handed full-size slab
//!   chunks and its next bucket array with their pages already touched
//!   ([`Prepared::make`], by the background thread, with no lock held), so
//!   the insert that opens a chunk or starts a resize takes memory whose
//!   first-touch page faults were paid elsewhere. A fresh page's first
//!   write is a fault that in a VM can take hundreds of µs; without
//!   prepared memory an insert allocates as before.
//! - While resizing there are two arrays (`old`, `new`), like Redis' `ht[0]`
//!   and `ht[1]`: buckets of `old` below `rehash_idx` have been moved. Every
//!   write moves [`REHASH_STEP`] buckets, and [`Table::rehash_step`] lets a
//!   background thread move more. Moving a bucket only rewrites links.
//!
//! Invariants:
//! - an entry with hash `h` is in the chain of bucket `h & mask` of exactly
//!   one array; when not rehashing that is `old`.
//! - `old.len()` and `new.len()` are powers of two (`new` empty when not
//!   rehashing); every bucket of `old` below `rehash_idx` is empty.
//! - the ratio between the two arrays is at most [`MAX_RESIZE_RATIO`], so one
//!   scan step visits at most `1 + MAX_RESIZE_RATIO` buckets.

use std::mem;

/// Smallest bucket array.
pub(crate) const MIN_BUCKETS: usize = 4;
/// Buckets moved by every write while a resize is in progress.
const REHASH_STEP: usize = 2;
/// Empty buckets a rehash step may skip per bucket it moves (Redis: 10).
const EMPTY_VISITS: usize = 10;
/// Largest size ratio between the arrays during a resize (shrinks go in steps).
pub(crate) const MAX_RESIZE_RATIO: usize = 8;

/// Bucket arrays from this many bytes on are anonymous mappings.
const MAP_THRESHOLD: usize = 256 * 1024;

/// A zero-initialised array of chain heads.
pub(crate) enum Buckets {
    Heap(Vec<u32>),
    Mapped(memmap2::MmapMut),
}

impl Buckets {
    fn zeroed(n: usize) -> Buckets {
        Buckets::zeroed_with(n, false)
    }

    /// `n` zero heads; with `populate`, a mapped array's pages are faulted
    /// in now (`MAP_POPULATE`), by the caller, rather than by later writes.
    fn zeroed_with(n: usize, populate: bool) -> Buckets {
        if n * mem::size_of::<u32>() >= MAP_THRESHOLD {
            let mut options = memmap2::MmapOptions::new();
            options.len(n * mem::size_of::<u32>());
            if populate {
                options.populate();
            }
            match options.map_anon() {
                Ok(map) => return Buckets::Mapped(map),
                Err(e) => tracing::debug!(error = %e, "bucket array mapping failed, using the heap"),
            }
        }
        Buckets::Heap(vec![0; n])
    }

    /// Heap or mapped bytes.
    fn bytes(&self) -> usize {
        match self {
            Buckets::Heap(v) => v.capacity() * mem::size_of::<u32>(),
            Buckets::Mapped(m) => m.len(),
        }
    }
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets::Heap(Vec::new())
    }
}

impl std::ops::Deref for Buckets {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        match self {
            Buckets::Heap(v) => v,
            // Page-aligned and a multiple of 4 bytes long: the cast cannot fail.
            Buckets::Mapped(m) => bytemuck::cast_slice(&m[..]),
        }
    }
}

impl std::ops::DerefMut for Buckets {
    fn deref_mut(&mut self) -> &mut [u32] {
        match self {
            Buckets::Heap(v) => v,
            Buckets::Mapped(m) => bytemuck::cast_slice_mut(&mut m[..]),
        }
    }
}

/// What the table needs to know of an entry.
pub(crate) trait TableEntry {
    /// The key the entry is found by.
    fn key(&self) -> &[u8];
}

/// One slot of the slab: the entry, its 32-bit hash and the chain link.
pub(crate) struct Node<E> {
    hash: u32,
    next: u32,
    pub(crate) entry: E,
}

const CHUNK_MAX_BITS: u32 = 12;
const CHUNK_MAX: usize = 1 << CHUNK_MAX_BITS;
const GEOMETRIC_END: usize = 1 << (CHUNK_MAX_BITS + 1);

/// Chunk number and offset of slab index `idx`. Chunk sizes: 4, 4, 8, 16, ...,
/// 4096 (covering 4096..8192), then 4096 each.
fn locate(idx: usize) -> (usize, usize) {
    if idx < 4 {
        (0, idx)
    } else if idx < GEOMETRIC_END {
        let log = (usize::BITS - 1 - idx.leading_zeros()) as usize;
        (log - 1, idx - (1 << log))
    } else {
        let rel = idx - GEOMETRIC_END;
        (CHUNK_MAX_BITS as usize + rel / CHUNK_MAX, rel % CHUNK_MAX)
    }
}

fn chunk_capacity(chunk: usize) -> usize {
    match chunk {
        0 => 4,
        c if c < CHUNK_MAX_BITS as usize => 1 << (c + 1),
        _ => CHUNK_MAX,
    }
}

/// Full-size chunks a growing table keeps prepared, at most (and at most
/// one per [`SPARE_CHUNKS_PER`] chunks in use, so a small table keeps few).
const SPARE_CHUNKS: usize = 8;
const SPARE_CHUNKS_PER: usize = 8;
/// A table is due for its next bucket array once it holds this fraction of
/// its buckets (it resizes at 1:1). Late, because a table that stops
/// growing in this band keeps the array (twice its own, accounted): 7/8
/// still leaves a growing shard an eighth of its size in inserts to go, far
/// more than one background cycle takes.
const SPARE_BUCKETS_AT: (usize, usize) = (7, 8);

/// Dense, chunked storage of nodes; indexes are `u32`.
struct Slab<E> {
    chunks: Vec<Vec<Node<E>>>,
    /// Empty full-size chunks ([`CHUNK_MAX`] slots) with their pages
    /// touched, taken before allocating a new one.
    spare: Vec<Vec<Node<E>>>,
    /// Snapshot generation of each chunk (see `snapshot/`): a snapshot
    /// serializes a chunk before the first write that changes it.
    versions: Vec<u32>,
    /// Generation stamped on chunks created from now on.
    birth: u32,
    len: usize,
    /// Sum of the chunks' capacities (kept so memory accounting is O(1)).
    capacity: usize,
}

impl<E> Slab<E> {
    fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            spare: Vec::new(),
            versions: Vec::new(),
            birth: 0,
            len: 0,
            capacity: 0,
        }
    }

    fn get(&self, idx: usize) -> &Node<E> {
        let (c, o) = locate(idx);
        &self.chunks[c][o]
    }

    fn get_mut(&mut self, idx: usize) -> &mut Node<E> {
        let (c, o) = locate(idx);
        &mut self.chunks[c][o]
    }

    fn push(&mut self, node: Node<E>) -> usize {
        let idx = self.len;
        let (c, _) = locate(idx);
        if c == self.chunks.len() {
            let chunk = match self.spare.pop() {
                Some(spare) if chunk_capacity(c) == CHUNK_MAX => spare,
                other => {
                    self.spare.extend(other);
                    Vec::with_capacity(chunk_capacity(c))
                }
            };
            self.chunks.push(chunk);
            self.versions.push(self.birth);
            self.capacity += chunk_capacity(c);
        }
        self.chunks[c].push(node);
        self.len += 1;
        idx
    }

    fn pop(&mut self) -> Option<Node<E>> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        let (c, _) = locate(self.len);
        let node = self.chunks[c].pop();
        // Keep at most one empty chunk beyond the one being filled, so memory
        // follows the data without thrashing at a chunk boundary.
        while self.chunks.len() > c + 2 {
            self.chunks.pop();
            self.versions.pop();
            self.capacity -= chunk_capacity(self.chunks.len());
        }
        node
    }

    fn heap_bytes(&self) -> usize {
        // Chunks are few and large (except the first few), so per-chunk
        // allocator overhead is left out.
        (self.capacity + self.spare.len() * CHUNK_MAX) * mem::size_of::<Node<E>>()
            + self.chunks.capacity() * mem::size_of::<Vec<Node<E>>>()
    }

    /// Prepared chunks a growing slab could use now: none before the
    /// full-size chunks (or while the last chunk is less than half full),
    /// then up to one per [`SPARE_CHUNKS_PER`] in use, at most [`SPARE_CHUNKS`].
    fn spare_needed(&self) -> usize {
        let chunks = self.chunks.len();
        let Some(last) = self.chunks.last() else { return 0 };
        if chunks + 1 < CHUNK_MAX_BITS as usize || last.len() * 2 < last.capacity() {
            return 0;
        }
        (chunks / SPARE_CHUNKS_PER)
            .clamp(1, SPARE_CHUNKS)
            .saturating_sub(self.spare.len())
    }

    fn iter(&self) -> impl Iterator<Item = &Node<E>> {
        self.chunks.iter().flatten()
    }
}

/// Memory for a growing table, made with no lock held (see the module
/// docs): full-size slab chunks and a bucket array, their pages touched.
pub(crate) struct Prepared<E> {
    chunks: Vec<Vec<Node<E>>>,
    buckets: Option<Buckets>,
}

/// What [`Table::growth_needs`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct GrowthNeeds {
    /// Full-size slab chunks.
    pub(crate) chunks: usize,
    /// The bucket count of the next resize, if a mapped array is due.
    pub(crate) buckets: Option<usize>,
}

impl GrowthNeeds {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks == 0 && self.buckets.is_none()
    }
}

impl<E> Prepared<E> {
    /// Allocates what `needs` asks for and touches every page of it.
    pub(crate) fn make(needs: GrowthNeeds) -> Prepared<E> {
        let chunks = (0..needs.chunks)
            .map(|_| {
                let mut chunk: Vec<Node<E>> = Vec::with_capacity(CHUNK_MAX);
                // One write per slot faults every page in here; the slots
                // stay uninitialised for the table (a `Vec` of length 0).
                // The `black_box` first: without it the compiler may turn
                // allocation + zeroing into a zeroed allocation, which a
                // fresh mapping serves without touching a page.
                std::hint::black_box(&mut chunk);
                for slot in chunk.spare_capacity_mut() {
                    *slot = mem::MaybeUninit::zeroed();
                }
                std::hint::black_box(chunk.as_ptr());
                chunk
            })
            .collect();
        Prepared {
            chunks,
            buckets: needs.buckets.map(|n| Buckets::zeroed_with(n, true)),
        }
    }
}

/// A bucketed hash table with incremental rehash. See the module docs.
pub(crate) struct Table<E> {
    slab: Slab<E>,
    old: Buckets,
    new: Buckets,
    /// A prepared array for the next grow (see the module docs).
    spare_buckets: Buckets,
    rehash_idx: usize,
    /// Large arrays replaced by finished resizes, to free outside the lock.
    retired: Vec<Buckets>,
}

/// What one bucket visit of a scan saw.
pub(crate) struct ScanStep {
    /// The cursor to continue from; 0 when the table has been covered.
    pub(crate) cursor: u64,
    /// Buckets examined by this step.
    pub(crate) buckets: usize,
}

impl<E: TableEntry> Table<E> {
    pub(crate) fn new() -> Self {
        Table {
            slab: Slab::new(),
            old: Buckets::zeroed(MIN_BUCKETS),
            new: Buckets::default(),
            spare_buckets: Buckets::default(),
            rehash_idx: 0,
            retired: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len
    }

    /// Sizes an empty table's bucket array for `n` entries at once, so that
    /// loading them does no resizing (a snapshot load knows its key count).
    pub(crate) fn reserve_empty(&mut self, n: usize) {
        if self.len() > 0 || self.is_rehashing() {
            return;
        }
        let buckets = n.max(MIN_BUCKETS).next_power_of_two().min(u32::MAX as usize + 1);
        if buckets > self.old.len() {
            self.old = Buckets::zeroed(buckets);
        }
    }

    pub(crate) fn is_rehashing(&self) -> bool {
        !self.new.is_empty()
    }

    /// Bucket count of the array new entries go to.
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        if self.is_rehashing() {
            self.new.len()
        } else {
            self.old.len()
        }
    }

    /// Heap bytes owned by the table structure (slab chunks and bucket arrays),
    /// not counting what entries own.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slab.heap_bytes()
            + self.old.bytes()
            + self.new.bytes()
            + self.spare_buckets.bytes()
            + self.retired.iter().map(Buckets::bytes).sum::<usize>()
    }

    /// The memory this table will soon take on the write path, to be
    /// prepared with [`Prepared::make`] outside the lock: full-size slab
    /// chunks once it fills them, and its next bucket array once it is
    /// [`SPARE_BUCKETS_AT`] full (mapped arrays only; small ones are cheap).
    pub(crate) fn growth_needs(&self) -> GrowthNeeds {
        let next = self.old.len() * 2;
        let due = !self.is_rehashing()
            && self.len() * SPARE_BUCKETS_AT.1 >= self.old.len() * SPARE_BUCKETS_AT.0
            && next * mem::size_of::<u32>() >= MAP_THRESHOLD
            && next <= u32::MAX as usize + 1
            && self.spare_buckets.len() != next;
        GrowthNeeds {
            chunks: self.slab.spare_needed(),
            buckets: due.then_some(next),
        }
    }

    /// Takes prepared memory. What no longer fits (a bucket array of
    /// another size than the next grow's, chunks beyond the cap) is handed
    /// back, for the caller to free outside the lock.
    pub(crate) fn add_prepared(&mut self, mut prepared: Prepared<E>) -> Prepared<E> {
        let room = SPARE_CHUNKS.saturating_sub(self.slab.spare.len());
        let keep = prepared.chunks.len().min(room);
        self.slab.spare.extend(prepared.chunks.drain(..keep));
        if let Some(b) = prepared.buckets.take() {
            if !self.is_rehashing() && b.len() == self.old.len() * 2 {
                let replaced = mem::replace(&mut self.spare_buckets, b);
                prepared.buckets = (!replaced.is_empty()).then_some(replaced);
            } else {
                prepared.buckets = Some(b);
            }
        }
        prepared
    }

    /// Prepared full-size chunks held (tests).
    #[cfg(test)]
    fn spare_chunks(&self) -> usize {
        self.slab.spare.len()
    }

    /// Slot index of the entry with this key.
    pub(crate) fn find(&self, hash: u32, key: &[u8]) -> Option<usize> {
        let b = hash as usize & (self.old.len() - 1);
        if let Some(idx) = self.find_in_chain(self.old[b], hash, key) {
            return Some(idx);
        }
        if self.is_rehashing() {
            let b = hash as usize & (self.new.len() - 1);
            return self.find_in_chain(self.new[b], hash, key);
        }
        None
    }

    fn find_in_chain(&self, mut link: u32, hash: u32, key: &[u8]) -> Option<usize> {
        while link != 0 {
            let idx = (link - 1) as usize;
            let node = self.slab.get(idx);
            if node.hash == hash && node.entry.key() == key {
                return Some(idx);
            }
            link = node.next;
        }
        None
    }

    pub(crate) fn get(&self, hash: u32, key: &[u8]) -> Option<&E> {
        self.find(hash, key).map(|i| &self.slab.get(i).entry)
    }

    pub(crate) fn at(&self, idx: usize) -> &E {
        &self.slab.get(idx).entry
    }

    pub(crate) fn at_mut(&mut self, idx: usize) -> &mut E {
        &mut self.slab.get_mut(idx).entry
    }

    /// Inserts an entry whose key is not in the table; returns its slot.
    pub(crate) fn insert_new(&mut self, hash: u32, entry: E) -> usize {
        self.rehash_step(REHASH_STEP);
        let idx = self.slab.push(Node { hash, next: 0, entry });
        let link = idx_link(idx);
        let heads = if self.is_rehashing() {
            &mut self.new
        } else {
            &mut self.old
        };
        let b = hash as usize & (heads.len() - 1);
        self.slab.get_mut(idx).next = heads[b];
        heads[b] = link;
        self.maybe_grow();
        // The new entry may have been re-linked but never moves in the slab.
        idx
    }

    /// Removes the entry at `idx`. Returns it, and if another entry was moved
    /// into the hole to keep the slab dense, that entry's old and new index.
    pub(crate) fn remove_at(&mut self, idx: usize) -> (E, Option<(usize, usize)>) {
        self.unlink(idx);
        let last = self.slab.len - 1;
        let moved = if idx != last {
            // Re-point whatever links to `last` at `idx`, then swap it in.
            let last_hash = self.slab.get(last).hash;
            self.relink(last_hash, last, idx);
            Some((last, idx))
        } else {
            None
        };
        let removed = match moved {
            Some(_) => {
                let tail = self.slab.pop().expect("slab has an entry at `last`");
                mem::replace(self.slab.get_mut(idx), tail)
            }
            None => self.slab.pop().expect("slab has an entry at `idx`"),
        };
        self.rehash_step(REHASH_STEP);
        self.maybe_shrink();
        (removed.entry, moved)
    }

    /// Removes every entry, keeping nothing but the smallest bucket array.
    pub(crate) fn clear(&mut self) {
        *self = Self::new();
    }

    /// Removes the entry at `idx` from its chain (the slab is untouched).
    fn unlink(&mut self, idx: usize) {
        let hash = self.slab.get(idx).hash;
        let next = self.slab.get(idx).next;
        let target = idx_link(idx);
        if !self.replace_link(hash, target, next) {
            unreachable!("entry {idx} is in no chain: table invariant broken");
        }
    }

    /// Makes the link that points at `from` point at `to` instead.
    fn relink(&mut self, hash: u32, from: usize, to: usize) {
        if !self.replace_link(hash, idx_link(from), idx_link(to)) {
            unreachable!("entry {from} is in no chain: table invariant broken");
        }
    }

    /// Finds the link (bucket head or `next` field) holding `target` in the
    /// chains where an entry with `hash` can be, and sets it to `value`.
    fn replace_link(&mut self, hash: u32, target: u32, value: u32) -> bool {
        for in_new in [false, true] {
            let heads = if in_new { &mut self.new } else { &mut self.old };
            if heads.is_empty() {
                continue;
            }
            let b = hash as usize & (heads.len() - 1);
            if heads[b] == target {
                heads[b] = value;
                return true;
            }
            let mut link = heads[b];
            while link != 0 {
                let node = self.slab.get_mut((link - 1) as usize);
                if node.next == target {
                    node.next = value;
                    return true;
                }
                link = node.next;
            }
        }
        false
    }

    fn maybe_grow(&mut self) {
        if !self.is_rehashing() && self.len() > self.old.len() {
            self.start_resize(self.old.len() * 2);
        }
    }

    fn maybe_shrink(&mut self) {
        let size = self.old.len();
        if !self.is_rehashing() && size > MIN_BUCKETS && self.len() * 8 < size {
            let target = self
                .len()
                .max(1)
                .next_power_of_two()
                .max(size / MAX_RESIZE_RATIO)
                .max(MIN_BUCKETS);
            if target < size {
                self.start_resize(target);
            }
        }
    }

    fn start_resize(&mut self, buckets: usize) {
        debug_assert!(buckets.is_power_of_two() && buckets <= u32::MAX as usize + 1);
        let spare = mem::take(&mut self.spare_buckets);
        self.new = if spare.len() == buckets {
            spare
        } else {
            if spare.bytes() >= MAP_THRESHOLD {
                // Prepared for a grow that did not come: freed outside the lock.
                self.retired.push(spare);
            }
            Buckets::zeroed(buckets)
        };
        self.rehash_idx = 0;
    }

    /// Moves up to `buckets` non-empty buckets (skipping at most
    /// `EMPTY_VISITS` empty ones per bucket) from the old array to the new one.
    /// Returns true while a resize is still in progress.
    pub(crate) fn rehash_step(&mut self, buckets: usize) -> bool {
        if !self.is_rehashing() {
            return false;
        }
        let mut empty_budget = buckets * EMPTY_VISITS;
        let mut moved = 0;
        while moved < buckets && self.rehash_idx < self.old.len() {
            let mut link = mem::take(&mut self.old[self.rehash_idx]);
            if link == 0 {
                self.rehash_idx += 1;
                empty_budget -= 1;
                if empty_budget == 0 {
                    break;
                }
                continue;
            }
            let mask = self.new.len() - 1;
            while link != 0 {
                let node = self.slab.get_mut((link - 1) as usize);
                let next = node.next;
                let b = node.hash as usize & mask;
                node.next = self.new[b];
                self.new[b] = link;
                link = next;
            }
            self.rehash_idx += 1;
            moved += 1;
        }
        if self.rehash_idx >= self.old.len() {
            let done = mem::replace(&mut self.old, mem::take(&mut self.new));
            if done.bytes() >= MAP_THRESHOLD {
                self.retired.push(done);
            }
            self.rehash_idx = 0;
            // A resize that finished may leave the table due for another one
            // (deletes during a grow, or a capped shrink).
            self.maybe_shrink();
            return self.is_rehashing();
        }
        true
    }

    /// One step of Redis' reverse-binary scan (`dictScan`): calls `f` for the
    /// entries of the bucket at `cursor` (and of its expansions in the larger
    /// array while resizing) and returns the next cursor.
    pub(crate) fn scan_step(&self, cursor: u64, mut f: impl FnMut(&E)) -> ScanStep {
        let mut v = cursor;
        let mut buckets = 0;
        let mut visit = |heads: &[u32], b: usize, buckets: &mut usize| {
            *buckets += 1;
            let mut link = heads[b];
            while link != 0 {
                let node = self.slab.get((link - 1) as usize);
                f(&node.entry);
                link = node.next;
            }
        };
        if !self.is_rehashing() {
            let m0 = (self.old.len() - 1) as u64;
            visit(&self.old, (v & m0) as usize, &mut buckets);
            v = next_cursor(v, m0);
        } else {
            let (small, large) = if self.old.len() <= self.new.len() {
                (&self.old, &self.new)
            } else {
                (&self.new, &self.old)
            };
            let m0 = (small.len() - 1) as u64;
            let m1 = (large.len() - 1) as u64;
            visit(small, (v & m0) as usize, &mut buckets);
            loop {
                visit(large, (v & m1) as usize, &mut buckets);
                v = next_cursor(v, m1);
                if v & (m0 ^ m1) == 0 {
                    break;
                }
            }
        }
        ScanStep { cursor: v, buckets }
    }

    /// Buckets the next scan step will examine (1, or more while resizing).
    pub(crate) fn scan_step_cost(&self) -> usize {
        if self.is_rehashing() {
            let (a, b) = (self.old.len(), self.new.len());
            1 + a.max(b) / a.min(b)
        } else {
            1
        }
    }

    /// Chunk of the slab holding slot `idx`.
    pub(crate) fn chunk_of(idx: usize) -> usize {
        locate(idx).0
    }

    /// Number of slab chunks.
    pub(crate) fn chunk_count(&self) -> usize {
        self.slab.chunks.len()
    }

    /// Snapshot generation of chunk `c`.
    pub(crate) fn chunk_version(&self, c: usize) -> u32 {
        self.slab.versions[c]
    }

    /// Stamps chunk `c` with a snapshot generation.
    pub(crate) fn set_chunk_version(&mut self, c: usize, v: u32) {
        self.slab.versions[c] = v;
    }

    /// The entries of chunk `c`.
    pub(crate) fn chunk_entries(&self, c: usize) -> impl Iterator<Item = &E> {
        self.slab.chunks[c].iter().map(|n| &n.entry)
    }

    /// The chunk the next insert will write to, if it exists already.
    pub(crate) fn next_insert_chunk(&self) -> Option<usize> {
        let c = locate(self.slab.len).0;
        (c < self.slab.chunks.len()).then_some(c)
    }

    /// Generation stamped on chunks created from now on.
    pub(crate) fn set_birth_version(&mut self, v: u32) {
        self.slab.birth = v;
    }

    /// Takes the arrays retired by finished resizes (to drop outside a lock).
    pub(crate) fn take_retired(&mut self) -> Vec<Buckets> {
        mem::take(&mut self.retired)
    }

    /// True if retired arrays are waiting to be freed.
    pub(crate) fn has_retired(&self) -> bool {
        !self.retired.is_empty()
    }

    /// All entries, in slab order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &E> {
        self.slab.iter().map(|n| &n.entry)
    }

    /// The slot index of the last entry (used to drain from the end cheaply).
    pub(crate) fn last_index(&self) -> Option<usize> {
        self.slab.len.checked_sub(1)
    }
}

fn idx_link(idx: usize) -> u32 {
    u32::try_from(idx + 1).expect("a table holds fewer than 2^32 - 1 entries")
}

/// Increments the reversed bits of `v` under `mask` (Redis' cursor step).
fn next_cursor(v: u64, mask: u64) -> u64 {
    let mut v = v | !mask;
    v = v.reverse_bits();
    v = v.wrapping_add(1);
    v.reverse_bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    struct E(Vec<u8>);
    impl TableEntry for E {
        fn key(&self) -> &[u8] {
            &self.0
        }
    }

    fn h(k: &[u8]) -> u32 {
        // A weak hash on purpose: it makes chains and collisions common.
        k.iter().fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(*b as u32))
    }

    fn remove(t: &mut Table<E>, k: &[u8]) -> bool {
        match t.find(h(k), k) {
            Some(i) => {
                t.remove_at(i);
                true
            }
            None => false,
        }
    }

    fn check(t: &Table<E>, model: &BTreeSet<Vec<u8>>) {
        assert_eq!(t.len(), model.len());
        for k in model {
            let i = t.find(h(k), k).expect("present");
            assert_eq!(&t.at(i).0, k);
        }
        let all: BTreeSet<Vec<u8>> = t.iter().map(|e| e.0.clone()).collect();
        assert_eq!(&all, model);
    }

    #[test]
    fn chunk_locations_are_contiguous() {
        let mut expect = (0, 0);
        for idx in 0..40_000 {
            let got = locate(idx);
            if idx > 0 && got.0 != expect.0 {
                assert_eq!(expect.1, chunk_capacity(expect.0), "chunk {} full at {idx}", expect.0);
                expect = (expect.0 + 1, 0);
            }
            assert_eq!(got, expect, "idx {idx}");
            expect.1 += 1;
        }
    }

    #[test]
    fn grows_and_shrinks_keeping_every_entry() {
        let mut t = Table::new();
        let mut model = BTreeSet::new();
        for i in 0..20_000u32 {
            let k = i.to_le_bytes().to_vec();
            t.insert_new(h(&k), E(k.clone()));
            model.insert(k);
            if i % 997 == 0 {
                check(&t, &model);
            }
        }
        check(&t, &model);
        assert!(t.buckets() >= 16_384);
        for i in (0..20_000u32).filter(|i| i % 50 != 0) {
            let k = i.to_le_bytes().to_vec();
            assert!(remove(&mut t, &k));
            model.remove(&k);
            if i % 991 == 0 {
                check(&t, &model);
            }
        }
        while t.rehash_step(100) {}
        check(&t, &model);
        assert!(t.buckets() <= 2048, "shrunk to {}", t.buckets());
    }

    #[test]
    fn prepared_memory_is_taken_by_growth_and_keeps_every_entry() {
        let mut t = Table::new();
        let mut model = BTreeSet::new();
        let (mut offered_arrays, mut used_arrays, mut used_chunks) = (Vec::new(), 0, 0);
        let mut spare_before = 0;
        for i in 0..300_000u32 {
            let k = i.to_le_bytes().to_vec();
            let was_rehashing = t.is_rehashing();
            t.insert_new(h(&k), E(k.clone()));
            model.insert(k);
            if !was_rehashing && t.is_rehashing() && offered_arrays.contains(&t.new.as_ptr()) {
                used_arrays += 1;
            }
            if t.spare_chunks() < spare_before {
                used_chunks += spare_before - t.spare_chunks();
            }
            if i % 2_000 == 0 {
                let needs = t.growth_needs();
                let before = t.heap_bytes();
                let prepared = Prepared::make(needs);
                if let Some(b) = &prepared.buckets {
                    assert_eq!(b.len(), t.old.len() * 2);
                    offered_arrays.push(b.as_ptr());
                }
                let added = prepared.chunks.len() * CHUNK_MAX * mem::size_of::<Node<E>>()
                    + prepared.buckets.as_ref().map_or(0, Buckets::bytes);
                let back = t.add_prepared(prepared);
                assert!(
                    back.chunks.is_empty() && back.buckets.is_none(),
                    "what it asked for fits"
                );
                assert_eq!(t.heap_bytes(), before + added, "prepared memory is accounted");
                assert!(t.growth_needs().is_empty(), "asks once");
            }
            spare_before = t.spare_chunks();
            if i % 9_973 == 0 {
                check(&t, &model);
            }
        }
        check(&t, &model);
        // 300k entries: ~70 full-size chunks, arrays of 64k..512k buckets
        // (mapped from 256 KiB) prepared at 7/8 full.
        assert!(used_chunks >= 30, "prepared chunks used: {used_chunks}");
        assert!(
            used_arrays >= 3,
            "prepared arrays used: {used_arrays} of {}",
            offered_arrays.len()
        );
        // An array of the wrong size is handed back, not kept.
        let wrong = Prepared {
            chunks: Vec::new(),
            buckets: Some(Buckets::zeroed(t.old.len() * 4)),
        };
        assert!(t.add_prepared(wrong).buckets.is_some());
        // Deleting down to nothing keeps every remaining entry findable.
        for i in 0..300_000u32 {
            let k = i.to_le_bytes().to_vec();
            assert!(remove(&mut t, &k));
            model.remove(&k);
        }
        while t.rehash_step(100) {}
        check(&t, &model);
    }

    #[test]
    fn scan_covers_every_entry_through_resizes() {
        let mut t = Table::new();
        for i in 0..1000u32 {
            let k = i.to_le_bytes().to_vec();
            t.insert_new(h(&k), E(k));
        }
        let mut seen = BTreeMap::new();
        let mut cursor = 0;
        let mut next_key = 1000u32;
        loop {
            let step = t.scan_step(cursor, |e| *seen.entry(e.0.clone()).or_insert(0) += 1);
            cursor = step.cursor;
            // Grow the table 8x in the middle of the scan (bounded: an
            // iteration ends only if the table stops growing).
            for _ in 0..(if next_key < 8000 { 20 } else { 0 }) {
                let k = next_key.to_le_bytes().to_vec();
                next_key += 1;
                t.insert_new(h(&k), E(k));
            }
            if cursor == 0 {
                break;
            }
        }
        for i in 0..1000u32 {
            assert!(seen.contains_key(i.to_le_bytes().as_slice()), "missed {i}");
        }
    }
}
