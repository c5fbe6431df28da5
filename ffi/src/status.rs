//! `ringkv_status`, every call's result, and how engine and replication
//! errors map onto it.

use engine::log::LogError;
use engine::snapshot::SnapshotError;
use engine::Error;
use replication::ReplError;

/// The result of every call. `RINGKV_OK` is 0; anything else is a failure
/// whose message `ringkv_last_error` gives.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ringkv_status {
    /// Success.
    RINGKV_OK = 0,
    /// A NULL handle, a NULL buffer with a non-zero length, an integer out
    /// of its enum's range, a freed handle, a key, value or record over the
    /// limits.
    RINGKV_INVALID_ARGUMENT = 1,
    /// The key holds the other type (Redis' WRONGTYPE).
    RINGKV_WRONG_TYPE = 2,
    /// The value is not an integer, or is out of range.
    RINGKV_NOT_AN_INTEGER = 3,
    /// The value is not a float, or the increment would make NaN or Infinity.
    RINGKV_NOT_A_FLOAT = 4,
    /// An increment would overflow.
    RINGKV_OVERFLOW = 5,
    /// An expiry time out of range.
    RINGKV_INVALID_EXPIRE = 6,
    /// RENAME or COPY of a missing key.
    RINGKV_NO_SUCH_KEY = 7,
    /// `maxmemory` reached and nothing can be evicted under the policy.
    RINGKV_OUT_OF_MEMORY = 8,
    /// A write on a follower.
    RINGKV_READ_ONLY = 9,
    /// The write gate refused the write (not enough good followers).
    RINGKV_NO_REPLICAS = 10,
    /// A snapshot is already running, the data directory is locked, or
    /// the ring log is being reset (a follower's full sync): retry later.
    RINGKV_BUSY = 11,
    /// An I/O error (a full disk included), the ring log is full, or a
    /// failed sync made the log refuse further writes.
    RINGKV_IO = 12,
    /// A damaged data directory, log or snapshot.
    RINGKV_CORRUPT = 13,
    /// A configuration that does not parse or is invalid, or a call the
    /// engine's configuration does not allow (SAVE without a data directory).
    RINGKV_CONFIG = 14,
    /// Replication failed: TLS, connection, protocol, a divergent history.
    RINGKV_REPLICATION = 15,
    /// A bounded wait timed out.
    RINGKV_TIMEOUT = 16,
    /// The library caught a panic (a bug in ringkv; please report it).
    RINGKV_PANIC = 17,
    /// Any other failure.
    RINGKV_INTERNAL = 18,
}

/// A failure on its way out of a call: its status and message.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: ringkv_status,
    pub(crate) message: String,
}

impl Fail {
    /// A `RINGKV_INVALID_ARGUMENT` failure.
    pub(crate) fn invalid(message: impl Into<String>) -> Fail {
        Fail {
            status: ringkv_status::RINGKV_INVALID_ARGUMENT,
            message: message.into(),
        }
    }
}

/// The status of an engine error.
pub(crate) fn engine_status(e: &Error) -> ringkv_status {
    use ringkv_status::*;
    match e {
        Error::WrongType => RINGKV_WRONG_TYPE,
        Error::NotAnInteger => RINGKV_NOT_AN_INTEGER,
        Error::NotAFloat | Error::NotFinite => RINGKV_NOT_A_FLOAT,
        Error::Overflow => RINGKV_OVERFLOW,
        Error::InvalidExpire => RINGKV_INVALID_EXPIRE,
        Error::KeyTooLarge { .. } | Error::ValueTooLarge { .. } | Error::InvalidArgument(_) => RINGKV_INVALID_ARGUMENT,
        Error::NoSuchKey => RINGKV_NO_SUCH_KEY,
        Error::OutOfMemory { .. } => RINGKV_OUT_OF_MEMORY,
        Error::ReadOnly => RINGKV_READ_ONLY,
        Error::NoReplicas(_) => RINGKV_NO_REPLICAS,
        Error::Config(_) => RINGKV_CONFIG,
        Error::Locked(_) => RINGKV_BUSY,
        Error::Io { .. } | Error::Sink(_) => RINGKV_IO,
        Error::Log(LogError::Io { .. } | LogError::Full { .. } | LogError::Poisoned) => RINGKV_IO,
        Error::Log(LogError::Config(_)) => RINGKV_CONFIG,
        // A record (an MSET, a batch) larger than the ring accepts.
        Error::Log(LogError::RecordTooLarge { .. }) => RINGKV_INVALID_ARGUMENT,
        Error::Log(LogError::Lagged { .. } | LogError::OutOfBounds { .. }) => RINGKV_INTERNAL,
        // A follower's ring restarting for a full resync: try again.
        Error::Log(LogError::Resetting) => RINGKV_BUSY,
        Error::Log(_) => RINGKV_CORRUPT,
        Error::Snapshot(SnapshotError::InProgress | SnapshotError::Stale) => RINGKV_BUSY,
        Error::Snapshot(SnapshotError::Io { .. }) => RINGKV_IO,
        Error::Snapshot(_) => RINGKV_CORRUPT,
        Error::Recovery { .. } | Error::BadRecord { .. } | Error::RecordRejected { .. } => RINGKV_CORRUPT,
        Error::Replication(_) => RINGKV_REPLICATION,
        _ => RINGKV_INTERNAL,
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail {
            status: engine_status(&e),
            message: e.to_string(),
        }
    }
}

impl From<ReplError> for Fail {
    fn from(e: ReplError) -> Fail {
        let status = match &e {
            ReplError::Engine(inner) => engine_status(inner),
            ReplError::Config(_) => ringkv_status::RINGKV_CONFIG,
            ReplError::Timeout(_) => ringkv_status::RINGKV_TIMEOUT,
            ReplError::Io(_) => ringkv_status::RINGKV_IO,
            _ => ringkv_status::RINGKV_REPLICATION,
        };
        Fail {
            status,
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_keep_their_meaning() {
        assert_eq!(engine_status(&Error::WrongType), ringkv_status::RINGKV_WRONG_TYPE);
        assert_eq!(engine_status(&Error::NotFinite), ringkv_status::RINGKV_NOT_A_FLOAT);
        assert_eq!(
            engine_status(&Error::OutOfMemory { used: 2, max: 1 }),
            ringkv_status::RINGKV_OUT_OF_MEMORY
        );
        assert_eq!(
            engine_status(&Error::Snapshot(SnapshotError::InProgress)),
            ringkv_status::RINGKV_BUSY
        );
        let f = Fail::from(Error::ReadOnly);
        assert_eq!(f.status, ringkv_status::RINGKV_READ_ONLY);
        assert!(f.message.starts_with("READONLY"));
    }
}
