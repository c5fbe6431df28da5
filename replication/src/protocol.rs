//! The replication protocol, without I/O: messages, their frame codec, and
//! the handshake decision.
//!
//! Every frame is `[len: u32 LE][kind: u8][body]`, where `len` counts the
//! kind byte and the body, and is refused above the limit of its stream
//! before anything is allocated: [`MAX_CONTROL_FRAME`] on the control
//! stream (both ways), the configured `max_frame_bytes` on data streams;
//! a reader's buffer then grows as the body's bytes arrive. Integers are
//! little-endian fixed width, strings and byte strings are a u32 length
//! and the bytes. A follower opens one
//! bidirectional control stream (`Hello` → `Continue` | `FullSync` |
//! `Reject` | `Incompatible`, then `Ack`s one way and `Ping`s / `Resync`
//! the other); the primary opens one unidirectional stream per data flow,
//! each starting with a `Stream` frame naming it (the log, and for a full
//! sync the snapshot).
//!
//! **Limits.** The follower's `Hello` carries its own limits: the largest
//! data frame it reads (`max_frame_bytes`), its ring's largest record
//! payload (`LogView::max_payload`) and the ring's capacity. The primary
//! agrees on [`Limits`] with [`Limits::negotiate`]: every data frame it
//! sends that follower is at most the smaller of both sides'
//! `max_frame_bytes`, and carries no more ring bytes than the follower's
//! largest record takes, so a batch of records is split across frames and
//! a snapshot is cut into pieces that fit. A record is never split: one
//! that the follower cannot take ([`Limits::check_record`]: its payload
//! above the follower's ring limit, or its frame above the frame limit)
//! stops the log stream *at that record* with an `Incompatible` frame
//! naming the limit and the offset (on the log stream, after every record
//! before it, and on the control stream), and the connection is closed
//! with close code 5; the follower halts with that reason
//! (`ReplicaInfo::halted`, `last_error`) instead of reconnecting to fail
//! at the same offset forever. Limits that could carry no record at all
//! (a frame limit below [`MIN_DATA_FRAME`]) are refused the same way at
//! the handshake.
//!
//! **Versions.** This is version 3 (version 1's `Hello` had no ring
//! limits; version 2's zstd frames were each a zstd frame with the
//! stream's last 256 KiB as a prefix, version 3's are flushed parts of one
//! zstd stream per QUIC stream, `compress.rs`). A primary decodes any version's `Hello` far enough to answer
//! one of another version with a `Reject` naming both versions (a
//! `Reject` reads the same in every version); the ALPN identifier stays
//! `ringkv-repl/1` so that such a follower reaches that answer instead of
//! a TLS failure. A version 1 primary refuses a version 2 `Hello` as
//! malformed (a protocol error, close code 1): upgrade primaries first.
//!
//! ```
//! use ringkv_replication::protocol::{decode_frame, encode_frame, Message};
//! let frame = encode_frame(&Message::Ack { applied: 128, durable: 64 });
//! let (msg, used) = decode_frame(&frame, 1 << 20)?.expect("a whole frame");
//! assert_eq!(used, frame.len());
//! assert_eq!(msg, Message::Ack { applied: 128, durable: 64 });
//! # Ok::<(), ringkv_replication::protocol::ProtocolError>(())
//! ```

use serde::{Deserialize, Serialize};

/// Protocol version spoken by this build (sent in `Hello`).
pub const PROTOCOL_VERSION: u16 = 3;

/// ALPN identifier of the protocol (unchanged across versions: the
/// version is negotiated in `Hello`, where a mismatch gets a readable
/// `Reject`).
pub const ALPN: &[u8] = b"ringkv-repl/1";

/// Bytes of the frame length prefix.
pub const LEN_PREFIX: usize = 4;

/// Largest frame on a control stream (`Hello`, the handshake's answer,
/// `Ack`, `Ping`, `Resync`): every honest one is under 9 KiB (strings are
/// at most 4 KiB), so a peer cannot make the other side buffer data-sized
/// frames there.
pub const MAX_CONTROL_FRAME: usize = 64 << 10;

/// Bytes of a `Log` frame besides its data (kind, start, codec, raw
/// length, data length): a frame is this plus the data, which is never
/// longer than the raw bytes (compression is used only when it shrinks).
pub const LOG_FRAME_OVERHEAD: usize = 18;

/// Bytes of a `Snapshot` frame besides its data (kind, codec, raw length,
/// data length).
pub const SNAPSHOT_FRAME_OVERHEAD: usize = 10;

/// Smallest data frame limit accepted (either side's `max_frame_bytes`):
/// a `Log` frame carrying one record of the smallest record limit a ring
/// may have ([`ringkv::log::MIN_RECORD_LIMIT`]).
pub const MIN_DATA_FRAME: usize = LOG_FRAME_OVERHEAD + ringkv::log::MIN_RECORD_LIMIT as usize;

/// A malformed or oversized frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The length prefix exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An unknown message kind.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// The body does not decode as its kind.
    #[error("malformed {kind} message: {reason}")]
    Malformed {
        /// Message kind name.
        kind: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A frame of length zero (no kind byte).
    #[error("empty frame")]
    Empty,
}

/// Compression of a data frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// Raw bytes.
    None,
    /// LZ4 block format (fast, modest ratio).
    Lz4,
    /// Zstandard, level 3, one stream per QUIC stream (better ratio, more CPU).
    Zstd,
}

