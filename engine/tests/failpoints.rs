//! Fault injection at every failpoint of `src/failpoints.rs` (feature
//! `failpoints`): for each, the engine either reports a clear, typed error
//! and stays usable, or poisons its log with a clear error; either way a
//! reopen of the data directory holds every acknowledged write, and a
//! failed save keeps the previous snapshot loadable.
//!
//! Failpoints are global to the process: every test runs inside a
//! `fail::FailScenario`, which holds a process-wide lock, so they run one
//! at a time whatever the test harness's thread count.
//!
//! `cargo test -p ringkv --features failpoints --test failpoints`

#![cfg(feature = "failpoints")]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fail::FailScenario;
use ringkv::log::LogError;
use ringkv::snapshot::SnapshotError;
use ringkv::{Config, Durability, Engine, Error, LogConfig, Role};

const EIO: i32 = 5;

fn config(durability: Durability) -> Config {
    Config {
        shards: 4,
        active_expire: false,
        log: LogConfig {
            capacity: 1 << 20,
            durability,
            ..LogConfig::default()
        },
        snapshot: ringkv::SnapshotConfig {
            save: Vec::new(),
            ..ringkv::SnapshotConfig::default()
        },
        ..Config::default()
    }
}

fn open(dir: &Path, durability: Durability) -> ringkv::Result<Engine> {
    Engine::open(dir, config(durability))
}

/// What the writers were told: every acknowledged write (each key is
/// written once), and the writes that failed, which may or may not
/// survive a reopen (their record may be in the ring).
#[derive(Default)]
struct Model {
    acked: BTreeMap<String, String>,
    failed: BTreeMap<String, String>,
}

impl Model {
    /// SET of a new key; returns the engine's answer.
    fn set(&mut self, e: &Engine, i: u64) -> ringkv::Result<()> {
        let (k, v) = (
            format!("k{i:05}"),
            format!("v{i}-{}", "x".repeat((i % 7 * 40) as usize)),
        );
        let r = e.set(&k, v.clone());
        match r {
            Ok(()) => self.acked.insert(k, v),
            Err(_) => self.failed.insert(k, v),
        };
        r
    }

    /// `n` writes from `first` that must all be acknowledged.
    fn set_all(&mut self, e: &Engine, first: u64, n: u64) {
        for i in first..first + n {
            self.set(e, i).expect("an acknowledged write");
        }
    }

    /// Every acknowledged write is in `e`, and nothing else is but writes
    /// that failed.
    fn check(&self, e: &Engine) {
        for (k, v) in &self.acked {
            let got = e.get(k).expect("get");
            assert_eq!(got.as_deref(), Some(v.as_bytes()), "acknowledged write {k} lost");
        }
        let extra = e.dbsize() - self.acked.len() as u64;
        let failed_present = self
            .failed
            .iter()
            .filter(|(k, v)| e.get(k).expect("get").as_deref() == Some(v.as_bytes()))
            .count() as u64;
        assert_eq!(extra, failed_present, "keys that were never written");
    }
}

/// The context and source of a ring log I/O error, or a panic naming what came instead.
fn log_io<T: std::fmt::Debug>(r: ringkv::Result<T>) -> (String, io::Error) {
    match r {
        Err(Error::Log(LogError::Io { context, source })) => (context, source),
        other => panic!("expected a ring log I/O error, got {other:?}"),
    }
}

/// The context and source of a snapshot I/O error.
fn snapshot_io<T: std::fmt::Debug>(r: ringkv::Result<T>) -> (String, io::Error) {
    match r {
        Err(Error::Snapshot(SnapshotError::Io { context, source })) => (context, source),
        other => panic!("expected a snapshot I/O error, got {other:?}"),
    }
}

fn assert_poisoned<T: std::fmt::Debug>(r: ringkv::Result<T>) {
    match r {
        Err(Error::Log(LogError::Poisoned)) => {}
        other => panic!("expected the poisoned log's error, got {other:?}"),
    }
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rkvs"))
        .collect();
    found.sort();
    found
}

