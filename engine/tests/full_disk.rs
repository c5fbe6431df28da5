//! A real full disk (F15, issue 12's fault-injection item 3): the data
//! directory on a small tmpfs (mounted when the test runs as root; skipped
//! with a message otherwise), filled while the engine writes and saves.
//! The process survives (no SIGBUS: the ring's blocks are allocated when
//! it is created), a save that finds no space fails with a typed error
//! carrying ENOSPC, removes its partial file (giving its space back) and
//! keeps the previous snapshot loadable, writes acknowledged go on being
//! kept, and once space returns a save works and a reopen holds every
//! acknowledged write.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ringkv::log::LogError;
use ringkv::snapshot::SnapshotError;
use ringkv::{Config, Durability, Engine, Error, LogConfig};

mod support;
use support::SmallFs;

fn config() -> Config {
    Config {
        shards: 4,
        active_expire: false,
        log: LogConfig {
            capacity: 1 << 20,
            durability: Durability::Always,
            ..LogConfig::default()
        },
        snapshot: ringkv::SnapshotConfig {
            save: Vec::new(),
            // A write that finds the ring nearly full waits this long for a
            // save to free it (none can while the disk is full).
            log_full_wait_ms: 20,
            ..ringkv::SnapshotConfig::default()
        },
        ..Config::default()
    }
}

fn mount(size: &str) -> Option<SmallFs> {
    match SmallFs::mount(size) {
        Ok(fs) => Some(fs),
        Err(why) => {
            println!("skipped: no small tmpfs to fill ({why})");
            None
        }
    }
}

/// Acknowledged writes: key → value.
#[derive(Default)]
struct Model(BTreeMap<String, Vec<u8>>);

impl Model {
    fn set(&mut self, e: &Engine, key: String, len: usize) -> ringkv::Result<()> {
        let value = vec![b'a' + (self.0.len() % 26) as u8; len];
        e.set(&key, value.clone())?;
        self.0.insert(key, value);
        Ok(())
    }

    fn set_all(&mut self, e: &Engine, prefix: &str, n: usize, len: usize) {
        for i in 0..n {
            self.set(e, format!("{prefix}{i}"), len).expect("an acknowledged write");
        }
    }

    fn check(&self, e: &Engine) {
        assert_eq!(e.dbsize(), self.0.len() as u64);
        for (k, v) in &self.0 {
            assert_eq!(
                e.get(k).expect("get").as_deref(),
                Some(&v[..]),
                "acknowledged write {k} lost"
            );
        }
    }
}

/// Grows `file` by up to `bytes` (in 4 KiB writes); returns how much it
/// wrote. Stops at the first "no space", the only error expected here.
fn grow(file: &mut std::fs::File, bytes: usize) -> usize {
    let page = [0x5au8; 4096];
    let mut written = 0;
    while written < bytes {
        match file.write(&page) {
            Ok(n) => written += n,
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::StorageFull, "filling: {e}");
                break;
            }
        }
    }
    written
}

