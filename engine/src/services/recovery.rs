//! Opening a data directory: the lock file, the ring log, and replaying the
//! log into a fresh keyspace.
//!
//! # An interrupted full sync
//!
//! A `FULLSYNC` marker (`data_dir.rs`) says a follower's full sync restarted
//! the ring at its primary's snapshot offset and no local snapshot covers it
//! yet: the directory holds a partial copy of the primary's data, which
//! opening wipes (the follower starts empty and full-syncs again). That is
//! safe only while the ring still follows one of the histories the marker
//! names: a copy of someone else's data. The rule:
//!
//! - the marker names histories and the ring's replid is one of them → wipe;
//! - the marker names none (written by an older version) and the ring's
//!   header shows no history switch at or after the restart with records
//!   past it → wipe;
//! - otherwise the node was promoted (or made a primary) after the marker
//!   and may have acknowledged writes: opening refuses with
//!   [`Error::Recovery`] naming the marker, and deletes nothing. (Promotion
//!   saves a snapshot and clears the marker before taking writes, so only
//!   a directory written by an older version gets here.) An operator moves
//!   the directory aside; removing the marker opens what the ring and
//!   snapshots hold, if they are complete.

use std::fs::{File, OpenOptions};
use std::path::Path;

use std::sync::Arc;
use std::time::Instant;

use super::data_dir::{read_full_sync_marker, remove, remove_full_sync_marker, FULL_SYNC_MARKER};
use super::parallel_apply::{LogRecord, ParallelApplier};
use super::snapshot::load_snapshot;
use crate::core::Inner;
use crate::error::{Error, Result};
use crate::log::{LogConfig, LogError, RingLog};

/// Name of the ring log file in a data directory.
pub(crate) const RING_FILE: &str = "ring.log";
/// Name of the lock file in a data directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Locks `dir` (creating it) and opens or creates its ring log.
pub(crate) fn open_dir(dir: &Path, config: &LogConfig) -> Result<(Arc<RingLog>, File)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        context: format!("creating {}", dir.display()),
        source: e,
    })?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| Error::Io {
            context: "opening the lock file".into(),
            source: e,
        })?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::Io {
                context: "locking the data directory".into(),
                source: e,
            })
        }
    }
    let path = dir.join(RING_FILE);
    if let Some(histories) = read_full_sync_marker(dir)? {
        // A follower crashed in the middle of a full sync: its ring had
        // restarted at the primary's snapshot offset, which no local
        // snapshot covers. Start empty (the follower full-syncs again),
        // unless the ring shows this node took writes of its own since.
        if path.exists() {
            let ring = RingLog::open(&path, config.clone()).map_err(|e| Error::Recovery {
                offset: 0,
                reason: format!(
                    "a {FULL_SYNC_MARKER} marker is present and the ring cannot be read ({e}): refusing to wipe it"
                ),
            })?;
            check_wipe_allowed(&ring, &histories)?;
        }
        tracing::warn!(dir = %dir.display(), "a full sync was interrupted: starting empty");
        for (_, snap) in crate::snapshot::list_snapshots(dir) {
            remove(&snap)?;
        }
        if path.exists() {
            remove(&path)?;
        }
        remove_full_sync_marker(dir)?;
    }
    let ring = if path.exists() {
        let ring = RingLog::open(&path, config.clone())?;
        if ring.capacity() != config.capacity {
            tracing::warn!(
                file = ring.capacity(),
                configured = config.capacity,
                "ring log capacity differs from the configuration; the file's is used"
            );
        }
        ring
    } else {
        RingLog::create(&path, config.clone())?
    };
    Ok((Arc::new(ring), lock))
}

