//! [`RingLog`]: the memory-mapped ring of records, its appenders, its header
//! page and its durability.
//!
//! Appending a record:
//! 1. encode it (outside the ring);
//! 2. reserve `[offset, offset + len)` by a compare-and-swap on `reserved`
//!    (refused with [`LogError::Full`] if that would overwrite history the
//!    ring must keep, with [`LogError::RecordTooLarge`], or with
//!    [`LogError::Resetting`] while [`reset_to`](RingLog::reset_to) holds
//!    the ring), then a `Release` fence;
//! 3. copy the record but its commit word into the ring (atomic words, see
//!    `log/memory.rs`) — appenders copy in parallel;
//! 4. wait until every earlier record is published, then publish this one:
//!    store its commit word (`Release`) and advance `published` (`Release`).
//!
//! Publishing in offset order keeps everything below `published` complete:
//! readers read up to it, group commit syncs up to it.
//!
//! # Readers
//!
//! A reader loads the reset epoch and `published` (`Acquire`: every record
//! below it, commit word included, is visible), copies what it wants (a
//! record's header — its commit word too — through the same atomic word
//! loads as its payload), then issues an `Acquire` fence and re-checks the
//! epoch and that its start offset is still at or above the oldest one
//! (`reserved - capacity` in a ring that overwrites, `oldest` in one that
//! keeps history). Like a seqlock's: the writer's `Release` fence between
//! its reservation and its copy pairs with the reader's `Acquire` fence
//! after its copy, so a copy that saw any word a later writer stored also
//! sees that writer's reservation, and the reader returns
//! [`LogError::Lagged`] instead of the copy. A copy that passes the check
//! is exactly the published bytes; the checksum (which covers the offset)
//! then guards against damage, not against races. In a ring that keeps
//! history nothing below `published` is written while it is at or above
//! `oldest`, and raising `oldest` ([`RingLog::set_oldest`]) is seen by the
//! same fence pair (the writer read the new `oldest` before it reserved).
//! The same path serves both retentions. The protocol is model-checked with
//! loom (`log/loom_tests.rs`): two writers lapping a 64-byte ring, a
//! reader, a reset.
//!
//! # Resetting
//!
//! [`RingLog::reset_to`] (a follower's full resync) is exclusive with
//! appends: it sets the low bit of `reserved` (never set in an offset, all
//! 8-aligned), so later reservations fail with [`LogError::Resetting`],
//! waits until the appends that reserved before it have published, wipes,
//! and stores the new offsets before it clears the bit. It makes the reset
//! epoch odd while it runs; readers that overlap it get `Lagged`.
//!
//! # Recovery model
//!
//! The header's `synced` offset is the durable hint: every byte below it
//! was msynced before the header saying so was written. Above it, bytes are
//! page cache the kernel writes back when and in whatever order it likes.
//! After a process crash the page cache survives and the valid records form
//! a prefix of the stream (publication is in order); after a power loss any
//! subset of the pages written since the last msync may have reached the
//! disk, so past the hint a damaged record may be followed by valid ones.
//! Opening therefore:
//! - walks the records from `oldest`; an invalid record below the hint is
//!   [`LogError::Corrupt`] naming its offset;
//! - past the hint, ends the stream at the first invalid record (a torn
//!   tail, reported in [`RingLog::torn_bytes`] and in the stats), whatever
//!   follows it;
//! - clears every commit word of the cut tail that names its own position
//!   (a record of this lap) and msyncs them, so no cut record validates
//!   again once new records reach its offset (records of older laps name
//!   other offsets and never validate);
//! - starts the in-memory synced offset at the hint, not at the end found:
//!   bytes between them may be page cache an earlier process never flushed,
//!   and [`RingLog::synced`] (what followers ack as durable) claims only
//!   what this or an earlier process msynced. The next sync flushes from the
//!   hint.
//!
//! Tests simulate power cuts with `log/power.rs` (feature `internals`).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::file;
use super::memory::{fence, AtomicU64, RingMemory, SpinWait, HEADER_PAGE};
use super::record::{self, Header, HEADER_LEN, MUTATION_FORMAT};
use crate::config::{check_log_limits, Durability, LogConfig};
use crate::error::LogError;

/// Magic bytes at the start of each header slot.
const MAGIC: &[u8; 8] = b"RKVRING\0";
/// Version of the ring file layout. Version 2 added the record fraction to
/// the header; a version 1 file is refused with
/// [`LogError::UnsupportedFormat`].
pub const RING_FORMAT: u32 = 2;
/// The largest stream offset (2^63: more than 29 years of appends at
/// 10 GB/s). Offsets, and the ends of records, never pass it, so `offset +
/// capacity` (at most 2^48, `MAX_LOG_CAPACITY`) never overflows; a header,
/// a full sync or an append that would go beyond it is refused.
pub const MAX_OFFSET: u64 = 1 << 63;
/// Largest header sequence number accepted: a header is rewritten at most a
/// few thousand times a second, so a larger one is damage (and would
/// overflow on the next write).
const MAX_SEQ: u64 = 1 << 62;
/// Header slots: two copies, written alternately, the newest valid one wins.
const SLOT_LEN: usize = 2048;
/// Bytes of a slot covered by its checksum; the checksum follows them.
const SLOT_CRC_AT: usize = 144;
const SLOT_FIELDS: usize = SLOT_CRC_AT + 4;

/// What the header page says (see the format in `log/mod.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingHeader {
    /// Ring file layout version.
    pub format: u32,
    /// Mutation encoding version.
    pub mutation_format: u32,
    /// Data bytes.
    pub capacity: u64,
    /// Replication id of the history the stream belongs to (40 hex chars).
    pub replid: String,
    /// The previous replication id, or empty.
    pub prev_replid: String,
    /// Offset where the history switched from `prev_replid` to `replid`.
    pub switch_offset: u64,
    /// Oldest offset the ring keeps (a record boundary).
    pub oldest: u64,
    /// Offset up to which records were known durable at the last header write.
    pub synced: u64,
    /// The ring's record limit: payloads up to `capacity /
    /// max_record_fraction` less a record header. The file's value decides
    /// which records are valid, whatever a later configuration says.
    pub max_record_fraction: u64,
    seq: u64,
}

impl RingHeader {
    /// The header of a new, empty ring with a new replication id.
    fn fresh(config: &LogConfig) -> RingHeader {
        RingHeader {
            format: RING_FORMAT,
            mutation_format: MUTATION_FORMAT,
            capacity: config.capacity,
            replid: new_replid(),
            prev_replid: String::new(),
            switch_offset: 0,
            oldest: 0,
            synced: 0,
            max_record_fraction: config.max_record_fraction,
            seq: 0,
        }
    }

