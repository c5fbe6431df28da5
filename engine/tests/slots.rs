//! Keys by cluster slot (`Config::cluster_slots`): CRC16 and hashtag test
//! vectors from the Redis Cluster specification, and a model test — after
//! random sets, hash writes and deletes, deletes, renames, expiries,
//! flushes and snapshot reloads, every slot's count and key list equal a
//! model's, on the engine and on a replica fed its mutation stream; and a
//! follower's full sync (the swap) and a reopen keep them equal to the primary's.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use ringkv::{crc16, key_slot, Clock, Config, Engine, ManualClock, MemorySink};

#[test]
fn crc16_and_slots_match_the_cluster_spec() {
    // The specification's CRC16 check value and the slots Redis reports
    // (`CLUSTER KEYSLOT`; examples/tests/cluster.rs compares with a live
    // redis-server when one is installed).
    assert_eq!(crc16(b"123456789"), 0x31C3);
    assert_eq!(key_slot(b"123456789"), 0x31C3 & 16383);
    for (key, slot) in [
        ("foo", 12182),
        ("bar", 5061),
        ("hello", 866),
        ("somekey", 11058),
        ("foo{hash_tag}", 2515),
        ("{user1000}.following", key_slot(b"user1000")),
        ("foo{}{bar}", key_slot(b"foo{}{bar}")),
        ("foo{{bar}}zap", key_slot(b"{bar")),
        ("foo{bar}{zap}", key_slot(b"bar")),
        ("", 0),
    ] {
        assert_eq!(key_slot(key.as_bytes()), slot, "slot of {key:?}");
    }
}

#[test]
fn slot_queries_need_the_flag_and_a_valid_slot() {
    let db = Engine::builder().build().expect("engine");
    db.set("k", "v").expect("set");
    assert!(db.count_keys_in_slot(0).is_err());
    let db = Engine::builder()
        .config(Config {
            cluster_slots: true,
            ..Config::default()
        })
        .build()
        .expect("engine");
    assert!(db.count_keys_in_slot(16384).is_err());
    assert!(db.keys_in_slot(16384, None, 1).is_err());
    assert_eq!(db.count_keys_in_slot(16383).expect("count"), 0);
}

#[derive(Debug, Clone)]
enum Op {
    Set(usize),
    HSet(usize, u8),
    HDel(usize, u8),
    Del(usize),
    Rename(usize, usize),
    Expire(usize, u64),
    Advance(u64),
    Flush,
    Reload,
}

/// Keys that share slots (hashtags) and keys that do not.
const KEYS: &[&str] = &[
    "{a}1",
    "{a}2",
    "{a}3",
    "{b}x",
    "{b}y",
    "plain1",
    "plain2",
    "long-key-beyond-the-inline-size-{a}",
    "k",
    "{c}",
];

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS.len();
    prop_oneof![
        4 => k.clone().prop_map(Op::Set),
        3 => (k.clone(), 0u8..3).prop_map(|(k, f)| Op::HSet(k, f)),
        2 => (k.clone(), 0u8..3).prop_map(|(k, f)| Op::HDel(k, f)),
        2 => k.clone().prop_map(Op::Del),
        2 => (k.clone(), k.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (k, 1u64..50).prop_map(|(k, ms)| Op::Expire(k, ms)),
        1 => (1u64..60).prop_map(Op::Advance),
        1 => Just(Op::Flush),
        1 => Just(Op::Reload),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Str,
    Hash(BTreeSet<u8>),
}

/// Key → (kind, expiry in ms).
type Model = BTreeMap<&'static str, (Kind, Option<u64>)>;

fn config() -> Config {
    Config {
        cluster_slots: true,
        shards: 4,
        active_expire: false,
        ..Config::default()
    }
}

fn engine(clock: &ManualClock, sink: &MemorySink) -> Engine {
    Engine::builder()
        .config(config())
        .clock(clock.clone())
        .sink(sink.clone())
        .build()
        .expect("engine")
}

/// Every slot of the model's keys and of `KEYS`: the count, the list in
/// one call, and the list page by page through the cursor.
fn check(db: &Engine, model: &Model) {
    let mut by_slot: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for k in KEYS {
        by_slot.entry(key_slot(k.as_bytes())).or_default();
    }
    for k in model.keys() {
        by_slot.entry(key_slot(k.as_bytes())).or_default().push(k);
    }
    let mut total = 0;
    for (slot, mut keys) in by_slot {
        keys.sort_unstable();
        total += keys.len() as u64;
        assert_eq!(
            db.count_keys_in_slot(slot).expect("count"),
            keys.len() as u64,
            "slot {slot}"
        );
        let listed = db.keys_in_slot(slot, None, 100).expect("keys");
        let listed: Vec<&[u8]> = listed.iter().map(|b| &b[..]).collect();
        let want: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        assert_eq!(listed, want, "keys of slot {slot}");
        let mut paged = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = db.keys_in_slot(slot, cursor.as_deref(), 1).expect("page");
            let Some(last) = page.last() else { break };
            cursor = Some(last.to_vec());
            paged.extend(page.iter().map(|b| b.to_vec()));
            assert!(paged.len() <= keys.len(), "the cursor repeats keys");
        }
        assert_eq!(
            paged,
            want.iter().map(|k| k.to_vec()).collect::<Vec<_>>(),
            "pages of slot {slot}"
        );
    }
    assert_eq!(db.dbsize(), total);
}

