//! SCAN and HSCAN guarantees under concurrent change: every element present
//! for the whole iteration is returned at least once, each call examines at
//! most 10 × COUNT buckets, and the iteration ends — while inserts and deletes
//! between calls make the tables grow and shrink.

use std::collections::BTreeSet;

use proptest::prelude::*;
use ringkv::{Config, Engine, KeyType, ScanOptions};

fn engine(shards: usize) -> Engine {
    Engine::new(Config {
        shards,
        active_expire: false,
        ..Config::default()
    })
    .expect("engine")
}

/// Between two scan calls: insert `grow` new keys and delete `shrink` of the
/// temporary ones.
#[derive(Debug, Clone)]
struct Churn {
    grow: usize,
    shrink: usize,
}

fn churn() -> impl Strategy<Value = Churn> {
    (0usize..300, 0usize..400).prop_map(|(grow, shrink)| Churn { grow, shrink })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn scan_returns_every_stable_key_with_bounded_work(
        stable in 1usize..600,
        temp in 0usize..3000,
        count in 1usize..40,
        shards in prop_oneof![Just(1usize), Just(4), Just(16)],
        churns in proptest::collection::vec(churn(), 1..40),
    ) {
        let e = engine(shards);
        for i in 0..stable {
            e.set(format!("stable:{i}"), "v").expect("set");
        }
        let mut temp_keys: Vec<String> = (0..temp).map(|i| format!("temp:{i}")).collect();
        for k in &temp_keys {
            e.set(k, "t").expect("set");
        }
        let mut next_temp = temp;
        let mut seen = BTreeSet::new();
        let mut cursor = 0;
        let mut calls = 0;
        let opts = ScanOptions::default().count(count);
        loop {
            let page = e.scan(cursor, &opts);
            prop_assert!(page.buckets_examined <= 10 * count, "examined {} > 10 x {}", page.buckets_examined, count);
            seen.extend(page.items.into_iter().map(Vec::from));
            cursor = page.cursor;
            calls += 1;
            if cursor == 0 {
                break;
            }
            // Churn between calls, drawn from the strategy, cycling.
            let c = &churns[calls % churns.len()];
            if calls < 400 {
                for _ in 0..c.grow {
                    let k = format!("temp:{next_temp}");
                    next_temp += 1;
                    e.set(&k, "t").expect("set");
                    temp_keys.push(k);
                }
            }
            for _ in 0..c.shrink.min(temp_keys.len()) {
                let k = temp_keys.swap_remove(calls * 7919 % temp_keys.len());
                e.del([k]).expect("del");
            }
            prop_assert!(calls < 200_000, "scan did not terminate");
        }
        for i in 0..stable {
            prop_assert!(seen.contains(format!("stable:{i}").as_bytes()), "stable:{} never returned", i);
        }
    }

    #[test]
    fn hscan_returns_every_stable_field_while_the_hash_grows_and_shrinks(
        stable in 1usize..500,
        temp in 0usize..2000,
        count in 1usize..30,
        churns in proptest::collection::vec(churn(), 1..30),
    ) {
        let e = engine(4);
        e.hset("h", (0..stable).map(|i| (format!("s{i}"), "v"))).expect("hset");
        let mut temp_fields: Vec<String> = (0..temp).map(|i| format!("t{i}")).collect();
        if !temp_fields.is_empty() {
            e.hset("h", temp_fields.iter().map(|f| (f.as_str(), "t"))).expect("hset");
        }
        let mut next = temp;
        let mut seen = BTreeSet::new();
        let mut cursor = 0;
        let mut calls = 0;
        let opts = ScanOptions::default().count(count);
        loop {
            let page = e.hscan("h", cursor, &opts).expect("hscan");
            prop_assert!(page.buckets_examined <= 10 * count);
            seen.extend(page.items.into_iter().map(|(f, _)| Vec::from(f)));
            cursor = page.cursor;
            calls += 1;
            if cursor == 0 {
                break;
            }
            let c = &churns[calls % churns.len()];
            if calls < 300 && c.grow > 0 {
                let new: Vec<String> = (0..c.grow).map(|i| format!("t{}", next + i)).collect();
                next += c.grow;
                e.hset("h", new.iter().map(|f| (f.as_str(), "t"))).expect("hset");
                temp_fields.extend(new);
            }
            let n = c.shrink.min(temp_fields.len());
            if n > 0 {
                let gone: Vec<String> = temp_fields.drain(..n).collect();
                e.hdel("h", &gone).expect("hdel");
            }
            prop_assert!(calls < 200_000, "hscan did not terminate");
        }
        for i in 0..stable {
            prop_assert!(seen.contains(format!("s{i}").as_bytes()), "s{} never returned", i);
        }
    }
}

#[test]
fn scan_filters_by_pattern_and_type() {
    let e = engine(8);
    for i in 0..200 {
        e.set(format!("session:{i}"), "tok").expect("set");
        e.hset(format!("telemetry:{i}"), [("cpu", "1")]).expect("hset");
    }
    let sessions: BTreeSet<_> = e.scan_iter(ScanOptions::default().pattern("session:1*")).collect();
    assert_eq!(sessions.len(), 1 + 10 + 100);
    let hashes: Vec<_> = e.scan_iter(ScanOptions::default().key_type(KeyType::Hash)).collect();
    assert_eq!(hashes.len(), 200);
    assert!(hashes.iter().all(|k| k.starts_with(b"telemetry:")));
}

#[test]
fn scan_of_an_empty_engine_ends() {
    let e = engine(64);
    let mut cursor = 0;
    let mut calls = 0;
    loop {
        let page = e.scan(cursor, &ScanOptions::default().count(1));
        assert!(page.items.is_empty());
        assert!(page.buckets_examined <= 10);
        cursor = page.cursor;
        calls += 1;
        if cursor == 0 {
            break;
        }
    }
    // 64 shards of 4 buckets, at most 10 buckets a call.
    assert!(calls <= 64 * 4, "{calls} calls");
}

#[test]
fn hscan_of_a_string_is_wrongtype_and_of_a_missing_key_is_empty() {
    let e = engine(4);
    e.set("s", "v").expect("set");
    assert!(matches!(
        e.hscan("s", 0, &ScanOptions::default()),
        Err(ringkv::Error::WrongType)
    ));
    let page = e.hscan("missing", 0, &ScanOptions::default()).expect("hscan");
    assert_eq!((page.cursor, page.items.len()), (0, 0));
    let mut it = e.hscan_iter("s", ScanOptions::default());
    assert!(matches!(it.next(), Some(Err(ringkv::Error::WrongType))));
    assert!(it.next().is_none());
}
