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
//! 24  capacity (u64)           136 max record fraction (u64)
//! 32  replid, 40 bytes         144 crc32c of bytes 0..144 (u32)
//! ```
//!
//! The record limit (payloads up to `capacity / max record fraction` less a
//! record header) is the file's: it decides which records are valid when the
//! ring is opened, whatever the configuration says then. Version 1 files
//! (without the fraction) are refused with [`LogError::UnsupportedFormat`].
//!
//! Records are described in [`record`]. Offsets are byte positions in the
//! logical stream of one replication history: monotonic, never reused, and
//! independent of the ring's capacity (there are no padding records), so two
//! rings of different sizes hold the same bytes at the same offsets. They
//! never pass [`MAX_OFFSET`] (2^63): a full sync or an append beyond it is
//! [`LogError::OutOfBounds`].
//!
//! Opening checks a header's values before using any of them: the capacity
//! must be the file's (a multiple of 8, 64 KiB to 256 TiB), the record limit
//! at least 1 KiB, the oldest offset aligned and at most [`MAX_OFFSET`], the
//! synced offset at most one capacity beyond it; otherwise the file is
//! [`LogError::BadHeader`] (a checksummed slot with impossible values is
//! damage or forgery, not a reason to panic or to map a huge region).
//!
//! # Guarantees
//!
//! - A record is published only after every earlier one: readers see whole
//!   records in order, never a half-written one.
//! - Readers copy, then validate (checksum with offset, and that no writer
//!   lapped them); a reader behind the ring gets [`LogError::Lagged`].
//!   Every copy in and out of the ring is made of atomic word accesses, so
//!   a reader racing a lapping writer is defined behaviour, and the fences
//!   that make its lap check sound are model-checked with loom.
//! - Restarting the stream at a new offset (a follower's full resync) is
//!   exclusive with appends: they fail with [`LogError::Resetting`] meanwhile.
//! - Opening refuses damage below the header's synced offset with
//!   [`LogError::Corrupt`] naming the offset; past it, the first invalid
//!   record ends the stream (a torn tail after a power loss, reported), and
//!   the cut records can never validate again.
//! - A reopened ring counts as durable only what the header says was
//!   msynced; its next sync flushes the rest.
//! - A ring that keeps history (the write-ahead log) refuses appends that
//!   would overwrite it ([`LogError::Full`]) rather than lose data.

mod file;
#[cfg(all(test, loom))]
mod loom_tests;
mod memory;
#[cfg(feature = "internals")]
pub(crate) mod power;
pub mod record;
mod ring;
mod tail;
pub(crate) mod view;

use std::sync::{Arc, Weak};
use std::time::Duration;

pub use crate::config::{Durability, LogConfig, MAX_LOG_CAPACITY, MIN_LOG_CAPACITY, MIN_RECORD_LIMIT};
pub use crate::error::{DecodeError, LogError};
#[cfg(feature = "internals")]
pub(crate) use ring::forge_header_page;
pub use ring::{
    new_replid, validate_stream, RawBatch, ReadBatch, Retention, RingHeader, RingLog, MAX_OFFSET, RING_FORMAT,
};
pub use tail::TailReader;
pub use view::LogView;

use crate::mutation::{Mutation, MutationSink, SinkError};

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
