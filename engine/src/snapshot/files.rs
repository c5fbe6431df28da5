//! Snapshot files in a data directory: `snapshot-<offset, 20 digits>.rkvs`,
//! named by the log offset of their cut so that listing the directory
//! orders them.

use std::path::{Path, PathBuf};

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

/// The path of the snapshot file whose cut is at `offset`.
pub(crate) fn snapshot_path(dir: &Path, offset: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{offset:020}{SUFFIX}"))
}
