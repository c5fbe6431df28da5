//! `ringkv-backup` and `ringkv-restore`: restores at recorded points equal
//! the primary's state there (`Engine::digest`), damage is an error and
//! never a wrong state, retention keeps what it promises, the backup
//! follows primary restarts and full syncs, and WAIT never counts it.
//! Everything binds 127.0.0.1 and stops by itself; waits are bounded and
//! nothing asserts on time.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringkv::{Config, Engine, LogConfig};
use ringkv_examples::backup::catalog::Catalog;
use ringkv_examples::backup::retention::{self, RetentionConfig};
use ringkv_examples::backup::{restore, Backup, BackupError, BackupOptions, RestoreOptions, Target, WriterConfig};
use ringkv_replication::tls::{DevCerts, TlsMaterial};
use ringkv_replication::{blocking, FollowerConfig, PrimaryConfig, WriteGateConfig};

struct Certs {
    server: TlsMaterial,
    client: TlsMaterial,
}

fn certs() -> Certs {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let ca = DevCerts::new("backup test CA").expect("ca");
    Certs {
        server: ca
            .material(&ca.server(&["localhost"]).expect("server"))
            .expect("material"),
        client: ca.material(&ca.client("backup").expect("client")).expect("material"),
    }
}

fn ring(capacity: u64) -> Config {
    Config {
        log: LogConfig {
            capacity,
            ..LogConfig::default()
        },
        ..Config::default()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// Waits (at most 60 s: a bound, not a measurement) for `cond`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Small segments and frequent snapshots, so a short workload spans many.
fn writer_config() -> WriterConfig {
    WriterConfig {
        segment_bytes: 8 << 10,
        segment_interval: Duration::from_millis(30),
        idle_segment_interval: Duration::from_millis(200),
        mark_interval: Duration::from_millis(5),
        snapshot_interval: Duration::from_secs(3600),
        snapshot_log_bytes: 24 << 10,
        read_bytes: 4 << 10,
        retention: RetentionConfig::default(),
    }
}

fn follower_config(primary: std::net::SocketAddr) -> FollowerConfig {
    FollowerConfig {
        name: "backup".into(),
        min_backoff_ms: 20,
        max_backoff_ms: 200,
        ..FollowerConfig::new(primary)
    }
}

fn start_backup(dir: &Path, primary: std::net::SocketAddr, certs: &Certs, writer: WriterConfig) -> Backup {
    Backup::start(
        BackupOptions {
            dir: dir.to_path_buf(),
            follower: follower_config(primary),
            engine: ring(4 << 20),
            writer,
        },
        certs.client.clone(),
    )
    .expect("backup starts")
}

/// Waits until the newest chain of the backup in `dir` covers `offset`
/// with segments from its first snapshot, without a gap.
fn wait_sealed(dir: &Path, offset: u64) {
    wait_until(&format!("the backup to seal offset {offset}"), || {
        let catalog = Catalog::load(dir).expect("catalog");
        catalog
            .chains
            .last()
            .is_some_and(|c| c.ranges().first().is_some_and(|r| r.to >= offset))
    });
}

/// [`workload`] in steps of 100 writes, each sealed before the next, so
/// the backup's snapshots fall at many offsets.
fn paced_workload(dir: &Path, engine: &Engine, rng: &mut Rng, n: usize, points: &mut Vec<Point>) {
    for _ in 0..n.div_ceil(100) {
        workload(engine, rng, 100, points);
        wait_sealed(dir, engine.applied_offset());
    }
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A recorded point: the primary's offset after a write, its digest, and
/// times taken before the write was made and after it returned.
#[derive(Debug, Clone, Copy)]
struct Point {
    offset: u64,
    digest: u64,
    before_ms: u64,
    time_ms: u64,
}

/// `n` random writes of every kind; records each point.
fn workload(engine: &Engine, rng: &mut Rng, n: usize, points: &mut Vec<Point>) {
    let far = now_ms() + 86_400_000;
    for _ in 0..n {
        let k = format!("key:{}", rng.below(150));
        let before_ms = now_ms();
        let r = match rng.below(100) {
            0..=34 => engine.set(&k, vec![b'v'; rng.below(300) as usize + 1]),
            35..=49 => engine
                .hset(
                    format!("hash:{}", rng.below(20)),
                    [(format!("f{}", rng.below(40)), format!("{}", rng.next()))],
                )
                .map(|_| ()),
            50..=59 => engine.incr_by(format!("counter:{}", rng.below(10)), 3).map(|_| ()),
            60..=69 => engine.del([k.as_str()]).map(|_| ()),
            70..=76 => engine.append(&k, "+").map(|_| ()),
            77..=83 => engine.pexpire_at(&k, (far + rng.below(1000)) as i64).map(|_| ()),
            84..=91 => engine.mset([
                (format!("m:{}", rng.below(30)), "a"),
                (format!("m:{}", rng.below(30)), "b"),
            ]),
            92..=96 => engine
                .hdel(format!("hash:{}", rng.below(20)), [format!("f{}", rng.below(40))])
                .map(|_| ()),
            _ => engine.rename_nx(&k, format!("renamed:{}", rng.below(20))).map(|_| ()),
        };
        // A write refused by its own rules (a type error, a missing key)
        // logs nothing: only logged writes are points.
        let Ok(()) = r else { continue };
        let Some(offset) = engine.last_write_offset() else {
            continue;
        };
        if points.last().is_some_and(|p| p.offset == offset) {
            continue;
        }
        points.push(Point {
            offset,
            digest: engine.digest(),
            before_ms,
            time_ms: now_ms(),
        });
    }
}

fn restore_at(
    backup: &Path,
    to: &Path,
    target: Target,
    chain: Option<u64>,
) -> Result<ringkv_examples::backup::Restored, BackupError> {
    restore(
        backup,
        &RestoreOptions {
            target,
            chain,
            to: to.to_path_buf(),
            config: ring(1 << 20),
        },
    )
}

/// Restores each point and checks the digest, the offset, and that the
/// directory opens with `Engine::open` holding the same state.
fn check_points(backup: &Path, scratch: &Path, points: &[Point], chain: Option<u64>) {
    for (i, p) in points.iter().enumerate() {
        let to = scratch.join(format!("restore-{}-{i}", chain.unwrap_or(0)));
        let r = restore_at(backup, &to, Target::Offset(p.offset), chain)
            .unwrap_or_else(|e| panic!("restoring offset {}: {e}", p.offset));
        assert_eq!(
            (r.offset, r.digest),
            (p.offset, p.digest),
            "restored state at offset {}",
            p.offset
        );
        let opened = Engine::open(&to, ring(1 << 20)).expect("the restored directory opens");
        assert_eq!(opened.digest(), p.digest, "reopened state at offset {}", p.offset);
        assert_eq!(opened.log().expect("ring").published(), p.offset);
        drop(opened);
        std::fs::remove_dir_all(&to).expect("clean up");
    }
}

fn sample(points: &[Point], rng: &mut Rng, n: usize) -> Vec<Point> {
    let mut out: Vec<Point> = (0..n)
        .map(|_| points[rng.below(points.len() as u64) as usize])
        .collect();
    out.extend(points.first().copied());
    out.extend(points.last().copied());
    out
}

#[test]
fn restores_at_random_points_equal_the_primary_state_at_that_offset() {
    let certs = certs();
    let tmp = tempfile::tempdir().expect("tmp");
    let engine = Engine::builder()
        .config(ring(8 << 20))
        .anonymous_log()
        .build()
        .expect("primary");
    let primary =
        blocking::Primary::start(engine.clone(), PrimaryConfig::default(), certs.server.clone()).expect("primary");
    let mut rng = Rng(0x5eed_1234);
    let mut points = Vec::new();
    // Writes before the backup starts: its first chain begins later.
    workload(&engine, &mut rng, 100, &mut Vec::new());
    let before = engine.applied_offset();
    let dir = tmp.path().join("backup");
    let backup = start_backup(&dir, primary.local_addr(), &certs, writer_config());
    wait_sealed(&dir, before);
    let base = Catalog::load(&dir).expect("catalog").chains[0].snapshots[0].offset;
    paced_workload(&dir, &engine, &mut rng, 1500, &mut points);
    let last = points.last().copied().expect("points");
    wait_sealed(&dir, last.offset);
    // The last time mark the backup holds: a moment after it is outside
    // what the backup can vouch for (a write it has not received may have
    // come then), even a millisecond later.
    let catalog = Catalog::load(&dir).expect("catalog");
    let chain = catalog.chains.last().expect("a chain");
    let after_all = chain.ranges().last().expect("a restorable range").to_ms;
    backup.stop().expect("stop");

    let catalog = Catalog::load(&dir).expect("catalog");
    assert_eq!(catalog.chains.len(), 1, "{}", catalog.describe());
    let chain = &catalog.chains[0];
    assert!(chain.snapshots.len() >= 3, "periodic snapshots: {}", catalog.describe());
    assert!(chain.segments.len() >= 10, "sealed segments: {}", catalog.describe());
    let ranges = chain.ranges();
    assert_eq!(ranges.len(), 1);
    assert!(ranges[0].from <= base && ranges[0].to >= last.offset, "{ranges:?}");
    assert!(
        catalog.describe().contains("restorable: offsets"),
        "{}",
        catalog.describe()
    );

    let restorable: Vec<Point> = points.iter().copied().filter(|p| p.offset >= base).collect();
    check_points(&dir, tmp.path(), &sample(&restorable, &mut rng, 40), None);

    // At a moment: the state the backup had by then, which is one the
    // primary had at or before that moment (it holds p, and no write that
    // was begun after the moment).
    for p in sample(&restorable, &mut rng, 15) {
        let to = tmp.path().join("at-time");
        let r = restore_at(&dir, &to, Target::Time(p.time_ms), None).expect("restore at a time");
        let begun = points
            .iter()
            .filter(|q| q.before_ms <= p.time_ms)
            .map(|q| q.offset)
            .max();
        assert!(
            Some(r.offset) <= begun,
            "{} past every write begun by then ({begun:?})",
            r.offset
        );
        let expected = points.iter().find(|q| q.offset == r.offset).map(|q| q.digest);
        let expected = expected.or_else(|| (r.offset == base).then_some(r.digest));
        assert_eq!(
            Some(r.digest),
            expected,
            "a time resolves to a recorded point ({})",
            r.offset
        );
        std::fs::remove_dir_all(&to).expect("clean up");
    }
    let to = tmp.path().join("at-end");
    let r = restore_at(&dir, &to, Target::Time(after_all), None).expect("restore at the end");
    assert_eq!((r.offset, r.digest), (last.offset, last.digest));

    // Outside what the backup holds: refused, and no directory is left.
    for target in [
        Target::Offset(last.offset + 8),
        Target::Offset(base.saturating_sub(8)),
        Target::Time(1000),
        Target::Time(after_all + 3_600_000),
    ] {
        let to = tmp.path().join("outside");
        let e = restore_at(&dir, &to, target, None).expect_err("outside");
        assert!(matches!(e, BackupError::OutOfRange(_)), "{target}: {e}");
        assert!(e.to_string().contains("restores offsets"), "{e}");
        assert!(!to.exists());
    }
    // A directory that is not empty is never written into.
    let busy = tmp.path().join("busy");
    std::fs::create_dir_all(&busy).expect("mkdir");
    std::fs::write(busy.join("x"), b"x").expect("write");
    assert!(matches!(
        restore_at(&dir, &busy, Target::Offset(last.offset), None),
        Err(BackupError::Usage(_))
    ));
    assert_eq!(std::fs::read(busy.join("x")).expect("untouched"), b"x");
    primary.shutdown();
}

#[test]
fn wait_and_the_write_gate_never_count_a_backup() {
    let certs = certs();
    let tmp = tempfile::tempdir().expect("tmp");
    let engine = Engine::builder()
        .config(ring(4 << 20))
        .anonymous_log()
        .build()
        .expect("primary");
    let primary =
        blocking::Primary::start(engine.clone(), PrimaryConfig::default(), certs.server.clone()).expect("primary");
    let backup = start_backup(
        &tmp.path().join("backup"),
        primary.local_addr(),
        &certs,
        writer_config(),
    );
    engine.set("k", "v").expect("set");
    let at = engine.last_write_offset().expect("offset");
    assert!(
        backup.engine().wait_applied(at, Duration::from_secs(60)),
        "the backup applies the write"
    );
    wait_until("the backup's ack", || {
        primary.stats().followers.iter().any(|f| f.applied >= at)
    });
    assert_eq!(
        primary.wait_for_followers(at, 1, Duration::from_millis(300)),
        0,
        "WAIT 1 with only a backup"
    );
    // A real follower counts.
    let replica = Engine::builder()
        .config(ring(4 << 20))
        .anonymous_log()
        .build()
        .expect("replica");
    let follower = blocking::Follower::start(replica, FollowerConfig::new(primary.local_addr()), certs.client.clone())
        .expect("follower");
    assert_eq!(primary.wait_for_followers(at, 1, Duration::from_secs(60)), 1);
    assert_eq!(primary.wait_for_followers(at, 2, Duration::from_millis(300)), 1);
    follower.stop();
    backup.stop().expect("stop");
    primary.shutdown();

    // The write gate: a backup alone is not a follower within the budget.
    let engine = Engine::builder()
        .config(ring(4 << 20))
        .anonymous_log()
        .build()
        .expect("primary");
    let config = PrimaryConfig {
        write_gate: Some(WriteGateConfig::default()),
        ..PrimaryConfig::default()
    };
    let primary = blocking::Primary::start(engine.clone(), config, certs.server.clone()).expect("primary");
    let backup = start_backup(
        &tmp.path().join("backup2"),
        primary.local_addr(),
        &certs,
        writer_config(),
    );
    wait_until("the backup online", || {
        backup
            .replication()
            .is_some_and(|r| r.master_link_status == ringkv_replication::LinkStatus::Up)
            && primary.stats().followers.len() == 1
    });
    let e = engine.set("k", "v").expect_err("refused without a follower");
    assert!(e.to_string().contains("0 of the 1"), "{e}");
    backup.stop().expect("stop");
    primary.shutdown();
}

/// A stopped backup of a workload, with its points (all restorable).
fn recorded_backup(tmp: &Path, seed: u64, writes: usize) -> (PathBuf, Vec<Point>) {
    let certs = certs();
    let engine = Engine::builder()
        .config(ring(8 << 20))
        .anonymous_log()
        .build()
        .expect("primary");
    let primary =
        blocking::Primary::start(engine.clone(), PrimaryConfig::default(), certs.server.clone()).expect("primary");
    let dir = tmp.join("backup");
    let backup = start_backup(&dir, primary.local_addr(), &certs, writer_config());
    wait_until("the first chain", || {
        !Catalog::load(&dir).expect("catalog").chains.is_empty()
    });
    let mut points = Vec::new();
    paced_workload(&dir, &engine, &mut Rng(seed), writes, &mut points);
    wait_sealed(&dir, points.last().expect("points").offset);
    backup.stop().expect("stop");
    primary.shutdown();
    (dir, points)
}

fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at as usize] ^= 0x10;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn damaged_segments_and_snapshots_give_clear_errors_and_never_a_wrong_state() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, points) = recorded_backup(tmp.path(), 77, 800);
    let catalog = Catalog::load(&dir).expect("catalog");
    let chain = &catalog.chains[0];
    let last = *points.last().expect("points");
    let to = tmp.path().join("restored");

    // A flipped byte in the body of a segment the restore needs: an error
    // naming the file, and no directory left behind.
    // The last point before the newest snapshot restores from the one
    // before it, through the segments between.
    let newest = chain.snapshots.last().expect("snapshot").offset;
    let target = *points
        .iter()
        .rev()
        .find(|p| p.offset < newest)
        .expect("a point before the newest snapshot");
    let seg = chain
        .segments
        .iter()
        .rev()
        .find(|s| s.start < target.offset && s.end > s.start)
        .expect("a segment before the point");
    let saved = std::fs::read(&seg.path).expect("read");
    flip(&seg.path, (ringkv_examples::backup::segment::HEADER_LEN + 20) as u64);
    let e = restore_at(&dir, &to, Target::Offset(target.offset), None).expect_err("damaged body");
    match &e {
        BackupError::Corrupt { path, .. } => assert_eq!(path, &seg.path, "{e}"),
        other => panic!("expected a damaged segment, got {other}"),
    }
    assert!(!to.exists(), "no directory after a failed restore");
    // Points before the damaged segment still restore, exactly.
    let before: Vec<Point> = points.iter().copied().filter(|p| p.offset <= seg.start).collect();
    check_points(&dir, tmp.path(), &before[before.len().saturating_sub(3)..], None);

    // A damaged trailer: the segment is listed as damaged, and points past
    // it are refused with its name.
    std::fs::write(&seg.path, &saved).expect("repair");
    let len = saved.len() as u64;
    flip(&seg.path, len - 20);
    let catalog = Catalog::load(&dir).expect("catalog");
    assert!(catalog.describe().contains("DAMAGED"), "{}", catalog.describe());
    let e = restore_at(&dir, &to, Target::Offset(target.offset), None).expect_err("damaged trailer");
    assert!(
        matches!(&e, BackupError::OutOfRange(m) if m.contains(&seg.path.display().to_string())),
        "{e}"
    );
    assert!(!to.exists());
    // Cut short: the same.
    std::fs::write(&seg.path, &saved[..saved.len() / 2]).expect("truncate");
    let e = restore_at(&dir, &to, Target::Offset(target.offset), None).expect_err("truncated");
    assert!(matches!(&e, BackupError::OutOfRange(m) if m.contains("damaged")), "{e}");
    std::fs::write(&seg.path, &saved).expect("repair");
    check_points(&dir, tmp.path(), &[target, last], None);

    // A damaged snapshot chunk: the load fails naming the file.
    let snap = chain.snapshots.last().expect("snapshot");
    let saved = std::fs::read(&snap.path).expect("read");
    flip(&snap.path, 100);
    let e = restore_at(&dir, &to, Target::Offset(last.offset), None).expect_err("damaged snapshot");
    assert!(e.to_string().contains(&snap.path.display().to_string()), "{e}");
    assert!(!to.exists());
    // A damaged snapshot header: listed as damaged, not used; an older
    // snapshot still restores the points after it (a longer replay).
    std::fs::write(&snap.path, &saved).expect("repair");
    flip(&snap.path, 20);
    let catalog = Catalog::load(&dir).expect("catalog");
    assert!(catalog.describe().contains("DAMAGED"), "{}", catalog.describe());
    let r = restore_at(&dir, &to, Target::Offset(last.offset), None).expect("from an older snapshot");
    assert_eq!(r.digest, last.digest);
    assert!(r.snapshot_offset < snap.offset);
}

