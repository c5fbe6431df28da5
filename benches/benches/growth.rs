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
//! Each store runs in a child process of its own (unless `--in-process`), so
//! no allocator state carries over from one store to the next: glibc raises
//! its mmap threshold when large blocks are freed, which changes whether a
//! later large zeroed allocation is a fresh mapping or a `memset`.
//!
//! With `--attribute`, each ringkv insert is followed (untimed) by a look at
//! `Stats::rehashing_shards`, and the slow inserts are matched with the
//! inserts that started or finished a shard's resize.
//!
//! `cargo bench -p ringkv-benches --bench growth [-- --keys 10000000 --only ringkv,hashbrown --attribute]`

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use dashmap::DashMap;
use ringkv::{Config, Engine};
use ringkv_benches::{fmt_duration, fmt_ns, is_bench_run, percentile, size_setting, CpuMonitor, KeyFmt, Table};

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
    /// Diagnostic: after every ringkv insert (untimed), read
    /// `Stats::rehashing_shards` to tell which inserts started or finished a
    /// shard's resize, and attribute the slow inserts. Slow: adds a few µs
    /// per insert to the run (not to the timings).
    #[arg(long)]
    attribute: bool,
    /// Run every store in this process instead of one child process each.
    #[arg(long)]
    in_process: bool,
    /// Internal: print the table row for the parent process.
    #[arg(long, hide = true)]
    row_output: bool,
}

/// The stores, in the order they run.
const STORES: [&str; 5] = ["noop", "ringkv", "ringkv-noexpire", "hashbrown", "dashmap"];

const HEADERS: [&str; 9] = [
    "store",
    "total",
    "mean",
    "p99.9",
    "p99.99",
    "max",
    "inserts > 100 µs",
    "inserts > 1 ms",
    "other procs' CPU (cores)",
];

struct Outcome {
    total: Duration,
    /// Latency of each insert in ns, in insert order.
    lat: Vec<u32>,
}

impl Outcome {
    /// The `k` worst inserts as (ns, index), worst first.
    fn worst(&self, k: usize) -> Vec<(u64, usize)> {
        let mut worst: Vec<(u64, usize)> = Vec::with_capacity(k + 1);
        for (i, &l) in self.lat.iter().enumerate() {
            let l = u64::from(l);
            if worst.len() < k || l > worst[worst.len() - 1].0 {
                worst.push((l, i));
                worst.sort_unstable_by_key(|w| std::cmp::Reverse(w.0));
                worst.truncate(k);
            }
        }
        worst
    }
}

/// Inserts keys `0..n` with `insert`, timing each call; `after(i)` runs
/// after insert `i`, outside the timed section.
fn grow(n: u64, mut insert: impl FnMut(&[u8]), mut after: impl FnMut(usize)) -> Outcome {
    let mut lat: Vec<u32> = Vec::with_capacity(n as usize);
    let mut keys = KeyFmt::new("key:");
    let start = Instant::now();
    for i in 0..n {
        let k = keys.key(i);
        let t = Instant::now();
        insert(k);
        let d = t.elapsed();
        lat.push(u32::try_from(d.as_nanos()).unwrap_or(u32::MAX));
        after(i as usize);
    }
    Outcome {
        total: start.elapsed(),
        lat,
    }
}

