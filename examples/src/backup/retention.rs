//! Retention: what a backup keeps, by age and by size.
//!
//! - **By age** (`max_age`): every moment of the last `max_age` stays
//!   restorable. In each chain, the newest snapshot taken at or before
//!   `now - max_age` is the base of that window; older snapshots and the
//!   segments that end at or before the base go. A chain (other than the
//!   newest) whose last moment is older than the window goes whole.
//! - **By size** (`max_bytes`): while the backup is larger, the oldest
//!   stretch goes: the oldest snapshot of the oldest chain with the
//!   segments before the next snapshot, or that chain whole when it has
//!   one snapshot left. Size wins over age; the newest chain's newest
//!   snapshot and the log after it are never removed.
//!
//! Only prefixes are removed: a segment goes only when no snapshot kept
//! needs it, so every point still listed (`ringkv-restore --list`)
//! restores. A snapshot is removed before the segments it needed, so a
//! crash in between leaves unreferenced segments (removed next time),
//! never a snapshot with a hole after it.

use std::path::PathBuf;
use std::time::Duration;

use super::catalog::{Catalog, Chain};
use super::error::BackupError;
use super::layout;

/// How much a backup keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Keep every moment of this long ago and since (`None`: no age limit).
    pub max_age: Option<Duration>,
    /// Keep at most this many bytes (`None`: no size limit).
    pub max_bytes: Option<u64>,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Default)]
pub struct Removed {
    /// The files and chain directories removed.
    pub paths: Vec<PathBuf>,
    /// Their bytes.
    pub bytes: u64,
}

fn remove_file(path: &std::path::Path, bytes: u64, removed: &mut Removed) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(BackupError::io(format!("removing {}", path.display()))(e)),
    }
    removed.paths.push(path.to_path_buf());
    removed.bytes += bytes;
    Ok(())
}

/// Removes the snapshots below `base` and then the segments that end at
/// or before it.
fn drop_before(chain: &mut Chain, base: u64, removed: &mut Removed) -> Result<(), BackupError> {
    let (old, keep): (Vec<_>, Vec<_>) = chain.snapshots.drain(..).partition(|s| s.offset < base);
    chain.snapshots = keep;
    for s in &old {
        remove_file(&s.path, s.bytes, removed)?;
    }
    if !old.is_empty() {
        layout::sync_dir(&chain.dir)?;
    }
    let (old, keep): (Vec<_>, Vec<_>) = chain.segments.drain(..).partition(|s| s.end <= base);
    chain.segments = keep;
    for s in &old {
        remove_file(&s.path, s.bytes, removed)?;
    }
    if !old.is_empty() {
        layout::sync_dir(&chain.dir)?;
    }
    Ok(())
}

fn drop_chain(chain: &Chain, removed: &mut Removed) -> Result<(), BackupError> {
    // Snapshots first: a crash midway leaves no snapshot with a hole after it.
    for s in &chain.snapshots {
        remove_file(&s.path, s.bytes, removed)?;
    }
    std::fs::remove_dir_all(&chain.dir).map_err(BackupError::io(format!("removing {}", chain.dir.display())))?;
    removed.paths.push(chain.dir.clone());
    removed.bytes += chain.segments.iter().map(|s| s.bytes).sum::<u64>();
    Ok(())
}

/// The last moment a chain vouches for (unix ms).
fn last_ms(chain: &Chain) -> u64 {
    let snaps = chain.snapshots.iter().map(|s| s.created_ms);
    let segs = chain
        .segments
        .iter()
        .filter_map(|s| s.summary.as_ref().map(|s| s.sealed_ms));
    snaps.chain(segs).max().unwrap_or(0)
}

/// Applies `config` to the backup in `catalog.dir` at `now_ms`.
pub fn apply(catalog: &Catalog, config: &RetentionConfig, now_ms: u64) -> Result<Removed, BackupError> {
    let mut removed = Removed::default();
    let mut chains = catalog.chains.clone();
    let Some(newest) = chains.last().map(|c| c.id) else {
        return Ok(removed);
    };
    // Segments no kept snapshot needs (left by an interrupted pass).
    for c in &mut chains {
        if let Some(first) = c.snapshots.iter().find(|s| s.damage.is_none()).map(|s| s.offset) {
            drop_before(c, first, &mut removed)?;
        }
    }
    if let Some(max_age) = config.max_age {
        let cutoff = now_ms.saturating_sub(max_age.as_millis() as u64);
        let mut kept = Vec::new();
        for mut c in chains {
            if c.id != newest && last_ms(&c) < cutoff {
                drop_chain(&c, &mut removed)?;
                continue;
            }
            let base = c
                .snapshots
                .iter()
                .rev()
                .find(|s| s.damage.is_none() && s.created_ms <= cutoff)
                .map(|s| s.offset);
            if let Some(base) = base {
                drop_before(&mut c, base, &mut removed)?;
            }
            kept.push(c);
        }
        chains = kept;
    }
    if let Some(max_bytes) = config.max_bytes {
        while chains.iter().map(Chain::bytes).sum::<u64>() > max_bytes {
            let Some(oldest) = chains.first_mut() else { break };
            let good: Vec<u64> = oldest
                .snapshots
                .iter()
                .filter(|s| s.damage.is_none())
                .map(|s| s.offset)
                .collect();
            if good.len() >= 2 {
                drop_before(oldest, good[1], &mut removed)?;
            } else if oldest.id != newest {
                let c = chains.remove(0);
                drop_chain(&c, &mut removed)?;
            } else {
                tracing::warn!(
                    max_bytes,
                    "the backup is larger than its size limit, but only the newest snapshot and the log after it are left"
                );
                break;
            }
        }
    }
    if !removed.paths.is_empty() {
        layout::sync_dir(&catalog.dir)?;
        tracing::info!(
            files = removed.paths.len(),
            bytes = removed.bytes,
            "retention removed old backup files"
        );
    }
    Ok(removed)
}
