//! Taking snapshots: the cut, the walk, the output stream, snapshot files,
//! and loading a snapshot back.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::format::{ChunkWriter, Item, SnapshotError, SnapshotHeader, SnapshotReader};
use super::generation::{walk_step, ShardSnap, FLUSH_BYTES};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::mutation::Mutation;

/// Snapshot settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Bytes of serialized data that may wait for the output (disk or a
    /// follower's connection) before writers wait: the bound on a
    /// snapshot's extra memory, with one 64 KiB buffer per shard.
    pub buffer_bytes: usize,
    /// Snapshot files kept in the data directory.
    pub keep: usize,
    /// Start a snapshot when history not covered by one exceeds this share
    /// of the ring (so the ring never has to overwrite what recovery needs).
    pub auto_share: f64,
    /// How long a write waits for a snapshot to free ring space before it
    /// fails with `LogFull`.
    pub log_full_wait_ms: u64,
    /// Periodic snapshots, like Redis' `save <seconds> <changes>`: a
    /// background save starts when, for some rule, at least `seconds` have
    /// passed since the last snapshot and at least `changes` mutations were
    /// applied since. Checked by the background thread (`active_expire`).
    pub save: Vec<SaveRule>,
}

/// One `save <seconds> <changes>` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveRule {
    /// Seconds since the last snapshot.
    pub seconds: u64,
    /// Mutations since the last snapshot.
    pub changes: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            buffer_bytes: 8 << 20,
            keep: 2,
            auto_share: 0.5,
            log_full_wait_ms: 2000,
            // Redis' defaults.
            save: vec![
                SaveRule {
                    seconds: 3600,
                    changes: 1,
                },
                SaveRule {
                    seconds: 300,
                    changes: 100,
                },
                SaveRule {
                    seconds: 60,
                    changes: 10_000,
                },
            ],
        }
    }
}

/// What a snapshot did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Log offset of the cut.
    pub offset: u64,
    /// Keys at the cut.
    pub keys: u64,
    /// Items written (strings, hash heads, hash field chunks).
    pub items: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Time all shards were locked to take the cut, microseconds.
    pub start_pause_us: u64,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// Time writers (and the walk) waited for a full output buffer, milliseconds.
    pub writer_wait_ms: u64,
    /// Largest amount of serialized data waiting for the output, bytes.
    pub peak_buffer_bytes: u64,
    /// Creation time, unix ms.
    pub created_ms: u64,
}

/// Snapshot figures in [`Stats`](crate::Stats).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotStats {
    /// A snapshot is running.
    pub in_progress: bool,
    /// Snapshots completed since start.
    pub completed: u64,
    /// The last completed snapshot.
    pub last: Option<SnapshotInfo>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

/// Resets the "in progress" flag however the snapshot ends.
struct Running<'a>(&'a crate::engine::Inner);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.snapshot_running.store(false, Ordering::Release);
    }
}

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".rkvs";

/// Snapshot files in `dir`, oldest first: (offset, path).
pub(crate) fn list_snapshots(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let offset = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse().ok()?;
            Some((offset, e.path()))
        })
        .collect();
    found.sort();
    found
}

fn io(context: &str, e: std::io::Error) -> Error {
    Error::Snapshot(SnapshotError::Io {
        context: context.into(),
        source: e,
    })
}

impl Engine {
    /// Takes a point-in-time snapshot and streams it to `out` while writers
    /// go on: no fork, the cut costs one brief lock of every shard, and extra
    /// memory is bounded by `SnapshotConfig::buffer_bytes` (writers wait when
    /// `out` is slower than they are). Returns `out` and what was written.
    ///
    /// ```
    /// use ringkv::{Config, Engine};
    /// let engine = Engine::new(Config::default())?;
    /// engine.hset("h", [("f", "v")])?;
    /// let (bytes, info) = engine.snapshot_to(Vec::new())?;
    /// let copy = Engine::new(Config::default())?;
    /// copy.load_snapshot(&bytes[..])?;
    /// assert_eq!(copy.digest(), engine.digest());
    /// assert_eq!(info.keys, 1);
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn snapshot_to<W: Write + Send>(&self, out: W) -> Result<(W, SnapshotInfo)> {
        let inner = &*self.inner;
        if inner.replica.syncing.load(Ordering::Acquire) {
            return Err(Error::Snapshot(SnapshotError::Stale));
        }
        if inner.snapshot_running.swap(true, Ordering::AcqRel) {
            return Err(Error::Snapshot(SnapshotError::InProgress));
        }
        let _running = Running(inner);
        inner.snapshot_stats.lock().in_progress = true;
        let result = self.snapshot_inner(out);
        let mut stats = inner.snapshot_stats.lock();
        stats.in_progress = false;
        match &result {
            Ok((_, info)) => {
                stats.completed += 1;
                stats.last = Some(info.clone());
                stats.last_error = None;
            }
            Err(e) => stats.last_error = Some(e.to_string()),
        }
        result
    }

