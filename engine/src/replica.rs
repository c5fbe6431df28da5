//! The engine's side of replication: roles, the applied offset, and the
//! primitives the `ringkv-replication` crate drives (appending a primary's
//! raw stream bytes at the same offsets, applying them, starting over for a
//! full sync, swapping in a keyspace loaded beside the live one, promotion).
//!
//! A follower's keyspace changes only through [`Engine::replica_apply`]:
//! writes through the public API fail with [`Error::ReadOnly`], keys found
//! expired are reported missing but not deleted (the primary's logged
//! deletion does that), and no active expiry or eviction runs. So the
//! follower's state is always the primary's state at some offset of the
//! same stream, and its ring is byte-identical to the primary's.
//!
//! Without a network (what the replication crate does over QUIC):
//!
//! ```
//! use ringkv::{Engine, Role};
//! let primary = Engine::builder().anonymous_log().build()?;
//! let follower = Engine::builder().anonymous_log().build()?;
//! follower.set_role(Role::Follower)?;
//! // Adopt the primary's history from offset 0 (an empty full sync).
//! let replid = primary.log().unwrap().replid();
//! follower.replica_begin_full_sync(0, &replid, "", 0)?;
//! follower.swap_in(&follower.staging()?, 0)?;
//!
//! primary.hset("telemetry:host-1", [("cpu", "0.93")])?;
//! let batch = primary.log().unwrap().read_stream(follower.applied_offset(), 1 << 20)?;
//! follower.replica_append(batch.start, &batch.bytes)?;
//! follower.replica_apply_stream(batch.start, &batch.bytes)?;
//! assert_eq!(follower.digest(), primary.digest());
//! assert!(follower.set("k", "v").is_err()); // READONLY
//!
//! let promotion = follower.promote()?;
//! assert_eq!(promotion.prev_replid, replid);
//! follower.set("k", "v")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::keyspace::Shard;
use crate::log::{record, LogError};
use crate::snapshot::SnapshotError;
use crate::{Engine, Error, Result};

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
/// Installed with [`Engine::set_write_gate`]; called before every write
/// takes a lock, so it may wait (bounded) but must not call the engine.
pub trait WriteGate: Send + Sync + 'static {
    /// `Ok` lets the write go on; `Err(reason)` refuses it with
    /// [`Error::NoReplicas`].
    fn admit(&self) -> std::result::Result<(), String>;
}

/// What [`Engine::promote`] did.
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
    pub(crate) syncing: AtomicBool,
    gate: parking_lot::RwLock<Option<Arc<dyn WriteGate>>>,
    gate_set: AtomicBool,
    applied_lock: parking_lot::Mutex<()>,
    applied_cv: parking_lot::Condvar,
}

impl ReplicaState {
    pub(crate) fn new() -> ReplicaState {
        ReplicaState {
            role: AtomicU8::new(0),
            applied: AtomicU64::new(0),
            syncing: AtomicBool::new(false),
            gate: parking_lot::RwLock::new(None),
            gate_set: AtomicBool::new(false),
            applied_lock: parking_lot::Mutex::new(()),
            applied_cv: parking_lot::Condvar::new(),
        }
    }

    pub(crate) fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            0 => Role::Primary,
            _ => Role::Follower,
        }
    }

    pub(crate) fn is_follower(&self) -> bool {
        self.role.load(Ordering::Acquire) != 0
    }

    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub(crate) fn set_applied(&self, offset: u64) {
        self.applied.store(offset, Ordering::Release);
    }

    /// Refuses a write on a follower, or when the gate says so.
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

    fn notify_applied(&self) {
        let _guard = self.applied_lock.lock();
        self.applied_cv.notify_all();
    }
}

thread_local! {
    /// (engine identity, end offset of this thread's last logged write).
    static LAST_WRITE: std::cell::Cell<(usize, u64)> = const { std::cell::Cell::new((0, 0)) };
}

pub(crate) fn note_write_end(inner: *const crate::engine::Inner, end: u64) {
    LAST_WRITE.with(|c| c.set((inner as usize, end)));
}

impl Engine {
    /// This engine's role.
    pub fn role(&self) -> Role {
        self.inner.replica.role()
    }

