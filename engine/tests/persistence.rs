//! A data directory: reopen replays the log into the same state; the lock
//! file keeps a second opener out; a full log refuses writes without losing
//! anything; durability modes; damaged files give a clean error or a cut
//! tail, never a panic or wrong data.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use ringkv::log::LogError;
use ringkv::{Config, Durability, Engine, Error, LogConfig, SetOptions};

mod support;
use support::SmallFs;

const FAR: u64 = 4_000_000_000_000;

fn config(capacity: u64, durability: Durability) -> Config {
    Config {
        shards: 4,
        active_expire: false,
        log: LogConfig {
            capacity,
            durability,
            ..LogConfig::default()
        },
        ..Config::default()
    }
}

/// Deterministic operation `i` (no relative times: replaying must not depend on the clock).
fn op(e: &Engine, i: u64) -> ringkv::Result<()> {
    match i % 9 {
        0 => e.set(format!("k{}", i % 50), format!("v{i}")),
        1 => e
            .hset(format!("h{}", i % 5), [(format!("f{}", i % 40), format!("{i}"))])
            .map(|_| ()),
        2 => e.incr_by(format!("c{}", i % 3), i as i64).map(|_| ()),
        3 => e.del([format!("k{}", (i * 7) % 50)]).map(|_| ()),
        4 => e
            .set_with(format!("t{}", i % 20), "x", SetOptions::new().pxat(FAR + i))
            .map(|_| ()),
        5 => e.hdrain(format!("h{}", i % 5), 3).map(|_| ()),
        6 => e.append(format!("a{}", i % 4), format!("{i},")).map(|_| ()),
        7 => e
            .rename(format!("k{}", i % 50), format!("r{}", i % 6))
            .or_else(|e| match e {
                Error::NoSuchKey => Ok(()),
                other => Err(other),
            }),
        _ => {
            let mut b = ringkv::WriteBatch::new();
            b.set(format!("b{}", i % 10), "1")
                .hincr_by("hb", format!("{}", i % 3), 1)
                .persist(format!("t{}", i % 20));
            e.write_batch(b).map(|_| ())
        }
    }
}

/// Digests of the state after each prefix of `n` operations (index = ops done).
fn prefix_digests(n: u64) -> Vec<u64> {
    let model = Engine::new(config(1 << 20, Durability::None)).expect("model");
    let mut digests = vec![model.digest()];
    for i in 0..n {
        op(&model, i).expect("op");
        digests.push(model.digest());
    }
    digests
}

#[test]
fn reopening_replays_the_log_into_the_same_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let digest = {
        let e = Engine::open(dir.path(), config(4 << 20, Durability::None)).expect("open");
        for i in 0..3000 {
            op(&e, i).expect("op");
        }
        e.digest()
    };
    let e = Engine::open(dir.path(), config(4 << 20, Durability::None)).expect("reopen");
    assert_eq!(e.digest(), digest);
    let log = e.stats().log.expect("log stats");
    assert!(log.recovered_records > 2000, "{log:?}");
    assert_eq!(log.torn_bytes, 0);
    // And it goes on from there.
    op(&e, 3000).expect("op");
    drop(e);
    let e = Engine::open(dir.path(), config(4 << 20, Durability::None)).expect("reopen");
    assert_eq!(e.digest(), *prefix_digests(3001).last().expect("digest"));
}

#[test]
fn a_second_opener_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = Engine::open(dir.path(), config(1 << 20, Durability::None)).expect("open");
    let second = Engine::open(dir.path(), config(1 << 20, Durability::None));
    assert!(matches!(second, Err(Error::Locked(_))), "{second:?}");
}

/// Dropping the last handle releases the directory at once, even while the
/// background thread is in a cycle (it held the state, and so the lock,
/// until its cycle ended, so a reopen right after a drop could be
/// `Locked`).
#[test]
fn the_last_handle_dropped_unlocks_the_directory_even_mid_background_cycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = Config {
        active_expire: true,
        active_expire_interval_ms: 1,
        ..config(4 << 20, Durability::None)
    };
    for round in 0..40u64 {
        let engine = Engine::open(dir.path(), busy.clone()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        // Keys with TTLs and a growing table give every cycle work.
        for i in 0..500 {
            let key = format!("k{round}:{i}");
            engine.set_with(&key, "v", SetOptions::new().px(1)).expect("set");
        }
        let clone = engine.clone();
        drop(engine);
        assert!(
            Engine::open(dir.path(), busy.clone()).is_err(),
            "a clone still holds the directory"
        );
        drop(clone);
    }
    Engine::open(dir.path(), busy).expect("the last reopen");
}

