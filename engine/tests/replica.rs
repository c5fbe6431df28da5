//! The engine's replication primitives without a network: a follower fed
//! a primary's raw stream bytes ends byte-identical and equal in state.

use std::time::Duration;

use ringkv::log::LogError;
use ringkv::{Config, Engine, Error, LogConfig, Role};

fn engine_with_log(capacity: u64) -> Engine {
    let config = Config {
        log: LogConfig {
            capacity,
            ..LogConfig::default()
        },
        ..Config::default()
    };
    Engine::builder()
        .config(config)
        .anonymous_log()
        .build()
        .expect("engine")
}

fn follower(dir: &std::path::Path) -> Engine {
    let mut config = Config::default();
    config.log.capacity = 1 << 20;
    let engine = Engine::open(dir, config).expect("open follower");
    engine.set_role(Role::Follower).expect("follower");
    engine
}

/// Copies the primary's stream from the follower's end to the primary's.
fn pump(primary: &Engine, follower: &Engine) -> ringkv::Result<u64> {
    let (p, f) = (primary.log().expect("log"), follower.log().expect("log"));
    while f.published() < p.published() {
        let batch = p.read_stream(f.published(), 4096)?;
        follower.replica_append(batch.start, &batch.bytes)?;
        follower.replica_replay_ring(u64::MAX)?;
    }
    Ok(follower.applied_offset())
}

fn writes(engine: &Engine, round: u32) {
    for i in 0..200u32 {
        engine.set(format!("k{i}"), format!("v{round}-{i}")).expect("set");
        engine.incr(format!("c{}", i % 7)).expect("incr");
        engine
            .hset(format!("h{}", i % 5), [(format!("f{i}"), "x")])
            .expect("hset");
        if i % 9 == 0 {
            engine.del([format!("k{}", i / 2)]).expect("del");
        }
    }
}

#[test]
fn follower_tails_by_offset_and_refuses_writes() {
    let primary = engine_with_log(1 << 20);
    let dir = tempfile::tempdir().expect("dir");
    let f = follower(dir.path());
    let fresh_replid = f.log().expect("log").replid();
    // Same history from the start: adopt the primary's replid.
    f.replica_begin_full_sync(0, &primary.log().expect("log").replid(), "", 0)
        .expect("reset");
    let staging = f.staging().expect("staging");
    f.swap_in(&staging, 0).expect("swap");
    assert_ne!(f.log().expect("log").replid(), fresh_replid);
    writes(&primary, 0);
    let applied = pump(&primary, &f).expect("pump");
    assert_eq!(applied, primary.log().expect("log").published());
    assert_eq!(f.digest(), primary.digest());
    assert!(matches!(f.set("x", "y"), Err(Error::ReadOnly)));
    assert!(matches!(f.flush(), Err(Error::ReadOnly)));
    // Read-after-write: the primary's offset of a write, awaited on the follower.
    primary.set("raw", "1").expect("set");
    let at = primary.last_write_offset().expect("offset");
    assert!(!f.wait_applied(at, Duration::from_millis(1)));
    pump(&primary, &f).expect("pump");
    assert!(f.wait_applied(at, Duration::from_millis(1)));
    assert_eq!(f.get("raw").expect("get").expect("value"), "1");
    // Identical bytes at the same offsets.
    let (p, fl) = (primary.log().expect("log"), f.log().expect("log"));
    let a = p.read_stream(0, 1 << 30).expect("read");
    let b = fl.read_stream(0, 1 << 30).expect("read");
    assert_eq!(a.bytes, b.bytes);
    // Restart from the data directory: resumes at the same offset (the old
    // ring's view keeps the directory locked, so let go of it first).
    drop(fl);
    let digest = f.digest();
    drop(staging);
    f.close();
    let f = follower(dir.path());
    assert_eq!(f.applied_offset(), p.published());
    assert_eq!(f.digest(), digest);
    writes(&primary, 1);
    pump(&primary, &f).expect("pump");
    assert_eq!(f.digest(), primary.digest());
}

#[test]
fn divergent_and_gapped_bytes_are_refused() {
    let primary = engine_with_log(1 << 20);
    let other = engine_with_log(1 << 20);
    let dir = tempfile::tempdir().expect("dir");
    let f = follower(dir.path());
    f.replica_begin_full_sync(0, "r", "", 0).expect("reset");
    f.swap_in(&f.staging().expect("staging"), 0).expect("swap");
    writes(&primary, 0);
    other.set("k0", "something else entirely").expect("set");
    pump(&primary, &f).expect("pump");
    // The same bytes again are accepted (idempotent), others at the same offsets are not.
    let same = primary.log().expect("log").read_stream(0, 1 << 30).expect("read");
    f.replica_append(0, &same.bytes).expect("same bytes");
    let diff = other.log().expect("log").read_stream(0, 1 << 30).expect("read");
    let err = f.replica_append(0, &diff.bytes).expect_err("divergent");
    assert!(matches!(err, Error::Log(LogError::Divergent { .. })), "{err}");
    // A gap.
    let end = f.log().expect("log").published();
    primary.set("more", "1").expect("set");
    let next = primary.log().expect("log").read_stream(end, 1 << 30).expect("read");
    let err = f.replica_append(end + 8, &next.bytes).expect_err("gap or corrupt");
    assert!(
        matches!(err, Error::Log(LogError::Corrupt { .. } | LogError::Gap { .. })),
        "{err}"
    );
    // Garbage is refused and changes nothing.
    let before = f.digest();
    let err = f.replica_append(end, &[7u8; 64]).expect_err("garbage");
    assert!(matches!(err, Error::Log(LogError::Corrupt { .. })), "{err}");
    assert_eq!(f.digest(), before);
}