    /// Makes this engine a follower (writes fail with [`Error::ReadOnly`];
    /// only [`Engine::replica_apply`] changes the keyspace) or a primary
    /// again. Needs a ring log. Prefer [`Engine::promote`] to turn a follower
    /// into a primary: it starts a new history.
    pub fn set_role(&self, role: Role) -> Result<()> {
        let log = self.require_log()?;
        // A follower in the middle of a full sync keeps its applied offset:
        // its ring already holds another history (it must sync again).
        if role == Role::Follower && !self.is_stale() {
            self.inner.replica.set_applied(log.published());
        }
        self.inner.replica.role.store(role as u8, Ordering::Release);
        Ok(())
    }

    /// The offset this engine's keyspace reflects: on a follower, the end of
    /// the last applied record; on a primary, the end of its log.
    pub fn applied_offset(&self) -> u64 {
        match (self.inner.replica.role(), &self.inner.log) {
            (Role::Follower, _) => self.inner.replica.applied(),
            (Role::Primary, Some(log)) => log.published(),
            (Role::Primary, None) => 0,
        }
    }

    /// Read-after-write on a follower: waits until the keyspace reflects
    /// `offset` (as returned by [`Engine::last_write_offset`] on the
    /// primary); returns whether it does.
    ///
    /// ```
    /// use ringkv::{Config, Engine};
    /// let engine = Engine::builder().anonymous_log().build()?;
    /// engine.set("k", "v")?;
    /// let at = engine.last_write_offset().unwrap();
    /// assert!(engine.wait_applied(at, std::time::Duration::from_millis(10)));
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let state = &self.inner.replica;
        let mut guard = state.applied_lock.lock();
        loop {
            if self.applied_offset() >= offset {
                return true;
            }
            if state.applied_cv.wait_until(&mut guard, deadline).timed_out() {
                return self.applied_offset() >= offset;
            }
        }
    }

    /// End offset, in this engine's log, of the last write made by the
    /// calling thread on this engine (`None` before any, or without a log).
    /// Pass it to a follower's [`Engine::wait_applied`] for read-after-write,
    /// or to the primary's `wait_for_followers`.
    pub fn last_write_offset(&self) -> Option<u64> {
        let (who, end) = LAST_WRITE.with(|c| c.get());
        (who == Arc::as_ptr(&self.inner) as usize && end > 0).then_some(end)
    }

    /// Installs (or removes) a gate every write must pass first.
    pub fn set_write_gate(&self, gate: Option<Arc<dyn WriteGate>>) {
        let state = &self.inner.replica;
        state.gate_set.store(gate.is_some(), Ordering::Release);
        *state.gate.write() = gate;
    }

    /// True while a full sync is loading: the keyspace still serves the
    /// previous data, which is stale.
    pub fn is_stale(&self) -> bool {
        self.inner.replica.syncing.load(Ordering::Acquire)
    }

    fn require_log(&self) -> Result<&Arc<crate::log::RingLog>> {
        self.inner
            .log
            .as_ref()
            .ok_or_else(|| Error::Config("replication needs a ring log (a data directory or anonymous_log)".into()))
    }

    /// Follower: appends a primary's raw stream bytes (whole records
    /// starting at `start`) to this engine's ring at the same offsets, after
    /// checking them; bytes this ring already holds must be identical
    /// ([`LogError::Divergent`] otherwise). When the ring is full, starts a
    /// snapshot to release history and waits for it (bounded by
    /// `snapshot.log_full_wait_ms`). Returns the ring's new end. Does not
    /// apply: see [`Engine::replica_apply`].
    pub fn replica_append(&self, start: u64, bytes: &[u8]) -> Result<u64> {
        let log = self.require_log()?;
        if !self.inner.replica.is_follower() {
            return Err(Error::Replication("replica_append on a primary".into()));
        }
        let deadline = Instant::now() + Duration::from_millis(self.inner.config.snapshot.log_full_wait_ms);
        loop {
            match log.append_stream(start, bytes) {
                Err(LogError::Full { .. })
                    if Instant::now() < deadline && self.inner.data_dir.is_some() && !self.is_stale() =>
                {
                    if !self.inner.snapshot_running.load(Ordering::Acquire) {
                        let _ = self.bgsave();
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                r => return r.map_err(Error::Log),
            }
        }
    }

    /// Follower: applies the ring's records from the applied offset up to
    /// `upto` (at most the ring's end) to the keyspace; returns the new
    /// applied offset. The applied offset moves under the shard locks of
    /// each record, so a snapshot's cut always matches its offset.
    pub fn replica_apply(&self, upto: u64) -> Result<u64> {
        let log = self.require_log()?;
        let state = &self.inner.replica;
        if !state.is_follower() {
            return Err(Error::Replication("replica_apply on a primary".into()));
        }
        let upto = upto.min(log.published());
        let mut pos = state.applied();
        while pos < upto {
            let batch = log.read(pos, 1 << 20)?;
            let ends: Vec<u64> = batch
                .records
                .iter()
                .skip(1)
                .map(|(o, _)| *o)
                .chain([batch.next])
                .collect();
            for ((offset, payload), end) in batch.records.into_iter().zip(ends) {
                self.apply_record(offset, payload, Some(end))?;
                pos = end;
                if pos >= upto {
                    break;
                }
            }
        }
        state.notify_applied();
        Ok(pos)
    }

    /// Follower: applies records given as raw stream bytes (whole records
    /// starting at `start`, as just passed to [`Engine::replica_append`]),
    /// without reading them back from the ring. Each payload is copied out
    /// on its own, as [`RingLog::read`](crate::log::RingLog::read) does: a
    /// value kept in the keyspace must not pin the whole received buffer.
    /// Records below the applied offset are skipped; `start` beyond it is
    /// an error (apply from the ring with [`Engine::replica_apply`] first).
    /// Returns the new applied offset.
    pub fn replica_apply_stream(&self, start: u64, bytes: &[u8]) -> Result<u64> {
        let state = &self.inner.replica;
        if !state.is_follower() {
            return Err(Error::Replication("replica_apply_stream on a primary".into()));
        }
        let applied = state.applied();
        if start > applied {
            return Err(Error::Replication(format!(
                "bytes start at {start} but the keyspace reflects {applied}"
            )));
        }
        let mut pos = 0usize;
        while pos + record::HEADER_LEN <= bytes.len() {
            let mut head = [0u8; record::HEADER_LEN];
            head.copy_from_slice(&bytes[pos..pos + record::HEADER_LEN]);
            let h = record::Header::parse(&head);
            let len = h.len as usize;
            let end_pos = pos + record::record_len(len) as usize;
            if h.offset != start + pos as u64 || end_pos > bytes.len() {
                return Err(Error::Log(LogError::Corrupt {
                    offset: start + pos as u64,
                    reason: "not a whole record at its offset".into(),
                }));
            }
            let end = start + end_pos as u64;
            if end > applied {
                let payload =
                    bytes::Bytes::copy_from_slice(&bytes[pos + record::HEADER_LEN..pos + record::HEADER_LEN + len]);
                self.apply_record(h.offset, payload, Some(end))?;
            }
            pos = end_pos;
        }
        state.notify_applied();
        Ok(state.applied())
    }

    /// Follower, full sync: starts this engine's ring over at `offset` (the
    /// primary's snapshot offset) with the primary's history, keeping the
    /// keyspace as it is (served, stale, until [`Engine::swap_in`]). In a data
    /// directory a marker file makes a crash before the swap restart empty
    /// (and full-sync again) instead of mixing histories; the directory's
    /// old snapshots are removed. Waits for a running save to finish.
    pub fn replica_begin_full_sync(
        &self,
        offset: u64,
        replid: &str,
        prev_replid: &str,
        switch_offset: u64,
    ) -> Result<()> {
        let log = self.require_log()?;
        if !self.inner.replica.is_follower() {
            return Err(Error::Replication("a full sync needs a follower".into()));
        }
        self.inner.replica.syncing.store(true, Ordering::Release);
        // A save that started before the flag finishes before the ring moves.
        drop(self.inner.save_lock.lock());
        while self.inner.snapshot_running.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(dir) = &self.inner.data_dir {
            crate::recovery::write_full_sync_marker(dir)?;
            for (_, path) in crate::snapshot::list_snapshots(dir) {
                std::fs::remove_file(&path).map_err(|e| Error::Io {
                    context: format!("removing {}", path.display()),
                    source: e,
                })?;
            }
            self.inner.newest_snapshot.store(0, Ordering::Release);
        }
        log.reset_to(offset, replid, prev_replid, switch_offset)?;
        Ok(())
    }

    /// An empty engine with this engine's configuration and hashing, without
    /// a log or background thread: where a full sync loads the primary's
    /// snapshot while this engine keeps serving. Pass it to
    /// [`Engine::swap_in`] when it is complete.
    pub fn staging(&self) -> Result<Engine> {
        let mut config = self.inner.config.clone();
        config.hash_seed = Some(self.inner.hashing.seed());
        config.active_expire = false;
        config.maxmemory = 0;
        Engine::builder().config(config).build()
    }

    /// Follower, end of a full sync: applies this engine's ring from the
    /// snapshot's offset to its end into `staging` (loaded from the
    /// primary's snapshot at `snapshot_offset`), then swaps the two
    /// keyspaces in one step under every shard lock. Readers see the old
    /// data or the new, never a mix. `staging` ends up with the old data.
    /// In a data directory a background save of the new data starts; it
    /// clears the full-sync mark when it completes.
    pub fn swap_in(&self, staging: &Engine, snapshot_offset: u64) -> Result<u64> {
        let log = self.require_log()?;
        if staging.inner.shards.len() != self.inner.shards.len()
            || staging.inner.hashing.seed() != self.inner.hashing.seed()
        {
            return Err(Error::Replication(
                "staging engine does not match (use Engine::staging)".into(),
            ));
        }
        // Catch the staging keyspace up with the ring.
        let pos = log.published();
        crate::recovery::replay_range(staging, log, snapshot_offset, pos)?;
        let inner = &self.inner;
        let mut mine: Vec<_> = inner.shards.iter().map(|s| s.write()).collect();
        let mut theirs: Vec<_> = staging.inner.shards.iter().map(|s| s.write()).collect();
        if mine.iter().any(|g| g.snap.is_some()) {
            return Err(Error::Snapshot(SnapshotError::InProgress));
        }
        for (a, b) in mine.iter_mut().zip(theirs.iter_mut()) {
            swap_shard(a, b);
            let (now, before) = (a.memory_reported as i64, b.memory_reported as i64);
            inner.add_memory(now - before);
            staging.inner.add_memory(before - now);
        }
        inner.replica.set_applied(pos);
        drop(theirs);
        drop(mine);
        inner.replica.syncing.store(false, Ordering::Release);
        inner.replica.notify_applied();
        // The data directory holds no snapshot of the new history yet: the
        // full-sync mark stays until one is saved (a crash before then
        // restarts empty and syncs again).
        if inner.data_dir.is_some() {
            self.bgsave()?;
        }
        Ok(pos)
    }

    /// Turns this follower into a primary with a new replication id,
    /// keeping the previous id and the switch offset (its applied offset) in
    /// the ring's header: followers of the old primary that are at or below
    /// that offset continue with a partial resync. Stop the replication
    /// session first (`Follower::promote` does): bytes appended after the
    /// switch offset is taken would otherwise stay in the ring unapplied.
    pub fn promote(&self) -> Result<Promotion> {
        let log = self.require_log()?;
        if self.is_stale() {
            return Err(Error::Replication(
                "cannot promote during a full sync (the data is stale)".into(),
            ));
        }
        let old = log.header();
        let switch_offset = log.published();
        if self.inner.replica.is_follower() {
            self.replica_apply(switch_offset)?;
        }
        let replid = crate::log::new_replid();
        log.set_history(&replid, &old.replid, switch_offset)?;
        self.inner.replica.role.store(Role::Primary as u8, Ordering::Release);
        tracing::info!(%replid, prev = %old.replid, switch_offset, "promoted to primary");
        Ok(Promotion {
            replid,
            prev_replid: old.replid,
            switch_offset,
        })
    }

    /// Decodes the log record at `offset` and applies it without logging;
    /// with `end`, the follower's applied offset moves to it under the same
    /// shard locks. Every replay of log records goes through here
    /// (recovery, a follower's apply, a full sync's catch-up).
    pub(crate) fn apply_record(&self, offset: u64, payload: bytes::Bytes, end: Option<u64>) -> Result<()> {
        let m = record::decode_mutation(payload).map_err(|e| Error::Recovery {
            offset,
            reason: format!("record does not decode: {e}"),
        })?;
        self.inner
            .apply_locked(&m, |inner| {
                if let Some(end) = end {
                    inner.replica.set_applied(end);
                }
            })
            .map_err(|e| Error::Recovery {
                offset,
                reason: e.to_string(),
            })
    }
}

/// Swaps the data of two shards, keeping each shard's engine-side
/// bookkeeping (generation, counters) where it was. Entries of a staging
/// engine carry generation 0, which a later snapshot of this engine reads
/// as "not serialized yet": right, since none runs during the swap.
fn swap_shard(a: &mut Shard, b: &mut Shard) {
    a.swap_data(b);
}