/// The digest of the data a snapshot file holds (it loads cleanly).
fn snapshot_digest(path: &Path) -> u64 {
    let e = Engine::new(config(Durability::None)).expect("engine");
    let f = std::fs::File::open(path).expect("open snapshot");
    e.load_snapshot(io::BufReader::new(f)).expect("the snapshot loads");
    e.digest()
}

// ----- the ring file -----------------------------------------------------------

#[test]
fn a_ring_file_that_cannot_be_created_is_a_clear_error_and_leaves_nothing() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    fail::cfg("ring::create", "return(EIO)").expect("cfg");
    let (context, source) = log_io(open(dir.path(), Durability::Always));
    assert!(
        context.contains("creating") && context.contains("ring.log"),
        "{context}"
    );
    assert_eq!(source.raw_os_error(), Some(EIO), "{source}");
    assert!(!dir.path().join("ring.log").exists());
    fail::remove("ring::create");
    let mut model = Model::default();
    let e = open(dir.path(), Durability::Always).expect("open once the failure is gone");
    model.set_all(&e, 0, 20);
    drop(e);
    model.check(&open(dir.path(), Durability::Always).expect("reopen"));
    scenario.teardown();
}

#[test]
fn no_space_for_a_ring_refuses_a_new_one_and_keeps_an_existing_one() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let ring = dir.path().join("ring.log");
    fail::cfg("ring::fallocate", "return(ENOSPC)").expect("cfg");
    let (context, source) = log_io(open(dir.path(), Durability::Always));
    assert!(
        context.contains("no space") && context.contains("ring.log"),
        "{context}"
    );
    assert_eq!(source.kind(), io::ErrorKind::StorageFull, "{source}");
    assert!(!ring.exists(), "the half-made ring file is removed");

    fail::remove("ring::fallocate");
    let mut model = Model::default();
    let e = open(dir.path(), Durability::Always).expect("open");
    model.set_all(&e, 0, 50);
    drop(e);
    let len = std::fs::metadata(&ring).expect("ring").len();

    // Opening an existing file allocates what it lacks: no room is refused
    // the same way, and the file is kept as it is.
    fail::cfg("ring::fallocate", "return(ENOSPC)").expect("cfg");
    let (context, source) = log_io(open(dir.path(), Durability::Always));
    assert!(context.contains("no space"), "{context}");
    assert_eq!(source.kind(), io::ErrorKind::StorageFull);
    assert_eq!(std::fs::metadata(&ring).expect("kept").len(), len);
    fail::remove("ring::fallocate");
    let e = open(dir.path(), Durability::Always).expect("reopen");
    model.check(&e);
    scenario.teardown();
}

#[test]
fn a_filesystem_without_fallocate_gets_a_ring_of_written_zeros() {
    use std::os::unix::fs::MetadataExt;
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    fail::cfg("ring::fallocate", "return(EOPNOTSUPP)").expect("cfg");
    let mut model = Model::default();
    let e = open(dir.path(), Durability::Always).expect("open without fallocate");
    let meta = std::fs::metadata(dir.path().join("ring.log")).expect("ring");
    assert!(meta.blocks() * 512 >= meta.len(), "every block is written");
    model.set_all(&e, 0, 50);
    drop(e);
    // Reopening without fallocate is fine too (the file's blocks are not checked).
    let e = open(dir.path(), Durability::Always).expect("reopen without fallocate");
    model.check(&e);
    drop(e);
    fail::remove("ring::fallocate");
    model.check(&open(dir.path(), Durability::Always).expect("reopen"));
    scenario.teardown();
}

// ----- msync and the header ------------------------------------------------

