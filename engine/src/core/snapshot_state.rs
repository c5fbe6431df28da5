//! What the engine knows about its snapshots, owned in one place: which
//! snapshots run (at most one of each [`SnapshotKind`]: a save into the data
//! directory and a stream, such as a follower's full sync, side by side, so
//! that a long full sync never keeps the ring from being saved), that at
//! most one save writes the data directory, which generation the next
//! snapshot starts, the offset of the newest durable snapshot, the cut of
//! the last save (for `save` rules), and the figures
//! [`Stats`](crate::Stats) reports. Taking a snapshot is a service
//! (`services/snapshot.rs`); this is only its state.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Mutex, MutexGuard};

use crate::stats::SnapshotStats;

/// The two kinds of snapshot, each with its own slot: one of each may run
/// at a time, side by side (each with its own generation, `keyspace/cow.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotKind {
    /// A save into the data directory (SAVE, BGSAVE, the `save` rules, a
    /// filling ring).
    Save = 0,
    /// A snapshot into a caller's writer (`Engine::snapshot_to`: a
    /// follower's full sync, a backup).
    Stream = 1,
}

/// The snapshot sub-state of an engine.
pub(crate) struct SnapshotState {
    /// Last snapshot generation started.
    generation: AtomicU32,
    /// A snapshot of each kind (indexed by [`SnapshotKind`]) is running.
    running: [AtomicBool; 2],
    /// Held for the whole of a save: temporary file, rename, ring trimming.
    save_lock: Mutex<()>,
    /// The running or last background save.
    bgsave_thread: Mutex<Option<JoinHandle<()>>>,
    /// Log offset of the newest durable snapshot (0: none).
    newest_durable: AtomicU64,
    /// Time (unix ms) and mutation count of the last snapshot's cut.
    last_cut: Mutex<(u64, u64)>,
    stats: Mutex<SnapshotStats>,
}

/// Proof that this thread runs the engine's one snapshot of its kind;
/// dropping it, however the snapshot ends, lets the next one start.
pub(crate) struct RunningSnapshot<'a>(&'a SnapshotState, SnapshotKind);

impl Drop for RunningSnapshot<'_> {
    fn drop(&mut self) {
        self.0.running[self.1 as usize].store(false, Ordering::Release);
    }
}

impl SnapshotState {
    /// No snapshot yet; the `save` rules count from `now_ms`.
    pub(crate) fn new(now_ms: u64) -> SnapshotState {
        SnapshotState {
            generation: AtomicU32::new(0),
            running: [AtomicBool::new(false), AtomicBool::new(false)],
            save_lock: Mutex::new(()),
            bgsave_thread: Mutex::new(None),
            newest_durable: AtomicU64::new(0),
            last_cut: Mutex::new((now_ms, 0)),
            stats: Mutex::new(SnapshotStats::default()),
        }
    }

    /// Claims the one running snapshot of `kind`, or `None` if another of
    /// that kind runs.
    pub(crate) fn try_begin(&self, kind: SnapshotKind) -> Option<RunningSnapshot<'_>> {
        (!self.running[kind as usize].swap(true, Ordering::AcqRel)).then_some(RunningSnapshot(self, kind))
    }

    /// A snapshot of either kind is running.
    #[inline]
    pub(crate) fn is_running(&self) -> bool {
        self.running.iter().any(|r| r.load(Ordering::Acquire))
    }

    /// A save is running (a stream snapshot does not keep one from starting).
    #[inline]
    pub(crate) fn is_saving(&self) -> bool {
        self.running[SnapshotKind::Save as usize].load(Ordering::Acquire)
    }

    /// The generation of a snapshot starting now (taken under every shard lock).
    pub(crate) fn next_generation(&self) -> u32 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Claims the one save into the data directory, or `None` if another runs.
    pub(crate) fn try_lock_save(&self) -> Option<MutexGuard<'_, ()>> {
        self.save_lock.try_lock()
    }

    /// Waits until no save and no snapshot runs (a full sync is about to
    /// move the ring under them). Callers stop new saves first.
    pub(crate) fn wait_idle(&self) {
        drop(self.save_lock.lock());
        while self.is_running() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The running or last background save's thread.
    pub(crate) fn bgsave_thread(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.bgsave_thread.lock()
    }

    /// Log offset of the newest durable snapshot (0: none).
    pub(crate) fn newest_durable(&self) -> u64 {
        self.newest_durable.load(Ordering::Acquire)
    }

    /// Records a new newest durable snapshot; returns the previous offset.
    pub(crate) fn set_newest_durable(&self, offset: u64) -> u64 {
        self.newest_durable.swap(offset, Ordering::AcqRel)
    }

    /// Time (unix ms) and mutation count of the last save's cut.
    pub(crate) fn last_cut(&self) -> (u64, u64) {
        *self.last_cut.lock()
    }

    pub(crate) fn set_last_cut(&self, now_ms: u64, changes: u64) {
        *self.last_cut.lock() = (now_ms, changes);
    }

    pub(crate) fn stats(&self) -> SnapshotStats {
        let mut stats = self.stats.lock().clone();
        stats.in_progress = self.is_running();
        stats
    }

    pub(crate) fn update_stats(&self, f: impl FnOnce(&mut SnapshotStats)) {
        f(&mut self.stats.lock());
    }
}
