//! Expiry with an injected clock: lazy deletion on access, active expiry from
//! the per-shard index with bounded work, deletions as logged mutations.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringkv::{Config, DeleteReason, Engine, ManualClock, MemorySink, Mutation, SetOptions, Ttl};

const NOW: u64 = 1_700_000_000_000;

fn setup(config: Config) -> (Engine, MemorySink, ManualClock) {
    let sink = MemorySink::new();
    let clock = ManualClock::new(NOW);
    let e = Engine::builder()
        .config(config)
        .clock(clock.clone())
        .sink(sink.clone())
        .build()
        .expect("engine");
    (e, sink, clock)
}

fn quiet() -> Config {
    Config {
        shards: 4,
        active_expire: false,
        ..Config::default()
    }
}

fn expired_deletions(ms: &[Mutation]) -> usize {
    ms.iter()
        .filter(|m| {
            matches!(
                m,
                Mutation::Delete {
                    reason: DeleteReason::Expired,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn a_read_of_an_expired_key_deletes_it_and_logs_the_deletion() {
    let (e, sink, clock) = setup(quiet());
    e.set_with("session:1", "tok", SetOptions::new().px(1000)).expect("set");
    clock.advance(999);
    assert_eq!(e.get("session:1").expect("get").expect("live"), "tok");
    assert_eq!(e.ttl("session:1"), Ttl::ExpiresIn(1));
    sink.take();
    clock.advance(1);
    assert_eq!(e.get("session:1").expect("get"), None);
    assert_eq!(e.dbsize(), 0, "lazy expiry removed the key");
    assert_eq!(
        sink.take(),
        vec![Mutation::Delete {
            keys: vec![Bytes::from_static(b"session:1")],
            reason: DeleteReason::Expired
        }]
    );
    assert_eq!(e.stats().expired_keys, 1);
}

#[test]
fn a_write_over_an_expired_hash_starts_from_nothing() {
    let (e, sink, clock) = setup(quiet());
    e.hset("h", [("old", "1")]).expect("hset");
    e.pexpire("h", 10).expect("pexpire");
    clock.advance(10);
    sink.take();
    assert_eq!(e.hset("h", [("new", "2")]).expect("hset"), 1);
    assert_eq!(e.hgetall("h").expect("hgetall"), vec![("new".into(), "2".into())]);
    assert_eq!(e.ttl("h"), Ttl::Persistent);
    // The stream says so explicitly, so a replica that never looks at the
    // clock ends in the same state.
    let ms = sink.take();
    assert_eq!(expired_deletions(&ms), 1);
    assert!(matches!(ms[1], Mutation::HSet { .. }));
}

#[test]
fn active_expiry_removes_exactly_the_due_keys_nearest_first() {
    let (e, sink, clock) = setup(quiet());
    for i in 0..1000u64 {
        e.set_with(format!("k{i}"), "v", SetOptions::new().px(1 + i * 10))
            .expect("set");
    }
    e.set("forever", "v").expect("set");
    sink.take();
    clock.advance(5000);
    let deleted = e.active_expire_cycle();
    // Keys k0..k499 have expire <= 5000 ms from the start.
    assert_eq!(deleted, 500);
    assert_eq!(e.dbsize(), 501);
    assert_eq!(expired_deletions(&sink.take()), 500);
    for i in 0..1000u64 {
        let present = e.stats().keys > 0 && e.key_type(format!("k{i}")).is_some();
        assert_eq!(present, i >= 500, "k{i}");
    }
    assert_eq!(e.active_expire_cycle(), 0, "nothing more is due");
}

#[test]
fn active_expiry_work_per_cycle_is_bounded() {
    let (e, _, clock) = setup(Config {
        shards: 4,
        active_expire: false,
        active_expire_keys_per_shard: 10,
        ..Config::default()
    });
    for i in 0..1000 {
        e.set_with(format!("k{i}"), "v", SetOptions::new().px(1)).expect("set");
    }
    clock.advance(1);
    let mut cycles = 0;
    let mut total = 0;
    loop {
        let n = e.active_expire_cycle();
        assert!(n <= 4 * 10, "one cycle deleted {n}");
        if n == 0 {
            break;
        }
        total += n;
        cycles += 1;
    }
    assert_eq!(total, 1000);
    assert!(cycles >= 25);
    assert_eq!(e.dbsize(), 0);
}

#[test]
fn persist_and_overwrite_update_the_expiry_index() {
    let (e, _, clock) = setup(quiet());
    e.set_with("a", "v", SetOptions::new().px(10)).expect("set");
    e.set_with("b", "v", SetOptions::new().px(10)).expect("set");
    e.set_with("c", "v", SetOptions::new().px(10)).expect("set");
    assert!(e.persist("a").expect("persist"));
    assert!(!e.persist("a").expect("persist again"));
    e.set("b", "plain").expect("set clears ttl");
    e.pexpire("c", 100_000).expect("pexpire");
    assert_eq!(e.stats().keys_with_expiry, 1);
    clock.advance(50);
    assert_eq!(e.active_expire_cycle(), 0);
    assert_eq!(e.dbsize(), 3);
    clock.advance(100_000);
    assert_eq!(e.active_expire_cycle(), 1);
    assert_eq!(
        e.mget(["a", "b", "c"]),
        vec![Some("v".into()), Some("plain".into()), None]
    );
}

#[test]
fn replica_applying_the_stream_never_expires_on_its_own() {
    let (e, sink, clock) = setup(quiet());
    e.set_with("k", "v", SetOptions::new().px(100)).expect("set");
    let replica = Engine::builder()
        .config(quiet())
        .clock(clock.clone())
        .build()
        .expect("replica");
    for m in sink.take() {
        replica.replay(&m).expect("apply");
    }
    clock.advance(200);
    // Logically expired on both; the replica keeps it until the primary's
    // deletion arrives, so both stay byte-for-byte equal.
    assert_eq!(replica.dbsize(), 1);
    assert_eq!(e.active_expire_cycle(), 1);
    for m in sink.take() {
        replica.replay(&m).expect("apply");
    }
    assert_eq!(replica.dbsize(), 0);
    assert_eq!(replica.digest(), e.digest());
}

#[test]
fn the_background_thread_expires_keys() {
    let (e, _, clock) = setup(Config {
        shards: 4,
        active_expire: true,
        active_expire_interval_ms: 1,
        ..Config::default()
    });
    for i in 0..100 {
        e.set_with(format!("k{i}"), "v", SetOptions::new().px(10)).expect("set");
    }
    clock.advance(10);
    // Bounded wait for the thread to run (no correctness depends on timing:
    // it only has to run at all).
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.dbsize() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(e.dbsize(), 0);
    assert_eq!(e.stats().expired_keys, 100);
}

/// A gate that refuses everything, internal deletions included (a closed
/// leader-lease fence).
struct Fenced;

impl ringkv::WriteGate for Fenced {
    fn admit(&self) -> Result<(), String> {
        Err("fenced".into())
    }
    fn admits_internal(&self) -> bool {
        false
    }
}

/// Issue 14 finding 19: behind a gate that refuses internal writes, an
/// expired key reads as missing but neither lazy nor active expiry logs a
/// deletion (a deposed primary does not extend its history); once the
/// gate goes, expiry logs as before.
#[test]
fn a_fenced_primary_logs_no_expiry() {
    let (e, sink, clock) = setup(quiet());
    e.set_with("k", "v", SetOptions::new().px(10)).expect("set");
    e.set_with("j", "v", SetOptions::new().px(10)).expect("set");
    sink.take();
    e.set_write_gate(Some(std::sync::Arc::new(Fenced)));
    clock.advance(20);
    assert!(e.get("k").expect("get").is_none(), "expired: reads as missing");
    assert_eq!(e.active_expire_cycle(), 0);
    assert!(sink.take().is_empty(), "nothing logged behind the fence");
    e.set_write_gate(None);
    assert!(e.get("k").expect("get").is_none());
    assert_eq!(e.active_expire_cycle(), 1, "j, once the fence is gone");
    assert_eq!(expired_deletions(&sink.take()), 2);
}
