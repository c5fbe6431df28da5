//! [`BackupError`]: every way a backup or a restore fails, each naming
//! the file (and the byte position in it) or the point it is about.

use std::path::PathBuf;

/// A backup or restore error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A backup file whose bytes are not what was written: named with the
    /// byte position in the file where the check failed. Nothing read from
    /// it is used.
    #[error("{path}: damaged at byte {position}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// What is wrong (with the log offset where one is concerned).
        reason: String,
    },
    /// The point asked for is not what the backup holds.
    #[error("not restorable: {0}")]
    OutOfRange(String),
    /// A bad argument (`--at`, a target directory that is not empty).
    #[error("{0}")]
    Usage(String),
    /// A file-system operation.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The engine refused (loading a snapshot, replaying a record, opening
    /// the restored directory).
    #[error("{context}: {source}")]
    Engine {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: ringkv::Error,
    },
    /// Replication (starting the follower).
    #[error("replication: {0}")]
    Replication(#[from] ringkv_replication::ReplError),
}

impl BackupError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
        let context = context.into();
        move |source| BackupError::Io { context, source }
    }

    pub(crate) fn engine(context: impl Into<String>) -> impl FnOnce(ringkv::Error) -> BackupError {
        let context = context.into();
        move |source| BackupError::Engine { context, source }
    }

    pub(crate) fn corrupt(path: &std::path::Path, position: u64, reason: impl Into<String>) -> BackupError {
        BackupError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason: reason.into(),
        }
    }
}
