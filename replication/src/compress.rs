//! Per-batch, adaptive compression of data frames.
//!
//! Each batch is compressed with the connection's codec and sent raw when
//! that does not shrink it by at least 1/32 (incompressible values must
//! not cost CPU on both ends for nothing, nor make a link fall behind).
//! After a run of batches that did not shrink, only every 16th is tried
//! until one shrinks again.
//!
//! Batches are small when a follower is caught up (a few records each), so
//! each one is compressed with the stream's preceding bytes as a prefix
//! dictionary (the last 64 KiB for lz4, 256 KiB for zstd): the keys and
//! field names that repeat across batches compress as well as within one.
//! Both ends keep that history, raw batches included, so it stays the same
//! on both sides; frames of one stream must be decoded in order.

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

fn history_cap(codec: Codec) -> usize {
    match codec {
        Codec::None => 0,
        Codec::Lz4 => 64 * 1024,
        Codec::Zstd => 256 * 1024,
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

fn zstd_compress(raw: &[u8], prefix: &[u8]) -> Option<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(ZSTD_LEVEL)).ok()?;
    if !prefix.is_empty() {
        cctx.ref_prefix(prefix).ok()?;
    }
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
    cctx.compress2(&mut out, raw).ok()?;
    Some(out)
}

fn zstd_decompress(data: &[u8], raw_len: usize, prefix: &[u8]) -> Result<Vec<u8>, String> {
    use zstd::zstd_safe::DCtx;
    let mut dctx = DCtx::create();
    if !prefix.is_empty() {
        dctx.ref_prefix(prefix)
            .map_err(|c| zstd::zstd_safe::get_error_name(c).to_string())?;
    }
    // The capacity bounds the output: a frame claiming more is an error.
    let mut out = Vec::with_capacity(raw_len);
    dctx.decompress(&mut out, data)
        .map_err(|c| zstd::zstd_safe::get_error_name(c).to_string())?;
    Ok(out)
}

/// A stream's compressor with its history, adaptive state and byte counters.
#[derive(Debug)]
pub struct Compressor {
    codec: Codec,
    misses: u32,
    skipped: u32,
    history: Vec<u8>,
    /// Bytes before compression.
    pub bytes_raw: u64,
    /// Bytes sent (after compression, or raw).
    pub bytes_wire: u64,
}

impl Compressor {
    /// A compressor for `codec`.
    pub fn new(codec: Codec) -> Compressor {
        Compressor {
            codec,
            misses: 0,
            skipped: 0,
            history: Vec::new(),
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
        let attempt = self.codec != Codec::None && raw.len() >= MIN_LEN && {
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
                Codec::Zstd => zstd_compress(raw, &self.history),
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
        self.bytes_wire += raw.len() as u64;
        (Codec::None, raw.to_vec())
    }
}

/// The receiving end of a [`Compressor`]: decodes one stream's frames in
/// order, keeping the same history.
#[derive(Debug)]
pub struct Decompressor {
    /// The codec negotiated for the connection (sets the history size).
    codec: Codec,
    history: Vec<u8>,
}

impl Decompressor {
    /// A decompressor for a stream compressed with `codec`.
    pub fn new(codec: Codec) -> Decompressor {
        Decompressor {
            codec,
            history: Vec::new(),
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
        let out = decode(used, data, raw_len, max, &self.history)?;
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
        Codec::Zstd => zstd_decompress(data, raw_len, prefix).map_err(corrupt)?,
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

    #[test]
    fn incompressible_batches_go_raw_and_are_rarely_retried() {
        let mut c = Compressor::new(Codec::Zstd);
        let mut d = Decompressor::new(Codec::Zstd);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100 {
            // Fresh random bytes each time (the history would find repeats).
            let random: Vec<u8> = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let (codec, wire) = c.compress(&random);
            assert_eq!(codec, Codec::None);
            assert_eq!(wire, random);
            assert_eq!(d.decompress(codec, &wire, random.len(), 1 << 20).expect("raw"), random);
        }
        assert_eq!(c.bytes_raw, c.bytes_wire);
        // Compressible data is compressed again once tried.
        let text = b"session:token:abcdef ".repeat(300);
        let mut shrunk = false;
        for _ in 0..20 {
            let (codec, wire) = c.compress(&text);
            shrunk |= codec == Codec::Zstd;
            assert_eq!(
                d.decompress(codec, &wire, text.len(), 1 << 20).expect("round trip"),
                text
            );
        }
        assert!(shrunk);
    }

    #[test]
    fn streams_with_history_round_trip_and_compress_better() {
        for codec in [Codec::Lz4, Codec::Zstd] {
            let mut c = Compressor::new(codec);
            let mut d = Decompressor::new(codec);
            let mut plain = Compressor::new(codec);
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
                let _ = plain.compress_inner(&batch);
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
}
