//! Segment files: the primary's log bytes between two offsets, verbatim
//! (whole records with their own offset-covering checksums), sealed with a
//! checksummed trailer that also carries the segment's time marks.
//!
//! ```text
//! header (176 bytes, little-endian)
//!   0   magic "RKVBSEG\0"             8   format version (u32)
//!   12  crc32c of bytes 16..176 (u32) 16  start offset (u64)
//!   24  created, unix ms (u64)        32  switch offset of the history (u64)
//!   40  replid length (u8)            41  previous replid length (u8)
//!   48  replid (64 bytes, zero padded) 112 previous replid (64 bytes)
//! body: the log's records from `start` to `end`, as the ring holds them
//! marks: count × (offset u64, unix ms u64): "by this time the backup had
//!        received every record up to this offset"
//! trailer (48 bytes)
//!   0   end offset (u64)              8   body length (u64)
//!   16  crc32c of the body (u32)      20  mark count (u32)
//!   24  sealed, unix ms (u64)         32  crc32c of the marks and trailer bytes 0..32 (u32)
//!   36  zero (u32)                    40  magic "RKVBEND\0"
//! ```
//!
//! A segment is written under an `.open` name and renamed to its sealed
//! name after the trailer is fsynced: a sealed name is a whole segment.
//! Reading trusts nothing: the trailer's lengths must add up to the file's
//! real length before anything is allocated (so no buffer is larger than
//! the file), and every record is checked again (`validate_stream`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::BackupError;
use super::layout;

/// Magic at the start of a segment.
pub const MAGIC: &[u8; 8] = b"RKVBSEG\0";
/// Magic at the end of a sealed segment.
pub const END_MAGIC: &[u8; 8] = b"RKVBEND\0";
/// Segment format version this build writes and reads.
pub const SEGMENT_FORMAT: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 176;
/// Bytes of the trailer.
pub const TRAILER_LEN: usize = 48;
/// Bytes of one time mark.
pub const MARK_LEN: usize = 16;
/// Longest replid a segment header holds.
pub const MAX_REPLID: usize = 64;

/// The replication history a segment's bytes belong to (the ring header's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    /// Replication id.
    pub replid: String,
    /// The previous one.
    pub prev_replid: String,
    /// Where `replid` took over.
    pub switch_offset: u64,
}

/// "By `time_ms` the backup had received every record up to `offset`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// A record boundary.
    pub offset: u64,
    /// Unix ms.
    pub time_ms: u64,
}

/// What a sealed segment says about itself (header and trailer, checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// First offset.
    pub start: u64,
    /// Offset after the last byte.
    pub end: u64,
    /// The history.
    pub history: History,
    /// Created, unix ms.
    pub created_ms: u64,
    /// Sealed, unix ms.
    pub sealed_ms: u64,
    /// Time marks, by offset and time.
    pub marks: Vec<Mark>,
    body_crc: u32,
}

