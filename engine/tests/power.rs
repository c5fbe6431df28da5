//! Power loss: what the ring file holds after the machine loses power, as
//! the power-cut simulation (`ringkv::internals::power`) produces it — the
//! file as of the last completed msyncs, plus any subset of the pages
//! written since.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ringkv::internals::power::{self, PowerTracker};
use ringkv::internals::RingLogWriter;
use ringkv::log::{record, LogConfig, RingLog};

const CAP: u64 = 1 << 20;

fn config() -> LogConfig {
    LogConfig {
        capacity: CAP,
        ..LogConfig::default()
    }
}

/// A tracked ring path in a fresh directory.
struct Tracked {
    dir: tempfile::TempDir,
    path: PathBuf,
    tracker: std::sync::Arc<PowerTracker>,
}

impl Tracked {
    fn new() -> Tracked {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(power::RING_FILE);
        let tracker = power::track(&path);
        Tracked { dir, path, tracker }
    }

    fn image(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        power::untrack(&self.path);
    }
}

fn records(ring: &RingLog) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = ring.oldest();
    while pos < ring.published() {
        let batch = ring.read(pos, 1 << 20).expect("read");
        out.extend(batch.records.into_iter().map(|(o, p)| (o, p.to_vec())));
        pos = batch.next;
    }
    out
}

fn damage(path: &Path, offset: u64) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for damage");
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, 4096 + offset).expect("read byte");
    b[0] ^= 0x5a;
    file.write_all_at(&b, 4096 + offset).expect("damage");
    file.sync_all().expect("fsync");
}

/// F2: a ring reopened (after a process exit, no power loss) must not take
/// the bytes the earlier process never msynced as durable: the next sync
/// flushes them too, so a power cut after it keeps every record.
#[test]
fn a_sync_after_reopening_makes_the_earlier_unflushed_records_durable() {
    let t = Tracked::new();
    let ring = RingLog::create(&t.path, config()).expect("create");
    // A record over several pages, never synced.
    let a = vec![0xa5u8; 20_000];
    ring.append(&a).expect("append a");
    let end_a = ring.published();
    drop(ring);

    let ring = RingLog::open(&t.path, config()).expect("reopen");
    assert_eq!(ring.published(), end_a);
    let claimed = (ring.synced(), ring.header().synced);
    ring.append(b"b").expect("append b");
    ring.sync().expect("sync");
    let durable = ring.synced();
    assert_eq!(durable, ring.published());

    // The power goes: nothing written after the last flushes survives.
    let img = t.image("cut.log");
    t.tracker.cut_with(&img, |_| false).expect("power cut");
    let back = RingLog::open(&img, config()).expect("the cut image opens");
    assert!(
        back.published() >= durable,
        "lost synced records: {} < {durable}",
        back.published()
    );
    let got = records(&back);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, a);
    assert_eq!(got[1].1, b"b");
    assert!(
        claimed.0 <= claimed.1,
        "the reopened ring claimed {} durable, but only {} was msynced",
        claimed.0,
        claimed.1
    );
}