#[test]
fn full_sync_swaps_in_while_serving_and_promotion_keeps_history() {
    let primary = engine_with_log(1 << 20);
    writes(&primary, 0);
    let dir = tempfile::tempdir().expect("dir");
    let f = follower(dir.path());
    // Old data on the follower (a previous history) keeps being served.
    f.replica_begin_full_sync(0, "old-history", "", 0).expect("reset");
    let staging = f.staging().expect("staging");
    staging
        .load_snapshot(&engine_with_data().snapshot_to(Vec::new()).expect("snap").0[..])
        .expect("load");
    f.swap_in(&staging, 0).expect("swap");
    assert_eq!(f.get("old").expect("get").expect("v"), "data");

    // Full sync: the snapshot is taken at S while writes go on; the log from S
    // reaches the follower's ring before the snapshot is loaded.
    let (snap, info) = primary.snapshot_to(Vec::new()).expect("snapshot");
    let p = primary.log().expect("log");
    f.replica_begin_full_sync(info.offset, &p.replid(), "", 0)
        .expect("begin");
    assert!(f.is_stale());
    writes(&primary, 1);
    let batch = p.read_stream(info.offset, 1 << 30).expect("read");
    f.replica_append(batch.start, &batch.bytes).expect("append");
    // Still the old data while loading.
    assert_eq!(f.get("old").expect("get").expect("v"), "data");
    let staging = f.staging().expect("staging");
    staging.load_snapshot(&snap[..]).expect("load");
    let applied = f.swap_in(&staging, info.offset).expect("swap");
    assert!(!f.is_stale());
    assert_eq!(applied, p.published());
    assert_eq!(f.digest(), primary.digest());
    assert_eq!(f.get("old").expect("get"), None);
    // The background save after the swap makes the directory reopenable.
    let digest = f.digest();
    f.close();
    let f = follower(dir.path());
    assert_eq!(f.digest(), digest);

    // Promotion: new history, the old one remembered with its switch offset.
    let promoted = f.promote().expect("promote");
    assert_eq!(promoted.prev_replid, p.replid());
    assert_eq!(promoted.switch_offset, p.published());
    assert_eq!(f.role(), Role::Primary);
    f.set("after", "promotion").expect("writes accepted");
    let header = f.log().expect("log").header();
    assert_eq!(header.replid, promoted.replid);
    assert_eq!(header.prev_replid, p.replid());
}

fn engine_with_data() -> Engine {
    let e = engine_with_log(1 << 16);
    e.set("old", "data").expect("set");
    e
}

#[test]
fn interrupted_full_sync_restarts_empty() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let f = follower(dir.path());
        f.replica_begin_full_sync(4096, "new", "", 0).expect("begin");
        f.close();
    }
    let f = follower(dir.path());
    assert_eq!(f.dbsize(), 0);
    assert_eq!(f.applied_offset(), 0);
}

#[test]
fn a_follower_over_maxmemory_neither_evicts_nor_logs() {
    let primary = engine_with_log(1 << 20);
    let dir = tempfile::tempdir().expect("dir");
    let mut config = Config::default();
    config.log.capacity = 1 << 20;
    config.maxmemory = 64 * 1024;
    config.maxmemory_policy = ringkv::EvictionPolicy::AllkeysLru;
    let f = Engine::open(dir.path(), config).expect("open");
    f.set_role(Role::Follower).expect("follower");
    f.replica_begin_full_sync(0, &primary.log().expect("log").replid(), "", 0)
        .expect("reset");
    f.swap_in(&f.staging().expect("staging"), 0).expect("swap");
    for i in 0..2000 {
        primary.set(format!("key:{i}"), vec![b'v'; 100]).expect("set");
    }
    pump(&primary, &f).expect("pump");
    assert!(f.used_memory() > 64 * 1024, "the follower holds everything");
    let end = f.log().expect("log").published();
    assert!(matches!(f.set("x", "y"), Err(Error::ReadOnly)));
    assert_eq!(f.log().expect("log").published(), end, "nothing logged locally");
    assert_eq!(f.dbsize(), 2000);
    assert_eq!(f.digest(), primary.digest());
}
