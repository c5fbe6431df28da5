//! Snapshot file format (version [`SNAPSHOT_FORMAT`]), little-endian:
//!
//! ```text
//! header  (88 bytes)
//!   0   magic "RKVSNAP\0"
//!   8   format version (u32)        12  reserved (u32)
//!   16  log offset of the cut (u64) 24  creation time, unix ms (u64)
//!   32  keys at the cut (u64)       40  replid, 40 bytes
//!   80  crc32c of bytes 0..80 (u32) 84  reserved (u32)
//! chunks, each
//!   u32 length (> 0), u32 crc32c of the payload, payload: items
//! footer
//!   u32 0 (end marker), u64 items, u64 chunks, u64 payload bytes,
//!   u32 crc32c of those 24 bytes
//! ```
//!
//! Items (tag byte, then LEB128-length byte strings as in the ring log):
//!
//! ```text
//! 1 String      key value expire?
//! 2 HashHead    key expire?                 (the hash exists, with this expiry)
//! 3 HashFields  key count (field value)*    (some of its fields)
//! ```
//!
//! A hash may be spread over many `HashFields` items, before or after its
//! `HashHead`, interleaved with other keys: the snapshot writes each part
//! when it is first about to change or when the walk reaches it.
//!
//! Reading trusts no length or count before the bytes behind it are there:
//! a chunk's buffer grows as its bytes are read (up to [`MAX_CHUNK`]), a
//! field count must fit in the rest of its chunk, and no vector is sized
//! beyond the bytes left to decode: memory follows what was read and
//! decoded, not what a field announced. A hostile stream fails with
//! [`SnapshotError::Corrupt`].

use std::io::{self, Read, Write};

use bytes::Bytes;

use crate::codec::{put_bytes, put_expire, put_varint, Reader};
use crate::error::SnapshotError;

/// Magic bytes at the start of a snapshot.
pub const MAGIC: &[u8; 8] = b"RKVSNAP\0";
/// Snapshot format version this build writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 88;
/// Largest chunk accepted when reading (a chunk holds at least one item,
/// and an item can be one large value). A chunk's buffer is not allocated
/// from its length field: it grows with the bytes actually read (8 KiB,
/// then doubling), so a stream that announces more than it holds costs
/// at most about twice what it holds.
pub const MAX_CHUNK: u32 = 1 << 30;
/// The first read of a chunk's payload; later reads double what was read.
const FIRST_READ: usize = 8 << 10;

/// The snapshot header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Log offset of the cut: replaying the log from here reproduces later state.
    pub offset: u64,
    /// Creation time, unix ms.
    pub created_ms: u64,
    /// Keys in the engine at the cut.
    pub keys: u64,
    /// Replication id of the log the offset belongs to.
    pub replid: String,
}

impl SnapshotHeader {
    /// The 88 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ms.to_le_bytes());
        b[32..40].copy_from_slice(&self.keys.to_le_bytes());
        let id = self.replid.as_bytes();
        let n = id.len().min(40);
        b[40..40 + n].copy_from_slice(&id[..n]);
        let crc = crc32c::crc32c(&b[..80]);
        b[80..84].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses header bytes.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<SnapshotHeader, SnapshotError> {
        let corrupt = |reason: &str| SnapshotError::Corrupt {
            position: 0,
            reason: reason.into(),
        };
        if &b[0..8] != MAGIC {
            return Err(corrupt("not a ringkv snapshot (bad magic)"));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let version = u32_at(8);
        if version != SNAPSHOT_FORMAT {
            return Err(SnapshotError::UnsupportedFormat {
                found: version,
                supported: SNAPSHOT_FORMAT,
            });
        }
        if crc32c::crc32c(&b[..80]) != u32_at(80) {
            return Err(corrupt("header checksum mismatch"));
        }
        let id = &b[40..80];
        let end = id.iter().position(|&c| c == 0).unwrap_or(40);
        Ok(SnapshotHeader {
            offset: u64_at(16),
            created_ms: u64_at(24),
            keys: u64_at(32),
            replid: String::from_utf8_lossy(&id[..end]).into_owned(),
        })
    }
}

/// One item of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A string key.
    String {
        /// Key.
        key: Bytes,
        /// Value.
        value: Bytes,
        /// Absolute expiry, unix ms.
        expire_at: Option<u64>,
    },
    /// A hash exists with this expiry.
    HashHead {
        /// Key.
        key: Bytes,
        /// Absolute expiry, unix ms.
        expire_at: Option<u64>,
    },
    /// Some fields of a hash.
    HashFields {
        /// Key.
        key: Bytes,
        /// Field and value pairs.
        fields: Vec<(Bytes, Bytes)>,
    },
}

