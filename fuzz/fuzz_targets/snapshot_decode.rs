//! Snapshot streams from arbitrary bytes: read as a whole stream (header
//! checks) and as one chunk's payload framed into an otherwise valid stream
//! (item decoding and loading). Never a panic; what loads re-snapshots to
//! the same data.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringkv::snapshot::{format, SnapshotHeader};
use ringkv::{Config, Engine};

fn engine() -> Engine {
    Engine::new(Config {
        shards: 2,
        active_expire: false,
        ..Config::default()
    })
    .expect("engine")
}

fuzz_target!(|data: &[u8]| {
    let _ = engine().load_snapshot(data);

    let Ok(items) = format::decode_items(Bytes::copy_from_slice(data)) else {
        return;
    };
    let header = SnapshotHeader {
        offset: 0,
        created_ms: 0,
        keys: 0,
        replid: String::new(),
    };
    let mut stream = header.encode().to_vec();
    if !data.is_empty() {
        stream.extend_from_slice(&(data.len() as u32).to_le_bytes());
        stream.extend_from_slice(&crc32c_of(data).to_le_bytes());
        stream.extend_from_slice(data);
    }
    let chunks = u64::from(!data.is_empty());
    let mut footer = [0u8; 28];
    footer[4..12].copy_from_slice(&(items.len() as u64).to_le_bytes());
    footer[12..20].copy_from_slice(&chunks.to_le_bytes());
    footer[20..28].copy_from_slice(&(data.len() as u64).to_le_bytes());
    stream.extend_from_slice(&footer);
    stream.extend_from_slice(&crc32c_of(&footer[4..28]).to_le_bytes());
    let e = engine();
    if e.load_snapshot(&stream[..]).is_ok() {
        let (again, _) = e.snapshot_to(Vec::new()).expect("snapshot of a loaded engine");
        let copy = engine();
        copy.load_snapshot(&again[..]).expect("our own snapshot loads");
        assert_eq!(copy.digest(), e.digest());
    }
});

fn crc32c_of(b: &[u8]) -> u32 {
    ringkv::snapshot::format::checksum(b)
}
