//! The ring's mapped memory: the only module of the log with `unsafe`.
//!
//! A [`RingMemory`] owns one mapping (a file through memmap2, or anonymous
//! memory) laid out as a header page followed by `capacity` data bytes.
//! Many threads copy bytes in and out of the data region at the same time,
//! some of them (readers of a ring that overwrites old laps) while another
//! thread writes the same bytes. Such copies must be defined under Rust's
//! memory model, where two plain accesses to one byte, one of them a write,
//! that are not ordered by happens-before are a data race and undefined
//! behaviour, raw pointers or not. So:
//!
//! - **The data region is a slice of `AtomicU64` words** ([`RingMemory::words`],
//!   the one `unsafe` that reaches it), and every access to it is a
//!   word-sized atomic: copies in and out are per-word `Relaxed` stores and
//!   loads (a copy that starts or ends inside a word loads that whole word;
//!   a write of part of a word merges its bytes with a compare-and-swap, so
//!   no byte-sized atomic ever overlaps a word-sized one, which Rust's model
//!   leaves undefined too). A racing copy may be *torn* (some words old,
//!   some new) but never undefined; nothing else in the process touches
//!   these bytes (msync is the kernel's).
//! - **Commit words** (the first 8 bytes of a record: its own offset) are
//!   the same words, published with a `Release` store ([`store_commit`](RingMemory::store_commit))
//!   and inspected with an `Acquire` load ([`load_commit`](RingMemory::load_commit)); a reader's copy of
//!   a record header reads its commit word with the copy's `Relaxed` load,
//!   which is an atomic access of the same size, never a plain one. Records
//!   and the capacity are multiples of 8 and the data region starts at a
//!   page boundary, so a commit word is one aligned word that never
//!   straddles the end of the ring.
//! - **The header page** is written with plain copies, serialized by the
//!   ring's header mutex; no thread reads it through the mapping (opening a
//!   ring reads the file), so no access races there.
//!
//! Staying inside the mapping does not depend on the callers: every copy is
//! checked here, in release builds too (a copy longer than the data region
//! is [`LogError::OutOfBounds`]; offsets wrap modulo the capacity), and the
//! constructors refuse a capacity that is zero, not a multiple of 8, or not
//! addressable.
//!
//! What the bytes *mean* after a racy copy is the protocol's business
//! (`ring.rs`): writers reserve disjoint ranges by a compare-and-swap on
//! `reserved`, then a `Release` fence, then copy, then publish (commit word,
//! `published`) with `Release` stores in offset order; readers load
//! `published` with `Acquire`, copy, issue an `Acquire` fence and re-check
//! `reserved`/`oldest` (seqlock-style, as crossbeam's `SeqLock`), discarding
//! a copy a writer may have overwritten meanwhile. The fence pair is what
//! makes the re-check sound: a reader whose copy saw any word of a lapping
//! writer also sees that writer's reservation.
//!
//! # Model checking
//!
//! Built with `--cfg loom`, the atomics here are loom's and an anonymous
//! ring's data region is an in-memory slice of loom words (file-backed rings
//! are unavailable), so the ring's real protocol (`ring.rs`) runs under the
//! loom model checker: `log/loom_tests.rs`, run by `scripts/test.sh`.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;

use memmap2::{MmapMut, MmapOptions};

use crate::error::LogError;

// The atomics of the ring's protocol: std's, or loom's under `--cfg loom`.
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64};

/// Waiting for another thread's publication: crossbeam's backoff, or a
/// loom yield (a spin loop under loom must yield to the model's scheduler).
pub(crate) struct SpinWait {
    #[cfg(not(loom))]
    backoff: crossbeam::utils::Backoff,
}

impl SpinWait {
    pub(crate) fn new() -> SpinWait {
        SpinWait {
            #[cfg(not(loom))]
            backoff: crossbeam::utils::Backoff::new(),
        }
    }

    pub(crate) fn snooze(&self) {
        #[cfg(not(loom))]
        self.backoff.snooze();
        #[cfg(loom)]
        loom::thread::yield_now();
    }
}

/// Size of the header page in front of the data region.
pub(crate) const HEADER_PAGE: usize = 4096;

/// Bytes of a data word.
const WORD: usize = 8;