/// The crc32c checksum used for chunks and the footer.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Appends a string item.
pub(crate) fn put_string(out: &mut Vec<u8>, key: &[u8], value: &[u8], expire_at: Option<u64>) {
    out.push(1);
    put_bytes(out, key);
    put_bytes(out, value);
    put_expire(out, expire_at);
}

/// Appends a hash head item.
pub(crate) fn put_hash_head(out: &mut Vec<u8>, key: &[u8], expire_at: Option<u64>) {
    out.push(2);
    put_bytes(out, key);
    put_expire(out, expire_at);
}

/// Appends a hash fields item.
pub(crate) fn put_hash_fields<'a>(
    out: &mut Vec<u8>,
    key: &[u8],
    fields: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
) {
    out.push(3);
    put_bytes(out, key);
    put_varint(out, fields.len() as u64);
    for (f, v) in fields {
        put_bytes(out, f);
        put_bytes(out, v);
    }
}

/// A byte string decoded from a chunk, detached from it: values loaded into
/// the keyspace must not keep their whole 64 KiB chunk alive (a value that
/// outlives its neighbours would pin the chunk, beyond what the memory
/// accounting counts). Short ones are inlined by `Blob` anyway.
fn detach(b: Bytes) -> Bytes {
    if b.len() <= crate::blob::INLINE_CAPACITY {
        b
    } else {
        Bytes::copy_from_slice(&b)
    }
}

/// Decodes the items of one chunk payload. The byte strings of the items
/// are copies, not slices of `payload`.
pub fn decode_items(payload: Bytes) -> Result<Vec<Item>, String> {
    let mut r = Reader { buf: payload };
    let mut items = Vec::new();
    while !r.buf.is_empty() {
        let item = match r.u8("item tag").map_err(|e| e.to_string())? {
            1 => Item::String {
                key: detach(r.bytes("key").map_err(|e| e.to_string())?),
                value: detach(r.bytes("value").map_err(|e| e.to_string())?),
                expire_at: r.expire().map_err(|e| e.to_string())?,
            },
            2 => Item::HashHead {
                key: detach(r.bytes("key").map_err(|e| e.to_string())?),
                expire_at: r.expire().map_err(|e| e.to_string())?,
            },
            3 => {
                let key = detach(r.bytes("key").map_err(|e| e.to_string())?);
                // The count is checked against the bytes left (two per field
                // at least), but a field takes 32 times that in memory: the
                // vector starts no larger than the bytes left and grows with
                // the fields actually decoded.
                let n = r.count("field count", 2).map_err(|e| e.to_string())?;
                let mut fields = Vec::with_capacity(n.min(r.buf.len() / std::mem::size_of::<(Bytes, Bytes)>()));
                for _ in 0..n {
                    let f = detach(r.bytes("field").map_err(|e| e.to_string())?);
                    let v = detach(r.bytes("value").map_err(|e| e.to_string())?);
                    fields.push((f, v));
                }
                Item::HashFields { key, fields }
            }
            tag => return Err(format!("unknown item tag {tag}")),
        };
        items.push(item);
    }
    Ok(items)
}

/// Writes chunks and the footer to a stream; counts what it wrote.
pub(crate) struct ChunkWriter<W: Write> {
    out: W,
    pub(crate) items: u64,
    pub(crate) chunks: u64,
    pub(crate) payload_bytes: u64,
}

impl<W: Write> ChunkWriter<W> {
    pub(crate) fn new(mut out: W, header: &SnapshotHeader) -> io::Result<ChunkWriter<W>> {
        out.write_all(&header.encode())?;
        Ok(ChunkWriter {
            out,
            items: 0,
            chunks: 0,
            payload_bytes: 0,
        })
    }