#[test]
fn retention_never_breaks_a_restore_it_still_promises() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, points) = recorded_backup(tmp.path(), 99, 1500);
    let catalog = Catalog::load(&dir).expect("catalog");
    let snaps = catalog.chains[0].snapshots.clone();
    assert!(snaps.len() >= 4, "{}", catalog.describe());
    let last = *points.last().expect("points");

    // By age: the window starts just after the second snapshot, so it
    // is the base; older snapshots and the segments only they need go.
    let base = &snaps[1];
    let max_age = Duration::from_secs(3600);
    let now = base.created_ms + 1 + max_age.as_millis() as u64;
    let config = RetentionConfig {
        max_age: Some(max_age),
        max_bytes: None,
    };
    let removed = retention::apply(&catalog, &config, now).expect("retention");
    assert!(!removed.paths.is_empty());
    let after = Catalog::load(&dir).expect("catalog");
    let chain = &after.chains[0];
    assert_eq!(chain.snapshots.first().map(|s| s.offset), Some(base.offset));
    assert!(chain.segments.iter().all(|s| s.end > base.offset));
    assert_eq!(chain.ranges()[0].from, base.offset);
    let kept: Vec<Point> = points.iter().copied().filter(|p| p.offset >= base.offset).collect();
    check_points(&dir, tmp.path(), &sample(&kept, &mut Rng(5), 12), None);
    // Older points are refused, not restored wrong.
    let gone = points.iter().find(|p| p.offset < base.offset).expect("an older point");
    assert!(matches!(
        restore_at(&dir, &tmp.path().join("gone"), Target::Offset(gone.offset), None),
        Err(BackupError::OutOfRange(_))
    ));

    // By size: the oldest stretches go until it fits; every listed point
    // still restores, and the newest state always does.
    let before = after.bytes();
    let config = RetentionConfig {
        max_age: None,
        max_bytes: Some(before / 2),
    };
    retention::apply(&after, &config, now).expect("retention");
    let small = Catalog::load(&dir).expect("catalog");
    let chain = &small.chains[0];
    assert!(
        small.bytes() <= before / 2 || chain.snapshots.len() == 1,
        "{}",
        small.describe()
    );
    assert!(chain.snapshots.len() < after.chains[0].snapshots.len());
    let range = chain.ranges()[0].clone();
    assert!(range.to >= last.offset);
    let listed: Vec<Point> = points.iter().copied().filter(|p| p.offset >= range.from).collect();
    check_points(&dir, tmp.path(), &sample(&listed, &mut Rng(6), 12), None);
    // A limit below what the newest snapshot needs keeps the newest state.
    let config = RetentionConfig {
        max_age: None,
        max_bytes: Some(1),
    };
    retention::apply(&small, &config, now).expect("retention");
    let tiny = Catalog::load(&dir).expect("catalog");
    assert_eq!(tiny.chains[0].snapshots.len(), 1);
    check_points(&dir, tmp.path(), &[last], None);
}

