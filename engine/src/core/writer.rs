//! The commit protocol. Every write follows one path: lock the shards of
//! its keys in index order ([`Keyspace::lock_hashes`]), remove lazily
//! expired keys with their own logged deletion ([`Writer::live`]), *plan*
//! the change by reading the current state (in `ops/`), then
//! [`Writer::commit`]: hand the mutation to the sink, and apply it with the
//! keyspace's one apply path ([`Applier::apply`]), the same code that
//! replays mutations from a log or a primary. Live state and replayed state
//! therefore cannot differ. A batch applies at once with undo records and
//! reaches the sink as one `Mutation::Batch` when it completes (or rolls
//! back). Durability waits (group commit) and waits for a slow snapshot
//! output happen after the locks are released: nothing waits on an output
//! while holding a shard lock.
//!
//! Invariant: a mutation reaches the sink while the locks of every shard
//! it touches are held, so the log's order of records agrees with the
//! order of changes to each key.

use std::sync::Arc;

use bytes::Bytes;

use super::{replica_state, Inner};
use crate::blob::Blob;
use crate::error::{Error, Result};
use crate::keyspace::apply::{Applier, Undo};
use crate::keyspace::cow::SnapOutput;
use crate::keyspace::{KeyEntry, Locked, Shard};
use crate::log::record;
use crate::mutation::{DeleteReason, Mutation};

/// How a [`Writer`] hands over mutations.
enum Mode {
    /// Each mutation goes to the sink, then is applied.
    Direct,
    /// Mutations are applied at once (with undo records) and sent to the sink
    /// together, as one `Batch`, when the batch completes.
    Batch { mutations: Vec<Mutation>, undo: Vec<Undo> },
}

/// The shards a write holds, and how its mutations are committed.
pub(crate) struct Writer<'e> {
    pub(crate) inner: &'e Inner,
    pub(crate) locked: Locked<'e>,
    mode: Mode,
    now: Option<u64>,
    /// Offset after the last record this write appended (for group commit).
    last_end: Option<u64>,
}