/// `always`: the write whose group commit fails gets the I/O error (it is
/// applied but not acknowledged), and every later write the poisoned
/// log's error, until the engine is reopened.
#[test]
fn a_failed_msync_under_always_fails_that_write_and_poisons_the_log() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let mut model = Model::default();
    let e = open(dir.path(), Durability::Always).expect("open");
    model.set_all(&e, 0, 100);
    fail::cfg("ring::msync_data", "return(EIO)").expect("cfg");
    let (context, source) = log_io(model.set(&e, 100));
    assert!(context.contains("msync of the ring"), "{context}");
    assert_eq!(source.raw_os_error(), Some(EIO));
    fail::remove("ring::msync_data");
    // Poisoned until reopened, even though the disk would work again.
    assert_poisoned(model.set(&e, 101));
    assert_poisoned(e.sync());
    assert_poisoned(e.hset("h", [("f", "v")]));
    // Reads go on; the unacknowledged write is visible (config.rs, `Always`).
    assert!(e.get("k00100").expect("get").is_some());
    model.check(&e);
    drop(e);
    let e = open(dir.path(), Durability::Always).expect("reopen");
    model.check(&e);
    model.set_all(&e, 200, 20);
    drop(e);
    model.check(&open(dir.path(), Durability::Always).expect("reopen"));
    scenario.teardown();
}

/// `everysec`: the flusher's failed sync poisons the log; writes
/// acknowledged before it are kept, later ones are refused.
#[test]
fn a_failed_msync_under_everysec_poisons_the_log_from_the_flusher() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let mut model = Model::default();
    let e = open(dir.path(), Durability::Everysec).expect("open");
    model.set_all(&e, 0, 100);
    fail::cfg("ring::msync_data", "return(EIO)").expect("cfg");
    // Keep writing until the flusher's next sync meets the failure (about a
    // second; the bound only keeps a broken flusher from hanging the test).
    let mut i = 100;
    let poisoned = loop {
        match model.set(&e, i) {
            Ok(()) => {}
            Err(err) => break err,
        }
        i += 1;
        assert!(i < 1_000_000, "the everysec flusher never synced");
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    assert_poisoned::<()>(Err(poisoned));
    fail::remove("ring::msync_data");
    assert_poisoned(model.set(&e, i + 1));
    assert_poisoned(e.sync());
    drop(e);
    let e = open(dir.path(), Durability::Everysec).expect("reopen");
    model.check(&e);
    model.set_all(&e, 2_000_000, 10);
    drop(e);
    model.check(&open(dir.path(), Durability::None).expect("reopen"));
    scenario.teardown();
}

/// `none`: writes never msync, so only an explicit sync meets the failure
/// (and poisons the log: what it was asked to make durable is not).
#[test]
fn a_failed_msync_under_none_fails_the_explicit_sync() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let mut model = Model::default();
    let e = open(dir.path(), Durability::None).expect("open");
    fail::cfg("ring::msync_data", "return(EIO)").expect("cfg");
    model.set_all(&e, 0, 100);
    let (context, _) = log_io(e.sync());
    assert!(context.contains("msync of the ring"), "{context}");
    assert_poisoned(model.set(&e, 100));
    fail::remove("ring::msync_data");
    drop(e);
    let e = open(dir.path(), Durability::None).expect("reopen");
    model.check(&e);
    e.sync().expect("the reopened log syncs");
    scenario.teardown();
}

#[test]
fn a_failed_header_msync_in_a_group_commit_poisons_the_log() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let mut model = Model::default();
    let e = open(dir.path(), Durability::Always).expect("open");
    model.set_all(&e, 0, 50);
    fail::cfg("ring::msync_header", "return(EIO)").expect("cfg");
    let (context, source) = log_io(model.set(&e, 50));
    assert!(context.contains("msync of the ring header"), "{context}");
    assert_eq!(source.raw_os_error(), Some(EIO));
    assert_poisoned(model.set(&e, 51));
    fail::remove("ring::msync_header");
    drop(e);
    let e = open(dir.path(), Durability::Always).expect("reopen");
    model.check(&e);
    model.set_all(&e, 100, 10);
    scenario.teardown();
}

#[test]
fn a_failed_header_write_in_a_group_commit_poisons_the_log() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let mut model = Model::default();
    let e = open(dir.path(), Durability::Always).expect("open");
    model.set_all(&e, 0, 50);
    fail::cfg("ring::header_write", "return(EIO)").expect("cfg");
    let (context, _) = log_io(model.set(&e, 50));
    assert!(context.contains("writing the ring header"), "{context}");
    assert_poisoned(model.set(&e, 51));
    fail::remove("ring::header_write");
    drop(e);
    let e = open(dir.path(), Durability::Always).expect("reopen");
    model.check(&e);
    scenario.teardown();
}

