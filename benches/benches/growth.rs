//! Worst single-insert latency while a map grows from empty to `--keys` keys
//! (default 10,000,000; `RINGKV_GROWTH_KEYS` or the first argument lowers it).
//!
//! Inserts `"key:%08d"` → a 12-byte value, timing each insert with
//! [`Instant`], into, one after the other (each dropped before the next):
//! - `ringkv::Engine` with `Config::default()` (default shard count, active
//!   expiry and background rehash on);
//! - the same with `active_expire: false` (no background thread: only the
//!   inserts themselves move buckets);
//! - `hashbrown::HashMap<Bytes, Bytes>` (single thread, default hasher);
//! - `dashmap::DashMap<Bytes, Bytes>` (ahash, default shard count).
//!
//! The key is formatted into a reused buffer outside the timed section; the
//! timed section is the store's insert of that byte slice (the maps copy it
//! into a `Bytes`; ringkv copies it itself). A first row times an empty
//! insert: the timer's own cost and the noise floor of the machine (the
//! scheduler, interrupts), which bounds what "worst insert" can mean here.
//!
//! `cargo bench -p ringkv-benches --bench growth [-- --keys 10000000 --only ringkv,hashbrown]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use dashmap::DashMap;
use ringkv::{Config, Engine};
use ringkv_benches::{fmt_duration, fmt_ns, is_bench_run, percentile, size_setting, KeyFmt, Table};

#[derive(Parser, Debug)]
#[command(about = "Worst single-insert latency while growing: ringkv vs hashbrown vs DashMap")]
struct Args {
    /// Set by `cargo bench`; without it this is a short smoke run.
    #[arg(long, hide = true)]
    bench: bool,
    /// Keys to insert (default 10,000,000, or RINGKV_GROWTH_KEYS).
    #[arg(long)]
    keys: Option<u64>,
    /// Same as --keys.
    #[arg(conflicts_with = "keys")]
    keys_pos: Option<u64>,
    /// Only these stores (noop, ringkv, ringkv-noexpire, hashbrown, dashmap).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

struct Outcome {
    total: Duration,
    sorted: Vec<u64>,
    worst: Vec<(u64, usize)>,
}

/// Inserts keys `0..n` with `insert`, timing each call.
fn grow(n: u64, mut insert: impl FnMut(&[u8])) -> Outcome {
    let mut lat: Vec<u32> = Vec::with_capacity(n as usize);
    let mut keys = KeyFmt::new("key:");
    let start = Instant::now();
    for i in 0..n {
        let k = keys.key(i);
        let t = Instant::now();
        insert(k);
        let d = t.elapsed();
        lat.push(u32::try_from(d.as_nanos()).unwrap_or(u32::MAX));
    }
    let total = start.elapsed();
    // The five worst inserts and when they happened.
    let mut worst: Vec<(u64, usize)> = Vec::with_capacity(6);
    for (i, &l) in lat.iter().enumerate() {
        let l = u64::from(l);
        if worst.len() < 5 || l > worst[worst.len() - 1].0 {
            worst.push((l, i));
            worst.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            worst.truncate(5);
        }
    }
    let mut sorted: Vec<u64> = lat.into_iter().map(u64::from).collect();
    sorted.sort_unstable();
    Outcome { total, sorted, worst }
}

fn main() {
    let mut args = Args::parse();
    args.bench |= is_bench_run();
    let mut n = size_setting(args.keys.or(args.keys_pos), "RINGKV_GROWTH_KEYS", 10_000_000);
    if !args.bench {
        n = n.min(20_000);
        println!("smoke run (no --bench flag): tiny sizes, numbers are meaningless");
    }
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let value = Bytes::from_static(b"val:00000000");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("growth: {n} inserts of \"key:%08d\" -> 12-byte value, each timed; {cores} cores");

    let mut table = Table::new([
        "store",
        "total",
        "mean",
        "p99.9",
        "p99.99",
        "max",
        "inserts > 100 µs",
        "inserts > 1 ms",
    ]);
    let mut report = |name: &str, o: Outcome| {
        let s = &o.sorted;
        let over = |limit: u64| s.len() - s.partition_point(|&x| x <= limit);
        let worst: Vec<String> = o
            .worst
            .iter()
            .map(|(l, i)| format!("{} at #{}", fmt_ns(*l as f64), i))
            .collect();
        println!("  {name}: total {}; worst: {}", fmt_duration(o.total), worst.join(", "));
        table.row([
            name.to_string(),
            fmt_duration(o.total),
            fmt_ns(s.iter().sum::<u64>() as f64 / s.len().max(1) as f64),
            fmt_ns(percentile(s, 99.9) as f64),
            fmt_ns(percentile(s, 99.99) as f64),
            fmt_ns(s.last().copied().unwrap_or(0) as f64),
            over(100_000).to_string(),
            over(1_000_000).to_string(),
        ]);
    };

    if wanted("noop") {
        let mut sink = 0usize;
        let o = grow(n, |k| sink += black_box(k).len());
        black_box(sink);
        report("no-op (timer only)", o);
    }
    for (name, active_expire) in [("ringkv", true), ("ringkv-noexpire", false)] {
        if !wanted(name) {
            continue;
        }
        let engine = Engine::new(Config {
            active_expire,
            ..Config::default()
        })
        .expect("engine");
        let shards = engine.stats().shards;
        let o = grow(n, |k| engine.set(k, value.clone()).expect("SET"));
        assert_eq!(engine.dbsize(), n);
        let label = if active_expire {
            format!("ringkv::Engine ({shards} shards, default config)")
        } else {
            format!("ringkv::Engine ({shards} shards, active_expire off)")
        };
        report(&label, o);
        let t = Instant::now();
        drop(engine);
        println!("    dropped in {}", fmt_duration(t.elapsed()));
    }
    if wanted("hashbrown") {
        let mut map: hashbrown::HashMap<Bytes, Bytes> = hashbrown::HashMap::new();
        let o = grow(n, |k| {
            map.insert(Bytes::copy_from_slice(k), value.clone());
        });
        assert_eq!(map.len() as u64, n);
        report("hashbrown::HashMap (1 thread)", o);
        let t = Instant::now();
        drop(map);
        println!("    dropped in {}", fmt_duration(t.elapsed()));
    }
    if wanted("dashmap") {
        let map: DashMap<Bytes, Bytes, ahash::RandomState> = DashMap::with_hasher(ahash::RandomState::new());
        let o = grow(n, |k| {
            map.insert(Bytes::copy_from_slice(k), value.clone());
        });
        assert_eq!(map.len() as u64, n);
        report("dashmap::DashMap", o);
        let t = Instant::now();
        drop(map);
        println!("    dropped in {}", fmt_duration(t.elapsed()));
    }
    println!();
    table.print();
}