#[test]
fn a_small_ring_snapshots_instead_of_refusing_writes_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = Engine::open(dir.path(), config(64 * 1024, Durability::None)).expect("open");
    for n in 0..5000 {
        e.set(format!("key:{}", n % 700), vec![b'v'; 200])
            .expect("the ring makes room by snapshotting");
    }
    let stats = e.stats();
    assert!(stats.snapshot.completed > 0, "{:?}", stats.snapshot);
    assert!(stats.log.expect("log").offset > 10 * 64 * 1024);
    // A record larger than the ring allows is refused, and nothing changes.
    let before = e.digest();
    let too_big = e.set("big", vec![0u8; 9000]);
    assert!(
        matches!(too_big, Err(Error::Log(LogError::RecordTooLarge { .. }))),
        "{too_big:?}"
    );
    assert_eq!(e.digest(), before);
    e.close();
    let e = Engine::open(dir.path(), config(64 * 1024, Durability::None)).expect("reopen");
    assert_eq!(e.digest(), before);
}

#[test]
fn always_syncs_before_returning_and_everysec_within_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = Engine::open(dir.path(), config(1 << 20, Durability::Always)).expect("open");
    for i in 0..50 {
        e.set(format!("k{i}"), "v").expect("set");
        let log = e.log().expect("log");
        assert_eq!(
            log.synced(),
            log.published(),
            "write {i} returned before its record was synced"
        );
    }
    // Concurrent writers share syncs and all get theirs.
    std::thread::scope(|s| {
        for t in 0..4 {
            let e = e.clone();
            s.spawn(move || {
                for i in 0..50 {
                    e.set(format!("t{t}:{i}"), "v").expect("set");
                    assert!(e.log().expect("log").synced() >= e.log().expect("log").published().min(1));
                }
            });
        }
    });
    drop(e);
    let dir = tempfile::tempdir().expect("tempdir");
    let e = Engine::open(dir.path(), config(1 << 20, Durability::Everysec)).expect("open");
    e.set("k", "v").expect("set");
    let log = e.log().expect("log").clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.synced() < log.published() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(log.synced(), log.published(), "everysec never synced");
    e.set("k2", "v").expect("set");
    e.sync().expect("sync");
    assert_eq!(log.synced(), log.published());
}

#[test]
fn an_engine_without_a_data_dir_can_keep_an_anonymous_log() {
    let e = Engine::builder()
        .config(config(64 * 1024, Durability::None))
        .anonymous_log()
        .build()
        .expect("engine");
    // It overwrites old laps instead of refusing writes.
    for i in 0..10_000 {
        e.set(format!("k{}", i % 100), vec![b'x'; 100]).expect("set");
    }
    let log = e.log().expect("log");
    assert!(log.published() > 10 * log.capacity());
    assert!(Engine::builder()
        .anonymous_log()
        .sink(ringkv::MemorySink::new())
        .build()
        .is_err());
}

/// Damage applied to a ring file.
#[derive(Debug, Clone)]
enum Damage {
    Flip { at: u64, mask: u8 },
    Truncate { to: u64 },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (0u64..70_000, 1u8..=255).prop_map(|(at, mask)| Damage::Flip { at, mask }),
        1 => (0u64..70_000).prop_map(|to| Damage::Truncate { to }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn damaged_files_give_a_clean_error_or_a_prefix_of_the_writes(hits in proptest::collection::vec(damage(), 1..4)) {
        const OPS: u64 = 400;
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let e = Engine::open(dir.path(), config(64 * 1024, Durability::None)).expect("open");
            for i in 0..OPS {
                op(&e, i).expect("op");
            }
        }
        let path = dir.path().join("ring.log");
        let mut bytes = std::fs::read(&path).expect("read");
        for hit in &hits {
            match *hit {
                Damage::Flip { at, mask } => {
                    let at = (at as usize) % bytes.len();
                    bytes[at] ^= mask;
                }
                Damage::Truncate { to } => bytes.truncate((to as usize).min(bytes.len())),
            }
        }
        std::fs::write(&path, &bytes).expect("write");
        match Engine::open(dir.path(), config(64 * 1024, Durability::None)) {
            Err(e) => {
                // A clean, typed error that says what is wrong.
                prop_assert!(!e.to_string().is_empty());
            }
            Ok(e) => {
                let digests = prefix_digests(OPS);
                prop_assert!(digests.contains(&e.digest()), "recovered a state that no prefix of the writes produces");
            }
        }
    }
}

