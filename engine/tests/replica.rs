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

/// A full sync's catch-up: `f` begins a full sync at the primary's
/// snapshot, receives the log written meanwhile, and gets the snapshot
/// loaded into a staging engine (returned with the snapshot's offset).
fn full_sync_until_swap(primary: &Engine, f: &Engine) -> (Engine, u64) {
    writes(primary, 0);
    let (snap, info) = primary.snapshot_to(Vec::new()).expect("snapshot");
    let p = primary.log().expect("log");
    f.replica_begin_full_sync(info.offset, &p.replid(), "", 0)
        .expect("begin");
    writes(primary, 1);
    let batch = p.read_stream(info.offset, 1 << 30).expect("read");
    f.replica_append(batch.start, &batch.bytes).expect("append");
    let staging = f.staging().expect("staging");
    staging.load_snapshot(&snap[..]).expect("load");
    (staging, info.offset)
}

fn reopen(dir: &std::path::Path) -> ringkv::Result<Engine> {
    let mut config = Config::default();
    config.log.capacity = 1 << 20;
    Engine::open(dir, config)
}

#[test]
fn a_write_acknowledged_after_promotion_survives_a_reopen_when_the_full_syncs_save_failed() {
    let primary = engine_with_log(1 << 20);
    let dir = tempfile::tempdir().expect("dir");
    let f = follower(dir.path());
    let (staging, offset) = full_sync_until_swap(&primary, &f);
    // The window: no save can complete (a directory stands where the save
    // writes its temporary file).
    let blocker = dir.path().join("snapshot.tmp");
    std::fs::create_dir(&blocker).expect("block saves");
    let _ = f.swap_in(&staging, offset);
    assert!(!f.is_stale());
    assert_eq!(f.digest(), primary.digest(), "the new data is swapped in");
    // Promotion must not take writes a crash would wipe: it saves first,
    // and refuses while it cannot.
    if let Err(e) = f.promote() {
        assert!(e.to_string().contains("snapshot"), "{e}");
        assert!(matches!(f.set("x", "y"), Err(Error::ReadOnly)));
        std::fs::remove_dir(&blocker).expect("unblock");
        f.promote().expect("promotion once a save completes");
    }
    f.set("acked", "as primary").expect("a write on the new primary");
    let digest = f.digest();
    drop(staging);
    f.close();
    let f = reopen(dir.path()).expect("reopen");
    assert_eq!(
        f.get("acked").expect("get").as_deref(),
        Some(&b"as primary"[..]),
        "a write acknowledged as primary was lost"
    );
    assert_eq!(f.digest(), digest);
}

#[test]
fn recovery_refuses_to_wipe_a_ring_promoted_under_a_full_sync_marker() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let e = reopen(dir.path()).expect("open");
        e.set("before", "1").expect("set");
        e.promote().expect("promote");
        e.set("acked", "2").expect("set");
        e.close();
    }
    // A marker left by an older version (no history named in it) beside a
    // ring that switched history and took writes after it.
    std::fs::write(dir.path().join("FULLSYNC"), b"").expect("marker");
    let err = reopen(dir.path()).expect_err("must refuse, not wipe");
    assert!(matches!(err, Error::Recovery { .. }), "{err}");
    assert!(err.to_string().contains("FULLSYNC"), "{err}");
    assert!(dir.path().join("ring.log").exists(), "the ring is kept");
    // A marker that names another history than the ring's: refused too.
    std::fs::write(
        dir.path().join("FULLSYNC"),
        b"0123456789012345678901234567890123456789\n",
    )
    .expect("marker");
    let err = reopen(dir.path()).expect_err("must refuse, not wipe");
    assert!(matches!(err, Error::Recovery { .. }), "{err}");
    // The operator's way out: the data opens once the marker is removed.
    std::fs::remove_file(dir.path().join("FULLSYNC")).expect("remove marker");
    let e = reopen(dir.path()).expect("open");
    assert_eq!(e.get("acked").expect("get").as_deref(), Some(&b"2"[..]));
}