#[test]
fn the_backup_follows_primary_restarts_a_full_sync_and_its_own_restart() {
    let certs = certs();
    let tmp = tempfile::tempdir().expect("tmp");
    let pdir = tmp.path().join("primary");
    let dir = tmp.path().join("backup");
    let mut rng = Rng(4242);
    let mut points = Vec::new();

    let engine = Engine::open(&pdir, ring(8 << 20)).expect("primary");
    let primary =
        blocking::Primary::start(engine.clone(), PrimaryConfig::default(), certs.server.clone()).expect("primary");
    let addr = primary.local_addr();
    let backup = start_backup(&dir, addr, &certs, writer_config());
    wait_until("the first chain", || {
        !Catalog::load(&dir).expect("catalog").chains.is_empty()
    });
    paced_workload(&dir, &engine, &mut rng, 300, &mut points);

    // The primary restarts on its data directory: same history, the backup
    // continues the same chain by offset.
    primary.shutdown();
    engine.close();
    let engine = Engine::open(&pdir, ring(8 << 20)).expect("primary reopens");
    let config = PrimaryConfig {
        listen: addr,
        ..PrimaryConfig::default()
    };
    let primary = blocking::Primary::start(engine.clone(), config.clone(), certs.server.clone()).expect("primary");
    paced_workload(&dir, &engine, &mut rng, 300, &mut points);
    wait_sealed(&dir, points.last().expect("points").offset);
    assert_eq!(
        Catalog::load(&dir).expect("catalog").chains.len(),
        1,
        "a restart of the same history"
    );
    let first_history = points.clone();

    // The backup itself restarts while writes go on: it resumes the chain.
    backup.stop().expect("stop");
    workload(&engine, &mut rng, 200, &mut points);
    let backup = start_backup(&dir, addr, &certs, writer_config());
    workload(&engine, &mut rng, 100, &mut points);
    wait_sealed(&dir, points.last().expect("points").offset);
    assert_eq!(
        Catalog::load(&dir).expect("catalog").chains.len(),
        1,
        "resumed by offset"
    );
    let first_history_all = points.clone();

    // A primary that lost its data: a new history, the backup full-syncs
    // and starts a new chain; the old one stays whole.
    primary.shutdown();
    engine.close();
    std::fs::remove_dir_all(&pdir).expect("lose the primary's data");
    let engine = Engine::open(&pdir, ring(8 << 20)).expect("a new primary");
    let primary = blocking::Primary::start(engine.clone(), config, certs.server.clone()).expect("primary");
    let mut second = Vec::new();
    workload(&engine, &mut rng, 300, &mut second);
    wait_until("a second chain", || {
        Catalog::load(&dir).expect("catalog").chains.len() == 2
    });
    let chain2 = Catalog::load(&dir).expect("catalog").chains[1].snapshots[0].offset;
    paced_workload(&dir, &engine, &mut rng, 200, &mut second);
    wait_sealed(&dir, second.last().expect("points").offset);
    backup.stop().expect("stop");
    primary.shutdown();

    let catalog = Catalog::load(&dir).expect("catalog");
    assert_eq!(catalog.chains.len(), 2, "{}", catalog.describe());
    let ids = (catalog.chains[0].id, catalog.chains[1].id);
    check_points(&dir, tmp.path(), &sample(&first_history, &mut rng, 6), Some(ids.0));
    check_points(&dir, tmp.path(), &sample(&first_history_all, &mut rng, 6), Some(ids.0));
    let in_chain2: Vec<Point> = second.iter().copied().filter(|p| p.offset >= chain2).collect();
    check_points(&dir, tmp.path(), &sample(&in_chain2, &mut rng, 8), Some(ids.1));
    // Without a chain, an offset resolves in the newest chain holding it.
    let p = *second.last().expect("points");
    let r = restore_at(&dir, &tmp.path().join("newest"), Target::Offset(p.offset), None).expect("restore");
    assert_eq!((r.chain, r.digest), (ids.1, p.digest));
}

