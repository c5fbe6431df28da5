//! Opening a data directory: the lock file, the ring log, and replaying the
//! log into a fresh keyspace.

use std::fs::{File, OpenOptions};
use std::path::Path;

use std::sync::Arc;
use std::time::Instant;

use super::data_dir::{remove, remove_full_sync_marker, FULL_SYNC_MARKER};
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
    if dir.join(FULL_SYNC_MARKER).exists() {
        // A follower crashed in the middle of a full sync: its ring had
        // restarted at the primary's snapshot offset, which no local
        // snapshot covers. Start empty; the follower full-syncs again.
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
        for (offset, payload) in batch.records {
            bytes += payload.len() as u64;
            inner.replay_record(offset, payload, None)?;
            records += 1;
        }
        pos = batch.next;
    }
    Ok((records, bytes))
}
