//! The ring's mapped memory: the only module of the log with `unsafe`.
//!
//! A [`RingMemory`] owns one mapping (a file through memmap2, or anonymous
//! memory) laid out as a header page followed by `capacity` data bytes, and
//! lets many threads copy bytes in and out of it at the same time through a
//! raw pointer, never through references to the mapped bytes.
//!
//! Soundness rests on the callers' protocol (see `ring.rs`):
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
//!   capacity are multiples of 8, the data region starts at a page boundary)
//!   and is accessed only atomically.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapMut, MmapOptions};

/// Size of the header page in front of the data region.
pub(crate) const HEADER_PAGE: usize = 4096;

pub(crate) struct RingMemory {
    map: MmapMut,
    /// Start of the mapping; the data region starts `HEADER_PAGE` later.
    base: *mut u8,
    capacity: u64,
}

// SAFETY: the mapping is owned by this struct and lives as long as it; all
// access to its bytes goes through `base` with the protocol described in the
// module docs (disjoint writes, validated racy reads, atomic commit words),
// so sharing it between threads is sound.
unsafe impl Send for RingMemory {}
// SAFETY: see `Send`; `&RingMemory` only offers the protocol's operations.
unsafe impl Sync for RingMemory {}

impl RingMemory {
    /// Maps `file`, which must be exactly `HEADER_PAGE + capacity` bytes long.
    pub(crate) fn map_file(file: &File, capacity: u64) -> io::Result<RingMemory> {
        let len = file.metadata()?.len();
        if len != HEADER_PAGE as u64 + capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("ring file is {len} bytes, expected {}", HEADER_PAGE as u64 + capacity),
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
        Ok(RingMemory { map, base, capacity })
    }

    /// Anonymous zeroed memory (a ring without persistence).
    pub(crate) fn anonymous(capacity: u64) -> io::Result<RingMemory> {
        let size = usize::try_from(HEADER_PAGE as u64 + capacity)
            .map_err(|_| io::Error::other("ring larger than the address space"))?;
        let mut map = MmapOptions::new().len(size).map_anon()?;
        let base = map.as_mut_ptr();
        Ok(RingMemory { map, base, capacity })
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    fn data_index(&self, offset: u64) -> usize {
        HEADER_PAGE + (offset % self.capacity) as usize
    }

    /// Copies `src` into the data region at logical `offset`, wrapping at the end.
    /// The caller must have reserved `[offset, offset + src.len())`.
    pub(crate) fn write(&self, offset: u64, src: &[u8]) {
        debug_assert!(src.len() as u64 <= self.capacity);
        let start = (offset % self.capacity) as usize;
        let first = src.len().min(self.capacity as usize - start);
        // SAFETY: `data_index(offset) + first` and `HEADER_PAGE + (len - first)`
        // are within the mapping (first ≤ capacity - start; the rest ≤
        // capacity); the caller reserved these bytes, so no other writer
        // touches them, and `src` cannot overlap the mapping's reserved range.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(self.data_index(offset)), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), self.base.add(HEADER_PAGE), src.len() - first);
        }
    }

    /// Copies data bytes at logical `offset` into `dst`, wrapping at the end.
    /// The result may be torn if a lapping writer raced; the caller validates.
    pub(crate) fn read(&self, offset: u64, dst: &mut [u8]) {
        debug_assert!(dst.len() as u64 <= self.capacity);
        let start = (offset % self.capacity) as usize;
        let first = dst.len().min(self.capacity as usize - start);
        // SAFETY: same bounds as `write`; we copy through raw pointers without
        // forming references to bytes another thread may be writing, and the
        // caller discards the copy if a writer lapped it (module docs).
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(self.data_index(offset)), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(
                self.base.add(HEADER_PAGE),
                dst.as_mut_ptr().add(first),
                dst.len() - first,
            );
        }
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
    }

    /// Flushes (msync) the data bytes `[from, to)` of the logical stream,
    /// which may wrap around.
    pub(crate) fn flush_data(&self, from: u64, to: u64) -> io::Result<()> {
        if to <= from {
            return Ok(());
        }
        if to - from >= self.capacity {
            return self.map.flush_range(HEADER_PAGE, self.capacity as usize);
        }
        let start = self.data_index(from);
        let len = (to - from) as usize;
        let first = len.min(HEADER_PAGE + self.capacity as usize - start);
        self.map.flush_range(start, first)?;
        if len > first {
            self.map.flush_range(HEADER_PAGE, len - first)?;
        }
        Ok(())
    }

    /// Flushes the header page.
    pub(crate) fn flush_header(&self) -> io::Result<()> {
        self.map.flush_range(0, HEADER_PAGE)
    }
}