    fn encode(&self) -> [u8; SLOT_FIELDS] {
        let mut b = [0u8; SLOT_FIELDS];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&self.format.to_le_bytes());
        b[12..16].copy_from_slice(&self.mutation_format.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        put_id(&mut b[32..72], &self.replid);
        put_id(&mut b[72..112], &self.prev_replid);
        b[112..120].copy_from_slice(&self.switch_offset.to_le_bytes());
        b[120..128].copy_from_slice(&self.oldest.to_le_bytes());
        b[128..136].copy_from_slice(&self.synced.to_le_bytes());
        b[136..144].copy_from_slice(&self.max_record_fraction.to_le_bytes());
        let crc = crc32c::crc32c(&b[..SLOT_CRC_AT]);
        b[SLOT_CRC_AT..SLOT_FIELDS].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<RingHeader, LogError> {
        if &b[0..8] != MAGIC {
            return Err(LogError::BadHeader("not a ringkv ring file (bad magic)".into()));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        // The version first: other versions put the checksum elsewhere.
        let format = u32_at(8);
        if format != RING_FORMAT {
            return Err(LogError::UnsupportedFormat {
                found: format,
                supported: RING_FORMAT,
            });
        }
        if crc32c::crc32c(&b[..SLOT_CRC_AT]) != u32_at(SLOT_CRC_AT) {
            return Err(LogError::BadHeader("header checksum mismatch".into()));
        }
        let mutation_format = u32_at(12);
        if mutation_format != MUTATION_FORMAT {
            return Err(LogError::UnsupportedFormat {
                found: mutation_format,
                supported: MUTATION_FORMAT,
            });
        }
        Ok(RingHeader {
            format,
            mutation_format,
            seq: u64_at(16),
            capacity: u64_at(24),
            replid: get_id(&b[32..72]),
            prev_replid: get_id(&b[72..112]),
            switch_offset: u64_at(112),
            oldest: u64_at(120),
            synced: u64_at(128),
            max_record_fraction: u64_at(136),
        })
    }
}

impl RingHeader {
    /// Checks that the fields describe a ring this file of `file_len` bytes
    /// can be: the capacity is the file's (a multiple of 8, 64 KiB to
    /// 256 TiB), the record limit leaves room for records, the oldest offset
    /// is an aligned offset no larger than [`MAX_OFFSET`], the synced offset
    /// is no further than one ring beyond it, the sequence number is sane.
    /// A checksummed header that fails this is damage or forgery:
    /// [`LogError::BadHeader`], before any of the values is used.
    fn check(&self, file_len: u64) -> Result<(), LogError> {
        let bad = |msg: String| Err(LogError::BadHeader(msg));
        if (HEADER_PAGE as u64).checked_add(self.capacity) != Some(file_len) {
            return bad(format!(
                "file is {file_len} bytes but the header says capacity {}",
                self.capacity
            ));
        }
        check_log_limits(self.capacity, self.max_record_fraction).map_err(LogError::BadHeader)?;
        if !self.oldest.is_multiple_of(record::ALIGN) {
            return bad(format!("oldest offset {} is not aligned", self.oldest));
        }
        if self.oldest > MAX_OFFSET {
            return bad(format!(
                "oldest offset {} is beyond the largest offset {MAX_OFFSET}",
                self.oldest
            ));
        }
        // No overflow: oldest <= 2^63, capacity <= 2^48.
        if self.synced > self.oldest + self.capacity {
            return bad(format!(
                "synced offset {} is more than the capacity {} beyond the oldest offset {}",
                self.synced, self.capacity, self.oldest
            ));
        }
        if self.switch_offset > MAX_OFFSET {
            return bad(format!(
                "switch offset {} is beyond the largest offset {MAX_OFFSET}",
                self.switch_offset
            ));
        }
        if self.seq > MAX_SEQ {
            return bad(format!("sequence number {} is out of range", self.seq));
        }
        Ok(())
    }
}

/// A forged header page: each slot holds the given header with the given
/// sequence number (written with a valid checksum), or zeros. For the
/// fuzz targets, which feed the header checks values no ring writes.
#[cfg(feature = "internals")]
pub(crate) fn forge_header_page(slots: [Option<(&RingHeader, u64)>; 2]) -> Vec<u8> {
    let mut page = vec![0u8; HEADER_PAGE];
    for (i, slot) in slots.into_iter().enumerate() {
        if let Some((header, seq)) = slot {
            let mut h = header.clone();
            h.seq = seq;
            page[i * SLOT_LEN..i * SLOT_LEN + SLOT_FIELDS].copy_from_slice(&h.encode());
        }
    }
    page
}

fn put_id(dst: &mut [u8], id: &str) {
    let n = id.len().min(dst.len());
    dst[..n].copy_from_slice(&id.as_bytes()[..n]);
}

fn get_id(src: &[u8]) -> String {
    let end = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    String::from_utf8_lossy(&src[..end]).into_owned()
}

/// A new random replication id: 40 hex characters, like Redis'.
pub fn new_replid() -> String {
    use std::hash::BuildHasher;
    let mut id = String::with_capacity(40);
    let now = std::time::SystemTime::now();
    for i in 0..3u64 {
        let h = std::collections::hash_map::RandomState::new().hash_one((now, std::process::id(), i));
        id.push_str(&format!("{h:016x}"));
    }
    id.truncate(40);
    id
}

/// How the ring treats old history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep everything from `oldest`; appends that would overwrite it fail
    /// with [`LogError::Full`] (the write-ahead log).
    KeepHistory,
    /// Overwrite the oldest laps; readers behind get [`LogError::Lagged`]
    /// (a ring kept only for followers).
    Overwrite,
}

/// Records read from the ring by [`RingLog::read`].
#[derive(Debug, Clone, Default)]
pub struct ReadBatch {
    /// `(offset, payload)` of each record, in order.
    pub records: Vec<(u64, bytes::Bytes)>,
    /// The offset after the last record read (where to continue).
    pub next: u64,
}

/// Raw stream bytes read by [`RingLog::read_stream`]: whole records,
/// byte-identical to the ring's, starting at `start`.
#[derive(Debug, Clone, Default)]
pub struct RawBatch {
    /// Offset of the first byte.
    pub start: u64,
    /// The records' bytes (headers, payloads and padding).
    pub bytes: Vec<u8>,
    /// Number of records.
    pub records: usize,
}

impl RawBatch {
    /// Offset after the last byte (where the next read continues).
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// Checks that `bytes` are whole, valid records of a stream starting at
/// `start` (each header names its own offset, lengths fit, checksums match,
/// no payload over `max_payload`); returns the start offset of every record.
/// This is what a follower runs on bytes received from the network before
/// they touch its ring.
pub fn validate_stream(start: u64, bytes: &[u8], max_payload: usize) -> Result<Vec<u64>, LogError> {
    let mut offsets = Vec::new();
    let mut pos = 0usize;
    if !start.is_multiple_of(record::ALIGN) {
        return Err(LogError::Corrupt {
            offset: start,
            reason: "stream does not start at a record boundary".into(),
        });
    }
    while pos < bytes.len() {
        let Some(at) = start
            .checked_add(pos as u64)
            .filter(|at| at.checked_add(bytes.len() as u64).is_some())
        else {
            return Err(LogError::Corrupt {
                offset: start,
                reason: "offsets overflow".into(),
            });
        };
        let Some(head) = bytes.get(pos..pos + HEADER_LEN) else {
            return Err(LogError::Corrupt {
                offset: at,
                reason: "truncated record header".into(),
            });
        };
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(head);
        let h = Header::parse(&hb);
        if h.offset != at {
            return Err(LogError::Corrupt {
                offset: at,
                reason: format!("record claims offset {}", h.offset),
            });
        }
        if h.len as usize > max_payload {
            return Err(LogError::Corrupt {
                offset: at,
                reason: format!("record of {} bytes exceeds the limit of {max_payload}", h.len),
            });
        }
        let rec_len = record::record_len(h.len as usize) as usize;
        let Some(payload) = bytes.get(pos + HEADER_LEN..pos + HEADER_LEN + h.len as usize) else {
            return Err(LogError::Corrupt {
                offset: at,
                reason: "truncated record payload".into(),
            });
        };
        if record::checksum(at, payload, &[]) != h.crc {
            return Err(LogError::Corrupt {
                offset: at,
                reason: "checksum mismatch".into(),
            });
        }
        if pos + rec_len > bytes.len() {
            return Err(LogError::Corrupt {
                offset: at,
                reason: "truncated record padding".into(),
            });
        }
        offsets.push(at);
        pos += rec_len;
    }
    Ok(offsets)
}

struct SyncState {
    syncing: bool,
}

type Hook = Arc<dyn Fn() + Send + Sync>;

/// The memory-mapped ring log. See the module docs for the append protocol
/// and `log/mod.rs` for the file format.
pub struct RingLog {
    mem: RingMemory,
    file: Option<File>,
    path: Option<PathBuf>,
    config: LogConfig,
    /// Largest payload accepted (from the capacity and the record fraction).
    max_payload: usize,
    retention: Retention,
    /// End of the reserved region; its low bit ([`RESETTING`]) is set
    /// while `reset_to` holds the ring (appends are refused meanwhile).
    reserved: AtomicU64,
    /// Reset epoch: odd while `reset_to` runs, bumped again when it ends.
    /// A reader whose copy overlapped a reset sees it changed: `Lagged`.
    resets: AtomicU64,
    /// End of the contiguous published region.
    published: AtomicU64,
    /// Oldest offset kept (`KeepHistory`), or the oldest offset of the
    /// stream (`Overwrite`; the real bound then is `reserved - capacity`).
    oldest: AtomicU64,
    /// Offset up to which records are known msynced (by this ring, or by
    /// an earlier one as the header says).
    synced: AtomicU64,
    header: Mutex<RingHeader>,
    sync_state: Mutex<SyncState>,
    sync_done: Condvar,
    /// Set when an msync failed: every later append fails (no silent loss).
    poisoned: AtomicBool,
    waiters: AtomicUsize,
    wait_lock: Mutex<()>,
    wait_cv: Condvar,
    hooks: RwLock<Vec<Hook>>,
    hook_count: AtomicUsize,
    /// Bytes of torn tail cut when the ring was opened.
    pub(crate) torn_bytes: u64,
    /// What must live as long as the mapping: the data directory's lock
    /// file, so that no other process opens the directory while anything
    /// (a `LogView`, the sync thread) can still read or write this ring.
    held: Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>,
}

impl std::fmt::Debug for RingLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingLog")
            .field("path", &self.path)
            .field("capacity", &self.mem.capacity())
            .field("oldest", &self.oldest())
            .field("published", &self.published())
            .finish_non_exhaustive()
    }
}