impl<'e> Writer<'e> {
    #[inline]
    fn new(inner: &'e Inner, locked: Locked<'e>, batch: bool) -> Writer<'e> {
        let mode = if batch {
            Mode::Batch {
                mutations: Vec::new(),
                undo: Vec::new(),
            }
        } else {
            Mode::Direct
        };
        Writer {
            inner,
            locked,
            mode,
            now: None,
            last_end: None,
        }
    }

    #[inline]
    pub(crate) fn now(&mut self) -> u64 {
        *self.now.get_or_insert_with(|| self.inner.clock.now_ms())
    }

    #[inline]
    pub(crate) fn shard(&mut self, hash: u64) -> &mut Shard {
        let s = self.inner.keyspace.hashing().shard_of(hash);
        self.locked.shard(s)
    }

    /// Commits one mutation: sink then apply (direct), or apply and keep it
    /// for the batch. Returns the count [`Applier::apply`] reports.
    pub(crate) fn commit(&mut self, m: Mutation) -> Result<usize> {
        let lru = self.inner.lru_now();
        let mut applier = Applier {
            locked: &mut self.locked,
            hashing: self.inner.keyspace.hashing(),
            lru,
        };
        match &mut self.mode {
            Mode::Direct => {
                if let Some(end) = self.inner.sink.sink().record(&m).map_err(Error::from_sink)? {
                    self.last_end = Some(end);
                }
                let r = applier.apply(&m, None);
                debug_assert!(r.is_ok(), "a planned mutation failed to apply: {r:?}");
                r
            }
            Mode::Batch { mutations, undo } => {
                let n = applier.apply(&m, Some(undo))?;
                mutations.push(m);
                Ok(n)
            }
        }
    }

    /// Commits `Mutation::Set { key, value, expire_at }` from borrowed parts
    /// (`h` is `key`'s hash): without a sink nothing is copied for it, with
    /// the ring log its record is encoded once, straight from these parts;
    /// a user's sink and a batch get the owned mutation ([`Writer::commit`]).
    pub(crate) fn commit_set(&mut self, key: &[u8], h: u64, value: Blob, expire_at: Option<u64>) -> Result<()> {
        if self.owned_only() {
            let m = Mutation::Set {
                key: Bytes::copy_from_slice(key),
                value: value.into_bytes(),
                expire_at,
            };
            return self.commit(m).map(|_| ());
        }
        if let Some(log) = self.inner.log() {
            let (_, end) = log
                .append_payload_with(|buf| record::encode_set(key, &value, expire_at, buf))
                .map_err(Error::Log)?;
            self.last_end = Some(end);
        }
        self.applier().apply_set(key, h, value, expire_at, None);
        Ok(())
    }

    /// Commits `Mutation::HSet { key, fields }` from borrowed parts, as
    /// [`Writer::commit_set`]. Returns the fields created.
    pub(crate) fn commit_hset<F: AsRef<[u8]>>(&mut self, key: &[u8], h: u64, fields: &[(F, Bytes)]) -> Result<usize> {
        if self.owned_only() {
            let m = Mutation::HSet {
                key: Bytes::copy_from_slice(key),
                fields: fields
                    .iter()
                    .map(|(f, v)| (Bytes::copy_from_slice(f.as_ref()), v.clone()))
                    .collect(),
            };
            return self.commit(m);
        }
        if let Some(log) = self.inner.log() {
            let (_, end) = log
                .append_payload_with(|buf| record::encode_hset(key, fields, buf))
                .map_err(Error::Log)?;
            self.last_end = Some(end);
        }
        let r = self.applier().apply_hset(key, h, fields, None);
        debug_assert!(r.is_ok(), "a planned HSET failed to apply: {r:?}");
        r
    }

    /// True when a mutation must be built as an owned [`Mutation`]: a batch
    /// keeps it, a user's sink takes it.
    #[inline]
    fn owned_only(&self) -> bool {
        matches!(self.mode, Mode::Batch { .. }) || self.inner.sink.is_user()
    }

    #[inline]
    fn applier(&mut self) -> Applier<'_, 'e> {
        Applier {
            locked: &mut self.locked,
            hashing: self.inner.keyspace.hashing(),
            lru: self.inner.lru_now(),
        }
    }

    /// The entry of `key` if it exists and has not expired; an expired one is
    /// deleted first (a logged `Delete { reason: Expired }`).
    pub(crate) fn live(&mut self, key: &[u8], hash: u64) -> Result<Option<usize>> {
        let Some(idx) = self.shard(hash).find(hash, key) else {
            return Ok(None);
        };
        if self.shard(hash).entry(idx).expire_at == 0 {
            return Ok(Some(idx));
        }
        let now = self.now();
        if !self.shard(hash).entry(idx).is_expired(now) {
            return Ok(Some(idx));
        }
        self.commit(Mutation::Delete {
            keys: vec![Bytes::copy_from_slice(key)],
            reason: DeleteReason::Expired,
        })?;
        Ok(None)
    }

    #[inline]
    pub(crate) fn entry(&mut self, hash: u64, idx: usize) -> &KeyEntry {
        self.shard(hash).entry(idx)
    }

    /// Ends the write: for a batch, sends its mutation to the sink (rolling
    /// everything back if the sink refuses it); then reports memory changes
    /// and releases the locks. A write that left a running snapshot's
    /// backlog over its bound then waits (bounded, holding no lock) for the
    /// snapshot's output to take some of it (`keyspace/cow.rs`).
    fn finish(mut self, ok: bool) -> Result<Option<u64>> {
        let mut result = Ok(());
        if let Mode::Batch { mutations, undo } = std::mem::replace(&mut self.mode, Mode::Direct) {
            let recorded = if !ok || mutations.is_empty() {
                Ok(())
            } else {
                match self.inner.sink.sink().record(&Mutation::Batch(mutations)) {
                    Ok(end) => {
                        self.last_end = end.or(self.last_end);
                        Ok(())
                    }
                    Err(e) => Err(Error::from_sink(e)),
                }
            };
            if !ok || recorded.is_err() {
                let mut applier = Applier {
                    locked: &mut self.locked,
                    hashing: self.inner.keyspace.hashing(),
                    lru: self.inner.lru_now(),
                };
                applier.rollback(undo);
            }
            result = recorded;
        }
        let inner = self.inner;
        let mut behind = Vec::new();
        self.locked.for_each(|_, shard| {
            inner.memory.publish(shard, false);
            shard.snapshots_behind(&mut behind);
        });
        let last_end = self.last_end;
        // Releases the shard locks; only then may the write wait for a
        // snapshot's output.
        drop(self);
        inner.wait_for_snapshots(&mut behind);
        result.map(|()| last_end)
    }

    /// Reports the memory change of the shard of `hash` to the engine-wide
    /// total now, however small (eviction needs to see its effect).
    pub(crate) fn publish_memory_now(&mut self, hash: u64) {
        let inner = self.inner;
        inner.memory.publish(self.shard(hash), true);
    }
}

