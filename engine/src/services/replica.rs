//! The engine's side of replication, as functions over `&Inner`: roles,
//! the applied offset, and the primitives the `ringkv-replication` crate
//! drives (appending a primary's raw stream bytes at the same offsets,
//! replaying them, starting over for a full sync, swapping in a keyspace
//! loaded beside the live one, promotion). The public documentation, with
//! a worked example, is the `ringkv::replica` module (`lib.rs`).
//!
//! What a follower's data directory guarantees:
//!
//! - **Durable means on disk.** Appended stream bytes are synced as the
//!   ring's durability says (`always`: before `replica_append` returns),
//!   and [`durable_offset`] counts only what a durable snapshot holds or
//!   the ring has synced above it.
//! - **A full sync is done when it is saved.** `swap_in` saves a snapshot
//!   of the swapped-in data before it returns; that save clears the
//!   `FULLSYNC` marker. If it fails, the marker stays, the durable offset
//!   is 0, and promotion (or becoming a primary) saves first and refuses
//!   while it cannot: a crash never makes recovery wipe acknowledged writes.
//! - **A full sync never overwrites what it must keep.** While stale, the
//!   ring keeps everything from the snapshot's offset (the swap replays it):
//!   bytes that do not fit are refused with `LogError::Full`, whatever the
//!   retention, and the replication session holds them until the swap
//!   (whose save releases that history).
//! - **A record that does not replay is not kept.** When a record of the
//!   primary's stream does not decode or apply here (the primary's state and
//!   ours differ), the ring is cut back to the applied offset (after saving
//!   a snapshot there), so the directory reopens with everything applied
//!   and promotion does not trip over it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::parallel_apply::{LogRecord, ParallelApplier};
use super::snapshot::{bgsave, save_now};
use super::{data_dir, recovery};
use crate::core::{last_write_end, Inner, Promotion, Role, WriteGate};
use crate::error::{Error, LogError, Result, SnapshotError};
use crate::log::{record, RingLog};
use crate::mutation::MutationSink;

/// This engine's role.
pub(crate) fn role(inner: &Inner) -> Role {
    inner.replica.role()
}

/// Becomes a primary or a follower; a follower's applied offset starts at
/// its ring's end (unless a full sync is in progress). A follower whose
/// full sync is not saved yet saves it before it becomes a primary.
pub(crate) fn set_role(inner: &Inner, role: Role) -> Result<()> {
    let log = inner.sink.require_log()?;
    if role == Role::Primary && inner.replica.is_follower() {
        settle_full_sync(inner)?;
    }
    // A follower in the middle of a full sync keeps its applied offset:
    // its ring already holds another history (it must sync again).
    if role == Role::Follower && !is_stale(inner) {
        inner.replica.set_applied(log.published());
    }
    inner.replica.set_role(role);
    Ok(())
}

/// The offset the keyspace reflects: a follower's applied offset, a
/// primary's log end.
pub(crate) fn applied_offset(inner: &Inner) -> u64 {
    match (inner.replica.role(), inner.log()) {
        (Role::Follower, _) => inner.replica.applied(),
        (Role::Primary, Some(log)) => log.published(),
        (Role::Primary, None) => 0,
    }
}

/// Waits (bounded) until the keyspace reflects `offset`.
pub(crate) fn wait_applied(inner: &Inner, offset: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    inner.replica.wait_applied(deadline, || applied_offset(inner) >= offset)
}

/// The end offset of the calling thread's last logged write on this engine.
pub(crate) fn last_write_offset(inner: &Inner) -> Option<u64> {
    last_write_end(inner.id)
}

/// Installs (or removes) the write gate.
pub(crate) fn set_write_gate(inner: &Inner, gate: Option<Arc<dyn WriteGate>>) {
    inner.replica.set_gate(gate);
}

/// Removes the gate if it is `gate`.
pub(crate) fn clear_write_gate_if(inner: &Inner, gate: &Arc<dyn WriteGate>) -> bool {
    inner.replica.clear_gate_if(gate)
}

/// The gate installed now.
pub(crate) fn write_gate(inner: &Inner) -> Option<Arc<dyn WriteGate>> {
    inner.replica.gate()
}

/// A full sync is in progress: the data is stale.
pub(crate) fn is_stale(inner: &Inner) -> bool {
    inner.replica.is_syncing()
}

/// The offset up to which this engine's state survives a crash of the
/// machine (what a follower acks as durable): what the newest durable
/// snapshot holds, or the ring has synced above it, up to what the
/// keyspace reflects. 0 without a data directory (nothing survives), and
/// while a full sync's data has no durable snapshot yet (recovery would
/// start empty).
pub(crate) fn durable_offset(inner: &Inner) -> u64 {
    let Some(log) = inner.log() else { return 0 };
    if inner.data_dir.is_none() || inner.replica.has_unsaved_full_sync() {
        return 0;
    }
    log.synced()
        .max(inner.snapshot.newest_durable())
        .min(applied_offset(inner))
}