impl RingLog {
    /// Keeps `resource` (the data directory's lock) alive as long as this
    /// ring: it is released only when the last handle to the ring goes.
    pub(crate) fn hold(&self, resource: Box<dyn std::any::Any + Send + Sync>) {
        self.held.lock().push(resource);
    }
}

#[cfg(not(loom))]
thread_local! {
    static ENCODE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
// Loom's threads share one OS thread: each needs its own buffer.
#[cfg(loom)]
loom::thread_local! {
    static ENCODE_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::new());
}

/// The low bit of `reserved`: set while [`RingLog::reset_to`] runs. Offsets
/// are multiples of [`record::ALIGN`], so no reservation end has it.
const RESETTING: u64 = 1;

impl RingLog {
    fn new(
        mem: RingMemory,
        file: Option<(File, PathBuf)>,
        config: LogConfig,
        retention: Retention,
        header: RingHeader,
        end: u64,
        torn_bytes: u64,
    ) -> Result<RingLog, LogError> {
        let max_payload = payload_limit(mem.capacity(), config.max_record_fraction).ok_or_else(|| {
            LogError::Config(format!(
                "max_record_fraction {} leaves no room for a record in a ring of {}",
                config.max_record_fraction,
                mem.capacity()
            ))
        })?;
        let (file, path) = file.unzip();
        Ok(RingLog {
            mem,
            max_payload,
            file,
            path,
            retention,
            reserved: AtomicU64::new(end),
            resets: AtomicU64::new(0),
            published: AtomicU64::new(end),
            oldest: AtomicU64::new(header.oldest),
            // Only what the header says was msynced is durable: bytes up to
            // `end` may sit unflushed in the page cache, left by a process
            // that exited without syncing them. The next sync flushes from here.
            synced: AtomicU64::new(header.synced.min(end)),
            header: Mutex::new(header),
            sync_state: Mutex::new(SyncState { syncing: false }),
            sync_done: Condvar::new(),
            poisoned: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            held: Mutex::new(Vec::new()),
            wait_cv: Condvar::new(),
            hooks: RwLock::new(Vec::new()),
            hook_count: AtomicUsize::new(0),
            torn_bytes,
            config,
        })
    }

    /// A ring in anonymous memory (no persistence), overwriting old laps.
    /// Only an engine appends to a ring (`EngineBuilder::anonymous_log`
    /// makes one of these its sink); a standalone ring can be read.
    ///
    /// ```
    /// use ringkv::log::{LogConfig, RingLog};
    /// let ring = RingLog::anonymous(LogConfig { capacity: 1 << 16, ..LogConfig::default() })?;
    /// assert_eq!((ring.oldest(), ring.published()), (0, 0));
    /// assert!(ring.read(0, 1 << 20)?.records.is_empty());
    /// # Ok::<(), ringkv::log::LogError>(())
    /// ```
    pub fn anonymous(config: LogConfig) -> Result<RingLog, LogError> {
        Self::anonymous_with(config, Retention::Overwrite)
    }

    /// A ring of `capacity` data bytes (any multiple of 8, far below the
    /// configured minimum) with records of up to half of it, for the loom
    /// model of the protocol (`log/loom_tests.rs`): the same `RingLog`,
    /// only small enough for a model checker to lap.
    #[cfg(all(test, loom))]
    pub(crate) fn model(capacity: u64, retention: Retention) -> Result<RingLog, LogError> {
        let config = LogConfig {
            capacity,
            max_record_fraction: 2,
            ..LogConfig::default()
        };
        let mem = RingMemory::anonymous(capacity).map_err(|e| LogError::io("the model's memory", e))?;
        let header = RingHeader::fresh(&config);
        Self::new(mem, None, config, retention, header, 0, 0)
    }

    pub(crate) fn anonymous_with(config: LogConfig, retention: Retention) -> Result<RingLog, LogError> {
        config.validate()?;
        let mem = RingMemory::anonymous(config.capacity).map_err(|e| LogError::io("mapping anonymous memory", e))?;
        let header = RingHeader::fresh(&config);
        Self::new(mem, None, config, retention, header, 0, 0)
    }