impl Inner {
    /// The end of an apply without a [`Writer`] (parallel replay, snapshot
    /// load): publishes the memory of every locked shard, releases the
    /// locks, then waits as a live write does (bounded by
    /// `snapshot.writer_wait_ms`, no lock held) for the running snapshots
    /// whose backlog is over its bound.
    pub(crate) fn release_applied(&self, mut locked: Locked<'_>, behind: &mut Vec<Arc<SnapOutput>>) {
        locked.for_each(|_, shard| {
            self.memory.publish(shard, false);
            shard.snapshots_behind(behind);
        });
        drop(locked);
        self.wait_for_snapshots(behind);
    }

    /// Waits (bounded) for room in each output of `behind`, emptying it.
    fn wait_for_snapshots(&self, behind: &mut Vec<Arc<SnapOutput>>) {
        if !behind.is_empty() {
            let wait = std::time::Duration::from_millis(self.config.snapshot.writer_wait_ms);
            let deadline = std::time::Instant::now() + wait;
            for out in behind.drain(..) {
                out.wait_for_room(deadline);
            }
        }
    }

    /// Replays one mutation produced elsewhere (another engine, a log
    /// record) under the locks of the shards it touches, without the clock
    /// and without the sink; `on_locked` runs after a successful apply,
    /// before the locks are released (a follower moves its applied offset
    /// there).
    pub(crate) fn replay_mutation(&self, m: &Mutation, on_locked: impl FnOnce(&Inner)) -> Result<()> {
        let locked = if m.touches_all_keys() {
            self.keyspace.lock_all()
        } else {
            // Most records touch one shard: lock it without a list.
            let shard_of = |k: &[u8]| self.keyspace.hashing().shard_of(self.keyspace.hash(k));
            let (mut first, mut several) = (None, false);
            m.for_each_key(&mut |k| {
                let s = shard_of(k);
                several |= first.is_some_and(|f| f != s);
                first = first.or(Some(s));
            });
            match first {
                None => {
                    on_locked(self);
                    return Ok(());
                }
                Some(s) if !several => self.keyspace.lock_one(s),
                Some(_) => {
                    let mut idx = Vec::new();
                    m.for_each_key(&mut |k| idx.push(shard_of(k)));
                    self.keyspace.lock_indices(idx)
                }
            }
        };
        let mut w = Writer::new(self, locked, false);
        let mut applier = Applier {
            locked: &mut w.locked,
            hashing: self.keyspace.hashing(),
            lru: self.lru_now(),
        };
        let r = applier.apply(m, None).map(|_| ());
        if r.is_ok() {
            on_locked(self);
        }
        w.finish(true)?;
        r
    }