fn apply(db: &Engine, clock: &ManualClock, model: &mut Model, op: &Op) {
    match *op {
        Op::Set(k) => {
            db.set(KEYS[k], "v").expect("set");
            model.insert(KEYS[k], (Kind::Str, None));
        }
        Op::HSet(k, f) => {
            let r = db.hset(KEYS[k], [([f], "v")]);
            match model.get_mut(KEYS[k]) {
                Some((Kind::Str, _)) => assert!(r.is_err()),
                Some((Kind::Hash(fields), _)) => {
                    r.expect("hset");
                    fields.insert(f);
                }
                None => {
                    r.expect("hset");
                    model.insert(KEYS[k], (Kind::Hash(BTreeSet::from([f])), None));
                }
            }
        }
        Op::HDel(k, f) => {
            let r = db.hdel(KEYS[k], [[f]]);
            if let Some((Kind::Hash(fields), _)) = model.get_mut(KEYS[k]) {
                r.expect("hdel");
                fields.remove(&f);
                if fields.is_empty() {
                    model.remove(KEYS[k]);
                }
            }
        }
        Op::Del(k) => {
            db.del([KEYS[k]]).expect("del");
            model.remove(KEYS[k]);
        }
        Op::Rename(a, b) => {
            let r = db.rename(KEYS[a], KEYS[b]);
            match model.remove(KEYS[a]) {
                Some(v) => {
                    r.expect("rename");
                    model.insert(KEYS[b], v);
                }
                None => assert!(r.is_err()),
            }
        }
        Op::Expire(k, ms) => {
            let set = db.pexpire(KEYS[k], ms as i64).expect("pexpire");
            if let Some((_, exp)) = model.get_mut(KEYS[k]) {
                assert!(set);
                *exp = Some(clock.now_ms() + ms);
            }
        }
        Op::Advance(ms) => {
            clock.advance(ms);
            let now = clock.now_ms();
            db.active_expire_cycle();
            model.retain(|_, (_, exp)| exp.is_none_or(|t| t > now));
        }
        Op::Flush => {
            db.flush().expect("flush");
            model.clear();
        }
        Op::Reload => unreachable!("handled by the caller"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("RINGKV_SLOTS_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    #[test]
    fn slot_index_matches_a_model(ops in proptest::collection::vec(op(), 1..80)) {
        let clock = ManualClock::new(1_000_000);
        let sink = MemorySink::new();
        let mut db = engine(&clock, &sink);
        // A replica fed the stream keeps the same index (the one apply path).
        let replica = Engine::builder().config(config()).clock(ManualClock::new(0)).build().expect("replica");
        let mut model = Model::new();
        for op in &ops {
            if let Op::Reload = op {
                let (buf, _) = db.snapshot_to(Vec::new()).expect("snapshot");
                let fresh = engine(&clock, &sink);
                fresh.load_snapshot(&buf[..]).expect("load");
                db = fresh;
            } else {
                apply(&db, &clock, &mut model, op);
            }
            for m in sink.take() {
                replica.replay(&m).expect("replay");
            }
            check(&db, &model);
        }
        check(&replica, &model);
    }
}

/// The count and keys of every slot `keys` use, for comparing engines.
fn slot_contents(db: &Engine, keys: &[String]) -> BTreeMap<u16, (u64, Vec<Vec<u8>>)> {
    keys.iter()
        .map(|k| key_slot(k.as_bytes()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|slot| {
            let listed = db.keys_in_slot(slot, None, 10_000).expect("keys");
            let count = db.count_keys_in_slot(slot).expect("count");
            (slot, (count, listed.iter().map(|b| b.to_vec()).collect()))
        })
        .collect()
}

#[test]
fn a_full_sync_and_a_reopen_keep_keys_by_slot() {
    let mut config = config();
    config.log.capacity = 1 << 20;
    let primary = Engine::builder()
        .config(config.clone())
        .anonymous_log()
        .build()
        .expect("primary");
    let keys: Vec<String> = (0..300).map(|i| format!("{{t{}}}:{i}", i % 17)).collect();
    let write = |round: usize| {
        for (i, k) in keys.iter().enumerate() {
            if (i + round).is_multiple_of(5) {
                primary.del([k]).expect("del");
            } else if i.is_multiple_of(3) {
                primary.hset(k, [("f", "v")]).expect("hset");
            } else {
                primary.set(k, "v").expect("set");
            }
        }
    };
    write(0);
    let dir = tempfile::tempdir().expect("dir");
    let follower = Engine::open(dir.path(), config.clone()).expect("follower");
    follower.set_role(ringkv::Role::Follower).expect("role");
    // A full sync: the snapshot, the log written meanwhile, the swap.
    let (snap, info) = primary.snapshot_to(Vec::new()).expect("snapshot");
    let log = primary.log().expect("log");
    follower
        .replica_begin_full_sync(info.offset, &log.replid(), "", 0)
        .expect("begin");
    write(1);
    let batch = log.read_stream(info.offset, 1 << 30).expect("read");
    follower.replica_append(batch.start, &batch.bytes).expect("append");
    let staging = follower.staging().expect("staging");
    staging.load_snapshot(&snap[..]).expect("load");
    follower.swap_in(&staging, info.offset).expect("swap");
    let want = slot_contents(&primary, &keys);
    assert!(want.values().any(|(n, _)| *n > 1), "slots shared by several keys");
    assert_eq!(slot_contents(&follower, &keys), want, "after the swap");
    // Reopening recovers the index from the snapshot and the ring.
    drop(staging);
    follower.close();
    let follower = Engine::open(dir.path(), config).expect("reopen");
    assert_eq!(slot_contents(&follower, &keys), want, "after the reopen");
}
