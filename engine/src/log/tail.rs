//! [`TailReader`]: a reader at its own offset in the ring.

use std::sync::Arc;
use std::time::Duration;

use super::record::decode_mutation;
use super::{ReadBatch, RingLog};
use crate::error::LogError;
use crate::mutation::Mutation;

/// A cursor into a [`RingLog`]: reads records from its offset on, waits for
/// new ones without spinning. Any number of readers can tail one ring.
///
/// ```
/// use std::time::Duration;
/// use ringkv::Engine;
/// let engine = Engine::builder().anonymous_log().build()?;
/// let log = engine.log().expect("an anonymous ring");
/// let mut reader = log.tail(log.published());
/// engine.set("one", "1")?;
/// let batch = reader.next_batch(Duration::from_millis(100), 1 << 20)?;
/// assert_eq!(batch.records.len(), 1);
/// assert_eq!(reader.offset(), log.published());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TailReader {
    ring: Arc<RingLog>,
    offset: u64,
}

impl TailReader {
    /// A reader at `offset` (a record boundary: 0, a value of `published()`,
    /// or a batch's `next`).
    pub fn new(ring: Arc<RingLog>, offset: u64) -> TailReader {
        TailReader { ring, offset }
    }

    /// The offset of the next record to read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads what is published from the reader's offset (up to about
    /// `max_bytes`), waiting up to `timeout` if nothing is; an empty batch
    /// means the timeout passed. Fails with [`LogError::Lagged`] if the
    /// reader's offset was overwritten (the reader stays where it was).
    pub fn next_batch(&mut self, timeout: Duration, max_bytes: usize) -> Result<ReadBatch, LogError> {
        if self.ring.published() <= self.offset && !self.ring.wait_for(self.offset, timeout) {
            return Ok(ReadBatch {
                records: Vec::new(),
                next: self.offset,
            });
        }
        let batch = self.ring.read(self.offset, max_bytes)?;
        self.offset = batch.next;
        Ok(batch)
    }

    /// Like [`TailReader::next_batch`], decoding each record into a mutation.
    pub fn next_mutations(&mut self, timeout: Duration, max_bytes: usize) -> Result<Vec<(u64, Mutation)>, LogError> {
        let start = self.offset;
        let batch = self.next_batch(timeout, max_bytes)?;
        batch
            .records
            .into_iter()
            .map(|(at, payload)| {
                decode_mutation(payload).map(|m| (at, m)).map_err(|e| {
                    self.offset = start;
                    LogError::Corrupt {
                        offset: at,
                        reason: format!("record does not decode: {e}"),
                    }
                })
            })
            .collect()
    }
}