/// The binaries end to end: `ringkv-primary`, `ringkv-backup` beside it
/// (SIGTERM seals and exits 0), `ringkv-restore --list` and `--at`, and
/// `ringkv-primary` serving the restored directory.
#[test]
fn the_binaries_back_up_restore_and_serve_the_restored_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut primary = common::Proc::start("ringkv-primary", tmp.path(), &["--repl-listen", "127.0.0.1:0"]);
    let repl = primary.repl.expect("replication address").to_string();
    let mut c = primary.client();
    let _: () = redis::cmd("SET").arg("before").arg("1").query(&mut c).expect("set");
    let mut backup = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv-backup"))
        .current_dir(tmp.path())
        .args([
            "--primary",
            &repl,
            "--segment-secs",
            "0",
            "--idle-segment-secs",
            "1",
            "--ring-mb",
            "4",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ringkv-backup");
    let list = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv-restore"))
            .current_dir(tmp.path())
            .arg("--list")
            .output()
            .expect("ringkv-restore --list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until("a chain", || list().contains("restorable"));
    let _: () = redis::cmd("SET").arg("k").arg("v1").query(&mut c).expect("set");
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("x")
        .query(&mut c)
        .expect("hset");
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c).expect("info");
    let offset: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("master_repl_offset");
    wait_until("the backup to seal the writes", || {
        list().lines().any(|l| {
            l.trim()
                .strip_prefix("restorable: offsets ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|r| r.split("..=").nth(1))
                .and_then(|e| e.parse::<u64>().ok())
                .is_some_and(|e| e >= offset)
        })
    });
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v2")
        .query(&mut c)
        .expect("a later write");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &backup.id().to_string()])
        .status();
    let status = backup.wait().expect("ringkv-backup exits");
    assert_eq!(status.code(), Some(0));
    primary.stop();

    let restored = tmp.path().join("restored");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv-restore"))
        .current_dir(tmp.path())
        .args(["--at", &offset.to_string(), "--to"])
        .arg(&restored)
        .output()
        .expect("ringkv-restore");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("at offset {offset}")));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv-restore"))
        .current_dir(tmp.path())
        .args(["--at", "unix:1000", "--to", "nowhere"])
        .output()
        .expect("ringkv-restore");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not restorable"));

    let served = common::Proc::start(
        "ringkv-primary",
        tmp.path(),
        &[
            "--dir",
            restored.to_str().expect("utf-8"),
            "--repl-listen",
            "127.0.0.1:0",
        ],
    );
    let mut c = served.client();
    let k: String = redis::cmd("GET").arg("k").query(&mut c).expect("get");
    let f: String = redis::cmd("HGET").arg("h").arg("f").query(&mut c).expect("hget");
    let b: String = redis::cmd("GET").arg("before").query(&mut c).expect("get");
    assert_eq!((k.as_str(), f.as_str(), b.as_str()), ("v1", "x", "1"));
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("after-restore")
        .query(&mut c)
        .expect("takes writes");
}