/// The rule of the module docs: a ring under a `FULLSYNC` marker may be
/// wiped only while it follows a history the marker names (or, for a
/// marker naming none, shows no history switch after its restart with
/// records past it).
fn check_wipe_allowed(ring: &RingLog, histories: &[String]) -> Result<()> {
    let h = ring.header();
    let ours = if histories.is_empty() {
        h.prev_replid.is_empty() || h.switch_offset < h.oldest || ring.published() <= h.switch_offset
    } else {
        histories.contains(&h.replid)
    };
    if ours {
        return Ok(());
    }
    Err(Error::Recovery {
        offset: h.switch_offset,
        reason: format!(
            "a {FULL_SYNC_MARKER} marker says a full sync never completed, but the ring follows history {} \
             (switched from {} at this offset, log up to {}): this node was promoted since and may have \
             acknowledged writes, so it is not wiped; move the directory aside (or remove {FULL_SYNC_MARKER} \
             to open what it holds)",
            h.replid,
            h.prev_replid,
            ring.published()
        ),
    })
}

/// Restores a data directory's state into `inner` (empty): loads the
/// newest snapshot that loads cleanly (an older one if the newest is
/// damaged, saying so), then replays the ring from that snapshot's offset.
pub(crate) fn restore(inner: &Inner, ring: &RingLog, dir: &Path) -> Result<()> {
    let mut from = ring.oldest();
    let mut loaded_any = false;
    for (offset, path) in crate::snapshot::list_snapshots(dir).into_iter().rev() {
        let loaded = File::open(&path)
            .map_err(|e| Error::Io {
                context: format!("opening {}", path.display()),
                source: e,
            })
            .and_then(|f| load_snapshot(inner, std::io::BufReader::with_capacity(1 << 20, f)));
        match loaded {
            Ok(header) if header.offset == offset => {
                tracing::info!(path = %path.display(), offset, "loaded snapshot");
                from = offset;
                loaded_any = true;
                inner.snapshot.set_newest_durable(offset);
                break;
            }
            Ok(header) => {
                tracing::error!(path = %path.display(), header = header.offset, "snapshot file name and header disagree; skipped");
                inner.clear_unlogged();
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "snapshot damaged; trying an older one");
                inner.clear_unlogged();
            }
        }
    }
    if !loaded_any && ring.oldest() > 0 {
        // The ring dropped history a snapshot was meant to hold.
        return Err(Error::Recovery {
            offset: ring.oldest(),
            reason: "the log starts here but no snapshot covering the history before it loads".into(),
        });
    }
    if from < ring.oldest() || from > ring.published() {
        return Err(Error::Recovery {
            offset: from,
            reason: format!(
                "the log holds offsets {}..{}: history between the usable snapshot and the log is missing",
                ring.oldest(),
                ring.published()
            ),
        });
    }
    replay(inner, ring, from)
}

/// Replays the ring from `from` into `inner` (which must not log what it
/// applies).
pub(crate) fn replay(inner: &Inner, ring: &RingLog, from: u64) -> Result<()> {
    let started = Instant::now();
    let end = ring.published();
    let (records, bytes) = replay_range(inner, ring, from, end)?;
    *inner.recovered.lock() = crate::stats::RecoveryStats { records, bytes };
    tracing::info!(
        records,
        bytes,
        torn_bytes = ring.torn_bytes(),
        offset = end,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "replayed the ring log"
    );
    Ok(())
}

/// Applies the ring's records in `[from, end)` to `inner` (without
/// logging them); returns the records and payload bytes applied.
pub(crate) fn replay_range(inner: &Inner, ring: &RingLog, from: u64, end: u64) -> Result<(u64, u64)> {
    let applier = ParallelApplier::new(inner, false);
    let mut pos = from;
    let (mut records, mut bytes) = (0u64, 0u64);
    while pos < end {
        let batch = ring.read(pos, 4 << 20).map_err(|e| match e {
            LogError::Lagged { .. } => Error::Recovery {
                offset: pos,
                reason: "history needed for recovery was overwritten".into(),
            },
            other => Error::Log(other),
        })?;
        pos = batch.next;
        let replayed = LogRecord::of_batch(batch);
        records += replayed.len() as u64;
        bytes += replayed.iter().map(|r| r.payload.len() as u64).sum::<u64>();
        applier.replay(replayed)?;
    }
    Ok((records, bytes))
}