    /// Creates a new ring file at `path` (which must not exist), keeping
    /// history. Every block of the file is allocated first (`log/file.rs`):
    /// a filesystem without room for it is a [`LogError::Io`] saying "no
    /// space", not a SIGBUS at a later write. The file, its header and the
    /// directory entry are synced before this returns; on an error the file
    /// is removed.
    pub fn create(path: &Path, config: LogConfig) -> Result<RingLog, LogError> {
        config.validate()?;
        // No overflow: the capacity is at most MAX_LOG_CAPACITY.
        let len = HEADER_PAGE as u64 + config.capacity;
        let file = file::create_allocated(path, len)?;
        Self::create_in(file, path, config).inspect_err(|_| file::remove_half_made(path))
    }

    fn create_in(file: File, path: &Path, config: LogConfig) -> Result<RingLog, LogError> {
        let mem = RingMemory::map_file(&file, config.capacity).map_err(|e| LogError::io("mapping the ring file", e))?;
        let header = RingHeader::fresh(&config);
        let ring = Self::new(
            mem,
            Some((file, path.to_path_buf())),
            config,
            Retention::KeepHistory,
            header,
            0,
            0,
        )?;
        ring.write_header(|_| {})?;
        ring.file_sync()?;
        if let Some(f) = &ring.file {
            f.sync_all()
                .map_err(|e| LogError::io(format!("fsync of {}", path.display()), e))?;
        }
        file::sync_parent_dir(path)?;
        #[cfg(feature = "internals")]
        if let (Some(t), Some(f)) = (super::power::tracker_for(path), &ring.file) {
            ring.mem
                .track(t, f)
                .map_err(|e| LogError::io("attaching the power-cut tracker", e))?;
        }
        Ok(ring)
    }

