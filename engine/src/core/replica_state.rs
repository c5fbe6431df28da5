//! Who may write: the engine's role (a follower's keyspace changes only
//! through its primary's stream), its applied offset with a condvar for
//! read-after-write waits, a full sync in progress (and one whose data the
//! data directory does not hold durably yet), the optional write gate
//! (synchronous replication), and the thread's last write offset.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Whether an engine takes writes or follows another's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes writes and logs them.
    #[default]
    Primary,
    /// Applies a primary's stream; refuses writes.
    Follower,
}

/// Decides whether a write may proceed (Redis' `min-replicas-to-write`).
/// Installed with [`Engine::set_write_gate`](crate::Engine::set_write_gate); called before every write
/// takes a lock, so it may wait (bounded) but must not call the engine.
pub trait WriteGate: Send + Sync + 'static {
    /// `Ok` lets the write go on; `Err(reason)` refuses it with
    /// [`Error::NoReplicas`].
    fn admit(&self) -> std::result::Result<(), String>;

    /// Whether the engine's own deletions (lazy and active expiry,
    /// eviction) may be logged now. `false` makes the engine behave as a
    /// follower does for them: an expired key reads as missing but is not
    /// deleted, nothing is evicted. For a gate that says this node is not
    /// the writer at all (a leader lease's fence), not for one that only
    /// waits for followers. Must not block; `true` by default.
    fn admits_internal(&self) -> bool {
        true
    }
}

/// What [`Engine::promote`](crate::Engine::promote) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    /// The new replication id.
    pub replid: String,
    /// The history this engine followed until now.
    pub prev_replid: String,
    /// Offset where the new history starts (everything before it is shared
    /// with the previous primary's stream).
    pub switch_offset: u64,
}

/// Replication state kept by the engine.
pub(crate) struct ReplicaState {
    role: AtomicU8,
    /// On a follower: the offset up to which the keyspace reflects the ring
    /// (updated under the shard locks of each applied record).
    applied: AtomicU64,
    /// A full sync is in progress: the ring restarted at a new offset while
    /// the keyspace still serves the previous data (stale).
    syncing: AtomicBool,
    /// The data directory holds a `FULLSYNC` marker: the last full sync
    /// (swapped in or not) has no durable snapshot yet, so a crash would
    /// restart empty. Cleared by the save that removes the marker.
    unsaved_full_sync: AtomicBool,
    gate: parking_lot::RwLock<Option<Arc<dyn WriteGate>>>,
    gate_set: AtomicBool,
    applied_lock: parking_lot::Mutex<()>,
    applied_cv: parking_lot::Condvar,
    /// Held while records apply on several threads (their effects run
    /// ahead of `applied` until the segment ends) and by a snapshot's cut,
    /// so a cut never sees a half-applied segment.
    apply_gate: parking_lot::Mutex<()>,
    /// Holds of the active expiry ([`Engine::hold_active_expiry`](crate::Engine::hold_active_expiry)):
    /// while any is held, keys expire only through logged deletions that
    /// arrive, or lazily on access.
    expiry_holds: std::sync::atomic::AtomicUsize,
}

impl ReplicaState {
    pub(crate) fn new() -> ReplicaState {
        ReplicaState {
            role: AtomicU8::new(0),
            applied: AtomicU64::new(0),
            syncing: AtomicBool::new(false),
            unsaved_full_sync: AtomicBool::new(false),
            gate: parking_lot::RwLock::new(None),
            gate_set: AtomicBool::new(false),
            expiry_holds: std::sync::atomic::AtomicUsize::new(0),
            applied_lock: parking_lot::Mutex::new(()),
            applied_cv: parking_lot::Condvar::new(),
            apply_gate: parking_lot::Mutex::new(()),
        }
    }

