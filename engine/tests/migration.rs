//! What a slot migration rests on, checked in the engine: a filtered
//! snapshot cut while writers go on, imported into another engine as its
//! own writes, plus the source's log from the snapshot's offset (filtered
//! the same way, imported in order), equals the source's state of those
//! keys, whatever the interleaving (proptest over random writers); keys
//! outside the filter never reach the target. `Engine::import` is logged on
//! the target and refuses what does not fit; a hold of the active expiry
//! keeps imported keys until the source's deletion arrives.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use ringkv::snapshot::format::{Item, SnapshotReader};
use ringkv::{Config, DeleteReason, Engine, ManualClock, MemorySink, Mutation};

fn config() -> Config {
    Config {
        shards: 4,
        hash_seed: Some(3),
        active_expire: false,
        ..Config::default()
    }
}

/// Keys `k0..k{n}` and hashes `h0..h{n}`; the filter keeps those whose
/// number is even.
fn kept(key: &[u8]) -> bool {
    key.last().is_some_and(|d| (d - b'0').is_multiple_of(2))
}

fn names(n: usize) -> Vec<String> {
    (0..n).flat_map(|i| [format!("k{i}"), format!("h{i}")]).collect()
}

/// One writer step over a small keyspace.
fn step(e: &Engine, op: u8, i: usize, round: usize) {
    let k = format!("k{}", i % 10);
    let h = format!("h{}", i % 10);
    let _ = match op % 7 {
        0 => e.set(&k, format!("v{round}")).map(|_| ()),
        1 => e.append(&k, "+").map(|_| ()),
        2 => e
            .hset(&h, [(format!("f{}", round % 5), format!("{round}"))])
            .map(|_| ()),
        3 => e.hdel(&h, [format!("f{}", round % 5)]).map(|_| ()),
        4 => e.del([&k, &h]).map(|_| ()),
        5 => e.pexpire_at(&k, 4_000_000_000_000 + round as i64).map(|_| ()),
        _ => e.incr(format!("k{}", (i % 5) * 2)).map(|_| ()),
    };
}

/// The target gets the snapshot's items as mutations, hash expiries last.
fn import_snapshot(target: &Engine, bytes: &[u8]) -> u64 {
    let mut reader = SnapshotReader::new(bytes).expect("header");
    let offset = reader.header().offset;
    let mut heads = Vec::new();
    while let Some(items) = reader.next_chunk().expect("chunk") {
        for item in items {
            let m = match item {
                Item::String { key, value, expire_at } => Mutation::Set { key, value, expire_at },
                Item::HashFields { key, fields } => Mutation::HSet { key, fields },
                Item::HashHead { key, expire_at } => {
                    if let Some(at) = expire_at {
                        heads.push((key, at));
                    }
                    continue;
                }
            };
            assert!(kept(m_key(&m)), "a key outside the filter was in the snapshot: {m:?}");
            target.import(&m).expect("import a snapshot item");
        }
    }
    for (key, at) in heads {
        target
            .import(&Mutation::Expire {
                key,
                expire_at: Some(at),
            })
            .expect("import a hash's expiry");
    }
    offset
}

fn m_key(m: &Mutation) -> &[u8] {
    let mut first: &[u8] = b"";
    m.for_each_key(&mut |k| {
        if first.is_empty() {
            first = k
        }
    });
    first
}

/// The keys of `m` the filter keeps (the tests' keys share no mutation
/// across the filter, except multi-key deletions).
fn filtered(m: Mutation) -> Option<Mutation> {
    match m {
        Mutation::Delete { keys, reason } => {
            let keys: Vec<_> = keys.into_iter().filter(|k| kept(k)).collect();
            (!keys.is_empty()).then_some(Mutation::Delete { keys, reason })
        }
        Mutation::Batch(parts) => {
            let parts: Vec<_> = parts.into_iter().filter_map(filtered).collect();
            (!parts.is_empty()).then_some(Mutation::Batch(parts))
        }
        m => kept(m_key(&m)).then_some(m),
    }
}

