//! The backup directory's layout: file names, and the durable way to put a
//! file there.
//!
//! ```text
//! BACKUP/
//!   replica/                          the backup follower's own data directory
//!   chain-000001/                     one continuous stretch of one history
//!     snapshot-<offset:020>.rkvs      a snapshot at that offset (ringkv's snapshot format)
//!     segment-<seq:08>-<start:020>-<end:020>.seg   sealed log bytes [start, end)
//!     segment-<seq:08>-<start:020>.open            the segment being written
//!   chain-000002/                     after a full sync, a gap or a foreign history
//! ```
//!
//! A chain starts with a snapshot; its segments follow each other without
//! a gap (`end` of one is `start` of the next). Names are parsed strictly:
//! anything else in a chain directory is ignored.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::BackupError;

/// The backup follower's data directory, inside the backup directory.
pub const REPLICA_DIR: &str = "replica";

/// A chain directory's name.
pub fn chain_dir_name(id: u64) -> String {
    format!("chain-{id:06}")
}

/// The id of a chain directory's name.
pub fn parse_chain_dir(name: &str) -> Option<u64> {
    digits(name.strip_prefix("chain-")?)
}

/// A snapshot file's name.
pub fn snapshot_name(offset: u64) -> String {
    format!("snapshot-{offset:020}.rkvs")
}

/// The offset of a snapshot file's name.
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    digits(name.strip_prefix("snapshot-")?.strip_suffix(".rkvs")?)
}

/// A sealed segment's name.
pub fn segment_name(seq: u64, start: u64, end: u64) -> String {
    format!("segment-{seq:08}-{start:020}-{end:020}.seg")
}

/// `(seq, start, end)` of a sealed segment's name.
pub fn parse_segment_name(name: &str) -> Option<(u64, u64, u64)> {
    let mut parts = name.strip_prefix("segment-")?.strip_suffix(".seg")?.split('-');
    let seq = digits(parts.next()?)?;
    let start = digits(parts.next()?)?;
    let end = digits(parts.next()?)?;
    (parts.next().is_none() && start <= end).then_some((seq, start, end))
}

/// The name of the segment being written.
pub fn open_segment_name(seq: u64, start: u64) -> String {
    format!("segment-{seq:08}-{start:020}.open")
}

/// `(seq, start)` of an open segment's name.
pub fn parse_open_segment_name(name: &str) -> Option<(u64, u64)> {
    let mut parts = name.strip_prefix("segment-")?.strip_suffix(".open")?.split('-');
    let seq = digits(parts.next()?)?;
    let start = digits(parts.next()?)?;
    parts.next().is_none().then_some((seq, start))
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Fsyncs a directory (after a rename or a removal in it).
pub fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BackupError::io(format!("syncing {}", dir.display())))
}

/// Makes a fully written and fsynced temporary file durable under `to`.
pub fn publish(tmp: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::rename(tmp, to).map_err(BackupError::io(format!(
        "renaming {} to {}",
        tmp.display(),
        to.display()
    )))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// The names in `dir` (an empty list if it does not exist).
pub fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::io(format!("listing {}", dir.display()))(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(BackupError::io(format!("listing {}", dir.display())))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_string(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_nothing_else_parses() {
        assert_eq!(parse_chain_dir(&chain_dir_name(7)), Some(7));
        assert_eq!(parse_snapshot_name(&snapshot_name(4096)), Some(4096));
        assert_eq!(parse_segment_name(&segment_name(3, 8, 64)), Some((3, 8, 64)));
        assert_eq!(parse_open_segment_name(&open_segment_name(3, 8)), Some((3, 8)));
        for bad in [
            "chain-",
            "chain-1a",
            "snapshot-+1.rkvs",
            "segment-1-2.seg",
            "segment-1-9-8.seg",
            "segment-1-2-3-4.seg",
            "segment-1-2-3.seg.tmp",
        ] {
            assert!(
                parse_chain_dir(bad).is_none()
                    && parse_snapshot_name(bad).is_none()
                    && parse_segment_name(bad).is_none()
                    && parse_open_segment_name(bad).is_none(),
                "{bad}"
            );
        }
    }
}
