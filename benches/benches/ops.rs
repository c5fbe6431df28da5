//! Throughput of GET, SET, HSET, INCR, MGET and HGET on [`ringkv::Engine`]
//! against a [`dashmap::DashMap`] and an [`scc::HashMap`] (the fastest map
//! in conc-map-bench) doing the same work, with 1 and 2 threads, printed
//! side by side with the ratios to DashMap.
//!
//! Setup, for each `--keys` count and each `--values` size: a preloaded
//! keyspace of `--keys` string keys `"key:%08d"` → a value of that many
//! bytes, as many counters `"cnt:%08d"` → `"0"`, and `--keys / 10` hashes
//! `"hash:%08d"` of 10 fields `"field:%08d"` each (values of that size).
//! Every operation picks uniformly random existing keys (xorshift, one
//! stream per thread), so every write overwrites. MGET reads 2 keys. INCR
//! does not depend on the value size and runs with the first one only.
//!
//! The maps are strong baselines: they hash with ahash (as ringkv does;
//! dashmap's default is SipHash), overwrite in place and only allocate a
//! key when they insert one. Hashes are maps of `Bytes` to
//! `hashbrown::HashMap<Bytes, Bytes>`; INCR parses the integer string under
//! the entry's lock and writes the new one.
//!
//! After the no-log rows, SET, HSET and INCR run on ringkv with an
//! anonymous ring log and with a data directory in durability `none`
//! (`--logs`), each against DashMap again in the same run.
//!
//! Measurement: for each case, N threads (scoped, released together by a
//! barrier) each run `n` operations; `n` is calibrated so one run lasts
//! about `--secs`. Each case runs `--repeats` times, alternating the
//! stores, and the best run counts.
//!
//! `cargo bench -p ringkv-benches --bench ops [-- --keys 100000,10000000 --values 8,100 --secs 0.5 --repeats 3 --threads 1,2 --ops get,set --logs true]`
//!
//! 10M keys hold about 9 GB across the three stores; `--secs 0.5
//! --repeats 2` keeps that run to a few minutes.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use ahash::RandomState;
use bytes::Bytes;
use clap::Parser;
use dashmap::DashMap;
use ringkv::{Config, Durability, Engine, LogConfig};
use ringkv_benches::{is_bench_run, CpuMonitor, KeyFmt, Rng, Table};

#[derive(Parser, Debug)]
#[command(about = "GET/SET/HSET/INCR/MGET/HGET throughput: ringkv vs DashMap vs scc::HashMap")]
struct Args {
    /// Set by `cargo bench`; without it this is a short smoke run.
    #[arg(long, hide = true)]
    bench: bool,
    /// Preloaded string keys (and counters; hashes are a tenth of this), one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [100_000])]
    keys: Vec<usize>,
    /// Value sizes in bytes, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 100])]
    values: Vec<usize>,
    /// Target seconds per measured run.
    #[arg(long, default_value_t = 0.5)]
    secs: f64,
    /// Runs per case (the best one counts).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
    threads: Vec<usize>,
    /// Only these operations (get, set, hset, incr, mget, hget).
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
    /// Also run SET/HSET/INCR with an anonymous log and a data directory in `none`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    logs: bool,
}

/// Fields per preloaded hash.
const FIELDS_PER_HASH: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Set,
    HSet,
    Incr,
    MGet,
    HGet,
}

impl Op {
    const ALL: [Op; 6] = [Op::Get, Op::Set, Op::HSet, Op::Incr, Op::MGet, Op::HGet];
    const WRITES: [Op; 3] = [Op::Set, Op::HSet, Op::Incr];

    fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Set => "SET",
            Op::HSet => "HSET",
            Op::Incr => "INCR",
            Op::MGet => "MGET",
            Op::HGet => "HGET",
        }
    }
}

/// The keys and values every store is loaded with and operated on.
struct Workload {
    keys: Vec<Bytes>,
    counters: Vec<Bytes>,
    hashes: Vec<Bytes>,
    fields: Vec<Bytes>,
    value_len: usize,
    set_value: Bytes,
    hset_value: Bytes,
}

impl Workload {
    fn new(n: usize, value_len: usize) -> Workload {
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
            value_len,
            set_value: Bytes::from(vec![b's'; value_len]),
            hset_value: Bytes::from(vec![b'h'; value_len]),
        }
    }

    /// The preloaded value of string key `i`: `"val:%08d"`, padded or cut
    /// to the value size.
    fn value(&self, fmt: &mut KeyFmt, i: usize) -> Bytes {
        let mut v = fmt.key(i as u64).to_vec();
        v.resize(self.value_len, b'.');
        Bytes::from(v)
    }
}