    pub(crate) fn chunk(&mut self, payload: &[u8], items: u64) -> io::Result<()> {
        if payload.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("snapshot chunk over 4 GiB"))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&crc32c::crc32c(payload).to_le_bytes())?;
        self.out.write_all(payload)?;
        self.items += items;
        self.chunks += 1;
        self.payload_bytes += payload.len() as u64;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        let mut f = [0u8; 28];
        f[4..12].copy_from_slice(&self.items.to_le_bytes());
        f[12..20].copy_from_slice(&self.chunks.to_le_bytes());
        f[20..28].copy_from_slice(&self.payload_bytes.to_le_bytes());
        self.out.write_all(&f)?;
        self.out.write_all(&crc32c::crc32c(&f[4..28]).to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Streaming reader: the header, then chunk after chunk, then the footer.
pub struct SnapshotReader<R: Read> {
    input: R,
    position: u64,
    header: SnapshotHeader,
    items: u64,
    chunks: u64,
    payload_bytes: u64,
    done: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<SnapshotReader<R>, SnapshotError> {
        let mut h = [0u8; HEADER_LEN];
        read_exact(&mut input, &mut h, 0)?;
        let header = SnapshotHeader::decode(&h)?;
        Ok(SnapshotReader {
            input,
            position: HEADER_LEN as u64,
            header,
            items: 0,
            chunks: 0,
            payload_bytes: 0,
            done: false,
        })
    }

    /// The header.
    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// The items of the next chunk; `None` after a valid footer.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<Item>>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let start = self.position;
        let mut head = [0u8; 8];
        read_exact(&mut self.input, &mut head[..4], start)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if len == 0 {
            let mut f = [0u8; 28];
            read_exact(&mut self.input, &mut f, start + 4)?;
            let counts = |i: usize| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&f[i..i + 8]);
                u64::from_le_bytes(a)
            };
            let crc = u32::from_le_bytes([f[24], f[25], f[26], f[27]]);
            if crc32c::crc32c(&f[..24]) != crc {
                return Err(corrupt(start, "footer checksum mismatch"));
            }
            if (counts(0), counts(8), counts(16)) != (self.items, self.chunks, self.payload_bytes) {
                return Err(corrupt(start, "footer counts differ from the chunks read"));
            }
            let mut extra = [0u8; 1];
            if self
                .input
                .read(&mut extra)
                .map_err(|e| io_err("reading past the footer", e))?
                != 0
            {
                return Err(corrupt(start + 32, "bytes after the footer"));
            }
            self.done = true;
            return Ok(None);
        }
        if len > MAX_CHUNK {
            return Err(corrupt(start, &format!("chunk length {len} is implausible")));
        }
        read_exact(&mut self.input, &mut head[4..], start + 4)?;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let payload = read_payload(&mut self.input, len as usize, start + 8)?;
        if crc32c::crc32c(&payload) != crc {
            return Err(corrupt(start, "chunk checksum mismatch"));
        }
        let items = decode_items(Bytes::from(payload)).map_err(|reason| corrupt(start, &reason))?;
        self.position = start + 8 + u64::from(len);
        self.items += items.len() as u64;
        self.chunks += 1;
        self.payload_bytes += u64::from(len);
        Ok(Some(items))
    }
}

/// Reads `len` payload bytes found at `position`, growing the buffer as
/// they arrive (the length comes from the stream: a truncated or lying
/// stream must not make us allocate what it announces).
fn read_payload(input: &mut impl Read, len: usize, position: u64) -> Result<Vec<u8>, SnapshotError> {
    let mut payload = Vec::new();
    while payload.len() < len {
        let have = payload.len();
        let step = (len - have).min(have.max(FIRST_READ));
        payload.resize(have + step, 0);
        read_exact(input, &mut payload[have..], position + have as u64)?;
    }
    Ok(payload)
}

fn corrupt(position: u64, reason: &str) -> SnapshotError {
    SnapshotError::Corrupt {
        position,
        reason: reason.into(),
    }
}

fn io_err(context: &str, source: io::Error) -> SnapshotError {
    SnapshotError::Io {
        context: context.into(),
        source,
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], position: u64) -> Result<(), SnapshotError> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            corrupt(position, "truncated")
        } else {
            io_err("reading a snapshot", e)
        }
    })
}
