//! Recovery: `Engine::open` replaying the ring, on 1, 2 and 4 apply
//! threads (`Config::apply_threads`), in one run.
//!
//! A data directory gets `--records` SETs of `--value` bytes over
//! `--keys` keys (no snapshot: the whole ring is replayed on open), then is
//! opened once to warm the page cache, then once per thread count (and
//! with one thread again at the end). Reported: the time of `Engine::open`,
//! records/s and MB/s of log payload replayed, and the CPU time the
//! process used (user + system, from `/proc/self/stat`) per GB of log: the
//! per-thread cost, which parallel apply raises a little (undo records,
//! the decode before dispatch, thread starts) while it cuts the wall time.
//! The ring file is in the page cache (it was just written). On this
//! 2-core machine the gain is bounded by 2, and the copy and checksum of
//! each record (`RingLog::read`) stay on the calling thread.
//!
//! `cargo bench -p ringkv-benches --bench recovery [-- --records 1000000 --value 1024 --keys 100000]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use ringkv::Engine;
use ringkv_benches::{fmt_duration, is_bench_run, recovery_config, KeyFmt, Table};

/// Ring replay on open, by apply threads.
#[derive(Parser, Debug)]
struct Args {
    /// Set by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// Records written before reopening.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (in parentheses): state is the
    // first, utime and stime the 12th and 13th (fields 14 and 15 of the line).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let mut args = Args::parse();
    args.bench |= is_bench_run();
    if !args.bench {
        args.records = args.records.min(2_000);
        args.keys = args.keys.min(200);
        println!("smoke run (no --bench flag): tiny sizes, numbers are meaningless");
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let per_record = args.value as u64 + 64;
    let capacity = (args.records * per_record * 2).next_power_of_two().max(64 << 20);
    {
        let e = Engine::open(&dir, recovery_config(1, capacity)).expect("open");
        let value = Bytes::from(vec![b'v'; args.value]);
        let mut kf = KeyFmt::new("key:");
        for i in 0..args.records {
            e.set(kf.key(i % args.keys), value.clone()).expect("set");
        }
        e.sync().expect("sync");
        e.close();
    }
    println!(
        "\n## Engine::open replaying {} records of {} B over {} keys\n",
        args.records, args.value, args.keys
    );
    let mut t = Table::new([
        "apply threads",
        "Engine::open",
        "records/s",
        "MB/s of log payload",
        "CPU s per GB",
        "speed-up",
    ]);
    let mut first = None;
    let mut digest = None;
    // A first open (not reported) so every measured one finds the ring in
    // the page cache and its tail already cleared; then 1 thread again last
    // to show the drift of a shared machine.
    Engine::open(&dir, recovery_config(1, capacity))
        .expect("warm-up open")
        .close();
    for threads in [1usize, 2, 4, 1] {
        let (cpu0, t0) = (cpu_time(), Instant::now());
        let e = Engine::open(&dir, recovery_config(threads, capacity)).expect("reopen");
        let (took, cpu) = (t0.elapsed(), cpu_time().saturating_sub(cpu0));
        let log = e.stats().log.expect("log stats");
        assert_eq!(log.recovered_records, args.records, "the whole ring is replayed");
        let d = e.digest();
        assert_eq!(
            *digest.get_or_insert(d),
            d,
            "every thread count recovers the same state"
        );
        e.close();
        let secs = took.as_secs_f64();
        let base: f64 = *first.get_or_insert(secs);
        t.row([
            threads.to_string(),
            fmt_duration(took),
            format!("{:.0}", args.records as f64 / secs),
            format!("{:.0}", log.recovered_bytes as f64 / secs / 1e6),
            format!("{:.2}", cpu.as_secs_f64() / (log.recovered_bytes as f64 / 1e9)),
            format!("{:.2}", base / secs),
        ]);
    }
    t.print();
}
