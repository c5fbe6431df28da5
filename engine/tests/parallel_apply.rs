//! The parallel apply (`services/parallel_apply.rs`) against the
//! sequential one (`apply_threads = 1`): a primary's stream of random
//! writes (single-key runs, multi-shard batches, renames, MSET, FLUSHALL)
//! replayed by followers on 1, 2 and 4 threads must leave equal state at
//! every applied offset they publish; the applied offset is never ahead of
//! what is applied while readers watch; a snapshot cut on a follower
//! applying in parallel holds exactly the state at its offset; a record
//! that does not apply fails at the same offset with the same state; and
//! recovery replaying the ring in parallel equals a sequential one.

use std::sync::atomic::{AtomicBool, Ordering};

mod support;

use proptest::prelude::*;
use ringkv::batch::WriteBatch;
use ringkv::{Config, Engine, Error, LogConfig, Mutation, Role};

const KEYS: usize = 64;

fn config(threads: usize) -> Config {
    Config {
        shards: 16,
        hash_seed: Some(11),
        active_expire: false,
        apply_threads: threads,
        log: LogConfig {
            capacity: 64 << 20,
            ..LogConfig::default()
        },
        ..Config::default()
    }
}

fn primary() -> Engine {
    Engine::builder()
        .config(config(1))
        .anonymous_log()
        .build()
        .expect("primary")
}

fn follower(threads: usize) -> Engine {
    let f = Engine::builder()
        .config(config(threads))
        .anonymous_log()
        .build()
        .expect("follower");
    f.set_role(Role::Follower).expect("follower role");
    f
}

fn key(i: usize) -> String {
    format!("k{}", i % KEYS)
}

/// One write on the primary.
#[derive(Debug, Clone)]
enum Op {
    Set(usize, u16),
    Append(usize, u16),
    Incr(usize),
    HSet(usize, u8, u16),
    HDel(usize, u8),
    ExpireAt(usize, bool),
    Persist(usize),
    Del(Vec<usize>),
    Rename(usize, usize),
    Mset(Vec<(usize, u16)>),
    Batch(Vec<(usize, u16)>),
    Flush,
}

fn single() -> impl Strategy<Value = Op> {
    let k = 0..KEYS;
    prop_oneof![
        4 => (k.clone(), any::<u16>()).prop_map(|(k, v)| Op::Set(k, v)),
        1 => (k.clone(), any::<u16>()).prop_map(|(k, v)| Op::Append(k, v)),
        1 => k.clone().prop_map(Op::Incr),
        3 => (k.clone(), 0..8u8, any::<u16>()).prop_map(|(k, f, v)| Op::HSet(k, f, v)),
        1 => (k.clone(), 0..8u8).prop_map(|(k, f)| Op::HDel(k, f)),
        1 => (k.clone(), any::<bool>()).prop_map(|(k, past)| Op::ExpireAt(k, past)),
        1 => k.clone().prop_map(Op::Persist),
        1 => k.prop_map(|k| Op::Del(vec![k])),
    ]
}

fn multi() -> impl Strategy<Value = Op> {
    let k = 0..KEYS;
    prop_oneof![
        3 => proptest::collection::vec(k.clone(), 2..5).prop_map(Op::Del),
        3 => (k.clone(), k.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => proptest::collection::vec((k.clone(), any::<u16>()), 2..5).prop_map(Op::Mset),
        2 => proptest::collection::vec((k, any::<u16>()), 1..5).prop_map(Op::Batch),
        1 => Just(Op::Flush),
    ]
}

/// Runs of single-key writes (long enough to apply on several threads)
/// separated by writes over several shards.
fn workload() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(single(), 0..700),
            proptest::collection::vec(multi(), 0..3),
        ),
        1..6,
    )
    .prop_map(|blocks| {
        blocks
            .into_iter()
            .flat_map(|(run, barriers)| run.into_iter().chain(barriers))
            .collect()
    })
}

/// Applies `op` on the primary (refused writes, such as RENAME of a
/// missing key or APPEND to a hash, log nothing).
fn write(p: &Engine, op: &Op) {
    let _ = match op {
        Op::Set(k, v) => p.set(key(*k), format!("v{v}")).map(|_| ()),
        Op::Append(k, v) => p.append(key(*k), format!("+{v}")).map(|_| ()),
        Op::Incr(k) => p.incr(key(*k)).map(|_| ()),
        Op::HSet(k, f, v) => p.hset(key(*k), [(format!("f{f}"), format!("{v}"))]).map(|_| ()),
        Op::HDel(k, f) => p.hdel(key(*k), [format!("f{f}")]).map(|_| ()),
        Op::ExpireAt(k, past) => {
            let at = if *past { 1_000 } else { 4_000_000_000_000 };
            p.pexpire_at(key(*k), at).map(|_| ())
        }
        Op::Persist(k) => p.persist(key(*k)).map(|_| ()),
        Op::Del(ks) => p.del(ks.iter().map(|k| key(*k))).map(|_| ()),
        Op::Rename(a, b) => p.rename(key(*a), key(*b)),
        Op::Mset(pairs) => p.mset(pairs.iter().map(|(k, v)| (key(*k), format!("m{v}")))),
        Op::Batch(pairs) => {
            let mut b = WriteBatch::new();
            for (k, v) in pairs {
                b.set(key(*k), format!("b{v}"));
                b.append(key(k + 1), "!");
            }
            p.write_batch(b).map(|_| ())
        }
        Op::Flush => p.flush(),
    };
}