    /// Opens an existing ring file: reads the header, then finds the end of
    /// the stream by validating records from the oldest kept offset (see the
    /// recovery model in the module docs). Past the header's synced offset,
    /// the first invalid record ends the stream: the tail is cut (its
    /// records' commit words cleared and msynced) and reported in
    /// [`RingLog::torn_bytes`]; an invalid record below it is
    /// [`LogError::Corrupt`]. The capacity and the record limit
    /// come from the file: `config.capacity` is ignored, and a
    /// `config.max_record_fraction` other than the file's is logged and
    /// ignored (records written under the file's limit stay valid). Blocks
    /// the file lacks (a copy may have made it sparse) are allocated first;
    /// no room for them is a [`LogError::Io`] saying "no space", and the
    /// file is left as it was.
    pub fn open(path: &Path, mut config: LogConfig) -> Result<RingLog, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| LogError::io("reading the ring file size", e))?
            .len();
        if len < HEADER_PAGE as u64 {
            return Err(LogError::BadHeader(format!("file of {len} bytes has no header page")));
        }
        let header = read_header_slots(&file)?;
        header.check(len)?;
        // A copied file may be sparse: give it its blocks (or fail cleanly)
        // before any write can fault on a hole.
        file::allocate_existing(&file, path, len)?;
        if config.max_record_fraction != header.max_record_fraction {
            tracing::warn!(
                path = %path.display(),
                file = header.max_record_fraction,
                configured = config.max_record_fraction,
                "ring log max_record_fraction differs from the configuration; the file's limit is used"
            );
        }
        // The file's own limits decide which records are valid.
        config.capacity = header.capacity;
        config.max_record_fraction = header.max_record_fraction;
        let mem = RingMemory::map_file(&file, config.capacity).map_err(|e| LogError::io("mapping the ring file", e))?;
        #[cfg(feature = "internals")]
        if let Some(t) = super::power::tracker_for(path) {
            mem.track(t, &file)
                .map_err(|e| LogError::io("attaching the power-cut tracker", e))?;
        }
        let max_payload = payload_limit(config.capacity, config.max_record_fraction)
            .ok_or_else(|| LogError::BadHeader("the record limit leaves no room for a record".into()))?;
        let (end, torn) = find_end(&mem, &header, max_payload)?;
        // No sum overflows (see `find_end`).
        let (cleared, furthest) = wipe_cut_tail(&mem, end, header.oldest + mem.capacity(), max_payload)?;
        let torn = torn.max(furthest - end);
        if torn > 0 || cleared > 0 {
            tracing::warn!(
                path = %path.display(),
                offset = end,
                bytes = torn,
                cleared_records = cleared,
                "ring log: cut a torn tail"
            );
        }
        let ring = Self::new(
            mem,
            Some((file, path.to_path_buf())),
            config,
            Retention::KeepHistory,
            header,
            end,
            torn,
        )?;
        Ok(ring)
    }

    /// The header as last written.
    pub fn header(&self) -> RingHeader {
        self.header.lock().clone()
    }

    /// The replication id of this ring's history.
    pub fn replid(&self) -> String {
        self.header.lock().replid.clone()
    }

    /// Data bytes of the ring.
    pub fn capacity(&self) -> u64 {
        self.mem.capacity()
    }

    /// Offset after the last published record: where the next one will be.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Oldest offset still readable.
    pub fn oldest(&self) -> u64 {
        let kept = self.oldest.load(Ordering::Acquire);
        match self.retention {
            Retention::KeepHistory => kept,
            Retention::Overwrite => kept.max(self.reserved_end().saturating_sub(self.capacity())),
        }
    }

    /// End of the reserved region (without the [`RESETTING`] bit).
    fn reserved_end(&self) -> u64 {
        self.reserved.load(Ordering::Acquire) & !RESETTING
    }

    /// Bytes of torn tail that were cut when this ring was opened.
    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    /// Offset up to which records are known durable: msynced by this ring
    /// or, for a reopened file, below the synced offset its header recorded.
    pub fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Lets the ring drop history below `offset` (a record boundary, once a
    /// snapshot covers it).
    pub(crate) fn set_oldest(&self, offset: u64) -> Result<(), LogError> {
        let offset = offset.min(self.published());
        // The header goes to disk before any byte below `offset` may be
        // overwritten: recovery starts reading at the header's oldest.
        self.write_header(|h| h.oldest = h.oldest.max(offset))?;
        self.file_sync()?;
        self.oldest.fetch_max(offset, Ordering::AcqRel);
        Ok(())
    }

    /// Largest payload accepted: `capacity / max_record_fraction` less a
    /// record header, and at most `u32::MAX` (a record's length field).
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Appends one record with this payload (kind byte and body); returns its
    /// offset. Safe to call from many threads at once. (The engine appends
    /// encoded mutations; raw payloads come from tests and benches.)
    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    pub(crate) fn append(&self, payload: &[u8]) -> Result<u64, LogError> {
        self.append_with(payload.len(), |buf| buf.extend_from_slice(payload))
    }

    /// Appends an encoded mutation; returns its offset and the end offset.
    pub(crate) fn append_mutation(&self, m: &crate::mutation::Mutation) -> Result<(u64, u64), LogError> {
        self.append_payload_with(|buf| record::encode_mutation(m, buf))
    }

    /// Appends the record whose payload `encode` writes (once, into this
    /// thread's buffer, then copied into the reserved space): the hot path
    /// encodes a mutation from borrowed parts (`record::encode_set`) this
    /// way. Returns its offset and the end offset.
    pub(crate) fn append_payload_with(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(u64, u64), LogError> {
        ENCODE_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            buf.extend_from_slice(&[0u8; HEADER_LEN]);
            encode(&mut buf);
            let r = self.append_encoded(&mut buf);
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            r
        })
    }

    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    fn append_with(&self, len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Result<u64, LogError> {
        ENCODE_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            buf.reserve(HEADER_LEN + len);
            buf.extend_from_slice(&[0u8; HEADER_LEN]);
            fill(&mut buf);
            let r = self.append_encoded(&mut buf).map(|(at, _)| at);
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            r
        })
    }

    /// `buf` is HEADER_LEN placeholder bytes followed by the payload.
    fn append_encoded(&self, buf: &mut Vec<u8>) -> Result<(u64, u64), LogError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(LogError::Poisoned);
        }
        let payload_len = buf.len() - HEADER_LEN;
        if payload_len > self.max_payload() {
            return Err(LogError::RecordTooLarge {
                len: payload_len,
                max: self.max_payload(),
            });
        }
        let len = record::record_len(payload_len);
        buf.resize(len as usize, 0);
        let offset = self.reserve(len)?;
        let h = record::header(offset, &buf[HEADER_LEN..HEADER_LEN + payload_len]);
        // The commit word (first 8 bytes) stays whatever it was until publish.
        buf[8..HEADER_LEN].copy_from_slice(&h[8..]);
        if let Err(e) = self.mem.write(offset + 8, &buf[8..]) {
            // Cannot happen while records are shorter than the ring (the
            // limit above); if it did, later appenders would wait for this
            // reservation forever: give it up and refuse further appends.
            self.poisoned.store(true, Ordering::Release);
            self.abandon(offset, offset + len);
            return Err(e);
        }
        self.publish(offset, offset + len);
        Ok((offset, offset + len))
    }

    fn reserve(&self, len: u64) -> Result<u64, LogError> {
        let cap = self.capacity();
        let mut cur = self.reserved.load(Ordering::Relaxed);
        loop {
            if cur & RESETTING != 0 {
                return Err(LogError::Resetting);
            }
            let Some(end) = cur.checked_add(len).filter(|&end| end <= MAX_OFFSET) else {
                return Err(LogError::OutOfBounds {
                    offset: cur,
                    reason: format!("a record of {len} bytes would pass the largest offset {MAX_OFFSET}"),
                });
            };
            if self.retention == Retention::KeepHistory {
                let oldest = self.oldest.load(Ordering::Acquire);
                if end - oldest > cap {
                    return Err(LogError::Full {
                        needed: len,
                        free: (cap + oldest).saturating_sub(cur),
                    });
                }
            }
            match self
                .reserved
                .compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    // Orders the reservation before every word this writer
                    // copies into the ring: a reader whose copy sees one of
                    // them also sees `reserved` moved (its `Acquire` fence
                    // after the copy pairs with this one), and knows it was
                    // lapped. The CAS's own release orders only what came
                    // before it.
                    fence(Ordering::Release);
                    return Ok(cur);
                }
                Err(actual) => cur = actual,
            }
        }
    }

    fn publish(&self, offset: u64, end: u64) {
        // Records publish in offset order: wait for the previous ones (their
        // copies are running on other threads, no lock is held meanwhile but
        // the writers' shard locks).
        let spin = SpinWait::new();
        while self.published.load(Ordering::Acquire) != offset {
            spin.snooze();
        }
        // Both `Release`: the copy (sequenced before) is visible to whoever
        // acquires either the commit word or `published`.
        self.mem.store_commit(offset);
        self.published.store(end, Ordering::Release);
        self.notify_published();
    }

    /// Moves `published` over a reservation whose bytes were not written,
    /// without storing its commit word: readers find no record there
    /// ([`LogError::Corrupt`]), and neither does recovery.
    fn abandon(&self, offset: u64, end: u64) {
        let spin = SpinWait::new();
        while self.published.load(Ordering::Acquire) != offset {
            spin.snooze();
        }
        self.published.store(end, Ordering::Release);
        self.notify_published();
    }

    fn notify_published(&self) {
        if self.waiters.load(Ordering::Acquire) > 0 {
            let _guard = self.wait_lock.lock();
            self.wait_cv.notify_all();
        }
        if self.hook_count.load(Ordering::Acquire) > 0 {
            for hook in self.hooks.read().iter() {
                hook();
            }
        }
    }

    /// Reads whole records from `from` (a record boundary), up to about
    /// `max_bytes` (at least one record if one is published). Records are
    /// copied out and validated after the copy: a reader never sees a torn
    /// or stale record. A position no longer in the ring is
    /// [`LogError::Lagged`].
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<ReadBatch, LogError> {
        let epoch = self.begin_read(from)?;
        let published = self.published();
        let mut records = Vec::new();
        let mut pos = from;
        let mut total = 0usize;
        if from > published {
            return Err(LogError::Corrupt {
                offset: from,
                reason: format!("read beyond the end of the log ({published})"),
            });
        }
        while pos < published && (records.is_empty() || total < max_bytes) {
            let h = self.header_at(from, epoch, pos)?;
            let mut payload = vec![0u8; h.len as usize];
            self.mem.read(pos + HEADER_LEN as u64, &mut payload)?;
            // Seqlock-style validation: the copy is good only if no writer
            // lapped `from` (and no reset ran) while we copied.
            self.validate_copy(from, epoch)?;
            if record::checksum(pos, &payload, &[]) != h.crc {
                return Err(LogError::Corrupt {
                    offset: pos,
                    reason: "checksum mismatch".into(),
                });
            }
            total += payload.len();
            let len = record::record_len(payload.len());
            records.push((pos, bytes::Bytes::from(payload)));
            pos += len;
        }
        Ok(ReadBatch { records, next: pos })
    }

    /// The header of the published record at `pos`, for a reader that
    /// started at `from` in reset epoch `epoch`: a header that does not name
    /// `pos` or is too long is `Lagged` if a writer lapped `from` (or a
    /// reset ran) meanwhile, else `Corrupt`, as is a `pos` that is not a
    /// record boundary. The header is its two words, the commit word and
    /// the length/checksum word, each loaded atomically
    /// (`RingMemory::load_words`), never part of a byte copy; the caller
    /// validates what it copies after them, and with it these (one fence
    /// covers both).
    fn header_at(&self, from: u64, epoch: u64, pos: u64) -> Result<Header, LogError> {
        let Some([commit, sizes]) = self.mem.load_words::<2>(pos) else {
            return Err(LogError::Corrupt {
                offset: pos,
                reason: "not a record boundary".into(),
            });
        };
        let mut head = [0u8; HEADER_LEN];
        head[..8].copy_from_slice(&commit.to_ne_bytes());
        head[8..].copy_from_slice(&sizes.to_ne_bytes());
        let h = Header::parse(&head);
        if h.offset != pos || h.len as usize > self.max_payload() {
            self.validate_copy(from, epoch)?;
            return Err(LogError::Corrupt {
                offset: pos,
                reason: "bad record header".into(),
            });
        }
        Ok(h)
    }

    /// Reads whole records from `from` (a record boundary) as raw stream
    /// bytes, up to about `max_bytes` (at least one record if one is
    /// published): what a primary sends to its followers. The copy is
    /// validated after it is taken, as in [`RingLog::read`].
    pub fn read_stream(&self, from: u64, max_bytes: usize) -> Result<RawBatch, LogError> {
        let epoch = self.begin_read(from)?;
        let published = self.published();
        if from > published {
            return Err(LogError::Corrupt {
                offset: from,
                reason: format!("read beyond the end of the log ({published})"),
            });
        }
        // Find record boundaries in place (headers only), then copy once.
        let mut end = from;
        while end < published && (end == from || ((end - from) as usize) < max_bytes) {
            end += record::record_len(self.header_at(from, epoch, end)?.len as usize);
        }
        let mut bytes = vec![0u8; (end - from) as usize];
        self.mem.read(from, &mut bytes)?;
        self.validate_copy(from, epoch)?;
        let records = validate_stream(from, &bytes, self.max_payload())?.len();
        Ok(RawBatch {
            start: from,
            bytes,
            records,
        })
    }

    /// Appends raw stream bytes received from a primary at the same offsets
    /// (a follower's ring is byte-identical to its primary's). `bytes` must
    /// be whole records starting at `start` (checked with
    /// [`validate_stream`]). Bytes below [`published`](Self::published)
    /// must equal this ring's, else [`LogError::Divergent`]; a start beyond
    /// it is [`LogError::Gap`]. Returns the new end of the stream. Meant for
    /// a single appender (a follower's replication task); local appends
    /// must not run meanwhile.
    pub(crate) fn append_stream(&self, start: u64, bytes: &[u8]) -> Result<u64, LogError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(LogError::Poisoned);
        }
        let offsets = validate_stream(start, bytes, self.max_payload())?;
        if self.reserved.load(Ordering::Acquire) & RESETTING != 0 {
            return Err(LogError::Resetting);
        }
        let end = self.published();
        if start > end {
            return Err(LogError::Gap { start, end });
        }
        // The part this ring already holds must be identical.
        let overlap = ((end - start) as usize).min(bytes.len());
        if overlap > 0 {
            if start < self.oldest() {
                return Err(LogError::Lagged { oldest: self.oldest() });
            }
            let mut mine = vec![0u8; overlap];
            self.read_raw(start, &mut mine)?;
            if let Some(i) = mine.iter().zip(bytes).position(|(a, b)| a != b) {
                return Err(LogError::Divergent {
                    offset: start + i as u64,
                });
            }
            if overlap == bytes.len() {
                return Ok(end);
            }
            if !offsets.contains(&end) {
                return Err(LogError::Divergent { offset: end });
            }
        }
        let new = &bytes[overlap..];
        let len = new.len() as u64;
        if end.checked_add(len).is_none_or(|e| e > MAX_OFFSET) {
            return Err(LogError::OutOfBounds {
                offset: end,
                reason: format!("{len} bytes would pass the largest offset {MAX_OFFSET}"),
            });
        }
        if len > self.capacity() {
            return Err(LogError::RecordTooLarge {
                len: new.len(),
                max: self.capacity() as usize,
            });
        }
        if self.retention == Retention::KeepHistory {
            let oldest = self.oldest.load(Ordering::Acquire);
            if end + len - oldest > self.capacity() {
                return Err(LogError::Full {
                    needed: len,
                    free: (self.capacity() + oldest).saturating_sub(end),
                });
            }
        }
        if let Err(actual) = self
            .reserved
            .compare_exchange(end, end + len, Ordering::AcqRel, Ordering::Relaxed)
        {
            if actual & RESETTING != 0 {
                return Err(LogError::Resetting);
            }
            return Err(LogError::Corrupt {
                offset: end,
                reason: "a local append raced a replicated one".into(),
            });
        }
        // As in `reserve`: the reservation before the copy, for readers
        // of a lapping ring.
        fence(Ordering::Release);
        // Everything but the commit words first, then the commit words in
        // order (each record becomes valid only when its word is stored).
        let mut rest = new;
        let mut at = end;
        let starts: Vec<u64> = offsets.into_iter().filter(|&o| o >= end).collect();
        for (i, &o) in starts.iter().enumerate() {
            let next = starts.get(i + 1).copied().unwrap_or(end + len);
            let n = (next - o) as usize;
            if let Err(e) = self.copy_streamed(o, &rest[8..n]) {
                // Cannot happen (the bytes fit the ring, checked above).
                // Nothing is published: give the reservation back (this is
                // the only appender) and refuse further appends.
                self.poisoned.store(true, Ordering::Release);
                // If a reset closed the ring since, the reservation cannot
                // be given back: the reset waits for `published` to reach
                // its end, so move it there without storing a record.
                if self
                    .reserved
                    .compare_exchange(end + len, end, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    self.abandon(end, end + len);
                }
                return Err(e);
            }
            rest = &rest[n..];
            at = next;
        }
        debug_assert_eq!(at, end + len);
        for &o in &starts {
            self.mem.store_commit(o);
        }
        self.published.store(end + len, Ordering::Release);
        self.notify_published();
        Ok(end + len)
    }

    /// Copies a streamed record's bytes after its commit word (from
    /// `offset + 8` on): the follower's append, where the `replica::append`
    /// failpoint injects a failure.
    fn copy_streamed(&self, offset: u64, bytes: &[u8]) -> Result<(), LogError> {
        fail_point!("replica::append", |arg| Err(LogError::io(
            format!("copying the primary's record at offset {offset} into the ring"),
            crate::failpoints::injected(arg)
        )));
        self.mem.write(offset + 8, bytes)
    }

    /// Starts the stream over at `offset` with an empty ring and this
    /// history (a follower's full resync: its ring then continues the
    /// primary's stream from the snapshot's offset). Bytes this ring held at
    /// offsets from `offset` on are wiped first, so a crash cannot revive
    /// them as part of the new history.
    ///
    /// Exclusive with appends, whatever the callers do: it closes the ring
    /// to new reservations (appends, local or replicated, fail with
    /// [`LogError::Resetting`] until it returns), waits for the appends that
    /// reserved before it to publish, and only then wipes and moves the
    /// offsets. A second reset meanwhile fails with `Resetting` too. Readers
    /// that overlap it get [`LogError::Lagged`]. If wiping or writing the
    /// header fails, the error is returned and the ring reopens to appends
    /// where it was (its wiped bytes then read as `Corrupt`).
    pub(crate) fn reset_to(
        &self,
        offset: u64,
        replid: &str,
        prev_replid: &str,
        switch_offset: u64,
    ) -> Result<(), LogError> {
        self.check_reset_offset(offset)?;
        // Close the ring: no reservation succeeds from here on.
        let old_end = self.reserved.fetch_or(RESETTING, Ordering::AcqRel);
        if old_end & RESETTING != 0 {
            return Err(LogError::Resetting);
        }
        // Readers from now on refuse their copies; the fence orders this
        // (and the closing) before the wipe's stores, as a writer's
        // reservation before its copy.
        self.resets.fetch_add(1, Ordering::AcqRel);
        fence(Ordering::Release);
        // Appends that reserved before the ring closed publish (or abandon)
        // up to `old_end`; none can start.
        let spin = SpinWait::new();
        while self.published.load(Ordering::Acquire) != old_end {
            spin.snooze();
        }
        let result = self.wipe_and_restart(offset, old_end, replid, prev_replid, switch_offset);
        match result {
            Ok(()) => {
                self.oldest.store(offset, Ordering::Release);
                self.published.store(offset, Ordering::Release);
                self.synced.store(offset, Ordering::Release);
                // Reopens the ring (the bit is clear in `offset`).
                self.reserved.store(offset, Ordering::Release);
            }
            Err(_) => self.reserved.store(old_end, Ordering::Release),
        }
        self.resets.fetch_add(1, Ordering::Release);
        result
    }

    /// The part of [`reset_to`](Self::reset_to) that runs with the ring
    /// closed: wipes `[offset, old_end)` (at most one ring) and writes the
    /// new history's header.
    fn wipe_and_restart(
        &self,
        offset: u64,
        old_end: u64,
        replid: &str,
        prev_replid: &str,
        switch_offset: u64,
    ) -> Result<(), LogError> {
        if old_end > offset {
            let span = (old_end - offset).min(self.capacity());
            let zeros = vec![0u8; span.min(1 << 20) as usize];
            let mut done = 0;
            while done < span {
                let n = (span - done).min(zeros.len() as u64);
                self.mem.write(offset + done, &zeros[..n as usize])?;
                done += n;
            }
            self.mem
                .flush_data(offset, offset + span)
                .map_err(|e| LogError::io("msync of the wiped ring", e))?;
        }
        self.write_header(|h| {
            h.replid = replid.to_string();
            h.prev_replid = prev_replid.to_string();
            h.switch_offset = switch_offset;
            h.oldest = offset;
            h.synced = offset;
        })?;
        self.file_sync()
    }

    /// Checks that the stream may restart at `offset` (what
    /// [`reset_to`](Self::reset_to) checks, for callers that must know
    /// before they change anything else): a record boundary
    /// ([`LogError::Config`] otherwise), no larger than [`MAX_OFFSET`]
    /// ([`LogError::OutOfBounds`]).
    pub(crate) fn check_reset_offset(&self, offset: u64) -> Result<(), LogError> {
        if offset > MAX_OFFSET {
            return Err(LogError::OutOfBounds {
                offset,
                reason: format!("a stream cannot restart beyond the largest offset {MAX_OFFSET}"),
            });
        }
        if !offset.is_multiple_of(record::ALIGN) {
            return Err(LogError::Config(format!(
                "reset offset {offset} is not a record boundary"
            )));
        }
        Ok(())
    }

    /// Records this ring's replication history: its id, and the previous id
    /// with the offset where the history switched (after a promotion, or
    /// when a follower continues a promoted primary's stream).
    ///
    /// A history whose header cannot be msynced did not start: the header
    /// (in memory, and in the mapped page the kernel may still write back)
    /// names the old one again, so that a retry (a promotion's) links its
    /// new history to the old one, and a reopen follows the old one.
    pub(crate) fn set_history(&self, replid: &str, prev_replid: &str, switch_offset: u64) -> Result<(), LogError> {
        let before = self.header();
        self.write_header(|h| {
            h.replid = replid.to_string();
            h.prev_replid = prev_replid.to_string();
            h.switch_offset = switch_offset;
        })?;
        if let Err(e) = self.file_sync() {
            let restored = self.write_header(|h| {
                h.replid = before.replid;
                h.prev_replid = before.prev_replid;
                h.switch_offset = before.switch_offset;
            });
            if let Err(r) = restored {
                tracing::error!(error = %r, "could not restore the ring header's history after a failed msync");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Copies the raw stream bytes `[from, from + buf.len())` (must be
    /// published); errors if they left the ring meanwhile.
    pub fn read_raw(&self, from: u64, buf: &mut [u8]) -> Result<(), LogError> {
        let published = self.published();
        if from.checked_add(buf.len() as u64).is_none_or(|end| end > published) {
            return Err(LogError::Corrupt {
                offset: from,
                reason: format!(
                    "raw read of {} bytes beyond the end of the log ({published})",
                    buf.len()
                ),
            });
        }
        let epoch = self.begin_read(from)?;
        self.mem.read(from, buf)?;
        self.validate_copy(from, epoch)
    }

    /// What a reader checks before it copies from `from`: no reset is
    /// running and `from` is still in the ring. Returns the reset epoch to
    /// give [`validate_copy`](Self::validate_copy).
    fn begin_read(&self, from: u64) -> Result<u64, LogError> {
        let epoch = self.resets.load(Ordering::Acquire);
        if epoch % 2 == 1 {
            return Err(LogError::Lagged { oldest: self.oldest() });
        }
        self.check_not_lapped(from)?;
        Ok(epoch)
    }

    /// After a copy from `from` (atomic word loads, possibly racing a
    /// lapping writer or a reset): whether it may be used. The `Acquire`
    /// fence pairs with the `Release` fence every writer issues between its
    /// reservation and its copy (and `reset_to` between closing the ring
    /// and wiping it): if the copy saw any word such a writer stored, the
    /// loads below see its reservation (or the reset), and the copy is
    /// refused as `Lagged`.
    fn validate_copy(&self, from: u64, epoch: u64) -> Result<(), LogError> {
        fence(Ordering::Acquire);
        if self.resets.load(Ordering::Relaxed) != epoch {
            return Err(LogError::Lagged { oldest: self.oldest() });
        }
        self.check_not_lapped(from)
    }

    fn check_not_lapped(&self, from: u64) -> Result<(), LogError> {
        let oldest = self.oldest();
        if from < oldest {
            return Err(LogError::Lagged { oldest });
        }
        Ok(())
    }

    /// Blocks until a record is published at or after `offset` (i.e.
    /// `published() > offset`) or the timeout passes; returns whether data is there.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        if self.published() > offset {
            return true;
        }
        let deadline = Instant::now() + timeout;
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let mut guard = self.wait_lock.lock();
        let ready = loop {
            if self.published() > offset {
                break true;
            }
            if self.wait_cv.wait_until(&mut guard, deadline).timed_out() {
                break self.published() > offset;
            }
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        ready
    }

    /// Registers a hook called (on the appending thread, after publication)
    /// whenever records are published: how an async task gets woken without
    /// the engine depending on a runtime (e.g. a hook that calls
    /// `tokio::sync::Notify::notify_one`). Hooks must be quick and must not
    /// append to this ring.
    pub fn on_publish(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.hooks.write().push(Arc::new(hook));
        self.hook_count.fetch_add(1, Ordering::AcqRel);
    }

    /// Forces every published record (and the header) to disk.
    pub fn sync(&self) -> Result<(), LogError> {
        self.sync_to(self.published())
    }

    /// Group commit: returns once `end` is durable, syncing if no other
    /// thread is; threads waiting meanwhile share the next sync.
    pub fn sync_to(&self, end: u64) -> Result<(), LogError> {
        if self.file.is_none() {
            return Ok(());
        }
        let mut state = self.sync_state.lock();
        loop {
            if self.poisoned.load(Ordering::Acquire) {
                return Err(LogError::Poisoned);
            }
            if self.synced() >= end {
                return Ok(());
            }
            if state.syncing {
                self.sync_done.wait(&mut state);
                continue;
            }
            state.syncing = true;
            drop(state);
            let from = self.synced();
            let target = self.published();
            let result = self
                .mem
                .flush_data(from, target)
                .map_err(|e| LogError::io("msync of the ring", e))
                .and_then(|()| self.write_header(|h| h.synced = h.synced.max(target)))
                .and_then(|()| {
                    self.mem
                        .flush_header()
                        .map_err(|e| LogError::io("msync of the ring header", e))
                });
            state = self.sync_state.lock();
            state.syncing = false;
            match result {
                Ok(()) => {
                    self.synced.fetch_max(target, Ordering::AcqRel);
                }
                Err(e) => {
                    tracing::error!(error = %e, "ring log sync failed: the log is poisoned, writes will fail");
                    self.poisoned.store(true, Ordering::Release);
                    self.sync_done.notify_all();
                    return Err(e);
                }
            }
            self.sync_done.notify_all();
        }
    }

    /// The configured durability.
    pub fn durability(&self) -> Durability {
        self.config.durability
    }

    /// The path of the ring file, if it has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn write_header(&self, change: impl FnOnce(&mut RingHeader)) -> Result<(), LogError> {
        fail_point!("ring::header_write", |arg| Err(LogError::io(
            "writing the ring header",
            crate::failpoints::injected(arg)
        )));
        let mut h = self.header.lock();
        change(&mut h);
        // At most MAX_SEQ when read (`RingHeader::check`); a header is
        // rewritten far less than 2^62 times in a ring's life.
        h.seq = h.seq.saturating_add(1);
        let slot = (h.seq % 2) as usize * SLOT_LEN;
        self.mem.write_header(slot, &h.encode());
        Ok(())
    }

    fn file_sync(&self) -> Result<(), LogError> {
        if self.file.is_some() {
            self.mem
                .flush_header()
                .map_err(|e| LogError::io("msync of the ring header", e))?;
        }
        Ok(())
    }
}

/// Reads both header slots and returns the newest valid one.
fn read_header_slots(file: &File) -> Result<RingHeader, LogError> {
    use std::os::unix::fs::FileExt;
    let mut page = [0u8; HEADER_PAGE];
    file.read_exact_at(&mut page, 0)
        .map_err(|e| LogError::io("reading the ring header", e))?;
    let a = RingHeader::decode(&page[..SLOT_LEN]);
    let b = RingHeader::decode(&page[SLOT_LEN..]);
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(if a.seq >= b.seq { a } else { b }),
        (Ok(h), Err(_)) | (Err(_), Ok(h)) => Ok(h),
        (Err(e @ LogError::UnsupportedFormat { .. }), _) | (_, Err(e @ LogError::UnsupportedFormat { .. })) => Err(e),
        (Err(e), Err(_)) => Err(e),
    }
}

