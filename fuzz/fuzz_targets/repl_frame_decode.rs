//! Replication frames and compressed payloads from arbitrary bytes:
//! decoding never panics, whatever decodes re-encodes to the same bytes
//! (except another version's `Hello`, which is read only far enough to be
//! refused by its version, on purpose), and decompression never returns
//! other than the announced length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringkv_replication::compress::{decompress, Decompressor};
use ringkv_replication::protocol::{decode_body, decode_frame, encode_frame, Codec, Message, PROTOCOL_VERSION};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((msg, used))) = decode_frame(data, 1 << 20) {
        let other_version = matches!(msg, Message::Hello { version, .. } if version != PROTOCOL_VERSION);
        assert!(
            other_version || encode_frame(&msg) == data[..used],
            "decode then encode must give the same bytes"
        );
    }
    let _ = decode_body(data);
    if let [codec, a, b, rest @ ..] = data {
        let codec = match codec % 3 {
            0 => Codec::None,
            1 => Codec::Lz4,
            _ => Codec::Zstd,
        };
        let raw_len = u16::from_le_bytes([*a, *b]) as usize;
        if let Ok(out) = decompress(codec, rest, raw_len, 1 << 16) {
            assert_eq!(out.len(), raw_len);
        }
        // A stream's decoder with history: two frames from the same bytes.
        let (first, second) = rest.split_at(rest.len() / 2);
        let mut d = Decompressor::new(codec);
        for (used, frame) in [(Codec::None, first), (codec, second)] {
            if let Ok(out) = d.decompress(used, frame, raw_len, 1 << 16) {
                assert_eq!(out.len(), raw_len);
            }
        }
    }
});
