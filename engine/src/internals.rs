//! Internals for the engine's own integration tests, the benches and the
//! fuzz targets (feature `internals`). Not a stable API: an engine's users
//! reach its ring log through [`LogView`](crate::LogView) only.

use crate::config::{Config, LogConfig};
use crate::engine::Engine;
use crate::error::LogError;
use crate::log::{RingHeader, RingLog};
use crate::services::recovery::RING_FILE;

/// Power-cut simulation: what a tracked ring file would look like on disk
/// after a power loss (see the module docs of `log/power.rs`).
pub mod power {
    pub use crate::log::power::{track, untrack, PowerCut, PowerTracker, PAGE};
    /// Name of the ring file in a data directory.
    pub const RING_FILE: &str = crate::services::recovery::RING_FILE;
}

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

/// Fuzz entry point: forges a ring file from `data` in a scratch data
/// directory, then opens it with [`Engine::open`]: the ring's header checks,
/// torn-tail cut and corruption check, then recovery's replay of every
/// record it kept through the keyspace's apply. Opening may refuse the
/// directory; nothing may panic, overflow or allocate without bound.
///
/// The first byte chooses what the fuzzer controls. Even: the header is a
/// fresh ring's and the rest of `data` is written over the data region (of
/// 64 KiB). Odd: the rest starts with the header's fields, then the data
/// region's bytes; see [`FuzzHeader::parse`].
pub fn fuzz_open_ring_bytes(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        fuzz_open_ring(None, rest);
    } else {
        let (header, region) = FuzzHeader::parse(rest);
        fuzz_open_ring(Some(&header), region);
    }
}

/// Header fields and file length of a forged ring file (see
/// [`fuzz_open_ring`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuzzHeader {
    /// Ring format version.
    pub format: u32,
    /// Mutation format version.
    pub mutation_format: u32,
    /// Sequence number of the first slot written.
    pub seq: u64,
    /// Capacity the header claims.
    pub capacity: u64,
    /// Switch offset.
    pub switch_offset: u64,
    /// Oldest kept offset.
    pub oldest: u64,
    /// Synced offset.
    pub synced: u64,
    /// Record fraction.
    pub max_record_fraction: u64,
    /// Which slots hold the forged header: bit 0 the first, bit 1 the
    /// second (with `seq + 1`); a slot left out keeps the fresh ring's header
    /// (the second) or zeros (the first).
    pub slots: u8,
    /// Length of the ring file (at most 1 MiB + 4 KiB).
    pub file_len: u64,
}

/// Capacity of the ring the fuzz target forges (64 KiB).
const FUZZ_CAPACITY: u64 = 64 * 1024;

impl FuzzHeader {
    /// Reads the fields from the front of `data`, returning the rest. Each
    /// 64-bit field is a tag byte and 8 little-endian bytes (missing bytes
    /// are zeros); the tag picks how the value is used, so that the fuzzer
    /// reaches both valid and extreme values quickly: 0 keeps a fresh
    /// ring's value, 1 takes the raw value, 2 the raw value modulo 2^20
    /// (small offsets and lengths near the real ones), 3 `u64::MAX` less
    /// the raw value modulo 2^12 (overflow bait). The 32-bit versions use
    /// the same tags on 4 bytes.
    pub fn parse(data: &[u8]) -> (FuzzHeader, &[u8]) {
        let mut rest = data;
        let mut take = |n: usize| {
            let mut b = [0u8; 9];
            let k = n.min(rest.len());
            b[..k].copy_from_slice(&rest[..k]);
            rest = &rest[k..];
            b
        };
        let mut field = |fresh: u64| {
            let b = take(9);
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&b[1..9]);
            let raw = u64::from_le_bytes(raw);
            match b[0] % 4 {
                0 => fresh,
                1 => raw,
                2 => raw % (1 << 20),
                _ => u64::MAX - raw % (1 << 12),
            }
        };
        // The fields most worth forging first: the fuzzer's inputs start short.
        let capacity = field(FUZZ_CAPACITY);
        let oldest = field(0);
        let synced = field(0);
        let max_record_fraction = field(LogConfig::default().max_record_fraction);
        let seq = field(1);
        let file_len = field(4096 + FUZZ_CAPACITY) % (4096 + (1 << 20) + 1);
        let switch_offset = field(0);
        let format = field(u64::from(crate::log::RING_FORMAT)) as u32;
        let mutation_format = field(u64::from(crate::log::record::MUTATION_FORMAT)) as u32;
        let slots = take(1)[0];
        let header = FuzzHeader {
            format,
            mutation_format,
            seq,
            capacity,
            switch_offset,
            oldest,
            synced,
            max_record_fraction,
            slots,
            file_len,
        };
        (header, rest)
    }
}

/// Writes a fresh 64 KiB ring file in a scratch data directory, `region`
/// over its data region, and (if given) the forged header and file length;
/// then opens the directory with [`Engine::open`] and reads the state.
pub fn fuzz_open_ring(header: Option<&FuzzHeader>, region: &[u8]) {
    let log = LogConfig {
        capacity: FUZZ_CAPACITY,
        ..LogConfig::default()
    };
    // A fresh ring file, made once per process (creating one syncs).
    static FRESH: std::sync::OnceLock<Option<(Vec<u8>, RingHeader)>> = std::sync::OnceLock::new();
    let Some((fresh_bytes, fresh)) = FRESH
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("ringkv-fuzz-fresh-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).ok()?;
            let path = dir.join(RING_FILE);
            let header = RingLog::create(&path, log.clone()).ok()?.header();
            let bytes = std::fs::read(&path).ok()?;
            let _ = std::fs::remove_dir_all(&dir);
            Some((bytes, header))
        })
        .as_ref()
    else {
        return;
    };
    let mut bytes = fresh_bytes.clone();
    let n = region.len().min(FUZZ_CAPACITY as usize);
    bytes[4096..4096 + n].copy_from_slice(&region[..n]);
    if let Some(h) = header {
        let mut forged: RingHeader = fresh.clone();
        forged.format = h.format;
        forged.mutation_format = h.mutation_format;
        forged.capacity = h.capacity;
        forged.switch_offset = h.switch_offset;
        forged.oldest = h.oldest;
        forged.synced = h.synced;
        forged.max_record_fraction = h.max_record_fraction;
        let first = (h.slots & 1 != 0).then_some((&forged, h.seq));
        let second = if h.slots & 2 != 0 {
            Some((&forged, h.seq.wrapping_add(1)))
        } else {
            // The fresh ring's header is in the second slot (sequence 1).
            Some((fresh, 1))
        };
        bytes[..4096].copy_from_slice(&crate::log::forge_header_page([first, second]));
        // At most 1 MiB + 4 KiB (`FuzzHeader::parse`).
        bytes.resize(h.file_len as usize, 0);
    }
    let dir = std::env::temp_dir().join(format!("ringkv-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() || std::fs::write(dir.join(RING_FILE), &bytes).is_err() {
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
        // A ring that opened takes writes (they exercise the header's
        // offsets: the next append and header write).
        let _ = engine.set("fuzz", "x");
        engine.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
