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
    /// The value is not a float (INCRBYFLOAT, HINCRBYFLOAT).
    #[error("ERR value is not a valid float")]
    NotAFloat,
    /// A float increment would give NaN or an infinity.
    #[error("ERR increment would produce NaN or Infinity")]
    NotFinite,
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
    Log(#[from] LogError),
    /// Taking or loading a snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
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
    /// Recovery cannot go on: the history it needs is missing here.
    #[error("recovery failed at offset {offset}: {reason}")]
    Recovery {
        /// Where the missing history starts.
        offset: u64,
        /// What went wrong.
        reason: String,
    },
    /// A log record (in recovery, or from a primary) does not decode.
    #[error("log record at offset {offset} does not decode: {source}")]
    BadRecord {
        /// Offset of the record.
        offset: u64,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// A log record decoded but does not apply to the state it is replayed onto.
    #[error("log record at offset {offset} does not apply: {source}")]
    RecordRejected {
        /// Offset of the record.
        offset: u64,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A mutation given to `Engine::replay` does not fit the current state
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
        match e.downcast::<LogError>() {
            Ok(log) => Error::Log(*log),
            Err(other) => Error::Sink(other),
        }
    }

    /// True for the ring log's "full" error (history not yet covered by a
    /// snapshot would be overwritten).
    pub fn is_log_full(&self) -> bool {
        matches!(self, Error::Log(LogError::Full { .. }))
    }
}

/// Result of engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the ring log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// An I/O call failed.
    #[error("ring log I/O error while {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The header page is not a valid ringkv header.
    #[error("bad ring header: {0}")]
    BadHeader(String),
    /// The file was written by a newer (or unknown) format.
    #[error("ring format version {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        /// Version in the file.
        found: u32,
        /// Version this build supports.
        supported: u32,
    },
    /// Damage in the middle of the stream (not a torn tail).
    #[error("ring log corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// Offset of the first bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Appending would overwrite history the ring must keep (until a
    /// snapshot covers it).
    #[error("ring log full: a record of {needed} bytes does not fit in the {free} free bytes")]
    Full {
        /// Bytes the record needs.
        needed: u64,
        /// Bytes free before the oldest kept offset.
        free: u64,
    },
    /// A record larger than the ring's limit (`capacity /
    /// max_record_fraction` of the ring file, less a record header).
    #[error("record of {len} bytes exceeds the limit of {max} bytes (capacity / max_record_fraction)")]
    RecordTooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The reader's offset has been overwritten.
    #[error("reader lagged behind the ring: oldest readable offset is {oldest}")]
    Lagged {
        /// The oldest offset still readable.
        oldest: u64,
    },
    /// An offset or a length the ring cannot address: a copy longer than
    /// the ring, or a stream offset beyond the largest one
    /// (`log::MAX_OFFSET`).
    #[error("ring log range out of bounds at offset {offset}: {reason}")]
    OutOfBounds {
        /// The offset involved.
        offset: u64,
        /// What is out of bounds.
        reason: String,
    },
    /// An earlier msync (or a copy into the ring) failed; the log refuses
    /// writes until the engine is reopened (nothing is lost silently).
    #[error("ring log poisoned by an earlier failed sync or write: writes are refused until the engine is reopened")]
    Poisoned,
    /// Invalid configuration.
    #[error("invalid ring log configuration: {0}")]
    Config(String),
    /// Replicated bytes contradict what this ring already holds at that
    /// offset: the two streams have different histories.
    #[error("divergent stream at offset {offset}: the bytes received differ from this ring's")]
    Divergent {
        /// First offset where the streams differ.
        offset: u64,
    },
    /// Replicated bytes do not continue this ring's stream.
    #[error("stream gap: bytes start at {start} but this ring ends at {end}")]
    Gap {
        /// Where the received bytes start.
        start: u64,
        /// Where this ring's stream ends.
        end: u64,
    },
    /// The ring is being restarted at a new offset (a follower's full
    /// resync): appends, and other resets, are refused until it is done.
    #[error("the ring log is being reset to a new offset; appends are refused meanwhile")]
    Resetting,
}

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LogError {
        LogError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Errors reading or writing snapshots.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// An I/O call failed.
    #[error("snapshot I/O error while {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not a snapshot, or a damaged one.
    #[error("snapshot damaged at byte {position}: {reason}")]
    Corrupt {
        /// Byte position in the file or stream.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// Written by a newer format.
    #[error("snapshot format version {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Another snapshot of the same kind (a save, or a stream) is running.
    #[error("a snapshot is already in progress")]
    InProgress,
    /// A follower in a full sync serves stale data and takes no snapshot.
    #[error("no snapshot during a full sync (the data is stale)")]
    Stale,
    /// Applying a loaded item failed.
    #[error("cannot load snapshot item: {0}")]
    Load(String),
}

/// Why bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// A tag or kind byte is unknown.
    #[error("unknown {what} {value}")]
    Unknown {
        /// What was being decoded.
        what: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A length or count does not fit the input.
    #[error("invalid length: {0}")]
    Length(&'static str),
    /// A batch inside a batch.
    #[error("nested batch")]
    NestedBatch,
    /// Bytes left after the mutation.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}
