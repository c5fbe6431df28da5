//! [`LogView`]: what users of an engine may do with its ring log — read
//! offsets and figures, read records or raw stream bytes by offset, wait
//! for new records, tail it. Appending, trimming and resetting the
//! write-ahead log are the engine's alone.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{RawBatch, ReadBatch, RingHeader, RingLog, TailReader};
use crate::config::Durability;
use crate::error::LogError;

/// A read-only handle on an engine's ring log (cheap to clone).
///
/// ```
/// use ringkv::Engine;
/// let engine = Engine::builder().anonymous_log().build()?;
/// engine.set("k", "v")?;
/// let log = engine.log().expect("an anonymous log");
/// let batch = log.read(0, 1 << 20)?;
/// assert_eq!(batch.records.len(), 1);
/// assert_eq!(batch.next, log.published());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct LogView {
    ring: Arc<RingLog>,
}

impl std::fmt::Debug for LogView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.ring.fmt(f)
    }
}

/// Did a record from `since` on touch one of `keys`, or every key (a
/// FLUSHALL)? Records no longer in the ring, or that do not decode, count
/// as a change. WATCH's check: `Engine::write_batch_if_unchanged` runs it
/// under the batch's locks, a server's one-by-one EXEC through
/// [`LogView::touched_since`].
pub(crate) fn touched_since<K: AsRef<[u8]>>(log: &RingLog, keys: &[K], since: u64) -> bool {
    let end = log.published();
    let mut pos = since;
    while pos < end {
        let Ok(batch) = log.read(pos, 1 << 20) else { return true };
        for (_, payload) in batch.records {
            let Ok(m) = super::record::decode_mutation(payload) else {
                return true;
            };
            if m.touches_all_keys() {
                return true;
            }
            let mut hit = false;
            m.for_each_key(&mut |k| hit |= keys.iter().any(|w| w.as_ref() == k));
            if hit {
                return true;
            }
        }
        if batch.next <= pos {
            return true;
        }
        pos = batch.next;
    }
    false
}

impl LogView {
    pub(crate) fn new(ring: Arc<RingLog>) -> LogView {
        LogView { ring }
    }

    /// Did a record logged from offset `since` on touch one of `keys`, or
    /// every key (a FLUSHALL)? What Redis' WATCH needs: take `published()`
    /// when watching starts, ask this before EXEC. Records already gone
    /// from the ring count as a change.
    ///
    /// ```
    /// use ringkv::Engine;
    /// let engine = Engine::builder().anonymous_log().build()?;
    /// let log = engine.log().expect("an anonymous log");
    /// let since = log.published();
    /// engine.set("other", "1")?;
    /// assert!(!log.touched_since(&["balance"], since));
    /// engine.set("balance", "10")?;
    /// assert!(log.touched_since(&["balance"], since));
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn touched_since<K: AsRef<[u8]>>(&self, keys: &[K], since: u64) -> bool {
        touched_since(&self.ring, keys, since)
    }

    /// The current header (replication history, offsets).
    pub fn header(&self) -> RingHeader {
        self.ring.header()
    }

    /// The replication id of the history the ring holds.
    pub fn replid(&self) -> String {
        self.ring.replid()
    }

    /// Bytes of the data region.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    /// Offset after the last published record.
    pub fn published(&self) -> u64 {
        self.ring.published()
    }

    /// Oldest offset still readable.
    pub fn oldest(&self) -> u64 {
        self.ring.oldest()
    }

    /// Offset up to which records are known durable.
    pub fn synced(&self) -> u64 {
        self.ring.synced()
    }

    /// Bytes of torn tail cut when the ring was opened.
    pub fn torn_bytes(&self) -> u64 {
        self.ring.torn_bytes()
    }

    /// Largest payload a record may carry.
    pub fn max_payload(&self) -> usize {
        self.ring.max_payload()
    }

    /// When records reach the disk.
    pub fn durability(&self) -> Durability {
        self.ring.durability()
    }

    /// The ring file, unless the ring is anonymous.
    pub fn path(&self) -> Option<&Path> {
        self.ring.path()
    }

    /// Whole records from `from`, up to about `max_bytes` (see [`RingLog::read`]).
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<ReadBatch, LogError> {
        self.ring.read(from, max_bytes)
    }

    /// Whole records from `from` as raw stream bytes (see [`RingLog::read_stream`]).
    pub fn read_stream(&self, from: u64, max_bytes: usize) -> Result<RawBatch, LogError> {
        self.ring.read_stream(from, max_bytes)
    }

    /// Waits until the ring has published past `offset`, or the timeout.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        self.ring.wait_for(offset, timeout)
    }

    /// Calls `hook` after every publish (keep it short: it runs on the writer's thread).
    pub fn on_publish(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.ring.on_publish(hook)
    }

    /// A reader that tails the ring from `offset`.
    pub fn tail(&self, offset: u64) -> TailReader {
        TailReader::new(Arc::clone(&self.ring), offset)
    }
}