impl Codec {
    fn to_byte(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Lz4 => 1,
            Codec::Zstd => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Codec> {
        Some(match b {
            0 => Codec::None,
            1 => Codec::Lz4,
            2 => Codec::Zstd,
            _ => return None,
        })
    }
}

/// Which flow a unidirectional stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Raw ring bytes (`Log` frames).
    Log,
    /// A snapshot (`Snapshot` frames, then `SnapshotEnd`).
    Snapshot,
}

/// The replication history a primary serves (sent on `Continue` and
/// `FullSync`, adopted by the follower).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct History {
    /// Current replication id.
    pub replid: String,
    /// Previous replication id (empty if none).
    pub prev_replid: String,
    /// Offset where `replid` took over from `prev_replid`.
    pub switch_offset: u64,
    /// The failover epoch of the primary serving it (its shard's leader
    /// key revision in etcd; 0 without failover). A follower refuses a
    /// history older than the newest epoch it knows
    /// (`FollowerConfig::min_epoch`), so a deposed primary cannot feed it.
    /// On the wire: a trailing u64 of `Continue` and `FullSync`, present
    /// only when non-zero (a primary without failover sends what older
    /// followers read; a follower that predates the field refuses a
    /// primary with an epoch as malformed rather than ignore it).
    #[serde(default)]
    pub epoch: u64,
}

/// Every protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Follower → primary, first on the control stream.
    Hello {
        /// Protocol version.
        version: u16,
        /// The follower's name (for logs and stats).
        name: String,
        /// Replication id of the follower's history.
        replid: String,
        /// Offset the follower has applied (where it continues).
        offset: u64,
        /// Codecs the follower accepts, preferred first.
        codecs: Vec<Codec>,
        /// Largest data frame the follower accepts (its
        /// `max_frame_bytes`): no data frame sent to it is longer.
        max_frame: u32,
        /// Largest record payload its ring accepts (`LogView::max_payload`):
        /// a larger record stops its log stream with `Incompatible`.
        max_record: u32,
        /// Its ring's capacity in bytes.
        capacity: u64,
        /// An observer (a backup, `ringkv-backup`): served like any
        /// follower, but never counted by `wait_for_followers` (WAIT) or the
        /// write gate, and never a promotion candidate. On the wire: a
        /// trailing flags byte [`HELLO_OBSERVER`], present only when set,
        /// so a follower's `Hello` is unchanged (a primary that predates
        /// the flag refuses an observer's `Hello` as malformed rather than
        /// count it).
        observer: bool,
    },
    /// Primary → follower: the log streams from `offset`.
    Continue {
        /// The history to adopt.
        history: History,
        /// Where the log stream starts.
        offset: u64,
        /// Codec chosen for this connection.
        codec: Codec,
    },
    /// Primary → follower: a snapshot at `offset` follows on its own
    /// stream, with the log from `offset` on another.
    FullSync {
        /// The history to adopt.
        history: History,
        /// The snapshot's offset (the log starts there).
        offset: u64,
        /// Codec chosen for this connection.
        codec: Codec,
        /// Why a partial resync was not possible.
        reason: String,
        /// Bytes of the follower's history the primary does not have
        /// (writes it lost in a failover), 0 if none.
        lost_bytes: u64,
    },
    /// Primary → follower: refused, with the reason (the same in every
    /// protocol version).
    Reject {
        /// Why.
        reason: String,
    },
    /// Primary → follower: this follower cannot take the primary's
    /// stream (limits too small for any record, or a record beyond its
    /// limits, named with its offset): it halts instead of reconnecting.
    /// Answers `Hello`, or ends the log stream at that record (and is
    /// sent on the control stream too).
    Incompatible {
        /// Why: the limit, and the offset of the record.
        reason: String,
    },
    /// Follower → primary: applied and durable offsets.
    Ack {
        /// Applied to the keyspace (readable).
        applied: u64,
        /// Durable in the follower's ring.
        durable: u64,
    },
    /// Primary → follower: liveness and the primary's log end.
    Ping {
        /// End of the primary's log.
        published: u64,
        /// Primary's clock, unix milliseconds.
        time_ms: u64,
    },
    /// Primary → follower: the follower left the ring; reconnect for a full sync.
    Resync {
        /// Why.
        reason: String,
    },
    /// First frame of a unidirectional stream.
    Stream {
        /// What follows.
        kind: StreamKind,
    },
    /// Raw ring bytes from `start`, possibly compressed.
    Log {
        /// Stream offset of the first byte.
        start: u64,
        /// Compression of `data`.
        codec: Codec,
        /// Length after decompression.
        raw_len: u32,
        /// The bytes.
        data: bytes::Bytes,
    },
    /// A piece of the snapshot stream, possibly compressed.
    Snapshot {
        /// Compression of `data`.
        codec: Codec,
        /// Length after decompression.
        raw_len: u32,
        /// The bytes.
        data: bytes::Bytes,
    },
    /// The snapshot is complete.
    SnapshotEnd {
        /// Total snapshot bytes (uncompressed).
        bytes: u64,
    },
}