#[test]
fn a_follower_with_durability_always_syncs_before_it_counts_bytes_durable() {
    let primary = engine_with_log(1 << 20);
    let dir = tempfile::tempdir().expect("dir");
    let mut config = Config::default();
    config.log.capacity = 1 << 20;
    config.log.durability = ringkv::Durability::Always;
    let f = Engine::open(dir.path(), config).expect("open");
    f.set_role(Role::Follower).expect("follower");
    f.replica_begin_full_sync(0, &primary.log().expect("log").replid(), "", 0)
        .expect("reset");
    f.swap_in(&f.staging().expect("staging"), 0).expect("swap");
    let (p, fl) = (primary.log().expect("log"), f.log().expect("log"));
    for round in 0..3 {
        writes(&primary, round);
        while fl.published() < p.published() {
            let batch = p.read_stream(fl.published(), 4096).expect("read");
            f.replica_append(batch.start, &batch.bytes).expect("append");
            f.replica_replay_stream(batch.start, &batch.bytes).expect("replay");
            assert!(
                fl.synced() >= f.applied_offset(),
                "durability always: synced {} < applied {}",
                fl.synced(),
                f.applied_offset()
            );
            assert_eq!(f.durable_offset(), f.applied_offset());
        }
    }
    assert_eq!(f.digest(), primary.digest());
}

#[test]
fn a_follower_without_durability_reports_only_what_is_synced_or_saved_as_durable() {
    let primary = engine_with_log(1 << 20);
    let dir = tempfile::tempdir().expect("dir");
    let f = follower(dir.path());
    f.replica_begin_full_sync(0, &primary.log().expect("log").replid(), "", 0)
        .expect("reset");
    f.swap_in(&f.staging().expect("staging"), 0).expect("swap");
    let fl = f.log().expect("log");
    let before = fl.synced();
    writes(&primary, 0);
    pump(&primary, &f).expect("pump");
    assert!(f.applied_offset() > before);
    assert_eq!(fl.synced(), before, "durability none: nothing msynced");
    assert_eq!(f.durable_offset(), before, "durable lags: only what was synced");
    // A save covers what it holds; a sync covers the ring.
    writes(&primary, 1);
    pump(&primary, &f).expect("pump");
    let saved = f.save().expect("save").offset;
    assert_eq!(saved, f.applied_offset());
    assert_eq!(f.durable_offset(), saved);
    writes(&primary, 2);
    pump(&primary, &f).expect("pump");
    assert_eq!(f.durable_offset(), saved);
    f.sync().expect("sync");
    assert_eq!(f.durable_offset(), f.applied_offset());
    // Without a data directory nothing survives a crash.
    let anon = engine_with_log(1 << 20);
    anon.set_role(Role::Follower).expect("follower");
    anon.replica_begin_full_sync(0, &primary.log().expect("log").replid(), "", 0)
        .expect("reset");
    anon.swap_in(&anon.staging().expect("staging"), 0).expect("swap");
    pump(&primary, &anon).expect("pump");
    anon.sync().expect("sync");
    assert_eq!(anon.durable_offset(), 0);
}

/// One record at `offset` holding `m`, as a primary's stream carries it.
fn record_at(offset: u64, m: &ringkv::Mutation) -> Vec<u8> {
    use ringkv::log::record;
    let mut payload = Vec::new();
    record::encode_mutation(m, &mut payload);
    let mut bytes = record::header(offset, &payload).to_vec();
    bytes.extend_from_slice(&payload);
    bytes.resize(record::record_len(payload.len()) as usize, 0);
    bytes
}

#[test]
fn a_record_that_validates_but_does_not_apply_leaves_an_openable_directory() {
    let primary = engine_with_log(1 << 20);
    let dir = tempfile::tempdir().expect("dir");
    let f = follower(dir.path());
    f.replica_begin_full_sync(0, &primary.log().expect("log").replid(), "", 0)
        .expect("reset");
    f.swap_in(&f.staging().expect("staging"), 0).expect("swap");
    writes(&primary, 0);
    primary.set("s", "a string").expect("set");
    let applied = pump(&primary, &f).expect("pump");
    let digest = f.digest();
    // A hostile (or buggy) primary: HSET on a string, then a valid record.
    let mut bytes = record_at(
        applied,
        &ringkv::Mutation::HSet {
            key: "s".into(),
            fields: vec![("f".into(), "v".into())],
        },
    );
    let next = applied + bytes.len() as u64;
    bytes.extend(record_at(
        next,
        &ringkv::Mutation::Set {
            key: "later".into(),
            value: "x".into(),
            expire_at: None,
        },
    ));
    f.replica_append(applied, &bytes).expect("the bytes validate");
    let err = f.replica_replay_stream(applied, &bytes).expect_err("does not apply");
    assert!(
        matches!(err, Error::RecordRejected { offset, .. } if offset == applied),
        "{err}"
    );
    assert_eq!(f.applied_offset(), applied);
    assert_eq!(f.digest(), digest, "nothing of the batch applied");
    assert_eq!(
        f.log().expect("log").published(),
        applied,
        "the ring keeps nothing past the applied offset"
    );
    f.close();
    let f = follower(dir.path());
    assert_eq!(f.applied_offset(), applied);
    assert_eq!(f.digest(), digest, "every applied record is still there");
    // The follower continues from there with good bytes.
    writes(&primary, 1);
    pump(&primary, &f).expect("pump");
    assert_eq!(f.digest(), primary.digest());
}

