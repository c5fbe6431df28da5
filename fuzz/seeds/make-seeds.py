#!/usr/bin/env python3
"""Writes the checked-in regression seeds of the fuzz targets.

Each seed is an input shaped like one of the defects issue 12 found by
review (header fields near u64::MAX, a record limit larger than the one the
ring was created with, counts and lengths that would size an allocation from
untrusted bytes, frames longer than the limit). scripts/test.sh passes
fuzz/seeds/<target> to `cargo fuzz run` as a second corpus directory, so
every fuzz run starts from them, and engine/tests/fuzz_seeds.rs replays the
ring and snapshot seeds in the ordinary test run. Run this script again
after changing it; it overwrites the files it owns.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ring_open: byte 0 odd = forged header; then 9-byte fields (tag, le u64) in
# the order capacity, oldest, synced, max_record_fraction, seq, file_len,
# switch_offset, format, mutation_format; then the slots byte; then the data
# region. Tags: 0 fresh value, 1 raw, 2 raw % 2^20, 3 u64::MAX - raw % 2^12.
FRESH, RAW, SMALL, NEAR_MAX = 0, 1, 2, 3


def field(tag=FRESH, raw=0):
    return bytes([tag]) + struct.pack("<Q", raw)


def ring(name, capacity=field(), oldest=field(), synced=field(), fraction=field(),
         seq=field(), file_len=field(), switch=field(), slots=3, region=b""):
    data = b"\x01" + capacity + oldest + synced + fraction + seq + file_len + switch
    data += field() + field() + bytes([slots]) + region
    write("ring_open", name, data)


# F13: unchecked arithmetic on header capacity / oldest / synced.
ring("f13-capacity-u64-max", capacity=field(NEAR_MAX, 0))
ring("f13-capacity-u64-max-less-8", capacity=field(NEAR_MAX, 8))
ring("f13-oldest-u64-max", oldest=field(NEAR_MAX, 0), synced=field(NEAR_MAX, 0))
ring("f13-synced-past-the-end", synced=field(RAW, 1 << 40))
ring("f13-switch-u64-max", switch=field(NEAR_MAX, 0))
ring("f13-seq-wraps", seq=field(NEAR_MAX, 0))
# F4/F5: a record limit the file claims that does not fit the ring.
ring("f5-fraction-zero", fraction=field(RAW, 0))
ring("f5-fraction-huge", fraction=field(RAW, 5000))
ring("f5-fraction-u64-max", fraction=field(NEAR_MAX, 0))
# A file shorter than its header claims (the mapping must not run past it).
ring("file-shorter-than-capacity", file_len=field(SMALL, 4096 + 100))
ring("file-header-only", file_len=field(SMALL, 4096))
# F3: a record past the synced hint whose commit word claims its own offset
# (offset 0), then garbage: recovery cuts it, nothing reads past the file.
record = struct.pack("<QII", 0, 0xFFFFFFF0, 0) + b"\xff" * 64
ring("f3-forged-record-length", region=record)

# snapshot_decode: item payloads (tag 3 = hash fields: key, count, fields).
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


# F12: a field count far beyond the bytes that follow.
write("snapshot_decode", "f12-field-count-2-pow-40", b"\x03" + varint(1) + b"k" + varint(1 << 40) + b"\x01a\x01b")
write("snapshot_decode", "f12-field-count-u64-max", b"\x03" + varint(1) + b"k" + varint((1 << 64) - 1))
# A byte length far beyond the bytes that follow.
write("snapshot_decode", "f12-key-length-2-pow-62", b"\x01" + varint(1 << 62) + b"key")
# A non-canonical varint (redundant zero byte) must be refused.
write("snapshot_decode", "varint-redundant-zero", b"\x01" + b"\x81\x00" + b"k" + b"\x01v\x00")

# repl_frame_decode: a 4-byte little-endian length prefix, then the body.
# F8/F14: frames longer than the limit must be refused before allocating.
write("repl_frame_decode", "f14-frame-len-u32-max", struct.pack("<I", 0xFFFFFFFF) + b"\x01")
write("repl_frame_decode", "f14-frame-len-limit-plus-one", struct.pack("<I", (1 << 20) + 1) + b"\x08")
write("repl_frame_decode", "frame-len-zero", struct.pack("<I", 0))
# The same bytes as a compressed payload (codec byte, le u16 length, data):
# a zstd frame (protocol 3: one stream per QUIC stream) whose header asks
# for a 128 MiB window (exponent 17: log 27), above ZSTD_WINDOW_LOG (20);
# the decoder must refuse it, not allocate it. Then one raw block, "abcd".
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
write("repl_frame_decode", "zstd-window-log-27", b"\x02" + struct.pack("<H", 4) + ZSTD_MAGIC + b"\x00\x88" + b"\x21\x00\x00abcd")
# A raw block longer than the stated length (4 bytes stated, 8 in the block).
write("repl_frame_decode", "zstd-block-longer-than-stated", b"\x02" + struct.pack("<H", 4) + ZSTD_MAGIC + b"\x00\x50" + b"\x41\x00\x00abcdefgh")