impl Message {
    /// What the message is, for errors and logs: its kind and its numbers,
    /// never the bytes or strings it carries (a data frame holds up to
    /// `max_frame_bytes`, a string 4 KiB), so an error about a peer's frame
    /// stays small however large the frame was.
    ///
    /// ```
    /// use ringkv_replication::protocol::{Codec, Message};
    /// let log = Message::Log { start: 64, codec: Codec::None, raw_len: 3, data: vec![1, 2, 3].into() };
    /// assert_eq!(log.summary(), "Log frame at 64 (3 bytes)");
    /// ```
    pub fn summary(&self) -> String {
        match self {
            Message::Hello { version, offset, .. } => format!("Hello (version {version}, offset {offset})"),
            Message::Continue { offset, .. } => format!("Continue at {offset}"),
            Message::FullSync { offset, .. } => format!("FullSync at {offset}"),
            Message::Reject { .. } => "Reject".into(),
            Message::Incompatible { .. } => "Incompatible".into(),
            Message::Ack { applied, durable } => format!("Ack (applied {applied}, durable {durable})"),
            Message::Ping { published, .. } => format!("Ping (published {published})"),
            Message::Resync { .. } => "Resync".into(),
            Message::Stream { kind } => format!("Stream ({kind:?})"),
            Message::Log { start, raw_len, .. } => format!("Log frame at {start} ({raw_len} bytes)"),
            Message::Snapshot { raw_len, .. } => format!("Snapshot frame ({raw_len} bytes)"),
            Message::SnapshotEnd { bytes } => format!("SnapshotEnd ({bytes} bytes)"),
        }
    }
}

const HELLO: u8 = 1;
/// The flags byte that may end a version 2 `Hello`: the follower is an
/// observer (see `Message::Hello::observer`). No other flag exists; a
/// flags byte with any other value is malformed (so every `Hello` has one
/// encoding).
pub const HELLO_OBSERVER: u8 = 1;
const CONTINUE: u8 = 2;
const FULLSYNC: u8 = 3;
const REJECT: u8 = 4;
const ACK: u8 = 5;
const PING: u8 = 6;
const RESYNC: u8 = 7;
const STREAM: u8 = 8;
const LOG: u8 = 9;
const SNAPSHOT: u8 = 10;
const SNAPSHOT_END: u8 = 11;
const INCOMPATIBLE: u8 = 12;

/// Longest string field accepted (ids, names, reasons).
const MAX_STRING: usize = 4096;

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        let mut end = s.len().min(MAX_STRING);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes(&s.as_bytes()[..end]);
    }
    fn history(&mut self, h: &History) {
        self.str(&h.replid);
        self.str(&h.prev_replid);
        self.u64(h.switch_offset);
    }
    /// The history's epoch, trailing its message, when there is one.
    fn epoch(&mut self, h: &History) {
        if h.epoch > 0 {
            self.u64(h.epoch);
        }
    }
}

struct In<'a> {
    buf: &'a [u8],
    kind: &'static str,
}

impl<'a> In<'a> {
    fn err(&self, reason: &'static str) -> ProtocolError {
        ProtocolError::Malformed {
            kind: self.kind,
            reason,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, ProtocolError> {
        let b = self.bytes()?;
        if b.len() > MAX_STRING {
            return Err(self.err("string too long"));
        }
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }
    fn codec(&mut self) -> Result<Codec, ProtocolError> {
        let b = self.u8()?;
        Codec::from_byte(b).ok_or_else(|| self.err("unknown codec"))
    }
    fn history(&mut self) -> Result<History, ProtocolError> {
        Ok(History {
            replid: self.str()?,
            prev_replid: self.str()?,
            switch_offset: self.u64()?,
            epoch: 0,
        })
    }
    /// A trailing epoch (absent: 0; present: never 0).
    fn epoch(&mut self) -> Result<u64, ProtocolError> {
        if self.buf.is_empty() {
            return Ok(0);
        }
        match self.u64()? {
            0 => Err(self.err("an explicit zero epoch")),
            e => Ok(e),
        }
    }
    fn end(&self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

/// Encodes one message as a whole frame (length prefix included).
pub fn encode_frame(msg: &Message) -> Vec<u8> {
    let mut o = Out(vec![0; LEN_PREFIX]);
    match msg {
        Message::Hello {
            version,
            name,
            replid,
            offset,
            codecs,
            max_frame,
            max_record,
            capacity,
            observer,
        } => {
            o.u8(HELLO);
            o.u16(*version);
            o.str(name);
            o.str(replid);
            o.u64(*offset);
            o.u8(codecs.len().min(16) as u8);
            for c in codecs.iter().take(16) {
                o.u8(c.to_byte());
            }
            o.u32(*max_frame);
            o.u32(*max_record);
            o.u64(*capacity);
            if *observer {
                o.u8(HELLO_OBSERVER);
            }
        }
        Message::Continue { history, offset, codec } => {
            o.u8(CONTINUE);
            o.history(history);
            o.u64(*offset);
            o.u8(codec.to_byte());
            o.epoch(history);
        }
        Message::FullSync {
            history,
            offset,
            codec,
            reason,
            lost_bytes,
        } => {
            o.u8(FULLSYNC);
            o.history(history);
            o.u64(*offset);
            o.u8(codec.to_byte());
            o.str(reason);
            o.u64(*lost_bytes);
            o.epoch(history);
        }
        Message::Reject { reason } => {
            o.u8(REJECT);
            o.str(reason);
        }
        Message::Incompatible { reason } => {
            o.u8(INCOMPATIBLE);
            o.str(reason);
        }
        Message::Ack { applied, durable } => {
            o.u8(ACK);
            o.u64(*applied);
            o.u64(*durable);
        }
        Message::Ping { published, time_ms } => {
            o.u8(PING);
            o.u64(*published);
            o.u64(*time_ms);
        }
        Message::Resync { reason } => {
            o.u8(RESYNC);
            o.str(reason);
        }
        Message::Stream { kind } => {
            o.u8(STREAM);
            o.u8(match kind {
                StreamKind::Log => 0,
                StreamKind::Snapshot => 1,
            });
        }
        Message::Log {
            start,
            codec,
            raw_len,
            data,
        } => {
            o.u8(LOG);
            o.u64(*start);
            o.u8(codec.to_byte());
            o.u32(*raw_len);
            o.bytes(data);
        }
        Message::Snapshot { codec, raw_len, data } => {
            o.u8(SNAPSHOT);
            o.u8(codec.to_byte());
            o.u32(*raw_len);
            o.bytes(data);
        }
        Message::SnapshotEnd { bytes } => {
            o.u8(SNAPSHOT_END);
            o.u64(*bytes);
        }
    }
    let len = (o.0.len() - LEN_PREFIX) as u32;
    o.0[..LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
    o.0
}

/// Reads a frame's length prefix: the body length that follows, refused
/// above `max_frame`.
pub fn frame_len(prefix: [u8; LEN_PREFIX], max_frame: usize) -> Result<usize, ProtocolError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 {
        return Err(ProtocolError::Empty);
    }
    if len > max_frame {
        return Err(ProtocolError::TooLarge { len, max: max_frame });
    }
    Ok(len)
}

/// Decodes one frame from the start of `buf`: `Ok(None)` if `buf` does not
/// hold a whole frame yet, else the message and the bytes it used.
pub fn decode_frame(buf: &[u8], max_frame: usize) -> Result<Option<(Message, usize)>, ProtocolError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = frame_len([prefix[0], prefix[1], prefix[2], prefix[3]], max_frame)?;
    let Some(body) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, LEN_PREFIX + len)))
}