/// A save whose snapshot is durable but whose trimming of the ring fails
/// (the header cannot be written or msynced) reports the ring's error;
/// the log is not poisoned, writes go on, the ring keeps its history and
/// the next save trims it.
#[test]
fn a_save_that_cannot_trim_the_ring_fails_and_the_engine_goes_on() {
    for point in ["ring::header_write", "ring::msync_header"] {
        let scenario = FailScenario::setup();
        let dir = tempfile::tempdir().expect("dir");
        let mut model = Model::default();
        let e = open(dir.path(), Durability::None).expect("open");
        model.set_all(&e, 0, 100);
        e.save().expect("first save");
        model.set_all(&e, 100, 100);
        let oldest = e.log().expect("log").oldest();
        fail::cfg(point, "return(EIO)").expect("cfg");
        let (context, _) = log_io(e.save());
        assert!(context.contains("ring header"), "{point}: {context}");
        assert_eq!(e.log().expect("log").oldest(), oldest, "{point}: nothing trimmed");
        fail::remove(point);
        model.set_all(&e, 200, 100);
        e.save().expect("the next save");
        assert!(e.log().expect("log").oldest() > oldest, "{point}: trimmed now");
        drop(e);
        model.check(&open(dir.path(), Durability::None).expect("reopen"));
        scenario.teardown();
    }
}

/// A follower whose promotion cannot record the new history stays a
/// follower of the old one: no write is taken, its ring still names the
/// history it follows, and a later promotion links the new history to it.
#[test]
fn a_promotion_that_cannot_record_its_history_stays_a_follower_of_the_old_one() {
    for point in ["ring::header_write", "ring::msync_header"] {
        let scenario = FailScenario::setup();
        let dir = tempfile::tempdir().expect("dir");
        let mut model = Model::default();
        let e = open(dir.path(), Durability::None).expect("open");
        model.set_all(&e, 0, 20);
        let history = e.log().expect("log").replid();
        e.set_role(Role::Follower).expect("follower");
        fail::cfg(point, "return(EIO)").expect("cfg");
        let (context, _) = log_io(e.promote());
        assert!(context.contains("ring header"), "{point}: {context}");
        assert_eq!(e.role(), Role::Follower, "{point}");
        assert!(matches!(e.set("x", "y"), Err(Error::ReadOnly)), "{point}");
        assert_eq!(
            e.log().expect("log").replid(),
            history,
            "{point}: the ring names a history that never started"
        );
        fail::remove(point);
        let promotion = e.promote().expect("promotion");
        assert_eq!(
            promotion.prev_replid, history,
            "{point}: the new history continues the old one"
        );
        model.set_all(&e, 100, 20);
        drop(e);
        let e = open(dir.path(), Durability::None).expect("reopen");
        model.check(&e);
        let h = e.log().expect("log").header();
        assert_eq!((h.replid, h.prev_replid), (promotion.replid, history), "{point}");
        scenario.teardown();
    }
}

// ----- snapshots ----------------------------------------------------------------

/// One failed save: a first save, more writes, the failpoint, the failing
/// save. Returns the engine, the model, the first snapshot's path and the
/// digest of the data it holds, and the save's error.
fn failed_save(dir: &Path, point: &str, action: &str) -> (Engine, Model, PathBuf, u64, Error) {
    let mut model = Model::default();
    let e = open(dir, Durability::Always).expect("open");
    model.set_all(&e, 0, 300);
    e.save().expect("first save");
    let digest = e.digest();
    let files = snapshot_files(dir);
    assert_eq!(files.len(), 1);
    model.set_all(&e, 300, 300);
    let completed = e.stats().snapshot.completed;
    fail::cfg(point, action).expect("cfg");
    let err = e.save().expect_err("the save fails");
    fail::remove(point);
    let stats = e.stats().snapshot;
    assert_eq!(
        stats.completed, completed,
        "{point}: a failed save is not counted as completed"
    );
    assert_eq!(
        stats.last_error.as_deref(),
        Some(err.to_string().as_str()),
        "{point}: the stats keep the save's error"
    );
    (e, model, files[0].clone(), digest, err)
}