/// F3: records past the durable hint are written back in any order, so a
/// damaged record there followed by a valid one is a torn tail: the ring
/// opens with everything before it, reports the cut, and the records it cut
/// never come back, even once new records end exactly where one of them
/// starts.
#[test]
fn damage_past_the_durable_hint_is_a_torn_tail_whose_records_never_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ring.log");
    let ring = RingLog::create(&path, config()).expect("create");
    ring.append(b"a-durable").expect("append a");
    ring.sync().expect("sync");
    let synced = ring.synced();
    let b_payload = vec![b'b'; 100];
    let b = ring.append(&b_payload).expect("append b");
    let c = ring.append(b"c-stale").expect("append c");
    ring.append(b"c2-stale").expect("append c2");
    assert_eq!(ring.header().synced, synced);
    assert_eq!(b, synced);
    let b_len = record::record_len(b_payload.len());
    assert_eq!(c, b + b_len);
    drop(ring);

    // B's payload is damaged (its page reached the disk half written); C
    // and its successor reached the disk whole.
    damage(&path, b + record::HEADER_LEN as u64 + 10);
    let ring = RingLog::open(&path, config()).expect("a torn tail past the durable hint opens");
    assert_eq!(
        ring.published(),
        b,
        "everything before the damage is kept, nothing after it"
    );
    assert!(ring.torn_bytes() >= b_len, "torn bytes reported: {}", ring.torn_bytes());
    assert_eq!(records(&ring).len(), 1);

    // New records D1 and D2 end exactly where C starts.
    let d1 = vec![b'd'; 40];
    let d2 = vec![b'e'; (b_len - record::record_len(d1.len())) as usize - record::HEADER_LEN];
    ring.append(&d1).expect("append d1");
    ring.append(&d2).expect("append d2");
    assert_eq!(ring.published(), c, "the test needs D2 to end where C starts");
    drop(ring);

    let ring = RingLog::open(&path, config()).expect("reopen");
    let got: Vec<Vec<u8>> = records(&ring).into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        got,
        vec![b"a-durable".to_vec(), d1, d2],
        "a record of the cut tail came back"
    );
    assert_eq!(ring.published(), c);
}

/// Below the durable hint, damage is corruption: a clear error naming the
/// offset, never a silent cut.
#[test]
fn damage_below_the_durable_hint_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ring.log");
    let ring = RingLog::create(&path, config()).expect("create");
    let a = ring.append(b"first").expect("append");
    ring.append(b"second").expect("append");
    ring.sync().expect("sync");
    drop(ring);
    damage(&path, a + record::HEADER_LEN as u64);
    let err = RingLog::open(&path, config()).expect_err("damage below synced");
    assert!(
        matches!(err, ringkv::log::LogError::Corrupt { offset, .. } if offset == a),
        "{err}"
    );
}

// ----- the power-cut proptest ------------------------------------------------

mod workload {
    use std::sync::atomic::{AtomicU64, Ordering};

    use proptest::prelude::*;
    use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
    use ringkv::{Config, Durability, Engine, LogConfig, SnapshotConfig};

