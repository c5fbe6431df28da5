//! Many threads at once: counters, hash ingestion and draining, multi-key
//! atomicity, scans — with invariants checked at the end, and the mutation
//! stream replayed into a second engine to prove that per key the stream
//! order equals the apply order.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ringkv::{Config, Engine, MemorySink, ScanOptions};

const THREADS: usize = 4;
const OPS: usize = 20_000;

#[test]
fn concurrent_writers_keep_every_invariant_and_the_stream_replays() {
    let sink = MemorySink::new();
    let config = Config {
        shards: 8,
        active_expire: false,
        ..Config::default()
    };
    let e = Engine::builder()
        .config(config.clone())
        .sink(sink.clone())
        .build()
        .expect("engine");
    for i in 0..500 {
        e.set(format!("stable:{i}"), "v").expect("set");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let drained = std::thread::scope(|s| {
        // Writers: counters, telemetry fields, paired keys written together.
        for t in 0..THREADS {
            let e = e.clone();
            s.spawn(move || {
                for i in 0..OPS {
                    e.incr(format!("counter:{}", i % 10)).expect("incr");
                    e.hset(format!("telemetry:{}", i % 4), [(format!("t{t}:{i}"), "1")])
                        .expect("hset");
                    if i % 10 == 0 {
                        e.mset([("pair:a", i.to_string()), ("pair:b", i.to_string())])
                            .expect("mset");
                        e.set(format!("tmp:{t}:{i}"), "x").expect("set");
                        e.rename(format!("tmp:{t}:{i}"), format!("moved:{t}:{}", (i / 10) % 50))
                            .expect("rename");
                    }
                }
            });
        }
        // Readers: paired keys are always seen equal; scans see every stable key.
        {
            let e = e.clone();
            let stop = stop.clone();
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let v = e.mget(["pair:a", "pair:b"]);
                    assert_eq!(v[0], v[1], "MSET was seen half-applied");
                    let keys: BTreeSet<_> = e
                        .scan_iter(ScanOptions::default().count(100).pattern("stable:*"))
                        .collect();
                    assert_eq!(keys.len(), 500);
                }
            });
        }
        // A consumer draining telemetry while it is written.
        let consumer = {
            let e = e.clone();
            let stop = stop.clone();
            s.spawn(move || {
                let mut got = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for h in 0..4 {
                        got.extend(
                            e.hdrain(format!("telemetry:{h}"), 100)
                                .expect("drain")
                                .into_iter()
                                .map(|(f, _)| f),
                        );
                    }
                }
                got
            })
        };
        // Stop the readers once the writers are done.
        let writers_done = {
            let e = e.clone();
            s.spawn(move || {
                while e.get("counter:9").expect("get").map(|v| v.to_vec())
                    != Some((THREADS * OPS / 10).to_string().into_bytes())
                {
                    std::thread::yield_now();
                }
            })
        };
        writers_done.join().expect("wait");
        stop.store(true, Ordering::Relaxed);
        consumer.join().expect("consumer")
    });

    // Counters: no increment lost.
    let total: i64 = (0..10)
        .map(|c| {
            let v = e.get(format!("counter:{c}")).expect("get").expect("counter");
            std::str::from_utf8(&v).expect("utf8").parse::<i64>().expect("int")
        })
        .sum();
    assert_eq!(total as usize, THREADS * OPS);
    // Telemetry: every field written was drained exactly once or is still there.
    let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
    for f in drained {
        assert!(seen.insert(f.to_vec()), "field {f:?} drained twice");
    }
    for h in 0..4 {
        for f in e.hkeys(format!("telemetry:{h}")).expect("hkeys") {
            assert!(seen.insert(f.to_vec()), "field {f:?} both drained and present");
        }
    }
    assert_eq!(seen.len(), THREADS * OPS);
    assert_eq!(
        (0..THREADS)
            .map(|t| (0..50)
                .filter(|i| e.key_type(format!("moved:{t}:{i}")).is_some())
                .count())
            .sum::<usize>(),
        THREADS * 50
    );
    assert_eq!(e.scan_iter(ScanOptions::default().pattern("tmp:*")).count(), 0);

    // The stream, replayed in order, reproduces the state.
    let replica = Engine::new(config).expect("replica");
    for m in sink.take() {
        replica.replay(&m).expect("replay");
    }
    assert_eq!(replica.digest(), e.digest());
}
