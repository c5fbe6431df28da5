//! A forged ring file opened as a data directory: a clean error or a
//! replayed prefix, never a panic, an overflow or an unbounded allocation.
//! The first input byte picks what the fuzzer controls: the data region
//! only (under a fresh ring's header), or the header's fields too
//! (capacity, oldest, synced, record fraction, sequence, file length,
//! switch offset, versions, which slots), written with a valid checksum so
//! that the header checks themselves are what gets fuzzed; see
//! `ringkv::internals::FuzzHeader::parse`. Each run writes a data directory
//! under `TMPDIR`: `TMPDIR=/dev/shm` makes the target about 20 times faster.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringkv::internals::fuzz_open_ring_bytes(data);
});
