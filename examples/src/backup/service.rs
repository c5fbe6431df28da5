//! [`Backup`]: the running backup process: the backup follower (an
//! observer, in `BACKUP/replica`) and the writer thread that turns its
//! ring into chains.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringkv::Engine;
use ringkv_replication::tls::TlsMaterial;
use ringkv_replication::{blocking, FollowerConfig, ReplicaInfo};

use super::error::BackupError;
use super::layout::REPLICA_DIR;
use super::writer::{BackupWriter, WriterConfig, WriterStats};

/// What a backup process needs.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The backup directory.
    pub dir: PathBuf,
    /// How to follow the primary (`observer` is set whatever it says).
    pub follower: FollowerConfig,
    /// The backup follower's engine (its ring should hold several
    /// segments' worth of log: the writer reads behind it).
    pub engine: ringkv::Config,
    /// Segments, snapshots, retention.
    pub writer: WriterConfig,
}

/// A running backup.
pub struct Backup {
    follower: Option<blocking::Follower>,
    engine: Engine,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), BackupError>>>,
    stats: Arc<WriterStats>,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup").field("stats", &self.stats).finish()
    }
}

impl Backup {
    /// Opens (or creates) the backup directory and its replica, connects to
    /// the primary as an observer, and starts writing.
    pub fn start(options: BackupOptions, tls: TlsMaterial) -> Result<Backup, BackupError> {
        let replica_dir = options.dir.join(REPLICA_DIR);
        let fresh = !replica_dir.join("ring.log").exists();
        let mut engine_config = options.engine.clone();
        // The replica saves only when its ring fills: its snapshots are not
        // the backup's, and each one lets its ring drop history.
        engine_config.snapshot.save.clear();
        let engine = Engine::builder()
            .config(engine_config)
            .data_dir(&replica_dir)
            .build()
            .map_err(BackupError::engine(format!("opening {}", replica_dir.display())))?;
        let log = engine
            .log()
            .ok_or_else(|| BackupError::Usage("the backup follower has no ring".into()))?;
        let unsynced = fresh.then(|| log.replid());
        let writer = BackupWriter::open(&options.dir, engine.clone(), options.writer.clone(), unsynced)?;
        let stats = writer.stats();
        let mut follower_config = options.follower.clone();
        follower_config.observer = true;
        let follower = blocking::Follower::start(engine.clone(), follower_config, tls)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ringkv-backup-writer".into())
                .spawn(move || run(writer, &stop))
                .map_err(BackupError::io("starting the writer thread"))?
        };
        Ok(Backup {
            follower: Some(follower),
            engine,
            stop,
            thread: Some(thread),
            stats,
        })
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// The backup follower's replication state (`None` once stopped).
    pub fn replication(&self) -> Option<ReplicaInfo> {
        self.follower.as_ref().map(|f| f.info())
    }

    /// The backup follower's engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether the writer thread has stopped (it stops only when told to).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops: the writer seals its segment, then the follower disconnects.
    pub fn stop(mut self) -> Result<(), BackupError> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), BackupError> {
        self.stop.store(true, Ordering::Release);
        let result = match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| BackupError::Usage("the backup writer thread panicked".into()))
                .and_then(|r| r),
            None => Ok(()),
        };
        if let Some(f) = self.follower.take() {
            f.stop();
        }
        result
    }
}

impl Drop for Backup {
    fn drop(&mut self) {
        if let Err(e) = self.halt() {
            tracing::error!(error = %e, "stopping the backup");
        }
    }
}

fn run(mut writer: BackupWriter, stop: &AtomicBool) -> Result<(), BackupError> {
    while !stop.load(Ordering::Acquire) {
        if let Err(e) = writer.step() {
            // A file-system failure: the unsealed bytes are read again from
            // the replica's ring once it clears.
            tracing::error!(error = %e, "backup writer: retrying in a second");
            writer.abandon_segment();
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    writer.finish()
}
