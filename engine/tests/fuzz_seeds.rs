//! The fuzz targets' checked-in regression seeds (`fuzz/seeds/`, written by
//! `fuzz/seeds/make-seeds.py`), replayed in the ordinary test run so that
//! the inputs shaped like issue 12's defects are checked on every change,
//! not only when the nightly fuzzer runs. Debug builds check arithmetic
//! overflow, so a header field near `u64::MAX` that reaches unchecked
//! arithmetic fails here as a panic.

use std::path::PathBuf;

use bytes::Bytes;
use ringkv::snapshot::format;
use ringkv::{Config, Engine};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("seed entry").path();
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("seed"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn forged_ring_headers_open_cleanly_or_fail_cleanly() {
    let seeds = seeds("ring_open");
    assert!(seeds.len() >= 10, "the ring seeds are missing: {}", seeds.len());
    for (name, data) in seeds {
        // Panics (overflow, out-of-bounds, unwrap) would fail the test;
        // the function itself refuses or replays and then writes once.
        let run = std::panic::catch_unwind(|| ringkv::internals::fuzz_open_ring_bytes(&data));
        assert!(run.is_ok(), "seed {name} panicked");
    }
}

#[test]
fn snapshot_payloads_with_impossible_counts_are_refused() {
    let seeds = seeds("snapshot_decode");
    assert!(seeds.len() >= 4, "the snapshot seeds are missing");
    let engine = Engine::new(Config {
        shards: 2,
        active_expire: false,
        ..Config::default()
    })
    .expect("engine");
    for (name, data) in seeds {
        let decoded = format::decode_items(Bytes::from(data.clone()));
        assert!(decoded.is_err(), "seed {name} decoded: {decoded:?}");
        assert!(
            engine.load_snapshot(&data[..]).is_err(),
            "seed {name} loaded as a snapshot"
        );
        assert_eq!(engine.dbsize(), 0, "seed {name} left keys behind");
    }
}
