//! Bytes received from a primary, appended to a follower's ring: anything
//! that is not whole valid records continuing the stream is refused and
//! changes nothing; what is accepted reads back byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringkv::internals::RingLogWriter;
use ringkv::log::{LogConfig, RingLog};

fuzz_target!(|data: &[u8]| {
    let Ok(ring) = RingLog::anonymous(LogConfig {
        capacity: 1 << 16,
        ..LogConfig::default()
    }) else {
        return;
    };
    for i in 0..3u8 {
        let _ = ring.append(&[1, i, i, i]);
    }
    let end = ring.published();
    // Sometimes start before the end (overlap with what the ring holds).
    let start = match data.first() {
        Some(b) if b % 4 == 0 => 0,
        _ => end,
    };
    let bytes = data.get(1..).unwrap_or(&[]);
    let before = ring.read_stream(0, 1 << 20).map(|b| b.bytes).unwrap_or_default();
    match ring.append_stream(start, bytes) {
        Ok(new_end) => {
            assert!(new_end >= end);
            let all = ring.read_stream(0, 1 << 20).expect("readable");
            assert_eq!(all.end(), new_end);
            let from = start as usize;
            assert_eq!(&all.bytes[from..from + bytes.len()], bytes);
        }
        Err(_) => {
            assert_eq!(ring.published(), end);
            let after = ring.read_stream(0, 1 << 20).map(|b| b.bytes).unwrap_or_default();
            assert_eq!(after, before);
        }
    }
});
