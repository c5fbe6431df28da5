//! Per-batch, adaptive compression of data frames.
//!
//! Each batch is compressed with the connection's codec and sent raw when
//! that does not shrink it by at least 1/32 (incompressible values must
//! not cost CPU on both ends for nothing, nor make a link fall behind).
//! After a run of batches that did not shrink, only every 16th is tried
//! until one shrinks again.
//!
//! Batches are small when a follower is caught up (a few records each), so
//! each one is compressed with the stream's preceding bytes as history: the
//! keys and field names that repeat across batches compress as well as
//! within one. Frames of one stream must be decoded in order.
//!
//! - lz4: each frame is a block compressed with the stream's last 64 KiB
//!   (raw batches included) as a prefix dictionary; both ends keep it.
//! - zstd (since protocol version 3): one zstd stream per QUIC stream, each
//!   frame a flushed part of it (`ZSTD_e_flush`), so the history is zstd's
//!   own window of [`ZSTD_WINDOW_LOG`] (1 MiB) and is never re-indexed per
//!   batch (version 2 reloaded a 256 KiB prefix into a fresh context for
//!   every frame: 4.9× on telemetry, 7-40 MB/s for small batches; this is
//!   5.1-5.6× at 60-120 MB/s, `examples/wire_ratio.rs`). Small batches are
//!   compressed too (a flush costs a few bytes, and the window makes even
//!   one record shrink). A batch that does not shrink is sent raw, and a
//!   raw frame ends the zstd stream on both ends (the compressor has taken
//!   in bytes the decoder never sees): the next zstd frame starts a new
//!   stream with an empty window. So a frame is never larger than its raw
//!   batch, whatever the codec. The decoder refuses a window above
//!   [`ZSTD_WINDOW_LOG`], so its memory is bounded whatever it is sent.

use crate::protocol::Codec;

/// Batches shorter than this go raw.
const MIN_LEN: usize = 128;

/// Decompression failures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompressError {
    /// The stated length is above the limit.
    #[error("decompressed length {len} exceeds the limit of {max} bytes")]
    TooLarge {
        /// Stated length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The data does not decompress to the stated length.
    #[error("{codec:?} data does not decompress: {reason}")]
    Corrupt {
        /// The codec.
        codec: Codec,
        /// What went wrong.
        reason: String,
    },
}

/// zstd level: the library's default (a good ratio at hundreds of MB/s).
const ZSTD_LEVEL: i32 = 3;

/// Log2 of the zstd stream's window: the history a frame may refer to, and
/// the most a decoder accepts (a frame header asking for more is refused).
pub const ZSTD_WINDOW_LOG: u32 = 20;

fn history_cap(codec: Codec) -> usize {
    match codec {
        Codec::Lz4 => 64 * 1024,
        // zstd keeps its own window.
        Codec::None | Codec::Zstd => 0,
    }
}

/// Appends `raw` to a stream's history, keeping the last `cap` bytes.
fn remember(history: &mut Vec<u8>, raw: &[u8], cap: usize) {
    if cap == 0 {
        return;
    }
    if raw.len() >= cap {
        history.clear();
        history.extend_from_slice(&raw[raw.len() - cap..]);
    } else {
        history.extend_from_slice(raw);
        if history.len() > cap {
            history.drain(..history.len() - cap);
        }
    }
}

fn zstd_name(code: usize) -> String {
    zstd::zstd_safe::get_error_name(code).to_string()
}

/// The sending end of one zstd stream.
struct ZstdEncoder(zstd::zstd_safe::CCtx<'static>);

impl ZstdEncoder {
    fn new() -> Option<ZstdEncoder> {
        use zstd::zstd_safe::{CCtx, CParameter};
        let mut cctx = CCtx::try_create()?;
        cctx.set_parameter(CParameter::CompressionLevel(ZSTD_LEVEL)).ok()?;
        cctx.set_parameter(CParameter::WindowLog(ZSTD_WINDOW_LOG)).ok()?;
        Some(ZstdEncoder(cctx))
    }

    /// The next part of the stream: `raw`, flushed. An error leaves the
    /// stream unusable.
    fn compress(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        use zstd::zstd_safe::{zstd_sys::ZSTD_EndDirective, InBuffer, OutBuffer};
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()) + 64);
        let mut input = InBuffer::around(raw);
        loop {
            let pos = out.len();
            let mut buf = OutBuffer::around_pos(&mut out, pos);
            let left = self
                .0
                .compress_stream2(&mut buf, &mut input, ZSTD_EndDirective::ZSTD_e_flush)
                .ok()?;
            if left == 0 && input.pos() == raw.len() {
                return Some(out);
            }
            out.reserve(left.max(4096));
        }
    }
}

