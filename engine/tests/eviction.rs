//! `maxmemory` policies: noeviction refuses, allkeys-lru evicts the least
//! recently used keys it samples, volatile-ttl evicts the nearest expiry;
//! evictions are logged deletions.

use ringkv::{Config, DeleteReason, Engine, Error, EvictionPolicy, ManualClock, MemorySink, Mutation, SetOptions};

const NOW: u64 = 1_700_000_000_000;

fn setup(policy: EvictionPolicy, maxmemory: u64) -> (Engine, MemorySink, ManualClock) {
    let sink = MemorySink::new();
    let clock = ManualClock::new(NOW);
    let e = Engine::builder()
        .config(Config {
            shards: 4,
            active_expire: false,
            maxmemory,
            maxmemory_policy: policy,
            rng_seed: Some(42),
            ..Config::default()
        })
        .clock(clock.clone())
        .sink(sink.clone())
        .build()
        .expect("engine");
    (e, sink, clock)
}

fn evictions(ms: &[Mutation]) -> Vec<Vec<u8>> {
    ms.iter()
        .filter_map(|m| match m {
            Mutation::Delete {
                keys,
                reason: DeleteReason::Evicted,
            } => Some(keys[0].to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn noeviction_refuses_writes_but_allows_deletes_and_reads() {
    let (e, sink, _) = setup(EvictionPolicy::Noeviction, 256 * 1024);
    let value = vec![b'x'; 1000];
    let mut refused = None;
    for i in 0..10_000 {
        if let Err(err) = e.set(format!("k{i}"), value.clone()) {
            refused = Some((i, err));
            break;
        }
    }
    let (n, err) = refused.expect("the limit must be reached");
    assert!(matches!(err, Error::OutOfMemory { max: 262_144, .. }), "{err}");
    assert!(n > 100, "refused after {n} keys");
    assert!(e.used_memory() <= 256 * 1024 + 64 * 1024, "used {}", e.used_memory());
    assert!(matches!(e.hset("h", [("f", "v")]), Err(Error::OutOfMemory { .. })));
    assert!(matches!(e.incr("c"), Err(Error::OutOfMemory { .. })));
    assert_eq!(e.get("k0").expect("get").expect("value").len(), 1000);
    assert!(evictions(&sink.take()).is_empty());
    // Deleting frees memory and writes work again.
    let keys: Vec<String> = (0..n / 2).map(|i| format!("k{i}")).collect();
    e.del(&keys).expect("del");
    e.set("again", "v").expect("set after freeing memory");
}

#[test]
fn allkeys_lru_keeps_recently_used_keys() {
    let (e, sink, clock) = setup(EvictionPolicy::AllkeysLru, 1024 * 1024);
    let value = vec![b'x'; 500];
    for i in 0..1000 {
        e.set(format!("old{i}"), value.clone()).expect("set");
    }
    clock.advance(10_000);
    // The hot set is read later than everything else.
    for i in 0..100 {
        e.get(format!("old{i}")).expect("get");
    }
    clock.advance(10_000);
    let mut i = 0;
    while evictions(&sink.take()).is_empty() || i < 1000 {
        e.set(format!("new{i}"), value.clone())
            .expect("set evicts instead of failing");
        i += 1;
        assert!(i < 100_000, "never evicted");
    }
    let stats = e.stats();
    assert!(stats.evicted_keys > 0);
    assert!(
        stats.used_memory <= 1024 * 1024 + 64 * 1024,
        "used {}",
        stats.used_memory
    );
    let hot_left = (0..100).filter(|i| e.key_type(format!("old{i}")).is_some()).count();
    let cold_left = (100..1000).filter(|i| e.key_type(format!("old{i}")).is_some()).count();
    // Sampling 5 keys, a hot key is only picked when all 5 are hot or newer.
    assert!(hot_left >= 95, "hot keys left: {hot_left}");
    assert!(cold_left < 900, "cold keys left: {cold_left}");
}

#[test]
fn volatile_ttl_evicts_the_nearest_expiry_and_only_volatile_keys() {
    let (e, sink, _) = setup(EvictionPolicy::VolatileTtl, 400 * 1024);
    let value = vec![b'x'; 500];
    for i in 0..200 {
        e.set(format!("keep{i}"), value.clone()).expect("set");
    }
    for i in 0..800u64 {
        e.set_with(
            format!("tmp{i}"),
            value.clone(),
            SetOptions::new().px(1_000_000 - i * 1000),
        )
        .expect("set");
    }
    let evicted = evictions(&sink.take());
    assert!(!evicted.is_empty(), "the limit must have been reached");
    assert!(
        evicted.iter().all(|k| k.starts_with(b"tmp")),
        "evicted a key without expiry"
    );
    // Later keys expire sooner, so the first evicted is a late one.
    let first: u64 = std::str::from_utf8(&evicted[0][3..])
        .expect("utf8")
        .parse()
        .expect("number");
    assert!(first > 300, "first eviction tmp{first}");
    assert_eq!(
        (0..200).filter(|i| e.key_type(format!("keep{i}")).is_some()).count(),
        200
    );
    // With no volatile key left, writes fail like noeviction.
    e.del((0..800).map(|i| format!("tmp{i}"))).expect("del");
    let mut failed = false;
    for i in 0..2000 {
        if let Err(err) = e.set(format!("more{i}"), value.clone()) {
            assert!(matches!(err, Error::OutOfMemory { .. }));
            failed = true;
            break;
        }
    }
    assert!(failed);
}

#[test]
fn a_memory_limit_set_at_run_time_applies_to_the_next_write() {
    let (e, sink, _) = setup(EvictionPolicy::Noeviction, 0);
    for i in 0..200 {
        e.set(format!("k{i}"), vec![b'x'; 100]).expect("set");
    }
    let used = e.used_memory();
    // Lower than what is in use: refused under noeviction, nothing deleted.
    e.set_memory_limit(used / 2, EvictionPolicy::Noeviction);
    assert_eq!(e.memory_limit(), (used / 2, EvictionPolicy::Noeviction));
    assert!(matches!(e.set("more", "1"), Err(Error::OutOfMemory { .. })));
    assert_eq!(e.dbsize(), 200);
    assert_eq!(e.stats().maxmemory, used / 2);
    // Switching the policy evicts down to the limit on the next write.
    sink.take();
    e.set_memory_limit(used / 2, EvictionPolicy::AllkeysLru);
    e.set("more", "1").expect("set after eviction");
    let evicted = evictions(&sink.take());
    assert!(!evicted.is_empty());
    assert!(
        e.used_memory() <= used / 2 + 64 * 4,
        "{} > {}",
        e.used_memory(),
        used / 2
    );
    // No limit again: writes go through without evicting.
    e.set_memory_limit(0, EvictionPolicy::AllkeysLru);
    let before = e.dbsize();
    e.set("again", vec![b'y'; 10_000]).expect("set");
    assert_eq!(e.dbsize(), before + 1);
    assert!(evictions(&sink.take()).is_empty());
}