/// The segment being written.
pub struct SegmentWriter {
    path: PathBuf,
    out: BufWriter<File>,
    seq: u64,
    start: u64,
    end: u64,
    crc: u32,
    marks: Vec<Mark>,
    created_ms: u64,
    history: History,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("path", &self.path)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

fn put_replid(h: &mut [u8], at: usize, s: &str) -> Result<(), BackupError> {
    if s.len() > MAX_REPLID {
        return Err(BackupError::Usage(format!(
            "a replid longer than {MAX_REPLID} bytes: {s}"
        )));
    }
    h[at..at + s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

fn encode_header(start: u64, created_ms: u64, history: &History) -> Result<[u8; HEADER_LEN], BackupError> {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_FORMAT.to_le_bytes());
    h[16..24].copy_from_slice(&start.to_le_bytes());
    h[24..32].copy_from_slice(&created_ms.to_le_bytes());
    h[32..40].copy_from_slice(&history.switch_offset.to_le_bytes());
    h[40] = history.replid.len().min(255) as u8;
    h[41] = history.prev_replid.len().min(255) as u8;
    put_replid(&mut h, 48, &history.replid)?;
    put_replid(&mut h, 112, &history.prev_replid)?;
    let crc = crc32c::crc32c(&h[16..]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(h)
}

impl SegmentWriter {
    /// Starts segment `seq` at `start` in `chain_dir` (under its `.open` name).
    pub fn create(
        chain_dir: &Path,
        seq: u64,
        start: u64,
        history: History,
        now_ms: u64,
    ) -> Result<SegmentWriter, BackupError> {
        let path = chain_dir.join(layout::open_segment_name(seq, start));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(BackupError::io(format!("creating {}", path.display())))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&encode_header(start, now_ms, &history)?)
            .map_err(BackupError::io(format!("writing {}", path.display())))?;
        Ok(SegmentWriter {
            path,
            out,
            seq,
            start,
            end: start,
            crc: 0,
            marks: Vec::new(),
            created_ms: now_ms,
            history,
        })
    }

    /// First offset.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Offset after the bytes appended so far.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Body bytes so far.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// No body bytes yet.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// When it was started, unix ms.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// The history its bytes belong to.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Appends whole records that start at [`SegmentWriter::end`].
    pub fn append(&mut self, start: u64, bytes: &[u8]) -> Result<(), BackupError> {
        if start != self.end {
            return Err(BackupError::Usage(format!(
                "{}: bytes at offset {start} do not follow the segment's end {}",
                self.path.display(),
                self.end
            )));
        }
        self.out
            .write_all(bytes)
            .map_err(BackupError::io(format!("writing {}", self.path.display())))?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.end += bytes.len() as u64;
        Ok(())
    }

    /// Notes that by `time_ms` everything up to [`SegmentWriter::end`] was
    /// received (a mark at the same offset as the last one only moves its
    /// time).
    pub fn mark(&mut self, time_ms: u64) {
        let end = self.end;
        match self.marks.last_mut() {
            Some(last) if last.offset == end => last.time_ms = last.time_ms.max(time_ms),
            _ => self.marks.push(Mark { offset: end, time_ms }),
        }
    }

    /// Writes the marks and the trailer, fsyncs, and renames the file to its
    /// sealed name; returns that path.
    pub fn seal(mut self, now_ms: u64) -> Result<PathBuf, BackupError> {
        self.mark(now_ms);
        let ctx = || format!("sealing {}", self.path.display());
        let mut tail = Vec::with_capacity(self.marks.len() * MARK_LEN + TRAILER_LEN);
        for m in &self.marks {
            tail.extend_from_slice(&m.offset.to_le_bytes());
            tail.extend_from_slice(&m.time_ms.to_le_bytes());
        }
        tail.extend_from_slice(&self.end.to_le_bytes());
        tail.extend_from_slice(&(self.end - self.start).to_le_bytes());
        tail.extend_from_slice(&self.crc.to_le_bytes());
        tail.extend_from_slice(&(self.marks.len() as u32).to_le_bytes());
        tail.extend_from_slice(&now_ms.to_le_bytes());
        let crc = crc32c::crc32c(&tail);
        tail.extend_from_slice(&crc.to_le_bytes());
        tail.extend_from_slice(&0u32.to_le_bytes());
        tail.extend_from_slice(END_MAGIC);
        self.out.write_all(&tail).map_err(BackupError::io(ctx()))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| BackupError::io(ctx())(e.into_error()))?;
        file.sync_all().map_err(BackupError::io(ctx()))?;
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let sealed = dir.join(layout::segment_name(self.seq, self.start, self.end));
        layout::publish(&self.path, &sealed)?;
        Ok(sealed)
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn read_at(file: &mut File, path: &Path, pos: u64, buf: &mut [u8]) -> Result<(), BackupError> {
    file.seek(SeekFrom::Start(pos))
        .and_then(|_| file.read_exact(buf))
        .map_err(BackupError::io(format!("reading {}", path.display())))
}

fn replid_at(path: &Path, h: &[u8], len_at: usize, at: usize) -> Result<String, BackupError> {
    let len = h[len_at] as usize;
    if len > MAX_REPLID {
        return Err(BackupError::corrupt(
            path,
            len_at as u64,
            format!("replid length {len}"),
        ));
    }
    String::from_utf8(h[at..at + len].to_vec())
        .map_err(|_| BackupError::corrupt(path, at as u64, "replid is not UTF-8"))
}

/// Opens a sealed segment and checks its header, trailer and marks
/// (not its body: see [`read_segment`]). Returns the file, its length and
/// the summary.
fn open_checked(path: &Path) -> Result<(File, u64, SegmentSummary), BackupError> {
    let mut file = File::open(path).map_err(BackupError::io(format!("opening {}", path.display())))?;
    let len = file
        .metadata()
        .map_err(BackupError::io(format!("reading {}", path.display())))?
        .len();
    if len < (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(BackupError::corrupt(
            path,
            0,
            format!("{len} bytes: shorter than a header and a trailer"),
        ));
    }
    let mut h = [0u8; HEADER_LEN];
    read_at(&mut file, path, 0, &mut h)?;
    if &h[..8] != MAGIC {
        return Err(BackupError::corrupt(path, 0, "not a segment (bad magic)"));
    }
    let version = u32_at(&h, 8);
    if version != SEGMENT_FORMAT {
        return Err(BackupError::corrupt(
            path,
            8,
            format!("segment format {version} (this build reads {SEGMENT_FORMAT})"),
        ));
    }
    if crc32c::crc32c(&h[16..]) != u32_at(&h, 12) {
        return Err(BackupError::corrupt(path, 12, "header checksum mismatch"));
    }
    let start = u64_at(&h, 16);
    let history = History {
        replid: replid_at(path, &h, 40, 48)?,
        prev_replid: replid_at(path, &h, 41, 112)?,
        switch_offset: u64_at(&h, 32),
    };
    let tail_at = len - TRAILER_LEN as u64;
    let mut t = [0u8; TRAILER_LEN];
    read_at(&mut file, path, tail_at, &mut t)?;
    if &t[40..48] != END_MAGIC {
        return Err(BackupError::corrupt(path, tail_at + 40, "no trailer (bad end magic)"));
    }
    if u32_at(&t, 36) != 0 {
        return Err(BackupError::corrupt(
            path,
            tail_at + 36,
            "reserved trailer bytes are not zero",
        ));
    }
    let end = u64_at(&t, 0);
    let body_len = u64_at(&t, 8);
    let count = u32_at(&t, 20) as u64;
    let room = len - (HEADER_LEN + TRAILER_LEN) as u64;
    let marks_len = count.checked_mul(MARK_LEN as u64).filter(|m| *m <= room);
    let Some(marks_len) = marks_len.filter(|m| room - m == body_len) else {
        return Err(BackupError::corrupt(
            path,
            tail_at,
            format!("trailer says {body_len} body bytes and {count} marks, the file has room for {room} bytes"),
        ));
    };
    if start.checked_add(body_len) != Some(end) {
        return Err(BackupError::corrupt(
            path,
            tail_at,
            format!("start {start} + {body_len} body bytes is not the end {end}"),
        ));
    }
    let marks_at = tail_at - marks_len;
    // Bounded by the file's real length, checked above.
    let mut marks_bytes = vec![0u8; marks_len as usize];
    read_at(&mut file, path, marks_at, &mut marks_bytes)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&marks_bytes), &t[..32]);
    if crc != u32_at(&t, 32) {
        return Err(BackupError::corrupt(path, tail_at + 32, "trailer checksum mismatch"));
    }
    let mut marks: Vec<Mark> = Vec::with_capacity(count as usize);
    for (i, m) in marks_bytes.chunks_exact(MARK_LEN).enumerate() {
        let mark = Mark {
            offset: u64_at(m, 0),
            time_ms: u64_at(m, 8),
        };
        let in_order = marks
            .last()
            .is_none_or(|p| p.offset <= mark.offset && p.time_ms <= mark.time_ms);
        if !(start..=end).contains(&mark.offset) || !in_order {
            return Err(BackupError::corrupt(
                path,
                marks_at + (i * MARK_LEN) as u64,
                format!(
                    "mark at offset {} is out of order or outside [{start}, {end}]",
                    mark.offset
                ),
            ));
        }
        marks.push(mark);
    }
    Ok((
        file,
        len,
        SegmentSummary {
            start,
            end,
            history,
            created_ms: u64_at(&h, 24),
            sealed_ms: u64_at(&t, 24),
            marks,
            body_crc: u32_at(&t, 16),
        },
    ))
}

/// The header, trailer and marks of a sealed segment, checked (its body
/// is checked when it is read: [`read_segment`]).
pub fn read_summary(path: &Path) -> Result<SegmentSummary, BackupError> {
    open_checked(path).map(|(_, _, s)| s)
}

/// A sealed segment's records, every byte checked.
#[derive(Debug)]
pub struct SegmentData {
    /// Header and trailer.
    pub summary: SegmentSummary,
    /// The body: records from `summary.start`.
    pub body: Vec<u8>,
    /// Start offset of every record in the body.
    pub records: Vec<u64>,
}

/// Reads a sealed segment whole and checks it: header, trailer, marks, the
/// body's checksum, and every record (at its own offset, with its own
/// checksum, none cut). A failure names the file and the byte position.
pub fn read_segment(path: &Path) -> Result<SegmentData, BackupError> {
    let (mut file, _, summary) = open_checked(path)?;
    let body_len = summary.end - summary.start;
    // Bounded by the file's real length (checked by `open_checked`).
    let mut body = vec![0u8; body_len as usize];
    read_at(&mut file, path, HEADER_LEN as u64, &mut body)?;
    if crc32c::crc32c(&body) != summary.body_crc {
        return Err(BackupError::corrupt(path, HEADER_LEN as u64, "body checksum mismatch"));
    }
    let records = ringkv::log::validate_stream(summary.start, &body, u32::MAX as usize).map_err(|e| {
        let (offset, reason) = match &e {
            ringkv::log::LogError::Corrupt { offset, reason } => (*offset, reason.clone()),
            other => (summary.start, other.to_string()),
        };
        BackupError::corrupt(
            path,
            HEADER_LEN as u64 + offset.saturating_sub(summary.start),
            format!("record at log offset {offset}: {reason}"),
        )
    })?;
    Ok(SegmentData { summary, body, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(engine: &ringkv::Engine, from: u64) -> ringkv::log::RawBatch {
        engine.log().expect("log").read_stream(from, 1 << 20).expect("read")
    }

    #[test]
    fn a_sealed_segment_reads_back_and_every_damaged_byte_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let engine = ringkv::Engine::builder().anonymous_log().build().expect("engine");
        for i in 0..20 {
            engine.set(format!("k{i}"), format!("v{i}")).expect("set");
        }
        let batch = records(&engine, 0);
        let history = History {
            replid: "A".repeat(40),
            prev_replid: String::new(),
            switch_offset: 0,
        };
        let mut w = SegmentWriter::create(dir.path(), 1, 0, history.clone(), 1000).expect("create");
        w.append(0, &batch.bytes).expect("append");
        w.mark(1500);
        let path = w.seal(2000).expect("seal");
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some(layout::segment_name(1, 0, batch.end()).as_str())
        );
        let data = read_segment(&path).expect("reads");
        assert_eq!(data.body, batch.bytes);
        assert_eq!(data.records.len(), 20);
        assert_eq!(data.summary.history, history);
        assert_eq!(
            data.summary.marks,
            vec![Mark {
                offset: batch.end(),
                time_ms: 2000
            }]
        );
        let good = std::fs::read(&path).expect("read");
        // Every single flipped byte is detected: header, body, marks, trailer.
        for pos in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[pos] ^= 0x40;
            std::fs::write(&path, &bad).expect("write");
            let e = read_segment(&path).expect_err("damaged");
            assert!(
                matches!(&e, BackupError::Corrupt { path: p, .. } if *p == path),
                "byte {pos}: {e}"
            );
        }
        // Cut short anywhere.
        for len in [0, 10, HEADER_LEN, good.len() - 1] {
            std::fs::write(&path, &good[..len]).expect("write");
            assert!(matches!(read_segment(&path), Err(BackupError::Corrupt { .. })), "{len}");
        }
    }
}