/// The receiving end of one zstd stream, with a bounded window.
struct ZstdDecoder(zstd::zstd_safe::DCtx<'static>);

impl ZstdDecoder {
    fn new() -> Result<ZstdDecoder, String> {
        use zstd::zstd_safe::{DCtx, DParameter};
        let mut dctx = DCtx::try_create().ok_or("no memory for a zstd context")?;
        dctx.set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG))
            .map_err(zstd_name)?;
        Ok(ZstdDecoder(dctx))
    }

    /// Decodes the next part of the stream to exactly `raw_len` bytes (the
    /// output never grows past them).
    fn decompress(&mut self, data: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
        use zstd::zstd_safe::{InBuffer, OutBuffer};
        let mut out = Vec::with_capacity(raw_len);
        let mut input = InBuffer::around(data);
        while input.pos() < data.len() {
            let before = (input.pos(), out.len());
            let pos = out.len();
            let mut buf = OutBuffer::around_pos(&mut out, pos);
            self.0.decompress_stream(&mut buf, &mut input).map_err(zstd_name)?;
            if (input.pos(), out.len()) == before {
                return Err(format!("more than the stated {raw_len} bytes"));
            }
        }
        // Nothing may be left inside the decoder for this frame.
        let mut spare = Vec::with_capacity(1);
        let mut buf = OutBuffer::around(&mut spare);
        self.0
            .decompress_stream(&mut buf, &mut InBuffer::around(&[]))
            .map_err(zstd_name)?;
        if !spare.is_empty() {
            return Err(format!("more than the stated {raw_len} bytes"));
        }
        Ok(out)
    }
}

/// A stream's compressor with its history, adaptive state and byte counters.
pub struct Compressor {
    codec: Codec,
    misses: u32,
    skipped: u32,
    /// lz4's prefix dictionary.
    history: Vec<u8>,
    /// zstd's stream (created on the first batch tried; `None` after an
    /// error, from when on every batch goes raw).
    zstd: Option<ZstdEncoder>,
    zstd_failed: bool,
    /// Bytes before compression.
    pub bytes_raw: u64,
    /// Bytes sent (after compression, or raw).
    pub bytes_wire: u64,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("codec", &self.codec)
            .field("misses", &self.misses)
            .field("bytes_raw", &self.bytes_raw)
            .field("bytes_wire", &self.bytes_wire)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor for `codec`.
    pub fn new(codec: Codec) -> Compressor {
        Compressor {
            codec,
            misses: 0,
            skipped: 0,
            history: Vec::new(),
            zstd: None,
            zstd_failed: false,
            bytes_raw: 0,
            bytes_wire: 0,
        }
    }

    /// Compresses `raw` if that pays: returns the codec used and the bytes
    /// to send.
    ///
    /// ```
    /// use ringkv_replication::compress::{decompress, Compressor};
    /// use ringkv_replication::protocol::Codec;
    /// let mut c = Compressor::new(Codec::Lz4);
    /// let raw = b"telemetry:host-17:cpu=0.93;".repeat(100);
    /// let (codec, wire) = c.compress(&raw);
    /// assert_eq!(codec, Codec::Lz4);
    /// assert!(wire.len() < raw.len() / 4);
    /// assert_eq!(decompress(codec, &wire, raw.len(), 1 << 20)?, raw);
    /// # Ok::<(), ringkv_replication::compress::CompressError>(())
    /// ```
    pub fn compress(&mut self, raw: &[u8]) -> (Codec, Vec<u8>) {
        let out = self.compress_inner(raw);
        remember(&mut self.history, raw, history_cap(self.codec));
        out
    }