fn run(ops: Vec<(u8, usize)>, pre: usize) {
    let dir = tempfile::tempdir().expect("dir");
    let source = Engine::open(dir.path(), config()).expect("source");
    for (n, (op, i)) in ops.iter().take(pre).enumerate() {
        step(&source, *op, *i, n);
    }
    let writer = {
        let (source, ops) = (source.clone(), ops.clone());
        std::thread::spawn(move || {
            for (n, (op, i)) in ops.iter().enumerate().skip(pre).cycle().take(ops.len() * 3) {
                step(&source, *op, *i, n);
            }
        })
    };
    let (bytes, info) = source
        .snapshot_filtered_to(Vec::new(), kept)
        .expect("filtered snapshot");
    let target = Engine::new(config()).expect("target");
    let offset = import_snapshot(&target, &bytes);
    assert_eq!(offset, info.offset);
    writer.join().expect("writer");
    let log = source.log().expect("a ring");
    let mut tail = log.tail(offset);
    while tail.offset() < log.published() {
        for (_, m) in tail.next_mutations(Duration::from_millis(10), 1 << 20).expect("tail") {
            if let Some(m) = filtered(m) {
                target.import(&m).expect("import a tail mutation");
            }
        }
    }
    let keys: Vec<String> = names(10).into_iter().filter(|k| kept(k.as_bytes())).collect();
    assert_eq!(
        support::reader_view(&target, keys.clone()),
        support::reader_view(&source, keys)
    );
    let others: Vec<String> = names(10).into_iter().filter(|k| !kept(k.as_bytes())).collect();
    assert_eq!(target.exists(&others), 0, "keys outside the filter were imported");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_filtered_snapshot_and_the_filtered_log_rebuild_the_kept_keys(
        ops in prop::collection::vec((0u8..7, 0usize..10), 20..300),
        pre in 0usize..200,
    ) {
        run(ops, pre);
    }
}

#[test]
fn imports_are_logged_and_what_does_not_fit_changes_nothing() {
    let sink = MemorySink::new();
    let target = Engine::builder().sink(sink.clone()).build().expect("engine");
    target.set("s", "v").expect("set");
    sink.take();
    let hset = Mutation::HSet {
        key: "s".into(),
        fields: vec![("f".into(), "v".into())],
    };
    assert!(matches!(target.import(&hset), Err(ringkv::Error::Apply(_))));
    assert!(sink.is_empty());
    assert_eq!(target.get("s").expect("get").expect("kept"), "v");
    assert!(matches!(
        target.import(&Mutation::Flush),
        Err(ringkv::Error::InvalidArgument(_))
    ));
    let del = Mutation::Delete {
        keys: vec!["s".into()],
        reason: DeleteReason::User,
    };
    target.import(&del).expect("delete");
    assert_eq!(sink.len(), 1);
    let dir = tempfile::tempdir().expect("dir");
    let follower = Engine::open(dir.path(), config()).expect("engine");
    follower.set_role(ringkv::Role::Follower).expect("follower");
    assert!(matches!(follower.import(&del), Err(ringkv::Error::ReadOnly)));
}

/// A batch imported into an engine with a ring log is one record of its
/// parts, which the log reads back (a batch inside a batch is not a record
/// a log can hold): the reopened engine has every part.
#[test]
fn an_imported_batch_is_logged_as_one_readable_record() {
    let dir = tempfile::tempdir().expect("dir");
    let target = Engine::open(dir.path(), config()).expect("engine");
    let batch = Mutation::Batch(vec![
        Mutation::Set {
            key: "{b}1".into(),
            value: "x".into(),
            expire_at: None,
        },
        Mutation::HSet {
            key: "{b}2".into(),
            fields: vec![("f".into(), "v".into())],
        },
    ]);
    let before = target.log().expect("ring").published();
    target.import(&batch).expect("import a batch");
    let mut tail = target.log().expect("ring").tail(before);
    let read = tail
        .next_mutations(Duration::from_millis(10), 1 << 20)
        .expect("the record reads back");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].1, batch);
    drop(tail);
    drop(target);
    let reopened = Engine::open(dir.path(), config()).expect("reopen replays the record");
    assert_eq!(reopened.get("{b}1").expect("get").expect("kept"), "x");
    assert_eq!(reopened.hget("{b}2", "f").expect("hget").expect("kept"), "v");
}

#[test]
fn a_held_active_expiry_keeps_imported_keys_until_it_is_released() {
    let clock = ManualClock::new(10_000);
    let target = Engine::builder()
        .config(Config {
            active_expire: false,
            ..Config::default()
        })
        .clock(clock.clone())
        .build()
        .expect("engine");
    let hold = target.hold_active_expiry();
    let second = target.hold_active_expiry();
    target
        .import(&Mutation::Set {
            key: "token".into(),
            value: "t".into(),
            expire_at: Some(10_500),
        })
        .expect("import");
    clock.advance(1_000);
    assert_eq!(target.active_expire_cycle(), 0);
    // A later change from the source still finds the key (its clock was
    // behind): the import applies to it.
    target
        .import(&Mutation::Expire {
            key: "token".into(),
            expire_at: Some(99_000),
        })
        .expect("the key is still there to change");
    target
        .import(&Mutation::Expire {
            key: "token".into(),
            expire_at: Some(10_600),
        })
        .expect("back to expired");
    drop(hold);
    assert_eq!(target.active_expire_cycle(), 0, "one hold remains");
    drop(second);
    assert_eq!(target.active_expire_cycle(), 1);
    assert!(target.get("token").expect("get").is_none());
}
