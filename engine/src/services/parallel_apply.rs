//! Replaying log records on several threads, by shard: a follower's stream
//! and ring, recovery's ring replay and a full sync's catch-up.
//!
//! Records are decoded in log order on the calling thread (cheap) and
//! routed by the shards their keys hash to. A run of records that each
//! touch one shard (a *segment*) is applied by `apply_threads` workers at
//! once, worker `s % threads` owning shard `s`, each in log order: records
//! of one shard apply in log order, and records of different shards
//! commute (a single-shard mutation reads and writes its shard alone). A
//! record that touches several shards or every key (a multi-key batch,
//! RENAME or DEL across shards, FLUSHALL) is a barrier: it applies alone,
//! after everything before it and before anything after it. A record that
//! touches no key changes nothing.
//!
//! What stays exact:
//!
//! - **The applied offset is a completed-prefix watermark.** A follower's
//!   applied offset moves at the end of each segment, to the end of its
//!   last record, so every record below it is applied (read-after-write
//!   through `wait_applied` stays exact) and, between segments, nothing
//!   above it is. A segment holds the replica state's apply gate, which a
//!   snapshot's cut takes too: a cut never sees a segment half applied.
//! - **Errors are the sequential ones.** The record that fails is the
//!   first one in log order that fails sequentially (it sees its shard in
//!   the same state), and the error names its offset as before. Every
//!   worker keeps undo records for the segment; when a record fails, the
//!   steps of every record after it (and its own partial steps) are rolled
//!   back, so the keyspace holds exactly the records before it, as a
//!   sequential replay leaves it, and a follower's applied offset is that
//!   record's offset (F11's discard then keeps its meaning).
//! - **Expiry is unchanged**: apply never reads the clock (records carry
//!   absolute deadlines).
//!
//! With `apply_threads = 1` records go through [`Inner::replay_record`]
//! one by one (the sequential path, kept for comparison); a segment too
//! short to be worth the threads applies record by record on the calling
//! thread, as a barrier does.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use crate::core::Inner;
use crate::error::{Error, Result};
use crate::keyspace::apply::{Applier, Undo};
use crate::log::{record, ReadBatch};
use crate::mutation::Mutation;

/// Shortest segment applied on several threads: below it, starting the
/// threads costs more than they save.
pub(crate) const MIN_PARALLEL: usize = 256;

/// Most threads `apply_threads = 0` picks.
const MAX_AUTO_THREADS: usize = 8;

/// The threads an engine applies on: `apply_threads`, or the machine's
/// cores (at most 8); never more than its shards.
pub(crate) fn apply_threads(inner: &Inner) -> usize {
    let configured = match inner.config.apply_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_AUTO_THREADS)),
        n => n,
    };
    configured.clamp(1, inner.keyspace.shard_count().max(1))
}

/// One log record to replay: its offset, the offset just past it, its
/// payload (kind byte and body).
pub(crate) struct LogRecord {
    pub(crate) offset: u64,
    pub(crate) end: u64,
    pub(crate) payload: Bytes,
}

impl LogRecord {
    /// The records of a ring read, each with the offset after it.
    pub(crate) fn of_batch(batch: ReadBatch) -> Vec<LogRecord> {
        let mut records: Vec<LogRecord> = Vec::with_capacity(batch.records.len());
        for (offset, payload) in batch.records {
            if let Some(prev) = records.last_mut() {
                prev.end = offset;
            }
            records.push(LogRecord {
                offset,
                end: batch.next,
                payload,
            });
        }
        records
    }
}

/// The shards a mutation touches, as the applier routes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// No key: nothing to apply.
    Nothing,
    /// Every key is in this shard.
    Shard(usize),
    /// Several shards, or every key: applied alone.
    Barrier,
}

/// Where `m` goes.
pub(crate) fn route(inner: &Inner, m: &Mutation) -> Route {
    if m.touches_all_keys() {
        return Route::Barrier;
    }
    let hashing = inner.keyspace.hashing();
    let mut route = Route::Nothing;
    m.for_each_key(&mut |k| {
        let s = hashing.shard_of(hashing.hash(k));
        route = match route {
            Route::Nothing => Route::Shard(s),
            Route::Shard(t) if t == s => Route::Shard(s),
            _ => Route::Barrier,
        };
    });
    route
}