/// Decodes a frame body (kind byte and fields, without the length prefix).
pub fn decode_body(body: &[u8]) -> Result<Message, ProtocolError> {
    let (&kind, rest) = body.split_first().ok_or(ProtocolError::Empty)?;
    let name = match kind {
        HELLO => "Hello",
        CONTINUE => "Continue",
        FULLSYNC => "FullSync",
        REJECT => "Reject",
        ACK => "Ack",
        PING => "Ping",
        RESYNC => "Resync",
        STREAM => "Stream",
        LOG => "Log",
        SNAPSHOT => "Snapshot",
        SNAPSHOT_END => "SnapshotEnd",
        INCOMPATIBLE => "Incompatible",
        other => return Err(ProtocolError::UnknownKind(other)),
    };
    let mut i = In { buf: rest, kind: name };
    let msg = match kind {
        HELLO => {
            let version = i.u16()?;
            let name = i.str()?;
            let replid = i.str()?;
            let offset = i.u64()?;
            let n = i.u8()? as usize;
            if n > 16 {
                return Err(i.err("too many codecs"));
            }
            let mut codecs = Vec::with_capacity(n);
            for _ in 0..n {
                codecs.push(i.codec()?);
            }
            let max_frame = i.u32()?;
            if version != PROTOCOL_VERSION {
                // Another version's Hello: what every version has in
                // common is enough to refuse it by its version.
                return Ok(Message::Hello {
                    version,
                    name,
                    replid,
                    offset,
                    codecs,
                    max_frame,
                    max_record: 0,
                    capacity: 0,
                    observer: false,
                });
            }
            let max_record = i.u32()?;
            let capacity = i.u64()?;
            let observer = match i.buf.first() {
                None => false,
                Some(_) => match i.u8()? {
                    HELLO_OBSERVER => true,
                    _ => return Err(i.err("unknown Hello flags")),
                },
            };
            Message::Hello {
                version,
                name,
                replid,
                offset,
                codecs,
                max_frame,
                max_record,
                capacity,
                observer,
            }
        }
        CONTINUE => {
            let mut history = i.history()?;
            let (offset, codec) = (i.u64()?, i.codec()?);
            history.epoch = i.epoch()?;
            Message::Continue { history, offset, codec }
        }
        FULLSYNC => {
            let mut history = i.history()?;
            let (offset, codec, reason, lost_bytes) = (i.u64()?, i.codec()?, i.str()?, i.u64()?);
            history.epoch = i.epoch()?;
            Message::FullSync {
                history,
                offset,
                codec,
                reason,
                lost_bytes,
            }
        }
        REJECT => Message::Reject { reason: i.str()? },
        INCOMPATIBLE => Message::Incompatible { reason: i.str()? },
        ACK => Message::Ack {
            applied: i.u64()?,
            durable: i.u64()?,
        },
        PING => Message::Ping {
            published: i.u64()?,
            time_ms: i.u64()?,
        },
        RESYNC => Message::Resync { reason: i.str()? },
        STREAM => Message::Stream {
            kind: match i.u8()? {
                0 => StreamKind::Log,
                1 => StreamKind::Snapshot,
                _ => return Err(i.err("unknown stream kind")),
            },
        },
        LOG => Message::Log {
            start: i.u64()?,
            codec: i.codec()?,
            raw_len: i.u32()?,
            data: bytes::Bytes::copy_from_slice(i.bytes()?),
        },
        SNAPSHOT => Message::Snapshot {
            codec: i.codec()?,
            raw_len: i.u32()?,
            data: bytes::Bytes::copy_from_slice(i.bytes()?),
        },
        _ => Message::SnapshotEnd { bytes: i.u64()? },
    };
    i.end()?;
    Ok(msg)
}

/// What the primary knows when a follower says hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryView {
    /// The primary's history.
    pub history: History,
    /// Oldest offset its ring still holds.
    pub oldest: u64,
    /// End of its ring.
    pub published: u64,
    /// Replaying more than this many bytes costs more than a snapshot:
    /// choose a full sync instead (`None`: no limit).
    pub max_replay_bytes: Option<u64>,
    /// Why the primary cannot serve at all right now (it is itself in a
    /// full sync, or has no log), if so.
    pub unavailable: Option<String>,
}

/// What the follower said in its `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerView {
    /// Protocol version.
    pub version: u16,
    /// Its history id.
    pub replid: String,
    /// The offset it continues from.
    pub offset: u64,
}