    fn snapshot_inner<W: Write + Send>(&self, out: W) -> Result<(W, SnapshotInfo)> {
        let inner = &*self.inner;
        let started = Instant::now();
        let capacity = (inner.config.snapshot.buffer_bytes / FLUSH_BYTES).max(2);
        let (tx, rx) = crossbeam::channel::bounded(capacity);
        // The cut: every shard locked at once, O(shards).
        let mut guards: Vec<_> = inner.shards.iter().map(|s| s.write()).collect();
        let version = inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        // A follower's keyspace reflects its applied offset (which moves
        // under the shard locks held here), a primary's its whole log.
        let offset = if inner.replica.is_follower() {
            inner.replica.applied()
        } else {
            inner.log.as_ref().map_or(0, |l| l.published())
        };
        let mut keys = 0;
        let mut changes = 0;
        for g in guards.iter_mut() {
            g.generation = version;
            keys += g.table.len() as u64;
            changes += g.changes;
            g.snap = Some(ShardSnap::new(version, tx.clone(), g.table.len()));
        }
        drop(guards);
        let start_pause = started.elapsed();
        let cut_changes = changes;
        let header = SnapshotHeader {
            offset,
            created_ms: inner.clock.now_ms(),
            keys,
            replid: inner.log.as_ref().map(|l| l.replid()).unwrap_or_default(),
        };
        let (written, wait_ns, peak) = std::thread::scope(|s| {
            let walker = std::thread::Builder::new()
                .name("ringkv-snapshot".into())
                .spawn_scoped(s, move || {
                    let mut wait_ns = 0;
                    for shard in inner.shards.iter() {
                        loop {
                            let mut g = shard.write();
                            if walk_step(&mut g, &inner.hashing) {
                                if let Some(snap) = g.snap.take() {
                                    wait_ns += snap.wait_ns;
                                }
                                break;
                            }
                            // Hand the lock to a waiting writer rather than
                            // re-taking it at once (writers otherwise wait for
                            // parking_lot's eventual fairness, up to ~1 ms).
                            parking_lot::RwLockWriteGuard::unlock_fair(g);
                        }
                    }
                    drop(tx);
                    wait_ns
                });
            let mut writer = ChunkWriter::new(out, &header);
            let mut peak = 0usize;
            loop {
                match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                    Ok((buf, items)) => {
                        peak = peak.max((rx.len() + 1) * FLUSH_BYTES);
                        if let Ok(w) = &mut writer {
                            if let Err(e) = w.chunk(&buf, items) {
                                // Keep draining so writers never block on a dead output.
                                writer = Err(e);
                            }
                        }
                    }
                    Err(crossbeam::channel::RecvTimeoutError::Timeout) => {
                        // A walk that died must not leave writers serializing
                        // into a snapshot nobody finishes.
                        if walker.as_ref().map_or(true, |w| w.is_finished()) {
                            for shard in inner.shards.iter() {
                                shard.write().snap = None;
                            }
                        }
                    }
                    Err(crossbeam::channel::RecvTimeoutError::Disconnected) => break,
                }
            }
            let wait_ns = match walker {
                Ok(handle) => handle.join().map_err(|_| ()),
                Err(_) => Err(()),
            };
            let writer = match wait_ns {
                Ok(_) => writer,
                Err(()) => Err(std::io::Error::other("the snapshot walk failed")),
            };
            (writer, wait_ns.unwrap_or(0), peak)
        });
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
            writer_wait_ms: wait_ns / 1_000_000,
            peak_buffer_bytes: peak as u64,
            created_ms: header.created_ms,
        };
        tracing::info!(?info, "snapshot written");
        *inner.last_save.lock() = (inner.clock.now_ms(), cut_changes);
        Ok((out, info))
    }

    /// SAVE: writes a snapshot file into the data directory (temporary name,
    /// fsync, atomic rename, directory fsync, keeping the last
    /// `SnapshotConfig::keep`), then lets the ring drop the history it covers.
    pub fn save(&self) -> Result<SnapshotInfo> {
        let dir = self
            .inner
            .data_dir
            .as_ref()
            .ok_or_else(|| Error::Config("SAVE needs a data directory".into()))?;
        // One save at a time, from the temporary file to the rename and the
        // ring trimming (two saves must not share the temporary file).
        let Some(_saving) = self.inner.save_lock.try_lock() else {
            return Err(Error::Snapshot(SnapshotError::InProgress));
        };
        let tmp = dir.join("snapshot.tmp");
        let file = File::create(&tmp).map_err(|e| io("creating the snapshot file", e))?;
        let (out, info) = self.snapshot_to(BufWriter::with_capacity(1 << 20, file))?;
        let file = out
            .into_inner()
            .map_err(|e| io("flushing the snapshot file", e.into_error()))?;
        file.sync_all().map_err(|e| io("fsync of the snapshot file", e))?;
        let path = dir.join(format!("{PREFIX}{:020}{SUFFIX}", info.offset));
        std::fs::rename(&tmp, &path).map_err(|e| io("renaming the snapshot file", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync of the data directory", e))?;
        let all = list_snapshots(dir);
        let keep = self.inner.config.snapshot.keep.max(1);
        for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
            if let Err(e) = std::fs::remove_file(old) {
                tracing::warn!(path = %old.display(), error = %e, "could not remove an old snapshot");
            }
        }
        // The ring keeps history from the previous snapshot on, so that a
        // damaged newest snapshot can fall back to the previous one.
        // A follower's first snapshot after a full sync completes it on disk.
        crate::recovery::remove_full_sync_marker(dir)?;
        let previous = self.inner.newest_snapshot.swap(info.offset, Ordering::AcqRel);
        if let Some(log) = &self.inner.log {
            let oldest_kept = all.iter().rev().nth(1).map_or(previous, |(o, _)| *o).min(info.offset);
            log.set_oldest(oldest_kept)?;
        }
        Ok(info)
    }

    /// BGSAVE: starts [`Engine::save`] on a background thread; returns false
    /// if a snapshot is already running.
    pub fn bgsave(&self) -> Result<bool> {
        if self.inner.data_dir.is_none() {
            return Err(Error::Config("BGSAVE needs a data directory".into()));
        }
        if self.inner.snapshot_running.load(Ordering::Acquire) {
            return Ok(false);
        }
        let mut slot = self.inner.bgsave_thread.lock();
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(false);
        }
        let engine = self.clone();
        let handle = std::thread::Builder::new()
            .name("ringkv-bgsave".into())
            .spawn(move || {
                if let Err(e) = engine.save() {
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
    pub(crate) fn check_save_rules(&self) {
        let inner = &self.inner;
        if inner.data_dir.is_none() || inner.config.snapshot.save.is_empty() {
            return;
        }
        let (last_ms, last_changes) = *inner.last_save.lock();
        let changes = inner
            .shards
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
            let _ = self.bgsave();
        }
    }

    /// Waits for a background save to finish, then drops this handle. A
    /// background save holds the engine (and its data directory's lock)
    /// until it is done: call this before reopening the directory.
    pub fn close(self) {
        let handle = self.inner.bgsave_thread.lock().take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Loads a snapshot into this engine (meant to be empty), without
    /// logging what it loads; returns the snapshot's header. A damaged
    /// stream fails with [`SnapshotError::Corrupt`] naming the byte position.
    pub fn load_snapshot(&self, input: impl Read) -> Result<SnapshotHeader> {
        let mut reader = SnapshotReader::new(input)?;
        // An empty engine sizes its tables for the keys at the cut up front
        // (no incremental resizes while loading). The count comes from the
        // input: it is capped, and a wrong one only costs memory or resizes.
        let keys = reader.header().keys.min(1 << 26) as usize;
        let per_shard = keys / self.inner.shards.len() + keys / self.inner.shards.len() / 8;
        for shard in self.inner.shards.iter() {
            shard.write().table.reserve_empty(per_shard);
        }
        while let Some(items) = reader.next_chunk()? {
            for item in items {
                let r = match item {
                    Item::String { key, value, expire_at } => self.apply(&Mutation::Set { key, value, expire_at }),
                    Item::HashFields { key, fields } => self.apply(&Mutation::HSet { key, fields }),
                    Item::HashHead { key, expire_at } => self.inner.load_hash_head(&key, expire_at),
                };
                r.map_err(|e| Error::Snapshot(SnapshotError::Load(e.to_string())))?;
            }
        }
        Ok(reader.header().clone())
    }
}
