//! Throughput of GET, SET, HSET and INCR on [`ringkv::Engine`] against a
//! [`dashmap::DashMap`] doing the same work, with 1 and 2 threads, printed
//! side by side with the ratio ringkv / dashmap.
//!
//! Setup: a preloaded keyspace of `--keys` string keys `"key:%08d"` →
//! `"val:%08d"`, as many counters `"cnt:%08d"` → `"0"`, and `--keys / 10`
//! hashes `"hash:%08d"` of 10 fields `"field:%08d"` each. Every operation
//! picks a uniformly random existing key (xorshift, one stream per thread),
//! so every write overwrites.
//!
//! The dashmap side is a strong baseline: it hashes with ahash (as ringkv
//! does; dashmap's default is SipHash), overwrites in place through
//! `get_mut` and only allocates a key when it inserts one. Hashes are a
//! `DashMap<Bytes, hashbrown::HashMap<Bytes, Bytes>>`; INCR parses the
//! integer string under the entry's lock and writes the new one.
//!
//! Measurement: for each case, N threads (scoped, released together by a
//! barrier) each run `n` operations; `n` is calibrated so one run lasts
//! about `--secs`. Each case runs `--repeats` times, alternating ringkv and
//! dashmap, and the best run counts.
//!
//! `cargo bench -p ringkv-benches --bench ops [-- --keys 100000 --secs 1 --repeats 3 --threads 1,2 --ops get,set]`

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use ahash::RandomState;
use bytes::Bytes;
use clap::Parser;
use dashmap::DashMap;
use ringkv::{Config, Engine};
use ringkv_benches::{is_bench_run, CpuMonitor, KeyFmt, Rng, Table};

#[derive(Parser, Debug)]
#[command(about = "GET/SET/HSET/INCR throughput: ringkv vs DashMap")]
struct Args {
    /// Set by `cargo bench`; without it this is a short smoke run.
    #[arg(long, hide = true)]
    bench: bool,
    /// Preloaded string keys (and counters; hashes are a tenth of this).
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Target seconds per measured run.
    #[arg(long, default_value_t = 1.0)]
    secs: f64,
    /// Runs per case (the best one counts).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
    threads: Vec<usize>,
    /// Only these operations (get, set, hset, incr).
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
}

/// Fields per preloaded hash.
const FIELDS_PER_HASH: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Set,
    HSet,
    Incr,
}

impl Op {
    const ALL: [Op; 4] = [Op::Get, Op::Set, Op::HSet, Op::Incr];

    fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Set => "SET",
            Op::HSet => "HSET",
            Op::Incr => "INCR",
        }
    }
}

/// The keys and values every store is loaded with and operated on.
struct Workload {
    keys: Vec<Bytes>,
    counters: Vec<Bytes>,
    hashes: Vec<Bytes>,
    fields: Vec<Bytes>,
    set_value: Bytes,
    hset_value: Bytes,
}

impl Workload {
    fn new(n: usize) -> Workload {
        let make = |prefix: &str, n: usize| {
            let mut f = KeyFmt::new(prefix);
            (0..n as u64)
                .map(|i| Bytes::copy_from_slice(f.key(i)))
                .collect::<Vec<_>>()
        };
        Workload {
            keys: make("key:", n),
            counters: make("cnt:", n),
            hashes: make("hash:", (n / FIELDS_PER_HASH).max(1)),
            fields: make("field:", FIELDS_PER_HASH),
            set_value: Bytes::from_static(b"val:99999999"),
            hset_value: Bytes::from_static(b"hv:999999"),
        }
    }
}

/// What each compared store does for one operation.
trait Store: Sync {
    fn get(&self, key: &[u8]) -> usize;
    fn set(&self, key: &[u8], value: &Bytes);
    fn hset(&self, key: &[u8], field: &[u8], value: &Bytes);
    fn incr(&self, key: &[u8]) -> i64;
}

struct Ring(Engine);

impl Store for Ring {
    fn get(&self, key: &[u8]) -> usize {
        let v = self.0.get(key).expect("GET failed").expect("GET of a preloaded key");
        black_box(v).len()
    }
    fn set(&self, key: &[u8], value: &Bytes) {
        self.0.set(key, value.clone()).expect("SET failed");
    }
    fn hset(&self, key: &[u8], field: &[u8], value: &Bytes) {
        self.0.hset(key, [(field, value.clone())]).expect("HSET failed");
    }
    fn incr(&self, key: &[u8]) -> i64 {
        self.0.incr_by(key, 1).expect("INCR failed")
    }
}