pub(crate) struct RingMemory {
    map: MmapMut,
    /// Start of the mapping; the data region starts `HEADER_PAGE` later.
    base: *mut u8,
    /// Under loom: the data region, as loom's words (the mapping then only
    /// holds the header page).
    #[cfg(loom)]
    model: Box<[AtomicU64]>,
    capacity: u64,
    /// Tests' power-cut simulation: told of every write and flush.
    #[cfg(feature = "internals")]
    tracker: std::sync::OnceLock<std::sync::Arc<super::power::PowerTracker>>,
}

// SAFETY: the mapping is owned by this struct and lives as long as it; its
// data region is only ever accessed as `AtomicU64` words (`words`), which
// are `Sync`, and its header page only by `write_header`, which the ring
// serializes with its header mutex (module docs). The raw pointer is what
// keeps the struct from being `Send` automatically; nothing about it is
// tied to a thread.
unsafe impl Send for RingMemory {}
// SAFETY: see `Send`; `&RingMemory` only offers atomic word accesses to the
// data region and the mutex-serialized header write.
unsafe impl Sync for RingMemory {}

/// The layout the unsafe code relies on: a non-empty data region whose size
/// is a multiple of 8 (it is a whole number of aligned words, so commit
/// words never straddle its end) and that, with the header page, fits in
/// `isize` (what a slice may span).
fn check_capacity(capacity: u64) -> io::Result<()> {
    let addressable = (HEADER_PAGE as u64)
        .checked_add(capacity)
        .is_some_and(|size| isize::try_from(size).is_ok());
    if capacity == 0 || !capacity.is_multiple_of(WORD as u64) || !addressable {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ring capacity {capacity} is not a non-zero, addressable multiple of 8"),
        ));
    }
    Ok(())
}