/// F4: the record limit is the file's, not the configuration's. A record
/// written under `max_record_fraction = 2` is larger than `capacity / 8`;
/// reopening with the default 8 must keep it and everything after it (it
/// used to stop the scan for the end of the log there and cut the rest as a
/// "torn tail" of 0 bytes, without a word).
#[test]
fn a_record_larger_than_the_configured_limit_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with_fraction = |fraction: u64| {
        let mut c = config(1 << 20, Durability::None);
        c.log.max_record_fraction = fraction;
        c
    };
    let big = vec![b'B'; 200_000];
    let digest = {
        let e = Engine::open(dir.path(), with_fraction(2)).expect("open");
        e.set("k0", "small").expect("set");
        e.set("k1", big.clone()).expect("a 200 KB value fits capacity / 2");
        for i in 2..102 {
            e.set(format!("k{i}"), format!("v{i}")).expect("set");
        }
        assert_eq!(e.dbsize(), 102);
        e.digest()
    };
    let e = Engine::open(dir.path(), with_fraction(8)).expect("reopen with a smaller configured limit");
    assert_eq!(e.dbsize(), 102, "every key is back");
    assert_eq!(e.get("k1").expect("get").expect("k1").as_ref(), &big[..]);
    assert_eq!(e.get("k101").expect("get").expect("k101").as_ref(), b"v101");
    assert_eq!(e.digest(), digest);
    let log = e.stats().log.expect("log stats");
    assert_eq!(log.torn_bytes, 0, "{log:?}");
    // The file's limit goes on deciding: the same large value still fits.
    assert_eq!(e.log().expect("log").max_payload(), (1 << 20) / 2 - 16);
    e.set("k102", big.clone())
        .expect("the file's limit applies to new records too");
    drop(e);
    let e = Engine::open(dir.path(), with_fraction(64)).expect("reopen again");
    assert_eq!(e.dbsize(), 103);
}

