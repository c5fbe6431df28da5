//! Per-batch, adaptive compression of data frames.
//!
//! Each batch is compressed with the connection's codec and sent raw when
//! that does not shrink it by at least 1/32 (incompressible values must
//! not cost CPU on both ends for nothing, nor make a link fall behind).
//! After a run of batches that did not shrink, only every 16th is tried
//! until one shrinks again.

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

/// A connection's compressor with its adaptive state and byte counters.
#[derive(Debug)]
pub struct Compressor {
    codec: Codec,
    misses: u32,
    skipped: u32,
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
                Codec::Lz4 => Some(lz4_flex::block::compress(raw)),
                Codec::Zstd => zstd::bulk::compress(raw, 1).ok(),
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

/// Decompresses `data` to exactly `raw_len` bytes (at most `max`).
pub fn decompress(codec: Codec, data: &[u8], raw_len: usize, max: usize) -> Result<Vec<u8>, CompressError> {
    if raw_len > max {
        return Err(CompressError::TooLarge { len: raw_len, max });
    }
    let corrupt = |reason: String| CompressError::Corrupt { codec, reason };
    let out = match codec {
        Codec::None => data.to_vec(),
        Codec::Lz4 => lz4_flex::block::decompress(data, raw_len).map_err(|e| corrupt(e.to_string()))?,
        Codec::Zstd => zstd::bulk::decompress(data, raw_len).map_err(|e| corrupt(e.to_string()))?,
    };
    if out.len() != raw_len {
        return Err(corrupt(format!("{} bytes instead of {raw_len}", out.len())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_batches_go_raw_and_are_rarely_retried() {
        let mut c = Compressor::new(Codec::Zstd);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for _ in 0..100 {
            let (codec, wire) = c.compress(&random);
            assert_eq!(codec, Codec::None);
            assert_eq!(wire, random);
        }
        assert_eq!(c.bytes_raw, c.bytes_wire);
        // Compressible data is compressed again once tried.
        let text = b"session:token:abcdef ".repeat(300);
        let mut shrunk = false;
        for _ in 0..20 {
            let (codec, wire) = c.compress(&text);
            if codec == Codec::Zstd {
                shrunk = true;
                assert_eq!(decompress(codec, &wire, text.len(), 1 << 20).expect("round trip"), text);
            }
        }
        assert!(shrunk);
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