impl RingMemory {
    /// Maps `file`, which must be exactly `HEADER_PAGE + capacity` bytes long.
    #[cfg(not(loom))]
    pub(crate) fn map_file(file: &File, capacity: u64) -> io::Result<RingMemory> {
        check_capacity(capacity)?;
        let len = file.metadata()?.len();
        // No overflow: `check_capacity` made sure HEADER_PAGE + capacity fits.
        let expected = HEADER_PAGE as u64 + capacity;
        if len != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("ring file is {len} bytes, expected {expected}"),
            ));
        }
        let size = usize::try_from(len).map_err(|_| io::Error::other("ring larger than the address space"))?;
        // SAFETY: the file is opened read-write by us and protected by the data
        // directory's lock file against other ringkv processes. Another
        // program truncating it would make accesses fault (SIGBUS), which is
        // the documented risk of every file mapping; another program writing
        // it meanwhile is outside what any mapping can defend against. We
        // never hand out references into the mapping but the atomic words.
        let mut map = unsafe { MmapOptions::new().len(size).map_mut(file)? };
        let base = map.as_mut_ptr();
        Ok(RingMemory {
            map,
            base,
            capacity,
            #[cfg(feature = "internals")]
            tracker: std::sync::OnceLock::new(),
        })
    }

    /// Under loom there are no file-backed rings: the model's memory is not
    /// a mapping.
    #[cfg(loom)]
    pub(crate) fn map_file(_file: &File, _capacity: u64) -> io::Result<RingMemory> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "file-backed rings are not available under loom",
        ))
    }

    /// Anonymous zeroed memory (a ring without persistence).
    pub(crate) fn anonymous(capacity: u64) -> io::Result<RingMemory> {
        check_capacity(capacity)?;
        let size = usize::try_from(HEADER_PAGE as u64 + capacity)
            .map_err(|_| io::Error::other("ring larger than the address space"))?;
        let mut map = MmapOptions::new().len(size).map_anon()?;
        let base = map.as_mut_ptr();
        Ok(RingMemory {
            map,
            base,
            #[cfg(loom)]
            model: (0..capacity / WORD as u64).map(|_| AtomicU64::new(0)).collect(),
            capacity,
            #[cfg(feature = "internals")]
            tracker: std::sync::OnceLock::new(),
        })
    }

    /// Reports this mapping's writes and flushes of `file` to `tracker`
    /// from now on (tests' power-cut simulation).
    #[cfg(feature = "internals")]
    pub(crate) fn track(&self, tracker: std::sync::Arc<super::power::PowerTracker>, file: &File) -> io::Result<()> {
        tracker.attach(file)?;
        let _ = self.tracker.set(tracker);
        Ok(())
    }

    /// Tells the tracker, if any, that file bytes `[start, start + len)` were written.
    #[inline]
    fn wrote(&self, start: usize, len: usize) {
        #[cfg(feature = "internals")]
        if let Some(t) = self.tracker.get() {
            t.wrote(start, start + len);
        }
        #[cfg(not(feature = "internals"))]
        let _ = (start, len);
    }

    /// Tells the tracker, if any, that file bytes `[start, start + len)` are about to be msynced.
    #[inline]
    fn flushing(&self, start: usize, len: usize) {
        #[cfg(feature = "internals")]
        if let Some(t) = self.tracker.get() {
            t.flushing(start, start + len);
        }
        #[cfg(not(feature = "internals"))]
        let _ = (start, len);
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The data region: `capacity / 8` words, every one of them accessed
    /// only atomically, whichever thread copies in or out (module docs).
    #[cfg(not(loom))]
    #[inline]
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base + HEADER_PAGE` is the start of the data region:
        // non-null and 8-aligned (the mapping is page-aligned, HEADER_PAGE
        // is a multiple of 8, and `AtomicU64` has alignment 8 everywhere).
        // The region is `capacity` bytes (a multiple of 8, so exactly
        // `capacity / 8` words; with the header page it fits in `isize`,
        // checked by `check_capacity`), inside the mapping, readable and
        // writable, initialized (zeroed or the file's bytes: every bit
        // pattern is a valid `AtomicU64`), and mapped as long as `self`
        // lives, which the returned borrow cannot outlive. Shared references
        // to atomics permit mutation through them; nothing mutates these
        // bytes other than through such words (the header page, which
        // `write_header` writes, is outside the region; msync does not
        // write memory), and no `&[u8]` of the region is ever made.
        unsafe {
            std::slice::from_raw_parts(
                self.base.add(HEADER_PAGE).cast::<AtomicU64>(),
                (self.capacity / WORD as u64) as usize,
            )
        }
    }

    #[cfg(loom)]
    #[inline]
    fn words(&self) -> &[AtomicU64] {
        &self.model
    }

    fn data_index(&self, offset: u64) -> usize {
        HEADER_PAGE + (offset % self.capacity) as usize
    }

    /// The split of a copy of `len` bytes at logical `offset`: where it
    /// starts in the data region, bytes before the physical end of the data
    /// region, then bytes from its start. A copy longer than the data region
    /// would run past the mapping (or overwrite itself), so it is refused
    /// here, in release builds too.
    fn split(&self, offset: u64, len: usize) -> Result<(usize, usize, usize), LogError> {
        if len as u64 > self.capacity {
            return Err(LogError::OutOfBounds {
                offset,
                reason: format!(
                    "a copy of {len} bytes is longer than the ring's {} data bytes",
                    self.capacity
                ),
            });
        }
        // Both below `capacity`, which fits in usize (checked when mapping).
        let start = (offset % self.capacity) as usize;
        let first = len.min(self.capacity as usize - start);
        Ok((start, first, len - first))
    }

    /// Copies `src` into the data region at logical `offset`, wrapping at the end.
    /// The caller must have reserved `[offset, offset + src.len())`. A source
    /// longer than the ring is [`LogError::OutOfBounds`] (nothing is written).
    /// Each word is stored atomically (`Relaxed`): the caller orders the
    /// copy against readers (a `Release` fence after reserving, `Release`
    /// stores when publishing).
    pub(crate) fn write(&self, offset: u64, src: &[u8]) -> Result<(), LogError> {
        let (start, first, _) = self.split(offset, src.len())?;
        let (head, tail) = src.split_at(first);
        let words = self.words();
        store_bytes(words, start, head);
        store_bytes(words, 0, tail);
        self.wrote(self.data_index(offset), head.len());
        self.wrote(HEADER_PAGE, tail.len());
        Ok(())
    }

    /// Copies data bytes at logical `offset` into `dst`, wrapping at the end.
    /// Each word is loaded atomically (`Relaxed`), so a copy that races a
    /// lapping writer is defined but may be torn: the caller validates it
    /// (an `Acquire` fence, then the lap check; see `ring.rs`) before
    /// trusting any of it. A destination longer than the ring is
    /// [`LogError::OutOfBounds`].
    pub(crate) fn read(&self, offset: u64, dst: &mut [u8]) -> Result<(), LogError> {
        let (start, first, _) = self.split(offset, dst.len())?;
        let (head, tail) = dst.split_at_mut(first);
        let words = self.words();
        load_bytes(words, start, head);
        load_bytes(words, 0, tail);
        Ok(())
    }

    /// The `N` data words from logical `offset`, wrapping at the end, each
    /// loaded atomically (`Relaxed`, like [`read`](Self::read)'s copies); `None`
    /// if `offset` is not 8-aligned or the words are more than the ring.
    /// How a record header is read: its commit word and its length/checksum
    /// word, decoded from whole words rather than copied byte by byte.
    pub(crate) fn load_words<const N: usize>(&self, offset: u64) -> Option<[u64; N]> {
        if !offset.is_multiple_of(WORD as u64) || (N * WORD) as u64 > self.capacity {
            return None;
        }
        let words = self.words();
        let first = (offset % self.capacity) as usize / WORD;
        Some(std::array::from_fn(|i| {
            let at = first + i;
            let at = if at >= words.len() { at - words.len() } else { at };
            words[at].load(Ordering::Relaxed)
        }))
    }

    /// The commit word of the record at `offset` (8-aligned).
    fn commit_word(&self, offset: u64) -> &AtomicU64 {
        assert!(offset.is_multiple_of(WORD as u64), "record offsets are 8-aligned");
        // In range: offset mod capacity <= capacity - 8, both multiples of 8.
        &self.words()[(offset % self.capacity) as usize / WORD]
    }

    /// Publishes the record at `offset`: its commit word becomes the offset.
    pub(crate) fn store_commit(&self, offset: u64) {
        self.commit_word(offset).store(offset.to_le(), Ordering::Release);
        self.wrote(self.data_index(offset), WORD);
    }

    /// Clears the commit word at `offset`: no record validates there until
    /// one is published (recovery's wipe of a cut tail).
    pub(crate) fn clear_commit(&self, offset: u64) {
        self.commit_word(offset).store(0, Ordering::Release);
        self.wrote(self.data_index(offset), WORD);
    }

    /// Calls `f` with the logical offset of every word in `[from, to)`
    /// (8-aligned, at most the ring's capacity apart) whose value, read as
    /// a commit word, names its own offset: where a record of this lap
    /// could be published. The words are loaded in place, one at a time
    /// (`Relaxed`, as [`read`](Self::read)'s copies), wrapping at the end.
    pub(crate) fn for_each_self_naming_word(&self, from: u64, to: u64, mut f: impl FnMut(u64)) {
        debug_assert!(from.is_multiple_of(WORD as u64) && to.saturating_sub(from) <= self.capacity);
        let words = self.words();
        let mut pos = from;
        while pos + WORD as u64 <= to {
            let first = (pos % self.capacity) as usize / WORD;
            let count = (((to - pos) / WORD as u64) as usize).min(words.len() - first);
            for (i, word) in words[first..first + count].iter().enumerate() {
                let at = pos + (i * WORD) as u64;
                if u64::from_le(word.load(Ordering::Relaxed)) == at {
                    f(at);
                }
            }
            pos += (count * WORD) as u64;
        }
    }

    /// The commit word at `offset` (a record there is published iff it equals `offset`).
    pub(crate) fn load_commit(&self, offset: u64) -> u64 {
        u64::from_le(self.commit_word(offset).load(Ordering::Acquire))
    }

    /// Writes `src` into the header page at `at`.
    pub(crate) fn write_header(&self, at: usize, src: &[u8]) {
        assert!(at + src.len() <= HEADER_PAGE, "header write out of the header page");
        // SAFETY: within the header page (checked above), which is outside
        // the data region the atomic words cover; writes are serialized by
        // the ring's header mutex and nothing reads the page through the
        // mapping (opening a ring reads the file), so no access races.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(at), src.len()) }
        self.wrote(at, src.len());
    }

    /// Flushes (msync) the data bytes `[from, to)` of the logical stream,
    /// which may wrap around.
    pub(crate) fn flush_data(&self, from: u64, to: u64) -> io::Result<()> {
        fail_point!("ring::msync_data", |arg| Err(crate::failpoints::injected(arg)));
        if to <= from {
            return Ok(());
        }
        if to - from >= self.capacity {
            self.flushing(HEADER_PAGE, self.capacity as usize);
            return self.map.flush_range(HEADER_PAGE, self.capacity as usize);
        }
        let start = self.data_index(from);
        let len = (to - from) as usize;
        let first = len.min(HEADER_PAGE + self.capacity as usize - start);
        self.flushing(start, first);
        self.map.flush_range(start, first)?;
        if len > first {
            self.flushing(HEADER_PAGE, len - first);
            self.map.flush_range(HEADER_PAGE, len - first)?;
        }
        Ok(())
    }

    /// Flushes the header page.
    pub(crate) fn flush_header(&self) -> io::Result<()> {
        fail_point!("ring::msync_header", |arg| Err(crate::failpoints::injected(arg)));
        self.flushing(0, HEADER_PAGE);
        self.map.flush_range(0, HEADER_PAGE)
    }
}

/// Stores `src` into the data words from byte `at` of the region
/// (`at + src.len()` within it): whole words with one `Relaxed` store each,
/// a partial word at either end by a compare-and-swap that keeps the
/// word's other bytes (never a byte-sized atomic over a word-sized one).
fn store_bytes(words: &[AtomicU64], at: usize, mut src: &[u8]) {
    if src.is_empty() {
        return;
    }
    let mut w = at / WORD;
    let lead = at % WORD;
    if lead != 0 {
        let n = src.len().min(WORD - lead);
        merge_word(&words[w], lead, &src[..n]);
        src = &src[n..];
        w += 1;
    }
    let whole = src.chunks_exact(WORD);
    let rest = whole.remainder();
    let n = src.len() / WORD;
    for (word, chunk) in words[w..w + n].iter().zip(whole) {
        let mut b = [0u8; WORD];
        b.copy_from_slice(chunk);
        word.store(u64::from_ne_bytes(b), Ordering::Relaxed);
    }
    if !rest.is_empty() {
        merge_word(&words[w + n], 0, rest);
    }
}

/// Writes `bytes` at byte `at` of one word, keeping its other bytes.
fn merge_word(word: &AtomicU64, at: usize, bytes: &[u8]) {
    let merge = |old: u64| {
        let mut b = old.to_ne_bytes();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        Some(u64::from_ne_bytes(b))
    };
    // The closure always returns `Some`, so this cannot fail.
    let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, merge);
}

/// Loads data bytes from byte `at` of the region into `dst` (`at +
/// dst.len()` within it), one `Relaxed` load per word touched (a partial
/// word at either end is loaded whole and the needed bytes taken).
fn load_bytes(words: &[AtomicU64], at: usize, mut dst: &mut [u8]) {
    if dst.is_empty() {
        return;
    }
    let mut w = at / WORD;
    let lead = at % WORD;
    if lead != 0 {
        let n = dst.len().min(WORD - lead);
        let b = words[w].load(Ordering::Relaxed).to_ne_bytes();
        dst[..n].copy_from_slice(&b[lead..lead + n]);
        dst = &mut dst[n..];
        w += 1;
    }
    let n = dst.len() / WORD;
    let (whole, rest) = dst.split_at_mut(n * WORD);
    for (word, chunk) in words[w..w + n].iter().zip(whole.chunks_exact_mut(WORD)) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
    if !rest.is_empty() {
        let b = words[w + n].load(Ordering::Relaxed).to_ne_bytes();
        rest.copy_from_slice(&b[..rest.len()]);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const CAP: u64 = 64 * 1024;

    #[test]
    fn copies_longer_than_the_ring_are_refused_not_run_past_the_mapping() {
        let mem = RingMemory::anonymous(CAP).expect("map");
        let big = vec![0xAAu8; CAP as usize + 1];
        for offset in [0, 8, CAP - 8, u64::MAX - 7] {
            let err = mem.write(offset, &big).expect_err("too long");
            assert!(
                matches!(err, LogError::OutOfBounds { offset: o, .. } if o == offset),
                "{err}"
            );
            let mut dst = vec![0u8; 200_000];
            let err = mem.read(offset, &mut dst).expect_err("too long");
            assert!(matches!(err, LogError::OutOfBounds { .. }), "{err}");
        }
        // Nothing was written by the refused copies.
        let mut all = vec![1u8; CAP as usize];
        mem.read(0, &mut all).expect("read the whole ring");
        assert!(all.iter().all(|&b| b == 0));
        // The header page is untouched too.
        let mut head = [1u8; 8];
        // SAFETY: test only; reads the first header bytes.
        unsafe { std::ptr::copy_nonoverlapping(mem.base, head.as_mut_ptr(), 8) };
        assert_eq!(head, [0u8; 8]);
    }

    #[test]
    fn copies_up_to_the_whole_ring_wrap_around() {
        let mem = RingMemory::anonymous(CAP).expect("map");
        let src: Vec<u8> = (0..CAP).map(|i| (i % 251) as u8).collect();
        // A whole-ring copy starting near the end, and at an offset far beyond one lap.
        for offset in [CAP - 24, 5 * CAP + 1000, u64::MAX - 7] {
            mem.write(offset, &src).expect("write");
            let mut back = vec![0u8; src.len()];
            mem.read(offset, &mut back).expect("read");
            assert_eq!(back, src);
        }
        mem.write(CAP - 4, b"abcdefgh").expect("wrapping write");
        let mut first = [0u8; 4];
        mem.read(0, &mut first).expect("read the wrapped part");
        assert_eq!(&first, b"efgh");
    }

    #[test]
    fn unaligned_copies_touch_exactly_their_bytes() {
        // Every start and length around word edges, wrapping or not: the
        // atomic words' partial loads and merging stores must act like a
        // byte copy (a model `Vec` of the ring beside them).
        let mem = RingMemory::anonymous(CAP).expect("map");
        let mut model = vec![0u8; CAP as usize];
        let mut tag = 0u8;
        for base in [0, 8, CAP - 24] {
            for lead in 0..8u64 {
                for len in [0usize, 1, 2, 7, 8, 9, 15, 16, 17, 31] {
                    tag = tag.wrapping_add(1);
                    let offset = 3 * CAP + base + lead;
                    let src: Vec<u8> = (0..len).map(|i| tag ^ (i as u8).wrapping_mul(37)).collect();
                    mem.write(offset, &src).expect("write");
                    for (i, &b) in src.iter().enumerate() {
                        model[((offset + i as u64) % CAP) as usize] = b;
                    }
                    let mut back = vec![0u8; len];
                    mem.read(offset, &mut back).expect("read");
                    assert_eq!(back, src, "offset {offset}, {len} bytes");
                }
            }
        }
        let mut all = vec![0u8; CAP as usize];
        mem.read(0, &mut all).expect("read the whole ring");
        assert!(all == model, "a copy changed bytes outside its range");
        // Reads at every alignment see the same bytes as the model.
        for lead in 0..8u64 {
            let mut part = vec![0u8; 40];
            mem.read(CAP - 20 + lead, &mut part).expect("wrapping read");
            let expected: Vec<u8> = (0..40u64)
                .map(|i| model[((CAP - 20 + lead + i) % CAP) as usize])
                .collect();
            assert_eq!(part, expected);
        }
    }

    #[test]
    fn commit_words_are_the_data_words() {
        let mem = RingMemory::anonymous(CAP).expect("map");
        mem.store_commit(CAP + 16);
        let mut word = [0u8; 8];
        mem.read(16, &mut word).expect("read");
        assert_eq!(u64::from_le_bytes(word), CAP + 16);
        assert_eq!(mem.load_commit(16), CAP + 16);
        mem.write(16, &7u64.to_le_bytes()).expect("write");
        assert_eq!(mem.load_commit(CAP + 16), 7);
        mem.clear_commit(16);
        assert_eq!(mem.load_commit(16), 0);
        // A header's two words, wrapping at the end of the ring.
        mem.write(CAP - 8, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
            .expect("write");
        let [a, b] = mem.load_words::<2>(2 * CAP - 8).expect("aligned");
        assert_eq!(
            (a.to_ne_bytes(), b.to_ne_bytes()),
            ([1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16])
        );
        assert_eq!(mem.load_words::<2>(CAP - 4), None, "not a word boundary");
    }

    #[test]
    fn capacities_that_break_the_layout_are_refused() {
        for cap in [0, 4, CAP + 4, u64::MAX - 7] {
            assert!(RingMemory::anonymous(cap).is_err(), "capacity {cap}");
        }
    }
}
