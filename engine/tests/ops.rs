//! Behaviour of individual operations: Redis semantics, errors that change
//! nothing, limits, atomic batches and renames, the mutation each produces.

use bytes::Bytes;
use ringkv::{
    BatchReply, Config, DeleteReason, Engine, Error, KeyType, ManualClock, MemorySink, Mutation, SetOptions, Ttl,
    WriteBatch,
};

const NOW: u64 = 1_700_000_000_000;

fn setup() -> (Engine, MemorySink, ManualClock) {
    let sink = MemorySink::new();
    let clock = ManualClock::new(NOW);
    let e = Engine::builder()
        .config(Config {
            shards: 8,
            active_expire: false,
            max_key_len: 64,
            max_value_len: 1024,
            ..Config::default()
        })
        .clock(clock.clone())
        .sink(sink.clone())
        .build()
        .expect("engine");
    (e, sink, clock)
}

#[test]
fn strings_and_counters() {
    let (e, _, _) = setup();
    assert_eq!(e.get("k").expect("get"), None);
    e.set("k", "v").expect("set");
    assert_eq!(e.get("k").expect("get").expect("value"), "v");
    assert_eq!(e.incr("n").expect("incr"), 1);
    assert_eq!(e.incr_by("n", 41).expect("incr"), 42);
    assert_eq!(e.decr_by("n", 2).expect("decr"), 40);
    assert_eq!(e.decr("n").expect("decr"), 39);
    assert_eq!(e.append("n", "0").expect("append"), 3);
    assert_eq!(e.get("n").expect("get").expect("value"), "390");
    assert_eq!(e.exists(["k", "n", "k", "missing"]), 3);
    assert_eq!(e.key_type("k"), Some(KeyType::String));
    assert_eq!(e.key_type("missing"), None);
    assert_eq!(e.del(["k", "k", "missing"]).expect("del"), 1);
    assert_eq!(e.dbsize(), 1);
}

#[test]
fn integer_errors_change_nothing() {
    let (e, sink, _) = setup();
    e.set("s", "abc").expect("set");
    e.set("big", i64::MAX.to_string()).expect("set");
    for bad in ["", " 1", "1 ", "+1", "01", "-0", "1.5", "99999999999999999999"] {
        e.set("x", bad).expect("set");
        assert!(matches!(e.incr("x"), Err(Error::NotAnInteger)), "{bad:?}");
    }
    sink.take();
    assert!(matches!(e.incr("s"), Err(Error::NotAnInteger)));
    assert!(matches!(e.incr("big"), Err(Error::Overflow)));
    assert!(matches!(e.decr_by("n", i64::MIN), Err(Error::Overflow)));
    assert_eq!(
        e.get("big").expect("get").expect("value"),
        i64::MAX.to_string().as_str()
    );
    assert!(
        sink.is_empty(),
        "failed operations produced mutations: {:?}",
        sink.take()
    );
    assert_eq!(e.incr_by("neg", i64::MIN).expect("incr"), i64::MIN);
}

#[test]
fn wrong_types_are_errors() {
    let (e, _, _) = setup();
    e.set("s", "v").expect("set");
    e.hset("h", [("f", "v")]).expect("hset");
    assert!(matches!(e.get("h"), Err(Error::WrongType)));
    assert!(matches!(e.incr("h"), Err(Error::WrongType)));
    assert!(matches!(e.append("h", "x"), Err(Error::WrongType)));
    assert!(matches!(e.hset("s", [("f", "v")]), Err(Error::WrongType)));
    assert!(matches!(e.hget("s", "f"), Err(Error::WrongType)));
    assert!(matches!(e.hdel("s", ["f"]), Err(Error::WrongType)));
    assert!(matches!(e.hgetall("s"), Err(Error::WrongType)));
    assert!(matches!(e.hdrain("s", 1), Err(Error::WrongType)));
    assert!(matches!(e.hincr_by("s", "f", 1), Err(Error::WrongType)));
    assert!(matches!(
        e.set_with("h", "v", SetOptions::new().get()),
        Err(Error::WrongType)
    ));
    assert_eq!(
        e.key_type("h"),
        Some(KeyType::Hash),
        "SET GET on a hash must not overwrite it"
    );
    // Plain SET replaces any type, as in Redis.
    e.set("h", "now a string").expect("set");
    assert_eq!(e.key_type("h"), Some(KeyType::String));
    assert_eq!(e.mget(["s", "missing"]), vec![Some("v".into()), None]);
}