/// The largest payload of a ring of `capacity` bytes with this record
/// fraction: `capacity / max_record_fraction` less a record header, at most
/// `u32::MAX` (a record's length field); `None` if that leaves nothing.
fn payload_limit(capacity: u64, max_record_fraction: u64) -> Option<usize> {
    let limit = capacity
        .checked_div(max_record_fraction)?
        .checked_sub(HEADER_LEN as u64)
        .filter(|&n| n > 0)?;
    usize::try_from(limit.min(u64::from(u32::MAX))).ok()
}

/// Validates the record at `pos`; returns its total length.
/// `payload` is scratch space, reused from record to record (opening a
/// ring checks every record: no allocation each).
fn check_record(mem: &RingMemory, pos: u64, max_payload: usize, payload: &mut Vec<u8>) -> Option<u64> {
    if mem.load_commit(pos) != pos {
        return None;
    }
    let mut head = [0u8; HEADER_LEN];
    mem.read(pos, &mut head).ok()?;
    let h = Header::parse(&head);
    if h.len as usize > max_payload {
        return None;
    }
    payload.resize(h.len as usize, 0);
    mem.read(pos + HEADER_LEN as u64, payload).ok()?;
    (record::checksum(pos, payload, &[]) == h.crc).then(|| record::record_len(payload.len()))
}

