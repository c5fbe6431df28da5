//! The ring's mapped memory: the only module of the log with `unsafe`.
//!
//! A [`RingMemory`] owns one mapping (a file through memmap2, or anonymous
//! memory) laid out as a header page followed by `capacity` data bytes, and
//! lets many threads copy bytes in and out of it at the same time through a
//! raw pointer, never through references to the mapped bytes.
//!
//! Staying inside the mapping does not depend on the callers: every copy is
//! checked here, in release builds too (a copy longer than the data region
//! is [`LogError::OutOfBounds`]; offsets wrap modulo the capacity), and the
//! constructors refuse a capacity that is zero, not a multiple of 8, or not
//! addressable. What the callers' protocol (see `ring.rs`) provides is that
//! concurrent copies do not race:
//! - writers only write ranges they reserved, so two writers never write the
//!   same byte;
//! - readers only read below the published watermark; in a ring that keeps
//!   its history (the write-ahead log) nothing below it is ever rewritten. In
//!   a ring that overwrites old laps, a reader may copy bytes that a lapping
//!   writer changes meanwhile: like a seqlock reader it copies first and then
//!   re-checks the reservation counter, and discards the copy if it was
//!   lapped. The copied bytes are never interpreted before that check, and
//!   the memory stays mapped for the life of the `RingMemory`.
//! - the 8-byte commit word of a record is always 8-aligned (records and the
//!   capacity are multiples of 8, the data region starts at a page boundary;
//!   a misaligned offset panics) and is accessed only atomically.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapMut, MmapOptions};

use crate::error::LogError;

/// Size of the header page in front of the data region.
pub(crate) const HEADER_PAGE: usize = 4096;

pub(crate) struct RingMemory {
    map: MmapMut,
    /// Start of the mapping; the data region starts `HEADER_PAGE` later.
    base: *mut u8,
    capacity: u64,
    /// Tests' power-cut simulation: told of every write and flush.
    #[cfg(feature = "internals")]
    tracker: std::sync::OnceLock<std::sync::Arc<super::power::PowerTracker>>,
}

// SAFETY: the mapping is owned by this struct and lives as long as it; all
// access to its bytes goes through `base` with the protocol described in the
// module docs (disjoint writes, validated racy reads, atomic commit words),
// so sharing it between threads is sound.
unsafe impl Send for RingMemory {}
// SAFETY: see `Send`; `&RingMemory` only offers the protocol's operations.
unsafe impl Sync for RingMemory {}

/// The layout the unsafe code relies on: a non-empty data region whose size
/// is a multiple of 8 (commit words never straddle its end) and addressable
/// together with the header page.
fn check_capacity(capacity: u64) -> io::Result<()> {
    let addressable = (HEADER_PAGE as u64)
        .checked_add(capacity)
        .is_some_and(|size| usize::try_from(size).is_ok());
    if capacity == 0 || !capacity.is_multiple_of(8) || !addressable {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ring capacity {capacity} is not a non-zero, addressable multiple of 8"),
        ));
    }
    Ok(())
}

impl RingMemory {
    /// Maps `file`, which must be exactly `HEADER_PAGE + capacity` bytes long.
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
        // the documented risk of every file mapping; we never hand out
        // references into the mapping.
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

    fn data_index(&self, offset: u64) -> usize {
        HEADER_PAGE + (offset % self.capacity) as usize
    }

    /// The split of a copy of `len` bytes at logical `offset`: bytes before
    /// the physical end of the data region, then bytes from its start. A
    /// copy longer than the data region would run past the mapping (or
    /// overwrite itself), so it is refused here, in release builds too.
    fn split(&self, offset: u64, len: usize) -> Result<(usize, usize), LogError> {
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
        Ok((first, len - first))
    }

    /// Copies `src` into the data region at logical `offset`, wrapping at the end.
    /// The caller must have reserved `[offset, offset + src.len())`. A source
    /// longer than the ring is [`LogError::OutOfBounds`] (nothing is written).
    pub(crate) fn write(&self, offset: u64, src: &[u8]) -> Result<(), LogError> {
        let (first, rest) = self.split(offset, src.len())?;
        // SAFETY: `split` checked `src.len() <= capacity`, so `first ≤ capacity
        // - start` bytes from `data_index(offset)` (= HEADER_PAGE + start) and
        // `rest ≤ start` bytes from `HEADER_PAGE` are inside the mapping of
        // HEADER_PAGE + capacity bytes; `first + rest = src.len()`, so both
        // source ranges are inside `src`. The caller reserved these bytes, so
        // no other writer touches them, and `src` cannot overlap the mapping's
        // reserved range.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(self.data_index(offset)), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), self.base.add(HEADER_PAGE), rest);
        }
        self.wrote(self.data_index(offset), first);
        self.wrote(HEADER_PAGE, rest);
        Ok(())
    }

    /// Copies data bytes at logical `offset` into `dst`, wrapping at the end.
    /// The result may be torn if a lapping writer raced; the caller validates.
    /// A destination longer than the ring is [`LogError::OutOfBounds`].
    pub(crate) fn read(&self, offset: u64, dst: &mut [u8]) -> Result<(), LogError> {
        let (first, rest) = self.split(offset, dst.len())?;
        // SAFETY: same bounds as `write` (checked by `split`); we copy through
        // raw pointers without forming references to bytes another thread may
        // be writing, and the caller discards the copy if a writer lapped it
        // (module docs).
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(self.data_index(offset)), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(self.base.add(HEADER_PAGE), dst.as_mut_ptr().add(first), rest);
        }
        Ok(())
    }

    /// The commit word of the record at `offset` (8-aligned).
    fn commit_word(&self, offset: u64) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8), "record offsets are 8-aligned");
        // SAFETY: the address is inside the data region (offset mod capacity
        // ≤ capacity - 8 because both are multiples of 8), 8-aligned (the
        // mapping is page-aligned, HEADER_PAGE and the offset are multiples of
        // 8), valid for the life of `self`, and every access to a commit word
        // is atomic.
        unsafe { AtomicU64::from_ptr(self.base.add(self.data_index(offset)).cast::<u64>()) }
    }

    /// Publishes the record at `offset`: its commit word becomes the offset.
    pub(crate) fn store_commit(&self, offset: u64) {
        self.commit_word(offset).store(offset.to_le(), Ordering::Release);
        self.wrote(self.data_index(offset), 8);
    }

    /// Clears the commit word at `offset`: no record validates there until
    /// one is published (recovery's wipe of a cut tail).
    pub(crate) fn clear_commit(&self, offset: u64) {
        self.commit_word(offset).store(0, Ordering::Release);
        self.wrote(self.data_index(offset), 8);
    }

    /// The commit word at `offset` (a record there is published iff it equals `offset`).
    pub(crate) fn load_commit(&self, offset: u64) -> u64 {
        u64::from_le(self.commit_word(offset).load(Ordering::Acquire))
    }

    /// Writes `src` into the header page at `at`.
    pub(crate) fn write_header(&self, at: usize, src: &[u8]) {
        assert!(at + src.len() <= HEADER_PAGE, "header write out of the header page");
        // SAFETY: within the header page (checked above); serialized by the
        // ring's header lock.
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

#[cfg(test)]
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
    fn capacities_that_break_the_layout_are_refused() {
        for cap in [0, 4, CAP + 4, u64::MAX - 7] {
            assert!(RingMemory::anonymous(cap).is_err(), "capacity {cap}");
        }
    }
}