#[test]
fn set_options_follow_redis() {
    let (e, _, clock) = setup();
    assert!(e
        .set_with("k", "1", SetOptions::new().xx())
        .expect("set")
        .applied
        .eq(&false));
    assert!(e.set_with("k", "1", SetOptions::new().nx()).expect("set").applied);
    assert!(!e.set_with("k", "2", SetOptions::new().nx()).expect("set").applied);
    let out = e.set_with("k", "3", SetOptions::new().xx().get()).expect("set");
    assert_eq!((out.applied, out.previous), (true, Some("1".into())));
    e.set_with("k", "4", SetOptions::new().px(1500)).expect("set");
    assert_eq!(e.ttl("k"), Ttl::ExpiresIn(1500));
    e.set_with("k", "5", SetOptions::new().keepttl()).expect("set");
    assert_eq!(e.ttl("k"), Ttl::ExpiresIn(1500));
    e.set_with("k", "6", SetOptions::new().ex(10)).expect("set");
    assert_eq!(e.ttl("k").as_redis_seconds(), 10);
    e.set_with("k", "7", SetOptions::new().exat(NOW / 1000 + 100))
        .expect("set");
    assert_eq!(e.ttl("k"), Ttl::ExpiresIn(100_000));
    e.set("k", "8").expect("set");
    assert_eq!(e.ttl("k"), Ttl::Persistent, "a plain SET clears the TTL");
    assert!(matches!(
        e.set_with("k", "9", SetOptions::new().ex(0)),
        Err(Error::InvalidExpire)
    ));
    assert!(matches!(
        e.set_with("k", "9", SetOptions::new().ex(u64::MAX)),
        Err(Error::InvalidExpire)
    ));
    e.set_with("old", "v", SetOptions::new().pxat(NOW - 1))
        .expect("set in the past");
    assert_eq!(e.get("old").expect("get"), None);
    clock.advance(1);
    assert_eq!(e.ttl("missing"), Ttl::Missing);
}