#[test]
fn a_full_sync_is_complete_on_disk_when_swap_in_returns() {
    let primary = engine_with_log(1 << 20);
    // Saved: no marker, a snapshot at the applied offset, all of it durable.
    let dir = tempfile::tempdir().expect("dir");
    let f = follower(dir.path());
    let (staging, offset) = full_sync_until_swap(&primary, &f);
    assert!(dir.path().join("FULLSYNC").exists());
    assert_eq!(f.durable_offset(), 0, "nothing of a loading full sync is durable");
    let applied = f.swap_in(&staging, offset).expect("swap");
    assert!(!dir.path().join("FULLSYNC").exists());
    let name = format!("snapshot-{applied:020}.rkvs");
    let snapshots: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot-"))
        .collect();
    assert_eq!(snapshots, vec![name]);
    assert_eq!(f.durable_offset(), applied);
    assert_eq!(
        f.log().expect("log").oldest(),
        applied,
        "the history before the snapshot is released"
    );

    // Not saved: the swap reports it, the marker stays, nothing is durable,
    // and a crash restarts empty (the ring is a copy of the primary's).
    let dir = tempfile::tempdir().expect("dir");
    let f = follower(dir.path());
    let (staging, offset) = full_sync_until_swap(&primary, &f);
    std::fs::create_dir(dir.path().join("snapshot.tmp")).expect("block saves");
    let err = f.swap_in(&staging, offset).expect_err("the save fails");
    assert!(matches!(err, Error::Snapshot(_)), "{err}");
    assert!(!f.is_stale());
    assert_eq!(f.digest(), primary.digest());
    assert!(dir.path().join("FULLSYNC").exists());
    assert_eq!(f.durable_offset(), 0);
    assert!(f.set_role(Role::Primary).is_err(), "becoming a primary needs the save");
    assert_eq!(f.role(), Role::Follower);
    // A history adopted meanwhile (the primary was promoted) is named in
    // the marker: the ring is still a copy of a primary's data.
    let promoted = "ab".repeat(20);
    f.replica_adopt_history(&promoted, &primary.log().expect("log").replid(), 0)
        .expect("adopt");
    f.close();
    let f = follower(dir.path());
    assert_eq!(f.dbsize(), 0);
}

#[test]
fn a_full_sync_refuses_log_bytes_it_cannot_keep_until_the_swap() {
    let primary = engine_with_log(8 << 20);
    let dir = tempfile::tempdir().expect("dir");
    let mut config = Config::default();
    config.log.capacity = 64 * 1024;
    let on_disk = Engine::open(dir.path(), config.clone()).expect("open");
    let anon = Engine::builder()
        .config(config)
        .anonymous_log()
        .build()
        .expect("engine");
    writes(&primary, 0);
    let (snap, info) = primary.snapshot_to(Vec::new()).expect("snapshot");
    let p = primary.log().expect("log");
    for i in 0..2000u32 {
        primary.set(format!("during:{i}"), vec![b'x'; 100]).expect("set");
    }
    for f in [&on_disk, &anon] {
        f.set_role(Role::Follower).expect("follower");
        f.replica_begin_full_sync(info.offset, &p.replid(), "", 0)
            .expect("begin");
        // The log after the snapshot is four times the ring: the ring takes
        // what fits, then refuses (an overwriting ring too).
        let mut pos = info.offset;
        let held = loop {
            let batch = p.read_stream(pos, 4096).expect("read");
            match f.replica_append(batch.start, &batch.bytes) {
                Ok(end) => pos = end,
                Err(e) => {
                    assert!(e.is_log_full(), "{e}");
                    break batch;
                }
            }
        };
        assert!(pos - info.offset <= 64 * 1024);
        assert!(f.is_stale());
        let staging = f.staging().expect("staging");
        staging.load_snapshot(&snap[..]).expect("load");
        assert_eq!(f.swap_in(&staging, info.offset).expect("swap"), pos);
        // Then the rest goes in as live bytes.
        f.replica_append(held.start, &held.bytes)
            .expect("append after the swap");
        f.replica_replay_stream(held.start, &held.bytes).expect("replay");
        if let Err(e) = pump(&primary, f) {
            let l = f.log().expect("log");
            panic!(
                "pump: {e}: oldest {} published {} applied {} snapshots {:?}",
                l.oldest(),
                l.published(),
                f.applied_offset(),
                f.stats().snapshot
            );
        }
        assert_eq!(f.digest(), primary.digest());
    }
}
