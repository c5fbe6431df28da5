//! [`BackupWriter`]: turns the backup follower's ring into chains of
//! snapshots and sealed segments.
//!
//! The backup follower is a real follower (its own engine and data
//! directory under `BACKUP/replica`), so its ring holds the primary's
//! stream byte for byte at the same offsets, and its keyspace is the
//! primary's state at its applied offset. The writer tails that ring by
//! offset into the current segment (sealed at a size or time bound, with
//! time marks), and takes the periodic snapshots from that keyspace
//! (fork-free, no load on the primary).
//!
//! A chain is one continuous stretch of one history. A new chain starts
//! (with a snapshot of the replica) when the next offset is no longer in
//! the replica's ring (it fell behind by a whole ring, or a full sync
//! started the ring over past it), or when the ring's history is not a
//! continuation of the chain's (a full sync to another history; a
//! promotion upstream whose switch offset is before what the chain holds).
//! A promotion upstream at or after the chain's end is a continuation: the
//! segment is sealed and the next one carries the new history. The old
//! chain is kept as it is.
//!
//! After a restart the writer resumes the newest chain at the end of its
//! sealed segments: the `.open` segment a stop or a crash left is removed,
//! and its bytes are read again from the replica's ring (which reopened
//! from disk), or a new chain starts if the ring no longer has them.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringkv::log::LogView;
use ringkv::Engine;

use super::catalog::Catalog;
use super::error::BackupError;
use super::layout;
use super::retention::{self, RetentionConfig};
use super::segment::{History, SegmentWriter};

/// When segments are sealed and snapshots taken.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Seal a segment at this many bytes.
    pub segment_bytes: u64,
    /// Seal a segment that has bytes after this long (the backup's
    /// recovery point: what is not sealed is not restorable yet).
    pub segment_interval: Duration,
    /// Seal a segment with no bytes after this long (it still carries
    /// time marks: the moments it covers become restorable).
    pub idle_segment_interval: Duration,
    /// A time mark at most this often.
    pub mark_interval: Duration,
    /// A snapshot after this long...
    pub snapshot_interval: Duration,
    /// ... or after this many bytes of log since the last one (bounds a
    /// restore's replay).
    pub snapshot_log_bytes: u64,
    /// Ring bytes read at a time.
    pub read_bytes: usize,
    /// What to keep.
    pub retention: RetentionConfig,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            segment_bytes: 64 << 20,
            segment_interval: Duration::from_secs(10),
            idle_segment_interval: Duration::from_secs(60),
            mark_interval: Duration::from_secs(1),
            snapshot_interval: Duration::from_secs(3600),
            snapshot_log_bytes: 1 << 30,
            read_bytes: 4 << 20,
            retention: RetentionConfig::default(),
        }
    }
}

/// The writer's counters.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Chains started.
    pub chains: AtomicU64,
    /// Snapshots written.
    pub snapshots: AtomicU64,
    /// Segments sealed.
    pub segments: AtomicU64,
    /// Log bytes sealed into segments.
    pub log_bytes: AtomicU64,
    /// The end of the sealed log of the current chain.
    pub sealed_offset: AtomicU64,
    /// The current chain's id.
    pub chain: AtomicU64,
}

struct Cursor {
    id: u64,
    dir: PathBuf,
    replid: String,
    next: u64,
    next_seq: u64,
    segment: Option<(SegmentWriter, Instant)>,
    last_mark: Instant,
    last_snapshot: Instant,
    /// The newest snapshot's offset (none is taken twice at one offset).
    last_snapshot_offset: Option<u64>,
    log_since_snapshot: u64,
}