/// Fills the filesystem: a file grown until there is no space left.
fn fill(dir: &Path) -> (PathBuf, std::fs::File) {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    grow(&mut file, usize::MAX);
    (path, file)
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

fn snapshot_digest(path: &Path) -> u64 {
    let e = Engine::new(Config::default()).expect("engine");
    let f = std::fs::File::open(path).expect("open snapshot");
    e.load_snapshot(io::BufReader::new(f)).expect("the snapshot loads");
    e.digest()
}

/// A save, retried while a background one (started by a filling ring)
/// holds the slot.
fn save(e: &Engine) -> ringkv::Result<ringkv::SnapshotInfo> {
    loop {
        match e.save() {
            Err(Error::Snapshot(SnapshotError::InProgress)) => std::thread::yield_now(),
            r => return r,
        }
    }
}

/// The "no space" inside a save's error.
fn assert_no_space<T: std::fmt::Debug>(r: ringkv::Result<T>) {
    match r {
        Err(Error::Snapshot(SnapshotError::Io { context, source })) => {
            assert_eq!(source.kind(), io::ErrorKind::StorageFull, "{context}: {source}");
        }
        other => panic!("expected a snapshot I/O error with ENOSPC, got {other:?}"),
    }
}

#[test]
fn a_save_on_a_full_disk_fails_cleanly_and_works_once_space_returns() {
    let Some(fs) = mount("8m") else { return };
    let data = fs.path().join("data");
    let mut model = Model::default();
    let e = Engine::open(&data, config()).expect("open");
    model.set_all(&e, "a", 200, 1000);
    save(&e).expect("a save while there is room");
    let (previous, digest) = (snapshot_files(&data), e.digest());
    assert_eq!(previous.len(), 1);
    model.set_all(&e, "b", 100, 1000);

    // The disk fills, but for 64 KiB: less than the next snapshot needs.
    let (filler, file) = fill(fs.path());
    let len = file.metadata().expect("filler").len();
    file.set_len(len - (64 << 10)).expect("leave 64 KiB");
    drop(file);

    assert_no_space(save(&e));
    assert!(!data.join("snapshot.tmp").exists(), "the partial snapshot is removed");
    // ... and its space is free again.
    let probe = fs.path().join("probe");
    let mut file = std::fs::File::create(&probe).expect("probe");
    assert_eq!(
        grow(&mut file, 48 << 10),
        48 << 10,
        "the failed save gave its space back"
    );
    drop(file);
    std::fs::remove_file(&probe).expect("remove probe");
    assert_eq!(snapshot_files(&data), previous, "the previous snapshot is kept");
    assert_eq!(snapshot_digest(&previous[0]), digest, "the previous snapshot loads");

    // The ring's blocks are allocated: writes go on until the ring is full
    // (no save can free it), and then fail with a clear error, no SIGBUS.
    let mut i = 0;
    let full = loop {
        match model.set(&e, format!("c{i}"), 4000) {
            Ok(()) => i += 1,
            Err(err) => break err,
        }
        assert!(i < 1000, "a 1 MiB ring took 4 MB");
    };
    assert!(matches!(full, Error::Log(LogError::Full { .. })), "{full}");
    assert!(i > 100, "only {i} writes before the ring was full");
    assert_no_space(save(&e));
    assert!(!data.join("snapshot.tmp").exists());

    // Space returns: a save works, frees the ring, and a reopen has it all.
    std::fs::remove_file(&filler).expect("remove filler");
    save(&e).expect("a save once there is room");
    assert!(!data.join("snapshot.tmp").exists());
    model.set_all(&e, "d", 50, 1000);
    let digest = e.digest();
    e.close();
    let e = Engine::open(&data, config()).expect("reopen");
    model.check(&e);
    assert_eq!(e.digest(), digest);
    drop(e);
}

/// Rounds of writes and saves while a filler file takes the disk away
/// 256 KiB at a time: every save either works or fails with ENOSPC and
/// leaves the newest snapshot that worked loadable; the process survives
/// until the ring is full; then space returns and everything is there.
#[test]
fn writes_and_saves_while_the_disk_fills() {
    let Some(fs) = mount("6m") else { return };
    let data = fs.path().join("data");
    let mut model = Model::default();
    let e = Engine::open(&data, config()).expect("open");
    let mut file = std::fs::File::create(fs.path().join("filler")).expect("filler");
    let (mut saved, mut failed) = (0, 0);
    let mut newest: Option<(PathBuf, u64)> = None;
    let mut round = 0;
    let ring_full = 'rounds: loop {
        for i in 0..40 {
            if let Err(err) = model.set(&e, format!("r{round}-{i}"), 2000) {
                break 'rounds err;
            }
        }
        grow(&mut file, 256 << 10);
        match save(&e) {
            Ok(info) => {
                saved += 1;
                let files = snapshot_files(&data);
                let last = files.last().expect("the saved snapshot").clone();
                assert!(last.to_string_lossy().contains(&format!("{:020}", info.offset)));
                newest = Some((last, e.digest()));
            }
            Err(err) => {
                assert_no_space::<()>(Err(err));
                failed += 1;
                assert!(
                    !data.join("snapshot.tmp").exists(),
                    "round {round}: a partial file is left"
                );
                if let Some((path, digest)) = &newest {
                    assert_eq!(
                        snapshot_digest(path),
                        *digest,
                        "round {round}: the newest saved snapshot"
                    );
                }
            }
        }
        round += 1;
        assert!(round < 200, "the ring never filled");
    };
    assert!(matches!(ring_full, Error::Log(LogError::Full { .. })), "{ring_full}");
    assert!(saved > 0 && failed > 0, "{saved} saves worked, {failed} failed");
    println!(
        "{round} rounds: {saved} saves worked, {failed} found the disk full, {} writes acknowledged",
        model.0.len()
    );
    drop(file);
    std::fs::remove_file(fs.path().join("filler")).expect("remove filler");
    save(&e).expect("a save once there is room");
    model.set_all(&e, "after", 20, 2000);
    e.close();
    let e = Engine::open(&data, config()).expect("reopen");
    model.check(&e);
    drop(e);
}
