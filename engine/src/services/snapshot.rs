//! Taking snapshots: the cut, the walk, the output stream, snapshot files,
//! and loading a snapshot back.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::data_dir;
use super::parallel_apply::apply_threads;
use super::parallel_load::load_chunks;
use crate::core::{Inner, SnapshotKind};
use crate::error::{Error, Result, SnapshotError};
use crate::keyspace::cow::{walk_frozen, walk_step, KeyFilter, Sent, ShardSnap, SnapOutput};
use crate::snapshot::format::{ChunkWriter, SnapshotHeader, SnapshotReader};
use crate::snapshot::{list_snapshots, snapshot_path};
use crate::stats::SnapshotInfo;

fn io(context: &str, e: std::io::Error) -> Error {
    Error::Snapshot(SnapshotError::Io {
        context: context.into(),
        source: e,
    })
}

/// Takes a snapshot into `out` while writers go on (one stream at a time,
/// beside at most one save; none while a follower's data is stale).
pub(crate) fn snapshot_to<W: Write + Send>(inner: &Inner, out: W) -> Result<(W, SnapshotInfo)> {
    snapshot_as(inner, out, SnapshotKind::Stream, None)
}

/// [`snapshot_to`] holding only the keys `keep` accepts (a slot
/// migration's copy); its header counts no keys (`keys: 0`), its footer
/// the items written.
pub(crate) fn snapshot_filtered_to<W: Write + Send>(
    inner: &Inner,
    out: W,
    keep: KeyFilter,
) -> Result<(W, SnapshotInfo)> {
    snapshot_as(inner, out, SnapshotKind::Stream, Some(keep))
}

/// A snapshot of `kind` into `out`: claims its slot, then [`take`].
fn snapshot_as<W: Write + Send>(
    inner: &Inner,
    out: W,
    kind: SnapshotKind,
    keep: Option<KeyFilter>,
) -> Result<(W, SnapshotInfo)> {
    if inner.replica.is_syncing() {
        return Err(Error::Snapshot(SnapshotError::Stale));
    }
    let Some(_running) = inner.snapshot.try_begin(kind) else {
        return Err(Error::Snapshot(SnapshotError::InProgress));
    };
    let result = take(inner, out, kind, keep);
    // A save is complete only once its file is fsynced and renamed: `save`
    // records its outcome.
    if kind == SnapshotKind::Stream {
        record_outcome(inner, result.as_ref().map(|(_, info)| info));
    }
    result
}

/// Counts a finished snapshot, or remembers why the last one failed.
fn record_outcome(inner: &Inner, result: std::result::Result<&SnapshotInfo, &Error>) {
    inner.snapshot.update_stats(|stats| match result {
        Ok(info) => {
            stats.completed += 1;
            stats.last = Some(info.clone());
            stats.last_error = None;
        }
        Err(e) => stats.last_error = Some(e.to_string()),
    });
}