/// After a save failed before its rename: no temporary or partial file is
/// left, the previous snapshot loads with its data, the engine takes
/// writes, the next save works, and a reopen holds every acknowledged write.
fn check_after_failed_save(dir: &Path, e: Engine, mut model: Model, previous: &Path, digest: u64) {
    assert!(
        !dir.join("snapshot.tmp").exists(),
        "a failed save leaves its temporary file"
    );
    assert_eq!(
        snapshot_files(dir),
        vec![previous.to_path_buf()],
        "only the previous snapshot"
    );
    assert_eq!(
        snapshot_digest(previous),
        digest,
        "the previous snapshot holds its data"
    );
    model.set_all(&e, 1000, 50);
    e.save().expect("the next save");
    assert_eq!(snapshot_files(dir).len(), 2);
    drop(e);
    let e = open(dir, Durability::Always).expect("reopen");
    model.check(&e);
    // The previous snapshot still serves as the fallback.
    assert_eq!(snapshot_digest(previous), digest);
}

#[test]
fn a_snapshot_write_that_finds_no_space_fails_cleanly_and_keeps_the_previous_snapshot() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let (e, model, previous, digest, err) = failed_save(dir.path(), "snapshot::write", "return(ENOSPC)");
    let (context, source) = snapshot_io::<()>(Err(err));
    assert!(context.contains("snapshot"), "{context}");
    assert_eq!(source.kind(), io::ErrorKind::StorageFull, "{source}");
    check_after_failed_save(dir.path(), e, model, &previous, digest);
    scenario.teardown();
}

/// The disk fills in the middle of a snapshot: the first write goes
/// through, the next one does not.
#[test]
fn a_snapshot_write_that_fails_halfway_leaves_no_partial_file() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let mut model = Model::default();
    let mut big = config(Durability::None);
    big.log.capacity = 8 << 20;
    let e = Engine::open(dir.path(), big.clone()).expect("open");
    model.set_all(&e, 0, 100);
    e.save().expect("first save");
    let digest = e.digest();
    let previous = snapshot_files(dir.path()).remove(0);
    // More than the 1 MiB write buffer: the file is written in several writes.
    for i in 0..40 {
        e.set(format!("big{i}"), vec![b'b'; 60_000]).expect("set");
        model.acked.insert(format!("big{i}"), "b".repeat(60_000));
    }
    fail::cfg("snapshot::write", "1*off->return(ENOSPC)").expect("cfg");
    let (_, source) = snapshot_io(e.save());
    assert_eq!(source.kind(), io::ErrorKind::StorageFull);
    fail::remove("snapshot::write");
    assert!(!dir.path().join("snapshot.tmp").exists(), "the partial file is removed");
    assert_eq!(snapshot_files(dir.path()), vec![previous.clone()]);
    assert_eq!(snapshot_digest(&previous), digest);
    e.save().expect("the next save");
    drop(e);
    model.check(&Engine::open(dir.path(), big).expect("reopen"));
    scenario.teardown();
}

#[test]
fn a_snapshot_fsync_failure_fails_cleanly_and_keeps_the_previous_snapshot() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let (e, model, previous, digest, err) = failed_save(dir.path(), "snapshot::fsync", "return(EIO)");
    let (context, source) = snapshot_io::<()>(Err(err));
    assert_eq!(context, "fsync of the snapshot file");
    assert_eq!(source.raw_os_error(), Some(EIO));
    check_after_failed_save(dir.path(), e, model, &previous, digest);
    scenario.teardown();
}

