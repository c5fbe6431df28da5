//! The ring log: the engine's write-ahead log and the stream followers tail
//! by offset.
//!
//! # File format (version [`RING_FORMAT`])
//!
//! ```text
//! [0, 4096)              header page: two 2048-byte slots, written
//!                        alternately; the valid slot with the higher
//!                        sequence number is current
//! [4096, 4096+capacity)  data: the byte at logical offset o is at 4096 + o mod capacity
//! ```
//!
//! A header slot (little-endian):
//!
//! ```text
//! 0   magic "RKVRING\0"        72  previous replid, 40 bytes
//! 8   ring format (u32)        112 switch offset (u64)
//! 12  mutation format (u32)    120 oldest kept offset (u64)
//! 16  sequence (u64)           128 synced offset (u64)
//! 24  capacity (u64)           136 crc32c of bytes 0..136 (u32)
//! 32  replid, 40 bytes
//! ```
//!
//! Records are described in [`record`]. Offsets are byte positions in the
//! logical stream of one replication history: monotonic, never reused, and
//! independent of the ring's capacity (there are no padding records), so two
//! rings of different sizes hold the same bytes at the same offsets.
//!
//! # Guarantees
//!
//! - A record is published only after every earlier one: readers see whole
//!   records in order, never a half-written one.
//! - Readers copy, then validate (checksum with offset, and that no writer
//!   lapped them); a reader behind the ring gets [`LogError::Lagged`].
//! - Opening cuts a torn tail (reported), and refuses a damaged middle with
//!   [`LogError::Corrupt`] naming the offset.
//! - A ring that keeps history (the write-ahead log) refuses appends that
//!   would overwrite it ([`LogError::Full`]) rather than lose data.

mod memory;
pub mod record;
mod ring;
mod tail;

use std::sync::{Arc, Weak};
use std::time::Duration;

pub use record::DecodeError;
pub use ring::{
    new_replid, validate_stream, Durability, LogConfig, RawBatch, ReadBatch, Retention, RingHeader, RingLog,
    RING_FORMAT,
};
pub use tail::TailReader;

use crate::mutation::{Mutation, MutationSink, SinkError};

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
    /// A record larger than the configured fraction of the ring.
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
    /// An earlier msync failed; the log refuses writes (nothing is lost silently).
    #[error("ring log poisoned by an earlier sync failure")]
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
}

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LogError {
        LogError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The ring is the engine's mutation sink: each mutation is one record,
/// appended while the shard locks are held.
impl MutationSink for RingLog {
    fn record(&self, m: &Mutation) -> Result<Option<u64>, SinkError> {
        Ok(Some(self.append_mutation(m)?.1))
    }

    fn flush_to(&self, end: u64) -> Result<(), SinkError> {
        if self.durability() == Durability::Always {
            self.sync_to(end)?;
        }
        Ok(())
    }
}

/// Starts the `everysec` flusher: a named thread that syncs the ring once a
/// second until the ring is dropped.
pub(crate) fn start_everysec(ring: &Arc<RingLog>) -> std::io::Result<()> {
    let weak: Weak<RingLog> = Arc::downgrade(ring);
    std::thread::Builder::new()
        .name("ringkv-log-sync".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some(ring) = weak.upgrade() else { break };
            if let Err(e) = ring.sync() {
                tracing::error!(error = %e, "everysec sync failed");
                break;
            }
        })?;
    Ok(())
}

/// Entry points for the fuzz targets (built only under `cfg(fuzzing)`).
#[cfg(fuzzing)]
pub mod fuzzing {
    use super::*;

    /// Lays `data` out as the data region of a 64 KiB ring file with a valid
    /// header (so the fuzzer explores record validation and decoding rather
    /// than the header checksum), then opens it as an engine's data
    /// directory: header checks, end-of-stream search, corruption detection,
    /// decoding and replay all run on arbitrary bytes.
    pub fn open_ring_bytes(data: &[u8]) {
        let dir = std::env::temp_dir().join(format!("ringkv-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let path = dir.join(crate::recovery::RING_FILE);
        let capacity = 64 * 1024u64;
        let config = LogConfig {
            capacity,
            ..LogConfig::default()
        };
        match RingLog::create(&path, config.clone()) {
            Ok(ring) => drop(ring),
            Err(_) => return,
        }
        let Ok(mut bytes) = std::fs::read(&path) else { return };
        let n = data.len().min(capacity as usize);
        bytes[4096..4096 + n].copy_from_slice(&data[..n]);
        if std::fs::write(&path, &bytes).is_err() {
            return;
        }
        let engine_config = crate::Config {
            shards: 2,
            active_expire: false,
            log: config,
            ..crate::Config::default()
        };
        if let Ok(engine) = crate::Engine::open(&dir, engine_config) {
            let _ = engine.digest();
        }
    }
}
