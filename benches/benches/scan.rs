//! HSCAN vs HGETALL on one large hash.
//!
//! Builds one hash of `--fields` fields (default 1,000,000; `"field:%08d"` →
//! `"val:%08d"`, HSET in chunks of 1000 fields), then:
//! - iterates it completely with HSCAN COUNT `--count` (default 1000),
//!   `--passes` times, timing every call (mean, p50, p99, max per call);
//! - runs HGETALL on it `--passes` times, timing each call.
//!
//! The aim in the design is ≤ 1 ms per HSCAN call: every call holds the
//! shard's read lock, so that is also the longest a writer to that shard waits
//! behind a scan. HGETALL holds the same lock for its whole duration.
//!
//! `cargo bench -p ringkv-benches --bench scan [-- --fields 1000000 --count 1000 --passes 3]`
//! (`RINGKV_SCAN_FIELDS` sets the size too).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use ringkv::{Config, Engine, ScanOptions};
use ringkv_benches::{fmt_duration, fmt_ns, is_bench_run, percentile, size_setting, CpuMonitor, KeyFmt, Table};

#[derive(Parser, Debug)]
#[command(about = "HSCAN per-call latency vs one HGETALL on a large hash")]
struct Args {
    /// Set by `cargo bench`; without it this is a short smoke run.
    #[arg(long, hide = true)]
    bench: bool,
    /// Fields in the hash (default 1,000,000, or RINGKV_SCAN_FIELDS).
    #[arg(long)]
    fields: Option<u64>,
    /// HSCAN COUNT.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Full HSCAN iterations and HGETALL calls.
    #[arg(long, default_value_t = 3)]
    passes: usize,
}

const KEY: &str = "bighash";
const CHUNK: u64 = 1000;

fn main() {
    let mut args = Args::parse();
    let cpu = CpuMonitor::start();
    args.bench |= is_bench_run();
    let mut fields = size_setting(args.fields, "RINGKV_SCAN_FIELDS", 1_000_000);
    if !args.bench {
        fields = fields.min(5_000);
        args.passes = 1;
        println!("smoke run (no --bench flag): tiny sizes, numbers are meaningless");
    }

    let engine = Engine::new(Config::default()).expect("engine");
    let (mut fk, mut fv) = (KeyFmt::new("field:"), KeyFmt::new("val:"));
    let t = Instant::now();
    let mut worst_chunk = Duration::ZERO;
    let mut start = 0;
    while start < fields {
        let end = (start + CHUNK).min(fields);
        let pairs: Vec<(Bytes, Bytes)> = (start..end)
            .map(|i| (Bytes::copy_from_slice(fk.key(i)), Bytes::copy_from_slice(fv.key(i))))
            .collect();
        let c = Instant::now();
        engine.hset(KEY, pairs).expect("HSET");
        worst_chunk = worst_chunk.max(c.elapsed());
        start = end;
    }
    let build = t.elapsed();
    assert_eq!(engine.hlen(KEY).expect("HLEN"), fields as usize);
    println!(
        "scan: hash of {fields} fields built in {} (HSET of {CHUNK} fields: worst {}); HSCAN COUNT {}; {} passes",
        fmt_duration(build),
        fmt_duration(worst_chunk),
        args.count,
        args.passes
    );

    // HSCAN: every call of every pass.
    let opts = ScanOptions::default().count(args.count);
    let mut calls: Vec<u64> = Vec::new();
    let mut pass_times = Vec::new();
    let mut buckets = 0usize;
    for _ in 0..args.passes {
        let (mut cursor, mut items) = (0u64, 0usize);
        let pass = Instant::now();
        loop {
            let t = Instant::now();
            let page = engine.hscan(KEY, cursor, &opts).expect("HSCAN");
            calls.push(t.elapsed().as_nanos() as u64);
            items += page.items.len();
            buckets += page.buckets_examined;
            cursor = page.cursor;
            drop(black_box(page));
            if cursor == 0 {
                break;
            }
        }
        pass_times.push(pass.elapsed());
        assert!(items >= fields as usize, "HSCAN returned {items} of {fields} fields");
    }
    let n_calls = calls.len();
    let mean = calls.iter().sum::<u64>() as f64 / n_calls as f64;
    let mut sorted = calls.clone();
    sorted.sort_unstable();
    let over_1ms = calls.iter().filter(|&&c| c > 1_000_000).count();

    // HGETALL.
    let mut getall = Vec::new();
    for _ in 0..args.passes {
        let t = Instant::now();
        let all = engine.hgetall(KEY).expect("HGETALL");
        getall.push(t.elapsed());
        assert_eq!(all.len(), fields as usize);
        drop(black_box(all));
    }
    let getall_best = getall.iter().min().copied().unwrap_or_default();
    let getall_worst = getall.iter().max().copied().unwrap_or_default();
    let pass_best = pass_times.iter().min().copied().unwrap_or_default();

    println!(
        "HSCAN: {} calls per pass, {:.0} fields and {:.0} buckets examined per call; {over_1ms} calls over 1 ms",
        n_calls / args.passes,
        (fields as f64 * args.passes as f64) / n_calls as f64,
        buckets as f64 / n_calls as f64
    );
    let mut table = Table::new(["measure", "value"]);
    table.row([format!("HSCAN COUNT {}, mean per call", args.count), fmt_ns(mean)]);
    table.row([
        "HSCAN p50 per call".to_string(),
        fmt_ns(percentile(&sorted, 50.0) as f64),
    ]);
    table.row([
        "HSCAN p99 per call".to_string(),
        fmt_ns(percentile(&sorted, 99.0) as f64),
    ]);
    table.row([
        "HSCAN max per call".to_string(),
        fmt_ns(sorted.last().copied().unwrap_or(0) as f64),
    ]);
    table.row(["HSCAN full iteration (best pass)".to_string(), fmt_duration(pass_best)]);
    table.row(["HGETALL (best)".to_string(), fmt_duration(getall_best)]);
    table.row(["HGETALL (worst)".to_string(), fmt_duration(getall_worst)]);
    table.row([
        "HGETALL best / HSCAN mean call".to_string(),
        format!("{:.0}x", getall_best.as_nanos() as f64 / mean),
    ]);
    table.row([
        "HGETALL best / HSCAN p99 call".to_string(),
        format!(
            "{:.0}x",
            getall_best.as_nanos() as f64 / percentile(&sorted, 99.0).max(1) as f64
        ),
    ]);
    table.row([
        "HSCAN full iteration / HGETALL (best of each)".to_string(),
        format!("{:.2}", pass_best.as_secs_f64() / getall_best.as_secs_f64()),
    ]);
    println!("{}", cpu.report());
    println!();
    table.print();
}