    #[inline]
    pub(crate) fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            0 => Role::Primary,
            _ => Role::Follower,
        }
    }

    #[inline]
    pub(crate) fn is_follower(&self) -> bool {
        self.role.load(Ordering::Acquire) != 0
    }

    /// Counts a hold of the active expiry (`true`) or its release.
    pub(crate) fn hold_expiry(&self, hold: bool) {
        if hold {
            self.expiry_holds.fetch_add(1, Ordering::AcqRel);
        } else {
            self.expiry_holds.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Some hold of the active expiry is in place.
    pub(crate) fn expiry_held(&self) -> bool {
        self.expiry_holds.load(Ordering::Acquire) > 0
    }

    /// Whether the engine may log its own deletions (expiry, eviction):
    /// not on a follower, nor while the gate says no
    /// ([`WriteGate::admits_internal`]).
    #[inline]
    pub(crate) fn logs_own_deletions(&self) -> bool {
        if self.is_follower() {
            return false;
        }
        if self.gate_set.load(Ordering::Acquire) {
            if let Some(gate) = self.gate.read().as_ref() {
                return gate.admits_internal();
            }
        }
        true
    }

    #[inline]
    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub(crate) fn set_applied(&self, offset: u64) {
        self.applied.store(offset, Ordering::Release);
    }

    /// Refuses a write on a follower, or when the gate says so.
    #[inline]
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.is_follower() {
            return Err(Error::ReadOnly);
        }
        if self.gate_set.load(Ordering::Acquire) {
            if let Some(gate) = self.gate.read().clone() {
                gate.admit().map_err(Error::NoReplicas)?;
            }
        }
        Ok(())
    }

    /// Excludes a parallel apply's segment and a snapshot's cut from each
    /// other (taken before any shard lock).
    pub(crate) fn apply_gate(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.apply_gate.lock()
    }

    /// Wakes the threads waiting in [`ReplicaState::wait_applied`].
    pub(crate) fn notify_applied(&self) {
        let _guard = self.applied_lock.lock();
        self.applied_cv.notify_all();
    }

    /// Waits until `reached()` is true or `deadline` passes; returns
    /// `reached()` at the end. Woken by [`ReplicaState::notify_applied`].
    pub(crate) fn wait_applied(&self, deadline: std::time::Instant, reached: impl Fn() -> bool) -> bool {
        let mut guard = self.applied_lock.lock();
        loop {
            if reached() {
                return true;
            }
            if self.applied_cv.wait_until(&mut guard, deadline).timed_out() {
                return reached();
            }
        }
    }

    pub(crate) fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Release);
    }

    /// A full sync is in progress: the keyspace is stale.
    pub(crate) fn is_syncing(&self) -> bool {
        self.syncing.load(Ordering::Acquire)
    }

    pub(crate) fn set_syncing(&self, syncing: bool) {
        self.syncing.store(syncing, Ordering::Release);
    }

    /// The data directory's `FULLSYNC` marker is present (see the field).
    pub(crate) fn has_unsaved_full_sync(&self) -> bool {
        self.unsaved_full_sync.load(Ordering::Acquire)
    }

    pub(crate) fn set_unsaved_full_sync(&self, unsaved: bool) {
        self.unsaved_full_sync.store(unsaved, Ordering::Release);
    }

    /// Installs (or removes) the write gate consulted before every public write.
    pub(crate) fn set_gate(&self, gate: Option<Arc<dyn WriteGate>>) {
        self.gate_set.store(gate.is_some(), Ordering::Release);
        *self.gate.write() = gate;
    }

    pub(crate) fn gate(&self) -> Option<Arc<dyn WriteGate>> {
        self.gate.read().clone()
    }

    /// Removes the gate only if it is `gate` (the same allocation); true
    /// if it did.
    pub(crate) fn clear_gate_if(&self, gate: &Arc<dyn WriteGate>) -> bool {
        let mut current = self.gate.write();
        if current.as_ref().is_some_and(|g| Arc::ptr_eq(g, gate)) {
            *current = None;
            self.gate_set.store(false, Ordering::Release);
            return true;
        }
        false
    }
}

thread_local! {
    /// (engine id, end offset of this thread's last logged write).
    static LAST_WRITE: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// Remembers the end offset of the calling thread's last logged write on
/// the engine with this id (see [`EngineId`]).
pub(crate) fn note_write_end(engine: EngineId, end: u64) {
    LAST_WRITE.with(|c| c.set((engine.0, end)));
}

/// The end offset of the calling thread's last logged write on this
/// engine, if it made one.
pub(crate) fn last_write_end(engine: EngineId) -> Option<u64> {
    let (who, end) = LAST_WRITE.with(|c| c.get());
    (who == engine.0 && end > 0).then_some(end)
}

/// A process-unique engine identity (never reused, unlike an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EngineId(u64);

impl EngineId {
    pub(crate) fn next() -> EngineId {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        EngineId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}