/// The writer (see the module docs). Drive it with [`BackupWriter::step`].
pub struct BackupWriter {
    dir: PathBuf,
    config: WriterConfig,
    engine: Engine,
    log: LogView,
    /// The replica's own replid while it has never synced (a new data
    /// directory): no chain starts from a keyspace that is nobody's.
    unsynced_replid: Option<String>,
    next_chain: u64,
    cursor: Option<Cursor>,
    stats: Arc<WriterStats>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn history_of(h: &ringkv::log::RingHeader) -> History {
    History {
        replid: h.replid.clone(),
        prev_replid: h.prev_replid.clone(),
        switch_offset: h.switch_offset,
    }
}

impl BackupWriter {
    /// A writer over `engine` (the backup follower's engine) into `dir`;
    /// resumes the newest chain. `unsynced_replid`: the replica's replid
    /// when its data directory was new (see the field).
    pub fn open(
        dir: &Path,
        engine: Engine,
        config: WriterConfig,
        unsynced_replid: Option<String>,
    ) -> Result<BackupWriter, BackupError> {
        let log = engine
            .log()
            .ok_or_else(|| BackupError::Usage("the backup follower's engine needs a ring log".into()))?;
        std::fs::create_dir_all(dir).map_err(BackupError::io(format!("creating {}", dir.display())))?;
        for (name, path) in layout::list(dir)? {
            if name.strip_suffix(".tmp").and_then(layout::parse_chain_dir).is_some() {
                tracing::info!(path = %path.display(), "removing a chain that was never completed");
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        let catalog = Catalog::load(dir)?;
        let mut writer = BackupWriter {
            dir: dir.to_path_buf(),
            config,
            engine,
            log,
            unsynced_replid,
            next_chain: catalog.chains.last().map_or(1, |c| c.id + 1),
            cursor: None,
            stats: Arc::new(WriterStats::default()),
        };
        writer.resume(&catalog)?;
        Ok(writer)
    }

    /// The counters (shared).
    pub fn stats(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    fn resume(&mut self, catalog: &Catalog) -> Result<(), BackupError> {
        let Some(chain) = catalog.chains.last() else {
            return Ok(());
        };
        for open in &chain.open {
            let bytes = std::fs::metadata(open).map(|m| m.len()).unwrap_or(0);
            tracing::info!(path = %open.display(), bytes, "removing an unsealed segment (its bytes are read again)");
            std::fs::remove_file(open).map_err(BackupError::io(format!("removing {}", open.display())))?;
        }
        let good = chain.snapshots.iter().filter(|s| s.damage.is_none());
        let Some((next, snap)) = good.map(|s| (chain.covered_from(s.offset), s)).max_by_key(|(n, _)| *n) else {
            return Ok(());
        };
        let replid = chain
            .segments
            .iter()
            .rev()
            .find(|s| s.end == next && s.summary.is_some())
            .and_then(|s| s.summary.as_ref().map(|s| s.history.replid.clone()))
            .unwrap_or_else(|| snap.replid.clone());
        let next_seq = chain.segments.iter().map(|s| s.seq).max().unwrap_or(0) + 1;
        let next_seq = chain
            .open
            .iter()
            .filter_map(|p| p.file_name()?.to_str().and_then(layout::parse_open_segment_name))
            .map(|(seq, _)| seq + 1)
            .fold(next_seq, u64::max);
        tracing::info!(chain = chain.id, next, %replid, "resuming the backup chain");
        self.stats.chain.store(chain.id, Ordering::Relaxed);
        self.stats.sealed_offset.store(next, Ordering::Relaxed);
        self.cursor = Some(Cursor {
            id: chain.id,
            dir: chain.dir.clone(),
            replid,
            next,
            next_seq,
            segment: None,
            last_mark: Instant::now(),
            last_snapshot: Instant::now(),
            last_snapshot_offset: chain.snapshots.last().map(|s| s.offset),
            log_since_snapshot: 0,
        });
        Ok(())
    }

    /// Whether the replica holds a primary's state (not its own empty
    /// start, not a full sync's stale data).
    fn replica_ready(&self) -> bool {
        let replid = self.log.replid();
        !self.engine.is_stale() && self.unsynced_replid.as_deref().is_none_or(|own| own != replid)
    }

    /// Takes a snapshot of the replica into `dir`; `None` when the replica
    /// changed history meanwhile (a full sync): the file is discarded.
    fn take_snapshot(&self, dir: &Path) -> Result<Option<(u64, History)>, BackupError> {
        let before = history_of(&self.log.header());
        if !self.replica_ready() {
            return Ok(None);
        }
        let tmp = dir.join("snapshot.tmp");
        let file = File::create(&tmp).map_err(BackupError::io(format!("creating {}", tmp.display())))?;
        let (out, info) = self
            .engine
            .snapshot_to(BufWriter::with_capacity(1 << 20, file))
            .map_err(BackupError::engine("taking a snapshot of the backup follower"))?;
        let file = out
            .into_inner()
            .map_err(|e| BackupError::io(format!("writing {}", tmp.display()))(e.into_error()))?;
        file.sync_all()
            .map_err(BackupError::io(format!("syncing {}", tmp.display())))?;
        let after = history_of(&self.log.header());
        if before != after || !self.replica_ready() || info.offset < self.log.oldest() {
            let _ = std::fs::remove_file(&tmp);
            return Ok(None);
        }
        layout::publish(&tmp, &dir.join(layout::snapshot_name(info.offset)))?;
        self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        tracing::info!(offset = info.offset, keys = info.keys, bytes = info.bytes, dir = %dir.display(), "backup snapshot");
        Ok(Some((info.offset, after)))
    }

    fn start_chain(&mut self) -> Result<(), BackupError> {
        if !self.replica_ready() {
            std::thread::sleep(Duration::from_millis(50));
            return Ok(());
        }
        let id = self.next_chain;
        // Built under a temporary name and renamed whole: a chain directory
        // always has its base snapshot.
        let dir = self.dir.join(layout::chain_dir_name(id));
        let tmp = self.dir.join(format!("{}.tmp", layout::chain_dir_name(id)));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(BackupError::io(format!("creating {}", tmp.display())))?;
        let Some((offset, history)) = self.take_snapshot(&tmp)? else {
            let _ = std::fs::remove_dir_all(&tmp);
            std::thread::sleep(Duration::from_millis(50));
            return Ok(());
        };
        layout::publish(&tmp, &dir)?;
        self.next_chain += 1;
        self.stats.chains.fetch_add(1, Ordering::Relaxed);
        self.stats.chain.store(id, Ordering::Relaxed);
        self.stats.sealed_offset.store(offset, Ordering::Relaxed);
        tracing::info!(chain = id, offset, replid = %history.replid, "new backup chain");
        self.cursor = Some(Cursor {
            id,
            dir,
            replid: history.replid,
            next: offset,
            next_seq: 1,
            segment: None,
            last_mark: Instant::now(),
            last_snapshot: Instant::now(),
            last_snapshot_offset: Some(offset),
            log_since_snapshot: 0,
        });
        Ok(())
    }

    /// Seals the current segment, if any, then applies retention.
    pub fn seal(&mut self) -> Result<(), BackupError> {
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(());
        };
        let Some((segment, _)) = cursor.segment.take() else {
            return Ok(());
        };
        let (start, end) = (segment.start(), segment.end());
        let path = segment.seal(now_ms())?;
        self.stats.segments.fetch_add(1, Ordering::Relaxed);
        self.stats.log_bytes.fetch_add(end - start, Ordering::Relaxed);
        self.stats.sealed_offset.store(end, Ordering::Relaxed);
        tracing::debug!(path = %path.display(), start, end, "segment sealed");
        self.retain()
    }

    fn retain(&self) -> Result<(), BackupError> {
        let r = &self.config.retention;
        if r.max_age.is_none() && r.max_bytes.is_none() {
            return Ok(());
        }
        retention::apply(&Catalog::load(&self.dir)?, r, now_ms()).map(|_| ())
    }

    fn end_chain(&mut self, reason: &str) -> Result<(), BackupError> {
        if let Some(c) = &self.cursor {
            tracing::warn!(
                chain = c.id,
                next = c.next,
                reason,
                "the backup chain ends here; a new one starts"
            );
        }
        self.seal()?;
        self.cursor = None;
        Ok(())
    }

    /// Drops the unsealed segment after a failure (its bytes are read
    /// again from the replica's ring).
    pub fn abandon_segment(&mut self) {
        if let Some(cursor) = self.cursor.as_mut() {
            if let Some((segment, _)) = cursor.segment.take() {
                cursor.next = segment.start();
                let path = cursor
                    .dir
                    .join(layout::open_segment_name(cursor.next_seq - 1, segment.start()));
                drop(segment);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// One round: start a chain, or read what the ring has past the
    /// chain's end (waiting up to 100 ms for it), then mark, seal and
    /// snapshot as due.
    pub fn step(&mut self) -> Result<(), BackupError> {
        if self.cursor.is_none() {
            return self.start_chain();
        }
        let header = self.log.header();
        let (compatible, oldest) = {
            let c = self.cursor.as_ref().expect("checked");
            let continues =
                header.replid == c.replid || (header.prev_replid == c.replid && header.switch_offset >= c.next);
            (continues, self.log.oldest() <= c.next)
        };
        if !compatible {
            return self.end_chain("the replica follows another history");
        }
        if !oldest {
            return self.end_chain("the replica's ring no longer holds the chain's next offset");
        }
        if header.replid != self.cursor.as_ref().expect("checked").replid {
            // A promotion upstream, after what the chain holds: continue.
            self.seal()?;
            if let Some(c) = self.cursor.as_mut() {
                c.replid = header.replid.clone();
            }
        }
        let next = self.cursor.as_ref().expect("checked").next;
        if self.log.published() > next {
            match self.log.read_stream(next, self.config.read_bytes) {
                Ok(batch) if batch.start == next && !batch.bytes.is_empty() => {
                    // The history may have changed while reading: the bytes
                    // count only if it did not.
                    let again = self.log.header();
                    if history_of(&again) != history_of(&header) || self.log.oldest() > next {
                        return Ok(());
                    }
                    let c = self.cursor.as_mut().expect("checked");
                    if c.segment.is_none() {
                        let w = SegmentWriter::create(&c.dir, c.next_seq, next, history_of(&header), now_ms())?;
                        c.next_seq += 1;
                        c.segment = Some((w, Instant::now()));
                    }
                    let (seg, _) = c.segment.as_mut().expect("opened");
                    seg.append(batch.start, &batch.bytes)?;
                    c.next = batch.end();
                    c.log_since_snapshot += batch.bytes.len() as u64;
                }
                Ok(_) => {}
                Err(e) => return self.end_chain(&format!("reading the replica's ring at {next}: {e}")),
            }
        } else {
            self.log.wait_for(next, Duration::from_millis(100));
        }
        self.mark_seal_snapshot(&header)
    }

    fn mark_seal_snapshot(&mut self, header: &ringkv::log::RingHeader) -> Result<(), BackupError> {
        let now = Instant::now();
        let c = self.cursor.as_mut().expect("a chain");
        if c.segment.is_none() {
            // Time marks need a segment even while nothing is written.
            let w = SegmentWriter::create(&c.dir, c.next_seq, c.next, history_of(header), now_ms())?;
            c.next_seq += 1;
            c.segment = Some((w, now));
        }
        let (seg, opened) = c.segment.as_mut().expect("opened");
        if now.duration_since(c.last_mark) >= self.config.mark_interval {
            seg.mark(now_ms());
            c.last_mark = now;
        }
        let age = now.duration_since(*opened);
        let due = seg.len() >= self.config.segment_bytes
            || (!seg.is_empty() && age >= self.config.segment_interval)
            || age >= self.config.idle_segment_interval;
        if due {
            self.seal()?;
        }
        let c = self.cursor.as_ref().expect("a chain");
        let snapshot_due = now.duration_since(c.last_snapshot) >= self.config.snapshot_interval
            || c.log_since_snapshot >= self.config.snapshot_log_bytes;
        if snapshot_due && c.last_snapshot_offset == Some(self.engine.applied_offset()) {
            let c = self.cursor.as_mut().expect("a chain");
            c.last_snapshot = now;
            c.log_since_snapshot = 0;
        } else if snapshot_due {
            let dir = c.dir.clone();
            if let Some((offset, _)) = self.take_snapshot(&dir)? {
                let c = self.cursor.as_mut().expect("a chain");
                c.last_snapshot = now;
                c.last_snapshot_offset = Some(offset);
                c.log_since_snapshot = 0;
                tracing::debug!(chain = c.id, offset, "periodic snapshot");
                self.retain()?;
            }
        }
        Ok(())
    }

    /// Seals what is written (a clean stop).
    pub fn finish(mut self) -> Result<(), BackupError> {
        self.seal()
    }
}
