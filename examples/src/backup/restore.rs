//! `ringkv-restore`: builds a data directory holding exactly the state at
//! a point of a backup.
//!
//! The point resolves to a chain, its newest undamaged snapshot at or
//! before the point, and the segments after it ([`Catalog::plan`]). The
//! snapshot is loaded into a staging keyspace (its chunks' checksums
//! checked by the loader), every segment is read whole and checked
//! ([`read_segment`]: trailer, body checksum, each record at its own
//! offset with its own checksum), and each record that ends at or before
//! the point is replayed. Only then is the directory written, the way a
//! follower completes a full sync: its ring starts over at the point with
//! the backed-up history, the staging keyspace is swapped in and saved as
//! a snapshot at the point, and the engine is promoted (a new replication
//! id whose previous id is the backed-up history, switched at the point):
//! a node started on the directory takes writes as a new history branched
//! at the point, never as a second copy of the original one.
//!
//! Any failure leaves no directory behind (what was created is removed):
//! never a directory with a wrong state.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use ringkv::{Bytes, Engine, Role};

use super::catalog::Catalog;
use super::error::BackupError;
use super::segment::{read_segment, History};
use super::target::Target;

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The point.
    pub target: Target,
    /// Only this chain (default: the newest chain that holds the point).
    pub chain: Option<u64>,
    /// The data directory to create (must not exist, or be empty).
    pub to: PathBuf,
    /// The engine configuration of the restored directory.
    pub config: ringkv::Config,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The chain restored from.
    pub chain: u64,
    /// The offset whose state the directory holds (the last replayed
    /// record's end: the largest record boundary at or before the point).
    pub offset: u64,
    /// The snapshot's offset.
    pub snapshot_offset: u64,
    /// Records replayed after the snapshot.
    pub records: u64,
    /// Keys in the restored state.
    pub keys: u64,
    /// `Engine::digest` of the restored state.
    pub digest: u64,
    /// The restored directory's new replication id.
    pub replid: String,
    /// The backed-up history it branches from, at `offset`.
    pub prev_replid: String,
}

fn ensure_empty(to: &Path) -> Result<bool, BackupError> {
    match std::fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::Usage(format!(
                    "{} exists and is not empty: restore into a new directory",
                    to.display()
                )));
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(BackupError::io(format!("reading {}", to.display()))(e)),
    }
}

/// Restores `options.target` from the backup in `backup` into `options.to`.
pub fn restore(backup: &Path, options: &RestoreOptions) -> Result<Restored, BackupError> {
    let catalog = Catalog::load(backup)?;
    let plan = catalog.plan(options.target, options.chain)?;
    let existed = ensure_empty(&options.to)?;
    let result = build(&plan, options);
    if result.is_err() {
        // Nothing half-made stays: the directory was empty or absent.
        let _ = std::fs::remove_dir_all(&options.to);
        if existed {
            let _ = std::fs::create_dir_all(&options.to);
        }
    }
    result
}

fn build(plan: &super::catalog::Plan, options: &RestoreOptions) -> Result<Restored, BackupError> {
    let snap = &plan.snapshot;
    let engine = Engine::builder()
        .config(options.config.clone())
        .data_dir(&options.to)
        .build()
        .map_err(BackupError::engine(format!("creating {}", options.to.display())))?;
    let staging = engine
        .staging()
        .map_err(BackupError::engine("creating the staging keyspace"))?;
    let file = File::open(&snap.path).map_err(BackupError::io(format!("opening {}", snap.path.display())))?;
    let header = staging
        .load_snapshot(BufReader::with_capacity(1 << 20, file))
        .map_err(BackupError::engine(format!("loading {}", snap.path.display())))?;
    if header.offset != snap.offset {
        return Err(BackupError::corrupt(
            &snap.path,
            16,
            format!(
                "the snapshot is at offset {}, its name says {}",
                header.offset, snap.offset
            ),
        ));
    }
    let mut reached = snap.offset;
    let mut history = History {
        replid: header.replid.clone(),
        ..History::default()
    };
    let mut records = 0u64;
    for seg in &plan.segments {
        let data = read_segment(&seg.path)?;
        let s = &data.summary;
        if s.start > reached {
            return Err(BackupError::corrupt(
                &seg.path,
                0,
                format!("starts at {}, after the end {reached} of what precedes it", s.start),
            ));
        }
        if s.start < snap.offset && snap.offset < s.end && !data.records.contains(&snap.offset) {
            return Err(BackupError::corrupt(
                &seg.path,
                0,
                format!("no record starts at the snapshot's offset {}", snap.offset),
            ));
        }
        for &at in &data.records {
            let pos = (at - s.start) as usize;
            // `read_segment` checked every header and length.
            let len = u32::from_le_bytes([
                data.body[pos + 8],
                data.body[pos + 9],
                data.body[pos + 10],
                data.body[pos + 11],
            ]) as usize;
            let end = at + ringkv::log::record::record_len(len);
            if at < reached {
                continue;
            }
            if end > plan.offset {
                break;
            }
            let payload = Bytes::copy_from_slice(&data.body[pos + 16..pos + 16 + len]);
            let m = ringkv::log::record::decode_mutation(payload).map_err(|e| {
                BackupError::corrupt(
                    &seg.path,
                    (super::segment::HEADER_LEN + pos) as u64,
                    format!("the record at log offset {at} does not decode: {e}"),
                )
            })?;
            staging.replay(&m).map_err(BackupError::engine(format!(
                "replaying the record at log offset {at} of {}",
                seg.path.display()
            )))?;
            reached = end;
            records += 1;
            history = s.history.clone();
        }
        if s.end <= plan.offset {
            reached = reached.max(s.end);
            history = s.history.clone();
        }
    }
    engine
        .set_role(Role::Follower)
        .map_err(BackupError::engine("preparing the restored directory"))?;
    engine
        .replica_begin_full_sync(reached, &history.replid, &history.prev_replid, history.switch_offset)
        .map_err(BackupError::engine("starting the restored ring"))?;
    engine.swap_in(&staging, reached).map_err(BackupError::engine(format!(
        "saving the restored state in {}",
        options.to.display()
    )))?;
    let promotion = engine
        .promote()
        .map_err(BackupError::engine("giving the restored directory its own history"))?;
    engine
        .sync()
        .map_err(BackupError::engine("syncing the restored ring"))?;
    let restored = Restored {
        chain: plan.chain,
        offset: reached,
        snapshot_offset: snap.offset,
        records,
        keys: engine.dbsize(),
        digest: engine.digest(),
        replid: promotion.replid,
        prev_replid: promotion.prev_replid,
    };
    drop(staging);
    engine.close();
    tracing::info!(
        chain = restored.chain,
        offset = restored.offset,
        snapshot = restored.snapshot_offset,
        records = restored.records,
        keys = restored.keys,
        to = %options.to.display(),
        "restored"
    );
    Ok(restored)
}
