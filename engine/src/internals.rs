//! Internals for the engine's own integration tests, the benches and the
//! fuzz targets (feature `internals`). Not a stable API: an engine's users
//! reach its ring log through [`LogView`](crate::LogView) only.

use crate::config::{Config, LogConfig};
use crate::engine::Engine;
use crate::error::LogError;
use crate::log::RingLog;
use crate::services::recovery::RING_FILE;

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

/// Fuzz entry point: writes `data` over the data region of a fresh ring
/// file in a scratch data directory, then opens it with [`Engine::open`]:
/// the ring's header check, torn-tail cut and corruption check, then
/// recovery's replay of every record it kept through the keyspace's apply.
/// Opening may refuse the directory; nothing may panic.
pub fn fuzz_open_ring_bytes(data: &[u8]) {
    let dir = std::env::temp_dir().join(format!("ringkv-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path = dir.join(RING_FILE);
    let capacity = 64 * 1024u64;
    let log = LogConfig {
        capacity,
        ..LogConfig::default()
    };
    match RingLog::create(&path, log.clone()) {
        Ok(ring) => drop(ring),
        Err(_) => return,
    }
    let Ok(mut bytes) = std::fs::read(&path) else { return };
    let n = data.len().min(capacity as usize);
    bytes[4096..4096 + n].copy_from_slice(&data[..n]);
    if std::fs::write(&path, &bytes).is_err() {
        return;
    }
    let config = Config {
        shards: 2,
        active_expire: false,
        log,
        ..Config::default()
    };
    if let Ok(engine) = Engine::open(&dir, config) {
        let _ = engine.digest();
    }
}