#[test]
fn a_snapshot_rename_failure_fails_cleanly_and_keeps_the_previous_snapshot() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let (e, model, previous, digest, err) = failed_save(dir.path(), "snapshot::rename", "return(EIO)");
    let (context, source) = snapshot_io::<()>(Err(err));
    assert_eq!(context, "renaming the snapshot file");
    assert_eq!(source.raw_os_error(), Some(EIO));
    check_after_failed_save(dir.path(), e, model, &previous, digest);
    scenario.teardown();
}

/// The directory's fsync fails after the rename: the new file is whole and
/// fsynced, so it stays (recovery may load it); nothing older is removed,
/// the ring keeps the history back to the previous snapshot, and both
/// snapshots load.
#[test]
fn a_directory_fsync_failure_after_the_rename_keeps_both_snapshots_and_the_history() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let (e, mut model, previous, digest, err) = failed_save(dir.path(), "snapshot::dir_fsync", "return(EIO)");
    let (context, source) = snapshot_io::<()>(Err(err));
    assert_eq!(context, "fsync of the data directory");
    assert_eq!(source.raw_os_error(), Some(EIO));
    let files = snapshot_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0], previous);
    assert_eq!(snapshot_digest(&previous), digest);
    assert_eq!(snapshot_digest(&files[1]), e.digest(), "the renamed snapshot is whole");
    assert_eq!(e.log().expect("log").oldest(), 0, "the ring keeps its history");
    model.set_all(&e, 1000, 50);
    drop(e);
    let e = open(dir.path(), Durability::Always).expect("reopen");
    model.check(&e);
    e.save().expect("a save after the reopen");
    scenario.teardown();
}

/// A background save that fails leaves its error in the stats and no
/// temporary file; the next save that works clears the error.
#[test]
fn a_failed_background_save_is_reported_in_the_stats() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let mut model = Model::default();
    let e = open(dir.path(), Durability::None).expect("open");
    model.set_all(&e, 0, 100);
    fail::cfg("snapshot::fsync", "return(EIO)").expect("cfg");
    assert!(e.bgsave().expect("bgsave"), "a background save starts");
    // Wait for its outcome (bounded only so that a lost error fails the
    // test instead of hanging it).
    let mut polls = 0;
    let error = loop {
        if let Some(error) = e.stats().snapshot.last_error {
            break error;
        }
        polls += 1;
        assert!(polls < 6_000, "the failed background save left no error in the stats");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(error.contains("fsync of the snapshot file"), "{error}");
    assert_eq!(e.stats().snapshot.completed, 0);
    fail::remove("snapshot::fsync");
    assert!(snapshot_files(dir.path()).is_empty());
    assert!(!dir.path().join("snapshot.tmp").exists());
    // The background thread may still hold the save slot for a moment.
    while let Err(err) = e.save() {
        assert!(matches!(err, Error::Snapshot(SnapshotError::InProgress)), "{err}");
        std::thread::yield_now();
    }
    let stats = e.stats().snapshot;
    assert_eq!(
        (stats.completed, stats.last_error),
        (1, None),
        "a save that works clears the error"
    );
    e.close();
    model.check(&open(dir.path(), Durability::None).expect("reopen"));
    scenario.teardown();
}

// ----- a follower's append ---------------------------------------------------

fn primary() -> Engine {
    Engine::builder()
        .config(config(Durability::None))
        .anonymous_log()
        .build()
        .expect("primary")
}

fn primary_writes(primary: &Engine, round: u64) {
    for i in 0..100 {
        primary.set(format!("k{i}"), format!("v{round}-{i}")).expect("set");
        primary
            .hset("h", [(format!("f{}", i % 13), format!("{round}"))])
            .expect("hset");
    }
}