/// What a reader sees of every key: type, value or sorted fields, expiry.
fn state(e: &Engine) -> Vec<String> {
    support::reader_view(e, (0..KEYS).map(key))
}

/// Feeds `f` the primary's stream from its end, in batches of at most
/// `step` bytes, through the stream path or the ring path; returns the
/// applied offset after each batch.
fn feed(p: &Engine, f: &Engine, step: usize, ring_path: bool, mut after: impl FnMut(u64)) {
    let (pl, fl) = (p.log().expect("log"), f.log().expect("log"));
    while fl.published() < pl.published() {
        let batch = pl.read_stream(fl.published(), step).expect("read stream");
        f.replica_append(batch.start, &batch.bytes).expect("append");
        let applied = if ring_path {
            f.replica_replay_ring(u64::MAX).expect("replay ring")
        } else {
            f.replica_replay_stream(batch.start, &batch.bytes)
                .expect("replay stream")
        };
        assert_eq!(applied, fl.published(), "applied offset is the end of the last record");
        assert_eq!(f.applied_offset(), applied);
        after(applied);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Followers on 2 and 4 threads equal a sequential one at every
    /// applied offset they publish, and the primary at the end.
    #[test]
    fn parallel_replay_equals_sequential(ops in workload(), step_pick in 0..4usize, ring_path in any::<bool>()) {
        let step = [600, 16 << 10, 256 << 10, 4 << 20][step_pick];
        let p = primary();
        for op in &ops {
            write(&p, op);
        }
        let seq = follower(1);
        let mut at = Vec::new();
        feed(&p, &seq, step, ring_path, |applied| at.push((applied, seq.digest(), state(&seq))));
        for threads in [2, 4] {
            let par = follower(threads);
            let mut i = 0;
            feed(&p, &par, step, ring_path, |applied| {
                let (offset, digest, st) = &at[i];
                assert_eq!(applied, *offset);
                assert_eq!(par.digest(), *digest, "digest at offset {applied}, {threads} threads");
                assert_eq!(&state(&par), st, "state at offset {applied}, {threads} threads");
                i += 1;
            });
            prop_assert_eq!(i, at.len());
            prop_assert_eq!(par.digest(), p.digest());
            prop_assert_eq!(state(&par), state(&p));
        }
    }
}

/// A reader polling the applied offset while records apply on two threads
/// always finds every record below it applied, and only record boundaries.
#[test]
fn applied_offset_is_never_ahead_of_the_applied_records() {
    let p = primary();
    let n = 40_000usize;
    let mut ends = Vec::with_capacity(n);
    for i in 0..n {
        p.set(format!("w{i}"), format!("{i}")).expect("set");
        ends.push(p.last_write_offset().expect("offset"));
    }
    let f = follower(2);
    let done = AtomicBool::new(false);
    let checks = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut last, mut checks) = (0u64, 0u64);
            loop {
                let finished = done.load(Ordering::Acquire);
                let a = f.applied_offset();
                assert!(a >= last, "the applied offset went back from {last} to {a}");
                last = a;
                if a > 0 {
                    let j = ends.binary_search(&a).expect("the applied offset is a record's end");
                    // Every record below the offset is visible: the last
                    // one and a spread of earlier ones.
                    for i in [j, j / 2, j / 3, j.saturating_sub(1)] {
                        let v = f.get(format!("w{i}")).expect("get");
                        assert_eq!(v.as_deref(), Some(i.to_string().as_bytes()), "w{i} below applied {a}");
                    }
                    checks += 1;
                }
                if finished {
                    return checks;
                }
                std::thread::yield_now();
            }
        });
        feed(&p, &f, 64 << 10, false, |_| {});
        done.store(true, Ordering::Release);
        reader.join().expect("reader")
    });
    assert!(checks > 0);
    assert_eq!(f.applied_offset(), *ends.last().expect("ends"));
    assert_eq!(f.digest(), p.digest());
}