/// Prints which slow inserts started or finished a shard's resize.
/// `events` holds (insert index, change of `rehashing_shards` across it).
fn attribute(o: &Outcome, events: &[(usize, i64)]) {
    let event_at = |i: usize| events.binary_search_by_key(&i, |e| e.0).ok().map(|p| events[p].1);
    let finishes: Vec<u64> = events
        .iter()
        .filter(|e| e.1 < 0)
        .map(|e| u64::from(o.lat[e.0]))
        .collect();
    let starts = events.iter().filter(|e| e.1 > 0).count();
    let mut sorted_finishes = finishes.clone();
    sorted_finishes.sort_unstable();
    println!(
        "    attribution: {starts} inserts started a shard resize, {} finished one; inserts that finished one: \
         median {}, max {}",
        finishes.len(),
        fmt_ns(percentile(&sorted_finishes, 50.0) as f64),
        fmt_ns(sorted_finishes.last().copied().unwrap_or(0) as f64)
    );
    let slow: Vec<usize> = (0..o.lat.len()).filter(|&i| o.lat[i] > 100_000).collect();
    let finishing = slow.iter().filter(|&&i| event_at(i).is_some_and(|d| d < 0)).count();
    let starting = slow.iter().filter(|&&i| event_at(i).is_some_and(|d| d > 0)).count();
    println!(
        "    of {} inserts > 100 µs: {finishing} finished a shard resize, {starting} started one, {} neither",
        slow.len(),
        slow.len() - finishing - starting
    );
    let tagged: Vec<String> = o
        .worst(10)
        .iter()
        .map(|&(l, i)| {
            let tag = match event_at(i) {
                Some(d) if d < 0 => "finished a resize",
                Some(_) => "started a resize",
                None => "no resize event",
            };
            format!("{} at #{i} ({tag})", fmt_ns(l as f64))
        })
        .collect();
    println!("    10 worst: {}", tagged.join(", "));
    let slow_events: Vec<String> = events
        .iter()
        .filter(|e| o.lat[e.0] > 50_000)
        .map(|e| {
            let what = if e.1 < 0 { "finished" } else { "started" };
            format!("#{} {what} ({})", e.0, fmt_ns(f64::from(o.lat[e.0])))
        })
        .collect();
    println!("    resize events slower than 50 µs: {}", slow_events.join(", "));
}

/// Prints the worst inserts and returns the table row of one store.
/// The row for a store, then the store dropped with the time that takes
/// (freeing 10M entries is part of what a user of the store pays).
fn summarize_and_drop<T>(name: &str, o: Outcome, during: &CpuMonitor, store: T) -> Vec<String> {
    let row = summarize(name, o, during);
    let t = Instant::now();
    drop(store);
    println!("    dropped in {}", fmt_duration(t.elapsed()));
    row
}

fn summarize(name: &str, o: Outcome, during: &CpuMonitor) -> Vec<String> {
    let worst: Vec<String> = o
        .worst(5)
        .iter()
        .map(|(l, i)| format!("{} at #{}", fmt_ns(*l as f64), i))
        .collect();
    println!("  {name}: total {}; worst: {}", fmt_duration(o.total), worst.join(", "));
    let mut sorted: Vec<u64> = o.lat.into_iter().map(u64::from).collect();
    sorted.sort_unstable();
    let s = &sorted;
    let over = |limit: u64| s.len() - s.partition_point(|&x| x <= limit);
    vec![
        name.to_string(),
        fmt_duration(o.total),
        fmt_ns(s.iter().sum::<u64>() as f64 / s.len().max(1) as f64),
        fmt_ns(percentile(s, 99.9) as f64),
        fmt_ns(percentile(s, 99.99) as f64),
        fmt_ns(s.last().copied().unwrap_or(0) as f64),
        over(100_000).to_string(),
        over(1_000_000).to_string(),
        during.others_cores().map_or("?".to_string(), |c| format!("{c:.2}")),
    ]
}