    /// Decodes the log record at `offset` and replays it; with `end`, the
    /// follower's applied offset moves to it under the same shard locks.
    /// Every replay of log records goes through here (recovery, a
    /// follower's stream, a full sync's catch-up).
    pub(crate) fn replay_record(&self, offset: u64, payload: Bytes, end: Option<u64>) -> Result<()> {
        let m = record::decode_mutation(payload).map_err(|source| Error::BadRecord { offset, source })?;
        self.replay_mutation(&m, |inner| {
            if let Some(end) = end {
                inner.replica.set_applied(end);
            }
        })
        .map_err(|e| Error::RecordRejected {
            offset,
            source: Box::new(e),
        })
    }

    /// Keeps the write-ahead ring from filling: asks for a background
    /// snapshot once uncovered history passes `snapshot.auto_share` of the
    /// ring, and when the ring is nearly full waits (bounded, holding no
    /// lock) for the running snapshot to release space. Returns whether
    /// it waited.
    fn ensure_log_room(&self) -> bool {
        let (Some(log), Some(_)) = (self.log(), &self.data_dir) else {
            return false;
        };
        let cap = log.capacity();
        // The ring keeps history from the previous snapshot on (so a damaged
        // newest snapshot can fall back to it); a new snapshot releases the
        // span before the current newest one.
        let used = log.published().saturating_sub(log.oldest());
        if (used as f64) < cap as f64 * self.config.snapshot.auto_share {
            return false;
        }
        // A stream snapshot (a follower's full sync) does not keep a save
        // from starting: they run side by side.
        if !self.snapshot.is_saving() {
            self.hooks.start_save();
        }
        if cap - used < cap / 16 {
            let deadline =
                std::time::Instant::now() + std::time::Duration::from_millis(self.config.snapshot.log_full_wait_ms);
            while log.capacity() - log.published().saturating_sub(log.oldest()) < cap / 16
                && std::time::Instant::now() < deadline
            {
                if !self.snapshot.is_saving() {
                    self.hooks.start_save();
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            return true;
        }
        false
    }

    /// A write from the public API: refused on a follower or by the write
    /// gate, then as [`Inner::write_internal`]. A write that waited for log
    /// room asks the gate again after the wait (a leader lease's fence may
    /// have closed meanwhile).
    pub(crate) fn write<R>(
        &self,
        hashes: &[u64],
        batch: bool,
        f: impl FnOnce(&mut Writer<'_>) -> Result<R>,
    ) -> Result<R> {
        self.replica.check_writable()?;
        if self.ensure_log_room() {
            self.replica.check_writable()?;
        }
        self.run_locked(self.keyspace.lock_hashes(hashes), batch, f)
    }

    /// Locks the shards of `hashes` in index order and runs `f` as one
    /// write, without the role and write-gate checks (the engine's own
    /// writes: lazy expiry, eviction). Makes room in the log first.
    pub(crate) fn write_internal<R>(
        &self,
        hashes: &[u64],
        batch: bool,
        f: impl FnOnce(&mut Writer<'_>) -> Result<R>,
    ) -> Result<R> {
        self.ensure_log_room();
        self.run_locked(self.keyspace.lock_hashes(hashes), batch, f)
    }

    /// Locks every shard in index order and runs `f` as one public write.
    pub(crate) fn write_all<R>(&self, f: impl FnOnce(&mut Writer<'_>) -> Result<R>) -> Result<R> {
        self.replica.check_writable()?;
        self.run_locked(self.keyspace.lock_all(), false, f)
    }

    /// Runs `f` as one write over shards already locked, then commits: a
    /// batch reaches the sink (or rolls back), memory changes are reported,
    /// the locks are released, and only then does the write wait for
    /// durability (group commit).
    pub(crate) fn run_locked<'e, R>(
        &'e self,
        locked: Locked<'e>,
        batch: bool,
        f: impl FnOnce(&mut Writer<'e>) -> Result<R>,
    ) -> Result<R> {
        let mut w = Writer::new(self, locked, batch);
        let r = f(&mut w);
        let finished = w.finish(r.is_ok());
        if let Ok(Some(end)) = finished {
            replica_state::note_write_end(self.id, end);
            self.sink.sink().flush_to(end).map_err(Error::from_sink)?;
        }
        let r = r?;
        finished.map(|_| r)
    }
}
