//! Fork-free snapshots: point-in-time images taken while writers go on,
//! with bounded extra memory (see [`generation`] for how, [`format`] for the
//! file layout).

pub mod format;
pub(crate) mod generation;
mod writer;

pub use format::{Item, SnapshotError, SnapshotHeader, SnapshotReader, SNAPSHOT_FORMAT};
pub(crate) use writer::list_snapshots;
pub use writer::{SaveRule, SnapshotConfig, SnapshotInfo, SnapshotStats};
