//! Internals for the engine's own integration tests, the benches and the
//! fuzz targets (feature `internals`). Not a stable API: an engine's users
//! reach its ring log through [`LogView`](crate::LogView) only.

use crate::error::LogError;
use crate::log::RingLog;

/// The ring log's mutators, for a ring that no engine owns (an engine's
/// ring is appended, trimmed and reset only by the engine).
pub trait RingLogWriter {
    /// Appends one record with this payload; returns its offset.
    fn append(&self, payload: &[u8]) -> Result<u64, LogError>;
    /// Appends a primary's raw stream bytes at the same offsets.
    fn append_stream(&self, start: u64, bytes: &[u8]) -> Result<u64, LogError>;
    /// Restarts the stream at `offset` with this history.
    fn reset_to(&self, offset: u64, replid: &str, prev_replid: &str, switch_offset: u64) -> Result<(), LogError>;
    /// Lets the ring drop history below `offset`.
    fn set_oldest(&self, offset: u64) -> Result<(), LogError>;
    /// Records the ring's replication history.
    fn set_history(&self, replid: &str, prev_replid: &str, switch_offset: u64) -> Result<(), LogError>;
}

impl RingLogWriter for RingLog {
    fn append(&self, payload: &[u8]) -> Result<u64, LogError> {
        RingLog::append(self, payload)
    }
    fn append_stream(&self, start: u64, bytes: &[u8]) -> Result<u64, LogError> {
        RingLog::append_stream(self, start, bytes)
    }
    fn reset_to(&self, offset: u64, replid: &str, prev_replid: &str, switch_offset: u64) -> Result<(), LogError> {
        RingLog::reset_to(self, offset, replid, prev_replid, switch_offset)
    }
    fn set_oldest(&self, offset: u64) -> Result<(), LogError> {
        RingLog::set_oldest(self, offset)
    }
    fn set_history(&self, replid: &str, prev_replid: &str, switch_offset: u64) -> Result<(), LogError> {
        RingLog::set_history(self, replid, prev_replid, switch_offset)
    }
}
