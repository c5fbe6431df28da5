//! Errors of the engine.

/// Errors returned by engine operations.
///
/// Every variant leaves the engine unchanged: an operation either applies
/// fully (and its mutation reached the sink) or not at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operation does not apply to the type of value the key holds.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// The string value is not a base-10 signed 64-bit integer.
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    /// The result of an integer operation does not fit in 64 signed bits.
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    /// An expire time is out of range (overflows, or is not positive where it must be).
    #[error("ERR invalid expire time")]
    InvalidExpire,
    /// The key (or hash field) is longer than `Config::max_key_len`.
    #[error("ERR key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// Its length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The value (string or hash field value) would be longer than `Config::max_value_len`.
    #[error("ERR value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The key does not exist (RENAME of a missing key).
    #[error("ERR no such key")]
    NoSuchKey,
    /// Memory use is above `maxmemory` and nothing can be evicted under the policy.
    #[error("OOM command not allowed when used memory > 'maxmemory' ({used} > {max} bytes)")]
    OutOfMemory {
        /// Accounted memory when the write was refused.
        used: u64,
        /// The configured limit.
        max: u64,
    },
    /// An argument is invalid (empty field list, zero count, ...).
    #[error("ERR {0}")]
    InvalidArgument(&'static str),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The mutation sink refused the mutation; nothing was applied.
    #[error("mutation sink refused the write: {0}")]
    Sink(#[source] SinkError),
    /// The ring log refused or failed (full, record too large, I/O, corrupt
    /// file, ...); for a refused append nothing was applied.
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    /// Taking or loading a snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// Another process holds the data directory.
    #[error("data directory {0} is locked by another process")]
    Locked(std::path::PathBuf),
    /// An I/O error outside the ring (data directory, lock file).
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Replaying the log failed at this record.
    #[error("recovery failed at offset {offset}: {reason}")]
    Recovery {
        /// Offset of the record.
        offset: u64,
        /// What went wrong.
        reason: String,
    },
    /// A mutation given to `Engine::apply` does not fit the current state
    /// (the stream being replayed diverges from this engine's state).
    #[error("cannot apply mutation: {0}")]
    Apply(&'static str),
    /// A write on a follower (writes go to the primary).
    #[error("READONLY You can't write against a read only replica.")]
    ReadOnly,
    /// The write gate refused the write: too few followers are within the
    /// lag budget (Redis' `min-replicas-to-write`).
    #[error("NOREPLICAS Not enough good replicas to write: {0}")]
    NoReplicas(String),
    /// A replication step does not fit this engine's state.
    #[error("replication: {0}")]
    Replication(String),
}

pub use crate::mutation::SinkError;

impl Error {
    /// Converts a sink's error, keeping the ring log's errors typed.
    pub(crate) fn from_sink(e: SinkError) -> Error {
        match e.downcast::<crate::log::LogError>() {
            Ok(log) => Error::Log(*log),
            Err(other) => Error::Sink(other),
        }
    }

    /// True for the ring log's "full" error (history not yet covered by a
    /// snapshot would be overwritten).
    pub fn is_log_full(&self) -> bool {
        matches!(self, Error::Log(crate::log::LogError::Full { .. }))
    }
}

/// Result of engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