/// Snapshots cut on a follower while it applies on two threads each hold
/// exactly the sequential state at their offset (the cut waits for the
/// segment in flight).
#[test]
fn snapshot_cut_during_parallel_apply_holds_the_state_at_its_offset() {
    let p = primary();
    for i in 0..60_000usize {
        // After an MSET made it a string, HSET is refused (logs nothing).
        let _ = p.hset(format!("h{}", i % 500), [(format!("f{}", i % 7), format!("{i}"))]);
        if i % 5_000 == 4_999 {
            p.mset([(format!("h{}", i % 500), "s"), (format!("x{i}"), "t")])
                .expect("mset");
        }
    }
    let f = follower(2);
    let done = AtomicBool::new(false);
    let snaps = std::thread::scope(|s| {
        let cutter = s.spawn(|| {
            let mut snaps = Vec::new();
            while !done.load(Ordering::Acquire) {
                let (bytes, info) = f.snapshot_to(Vec::new()).expect("snapshot");
                snaps.push((info.offset, bytes));
            }
            snaps
        });
        feed(&p, &f, 128 << 10, false, |_| {});
        done.store(true, Ordering::Release);
        cutter.join().expect("cutter")
    });
    assert!(!snaps.is_empty());
    // The sequential state at each snapshot's offset.
    let seq = follower(1);
    let pl = p.log().expect("log");
    let all = pl.read_stream(0, usize::MAX).expect("stream");
    seq.replica_append(all.start, &all.bytes).expect("append");
    let mut checked = 0;
    let mut snaps = snaps;
    snaps.sort_by_key(|(o, _)| *o);
    for (offset, bytes) in snaps {
        seq.replica_replay_ring(offset).expect("replay");
        assert_eq!(seq.applied_offset(), offset, "snapshot offsets are record boundaries");
        let loaded = Engine::new(config(1)).expect("engine");
        loaded.load_snapshot(&bytes[..]).expect("load");
        assert_eq!(loaded.digest(), seq.digest(), "snapshot at offset {offset}");
        checked += 1;
    }
    assert!(checked > 0);
}

/// A follower whose state differs from the primary's (a hash where the
/// primary has nothing) meets an APPEND it cannot apply in the middle of
/// a long run: on two threads as on one, the error names that record's
/// offset, the applied offset stops there, and the state is the same
/// (records after it, applied on the other thread, are rolled back).
#[test]
fn a_record_that_does_not_apply_fails_as_sequentially() {
    let p = primary();
    for i in 0..1_500usize {
        p.set(key(i), format!("a{i}")).expect("set");
    }
    let bad_at = p.log().expect("log").published();
    p.append("div", "x").expect("append");
    for i in 0..1_500usize {
        p.set(key(i * 7), format!("b{i}")).expect("set");
        p.append(format!("t{}", i % 9), "y").expect("append");
    }
    let stream = p.log().expect("log").read_stream(0, usize::MAX).expect("stream");
    let mut outcomes = Vec::new();
    for (threads, ring_path) in [(1, false), (2, false), (1, true), (2, true)] {
        let f = follower(threads);
        f.replay(&Mutation::HSet {
            key: "div".into(),
            fields: vec![("f".into(), "v".into())],
        })
        .expect("diverge");
        f.replica_append(stream.start, &stream.bytes).expect("append");
        let err = if ring_path {
            f.replica_replay_ring(u64::MAX)
        } else {
            f.replica_replay_stream(stream.start, &stream.bytes)
        }
        .expect_err("the APPEND to a hash is rejected");
        let Error::RecordRejected { offset, .. } = err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(offset, bad_at, "{threads} threads");
        assert_eq!(f.applied_offset(), bad_at, "{threads} threads");
        outcomes.push((f.digest(), state(&f), format!("{err}")));
    }
    for o in &outcomes[1..] {
        assert_eq!(o, &outcomes[0]);
    }
}

/// Opening a data directory replays its ring on two threads into the
/// same state as on one, with the same counts.
#[test]
fn recovery_replays_the_ring_in_parallel_as_sequentially() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let p = Engine::open(dir.path(), config(1)).expect("open");
        for i in 0..30_000usize {
            p.set(format!("r{}", i % 5_000), format!("{i}")).expect("set");
            p.hset(format!("rh{}", i % 1_000), [(format!("f{}", i % 8), format!("{i}"))])
                .expect("hset");
            if i % 3_000 == 0 {
                write(&p, &Op::Rename(i, i + 1));
                write(&p, &Op::Mset(vec![(i, 1), (i + 5, 2)]));
            }
        }
        p.close();
    }
    let mut seen = Vec::new();
    for threads in [1, 2, 4] {
        let e = Engine::open(dir.path(), config(threads)).expect("reopen");
        let log = e.stats().log.expect("log stats");
        seen.push((e.digest(), state(&e), (log.recovered_records, log.recovered_bytes)));
        e.close();
    }
    assert!(seen[0].2 .0 > 50_000, "{:?}", seen[0].2);
    for s in &seen[1..] {
        assert_eq!(s, &seen[0]);
    }
}