struct Dash {
    strings: DashMap<Bytes, Bytes, RandomState>,
    hashes: DashMap<Bytes, hashbrown::HashMap<Bytes, Bytes>, RandomState>,
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

impl Store for Dash {
    fn get(&self, key: &[u8]) -> usize {
        let v = self
            .strings
            .get(key)
            .map(|v| v.clone())
            .expect("GET of a preloaded key");
        black_box(v).len()
    }
    fn set(&self, key: &[u8], value: &Bytes) {
        match self.strings.get_mut(key) {
            Some(mut v) => *v = value.clone(),
            None => {
                self.strings.insert(Bytes::copy_from_slice(key), value.clone());
            }
        }
    }
    fn hset(&self, key: &[u8], field: &[u8], value: &Bytes) {
        match self.hashes.get_mut(key) {
            Some(mut h) => match h.get_mut(field) {
                Some(v) => *v = value.clone(),
                None => {
                    h.insert(Bytes::copy_from_slice(field), value.clone());
                }
            },
            None => {
                let mut h = hashbrown::HashMap::new();
                h.insert(Bytes::copy_from_slice(field), value.clone());
                self.hashes.insert(Bytes::copy_from_slice(key), h);
            }
        }
    }
    fn incr(&self, key: &[u8]) -> i64 {
        match self.strings.get_mut(key) {
            Some(mut v) => {
                let n = parse_i64(&v).expect("counter holds an integer") + 1;
                *v = Bytes::from(n.to_string());
                n
            }
            None => {
                self.strings
                    .insert(Bytes::copy_from_slice(key), Bytes::from_static(b"1"));
                1
            }
        }
    }
}

fn preload(store: &impl Store, w: &Workload) {
    let mut vals = KeyFmt::new("val:");
    for (i, k) in w.keys.iter().enumerate() {
        store.set(k, &Bytes::copy_from_slice(vals.key(i as u64)));
    }
    let zero = Bytes::from_static(b"0");
    for k in &w.counters {
        store.set(k, &zero);
    }
    for h in &w.hashes {
        for f in &w.fields {
            store.hset(h, f, &w.hset_value);
        }
    }
}

/// Runs `n` operations of `op` on each of `threads` threads; returns the
/// longest per-thread time.
fn run(store: &impl Store, w: &Workload, op: Op, threads: usize, n: u64, seed: u64) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut rng = Rng::new(seed.wrapping_add(t as u64 * 7919));
                    barrier.wait();
                    let start = Instant::now();
                    let mut sink = 0u64;
                    match op {
                        Op::Get => {
                            for _ in 0..n {
                                sink += store.get(&w.keys[rng.below(w.keys.len())]) as u64;
                            }
                        }
                        Op::Set => {
                            for _ in 0..n {
                                store.set(&w.keys[rng.below(w.keys.len())], &w.set_value);
                            }
                        }
                        Op::HSet => {
                            for _ in 0..n {
                                let h = &w.hashes[rng.below(w.hashes.len())];
                                let f = &w.fields[rng.below(w.fields.len())];
                                store.hset(h, f, &w.hset_value);
                            }
                        }
                        Op::Incr => {
                            for _ in 0..n {
                                sink = sink.wrapping_add(store.incr(&w.counters[rng.below(w.counters.len())]) as u64);
                            }
                        }
                    }
                    black_box(sink);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .max()
            .unwrap_or_default()
    })
}

/// Operations per thread for one run of about `secs` seconds.
fn calibrate(store: &impl Store, w: &Workload, op: Op, threads: usize, secs: f64) -> u64 {
    let mut n = 1_000u64;
    loop {
        let d = run(store, w, op, threads, n, 1);
        if d >= Duration::from_millis(100) || n >= 1 << 32 {
            return ((n as f64 * secs / d.as_secs_f64()) as u64).max(1);
        }
        n *= 4;
    }
}

fn mops(threads: usize, n: u64, d: Duration) -> f64 {
    (threads as u64 * n) as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    let mut args = Args::parse();
    args.bench |= is_bench_run();
    if !args.bench {
        args.keys = args.keys.min(1_000);
        args.secs = args.secs.min(0.005);
        args.repeats = 1;
        println!("smoke run (no --bench flag): tiny sizes, numbers are meaningless");
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let w = Workload::new(args.keys);

    let engine = Engine::new(Config {
        active_expire: false,
        ..Config::default()
    })
    .expect("engine");
    let ring = Ring(engine);
    let dash = Dash {
        strings: DashMap::with_hasher(RandomState::new()),
        hashes: DashMap::with_hasher(RandomState::new()),
    };
    let t = Instant::now();
    preload(&ring, &w);
    preload(&dash, &w);
    println!(
        "ops: {} keys + {} counters + {} hashes x {} fields; {} cores; ringkv shards: {}; \
         {:.1} s per run, best of {}; preload {:.2} s",
        w.keys.len(),
        w.counters.len(),
        w.hashes.len(),
        FIELDS_PER_HASH,
        cores,
        ring.0.stats().shards,
        args.secs,
        args.repeats,
        t.elapsed().as_secs_f64()
    );

    let whole = CpuMonitor::start();
    let mut table = Table::new([
        "op",
        "threads",
        "ringkv Mops/s",
        "dashmap Mops/s",
        "ringkv/dashmap",
        "other procs' CPU (cores)",
    ]);
    let wanted = |op: Op| args.ops.is_empty() || args.ops.iter().any(|o| o.eq_ignore_ascii_case(op.name()));
    for op in Op::ALL.into_iter().filter(|&op| wanted(op)) {
        for &threads in &args.threads {
            let cpu = CpuMonitor::start();
            let n_ring = calibrate(&ring, &w, op, threads, args.secs);
            let n_dash = calibrate(&dash, &w, op, threads, args.secs);
            let (mut best_ring, mut best_dash) = (0.0f64, 0.0f64);
            for rep in 0..args.repeats {
                let seed = 100 + rep as u64;
                best_ring = best_ring.max(mops(threads, n_ring, run(&ring, &w, op, threads, n_ring, seed)));
                best_dash = best_dash.max(mops(threads, n_dash, run(&dash, &w, op, threads, n_dash, seed)));
            }
            println!(
                "  {:<4} {} thread(s): ringkv {best_ring:.2} Mops/s, dashmap {best_dash:.2} Mops/s",
                op.name(),
                threads
            );
            table.row([
                op.name().to_string(),
                threads.to_string(),
                format!("{best_ring:.2}"),
                format!("{best_dash:.2}"),
                format!("{:.2}", best_ring / best_dash),
                cpu.others_cores().map_or("?".to_string(), |c| format!("{c:.2}")),
            ]);
        }
    }
    println!("{}", whole.report());
    println!();
    table.print();
}