/// Walks the records from `header.oldest`; returns the end of the valid
/// prefix and the number of bytes of torn tail after it.
///
/// An invalid record below `header.synced` (the durable hint) is
/// corruption: those bytes were msynced. Past it, pages reach the disk in
/// any order before a power loss, so the first invalid record there is a
/// torn tail, whatever follows it: the stream ends there. Records of that
/// lap may still sit further on; [`wipe_cut_tail`] makes sure none of them
/// ever validates again.
fn find_end(mem: &RingMemory, header: &RingHeader, max_payload: usize) -> Result<(u64, u64), LogError> {
    let cap = mem.capacity();
    // `RingHeader::check` made oldest aligned and at most MAX_OFFSET, and
    // the capacity at most 2^48: no sum below overflows.
    let limit = header.oldest + cap;
    let mut pos = header.oldest;
    let mut scratch = Vec::new();
    while pos < limit {
        match check_record(mem, pos, max_payload, &mut scratch) {
            Some(len) if pos + len <= limit => pos += len,
            _ => break,
        }
    }
    let end = pos;
    if end < header.synced {
        return Err(LogError::Corrupt {
            offset: end,
            reason: format!("invalid record before the durable end {}", header.synced),
        });
    }
    // How much of a torn record is there: its claimed length if the header
    // is readable, else nothing.
    let torn = if end < limit {
        let mut head = [0u8; HEADER_LEN];
        mem.read(end, &mut head)?;
        let h = Header::parse(&head);
        if h.len as usize <= max_payload && h.len > 0 {
            record::record_len(h.len as usize).min(limit - end)
        } else {
            0
        }
    } else {
        0
    };
    Ok((end, torn))
}