/// Why a partial resync was not possible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullSyncReason {
    /// The follower's history is unknown to the primary.
    UnknownHistory,
    /// The offset left the primary's ring.
    OffsetLeftRing,
    /// The follower holds writes beyond where the histories split (a former
    /// primary, or a follower ahead of a promoted one).
    Diverged,
    /// Replaying from the offset would cost more than a snapshot.
    ReplayTooLong,
}

impl std::fmt::Display for FullSyncReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FullSyncReason::UnknownHistory => "the follower's replication id is not this primary's history",
            FullSyncReason::OffsetLeftRing => "the follower's offset is no longer in the primary's ring",
            FullSyncReason::Diverged => "the follower has writes beyond the point where the histories split",
            FullSyncReason::ReplayTooLong => "replaying the ring from the offset would cost more than a snapshot",
        })
    }
}

/// The handshake's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Stream the log from the follower's offset.
    Continue,
    /// Send a snapshot and the log from its offset.
    FullSync {
        /// Why.
        reason: FullSyncReason,
        /// Bytes of the follower's history the primary does not have.
        lost_bytes: u64,
    },
    /// Refuse the follower.
    Reject(String),
}

/// The handshake decision (PSYNC2's rules over ring offsets): continue when
/// the follower's history is the primary's (or its previous one, up to the
/// switch offset) and its offset is still in the ring.
///
/// ```
/// use ringkv_replication::protocol::*;
/// let primary = PrimaryView {
///     history: History { replid: "B".into(), prev_replid: "A".into(), switch_offset: 1000, epoch: 0 },
///     oldest: 0,
///     published: 5000,
///     max_replay_bytes: None,
///     unavailable: None,
/// };
/// let follower = |replid: &str, offset| FollowerView { version: PROTOCOL_VERSION, replid: replid.into(), offset };
/// assert_eq!(decide(&primary, &follower("B", 4000)), Decision::Continue);
/// assert_eq!(decide(&primary, &follower("A", 800)), Decision::Continue);
/// assert_eq!(
///     decide(&primary, &follower("A", 1200)),
///     Decision::FullSync { reason: FullSyncReason::Diverged, lost_bytes: 200 }
/// );
/// ```
pub fn decide(primary: &PrimaryView, follower: &FollowerView) -> Decision {
    if follower.version != PROTOCOL_VERSION {
        return Decision::Reject(format!(
            "protocol version {} is not supported (this primary speaks {PROTOCOL_VERSION})",
            follower.version
        ));
    }
    if let Some(why) = &primary.unavailable {
        return Decision::Reject(why.clone());
    }
    let h = &primary.history;
    let known_until = if follower.replid == h.replid {
        Some(primary.published)
    } else if !h.prev_replid.is_empty() && follower.replid == h.prev_replid {
        Some(h.switch_offset.min(primary.published))
    } else {
        None
    };
    let Some(limit) = known_until else {
        return Decision::FullSync {
            reason: FullSyncReason::UnknownHistory,
            lost_bytes: 0,
        };
    };
    if follower.offset > limit {
        return Decision::FullSync {
            reason: FullSyncReason::Diverged,
            lost_bytes: follower.offset - limit,
        };
    }
    if follower.offset < primary.oldest {
        return Decision::FullSync {
            reason: FullSyncReason::OffsetLeftRing,
            lost_bytes: 0,
        };
    }
    if primary
        .max_replay_bytes
        .is_some_and(|max| primary.published - follower.offset > max)
    {
        return Decision::FullSync {
            reason: FullSyncReason::ReplayTooLong,
            lost_bytes: 0,
        };
    }
    Decision::Continue
}

/// The first codec in the follower's preference that the primary allows.
pub fn choose_codec(follower: &[Codec], allowed: &[Codec]) -> Codec {
    follower
        .iter()
        .copied()
        .find(|c| allowed.contains(c))
        .unwrap_or(Codec::None)
}

/// What one follower can take, agreed at the handshake from its `Hello`
/// and the primary's own `max_frame_bytes` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest data frame sent (the smaller of both sides' `max_frame_bytes`).
    pub max_frame: usize,
    /// Whose `max_frame_bytes` that is (for refusals).
    pub frame_limit_is_the_followers: bool,
    /// Largest record payload the follower's ring accepts.
    pub max_record: usize,
    /// The follower ring's capacity.
    pub capacity: u64,
}

impl Limits {
    /// The limits for a follower that said `max_frame`, `max_record` and
    /// `capacity` in its `Hello`, served by a primary whose
    /// `max_frame_bytes` is `primary_max_frame`; `Err` with the reason when
    /// no record could reach it (refused with `Incompatible`).
    ///
    /// ```
    /// use ringkv_replication::protocol::Limits;
    /// let l = Limits::negotiate(64 << 20, 4096, 1 << 20, 8 << 20).expect("limits");
    /// assert_eq!((l.max_frame, l.frame_limit_is_the_followers), (4096, true));
    /// assert!(l.log_bytes_per_frame() <= 4096 - ringkv_replication::protocol::LOG_FRAME_OVERHEAD);
    /// assert!(l.check_record(800, 1 << 20).is_err(), "a 1 MiB record needs a 1 MiB frame");
    /// assert!(Limits::negotiate(64 << 20, 512, 1 << 20, 8 << 20).is_err());
    /// ```
    pub fn negotiate(
        primary_max_frame: usize,
        max_frame: u32,
        max_record: u32,
        capacity: u64,
    ) -> Result<Limits, String> {
        let follower_max_frame = max_frame as usize;
        let frame_limit_is_the_followers = follower_max_frame <= primary_max_frame;
        let limits = Limits {
            max_frame: follower_max_frame.min(primary_max_frame),
            frame_limit_is_the_followers,
            max_record: max_record as usize,
            capacity,
        };
        if limits.max_frame < MIN_DATA_FRAME {
            return Err(format!(
                "data frames are limited to {} bytes ({}), below the smallest useful limit of {MIN_DATA_FRAME} bytes",
                limits.max_frame,
                limits.frame_limit_owner()
            ));
        }
        let smallest_record = ringkv::log::MIN_RECORD_LIMIT as usize - ringkv::log::record::HEADER_LEN;
        if limits.max_record < smallest_record || (limits.max_record as u64) >= capacity {
            return Err(format!(
                "the follower's ring claims records of at most {max_record} bytes in a capacity of {capacity}: \
                 no ring has such limits"
            ));
        }
        Ok(limits)
    }