    use super::Tracked;

    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, usize),
        HSet(u8, u8, usize),
        Del(u8),
        Incr(u8, i64),
        /// `Engine::sync` (what the everysec timer does, or any caller).
        Sync,
        /// The process exits without a power loss, and the directory is opened again.
        Reopen,
        /// The power goes now (the workload goes on from the live state).
        Cut(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u8..24, 0usize..3000).prop_map(|(k, n)| Op::Set(k, n)),
            6 => (0u8..6, 0u8..40, 0usize..600).prop_map(|(k, f, n)| Op::HSet(k, f, n)),
            3 => (0u8..24).prop_map(Op::Del),
            4 => (0u8..6, -50i64..50).prop_map(|(k, d)| Op::Incr(k, d)),
            2 => Just(Op::Sync),
            1 => Just(Op::Reopen),
            1 => any::<u64>().prop_map(Op::Cut),
        ]
    }

    fn durability() -> impl Strategy<Value = Durability> {
        prop_oneof![
            Just(Durability::Always),
            Just(Durability::Everysec),
            Just(Durability::None)
        ]
    }

    fn config(durability: Durability) -> Config {
        Config {
            shards: 4,
            active_expire: false,
            log: LogConfig {
                capacity: 4 << 20,
                durability,
                ..LogConfig::default()
            },
            snapshot: SnapshotConfig {
                save: Vec::new(),
                ..SnapshotConfig::default()
            },
            ..Config::default()
        }
    }

    /// Runs one write on `e`; `Ok(false)` for ops that write nothing.
    fn write(e: &Engine, op: &Op, i: usize) -> ringkv::Result<bool> {
        match *op {
            Op::Set(k, n) => e.set(format!("k{k}"), format!("{i}-{}", "v".repeat(n))).map(|_| true),
            Op::HSet(k, f, n) => e
                .hset(format!("h{k}"), [(format!("f{f}"), format!("{i}-{}", "w".repeat(n)))])
                .map(|_| true),
            Op::Del(k) => e.del([format!("k{k}")]).map(|_| true),
            Op::Incr(k, d) => e.incr_by(format!("c{k}"), d).map(|_| true),
            Op::Sync | Op::Reopen | Op::Cut(_) => Ok(false),
        }
    }

    static CUTS: AtomicU64 = AtomicU64::new(0);

    /// Cuts the power now and checks the image: it opens, and its state is
    /// the state after some prefix of the writes with at least `durable`
    /// of them (`digests[n]` is the model's digest after `n` writes).
    fn check_cut(
        t: &Tracked,
        seed: u64,
        durability: Durability,
        digests: &[u64],
        durable: usize,
    ) -> Result<(), TestCaseError> {
        let dir = tempfile::tempdir().expect("image dir");
        let cut = t
            .tracker
            .cut(&dir.path().join(ringkv::internals::power::RING_FILE), seed)
            .expect("power cut");
        CUTS.fetch_add(1, Ordering::Relaxed);
        let e = Engine::open(dir.path(), config(durability)).map_err(|e| {
            TestCaseError::fail(format!("the power-cut image ({cut:?}, seed {seed}) does not open: {e}"))
        })?;
        let want = e.digest();
        e.close();
        let found = (durable..digests.len()).find(|&n| digests[n] == want);
        prop_assert!(
            found.is_some(),
            "after a power cut ({cut:?}, seed {seed}) the state is no prefix of the {} writes with the {durable} durable ones",
            digests.len() - 1
        );
        Ok(())
    }

    fn run(ops: &[Op], durability: Durability) -> Result<(), TestCaseError> {
        let t = Tracked::new();
        let dir = t.path.parent().expect("dir").to_path_buf();
        let model = Engine::new(Config {
            shards: 4,
            active_expire: false,
            ..Config::default()
        })
        .expect("model");
        let mut digests = vec![model.digest()];
        // Writes that must survive a power cut: every one acknowledged
        // under `always`, every one before the last completed sync.
        let mut durable = 0;
        let mut e = Engine::open(&dir, config(durability)).expect("open");
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Sync => {
                    e.sync().expect("sync");
                    durable = digests.len() - 1;
                }
                Op::Reopen => {
                    e.close();
                    e = Engine::open(&dir, config(durability))
                        .map_err(|err| TestCaseError::fail(format!("reopening after a clean exit: {err}")))?;
                }
                Op::Cut(seed) => check_cut(&t, *seed, durability, &digests, durable)?,
                _ => {
                    if write(&e, op, i).expect("write") {
                        write(&model, op, i).expect("model write");
                        digests.push(model.digest());
                        if durability == Durability::Always {
                            durable = digests.len() - 1;
                        }
                    }
                }
            }
        }
        // And at the end, a few cuts of the final state.
        for seed in 0..5 {
            check_cut(&t, seed * 7 + ops.len() as u64, durability, &digests, durable)?;
        }
        e.close();
        Ok(())
    }

    /// Random workloads, durability modes and power cuts: every image opens,
    /// keeps every durable write, and holds a prefix of the writes. Cases:
    /// `PROPTEST_CASES` (default 24).
    #[test]
    fn power_cuts_keep_a_prefix_with_every_durable_write() {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(24);
        let started = std::time::Instant::now();
        let mut runner = TestRunner::new(RunnerConfig {
            cases,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        let result = runner.run(
            &(proptest::collection::vec(op(), 100..400), durability()),
            |(ops, durability)| run(&ops, durability),
        );
        println!(
            "power cuts simulated: {} in {cases} cases, {:.1?}",
            CUTS.load(Ordering::Relaxed),
            started.elapsed()
        );
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
