//! The hot path's allocation contract (issue 13, item 2), counted by a
//! global allocator: reads of existing keys allocate nothing (GET, HGET;
//! MGET only its result and its key list), and overwrites through SET,
//! HSET and INCR copy no key (nor field) without a sink or with the ring
//! log; and the mutations the borrowed hot path logs are exactly the
//! owned ones a user's sink receives.

use bytes::Bytes;
use ringkv::log::record::decode_mutation;
use ringkv::{Config, Engine, MemorySink, Mutation};

/// Counts this thread's allocator calls while a closure runs (other test
/// threads are not counted). `unsafe` is what a global allocator takes; it
/// only forwards to the system allocator.
#[allow(unsafe_code)]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
        static CALLS: Cell<usize> = const { Cell::new(0) };
    }

    fn note() {
        let _ = ON.try_with(|on| {
            if on.get() {
                let _ = CALLS.try_with(|c| c.set(c.get() + 1));
            }
        });
    }

    // SAFETY: every call is forwarded unchanged to `System`; the counters
    // are const-initialized thread-local `Cell`s (no allocation, no destructor).
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note();
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note();
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note();
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Runs `f`; returns its result and the allocations (and reallocations)
    /// made on this thread meanwhile.
    pub fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, usize) {
        CALLS.with(|c| c.set(0));
        ON.with(|on| on.set(true));
        let out = f();
        ON.with(|on| on.set(false));
        (out, CALLS.with(Cell::get))
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

use counting::allocations_in;

/// Operations per measured loop.
const N: usize = 1_000;
/// Keys and fields longer than a `Blob` keeps inline, so that any copy of
/// one would allocate.
const KEYS: usize = 64;

fn key(i: usize) -> Vec<u8> {
    format!("a-long-key-that-is-not-inline:{i:04}").into_bytes()
}

fn hkey(i: usize) -> Vec<u8> {
    format!("a-long-hash-key-not-inline:{i:04}").into_bytes()
}

fn field(i: usize) -> Vec<u8> {
    format!("a-long-field-name-not-inline:{i:02}").into_bytes()
}

fn cnt(i: usize) -> Vec<u8> {
    format!("a-long-counter-key-not-inline:{i:04}").into_bytes()
}

fn engine(log: bool) -> Engine {
    let config = Config {
        active_expire: false,
        ..Config::default()
    };
    let b = Engine::builder().config(config);
    let b = if log { b.anonymous_log() } else { b };
    b.build().expect("engine")
}

/// Strings of `value_len` bytes, hashes of 8 fields, counters.
fn load(e: &Engine, value_len: usize) {
    let value = Bytes::from(vec![b'v'; value_len]);
    for i in 0..KEYS {
        e.set(key(i), value.clone()).expect("set");
        e.set(cnt(i), "0").expect("set");
        for f in 0..8 {
            e.hset(hkey(i), [(field(f), value.clone())]).expect("hset");
        }
    }
}

#[test]
fn reads_of_existing_keys_allocate_nothing() {
    for value_len in [8, 100] {
        let e = engine(false);
        load(&e, value_len);
        let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
        let hkeys: Vec<Vec<u8>> = (0..KEYS).map(hkey).collect();
        let fields: Vec<Vec<u8>> = (0..8).map(field).collect();

        let (bytes, allocs) = allocations_in(|| {
            let mut total = 0;
            for i in 0..N {
                total += e.get(&keys[i % KEYS]).expect("get").expect("present").len();
            }
            total
        });
        assert_eq!(bytes, N * value_len);
        assert_eq!(allocs, 0, "GET of {value_len}-byte values: {allocs} allocations in {N}");

        let (bytes, allocs) = allocations_in(|| {
            let mut total = 0;
            for i in 0..N {
                total += e
                    .hget(&hkeys[i % KEYS], &fields[i % 8])
                    .expect("hget")
                    .expect("present")
                    .len();
            }
            total
        });
        assert_eq!(bytes, N * value_len);
        assert_eq!(
            allocs, 0,
            "HGET of {value_len}-byte values: {allocs} allocations in {N}"
        );

        // MGET returns a list: it allocates that and its key list, nothing per key.
        let (found, allocs) = allocations_in(|| {
            let mut found = 0;
            for i in 0..N {
                let ks = [&keys[i % KEYS], &keys[(i * 7 + 3) % KEYS], &keys[(i * 13 + 5) % KEYS]];
                found += e.mget(ks).iter().flatten().filter(|v| v.len() == value_len).count();
            }
            found
        });
        assert_eq!(found, 3 * N);
        assert_eq!(
            allocs,
            2 * N,
            "MGET of 3 keys, {value_len}-byte values: {allocs} allocations in {N}"
        );
    }
}

/// SET, HSET and INCR overwriting existing keys: with an inline value
/// nothing is allocated (no key, field or mutation copy); `log` adds the
/// anonymous ring log, which encodes into a reused buffer.
fn overwrites_allocate_nothing(log: bool) {
    let e = engine(log);
    load(&e, 8);
    let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    let hkeys: Vec<Vec<u8>> = (0..KEYS).map(hkey).collect();
    let fields: Vec<Vec<u8>> = (0..8).map(field).collect();
    let counters: Vec<Vec<u8>> = (0..KEYS).map(cnt).collect();
    let value = Bytes::from_static(b"new-val!");
    // Warm the log's thread-local encode buffer.
    e.set(&keys[0], value.clone()).expect("set");

    let ((), allocs) = allocations_in(|| {
        for i in 0..N {
            e.set(&keys[i % KEYS], value.clone()).expect("set");
        }
    });
    assert_eq!(allocs, 0, "SET (log: {log}): {allocs} allocations in {N}");

    let (created, allocs) = allocations_in(|| {
        let mut created = 0;
        for i in 0..N {
            created += e
                .hset(&hkeys[i % KEYS], [(&fields[i % 8], value.clone())])
                .expect("hset");
        }
        created
    });
    assert_eq!(created, 0);
    assert_eq!(allocs, 0, "HSET (log: {log}): {allocs} allocations in {N}");

    let (sum, allocs) = allocations_in(|| {
        let mut sum = 0;
        for i in 0..N {
            sum += e.incr_by(&counters[i % KEYS], 1).expect("incr");
        }
        sum
    });
    // Counter k ends at its number of increments; the sum of the results
    // is the sum of 1..=that over every counter.
    let per = (N / KEYS) as i64;
    assert_eq!(sum, KEYS as i64 * per * (per + 1) / 2 + (N % KEYS) as i64 * (per + 1));
    assert_eq!(allocs, 0, "INCR (log: {log}): {allocs} allocations in {N}");

    assert_eq!(e.get(&keys[5]).expect("get").expect("present"), &b"new-val!"[..]);
    assert_eq!(
        e.hget(&hkeys[5], &fields[5]).expect("hget").expect("present"),
        &b"new-val!"[..]
    );
}

#[test]
fn overwrites_without_a_sink_allocate_nothing() {
    overwrites_allocate_nothing(false);
}

#[test]
fn overwrites_with_the_ring_log_allocate_nothing() {
    overwrites_allocate_nothing(true);
}

/// The same writes on an engine with the ring log (borrowed hot path,
/// encoded once) and on one with a user's sink (owned mutations): the
/// log's records decode to exactly the sink's mutations, and replaying
/// them rebuilds the logged engine's state.
#[test]
fn the_hot_path_logs_what_a_sink_receives() {
    let logged = engine(true);
    let sink = MemorySink::new();
    let sunk = Engine::builder()
        .config(Config {
            active_expire: false,
            ..Config::default()
        })
        .sink(sink.clone())
        .build()
        .expect("engine");
    let long = Bytes::from(vec![b'x'; 100]);
    for e in [&logged, &sunk] {
        e.set("k", "v").expect("set");
        e.set(key(1), long.clone()).expect("set");
        e.set_with("ttl", "t", ringkv::SetOptions::new().pxat(4_000_000_000_000))
            .expect("set_with");
        e.set_with("ttl", "u", ringkv::SetOptions::new().keepttl())
            .expect("set_with");
        assert_eq!(e.incr_by("n", 5).expect("incr"), 5);
        assert_eq!(e.incr_by("n", -12).expect("incr"), -7);
        assert_eq!(e.hset("h", [("f", "1")]).expect("hset"), 1);
        assert_eq!(e.hset("h", [("f", "2"), ("g", "3"), ("f", "4")]).expect("hset"), 1);
        assert_eq!(e.hset(hkey(2), [(field(3), long.clone())]).expect("hset"), 1);
        assert!(e.hset("k", [("f", "1")]).is_err(), "HSET on a string is WRONGTYPE");
        assert!(e.incr_by("h", 1).is_err(), "INCR on a hash is WRONGTYPE");
    }
    let expected = sink.take();
    assert_eq!(expected.len(), 9);
    let view = logged.log().expect("log");
    let batch = view.read(0, 1 << 20).expect("read");
    let logged_mutations: Vec<Mutation> = batch
        .records
        .into_iter()
        .map(|(_, payload)| decode_mutation(payload).expect("decodes"))
        .collect();
    assert_eq!(logged_mutations, expected);

    let replayed = engine(false);
    for m in &logged_mutations {
        replayed.replay(m).expect("replay");
    }
    assert_eq!(replayed.digest(), logged.digest());
    assert_eq!(sunk.digest(), logged.digest());
}