    fn compress_inner(&mut self, raw: &[u8]) -> (Codec, Vec<u8>) {
        self.bytes_raw += raw.len() as u64;
        let long_enough = raw.len() >= MIN_LEN || self.codec == Codec::Zstd;
        let attempt = self.codec != Codec::None && long_enough && {
            if self.misses >= 8 {
                self.skipped += 1;
                self.skipped.is_multiple_of(16)
            } else {
                true
            }
        };
        if attempt {
            let packed = match self.codec {
                Codec::Lz4 => Some(lz4_flex::block::compress_with_dict(raw, &self.history)),
                Codec::Zstd => self.zstd_part(raw),
                Codec::None => None,
            };
            if let Some(packed) = packed {
                if packed.len() < raw.len() - raw.len() / 32 {
                    self.misses = 0;
                    self.bytes_wire += packed.len() as u64;
                    return (self.codec, packed);
                }
            }
            self.misses = self.misses.saturating_add(1);
        }
        // A raw frame ends the zstd stream (its decoder starts a new one).
        self.zstd = None;
        self.bytes_wire += raw.len() as u64;
        (Codec::None, raw.to_vec())
    }

    /// `raw` as the next part of the zstd stream; `None` (and raw from then
    /// on) if zstd fails.
    fn zstd_part(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        if self.zstd_failed {
            return None;
        }
        if self.zstd.is_none() {
            self.zstd = ZstdEncoder::new();
        }
        let packed = self.zstd.as_mut().and_then(|z| z.compress(raw));
        if packed.is_none() {
            tracing::warn!("zstd failed; the rest of this stream goes uncompressed");
            self.zstd = None;
            self.zstd_failed = true;
        }
        packed
    }
}

/// The receiving end of a [`Compressor`]: decodes one stream's frames in
/// order, keeping the same history.
pub struct Decompressor {
    /// The codec negotiated for the connection.
    codec: Codec,
    /// lz4's prefix dictionary.
    history: Vec<u8>,
    /// zstd's stream, created with the first zstd frame.
    zstd: Option<ZstdDecoder>,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A decompressor for a stream compressed with `codec`.
    pub fn new(codec: Codec) -> Decompressor {
        Decompressor {
            codec,
            history: Vec::new(),
            zstd: None,
        }
    }

    /// Decompresses a frame's `data` (compressed with `used`, which is the
    /// stream's codec or `None` for a raw batch) to exactly `raw_len` bytes
    /// (at most `max`).
    pub fn decompress(
        &mut self,
        used: Codec,
        data: &[u8],
        raw_len: usize,
        max: usize,
    ) -> Result<Vec<u8>, CompressError> {
        if used != Codec::None && used != self.codec {
            return Err(CompressError::Corrupt {
                codec: used,
                reason: format!("frame compressed with {used:?} on a {:?} stream", self.codec),
            });
        }
        if raw_len > max {
            return Err(CompressError::TooLarge { len: raw_len, max });
        }
        let corrupt = |reason: String| CompressError::Corrupt { codec: used, reason };
        let out = match used {
            Codec::None if self.codec == Codec::Zstd => {
                // A raw frame ends the zstd stream: the next one is new.
                self.zstd = None;
                decode(used, data, raw_len, max, &[])?
            }
            Codec::Zstd => {
                if self.zstd.is_none() {
                    self.zstd = Some(ZstdDecoder::new().map_err(corrupt)?);
                }
                let z = self.zstd.as_mut().ok_or_else(|| corrupt("no zstd stream".into()))?;
                let out = z.decompress(data, raw_len).map_err(corrupt)?;
                if out.len() != raw_len {
                    return Err(corrupt(format!("{} bytes instead of {raw_len}", out.len())));
                }
                out
            }
            _ => decode(used, data, raw_len, max, &self.history)?,
        };
        remember(&mut self.history, &out, history_cap(self.codec));
        Ok(out)
    }
}

fn decode(codec: Codec, data: &[u8], raw_len: usize, max: usize, prefix: &[u8]) -> Result<Vec<u8>, CompressError> {
    if raw_len > max {
        return Err(CompressError::TooLarge { len: raw_len, max });
    }
    let corrupt = |reason: String| CompressError::Corrupt { codec, reason };
    let out = match codec {
        Codec::None => data.to_vec(),
        Codec::Lz4 => {
            lz4_flex::block::decompress_with_dict(data, raw_len, prefix).map_err(|e| corrupt(e.to_string()))?
        }
        Codec::Zstd => return Decompressor::new(Codec::Zstd).decompress(codec, data, raw_len, max),
    };
    if out.len() != raw_len {
        return Err(corrupt(format!("{} bytes instead of {raw_len}", out.len())));
    }
    Ok(out)
}

