//! Record headers and mutation payloads from arbitrary bytes: decoding never
//! panics, and whatever decodes re-encodes to the same bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringkv::log::record;

fuzz_target!(|data: &[u8]| {
    if data.len() >= record::HEADER_LEN {
        let mut head = [0u8; record::HEADER_LEN];
        head.copy_from_slice(&data[..record::HEADER_LEN]);
        let h = record::Header::parse(&head);
        let payload = &data[record::HEADER_LEN..];
        let _ = record::checksum(h.offset, payload, &[]) == h.crc;
    }
    if let Ok(m) = record::decode_mutation(Bytes::copy_from_slice(data)) {
        let mut again = Vec::new();
        record::encode_mutation(&m, &mut again);
        assert_eq!(again, data, "decode then encode must give the same bytes");
    }
});
