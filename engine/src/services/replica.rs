//! The engine's side of replication, as functions over `&Inner`: roles,
//! the applied offset, and the primitives the `ringkv-replication` crate
//! drives (appending a primary's raw stream bytes at the same offsets,
//! replaying them, starting over for a full sync, swapping in a keyspace
//! loaded beside the live one, promotion). The public documentation, with
//! a worked example, is the `ringkv::replica` module (`lib.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::snapshot::bgsave;
use super::{data_dir, recovery};
use crate::core::{last_write_end, Inner, Promotion, Role, WriteGate};
use crate::error::{Error, LogError, Result, SnapshotError};
use crate::log::record;

/// This engine's role.
pub(crate) fn role(inner: &Inner) -> Role {
    inner.replica.role()
}

/// Becomes a primary or a follower; a follower's applied offset starts at
/// its ring's end (unless a full sync is in progress).
pub(crate) fn set_role(inner: &Inner, role: Role) -> Result<()> {
    let log = inner.sink.require_log()?;
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

/// A full sync is in progress: the data is stale.
pub(crate) fn is_stale(inner: &Inner) -> bool {
    inner.replica.is_syncing()
}

/// Follower: appends a primary's raw stream bytes to the ring at the same
/// offsets; while the ring is full, starts a save and waits (bounded).
pub(crate) fn replica_append(inner: &Arc<Inner>, start: u64, bytes: &[u8]) -> Result<u64> {
    let log = inner.sink.require_log()?;
    if !inner.replica.is_follower() {
        return Err(Error::Replication("replica_append on a primary".into()));
    }
    let deadline = Instant::now() + Duration::from_millis(inner.config.snapshot.log_full_wait_ms);
    loop {
        match log.append_stream(start, bytes) {
            Err(LogError::Full { .. }) if Instant::now() < deadline && inner.data_dir.is_some() && !is_stale(inner) => {
                if !inner.snapshot.is_saving() {
                    let _ = bgsave(inner);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            r => return r.map_err(Error::Log),
        }
    }
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
            inner.replay_record(offset, payload, Some(end))?;
            pos = end;
            if pos >= upto {
                break;
            }
        }
    }
    state.notify_applied();
    Ok(pos)
}

/// Follower: replays records from the raw stream bytes just appended
/// (whole records from `start`), skipping those already applied.
pub(crate) fn replay_stream(inner: &Inner, start: u64, bytes: &[u8]) -> Result<u64> {
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
            inner.replay_record(h.offset, payload, Some(end))?;
        }
        pos = end_pos;
    }
    state.notify_applied();
    Ok(state.applied())
}

/// Follower: starts a full sync at the primary's snapshot `offset` with
/// its history: marks the data directory (a crash restarts empty), drops
/// the old snapshots, restarts the ring there.
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
    inner.replica.set_syncing(true);
    // A save that started before the flag finishes before the ring moves.
    inner.snapshot.wait_idle();
    if let Some(dir) = &inner.data_dir {
        data_dir::write_full_sync_marker(dir)?;
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

/// Follower, after a partial resync: adopts the primary's history.
pub(crate) fn adopt_history(inner: &Inner, replid: &str, prev_replid: &str, switch_offset: u64) -> Result<()> {
    let log = inner.sink.require_log()?;
    if !inner.replica.is_follower() {
        return Err(Error::Replication("adopting a history needs a follower".into()));
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
/// swaps the keyspaces under every shard lock (see `Engine::swap_in`).
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
    // The data directory holds no snapshot of the new history yet: the
    // full-sync mark stays until one is saved (a crash before then
    // restarts empty and syncs again).
    if inner.data_dir.is_some() {
        bgsave(inner)?;
    }
    Ok(pos)
}

/// Becomes a primary: replays what the ring holds, starts a new history
/// whose previous id and switch offset keep the old one.
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