    fn frame_limit_owner(&self) -> &'static str {
        if self.frame_limit_is_the_followers {
            "the follower's max_frame_bytes"
        } else {
            "the primary's max_frame_bytes"
        }
    }

    /// Most ring bytes in one `Log` frame when it carries several records:
    /// within the frame limit, and no more than the follower's largest
    /// record takes (so a frame needs no more room in its ring than one
    /// record). A multiple of the record alignment; a single record that
    /// passes [`Limits::check_record`] is sent whole even when longer.
    pub fn log_bytes_per_frame(&self) -> usize {
        let by_frame = self.max_frame.saturating_sub(LOG_FRAME_OVERHEAD);
        let by_ring = self.max_record.saturating_add(ringkv::log::record::HEADER_LEN);
        let align = ringkv::log::record::ALIGN as usize;
        by_frame.min(by_ring) / align * align
    }

    /// Most snapshot bytes in one `Snapshot` frame, at most `piece`.
    pub fn snapshot_bytes_per_frame(&self, piece: usize) -> usize {
        self.max_frame.saturating_sub(SNAPSHOT_FRAME_OVERHEAD).min(piece).max(1)
    }

    /// Whether the follower can take the record at `offset` with a
    /// payload of `payload_len` bytes; `Err` names the limit and the offset.
    pub fn check_record(&self, offset: u64, payload_len: usize) -> Result<(), String> {
        if payload_len > self.max_record {
            return Err(format!(
                "the record at offset {offset} has a payload of {payload_len} bytes, above the follower's ring \
                 limit of {} bytes (its capacity {} / max_record_fraction)",
                self.max_record, self.capacity
            ));
        }
        let frame = LOG_FRAME_OVERHEAD as u64 + ringkv::log::record::record_len(payload_len);
        if frame > self.max_frame as u64 {
            return Err(format!(
                "the record at offset {offset} needs a data frame of {frame} bytes, above the limit of {} bytes ({})",
                self.max_frame,
                self.frame_limit_owner()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(replid: &str, prev: &str, switch: u64, oldest: u64, published: u64) -> PrimaryView {
        PrimaryView {
            history: History {
                replid: replid.into(),
                prev_replid: prev.into(),
                switch_offset: switch,
                epoch: 0,
            },
            oldest,
            published,
            max_replay_bytes: None,
            unavailable: None,
        }
    }

    fn hello(replid: &str, offset: u64) -> FollowerView {
        FollowerView {
            version: PROTOCOL_VERSION,
            replid: replid.into(),
            offset,
        }
    }

    fn full(reason: FullSyncReason, lost_bytes: u64) -> Decision {
        Decision::FullSync { reason, lost_bytes }
    }

    #[test]
    fn handshake_rules() {
        let p = view("B", "A", 1000, 200, 5000);
        assert_eq!(decide(&p, &hello("B", 200)), Decision::Continue);
        assert_eq!(decide(&p, &hello("B", 5000)), Decision::Continue);
        assert_eq!(decide(&p, &hello("B", 100)), full(FullSyncReason::OffsetLeftRing, 0));
        assert_eq!(decide(&p, &hello("B", 5008)), full(FullSyncReason::Diverged, 8));
        assert_eq!(decide(&p, &hello("A", 1000)), Decision::Continue);
        assert_eq!(decide(&p, &hello("A", 1500)), full(FullSyncReason::Diverged, 500));
        assert_eq!(decide(&p, &hello("C", 10)), full(FullSyncReason::UnknownHistory, 0));
        // No previous history: an empty replid never matches it.
        let fresh = view("B", "", 0, 0, 10);
        assert!(matches!(decide(&fresh, &hello("", 0)), Decision::FullSync { .. }));
        let mut limited = p.clone();
        limited.max_replay_bytes = Some(1000);
        assert_eq!(
            decide(&limited, &hello("B", 3000)),
            full(FullSyncReason::ReplayTooLong, 0)
        );
        assert_eq!(decide(&limited, &hello("B", 4000)), Decision::Continue);
        let mut old = hello("B", 300);
        old.version = 99;
        assert!(matches!(decide(&p, &old), Decision::Reject(_)));
        let mut busy = p;
        busy.unavailable = Some("syncing".into());
        assert_eq!(decide(&busy, &hello("B", 300)), Decision::Reject("syncing".into()));
    }

    #[test]
    fn codec_choice() {
        assert_eq!(choose_codec(&[Codec::Zstd, Codec::Lz4], &[Codec::Lz4]), Codec::Lz4);
        assert_eq!(choose_codec(&[Codec::Zstd], &[Codec::Lz4]), Codec::None);
        assert_eq!(choose_codec(&[], &[Codec::Lz4]), Codec::None);
    }

    #[test]
    fn the_epoch_trails_continue_and_full_sync_only_when_set() {
        let h = |epoch| History {
            replid: "B".into(),
            prev_replid: "A".into(),
            switch_offset: 7,
            epoch,
        };
        let plain = encode_frame(&Message::Continue {
            history: h(0),
            offset: 9,
            codec: Codec::None,
        });
        let with = encode_frame(&Message::Continue {
            history: h(42),
            offset: 9,
            codec: Codec::None,
        });
        // Without an epoch the frame is the one older followers read.
        assert_eq!(with.len(), plain.len() + 8);
        let (m, _) = decode_frame(&with, 1 << 20).expect("valid").expect("whole");
        assert!(matches!(m, Message::Continue { history, .. } if history.epoch == 42));
        let full = encode_frame(&Message::FullSync {
            history: h(5),
            offset: 9,
            codec: Codec::Lz4,
            reason: "r".into(),
            lost_bytes: 3,
        });
        let (m, _) = decode_frame(&full, 1 << 20).expect("valid").expect("whole");
        assert!(matches!(m, Message::FullSync { history, lost_bytes: 3, .. } if history.epoch == 5));
        // An explicit zero, or a partial epoch, is malformed.
        let mut zero = plain.clone();
        zero.extend_from_slice(&0u64.to_le_bytes());
        let len = (zero.len() - LEN_PREFIX) as u32;
        zero[..LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
        assert!(decode_frame(&zero, 1 << 20).is_err());
        let mut partial = plain;
        partial.extend_from_slice(&[1, 2, 3]);
        let len = (partial.len() - LEN_PREFIX) as u32;
        partial[..LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
        assert!(decode_frame(&partial, 1 << 20).is_err());
    }

    fn codec() -> impl Strategy<Value = Codec> {
        prop_oneof![Just(Codec::None), Just(Codec::Lz4), Just(Codec::Zstd)]
    }

    fn history() -> impl Strategy<Value = History> {
        (
            "[a-f0-9]{0,40}",
            "[a-f0-9]{0,40}",
            any::<u64>(),
            prop_oneof![Just(0u64), any::<u64>()],
        )
            .prop_map(|(replid, prev_replid, switch_offset, epoch)| History {
                replid,
                prev_replid,
                switch_offset,
                epoch,
            })
    }

    fn message() -> impl Strategy<Value = Message> {
        let data = proptest::collection::vec(any::<u8>(), 0..300).prop_map(bytes::Bytes::from);
        prop_oneof![
            (
                ".{0,20}",
                "[a-f0-9]{0,40}",
                any::<u64>(),
                proptest::collection::vec(codec(), 0..4),
                any::<u32>(),
                any::<u32>(),
                any::<u64>(),
                any::<bool>(),
            )
                .prop_map(
                    |(name, replid, offset, codecs, max_frame, max_record, capacity, observer)| {
                        Message::Hello {
                            version: PROTOCOL_VERSION,
                            name,
                            replid,
                            offset,
                            codecs,
                            max_frame,
                            max_record,
                            capacity,
                            observer,
                        }
                    }
                ),
            (history(), any::<u64>(), codec()).prop_map(|(history, offset, codec)| Message::Continue {
                history,
                offset,
                codec
            }),
            (history(), any::<u64>(), codec(), ".{0,30}", any::<u64>()).prop_map(
                |(history, offset, codec, reason, lost_bytes)| Message::FullSync {
                    history,
                    offset,
                    codec,
                    reason,
                    lost_bytes
                }
            ),
            ".{0,30}".prop_map(|reason| Message::Reject { reason }),
            ".{0,30}".prop_map(|reason| Message::Incompatible { reason }),
            (any::<u64>(), any::<u64>()).prop_map(|(applied, durable)| Message::Ack { applied, durable }),
            (any::<u64>(), any::<u64>()).prop_map(|(published, time_ms)| Message::Ping { published, time_ms }),
            ".{0,30}".prop_map(|reason| Message::Resync { reason }),
            prop_oneof![Just(StreamKind::Log), Just(StreamKind::Snapshot)].prop_map(|kind| Message::Stream { kind }),
            (any::<u64>(), codec(), any::<u32>(), data.clone()).prop_map(|(start, codec, raw_len, data)| {
                Message::Log {
                    start,
                    codec,
                    raw_len,
                    data,
                }
            }),
            (codec(), any::<u32>(), data).prop_map(|(codec, raw_len, data)| Message::Snapshot { codec, raw_len, data }),
            any::<u64>().prop_map(|bytes| Message::SnapshotEnd { bytes }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip_and_every_prefix_is_incomplete(msg in message()) {
            let frame = encode_frame(&msg);
            let (back, used) = decode_frame(&frame, 1 << 20).expect("decodes").expect("whole");
            prop_assert_eq!(used, frame.len());
            prop_assert_eq!(back, msg);
            for cut in 0..frame.len() {
                prop_assert_eq!(decode_frame(&frame[..cut], 1 << 20).expect("prefix is fine"), None);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_frame(&bytes, 1 << 16);
            let _ = decode_body(&bytes);
        }
    }

    #[test]
    fn oversized_and_trailing_frames_are_refused() {
        let mut frame = encode_frame(&Message::Ack { applied: 1, durable: 2 });
        assert!(matches!(
            decode_frame(&frame, 8),
            Err(ProtocolError::TooLarge { len: 17, max: 8 })
        ));
        frame.push(0);
        let len = (frame.len() - LEN_PREFIX) as u32;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(
            decode_frame(&frame, 1 << 20),
            Err(ProtocolError::Malformed { .. })
        ));
        assert_eq!(decode_frame(&[0, 0, 0, 0], 10), Err(ProtocolError::Empty));
        assert_eq!(decode_body(&[200]), Err(ProtocolError::UnknownKind(200)));
    }

    /// A version 1 `Hello` (no ring limits) decodes far enough to be
    /// refused by its version, with a `Reject` every version reads.
    #[test]
    fn an_old_hello_is_refused_by_its_version() {
        let mut body = vec![HELLO];
        body.extend_from_slice(&1u16.to_le_bytes());
        for s in ["old-follower", "B"] {
            body.extend_from_slice(&(s.len() as u32).to_le_bytes());
            body.extend_from_slice(s.as_bytes());
        }
        body.extend_from_slice(&300u64.to_le_bytes());
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&(64u32 << 20).to_le_bytes());
        let Message::Hello {
            version,
            offset,
            max_frame,
            max_record,
            ..
        } = decode_body(&body).expect("decodes")
        else {
            panic!("a hello")
        };
        assert_eq!((version, offset, max_frame, max_record), (1, 300, 64 << 20, 0));
        let p = view("B", "A", 1000, 200, 5000);
        let mut old = hello("B", 300);
        old.version = version;
        assert_eq!(
            decide(&p, &old),
            Decision::Reject("protocol version 1 is not supported (this primary speaks 3)".into())
        );
        // This version's Hello must carry the limits.
        body[1..3].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        assert!(matches!(
            decode_body(&body),
            Err(ProtocolError::Malformed { kind: "Hello", .. })
        ));
    }

    /// The observer flag is one trailing byte, present only when set: a
    /// follower's `Hello` is byte for byte what it was, and a flags byte
    /// other than `HELLO_OBSERVER` is malformed (one encoding per Hello).
    #[test]
    fn the_observer_flag_is_a_trailing_byte_only_when_set() {
        let hello = |observer| Message::Hello {
            version: PROTOCOL_VERSION,
            name: "backup".into(),
            replid: "A".into(),
            offset: 64,
            codecs: vec![Codec::Lz4],
            max_frame: 1 << 20,
            max_record: 1 << 16,
            capacity: 8 << 20,
            observer,
        };
        let plain = encode_frame(&hello(false));
        let observer = encode_frame(&hello(true));
        assert_eq!(observer.len(), plain.len() + 1);
        assert_eq!(observer[LEN_PREFIX..plain.len()], plain[LEN_PREFIX..]);
        assert_eq!(observer.last(), Some(&HELLO_OBSERVER));
        for (frame, want) in [(&plain, false), (&observer, true)] {
            let (msg, _) = decode_frame(frame, 1 << 20).expect("decodes").expect("whole");
            assert_eq!(msg, hello(want));
        }
        for flags in [0u8, 2, 3, 0x80] {
            let mut body = observer[LEN_PREFIX..].to_vec();
            *body.last_mut().expect("flags") = flags;
            assert!(
                matches!(decode_body(&body), Err(ProtocolError::Malformed { kind: "Hello", .. })),
                "flags {flags}"
            );
        }
    }

    #[test]
    fn frame_overheads_are_exact() {
        let data = bytes::Bytes::from(vec![7u8; 100]);
        let log = encode_frame(&Message::Log {
            start: 8,
            codec: Codec::None,
            raw_len: 100,
            data: data.clone(),
        });
        assert_eq!(log.len() - LEN_PREFIX, LOG_FRAME_OVERHEAD + 100);
        let snap = encode_frame(&Message::Snapshot {
            codec: Codec::None,
            raw_len: 100,
            data,
        });
        assert_eq!(snap.len() - LEN_PREFIX, SNAPSHOT_FRAME_OVERHEAD + 100);
    }

    #[test]
    fn limits_take_the_smaller_frame_and_name_the_limit_that_refuses() {
        let l = Limits::negotiate(1 << 20, 64 << 20, 32752, 256 << 10).expect("limits");
        assert_eq!((l.max_frame, l.frame_limit_is_the_followers), (1 << 20, false));
        // A frame of records carries no more than the follower's largest record.
        assert_eq!(l.log_bytes_per_frame(), 32768);
        assert_eq!(l.snapshot_bytes_per_frame(256 << 10), 256 << 10);
        assert_eq!(l.check_record(8, 32752), Ok(()));
        let e = l.check_record(4096, 32753).expect_err("too large for the ring");
        assert!(e.contains("offset 4096") && e.contains("32752"), "{e}");
        let l = Limits::negotiate(64 << 20, 4096, 1 << 20, 8 << 20).expect("limits");
        assert_eq!(l.log_bytes_per_frame(), 4072);
        assert_eq!(l.snapshot_bytes_per_frame(256 << 10), 4086);
        assert_eq!(l.check_record(8, 4056), Ok(()));
        let e = l.check_record(64, 5000).expect_err("too large for the frame");
        assert!(
            e.contains("offset 64") && e.contains("4096") && e.contains("the follower's max_frame_bytes"),
            "{e}"
        );
        // Limits that carry no record at all are refused.
        let e = Limits::negotiate(64 << 20, 1000, 1 << 20, 8 << 20).expect_err("frame");
        assert!(e.contains("1000") && e.contains("follower's"), "{e}");
        let e = Limits::negotiate(1000, 64 << 20, 1 << 20, 8 << 20).expect_err("frame");
        assert!(e.contains("primary's"), "{e}");
        assert!(Limits::negotiate(64 << 20, 64 << 20, 0, 8 << 20).is_err());
        assert!(Limits::negotiate(64 << 20, 64 << 20, 1 << 20, 1 << 20).is_err());
    }
}