/// Makes the cut tail `[end, limit)` unable to validate: every commit word
/// there that names its own position (a record of this lap, written before
/// the stream was cut at `end`) is cleared, and the cleared words are
/// msynced before the ring takes appends. Without this, new records ending
/// exactly where a cut one starts would make it part of the stream again at
/// the next open. (Words of older laps name other offsets and never
/// validate.) Reads the free part of the ring once; returns the number of
/// words cleared and the end of the furthest valid record among them.
fn wipe_cut_tail(mem: &RingMemory, end: u64, limit: u64, max_payload: usize) -> Result<(u64, u64), LogError> {
    let mut cleared = 0;
    let mut furthest = end;
    let mut scratch = Vec::new();
    // In place, word by word (no copy of the free part: on open it is most
    // of the ring). A cleared word is behind the scan, so every word is
    // seen as it was before the wipe, as a copy would show it.
    mem.for_each_self_naming_word(end, limit, |pos| {
        if let Some(len) = check_record(mem, pos, max_payload, &mut scratch) {
            furthest = furthest.max((pos + len).min(limit));
        }
        mem.clear_commit(pos);
        cleared += 1;
    });
    if cleared > 0 {
        mem.flush_data(end, limit)
            .map_err(|e| LogError::io("msync of the wiped ring tail", e))?;
    }
    Ok((cleared, furthest))
}