/// What each compared store does for one operation.
trait Store: Sync {
    fn get(&self, key: &[u8]) -> usize;
    fn set(&self, key: &[u8], value: &Bytes);
    fn hset(&self, key: &[u8], field: &[u8], value: &Bytes);
    fn incr(&self, key: &[u8]) -> i64;
    fn mget(&self, keys: [&[u8]; 2]) -> usize;
    fn hget(&self, key: &[u8], field: &[u8]) -> usize;
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
    fn mget(&self, keys: [&[u8]; 2]) -> usize {
        let vs = self.0.mget(keys);
        black_box(vs).iter().map(|v| v.as_ref().map_or(0, |v| v.len())).sum()
    }
    fn hget(&self, key: &[u8], field: &[u8]) -> usize {
        let v = self
            .0
            .hget(key, field)
            .expect("HGET failed")
            .expect("HGET of a preloaded field");
        black_box(v).len()
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
    fn mget(&self, keys: [&[u8]; 2]) -> usize {
        let vs: Vec<Option<Bytes>> = keys.iter().map(|k| self.strings.get(*k).map(|v| v.clone())).collect();
        black_box(vs).iter().map(|v| v.as_ref().map_or(0, |v| v.len())).sum()
    }
    fn hget(&self, key: &[u8], field: &[u8]) -> usize {
        let v = self
            .hashes
            .get(key)
            .and_then(|h| h.get(field).cloned())
            .expect("HGET of a preloaded field");
        black_box(v).len()
    }
}

struct Scc {
    strings: scc::HashMap<Bytes, Bytes, RandomState>,
    hashes: scc::HashMap<Bytes, hashbrown::HashMap<Bytes, Bytes>, RandomState>,
}

impl Store for Scc {
    fn get(&self, key: &[u8]) -> usize {
        let v = self
            .strings
            .read(key, |_, v| v.clone())
            .expect("GET of a preloaded key");
        black_box(v).len()
    }
    fn set(&self, key: &[u8], value: &Bytes) {
        if self.strings.update(key, |_, v| *v = value.clone()).is_none() {
            let _ = self.strings.insert(Bytes::copy_from_slice(key), value.clone());
        }
    }
    fn hset(&self, key: &[u8], field: &[u8], value: &Bytes) {
        let updated = self.hashes.update(key, |_, h| match h.get_mut(field) {
            Some(v) => *v = value.clone(),
            None => {
                h.insert(Bytes::copy_from_slice(field), value.clone());
            }
        });
        if updated.is_none() {
            let mut h = hashbrown::HashMap::new();
            h.insert(Bytes::copy_from_slice(field), value.clone());
            let _ = self.hashes.insert(Bytes::copy_from_slice(key), h);
        }
    }
    fn incr(&self, key: &[u8]) -> i64 {
        let n = self.strings.update(key, |_, v| {
            let n = parse_i64(v).expect("counter holds an integer") + 1;
            *v = Bytes::from(n.to_string());
            n
        });
        match n {
            Some(n) => n,
            None => {
                let _ = self
                    .strings
                    .insert(Bytes::copy_from_slice(key), Bytes::from_static(b"1"));
                1
            }
        }
    }
    fn mget(&self, keys: [&[u8]; 2]) -> usize {
        let vs: Vec<Option<Bytes>> = keys.iter().map(|k| self.strings.read(*k, |_, v| v.clone())).collect();
        black_box(vs).iter().map(|v| v.as_ref().map_or(0, |v| v.len())).sum()
    }
    fn hget(&self, key: &[u8], field: &[u8]) -> usize {
        let v = self
            .hashes
            .read(key, |_, h| h.get(field).cloned())
            .flatten()
            .expect("HGET of a preloaded field");
        black_box(v).len()
    }
}

fn preload(store: &impl Store, w: &Workload) {
    let mut vals = KeyFmt::new("val:");
    for (i, k) in w.keys.iter().enumerate() {
        store.set(k, &w.value(&mut vals, i));
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
                        Op::MGet => {
                            for _ in 0..n {
                                let a = &w.keys[rng.below(w.keys.len())];
                                let b = &w.keys[rng.below(w.keys.len())];
                                sink += store.mget([a, b]) as u64;
                            }
                        }
                        Op::HGet => {
                            for _ in 0..n {
                                let h = &w.hashes[rng.below(w.hashes.len())];
                                let f = &w.fields[rng.below(w.fields.len())];
                                sink += store.hget(h, f) as u64;
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

/// A ringkv engine without a log, with an anonymous log, or with a data
/// directory in durability `none` (1 GiB ring).
fn ring_engine(log: &str, dir: Option<&std::path::Path>) -> Engine {
    let config = Config {
        active_expire: false,
        log: LogConfig {
            capacity: 1 << 30,
            durability: Durability::None,
            ..LogConfig::default()
        },
        ..Config::default()
    };
    let b = Engine::builder().config(config);
    let b = match (log, dir) {
        ("anonymous log", _) => b.anonymous_log(),
        ("data dir, none", Some(dir)) => b.data_dir(dir),
        _ => b,
    };
    b.build().expect("engine")
}

/// The best Mops/s of each store over `repeats` alternating runs of `op`.
fn measure(stores: &[&dyn StoreDyn], w: &Workload, op: Op, threads: usize, args: &Args) -> Vec<f64> {
    let ns: Vec<u64> = stores.iter().map(|s| s.calibrate(w, op, threads, args.secs)).collect();
    let mut best = vec![0.0f64; stores.len()];
    for rep in 0..args.repeats {
        let seed = 100 + rep as u64;
        for (i, s) in stores.iter().enumerate() {
            best[i] = best[i].max(mops(threads, ns[i], s.run(w, op, threads, ns[i], seed)));
        }
    }
    best
}

/// Object-safe runs over a [`Store`].
trait StoreDyn: Sync {
    fn run(&self, w: &Workload, op: Op, threads: usize, n: u64, seed: u64) -> Duration;
    fn calibrate(&self, w: &Workload, op: Op, threads: usize, secs: f64) -> u64;
}

impl<S: Store> StoreDyn for S {
    fn run(&self, w: &Workload, op: Op, threads: usize, n: u64, seed: u64) -> Duration {
        run(self, w, op, threads, n, seed)
    }
    fn calibrate(&self, w: &Workload, op: Op, threads: usize, secs: f64) -> u64 {
        calibrate(self, w, op, threads, secs)
    }
}

fn main() {
    let mut args = Args::parse();
    args.bench |= is_bench_run();
    if !args.bench {
        args.keys = vec![1_000];
        args.secs = args.secs.min(0.005);
        args.repeats = 1;
        println!("smoke run (no --bench flag): tiny sizes, numbers are meaningless");
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let whole = CpuMonitor::start();
    let mut table = Table::new([
        "keys",
        "value B",
        "op",
        "threads",
        "ringkv Mops/s",
        "dashmap Mops/s",
        "scc Mops/s",
        "ringkv/dashmap",
        "scc/dashmap",
        "other procs' CPU (cores)",
    ]);
    let wanted = |op: Op| args.ops.is_empty() || args.ops.iter().any(|o| o.eq_ignore_ascii_case(op.name()));
    for &keys in &args.keys {
        for (vi, &value_len) in args.values.iter().enumerate() {
            let w = Workload::new(keys, value_len);
            let ops: Vec<Op> = Op::ALL
                .into_iter()
                .filter(|&op| wanted(op) && (vi == 0 || op != Op::Incr))
                .collect();
            let dash = Dash {
                strings: DashMap::with_hasher(RandomState::new()),
                hashes: DashMap::with_hasher(RandomState::new()),
            };
            let t = Instant::now();
            preload(&dash, &w);
            {
                let ring = Ring(ring_engine("no log", None));
                let scc = Scc {
                    strings: scc::HashMap::with_hasher(RandomState::new()),
                    hashes: scc::HashMap::with_hasher(RandomState::new()),
                };
                preload(&ring, &w);
                preload(&scc, &w);
                println!(
                    "ops: {} keys of {value_len} B + {} counters + {} hashes x {} fields; {} cores; \
                     ringkv shards: {}; {:.1} s per run, best of {}; preload {:.2} s",
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
                for &op in &ops {
                    for &threads in &args.threads {
                        let cpu = CpuMonitor::start();
                        let best = measure(&[&ring, &dash, &scc], &w, op, threads, &args);
                        let (r, d, s) = (best[0], best[1], best[2]);
                        println!(
                            "  {:<4} {} thread(s): ringkv {r:.2}, dashmap {d:.2}, scc {s:.2} Mops/s",
                            op.name(),
                            threads
                        );
                        table.row([
                            keys.to_string(),
                            value_len.to_string(),
                            op.name().to_string(),
                            threads.to_string(),
                            format!("{r:.2}"),
                            format!("{d:.2}"),
                            format!("{s:.2}"),
                            format!("{:.2}", r / d),
                            format!("{:.2}", s / d),
                            cpu.others_cores().map_or("?".to_string(), |c| format!("{c:.2}")),
                        ]);
                    }
                }
            }
            if !args.logs {
                continue;
            }
            for log in ["anonymous log", "data dir, none"] {
                let dir = tempfile::tempdir().expect("tempdir");
                let ring = Ring(ring_engine(log, Some(dir.path())));
                preload(&ring, &w);
                for &op in ops.iter().filter(|op| Op::WRITES.contains(op)) {
                    for &threads in &args.threads {
                        let cpu = CpuMonitor::start();
                        let best = measure(&[&ring, &dash], &w, op, threads, &args);
                        let (r, d) = (best[0], best[1]);
                        println!(
                            "  {:<4} ({log}) {threads} thread(s): ringkv {r:.2}, dashmap {d:.2} Mops/s",
                            op.name()
                        );
                        table.row([
                            keys.to_string(),
                            value_len.to_string(),
                            format!("{} ({log})", op.name()),
                            threads.to_string(),
                            format!("{r:.2}"),
                            format!("{d:.2}"),
                            "-".to_string(),
                            format!("{:.2}", r / d),
                            "-".to_string(),
                            cpu.others_cores().map_or("?".to_string(), |c| format!("{c:.2}")),
                        ]);
                    }
                }
            }
        }
    }
    println!("{}", whole.report());
    println!();
    table.print();
}
