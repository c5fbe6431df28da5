//! The ring log: append throughput and latency for 100-byte records with 1
//! and 2 writers, tail-read throughput, SET with the log attached beside SET
//! without it and beside DashMap, and the cost of each durability mode.
//!
//! - append: an anonymous 256 MiB ring (overwriting old laps, so the run is
//!   not bounded by the capacity), first filled once so that its pages are
//!   resident (the steady state of a long-running ring; a first lap also
//!   pays one page fault per 4 KiB); each writer appends `--records` records
//!   of 100 payload bytes; every append is timed with `Instant` (the timer
//!   itself costs ~20-25 ns, included in the percentiles).
//! - tail read: one `TailReader` reads back what one writer appended.
//! - SET: 2 threads × `--ops` SETs of random keys among `--keys` "key:%08d",
//!   on an engine without a log, with an anonymous log, with a data
//!   directory (durability none, everysec, always), and on a DashMap.
//!
//! `cargo bench -p ringkv-benches --bench log [-- --records 2000000 --ops 1000000 --keys 100000]`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ahash::RandomState;
use bytes::Bytes;
use clap::Parser;
use dashmap::DashMap;
use ringkv::internals::RingLogWriter;
use ringkv::log::{LogConfig, RingLog, TailReader};
use ringkv::{Config, Durability, Engine};
use ringkv_benches::{fmt_ns, is_bench_run, percentile, CpuMonitor, KeyFmt, Rng, Table};

#[derive(Parser, Debug)]
#[command(about = "ring log append/read throughput and the cost of logging a SET")]
struct Args {
    /// Set by `cargo bench`; without it this is a short smoke run.
    #[arg(long, hide = true)]
    bench: bool,
    /// Records each writer appends.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// SETs per thread in the SET comparison (`always` does a tenth).
    #[arg(long, default_value_t = 1_000_000)]
    ops: u64,
    /// Keys the SETs pick from.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
}

const PAYLOAD: usize = 100;

/// An anonymous 256 MiB ring, filled once so that its pages are resident.
fn warm_ring() -> Arc<RingLog> {
    let ring = Arc::new(
        RingLog::anonymous(LogConfig {
            capacity: 256 << 20,
            ..LogConfig::default()
        })
        .expect("ring"),
    );
    let warm = [0u8; 4000];
    while ring.published() < ring.capacity() {
        ring.append(&warm).expect("warm-up append");
    }
    ring
}

/// Appends without timing each call: throughput only.
fn append_throughput(writers: usize, records: u64) -> f64 {
    let ring = warm_ring();
    let barrier = Barrier::new(writers);
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            let (ring, barrier) = (ring.clone(), &barrier);
            s.spawn(move || {
                let payload = [w as u8; PAYLOAD];
                barrier.wait();
                for _ in 0..records {
                    black_box(ring.append(&payload).expect("append"));
                }
            });
        }
    });
    (writers as u64 * records) as f64 / started.elapsed().as_secs_f64()
}

fn append_run(writers: usize, records: u64) -> (f64, Vec<u64>) {
    let ring = warm_ring();
    let barrier = Barrier::new(writers);
    let started = Instant::now();
    let mut lat: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (ring, barrier) = (ring.clone(), &barrier);
                s.spawn(move || {
                    let payload = [w as u8; PAYLOAD];
                    let mut lat = Vec::with_capacity(records as usize);
                    barrier.wait();
                    for _ in 0..records {
                        let t = Instant::now();
                        black_box(ring.append(&payload).expect("append"));
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    lat
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("writer")).collect()
    });
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    ((writers as u64 * records) as f64 / secs, lat)
}

fn read_run(records: u64) -> (f64, f64) {
    let ring = Arc::new(
        RingLog::anonymous(LogConfig {
            capacity: 512 << 20,
            ..LogConfig::default()
        })
        .expect("ring"),
    );
    let payload = [7u8; PAYLOAD];
    for _ in 0..records {
        ring.append(&payload).expect("append");
    }
    let mut reader = TailReader::new(ring.clone(), ring.oldest());
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while reader.offset() < ring.published() {
        let batch = reader.next_batch(Duration::ZERO, 1 << 20).expect("read");
        n += batch.records.len() as u64;
        bytes += batch.records.iter().map(|(_, p)| p.len() as u64).sum::<u64>();
    }
    let secs = started.elapsed().as_secs_f64();
    (n as f64 / secs, bytes as f64 / secs / (1 << 20) as f64)
}