/// A failed copy of a primary's records into the follower's ring publishes
/// none of them and poisons the ring: the follower keeps what it applied
/// (and acknowledged as durable), and after a reopen goes on from there.
#[test]
fn a_failed_follower_append_publishes_nothing_and_poisons_the_ring() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("dir");
    let p = primary();
    let f = open(dir.path(), Durability::Always).expect("follower");
    f.set_role(Role::Follower).expect("follower");
    let plog = p.log().expect("log");
    f.replica_begin_full_sync(0, &plog.replid(), "", 0).expect("begin");
    f.swap_in(&f.staging().expect("staging"), 0).expect("swap");

    primary_writes(&p, 0);
    let batch = plog.read_stream(0, 1 << 20).expect("read");
    f.replica_append(batch.start, &batch.bytes).expect("append");
    f.replica_replay_stream(batch.start, &batch.bytes).expect("replay");
    let (acked, acked_digest) = (f.durable_offset(), f.digest());
    assert_eq!(acked, plog.published());
    assert_eq!(acked_digest, p.digest());

    primary_writes(&p, 1);
    let batch = plog.read_stream(acked, 1 << 20).expect("read");
    fail::cfg("replica::append", "return(EIO)").expect("cfg");
    let (context, source) = log_io(f.replica_append(batch.start, &batch.bytes));
    assert!(context.contains("copying the primary's record"), "{context}");
    assert_eq!(source.raw_os_error(), Some(EIO));
    fail::remove("replica::append");
    let flog = f.log().expect("log");
    assert_eq!(flog.published(), acked, "nothing of the failed batch is published");
    let poisoned = f.replica_append(batch.start, &batch.bytes);
    assert!(
        poisoned.as_ref().is_err_and(|e| e.to_string().contains("reopened")),
        "the error says what to do: {poisoned:?}"
    );
    assert_poisoned(poisoned);
    assert_eq!((f.durable_offset(), f.digest()), (acked, acked_digest));
    drop(flog);
    drop(f);

    let f = open(dir.path(), Durability::Always).expect("reopen");
    f.set_role(Role::Follower).expect("follower");
    assert_eq!(f.applied_offset(), acked);
    assert_eq!(
        f.digest(),
        acked_digest,
        "the follower reopens with what it acknowledged"
    );
    f.replica_append(batch.start, &batch.bytes)
        .expect("append after the reopen");
    f.replica_replay_stream(batch.start, &batch.bytes).expect("replay");
    assert_eq!(f.digest(), p.digest());
    assert_eq!(f.durable_offset(), plog.published());
    scenario.teardown();
}

/// A gate that admits its first write and refuses every later one: a
/// leader lease's fence that closes while the admitted write waits.
struct ClosesAfterFirst(std::sync::atomic::AtomicU32);

impl ringkv::WriteGate for ClosesAfterFirst {
    fn admit(&self) -> Result<(), String> {
        match self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Ok(()),
            _ => Err("closed while waiting".into()),
        }
    }
}

/// Issue 14 finding 1: a write that passed the gate and then waited for
/// log room (saves failing, the ring nearly full) asks the gate again and
/// is refused when it closed meanwhile, instead of reaching the log.
#[test]
fn a_write_waiting_for_log_room_asks_the_gate_again() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(Durability::Always);
    cfg.snapshot.log_full_wait_ms = 200;
    let e = Engine::open(dir.path(), cfg).expect("open");
    fail::cfg("snapshot::write", "return(EIO)").expect("cfg");
    // Fill the ring until a write has to wait for room (no save can free it).
    let value = vec![b'v'; 4096];
    let mut waited = false;
    for i in 0..400 {
        let t = std::time::Instant::now();
        if e.set(format!("fill{i}"), value.clone()).is_err() {
            break;
        }
        if t.elapsed() >= std::time::Duration::from_millis(200) {
            waited = true;
            break;
        }
    }
    assert!(waited, "the ring never got full enough to make a write wait");
    let gate = Arc::new(ClosesAfterFirst(std::sync::atomic::AtomicU32::new(0)));
    e.set_write_gate(Some(gate.clone()));
    let err = e.set("late", "x").expect_err("the gate closed during the wait");
    assert!(
        matches!(err, Error::NoReplicas(ref r) if r == "closed while waiting"),
        "{err}"
    );
    assert_eq!(
        gate.0.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "asked before and after the wait"
    );
    assert!(
        e.get("late").expect("get").is_none(),
        "the refused write is not applied"
    );
    drop(e);
    scenario.teardown();
}