/// The cut (every shard locked at once, O(shards)), the walk on its own
/// thread, and the output written here. Nothing holds a shard lock while it
/// waits for the output (`keyspace/cow.rs`): the walk and the writers hand
/// buffers to a queue this thread drains, and wait for room holding no lock.
fn take<W: Write + Send>(
    inner: &Inner,
    out: W,
    kind: SnapshotKind,
    keep: Option<KeyFilter>,
) -> Result<(W, SnapshotInfo)> {
    let started = Instant::now();
    let filtered = keep.is_some();
    let (output, rx) = SnapOutput::filtered(inner.config.snapshot.buffer_bytes, keep);
    // The cut: every shard locked at once, O(shards), between two segments
    // of a follower's parallel apply (the gate). Another snapshot may
    // be running (a save beside a stream): its parts stay, and the shards
    // serialize into both (`keyspace/cow.rs`).
    let gate = inner.replica.apply_gate();
    let mut guards: Vec<_> = inner.keyspace.iter().map(|s| s.write()).collect();
    let version = inner.snapshot.next_generation();
    // A follower's keyspace reflects its applied offset (which moves
    // under the shard locks held here), a primary's its whole log.
    let offset = if inner.replica.is_follower() {
        inner.replica.applied()
    } else {
        inner.log().map_or(0, |l| l.published())
    };
    let mut keys = 0;
    let mut changes = 0;
    for g in guards.iter_mut() {
        g.generation = version;
        keys += g.table.len() as u64;
        changes += g.changes;
        let part = ShardSnap::new(version, Arc::clone(&output), g.table.len());
        g.snaps.push(part);
    }
    drop(guards);
    drop(gate);
    let start_pause = started.elapsed();
    let cut_changes = changes;
    // A filtered snapshot's keys are not counted at the cut (that would
    // take a scan under every lock): its header says 0.
    let keys = if filtered { 0 } else { keys };
    let header = SnapshotHeader {
        offset,
        created_ms: inner.clock.now_ms(),
        keys,
        replid: inner.log().map(|l| l.replid()).unwrap_or_default(),
    };
    let written = std::thread::scope(|s| {
        let walk_output = Arc::clone(&output);
        let walker = std::thread::Builder::new()
            .name("ringkv-snapshot".into())
            .spawn_scoped(s, move || {
                walk(inner, version, &walk_output);
                walk_output.done();
            });
        let mut writer = ChunkWriter::new(out, &header);
        if writer.is_err() {
            output.cancel();
        }
        // Once the walk has ended without saying so (it failed), take what
        // is queued and stop.
        let (mut walk_gone, mut done) = (false, false);
        loop {
            let sent = if walk_gone {
                match rx.try_recv() {
                    Ok(sent) => sent,
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                    Ok(sent) => sent,
                    Err(crossbeam::channel::RecvTimeoutError::Timeout) => {
                        walk_gone = walker.as_ref().map_or(true, |w| w.is_finished());
                        continue;
                    }
                    Err(crossbeam::channel::RecvTimeoutError::Disconnected) => break,
                }
            };
            match sent {
                Sent::Chunk(buf, items) => {
                    if let Ok(w) = &mut writer {
                        if let Err(e) = w.chunk(&buf, items) {
                            // The output failed or went away (a follower
                            // that disconnected): stop the walk, and drain
                            // what is queued so the counts stay right.
                            writer = Err(e);
                            output.cancel();
                        }
                    }
                    output.written(buf.len());
                    output.recycle(buf);
                }
                Sent::Done => {
                    done = true;
                    break;
                }
            }
        }
        let walked = match walker {
            Ok(handle) => handle.join().is_ok() && done,
            Err(_) => false,
        };
        if !walked {
            output.cancel();
        }
        match writer {
            Ok(_) if !walked => Err(std::io::Error::other("the snapshot walk failed")),
            w => w,
        }
    });
    // However the snapshot ended, no shard keeps serializing for it.
    release(inner, version);
    let ((writer_wait_ns, writer_waits), walk_wait_ns, peak) =
        (output.writer_wait(), output.walk_wait_ns(), output.peak());
    let writer = written.map_err(|e| io("writing the snapshot", e))?;
    let (items, bytes) = (writer.items, writer.payload_bytes);
    let out = writer.finish().map_err(|e| io("finishing the snapshot", e))?;
    let info = SnapshotInfo {
        offset,
        keys,
        items,
        bytes,
        start_pause_us: start_pause.as_micros() as u64,
        duration_ms: started.elapsed().as_millis() as u64,
        writer_wait_ms: writer_wait_ns / 1_000_000,
        writer_waits,
        walk_wait_ms: walk_wait_ns / 1_000_000,
        peak_buffer_bytes: peak as u64,
        created_ms: header.created_ms,
    };
    tracing::info!(?info, "snapshot written");
    if kind == SnapshotKind::Save {
        // The `save` rules count from the last save: a stream does not
        // make the data directory any more durable.
        inner.snapshot.set_last_cut(inner.clock.now_ms(), cut_changes);
    }
    Ok((out, info))
}

/// Walks every shard, one lock hold per bounded step, pacing itself on the
/// output with no lock held; stops early if the output is cancelled.
fn walk(inner: &Inner, version: u32, output: &SnapOutput) {
    for shard in inner.keyspace.iter() {
        loop {
            output.pace_walk();
            if output.is_cancelled() {
                return;
            }
            let mut g = shard.write();
            let frozen = g
                .snaps
                .iter_mut()
                .find(|s| s.version == version)
                .map(ShardSnap::take_frozen)
                .unwrap_or_default();
            if !frozen.is_empty() {
                // Tables FLUSHALL froze: nothing changes them, so they are
                // written with no lock held (and freed here, not under it).
                drop(g);
                for table in &frozen {
                    walk_frozen(table, version, output);
                }
                continue;
            }
            if walk_step(&mut g, inner.keyspace.hashing(), version) {
                let done = g.take_snapshot_part(version);
                drop(g);
                drop(done);
                break;
            }
            // Hand the lock to a waiting writer rather than re-taking it at
            // once (writers otherwise wait for parking_lot's eventual
            // fairness, up to ~1 ms).
            parking_lot::RwLockWriteGuard::unlock_fair(g);
        }
    }
}