/// Decompresses one frame compressed without history (the first frame of
/// a stream) to exactly `raw_len` bytes (at most `max`).
pub fn decompress(codec: Codec, data: &[u8], raw_len: usize, max: usize) -> Result<Vec<u8>, CompressError> {
    decode(codec, data, raw_len, max, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_batch(x: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                *x as u8
            })
            .collect()
    }

    #[test]
    fn incompressible_batches_go_raw_and_are_rarely_retried() {
        for codec in [Codec::Lz4, Codec::Zstd] {
            let mut c = Compressor::new(codec);
            let mut d = Decompressor::new(codec);
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..100 {
                // Fresh random bytes each time (the history would find repeats).
                let random = random_batch(&mut x, 4096);
                let (used, wire) = c.compress(&random);
                assert_eq!(used, Codec::None);
                assert_eq!(wire, random);
                assert_eq!(d.decompress(used, &wire, random.len(), 1 << 20).expect("raw"), random);
            }
            assert_eq!(c.bytes_raw, c.bytes_wire);
            // Compressible data is compressed again once tried (for zstd
            // in a new stream, after the raw frames ended the last one).
            let text = b"session:token:abcdef ".repeat(300);
            let mut shrunk = false;
            for i in 0..40 {
                let (used, wire) = c.compress(&text);
                shrunk |= used == codec;
                assert_eq!(
                    d.decompress(used, &wire, text.len(), 1 << 20).expect("round trip"),
                    text
                );
                // Raw frames between compressed ones.
                if i % 5 == 0 {
                    let random = random_batch(&mut x, 300);
                    let (used, wire) = c.compress(&random);
                    assert!(wire.len() <= random.len());
                    assert_eq!(d.decompress(used, &wire, random.len(), 1 << 20).expect("mixed"), random);
                }
            }
            assert!(shrunk, "{codec:?}");
        }
    }

    #[test]
    fn a_frame_is_never_larger_than_its_batch() {
        let mut x = 5u64;
        for codec in [Codec::Lz4, Codec::Zstd] {
            let mut c = Compressor::new(codec);
            let mut d = Decompressor::new(codec);
            for len in [1usize, 7, 64, 127, 128, 1000, 1526, 4096, 70_000] {
                for _ in 0..3 {
                    let random = random_batch(&mut x, len);
                    let (used, wire) = c.compress(&random);
                    assert!(wire.len() <= len, "{codec:?}: {} bytes for {len}", wire.len());
                    assert_eq!(d.decompress(used, &wire, len, 1 << 20).expect("round trip"), random);
                }
            }
        }
    }

    #[test]
    fn streams_with_history_round_trip_and_compress_better() {
        for codec in [Codec::Lz4, Codec::Zstd] {
            let mut c = Compressor::new(codec);
            let mut d = Decompressor::new(codec);
            let mut plain = Compressor::new(Codec::None);
            let mut x = 1u64;
            for i in 0..300u64 {
                // Small batches of repetitive keys with some random bytes.
                let mut batch = Vec::new();
                for j in 0..(6 + i % 5) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    batch.extend_from_slice(format!("telemetry:host-{}:m{} {}", (i + j) % 50, j, x % 1000).as_bytes());
                }
                let (used, wire) = c.compress(&batch);
                // Without history: each batch as the first of a stream.
                plain.bytes_wire += Compressor::new(codec).compress(&batch).1.len() as u64;
                assert_eq!(
                    d.decompress(used, &wire, batch.len(), 1 << 20).expect("round trip"),
                    batch
                );
            }
            assert!(
                c.bytes_wire * 4 < plain.bytes_wire * 3,
                "{codec:?}: with history {} bytes, without {}",
                c.bytes_wire,
                plain.bytes_wire
            );
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        for codec in [Codec::Lz4, Codec::Zstd] {
            assert!(decompress(codec, b"\xff\xff\xff garbage", 100, 1 << 20).is_err());
        }
        assert!(matches!(
            decompress(Codec::None, b"abc", 5, 1 << 20),
            Err(CompressError::Corrupt { .. })
        ));
        assert!(matches!(
            decompress(Codec::Lz4, b"", 1 << 30, 1 << 20),
            Err(CompressError::TooLarge { .. })
        ));
    }

    /// The replication bench's telemetry HSETs as ring records.
    fn telemetry_records(n: u64) -> Vec<u8> {
        use ringkv::log::record::{encode_mutation, header, record_len};
        use ringkv::{Bytes, Mutation};
        let (mut out, mut payload) = (Vec::new(), Vec::new());
        for i in 0..n {
            payload.clear();
            let m = Mutation::HSet {
                key: Bytes::from(format!("telemetry:host-{}", i % 1000)),
                fields: vec![(
                    Bytes::from(format!("m{}", i % 16)),
                    Bytes::from(format!("{{\"v\":{},\"t\":{}}}", (i * 7919) % 10_000, 1_700_000_000 + i)),
                )],
            };
            encode_mutation(&m, &mut payload);
            let offset = out.len() as u64;
            out.extend_from_slice(&header(offset, &payload));
            out.extend_from_slice(&payload);
            out.resize((offset + record_len(payload.len())) as usize, 0);
        }
        out
    }

    #[test]
    fn zstd_stream_sends_telemetry_at_least_five_times_smaller() {
        let stream = telemetry_records(50_000);
        for batch in [4096, 32 * 1024, 256 * 1024] {
            let mut c = Compressor::new(Codec::Zstd);
            let mut d = Decompressor::new(Codec::Zstd);
            for raw in stream.chunks(batch) {
                let (used, wire) = c.compress(raw);
                assert_eq!(used, Codec::Zstd);
                assert_eq!(d.decompress(used, &wire, raw.len(), 1 << 20).expect("round trip"), raw);
            }
            assert_eq!(c.bytes_raw, stream.len() as u64);
            assert!(
                c.bytes_wire * 5 < c.bytes_raw,
                "{batch}-byte batches: {} of {} bytes sent",
                c.bytes_wire,
                c.bytes_raw
            );
        }
    }

    #[test]
    fn zstd_frames_that_lie_or_ask_for_a_large_window_are_refused() {
        use zstd::zstd_safe::{zstd_sys::ZSTD_EndDirective, CCtx, CParameter, InBuffer, OutBuffer};
        let text = b"telemetry:host-1 m3 {\"v\":17} ".repeat(200);
        let mut c = Compressor::new(Codec::Zstd);
        let (used, wire) = c.compress(&text);
        assert_eq!(used, Codec::Zstd);
        // A stated length shorter or longer than the frame holds.
        for stated in [text.len() - 1, text.len() + 1, 0] {
            let r = Decompressor::new(Codec::Zstd).decompress(used, &wire, stated, 1 << 20);
            assert!(matches!(r, Err(CompressError::Corrupt { .. })), "{stated}: {r:?}");
        }
        // Truncated, and garbage.
        assert!(decompress(used, &wire[..wire.len() / 2], text.len(), 1 << 20).is_err());
        assert!(decompress(used, b"\x28\xb5\x2f\xfd garbage garbage", 100, 1 << 20).is_err());
        // A stream whose window is above ZSTD_WINDOW_LOG.
        let mut big = CCtx::create();
        big.set_parameter(CParameter::WindowLog(27)).expect("window");
        let mut out = Vec::with_capacity(1 << 16);
        let mut buf = OutBuffer::around(&mut out);
        big.compress_stream2(&mut buf, &mut InBuffer::around(&text), ZSTD_EndDirective::ZSTD_e_flush)
            .expect("compress");
        let r = decompress(Codec::Zstd, &out, text.len(), 1 << 20);
        assert!(matches!(r, Err(CompressError::Corrupt { .. })), "{r:?}");
        // Frames of one stream out of order never decode to another length.
        let mut c = Compressor::new(Codec::Zstd);
        let frames: Vec<_> = (0..4).map(|i| c.compress(&text[i * 10..]).1).collect();
        let mut d = Decompressor::new(Codec::Zstd);
        for (i, f) in frames.iter().enumerate().rev() {
            if let Ok(out) = d.decompress(Codec::Zstd, f, text.len() - i * 10, 1 << 20) {
                assert_eq!(out.len(), text.len() - i * 10);
            }
        }
    }
}
