//! The marker files of a data directory: `FULLSYNC`, present while a
//! follower's full sync has restarted its ring at the primary's snapshot
//! offset and no local snapshot covers it yet. (The ring file and the lock
//! are opened in `recovery.rs`; snapshot files are named in
//! `snapshot/files.rs`.)

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// Present in a data directory while a follower's full sync is loading.
pub(crate) const FULL_SYNC_MARKER: &str = "FULLSYNC";

pub(crate) fn remove(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| Error::Io {
        context: format!("removing {}", path.display()),
        source: e,
    })
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::Io {
        context: format!("fsync of {}", dir.display()),
        source: e,
    })
}

/// Marks `dir` as in a full sync (durably, before the ring restarts).
pub(crate) fn write_full_sync_marker(dir: &Path) -> Result<()> {
    let path = dir.join(FULL_SYNC_MARKER);
    File::create(&path).and_then(|f| f.sync_all()).map_err(|e| Error::Io {
        context: format!("creating {}", path.display()),
        source: e,
    })?;
    sync_dir(dir)
}

/// Clears the full-sync mark (the swapped-in data is complete).
pub(crate) fn remove_full_sync_marker(dir: &Path) -> Result<()> {
    let path = dir.join(FULL_SYNC_MARKER);
    if path.exists() {
        remove(&path)?;
        sync_dir(dir)?;
    }
    Ok(())
}