/// F5: a record limit below a record header is refused when the engine is
/// built (it used to underflow `max_payload` and let a large value be copied
/// past the end of the mapping: a segfault from safe code).
#[test]
fn a_record_limit_smaller_than_a_record_header_is_refused() {
    let mut c = config(64 * 1024, Durability::None);
    c.log.max_record_fraction = 5000;
    let built = Engine::builder().config(c.clone()).anonymous_log().build();
    match built {
        Err(Error::Log(LogError::Config(msg))) => assert!(msg.contains("max_record_fraction"), "{msg}"),
        Err(other) => panic!("wrong error: {other:?}"),
        Ok(e) => {
            let r = e.set("k", vec![0u8; 200_000]);
            panic!("an engine with a 13-byte record limit was built; a 200 KB set gave {r:?}");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let opened = Engine::open(dir.path(), c);
    assert!(matches!(opened, Err(Error::Log(LogError::Config(_)))), "{opened:?}");
    assert!(!dir.path().join("ring.log").exists(), "no ring file is left behind");
}

/// F13: a full sync at an offset no stream can reach (a hostile or broken
/// primary) is refused before the data directory changes.
#[test]
fn a_full_sync_at_an_impossible_offset_changes_nothing() {
    let snapshots = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .expect("ls")
            .filter(|f| {
                f.as_ref()
                    .is_ok_and(|f| f.file_name().to_string_lossy().ends_with(".rkvs"))
            })
            .count()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let e = Engine::open(dir.path(), config(1 << 20, Durability::None)).expect("open");
    e.set("k", "v").expect("set");
    e.save().expect("save");
    e.set("k2", "v2").expect("set");
    e.set_role(ringkv::Role::Follower).expect("follower");
    let before = e.log().expect("log").published();
    assert_eq!(snapshots(dir.path()), 1);
    let r = e.replica_begin_full_sync(u64::MAX - 7, &"f".repeat(40), "", 0);
    assert!(
        matches!(r, Err(Error::Log(LogError::OutOfBounds { offset, .. })) if offset == u64::MAX - 7),
        "{r:?}"
    );
    assert_eq!(e.log().expect("log").published(), before);
    assert!(!dir.path().join("FULLSYNC").exists(), "no full-sync marker");
    assert_eq!(snapshots(dir.path()), 1, "the snapshot is still there");
    e.close();
    let e = Engine::open(dir.path(), config(1 << 20, Durability::None)).expect("reopen");
    assert_eq!(e.get("k2").expect("get").expect("k2").as_ref(), b"v2");
    assert_eq!(e.dbsize(), 2);
}

/// F15: the ring file's blocks are allocated when it is created, so a
/// filesystem without room for it refuses it then, with a clear error,
/// instead of killing the process with SIGBUS when a write faults on a page
/// of the sparse file that the filesystem cannot back.
#[test]
fn a_ring_larger_than_the_free_space_is_refused_when_created() {
    let fs = match SmallFs::mount("4m") {
        Ok(fs) => fs,
        Err(why) => {
            println!("skipped: no small tmpfs to fill ({why})");
            return;
        }
    };
    let data = fs.path().join("data");
    let ring = data.join("ring.log");
    match Engine::open(&data, config(16 << 20, Durability::None)) {
        Err(Error::Log(LogError::Io { context, source })) => {
            assert!(context.contains("no space"), "{context}");
            assert!(context.contains(&ring.display().to_string()), "{context}");
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{source}");
        }
        Err(other) => panic!("wrong error: {other:?}"),
        Ok(e) => {
            // The sparse file was made: writing 10 MB into it faults once
            // the filesystem's 4 MiB are used up.
            for i in 0..100 {
                e.set(format!("k{i}"), vec![b'x'; 100_000]).expect("set");
            }
            panic!("a 16 MiB ring was created on a 4 MiB filesystem");
        }
    }
    assert!(!ring.exists(), "the half-made ring file is removed");
    // The space is free again: a ring that fits is created there.
    let e = Engine::open(&data, config(1 << 20, Durability::None)).expect("a ring that fits");
    e.set("k", "v").expect("set");
    e.close();
    let e = Engine::open(&data, config(1 << 20, Durability::None)).expect("reopen");
    assert_eq!(e.get("k").expect("get").expect("k").as_ref(), b"v");
}

/// F15, for a file that exists: a ring file made sparse (a copy, say) on a
/// filesystem that cannot back it is refused when opened, and kept.
#[test]
fn a_sparse_ring_file_that_cannot_be_backed_is_refused_when_opened() {
    let fs = match SmallFs::mount("4m") {
        Ok(fs) => fs,
        Err(why) => {
            println!("skipped: no small tmpfs to fill ({why})");
            return;
        }
    };
    // A valid 16 MiB ring's header page, in a sparse file on the small filesystem.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    drop(Engine::open(elsewhere.path(), config(16 << 20, Durability::None)).expect("open"));
    let mut header = vec![0u8; 4096];
    {
        use std::io::Read;
        std::fs::File::open(elsewhere.path().join("ring.log"))
            .expect("open")
            .read_exact(&mut header)
            .expect("read");
    }
    let data = fs.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let ring = data.join("ring.log");
    let len = 4096 + (16 << 20);
    {
        let file = std::fs::File::create_new(&ring).expect("create");
        file.set_len(len).expect("set_len");
        std::os::unix::fs::FileExt::write_all_at(&file, &header, 0).expect("write");
    }
    match Engine::open(&data, config(16 << 20, Durability::None)) {
        Err(Error::Log(LogError::Io { context, source })) => {
            assert!(context.contains("no space"), "{context}");
            assert!(context.contains(&ring.display().to_string()), "{context}");
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{source}");
        }
        Err(other) => panic!("wrong error: {other:?}"),
        Ok(e) => {
            for i in 0..100 {
                e.set(format!("k{i}"), vec![b'x'; 100_000]).expect("set");
            }
            panic!("a sparse 16 MiB ring was opened on a 4 MiB filesystem");
        }
    }
    assert_eq!(std::fs::metadata(&ring).expect("kept").len(), len, "the file is kept");
}

/// F18: the directory's lock lives as long as the ring, so a `LogView`
/// that outlives its engine keeps another open out.
#[test]
fn a_log_view_that_outlives_the_engine_keeps_the_directory_locked() {
    let dir = tempfile::tempdir().expect("dir");
    let e = Engine::open(dir.path(), Config::default()).expect("open");
    e.set("k", "v").expect("set");
    let view = e.log().expect("a data directory has a log");
    drop(e);
    match Engine::open(dir.path(), Config::default()) {
        Err(Error::Locked(_)) => {}
        other => panic!("opened beside a live view of the old ring: {other:?}"),
    }
    assert!(view.published() > 0);
    drop(view);
    let again = Engine::open(dir.path(), Config::default()).expect("reopen once the view is gone");
    assert_eq!(again.get("k").expect("get").as_deref(), Some(&b"v"[..]));
}
