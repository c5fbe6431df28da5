//! The parallel snapshot load (`services/parallel_load.rs`) against the
//! sequential one (`apply_threads = 1`): a random keyspace (strings with
//! and without TTLs, small hashes, hashes with TTLs, big hashes whose
//! fields are split over several chunks) is snapshotted, loaded on 1, 2, 3
//! and 4 threads, and every load must hold the source's state: the same
//! digest, keys, types, values, fields and expiries, and the same memory
//! accounting (among the loads). A corrupt snapshot fails on every thread
//! count; a snapshot cut during writes loads the same everywhere.

mod support;

use proptest::prelude::*;
use ringkv::{Config, Engine};

fn config(threads: usize) -> Config {
    Config {
        shards: 8,
        hash_seed: Some(5),
        active_expire: false,
        apply_threads: threads,
        ..Config::default()
    }
}

fn engine(threads: usize) -> Engine {
    Engine::new(config(threads)).expect("engine")
}

/// One key of the random keyspace.
#[derive(Debug, Clone)]
enum Key {
    Str {
        value_len: usize,
        ttl_s: Option<i64>,
    },
    Hash {
        fields: usize,
        value_len: usize,
        ttl_s: Option<i64>,
    },
}

fn key_strategy() -> impl Strategy<Value = Key> {
    let ttl = proptest::option::of(100i64..100_000);
    prop_oneof![
        6 => (0usize..300, ttl.clone()).prop_map(|(value_len, ttl_s)| Key::Str { value_len, ttl_s }),
        3 => (1usize..20, 0usize..40, ttl.clone()).prop_map(|(fields, value_len, ttl_s)| Key::Hash { fields, value_len, ttl_s }),
        // Big enough to span several 64 KiB chunks.
        1 => (2_000usize..6_000, 20usize..60, ttl).prop_map(|(fields, value_len, ttl_s)| Key::Hash { fields, value_len, ttl_s }),
    ]
}

fn fill(e: &Engine, keys: &[Key]) {
    for (i, k) in keys.iter().enumerate() {
        let name = format!("key:{i}");
        match k {
            Key::Str { value_len, ttl_s } => {
                e.set(&name, vec![b'a' + (i % 26) as u8; *value_len]).expect("set");
                if let Some(t) = ttl_s {
                    assert!(e.expire(&name, *t).expect("expire"));
                }
            }
            Key::Hash {
                fields,
                value_len,
                ttl_s,
            } => {
                let pairs: Vec<(String, Vec<u8>)> = (0..*fields)
                    .map(|f| (format!("f{f}"), vec![b'0' + (f % 10) as u8; *value_len]))
                    .collect();
                e.hset(&name, pairs).expect("hset");
                if let Some(t) = ttl_s {
                    assert!(e.expire(&name, *t).expect("expire"));
                }
            }
        }
    }
}

fn snapshot(e: &Engine) -> Vec<u8> {
    e.snapshot_to(Vec::new()).expect("snapshot").0
}

/// What a reader sees of every key: type, value or sorted fields, expiry.
fn state(e: &Engine, keys: usize) -> Vec<String> {
    support::reader_view(e, (0..keys).map(|i| format!("key:{i}")))
}

/// Loads `bytes` on each thread count; returns (digest, dbsize, memory, state).
fn loads(bytes: &[u8], keys: usize) -> Vec<(u64, u64, u64, Vec<String>)> {
    [1, 2, 3, 4]
        .into_iter()
        .map(|threads| {
            let e = engine(threads);
            e.load_snapshot(bytes).expect("load");
            (e.digest(), e.dbsize(), e.used_memory(), state(&e, keys))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("RINGKV_PARALLEL_LOAD_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(12)
    ))]

    #[test]
    fn parallel_load_equals_sequential(keys in proptest::collection::vec(key_strategy(), 1..400)) {
        let source = engine(1);
        fill(&source, &keys);
        let bytes = snapshot(&source);
        let seen = loads(&bytes, keys.len());
        // The source grew its tables write by write (a load sizes them up
        // front), so its memory differs; everything a reader sees is equal.
        prop_assert_eq!(seen[0].0, source.digest());
        prop_assert_eq!(seen[0].1, source.dbsize());
        prop_assert_eq!(&seen[0].3, &state(&source, keys.len()));
        for s in &seen[1..] {
            prop_assert_eq!(s, &seen[0]);
        }
    }
}

/// A hash spread over many chunks, with its head, next to thousands of
/// strings: every thread count loads every field of it.
#[test]
fn big_hashes_over_many_chunks_load_whole() {
    let source = engine(1);
    let fields: Vec<(String, String)> = (0..50_000)
        .map(|f| (format!("field:{f}"), format!("{f:0>40}")))
        .collect();
    source.hset("big", fields.clone()).expect("hset");
    assert!(source.expire("big", 5_000).expect("expire"));
    for i in 0..20_000 {
        source.set(format!("s{i}"), format!("{i:0>100}")).expect("set");
    }
    let (bytes, info) = source.snapshot_to(Vec::new()).expect("snapshot");
    assert!(info.bytes > 3 << 20, "{} bytes: several chunks", info.bytes);
    for threads in [1, 2, 4] {
        let e = engine(threads);
        e.load_snapshot(&bytes[..]).expect("load");
        assert_eq!(e.digest(), source.digest(), "{threads} threads");
        assert_eq!(e.hlen("big").expect("hlen"), 50_000);
        assert_eq!(e.expire_time("big"), source.expire_time("big"));
        assert_eq!(e.dbsize(), 20_001);
    }
}

/// A snapshot taken while another thread writes (so items of one key come
/// from both the walk and serialize-before-write, in any order) loads to
/// the same state on every thread count.
#[test]
fn snapshot_cut_during_writes_loads_the_same_everywhere() {
    let source = engine(1);
    for i in 0..5_000 {
        source
            .hset(format!("h{}", i % 50), [(format!("f{i}"), format!("{i}"))])
            .expect("hset");
        source.set(format!("s{i}"), format!("{i}")).expect("set");
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let bytes = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 2_000_000 {
                source
                    .hset(format!("h{}", i % 50), [(format!("f{}", i % 7_000), format!("w{i}"))])
                    .expect("hset");
                source.set(format!("s{}", i % 5_000), format!("w{i}")).expect("set");
                i += 1;
            }
        });
        let bytes = snapshot(&source);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        bytes
    });
    let digests: Vec<u64> = [1, 2, 4]
        .into_iter()
        .map(|threads| {
            let e = engine(threads);
            e.load_snapshot(&bytes[..]).expect("load");
            e.digest()
        })
        .collect();
    assert_eq!(digests[1], digests[0]);
    assert_eq!(digests[2], digests[0]);
}

/// A corrupt snapshot fails on every thread count.
#[test]
fn a_corrupt_snapshot_fails_on_every_thread_count() {
    let source = engine(1);
    for i in 0..30_000 {
        source.set(format!("s{i}"), format!("{i:0>50}")).expect("set");
    }
    let mut bytes = snapshot(&source);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    for threads in [1, 2, 4] {
        let e = engine(threads);
        let err = e.load_snapshot(&bytes[..]).expect_err("corrupt");
        assert!(err.to_string().contains("checksum"), "{threads} threads: {err}");
    }
}