/// Removes the part of snapshot `version` from every shard that still has
/// one (a cancelled or failed snapshot), dropping it outside the lock.
fn release(inner: &Inner, version: u32) {
    for shard in inner.keyspace.iter() {
        let mut g = shard.write();
        let part = g.take_snapshot_part(version);
        drop(g);
        drop(part);
    }
}

/// SAVE: a snapshot file in the data directory (see `Engine::save`).
///
/// The snapshot is written to `snapshot.tmp`, fsynced, renamed to its
/// final name and the directory fsynced; only then do older snapshots go,
/// the newest durable offset move and the ring drop the history it covers.
/// If writing, fsync or the rename fails (a full disk: ENOSPC inside the
/// `SnapshotError::Io`), the temporary file is removed, so it neither
/// holds the space nor looks like a snapshot, and every earlier snapshot
/// stays. If only the directory's fsync fails, the renamed file stays (it
/// is whole and fsynced; recovery may use it) but nothing older is removed
/// and the ring keeps its history. Either way the error is returned and
/// kept as the snapshot stats' `last_error`.
pub(crate) fn save(inner: &Inner) -> Result<SnapshotInfo> {
    let dir = inner
        .data_dir
        .as_ref()
        .ok_or_else(|| Error::Config("SAVE needs a data directory".into()))?;
    // One save at a time, from the temporary file to the rename and the
    // ring trimming (two saves must not share the temporary file).
    let Some(_saving) = inner.snapshot.try_lock_save() else {
        return Err(Error::Snapshot(SnapshotError::InProgress));
    };
    let result = save_locked(inner, dir);
    match &result {
        // Nothing was attempted.
        Err(Error::Snapshot(SnapshotError::InProgress | SnapshotError::Stale)) => {}
        r => record_outcome(inner, r.as_ref()),
    }
    result
}

/// The file `save` writes: a plain file, whose writes are where the
/// `snapshot::write` failpoint injects failures.
struct SnapshotFile(File);

impl Write for SnapshotFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        fail_point!("snapshot::write", |arg| Err(crate::failpoints::injected(arg)));
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// [`save`] once its lock is held.
fn save_locked(inner: &Inner, dir: &std::path::Path) -> Result<SnapshotInfo> {
    let tmp = dir.join("snapshot.tmp");
    let (info, path) = match write_snapshot_file(inner, dir, &tmp) {
        Ok(done) => done,
        Err(e) => {
            // Never leave a partial file behind: on a full disk it holds
            // the space the next attempt needs.
            match std::fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(r) if r.kind() == std::io::ErrorKind::NotFound => {}
                Err(r) => {
                    tracing::warn!(path = %tmp.display(), error = %r, "could not remove a failed snapshot's temporary file")
                }
            }
            return Err(e);
        }
    };
    fail_point!("snapshot::dir_fsync", |arg| Err(io(
        "fsync of the data directory",
        crate::failpoints::injected(arg)
    )));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("fsync of the data directory", e))?;
    tracing::debug!(path = %path.display(), "snapshot saved");
    let all = list_snapshots(dir);
    let keep = inner.config.snapshot.keep.max(1);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        if let Err(e) = std::fs::remove_file(old) {
            tracing::warn!(path = %old.display(), error = %e, "could not remove an old snapshot");
        }
    }
    // A follower's first snapshot after a full sync completes it on disk.
    let completed_full_sync = data_dir::remove_full_sync_marker(dir)?;
    inner.replica.set_unsaved_full_sync(false);
    let previous = inner.snapshot.set_newest_durable(info.offset);
    if let Some(log) = inner.log() {
        // The ring keeps history from the previous snapshot on, so that a
        // damaged newest snapshot can fall back to the previous one. After
        // a full sync there is no previous snapshot of this history: the
        // ring before this one serves no recovery and is released.
        let oldest_kept = if completed_full_sync {
            info.offset
        } else {
            all.iter().rev().nth(1).map_or(previous, |(o, _)| *o).min(info.offset)
        };
        log.set_oldest(oldest_kept)?;
    }
    Ok(info)
}