fn set_run(threads: usize, ops: u64, keys: u64, set: impl FnMut(&[u8], Bytes) + Clone + Send) -> f64 {
    let barrier = Barrier::new(threads);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, mut set) = (&barrier, set.clone());
            s.spawn(move || {
                let mut rng = Rng::new(t as u64 + 1);
                let mut k = KeyFmt::new("key:");
                let value = Bytes::from_static(b"val:00000000");
                barrier.wait();
                for _ in 0..ops {
                    let i = rng.below(keys as usize) as u64;
                    set(k.key(i), value.clone());
                }
            });
        }
    });
    (threads as u64 * ops) as f64 / started.elapsed().as_secs_f64()
}

fn engine(log: Option<(&std::path::Path, Durability)>, anonymous: bool) -> Engine {
    let config = Config {
        active_expire: false,
        log: LogConfig {
            capacity: 1 << 30,
            durability: log.map_or(Durability::None, |(_, d)| d),
            ..LogConfig::default()
        },
        ..Config::default()
    };
    let b = Engine::builder().config(config);
    let b = match log {
        Some((dir, _)) => b.data_dir(dir),
        None if anonymous => b.anonymous_log(),
        None => b,
    };
    b.build().expect("engine")
}

fn main() {
    let mut args = Args::parse();
    if !is_bench_run() {
        args.records = 2_000;
        args.ops = 2_000;
        args.keys = 1_000;
    }
    let monitor = CpuMonitor::start();

    println!("\n## Ring append, {PAYLOAD}-byte records\n");
    let mut t = Table::new([
        "writers",
        "records/s (untimed)",
        "MiB/s",
        "records/s (each append timed)",
        "p50",
        "p99",
        "p99.9",
        "max",
    ]);
    for writers in [1, 2] {
        let untimed = append_throughput(writers, args.records);
        let (rate, lat) = append_run(writers, args.records);
        t.row([
            writers.to_string(),
            format!("{:.2} M", untimed / 1e6),
            format!("{:.0}", untimed * (PAYLOAD + 16) as f64 / (1 << 20) as f64),
            format!("{:.2} M", rate / 1e6),
            fmt_ns(percentile(&lat, 50.0) as f64),
            fmt_ns(percentile(&lat, 99.0) as f64),
            fmt_ns(percentile(&lat, 99.9) as f64),
            fmt_ns(*lat.last().unwrap_or(&0) as f64),
        ]);
    }
    t.print();

    println!("\n## Tail read, {PAYLOAD}-byte records\n");
    let (rate, mib) = read_run(args.records);
    let mut t = Table::new(["records/s", "payload MiB/s"]);
    t.row([format!("{:.2} M", rate / 1e6), format!("{mib:.0}")]);
    t.print();

    println!("\n## SET, 2 threads, {} keys: the cost of the log\n", args.keys);
    let mut rows: Vec<(String, f64, u64)> = Vec::new();
    let dashmap: Arc<DashMap<Bytes, Bytes, RandomState>> = Arc::new(DashMap::with_hasher(RandomState::new()));
    let d = dashmap.clone();
    rows.push((
        "DashMap (no log)".into(),
        set_run(2, args.ops, args.keys, move |k, v| {
            if let Some(mut e) = d.get_mut(k) {
                *e = v;
            } else {
                d.insert(Bytes::copy_from_slice(k), v);
            }
        }),
        args.ops,
    ));
    let cases: Vec<(&str, Option<Durability>, bool)> = vec![
        ("ringkv, no log", None, false),
        ("ringkv, anonymous log", None, true),
        ("ringkv, data dir, durability none", Some(Durability::None), false),
        (
            "ringkv, data dir, durability everysec",
            Some(Durability::Everysec),
            false,
        ),
        ("ringkv, data dir, durability always", Some(Durability::Always), false),
    ];
    for (name, durability, anonymous) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine(durability.map(|d| (dir.path(), d)), anonymous);
        let ops = if durability == Some(Durability::Always) {
            (args.ops / 10).max(1)
        } else {
            args.ops
        };
        let rate = set_run(2, ops, args.keys, |k, v| e.set(k, v).expect("set"));
        rows.push((name.to_string(), rate, ops));
    }
    let base = rows[0].1;
    let mut t = Table::new(["store", "SETs/s", "ratio to DashMap", "SETs per thread"]);
    for (name, rate, ops) in &rows {
        t.row([
            name.clone(),
            format!("{:.2} M", rate / 1e6),
            format!("{:.2}", rate / base),
            ops.to_string(),
        ]);
    }
    t.print();
    println!("\n{}", monitor.report());
}
