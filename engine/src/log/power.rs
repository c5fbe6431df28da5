//! Power-cut simulation for tests (feature `internals`): what a ring file
//! would look like on disk if the machine lost power now.
//!
//! A [`PowerTracker`] follows one ring file path. The ring's memory
//! ([`RingMemory`](super::memory::RingMemory)) reports each byte range it
//! writes (marking its pages dirty, after the copy) and each range it is
//! about to msync (the dirty pages in it are copied into the tracker's
//! *shadow* — the image as of the last completed flushes — before the msync
//! is issued, and are clean again). A power cut is then the shadow plus any
//! subset of the dirty pages, taken from the live file (the page cache the
//! mapping shares): the kernel may have written back any of them, in any
//! order, before the cut.
//!
//! The tracker outlives the rings that use it (it is registered by path), so
//! a ring dropped without a sync and reopened in the same process keeps its
//! unflushed pages dirty, as a process exit without a power loss does.
//!
//! Granularity is a 4 KiB page: a page is either as last flushed or as in
//! the page cache. Reads go through the file (`pread`), never the mapping.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Page size of the simulation.
pub const PAGE: usize = 4096;

/// What a [`PowerTracker`] knows about one ring file.
#[derive(Default)]
struct State {
    /// The live file (a clone of the ring's descriptor), once a ring attached.
    file: Option<File>,
    /// The file as of the last flushes (pages flushed since override the
    /// image first read when a ring attached).
    shadow: Option<Vec<u8>>,
    /// Pages written since they were last flushed.
    dirty: BTreeSet<usize>,
    /// msync'd ranges reported, for the tests' own accounting.
    flushes: u64,
}

/// Follows the writes and flushes of the ring file at one path; see the
/// module docs.
#[derive(Default)]
pub struct PowerTracker {
    state: Mutex<State>,
}

/// What one power cut kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerCut {
    /// Pages written since they were last flushed.
    pub dirty_pages: usize,
    /// How many of them the image holds as written (the rest as flushed).
    pub kept_pages: usize,
}

fn registry() -> MutexGuard<'static, Vec<(PathBuf, Arc<PowerTracker>)>> {
    static TRACKED: Mutex<Vec<(PathBuf, Arc<PowerTracker>)>> = Mutex::new(Vec::new());
    TRACKED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts tracking the ring file at `path` (before it is created or
/// opened); returns the tracker (the same one if the path is tracked already).
pub fn track(path: &Path) -> Arc<PowerTracker> {
    let mut reg = registry();
    if let Some((_, t)) = reg.iter().find(|(p, _)| p == path) {
        return Arc::clone(t);
    }
    let t = Arc::new(PowerTracker::default());
    reg.push((path.to_path_buf(), Arc::clone(&t)));
    t
}

/// Stops tracking `path`.
pub fn untrack(path: &Path) {
    registry().retain(|(p, _)| p != path);
}

/// The tracker of `path`, if a test asked for one.
pub(crate) fn tracker_for(path: &Path) -> Option<Arc<PowerTracker>> {
    registry().iter().find(|(p, _)| p == path).map(|(_, t)| Arc::clone(t))
}

fn pages(start: usize, end: usize) -> std::ops::Range<usize> {
    start / PAGE..end.div_ceil(PAGE)
}

impl PowerTracker {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ring mapped `file`: the first time, what the file holds now is
    /// taken as durable (it was created and synced, or it is an image a
    /// power cut left).
    pub(crate) fn attach(&self, file: &File) -> io::Result<()> {
        let mut s = self.lock();
        let clone = file.try_clone()?;
        if s.shadow.is_none() {
            let len = usize::try_from(clone.metadata()?.len()).map_err(io::Error::other)?;
            let mut image = vec![0u8; len];
            clone.read_exact_at(&mut image, 0)?;
            s.shadow = Some(image);
        }
        s.file = Some(clone);
        Ok(())
    }

    /// Bytes `[start, end)` of the file were written (called after the copy).
    pub(crate) fn wrote(&self, start: usize, end: usize) {
        if end > start {
            self.lock().dirty.extend(pages(start, end));
        }
    }

    /// Bytes `[start, end)` of the file are about to be msynced: the dirty
    /// pages they touch go into the shadow as they are now.
    pub(crate) fn flushing(&self, start: usize, end: usize) {
        if end <= start {
            return;
        }
        let mut s = self.lock();
        s.flushes += 1;
        let State {
            file, shadow, dirty, ..
        } = &mut *s;
        let (Some(file), Some(shadow)) = (file.as_ref(), shadow.as_mut()) else {
            return;
        };
        let flushed: Vec<usize> = dirty.range(pages(start, end)).copied().collect();
        for page in flushed {
            dirty.remove(&page);
            let at = page * PAGE;
            let n = PAGE.min(shadow.len().saturating_sub(at));
            // A read error leaves the page dirty: the image then may or may
            // not hold it, which is what an unflushed page is.
            if file.read_exact_at(&mut shadow[at..at + n], at as u64).is_err() {
                dirty.insert(page);
            }
        }
    }

    /// Number of flushes reported so far.
    pub fn flushes(&self) -> u64 {
        self.lock().flushes
    }

    /// Pages written and not flushed since.
    pub fn dirty_pages(&self) -> usize {
        self.lock().dirty.len()
    }

    /// Writes to `out` the file as a power cut now could leave it: the
    /// shadow, plus each dirty page for which `keep(page)` says so, as the
    /// page cache holds it.
    pub fn cut_with(&self, out: &Path, mut keep: impl FnMut(usize) -> bool) -> io::Result<PowerCut> {
        let s = self.lock();
        let (Some(file), Some(shadow)) = (s.file.as_ref(), s.shadow.as_ref()) else {
            return Err(io::Error::other("no ring attached to this tracker yet"));
        };
        let mut image = shadow.clone();
        let mut kept = 0;
        for &page in &s.dirty {
            if keep(page) {
                let at = page * PAGE;
                let n = PAGE.min(image.len().saturating_sub(at));
                file.read_exact_at(&mut image[at..at + n], at as u64)?;
                kept += 1;
            }
        }
        std::fs::write(out, &image)?;
        Ok(PowerCut {
            dirty_pages: s.dirty.len(),
            kept_pages: kept,
        })
    }

    /// [`cut_with`](Self::cut_with) keeping a random subset of the dirty
    /// pages, chosen by `seed`: none, about a quarter, half, three quarters,
    /// or all of them (`seed % 5`), each page drawn independently.
    pub fn cut(&self, out: &Path, seed: u64) -> io::Result<PowerCut> {
        let quarters = seed % 5;
        let mut x = (seed / 5) ^ 0x9e37_79b9_7f4a_7c15;
        self.cut_with(out, |_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 62) < quarters
        })
    }
}