/// Grows one store from empty to `n` keys in this process; returns its row.
fn run_store(store: &str, n: u64, attribute_resizes: bool) -> Vec<String> {
    let value = Bytes::from_static(b"val:00000000");
    match store {
        "noop" => {
            let mut sink = 0usize;
            let during = CpuMonitor::start();
            let o = grow(n, |k| sink += black_box(k).len(), |_| {});
            black_box(sink);
            summarize("no-op (timer only)", o, &during)
        }
        "ringkv" | "ringkv-noexpire" => {
            let active_expire = store == "ringkv";
            let engine = Engine::new(Config {
                active_expire,
                ..Config::default()
            })
            .expect("engine");
            let shards = engine.stats().shards;
            let during = CpuMonitor::start();
            let mut events: Vec<(usize, i64)> = Vec::new();
            let mut rehashing = 0i64;
            let o = grow(
                n,
                |k| engine.set(k, value.clone()).expect("SET"),
                |i| {
                    if attribute_resizes {
                        let now = engine.stats().rehashing_shards as i64;
                        if now != rehashing {
                            events.push((i, now - rehashing));
                            rehashing = now;
                        }
                    }
                },
            );
            if attribute_resizes {
                attribute(&o, &events);
            }
            assert_eq!(engine.dbsize(), n);
            let label = if active_expire {
                format!("ringkv::Engine ({shards} shards, default config)")
            } else {
                format!("ringkv::Engine ({shards} shards, active_expire off)")
            };
            summarize_and_drop(&label, o, &during, engine)
        }
        "hashbrown" => {
            let mut map: hashbrown::HashMap<Bytes, Bytes> = hashbrown::HashMap::new();
            let during = CpuMonitor::start();
            let o = grow(
                n,
                |k| {
                    map.insert(Bytes::copy_from_slice(k), value.clone());
                },
                |_| {},
            );
            assert_eq!(map.len() as u64, n);
            summarize_and_drop("hashbrown::HashMap (1 thread)", o, &during, map)
        }
        "dashmap" => {
            let map: DashMap<Bytes, Bytes, ahash::RandomState> = DashMap::with_hasher(ahash::RandomState::new());
            let during = CpuMonitor::start();
            let o = grow(
                n,
                |k| {
                    map.insert(Bytes::copy_from_slice(k), value.clone());
                },
                |_| {},
            );
            assert_eq!(map.len() as u64, n);
            summarize_and_drop("dashmap::DashMap", o, &during, map)
        }
        other => panic!("unknown store {other:?}; known: {STORES:?}"),
    }
}

/// Runs one store in a child process (a fresh heap: no allocator state
/// carried over from the previous store) and returns its row.
fn run_child(store: &str, n: u64, args: &Args) -> Vec<String> {
    let exe = std::env::current_exe().expect("path of this bench");
    let mut cmd = Command::new(exe);
    cmd.args(["--keys", &n.to_string(), "--only", store, "--row-output"]);
    if args.bench {
        cmd.arg("--bench");
    }
    if args.attribute {
        cmd.arg("--attribute");
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start a child bench process");
    let mut row = Vec::new();
    let stdout = child.stdout.take().expect("child stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        match line.strip_prefix("ROW\t") {
            Some(r) => row = r.split('\t').map(str::to_string).collect(),
            None => println!("{line}"),
        }
    }
    let status = child.wait().expect("wait for the child bench process");
    assert!(status.success(), "the {store} run failed: {status}");
    assert_eq!(row.len(), HEADERS.len(), "the {store} run printed no row");
    row
}

fn main() {
    let mut args = Args::parse();
    let cpu = CpuMonitor::start();
    args.bench |= is_bench_run();
    let mut n = size_setting(args.keys.or(args.keys_pos), "RINGKV_GROWTH_KEYS", 10_000_000);
    if !args.bench {
        n = n.min(20_000);
    }
    let selected: Vec<&str> = STORES
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s))
        .collect();
    if args.row_output {
        for store in selected {
            let row = run_store(store, n, args.attribute);
            println!("ROW\t{}", row.join("\t"));
        }
        return;
    }
    if !args.bench {
        println!("smoke run (no --bench flag): tiny sizes, numbers are meaningless");
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let isolated = !args.in_process && selected.len() > 1;
    println!(
        "growth: {n} inserts of \"key:%08d\" -> 12-byte value, each timed; {cores} cores; {}",
        if isolated {
            "each store in its own process"
        } else {
            "all stores in this process"
        }
    );
    let mut table = Table::new(HEADERS);
    for store in selected {
        let row = if isolated {
            run_child(store, n, &args)
        } else {
            run_store(store, n, args.attribute)
        };
        table.row(row);
    }
    println!("{}", cpu.report());
    println!();
    table.print();
}
