//! A ring file whose data region is arbitrary bytes, opened as a data
//! directory: a clean error or a replayed prefix, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringkv::internals::fuzz_open_ring_bytes(data);
});
