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

pub mod record;
mod memory;
mod ring;
mod tail;

use std::sync::{Arc, Weak};
use std::time::Duration;

pub use record::DecodeError;
pub use ring::{new_replid, Durability, LogConfig, ReadBatch, Retention, RingHeader, RingLog, RING_FORMAT};
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
    std::thread::Builder::new().name("ringkv-log-sync".into()).spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(ring) = weak.upgrade() else { break };
        if let Err(e) = ring.sync() {
            tracing::error!(error = %e, "everysec sync failed");
            break;
        }
    })?;
    Ok(())
}

/// Internals for fuzz targets only.
#[cfg(fuzzing)]
pub mod fuzzing {
    use super::*;

    /// Writes `data` as the data region of a ring file with a valid header
    /// (so the fuzzer explores record validation, not the header checksum),
    /// opens it and reads every record.
    pub fn open_ring_bytes(data: &[u8], oldest: u64) {
        let dir = std::env::temp_dir().join(format!("ringkv-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("ring.log");
        let _ = std::fs::remove_file(&path);
        let capacity = 64 * 1024u64;
        let Ok(ring) = RingLog::create(&path, LogConfig { capacity, ..LogConfig::default() }) else { return };
        if ring.set_oldest(0).is_err() {
            return;
        }
        drop(ring);
        let mut bytes = std::fs::read(&path).unwrap_or_default();
        let n = data.len().min(capacity as usize);
        bytes[4096..4096 + n].copy_from_slice(&data[..n]);
        let _ = std::fs::write(&path, &bytes);
        let _ = oldest;
        if let Ok(ring) = RingLog::open(&path, LogConfig::default()) {
            let mut pos = ring.oldest();
            while let Ok(batch) = ring.read(pos, 1 << 16) {
                if batch.records.is_empty() {
                    break;
                }
                for (_, payload) in batch.records {
                    let _ = record::decode_mutation(payload);
                }
                pos = batch.next;
            }
        }
    }
}