/// Writes the snapshot into `tmp`, fsyncs it and renames it to its final
/// name in `dir`; returns its info and path.
fn write_snapshot_file(
    inner: &Inner,
    dir: &std::path::Path,
    tmp: &std::path::Path,
) -> Result<(SnapshotInfo, std::path::PathBuf)> {
    let file = File::create(tmp).map_err(|e| io("creating the snapshot file", e))?;
    let out = BufWriter::with_capacity(1 << 20, SnapshotFile(file));
    let (out, info) = snapshot_as(inner, out, SnapshotKind::Save, None)?;
    let SnapshotFile(file) = out
        .into_inner()
        .map_err(|e| io("flushing the snapshot file", e.into_error()))?;
    fail_point!("snapshot::fsync", |arg| Err(io(
        "fsync of the snapshot file",
        crate::failpoints::injected(arg)
    )));
    file.sync_all().map_err(|e| io("fsync of the snapshot file", e))?;
    let path = snapshot_path(dir, info.offset);
    fail_point!("snapshot::rename", |arg| Err(io(
        "renaming the snapshot file",
        crate::failpoints::injected(arg)
    )));
    std::fs::rename(tmp, &path).map_err(|e| io("renaming the snapshot file", e))?;
    Ok((info, path))
}

/// How long [`save_now`] waits for a save or snapshot already running.
const SAVE_NOW_WAIT: Duration = Duration::from_secs(60);

/// SAVE for callers that need a durable snapshot of the data as it is now
/// (the end of a full sync, a promotion, a follower discarding a record
/// that does not apply): a save or snapshot already running is waited for
/// (up to a minute) instead of failing with `InProgress`.
pub(crate) fn save_now(inner: &Inner) -> Result<SnapshotInfo> {
    let deadline = Instant::now() + SAVE_NOW_WAIT;
    loop {
        match save(inner) {
            Err(Error::Snapshot(SnapshotError::InProgress)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            r => return r,
        }
    }
}

/// BGSAVE: [`save`] on a background thread; false if a save runs (a
/// stream snapshot, such as a follower's full sync, does not stop it).
pub(crate) fn bgsave(inner: &Arc<Inner>) -> Result<bool> {
    if inner.data_dir.is_none() {
        return Err(Error::Config("BGSAVE needs a data directory".into()));
    }
    if inner.snapshot.is_saving() {
        return Ok(false);
    }
    let mut slot = inner.snapshot.bgsave_thread();
    if slot.as_ref().is_some_and(|h| !h.is_finished()) {
        return Ok(false);
    }
    let engine = Arc::clone(inner);
    let handle = std::thread::Builder::new()
        .name("ringkv-bgsave".into())
        .spawn(move || {
            if let Err(e) = save(&engine) {
                if !matches!(e, Error::Snapshot(SnapshotError::InProgress)) {
                    tracing::error!(error = %e, "background save failed");
                }
            }
        })
        .map_err(|e| io("starting the bgsave thread", e))?;
    *slot = Some(handle);
    Ok(true)
}

/// Starts a background save if a `save` rule is due (called by the
/// background thread).
pub(crate) fn check_save_rules(inner: &Arc<Inner>) {
    if inner.data_dir.is_none() || inner.config.snapshot.save.is_empty() {
        return;
    }
    let (last_ms, last_changes) = inner.snapshot.last_cut();
    let changes = inner
        .keyspace
        .iter()
        .map(|s| s.read().changes)
        .sum::<u64>()
        .saturating_sub(last_changes);
    let elapsed_s = inner.clock.now_ms().saturating_sub(last_ms) / 1000;
    let due = inner
        .config
        .snapshot
        .save
        .iter()
        .any(|r| elapsed_s >= r.seconds && changes >= r.changes.max(1));
    if due {
        let _ = bgsave(inner);
    }
}

/// Waits for a running background save to finish.
pub(crate) fn wait_for_bgsave(inner: &Inner) {
    let handle = inner.snapshot.bgsave_thread().take();
    if let Some(handle) = handle {
        let _ = handle.join();
    }
}

/// Loads a snapshot into an empty engine without logging it, on the
/// engine's apply threads (`parallel_load.rs`).
pub(crate) fn load_snapshot(inner: &Inner, input: impl Read) -> Result<SnapshotHeader> {
    let mut reader = SnapshotReader::new(input)?;
    // An empty engine sizes its tables for the keys at the cut up front
    // (no incremental resizes while loading). The count comes from the
    // input: it is capped, and a wrong one only costs memory or resizes.
    let keys = reader.header().keys.min(1 << 26) as usize;
    let per_shard = keys / inner.keyspace.shard_count() + keys / inner.keyspace.shard_count() / 8;
    for shard in inner.keyspace.iter() {
        shard.write().table.reserve_empty(per_shard);
    }
    load_chunks(inner, &mut reader, apply_threads(inner))?;
    Ok(reader.header().clone())
}