#[test]
fn limits_are_clear_errors() {
    let (e, sink, _) = setup();
    let long_key = vec![b'k'; 65];
    let long_value = vec![b'v'; 1025];
    assert!(matches!(
        e.set(&long_key, "v"),
        Err(Error::KeyTooLarge { len: 65, max: 64 })
    ));
    assert!(matches!(
        e.set("k", long_value.clone()),
        Err(Error::ValueTooLarge { len: 1025, max: 1024 })
    ));
    assert!(matches!(
        e.hset("h", [(&long_key[..], "v")]),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        e.hset("h", [("f", long_value)]),
        Err(Error::ValueTooLarge { .. })
    ));
    e.set("k", vec![b'a'; 1000]).expect("set");
    assert!(matches!(
        e.append("k", vec![b'b'; 25]),
        Err(Error::ValueTooLarge { len: 1025, .. })
    ));
    assert!(matches!(
        e.hset("h", Vec::<(&str, &str)>::new()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(e.hdrain("h", 0), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        e.mset(Vec::<(&str, &str)>::new()),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(sink.take().len(), 1, "only the successful SET was logged");
    assert!(Engine::new(Config {
        shards: 3,
        ..Config::default()
    })
    .is_err());
}

#[test]
fn binary_keys_and_values() {
    let (e, _, _) = setup();
    let key = [0u8, 255, 10, 13, 0];
    let value: Vec<u8> = (0..=255).collect();
    e.set(key, value.clone()).expect("set");
    assert_eq!(e.get(key).expect("get").expect("value"), value);
    e.hset("h", [(&key[..], Bytes::from(value.clone()))]).expect("hset");
    assert_eq!(e.hget("h", key).expect("hget").expect("value"), value);
}

#[test]
fn hashes() {
    let (e, _, _) = setup();
    assert_eq!(e.hset("h", [("a", "1"), ("b", "2")]).expect("hset"), 2);
    assert_eq!(e.hset("h", [("a", "3"), ("c", "4")]).expect("hset"), 1);
    assert_eq!(e.hlen("h").expect("hlen"), 3);
    assert!(e.hexists("h", "a").expect("hexists"));
    assert_eq!(e.hmget("h", ["a", "x"]).expect("hmget"), vec![Some("3".into()), None]);
    assert_eq!(e.hincr_by("h", "a", 10).expect("hincrby"), 13);
    assert!(matches!(e.hincr_by("h", "a", i64::MAX), Err(Error::Overflow)));
    let mut keys = e.hkeys("h").expect("hkeys");
    keys.sort();
    assert_eq!(keys, vec!["a".into(), "b".into(), "c".into()] as Vec<ringkv::Blob>);
    assert_eq!(e.hvals("h").expect("hvals").len(), 3);
    assert_eq!(e.hdel("h", ["a", "a", "x"]).expect("hdel"), 1);
    assert_eq!(e.hdel("h", ["b", "c"]).expect("hdel"), 2);
    assert_eq!(e.key_type("h"), None, "an emptied hash is removed");
    assert_eq!(e.hlen("h").expect("hlen"), 0);
}

#[test]
fn hdrain_removes_exactly_what_it_returns() {
    let (e, sink, _) = setup();
    e.hset("t", (0..25).map(|i| (format!("f{i}"), format!("v{i}"))))
        .expect("hset");
    sink.take();
    let mut all = Vec::new();
    loop {
        let batch = e.hdrain("t", 10).expect("drain");
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 10);
        all.extend(batch);
    }
    all.sort();
    let mut want: Vec<(ringkv::Blob, ringkv::Blob)> = (0..25)
        .map(|i| (format!("f{i}").as_str().into(), format!("v{i}").as_str().into()))
        .collect();
    want.sort();
    assert_eq!(all, want);
    assert_eq!(e.key_type("t"), None);
    let mutations = sink.take();
    assert_eq!(mutations.len(), 3, "one HDEL mutation per drain call");
    assert!(mutations.iter().all(|m| matches!(m, Mutation::HDel { .. })));
}

#[test]
fn rename_moves_value_and_ttl_across_shards() {
    let (e, sink, _) = setup();
    e.set_with("src", "v", SetOptions::new().px(5000)).expect("set");
    e.hset("dst", [("f", "v")]).expect("hset");
    sink.take();
    e.rename("src", "dst").expect("rename");
    assert_eq!(e.get("dst").expect("get").expect("value"), "v");
    assert_eq!(e.ttl("dst"), Ttl::ExpiresIn(5000));
    assert_eq!(e.key_type("src"), None);
    assert!(matches!(e.rename("src", "x"), Err(Error::NoSuchKey)));
    e.set("a", "1").expect("set");
    assert!(!e.rename_nx("a", "dst").expect("renamenx"));
    assert!(e.rename_nx("a", "fresh").expect("renamenx"));
    e.rename("fresh", "fresh").expect("rename to itself");
    assert_eq!(e.get("fresh").expect("get").expect("value"), "1");
    let muts = sink.take();
    assert_eq!(
        muts[0],
        Mutation::Rename {
            from: Bytes::from_static(b"src"),
            to: Bytes::from_static(b"dst")
        }
    );
    assert_eq!(muts.len(), 3, "{muts:?}");
}

#[test]
fn a_batch_reads_its_own_writes_and_a_read_only_batch_logs_nothing() {
    let (e, sink, clock) = setup();
    e.set("n", "5").expect("set");
    e.hset("h", [("f", "1")]).expect("hset");
    e.set_with("t", "x", ringkv::SetOptions::new().px(10_000)).expect("set");
    sink.take();
    let mut b = WriteBatch::new();
    b.get("n")
        .incr_by("n", 2)
        .get("n")
        .hset("h", [("g", "2")])
        .hget("h", "g")
        .hlen("h")
        .hexists("h", "f")
        .hgetall("h")
        .exists("missing")
        .key_type("h")
        .ttl("t");
    let replies = e.write_batch(b).expect("batch");
    let mut all = match &replies[7] {
        BatchReply::Pairs(p) => p.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect::<Vec<_>>(),
        other => panic!("HGETALL replied {other:?}"),
    };
    all.sort();
    assert_eq!(
        all,
        vec![(b"f".to_vec(), b"1".to_vec()), (b"g".to_vec(), b"2".to_vec())]
    );
    assert_eq!(
        [&replies[..7], &replies[8..]].concat(),
        vec![
            BatchReply::Value(Some("5".into())),
            BatchReply::Int(7),
            BatchReply::Value(Some("7".into())),
            BatchReply::Count(1),
            BatchReply::Value(Some("2".into())),
            BatchReply::Count(2),
            BatchReply::Bool(true),
            BatchReply::Bool(false),
            BatchReply::Type(Some(ringkv::KeyType::Hash)),
            BatchReply::Ttl(Ttl::ExpiresIn(10_000)),
        ]
    );
    // The two writes reached the sink as one batch; the reads added nothing.
    let muts = sink.take();
    assert!(matches!(&muts[..], [Mutation::Batch(ms)] if ms.len() == 2), "{muts:?}");

    let mut reads = WriteBatch::new();
    reads.get("n").hgetall("h").ttl("t");
    e.write_batch(reads).expect("read-only batch");
    assert!(sink.take().is_empty());

    // A read of the wrong type fails the whole batch: nothing applied.
    let mut wrong = WriteBatch::new();
    wrong.incr_by("n", 1).get("h");
    assert!(matches!(e.write_batch(wrong), Err(Error::WrongType)));
    assert_eq!(e.get("n").expect("get").as_deref(), Some(&b"7"[..]));

    // A key that expired reads as missing inside the batch.
    clock.advance(10_000);
    let mut expired = WriteBatch::new();
    expired.get("t").exists("t");
    let r = e.write_batch(expired).expect("batch");
    assert_eq!(r, vec![BatchReply::Value(None), BatchReply::Bool(false)]);
}

#[test]
fn batches_are_atomic() {
    let (e, sink, _) = setup();
    e.set("s", "text").expect("set");
    e.hset("h", [("f", "1")]).expect("hset");
    sink.take();
    let mut b = WriteBatch::new();
    b.set("a", "1")
        .incr_by("a", 2)
        .hset("h", [("g", "2")])
        .hdel("h", ["f"])
        .del("s")
        .incr_by("s2", 1);
    let replies = e.write_batch(b).expect("batch");
    assert_eq!(
        replies,
        vec![
            BatchReply::Set(ringkv::SetOutcome {
                applied: true,
                previous: None
            }),
            BatchReply::Int(3),
            BatchReply::Count(1),
            BatchReply::Count(1),
            BatchReply::Bool(true),
            BatchReply::Int(1),
        ]
    );
    let muts = sink.take();
    assert_eq!(muts.len(), 1);
    assert!(matches!(&muts[0], Mutation::Batch(ms) if ms.len() == 6));

    // An operation failing half-way rolls back everything before it.
    let before = e.digest();
    let mut b = WriteBatch::new();
    b.set("a", "100")
        .del("h")
        .hset("new", [("x", "y")])
        .append("s2", "0")
        .persist("a")
        .incr_by("new", 1);
    assert!(matches!(e.write_batch(b), Err(Error::WrongType)));
    assert_eq!(e.digest(), before);
    assert_eq!(e.get("a").expect("get").expect("value"), "3");
    assert_eq!(e.hgetall("h").expect("hgetall"), vec![("g".into(), "2".into())]);
    assert_eq!(e.key_type("new"), None);
    assert!(sink.is_empty());
}

#[test]
fn a_refused_mutation_changes_nothing() {
    let (e, sink, _) = setup();
    e.set("k", "v").expect("set");
    e.hset("h", [("f", "v")]).expect("hset");
    let before = e.digest();
    sink.fail_next(1);
    assert!(matches!(e.set("k", "w"), Err(Error::Sink(_))));
    sink.fail_next(1);
    assert!(matches!(e.hdrain("h", 5), Err(Error::Sink(_))));
    sink.fail_next(1);
    let mut b = WriteBatch::new();
    b.set("k", "x").del("h").hset("z", [("a", "b")]).rename_check();
    assert!(matches!(e.write_batch(b), Err(Error::Sink(_))));
    sink.fail_next(1);
    assert!(matches!(e.flush(), Err(Error::Sink(_))));
    assert_eq!(e.digest(), before);
    assert_eq!(e.get("k").expect("get").expect("value"), "v");
}

trait RenameCheck {
    fn rename_check(&mut self) -> &mut Self;
}
impl RenameCheck for WriteBatch {
    fn rename_check(&mut self) -> &mut Self {
        self.append("k", "more")
    }
}

#[test]
fn mset_is_one_mutation_and_mget_reads_it() {
    let (e, sink, _) = setup();
    e.mset([("a", "1"), ("b", "2"), ("c", "3"), ("a", "4")]).expect("mset");
    assert_eq!(
        e.mget(["a", "b", "c", "d"]),
        vec![Some("4".into()), Some("2".into()), Some("3".into()), None]
    );
    assert!(matches!(&sink.take()[..], [Mutation::Batch(ms)] if ms.len() == 4));
}

#[test]
fn flush_and_stats() {
    let (e, sink, _) = setup();
    for i in 0..100 {
        e.set_with(format!("k{i}"), "v", SetOptions::new().px(10_000))
            .expect("set");
    }
    e.get("k1").expect("get");
    let stats = e.stats();
    assert_eq!(stats.keys, 100);
    assert_eq!(stats.keys_with_expiry, 100);
    assert_eq!(stats.commands["set"], 100);
    assert_eq!(stats.commands["get"], 1);
    assert!(stats.used_memory > 100 * 48);
    let json = serde_json::to_string(&stats).expect("json");
    assert!(json.contains("\"keys_with_expiry\":100"));
    sink.take();
    e.flush().expect("flush");
    assert_eq!(e.dbsize(), 0);
    assert_eq!(e.stats().keys_with_expiry, 0);
    assert_eq!(sink.take(), vec![Mutation::Flush]);
}

#[test]
fn expire_in_the_past_deletes_with_an_expired_mutation() {
    let (e, sink, _) = setup();
    e.set("k", "v").expect("set");
    sink.take();
    assert!(e.expire("k", -1).expect("expire"));
    assert_eq!(e.key_type("k"), None);
    assert_eq!(
        sink.take(),
        vec![Mutation::Delete {
            keys: vec![Bytes::from_static(b"k")],
            reason: DeleteReason::Expired
        }]
    );
    assert!(!e.expire("k", 10).expect("expire"));
    assert!(matches!(e.expire("k", i64::MAX), Err(Error::InvalidExpire)));
}

#[test]
fn a_watched_batch_applies_only_if_no_watched_key_was_logged_since() {
    let e = Engine::builder().anonymous_log().build().expect("engine");
    e.set("balance", "10").expect("set");
    let since = e.log().expect("log").published();
    e.set("other", "x").expect("an unwatched key");
    let mut b = WriteBatch::new();
    b.incr_by("balance", -3).incr_by("spent", 1);
    let replies = e.write_batch_if_unchanged(b, &["balance"], since).expect("batch");
    assert_eq!(replies, Some(vec![BatchReply::Int(7), BatchReply::Int(1)]));
    let since = e.log().expect("log").published();
    e.flush().expect("flush");
    let mut b = WriteBatch::new();
    b.set("balance", "1");
    assert_eq!(
        e.write_batch_if_unchanged(b, &["balance"], since).expect("batch"),
        None,
        "FLUSHALL changes every key"
    );
    assert_eq!(e.get("balance").expect("get"), None, "nothing applied");
    let no_log = Engine::new(Config::default()).expect("engine");
    assert!(
        no_log.write_batch_if_unchanged(WriteBatch::new(), &["k"], 0).is_err(),
        "needs a ring log"
    );
}
