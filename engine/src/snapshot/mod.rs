//! Snapshot formats: the versioned, checksummed stream a snapshot is
//! ([`format`](mod@format)), and how snapshot files are named in a data directory.
//! Taking a snapshot (the cut, the walk, the writer) is a service over the
//! engine (`services/snapshot.rs`); the copy-on-write hooks that make it
//! fork-free live in the keyspace (`keyspace/cow.rs`).

mod files;
pub mod format;

pub use crate::config::{SaveRule, SnapshotConfig};
pub use crate::error::SnapshotError;
pub use crate::stats::{SnapshotInfo, SnapshotStats};
pub(crate) use files::{list_snapshots, snapshot_path};
pub use format::{Item, SnapshotHeader, SnapshotReader, SNAPSHOT_FORMAT};