/// A decoded record.
struct Decoded {
    offset: u64,
    end: u64,
    mutation: Mutation,
    route: Route,
}

/// What one worker did with its share of a segment.
#[derive(Default)]
struct WorkerLog {
    /// Undo steps of every record it applied, in order.
    undo: Vec<Undo>,
    /// (index in the segment, undo length before it) per record begun.
    marks: Vec<(usize, usize)>,
    /// The record of its share that failed, and why.
    failed: Option<(usize, Error)>,
}

/// Replays decoded log records on an engine's apply threads.
pub(crate) struct ParallelApplier<'a> {
    inner: &'a Inner,
    threads: usize,
    /// Move the follower's applied offset (a follower's replay; recovery
    /// and a staging keyspace's catch-up do not).
    track_applied: bool,
}

impl<'a> ParallelApplier<'a> {
    /// An applier over `inner`'s configured threads.
    pub(crate) fn new(inner: &'a Inner, track_applied: bool) -> ParallelApplier<'a> {
        ParallelApplier::with_threads(inner, apply_threads(inner), track_applied)
    }

    /// An applier over `threads` threads (1: sequential).
    pub(crate) fn with_threads(inner: &'a Inner, threads: usize, track_applied: bool) -> ParallelApplier<'a> {
        ParallelApplier {
            inner,
            threads: threads.max(1),
            track_applied,
        }
    }

    /// Replays `records` (contiguous, in log order). On success every one
    /// is applied. On error (the first record, in log order, that does
    /// not decode or apply: [`Error::BadRecord`] or
    /// [`Error::RecordRejected`] with its offset) exactly the records
    /// before it are applied, and a follower's applied offset is its
    /// offset.
    pub(crate) fn replay(&self, records: Vec<LogRecord>) -> Result<()> {
        if self.threads == 1 {
            // The sequential path: decode and apply record by record.
            let track = self.track_applied;
            return records
                .into_iter()
                .try_for_each(|r| self.inner.replay_record(r.offset, r.payload, track.then_some(r.end)));
        }
        let mut decoded = Vec::with_capacity(records.len());
        let mut bad = None;
        for r in records {
            match record::decode_mutation(r.payload) {
                Ok(mutation) => {
                    let route = route(self.inner, &mutation);
                    decoded.push(Decoded {
                        offset: r.offset,
                        end: r.end,
                        mutation,
                        route,
                    });
                }
                Err(source) => {
                    bad = Some(Error::BadRecord {
                        offset: r.offset,
                        source,
                    });
                    break;
                }
            }
        }
        let mut rest = &decoded[..];
        while let Some(first) = rest.first() {
            if first.route == Route::Barrier {
                self.apply_sequential(first)?;
                rest = &rest[1..];
                continue;
            }
            let len = rest
                .iter()
                .position(|d| d.route == Route::Barrier)
                .unwrap_or(rest.len());
            self.apply_segment(&rest[..len])?;
            rest = &rest[len..];
        }
        // Everything before a record that does not decode is applied.
        bad.map_or(Ok(()), Err)
    }

    /// One record, the old way: under its shards' locks, the applied
    /// offset moved inside them.
    fn apply_sequential(&self, d: &Decoded) -> Result<()> {
        let track = self.track_applied;
        self.inner
            .replay_mutation(&d.mutation, |inner| {
                if track {
                    inner.replica.set_applied(d.end);
                }
            })
            .map_err(|e| Error::RecordRejected {
                offset: d.offset,
                source: Box::new(e),
            })
    }

    /// A run of records that each touch at most one shard.
    fn apply_segment(&self, seg: &[Decoded]) -> Result<()> {
        if seg.len() < MIN_PARALLEL {
            return seg.iter().try_for_each(|d| self.apply_sequential(d));
        }
        let Some(last) = seg.last() else { return Ok(()) };
        let mut logs;
        let outcome = {
            // Held until the applied offset covers the segment (or the
            // failure is rolled back): a snapshot's cut waits for it.
            let _gate = self.track_applied.then(|| self.inner.replica.apply_gate());
            let mut shares: Vec<Vec<usize>> = vec![Vec::new(); self.threads];
            for (k, d) in seg.iter().enumerate() {
                if let Route::Shard(s) = d.route {
                    shares[s % self.threads].push(k);
                }
            }
            let failed = AtomicUsize::new(usize::MAX);
            logs = self.run_workers(seg, &shares, &failed);
            let first_failed = failed.load(Ordering::Acquire);
            if first_failed == usize::MAX {
                if self.track_applied {
                    self.inner.replica.set_applied(last.end);
                }
                Ok(())
            } else {
                Err(self.roll_back_after(seg, first_failed, &mut logs))
            }
        };
        // The undo records (the old values) are dropped here, with no lock
        // and no gate held.
        drop(logs);
        outcome
    }

    /// Runs one worker per share (the first on this thread), each applying
    /// its records in order; returns their logs.
    fn run_workers(&self, seg: &[Decoded], shares: &[Vec<usize>], failed: &AtomicUsize) -> Vec<WorkerLog> {
        std::thread::scope(|s| {
            let mut spawned = Vec::with_capacity(shares.len().saturating_sub(1));
            let mut inline = Vec::new();
            for share in shares.iter().skip(1) {
                let started = std::thread::Builder::new()
                    .name("ringkv-apply".into())
                    .spawn_scoped(s, move || self.work(seg, share, failed));
                match started {
                    Ok(handle) => spawned.push(handle),
                    Err(e) => {
                        // Shares are independent: one that found no
                        // thread runs here afterwards.
                        tracing::warn!(error = %e, "could not start an apply thread: applying its share here");
                        inline.push(share);
                    }
                }
            }
            let mut logs = vec![self.work(seg, &shares[0], failed)];
            logs.extend(inline.into_iter().map(|share| self.work(seg, share, failed)));
            for handle in spawned {
                match handle.join() {
                    Ok(log) => logs.push(log),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            logs
        })
    }

    /// Applies the records `share` names, in order, each under its shard's
    /// lock with undo records; stops before any record past the first
    /// failure seen so far (they would be rolled back).
    fn work(&self, seg: &[Decoded], share: &[usize], failed: &AtomicUsize) -> WorkerLog {
        let inner = self.inner;
        let mut log = WorkerLog::default();
        let mut behind = Vec::new();
        for &k in share {
            if k > failed.load(Ordering::Acquire) {
                break;
            }
            let Route::Shard(s) = seg[k].route else { continue };
            log.marks.push((k, log.undo.len()));
            let mut locked = inner.keyspace.lock_one(s);
            let mut applier = Applier {
                locked: &mut locked,
                hashing: inner.keyspace.hashing(),
                lru: inner.lru_now(),
            };
            let r = applier.apply(&seg[k].mutation, Some(&mut log.undo));
            inner.release_applied(locked, &mut behind);
            if let Err(e) = r {
                failed.fetch_min(k, Ordering::AcqRel);
                log.failed = Some((k, e));
                break;
            }
        }
        log
    }

    /// Record `first` of the segment failed: rolls back every step of it
    /// and of the records after it, so exactly the records before it stay
    /// applied; moves a follower's applied offset to it; returns its error.
    fn roll_back_after(&self, seg: &[Decoded], first: usize, logs: &mut [WorkerLog]) -> Error {
        let inner = self.inner;
        let mut locked = inner.keyspace.lock_all();
        let mut applier = Applier {
            locked: &mut locked,
            hashing: inner.keyspace.hashing(),
            lru: inner.lru_now(),
        };
        let mut cause = None;
        for log in logs {
            // Workers own disjoint shards: their rollbacks commute.
            if let Some(&(_, from)) = log.marks.iter().find(|(k, _)| *k >= first) {
                applier.rollback(log.undo.split_off(from));
            }
            if let Some((k, e)) = log.failed.take() {
                if k == first {
                    cause = Some(e);
                }
            }
        }
        locked.for_each(|_, shard| inner.memory.publish(shard, true));
        if self.track_applied {
            inner.replica.set_applied(seg[first].offset);
        }
        drop(locked);
        Error::RecordRejected {
            offset: seg[first].offset,
            source: Box::new(cause.unwrap_or(Error::Apply("a record failed to apply"))),
        }
    }
}