/// Before this engine takes writes of its own: a full sync whose data has
/// no durable snapshot yet gets one now (the save clears the `FULLSYNC`
/// marker), so no crash can make recovery wipe what it acknowledged. Fails
/// if the save does.
fn settle_full_sync(inner: &Inner) -> Result<()> {
    if !inner.replica.has_unsaved_full_sync() {
        return Ok(());
    }
    let info = save_now(inner)?;
    tracing::info!(offset = info.offset, "saved the full sync's data before taking writes");
    Ok(())
}

/// Follower: appends a primary's raw stream bytes to the ring at the same
/// offsets, syncs them as the ring's durability says, and starts a save
/// once the ring is half used (`snapshot.auto_share`); while the ring is
/// full, starts a save and waits (bounded). During a full sync, bytes the
/// ring cannot keep from the snapshot's offset on are refused with
/// `LogError::Full` at once (nothing can release that history before the
/// swap).
pub(crate) fn replica_append(inner: &Arc<Inner>, start: u64, bytes: &[u8]) -> Result<u64> {
    let log = inner.sink.require_log()?;
    if !inner.replica.is_follower() {
        return Err(Error::Replication("replica_append on a primary".into()));
    }
    if is_stale(inner) {
        // Whatever the retention: an overwriting ring would lose the
        // history the swap replays.
        let from = log.header().oldest;
        let end = start.saturating_add(bytes.len() as u64);
        if end.saturating_sub(from) > log.capacity() {
            return Err(Error::Log(LogError::Full {
                needed: end.saturating_sub(log.published()),
                free: (from + log.capacity()).saturating_sub(log.published()),
            }));
        }
    }
    let deadline = Instant::now() + Duration::from_millis(inner.config.snapshot.log_full_wait_ms);
    let end = loop {
        match log.append_stream(start, bytes) {
            Err(LogError::Full { .. }) if Instant::now() < deadline && inner.data_dir.is_some() && !is_stale(inner) => {
                if !inner.snapshot.is_saving() {
                    let newest = inner.snapshot.newest_durable();
                    if newest >= log.published() && newest > log.oldest() {
                        // The newest snapshot holds the whole ring, and the
                        // history kept from the previous one fills it: no
                        // save can release anything more, and a follower
                        // cannot apply past its ring. Give up that
                        // fallback rather than stop replicating.
                        tracing::warn!(
                            oldest = log.oldest(),
                            newest,
                            "follower ring full of history back to the previous snapshot: releasing it"
                        );
                        log.set_oldest(newest).map_err(Error::Log)?;
                        continue;
                    }
                    let _ = bgsave(inner);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            r => break r.map_err(Error::Log)?,
        }
    };
    // The durable offset a follower acks must be on disk: the same flush
    // as a local write's group commit.
    log.flush_to(end).map_err(Error::from_sink)?;
    if inner.data_dir.is_some() && !is_stale(inner) && !inner.snapshot.is_saving() {
        // As `ensure_log_room` does for local writes: a save well before
        // the ring is full, so two snapshots fit in it (the ring keeps the
        // history from the previous one on).
        let used = log.published().saturating_sub(log.oldest());
        if used as f64 >= log.capacity() as f64 * inner.config.snapshot.auto_share {
            let _ = bgsave(inner);
        }
    }
    Ok(end)
}

/// A record of the primary's stream did not replay here (it does not
/// decode, or does not apply: the primary's state and ours differ). The
/// ring must not keep it, nor anything after it: recovery would replay it
/// and fail, and so would promotion. With a data directory a snapshot at
/// the applied offset is saved first; then the ring restarts there, in the
/// same history, without the bytes past it.
fn discard_unapplied(inner: &Inner, log: &RingLog, cause: &Error) {
    let applied = inner.replica.applied();
    let end = log.published();
    if end <= applied {
        return;
    }
    tracing::error!(
        applied,
        end,
        error = %cause,
        "a record of the primary's stream does not replay here: discarding the ring past the applied offset"
    );
    let discarded = (|| -> Result<()> {
        if inner.data_dir.is_some() {
            save_now(inner)?;
        }
        let h = log.header();
        log.reset_to(applied, &h.replid, &h.prev_replid, h.switch_offset)?;
        Ok(())
    })();
    if let Err(e) = discarded {
        tracing::error!(
            applied,
            error = %e,
            "could not discard the ring past the applied offset: opening the directory will fail at the same record"
        );
    }
}

/// Whether an error of `replay_record` is the record's (it does not decode
/// or apply), not the engine's.
fn is_rejected_record(e: &Error) -> bool {
    matches!(e, Error::BadRecord { .. } | Error::RecordRejected { .. })
}

/// Follower: replays the records of its own ring from the applied offset
/// up to `upto` (or the ring's end); returns the new applied offset.
pub(crate) fn replay_ring(inner: &Inner, upto: u64) -> Result<u64> {
    let log = inner.sink.require_log()?;
    let state = &inner.replica;
    if !state.is_follower() {
        return Err(Error::Replication("replica_replay_ring on a primary".into()));
    }
    let upto = upto.min(log.published());
    let applier = ParallelApplier::new(inner, true);
    let mut pos = state.applied();
    while pos < upto {
        let batch = log.read(pos, 1 << 20)?;
        let mut records = LogRecord::of_batch(batch);
        // Up to the record that reaches `upto`.
        if let Some(last) = records.iter().position(|r| r.end >= upto) {
            records.truncate(last + 1);
        }
        let Some(end) = records.last().map(|r| r.end) else {
            break;
        };
        if let Err(e) = applier.replay(records) {
            if is_rejected_record(&e) {
                discard_unapplied(inner, log, &e);
            }
            state.notify_applied();
            return Err(e);
        }
        pos = end;
        state.notify_applied();
    }
    state.notify_applied();
    Ok(pos)
}

/// Follower: replays records from the raw stream bytes just appended
/// (whole records from `start`), skipping those already applied. A record
/// that does not replay is discarded from the ring with everything after
/// it (see [`discard_unapplied`]).
pub(crate) fn replay_stream(inner: &Inner, start: u64, bytes: &[u8]) -> Result<u64> {
    let log = inner.sink.require_log()?;
    let state = &inner.replica;
    if !state.is_follower() {
        return Err(Error::Replication("replica_replay_stream on a primary".into()));
    }
    let applied = state.applied();
    if start > applied {
        return Err(Error::Replication(format!(
            "bytes start at {start} but the keyspace reflects {applied}"
        )));
    }
    // Whole records from `start`; those past the applied offset replay
    // (everything before a malformed one, then its error).
    let mut records = Vec::new();
    let mut malformed = None;
    let mut pos = 0usize;
    while pos + record::HEADER_LEN <= bytes.len() {
        let mut head = [0u8; record::HEADER_LEN];
        head.copy_from_slice(&bytes[pos..pos + record::HEADER_LEN]);
        let h = record::Header::parse(&head);
        let len = h.len as usize;
        let end_pos = pos + record::record_len(len) as usize;
        if h.offset != start + pos as u64 || end_pos > bytes.len() {
            malformed = Some(Error::Log(LogError::Corrupt {
                offset: start + pos as u64,
                reason: "not a whole record at its offset".into(),
            }));
            break;
        }
        let end = start + end_pos as u64;
        if end > applied {
            let payload =
                bytes::Bytes::copy_from_slice(&bytes[pos + record::HEADER_LEN..pos + record::HEADER_LEN + len]);
            records.push(LogRecord {
                offset: h.offset,
                end,
                payload,
            });
        }
        pos = end_pos;
    }
    if let Err(e) = ParallelApplier::new(inner, true).replay(records) {
        if is_rejected_record(&e) {
            discard_unapplied(inner, log, &e);
        }
        state.notify_applied();
        return Err(e);
    }
    state.notify_applied();
    match malformed {
        Some(e) => Err(e),
        None => Ok(state.applied()),
    }
}

/// Follower: starts a full sync at the primary's snapshot `offset` with
/// its history: marks the data directory (a crash restarts empty; the
/// marker names the ring's history and the primary's), drops the old
/// snapshots, restarts the ring there.
pub(crate) fn replica_begin_full_sync(
    inner: &Inner,
    offset: u64,
    replid: &str,
    prev_replid: &str,
    switch_offset: u64,
) -> Result<()> {
    let log = inner.sink.require_log()?;
    if !inner.replica.is_follower() {
        return Err(Error::Replication("a full sync needs a follower".into()));
    }
    // Refuse an offset the ring cannot restart at before anything changes.
    log.check_reset_offset(offset)?;
    inner.replica.set_syncing(true);
    // A save that started before the flag finishes before the ring moves.
    inner.snapshot.wait_idle();
    if let Some(dir) = &inner.data_dir {
        data_dir::write_full_sync_marker(dir, &[&log.replid(), replid])?;
        inner.replica.set_unsaved_full_sync(true);
        for (_, path) in crate::snapshot::list_snapshots(dir) {
            std::fs::remove_file(&path).map_err(|e| Error::Io {
                context: format!("removing {}", path.display()),
                source: e,
            })?;
        }
        inner.snapshot.set_newest_durable(0);
    }
    log.reset_to(offset, replid, prev_replid, switch_offset)?;
    Ok(())
}

/// Follower, after a partial resync: adopts the primary's history (named
/// in the `FULLSYNC` marker first, if the directory still has one: the
/// ring stays a copy of a primary's data, which recovery may wipe).
pub(crate) fn adopt_history(inner: &Inner, replid: &str, prev_replid: &str, switch_offset: u64) -> Result<()> {
    let log = inner.sink.require_log()?;
    if !inner.replica.is_follower() {
        return Err(Error::Replication("adopting a history needs a follower".into()));
    }
    if let (Some(dir), true) = (&inner.data_dir, inner.replica.has_unsaved_full_sync()) {
        if let Some(mut ids) = data_dir::read_full_sync_marker(dir)? {
            ids.push(replid.to_string());
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            data_dir::write_full_sync_marker(dir, &ids)?;
        }
    }
    log.set_history(replid, prev_replid, switch_offset)?;
    Ok(())
}

/// The configuration of a staging engine for a full sync: this engine's,
/// with the same hash seed (keys land in the same shards), no active expiry
/// and no memory limit.
pub(crate) fn staging_config(inner: &Inner) -> crate::config::Config {
    let mut config = inner.config.clone();
    config.hash_seed = Some(inner.keyspace.hashing().seed());
    config.active_expire = false;
    config.maxmemory = 0;
    config
}

/// Follower, end of a full sync: catches `staging` up from the ring, then
/// swaps the keyspaces under every shard lock (see `Engine::swap_in`), then
/// saves a snapshot of the new data (the full sync is complete on disk
/// only then; an error here leaves the data swapped in but unsaved).
pub(crate) fn swap_in(inner: &Arc<Inner>, staging: &Inner, snapshot_offset: u64) -> Result<u64> {
    let log = inner.sink.require_log()?;
    if staging.keyspace.shard_count() != inner.keyspace.shard_count()
        || staging.keyspace.hashing().seed() != inner.keyspace.hashing().seed()
    {
        return Err(Error::Replication(
            "staging engine does not match (use Engine::staging)".into(),
        ));
    }
    // Catch the staging keyspace up with the ring.
    let pos = log.published();
    recovery::replay_range(staging, log, snapshot_offset, pos)?;
    let mut mine: Vec<_> = inner.keyspace.iter().map(|s| s.write()).collect();
    let mut theirs: Vec<_> = staging.keyspace.iter().map(|s| s.write()).collect();
    if mine.iter().any(|g| g.has_snapshot()) {
        return Err(Error::Snapshot(SnapshotError::InProgress));
    }
    for (a, b) in mine.iter_mut().zip(theirs.iter_mut()) {
        // Each shard keeps its engine-side bookkeeping (generation,
        // counters). Entries of a staging engine carry generation 0, which
        // a later snapshot of this engine reads as "not serialized yet":
        // right, since none runs during the swap.
        a.swap_data(b);
        let (now, before) = (a.memory_reported as i64, b.memory_reported as i64);
        inner.memory.add(now - before);
        staging.memory.add(before - now);
    }
    inner.replica.set_applied(pos);
    drop(theirs);
    drop(mine);
    inner.replica.set_syncing(false);
    inner.replica.notify_applied();
    // The data directory holds no snapshot of the new history yet: saved
    // now, before the sync is reported done (the save clears the FULLSYNC
    // marker and the ring's history before it). A failure leaves the marker
    // (a crash restarts empty) and is returned; promotion saves first.
    if inner.data_dir.is_some() {
        let info = save_now(inner)?;
        tracing::info!(offset = info.offset, "full sync saved");
    }
    Ok(pos)
}

/// Becomes a primary: replays what the ring holds, saves a full sync that
/// is not saved yet (before any write is taken: see [`settle_full_sync`]),
/// starts a new history whose previous id and switch offset keep the old
/// one.
pub(crate) fn promote(inner: &Inner) -> Result<Promotion> {
    let log = inner.sink.require_log()?;
    if is_stale(inner) {
        return Err(Error::Replication(
            "cannot promote during a full sync (the data is stale)".into(),
        ));
    }
    let old = log.header();
    let switch_offset = log.published();
    if inner.replica.is_follower() {
        replay_ring(inner, switch_offset)?;
    }
    settle_full_sync(inner)?;
    let replid = crate::log::new_replid();
    log.set_history(&replid, &old.replid, switch_offset)?;
    inner.replica.set_role(Role::Primary);
    tracing::info!(%replid, prev = %old.replid, switch_offset, "promoted to primary");
    Ok(Promotion {
        replid,
        prev_replid: old.replid,
        switch_offset,
    })
}
