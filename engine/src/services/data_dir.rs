//! The marker files of a data directory: `FULLSYNC`, present while a
//! follower's full sync has restarted its ring at the primary's snapshot
//! offset and no local snapshot covers it yet. (The ring file and the lock
//! are opened in `recovery.rs`; snapshot files are named in
//! `snapshot/files.rs`.)
//!
//! The marker names, one per line, the replication histories the ring may
//! carry while it stands: the one the ring followed when the full sync
//! began (a crash may come before the ring restarts), the primary's, and
//! any the follower adopts afterwards. Recovery wipes the directory only
//! when the ring is in one of them, which a promotion never is (see
//! `recovery.rs`). A marker written by an older version is empty.

use std::fs::File;
use std::io::Write;
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

/// Marks `dir` as in a full sync whose ring may carry these histories
/// (durably, before the ring restarts). Rewriting the marker (to add a
/// history) goes through a temporary file and a rename, so a crash leaves
/// the old marker or the new one.
pub(crate) fn write_full_sync_marker(dir: &Path, replids: &[&str]) -> Result<()> {
    let path = dir.join(FULL_SYNC_MARKER);
    let tmp = dir.join(format!("{FULL_SYNC_MARKER}.tmp"));
    let mut text = String::new();
    for id in replids.iter().filter(|id| !id.is_empty()) {
        text.push_str(id);
        text.push('\n');
    }
    File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::Io {
            context: format!("writing {}", path.display()),
            source: e,
        })?;
    sync_dir(dir)
}

/// The histories named by the marker in `dir` (`None`: no marker; an empty
/// list: a marker from an older version, which names none).
pub(crate) fn read_full_sync_marker(dir: &Path) -> Result<Option<Vec<String>>> {
    let path = dir.join(FULL_SYNC_MARKER);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            context: format!("reading {}", path.display()),
            source: e,
        }),
    }
}

/// Clears the full-sync mark (a snapshot of the swapped-in data is
/// durable); returns whether there was one.
pub(crate) fn remove_full_sync_marker(dir: &Path) -> Result<bool> {
    let path = dir.join(FULL_SYNC_MARKER);
    if path.exists() {
        remove(&path)?;
        sync_dir(dir)?;
        return Ok(true);
    }
    Ok(false)
}
