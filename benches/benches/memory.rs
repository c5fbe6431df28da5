//! Memory per key for small string keys: ringkv against redis-server.
//!
//! Loads `N` keys `"key:%08d"` → `"val:%08d"` (12-byte keys and values;
//! default N = 10,000,000, `RINGKV_MEMORY_KEYS` or the first argument
//! changes it) and reports the bytes per key beyond the 24 bytes of key and
//! value:
//! - ringkv: growth of this process' resident set (`/proc/self/statm`) from
//!   just after `Engine::new` to after the last SET, divided by N; also the
//!   engine's own accounting (`Engine::used_memory`) for comparison.
//! - Redis: `used_memory` from `INFO memory` before and after loading the
//!   same keys (pipelined SETs over a unix socket, 10k commands per chunk),
//!   and the server's resident set growth. If `redis-server` is not on PATH
//!   the bench tries `apt-get install -y redis-server` (then `apt-get update`
//!   and again); if that fails the Redis part is skipped with a message. The
//!   server is started with `--port 0 --unixsocket /tmp/ringkv-bench-redis.sock
//!   --save '' --appendonly no` and stopped with `SHUTDOWN NOSAVE`.
//!
//! The aim in the design is ≤ 48 B per key beyond key and value.
//!
//! A load can end with shards in the middle of a resize (two bucket arrays);
//! `--settle SECS` waits for the background rehash to finish them and
//! measures ringkv again.
//!
//! `cargo bench -p ringkv-benches --bench memory [-- --keys 10000000 --no-redis --settle 300]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use ringkv::{Config, Engine};
use ringkv_benches::redis::{field, field_u64, redis_server, Conn, Reply, Server};
use ringkv_benches::{fmt_duration, is_bench_run, rss_bytes, rss_bytes_of, size_setting, CpuMonitor, KeyFmt, Table};

#[derive(Parser, Debug)]
#[command(about = "Memory per key for small string keys: ringkv vs redis-server")]
struct Args {
    /// Set by `cargo bench`; without it this is a short smoke run (no Redis).
    #[arg(long, hide = true)]
    bench: bool,
    /// Keys to load (default 10,000,000, or RINGKV_MEMORY_KEYS).
    #[arg(long)]
    keys: Option<u64>,
    /// Same as --keys.
    #[arg(conflicts_with = "keys")]
    keys_pos: Option<u64>,
    /// Skip the Redis comparison.
    #[arg(long)]
    no_redis: bool,
    /// Also wait up to this many seconds for the background rehash to finish
    /// the resizes left in progress by the load, and measure again.
    #[arg(long, default_value_t = 0)]
    settle: u64,
    /// Unix socket of the Redis server this bench starts.
    #[arg(long, default_value = "/tmp/ringkv-bench-redis.sock")]
    socket: PathBuf,
}

/// Bytes of key and value per key (`"key:%08d"`, `"val:%08d"`).
const PAYLOAD: f64 = 24.0;
/// Commands per pipelined chunk sent to Redis.
const PIPELINE: u64 = 10_000;

struct RingResult {
    rss_delta: u64,
    accounted: u64,
    load: Duration,
    /// After the background thread finished every resize: (seconds waited,
    /// RSS growth, accounted bytes).
    settled: Option<(f64, u64, u64)>,
}

fn ringkv(n: u64, settle: u64) -> RingResult {
    let engine = Engine::new(Config::default()).expect("engine");
    let before = rss_bytes().expect("read /proc/self/statm");
    let (mut kf, mut vf) = (KeyFmt::new("key:"), KeyFmt::new("val:"));
    let t = Instant::now();
    for i in 0..n {
        let v = Bytes::copy_from_slice(vf.key(i));
        engine.set(kf.key(i), v).expect("SET");
    }
    let load = t.elapsed();
    let after = rss_bytes().expect("read /proc/self/statm");
    assert_eq!(engine.dbsize(), n);
    let stats = engine.stats();
    println!(
        "ringkv: {} shards, {} still rehashing after the load; RSS {} MiB -> {} MiB",
        stats.shards,
        stats.rehashing_shards,
        before >> 20,
        after >> 20
    );
    let accounted = engine.used_memory();
    // Optionally wait for the background rehash to finish the resizes the
    // load left in progress (a resize holds two bucket arrays).
    let mut settled = None;
    if settle > 0 && stats.rehashing_shards > 0 {
        let t = Instant::now();
        while engine.stats().rehashing_shards > 0 && t.elapsed() < Duration::from_secs(settle) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let left = engine.stats().rehashing_shards;
        let rss = rss_bytes().expect("read /proc/self/statm");
        println!(
            "ringkv: after waiting {:.0} s for the background rehash, {left} shards still rehashing; RSS {} MiB",
            t.elapsed().as_secs_f64(),
            rss >> 20
        );
        if left == 0 {
            settled = Some((
                t.elapsed().as_secs_f64(),
                rss.saturating_sub(before),
                engine.used_memory(),
            ));
        }
    }
    RingResult {
        rss_delta: after.saturating_sub(before),
        accounted,
        load,
        settled,
    }
}

// ----- Redis -------------------------------------------------------------

struct RedisResult {
    version: String,
    allocator: String,
    used_delta: u64,
    rss_delta: u64,
    load: Duration,
}

fn used_memory(conn: &mut Conn) -> Result<u64, String> {
    field_u64(&conn.info("memory")?, "used_memory")
}

fn redis(n: u64, socket: &Path) -> Result<RedisResult, String> {
    let bin = redis_server()?;
    let (server, stream) = Server::start(&bin, socket, Path::new("/tmp"))?;
    let pid = server.pid().to_string();
    let mut conn = Conn::new(stream).map_err(|e| e.to_string())?;
    let server_info = conn.info("server")?;
    let version = field(&server_info, "redis_version")?.to_string();
    let allocator = field(&conn.info("memory")?, "mem_allocator")?.to_string();
    println!(
        "redis-server {version} ({}), allocator {allocator}, pid {pid}",
        bin.display()
    );

    let used_before = used_memory(&mut conn)?;
    let rss_before = rss_bytes_of(&pid).map_err(|e| e.to_string())?;
    let (mut kf, mut vf) = (KeyFmt::new("key:"), KeyFmt::new("val:"));
    let t = Instant::now();
    let mut start = 0;
    while start < n {
        let end = (start + PIPELINE).min(n);
        for i in start..end {
            let k = kf.key(i).to_vec();
            conn.queue(&[b"SET", &k, vf.key(i)]);
        }
        conn.flush().map_err(|e| e.to_string())?;
        conn.expect_ok(end - start).map_err(|e| format!("SET: {e}"))?;
        start = end;
    }
    let load = t.elapsed();
    match conn.command(&[b"DBSIZE"])? {
        Reply::Int(k) if k as u64 == n => {}
        r => return Err(format!("DBSIZE is {r:?}, expected {n}")),
    }
    let used_after = used_memory(&mut conn)?;
    let rss_after = rss_bytes_of(&pid).map_err(|e| e.to_string())?;
    println!(
        "redis: used_memory {} MiB -> {} MiB, RSS {} MiB -> {} MiB",
        used_before >> 20,
        used_after >> 20,
        rss_before >> 20,
        rss_after >> 20
    );
    server.shutdown(&mut conn)?;
    println!("redis-server shut down (SHUTDOWN NOSAVE)");
    Ok(RedisResult {
        version,
        allocator,
        used_delta: used_after.saturating_sub(used_before),
        rss_delta: rss_after.saturating_sub(rss_before),
        load,
    })
}

fn main() {
    let mut args = Args::parse();
    let cpu = CpuMonitor::start();
    args.bench |= is_bench_run();
    let mut n = size_setting(args.keys.or(args.keys_pos), "RINGKV_MEMORY_KEYS", 10_000_000);
    if !args.bench {
        n = n.min(10_000);
        args.no_redis = true;
        println!("smoke run (no --bench flag): tiny sizes, no Redis, numbers are meaningless");
    }
    let per_key = |bytes: u64| bytes as f64 / n as f64 - PAYLOAD;
    println!("memory: {n} keys \"key:%08d\" -> \"val:%08d\" (24 B of key + value per key)");

    let ring = ringkv(n, args.settle);
    let ring_rss = per_key(ring.rss_delta);
    let mut table = Table::new(["store", "measure", "load time", "bytes/key beyond key+value"]);
    table.row([
        "ringkv::Engine (default config)".to_string(),
        "process RSS growth".to_string(),
        fmt_duration(ring.load),
        format!("{ring_rss:.1}"),
    ]);
    table.row([
        "ringkv::Engine (default config)".to_string(),
        "Engine::used_memory (own accounting)".to_string(),
        String::new(),
        format!("{:.1}", per_key(ring.accounted)),
    ]);
    if let Some((waited, rss, accounted)) = ring.settled {
        table.row([
            format!("ringkv, resizes finished ({waited:.0} s later)"),
            "process RSS growth".to_string(),
            String::new(),
            format!("{:.1}", per_key(rss)),
        ]);
        table.row([
            format!("ringkv, resizes finished ({waited:.0} s later)"),
            "Engine::used_memory (own accounting)".to_string(),
            String::new(),
            format!("{:.1}", per_key(accounted)),
        ]);
    }

    let redis_result = if args.no_redis {
        Err("skipped (--no-redis)".to_string())
    } else {
        redis(n, &args.socket)
    };
    match redis_result {
        Ok(r) => {
            let label = format!("redis-server {} ({})", r.version, r.allocator);
            let redis_used = per_key(r.used_delta);
            let redis_rss = per_key(r.rss_delta);
            table.row([
                label.clone(),
                "INFO used_memory growth".to_string(),
                fmt_duration(r.load),
                format!("{redis_used:.1}"),
            ]);
            table.row([
                label,
                "server RSS growth".to_string(),
                String::new(),
                format!("{redis_rss:.1}"),
            ]);
            println!("{}", cpu.report());
            println!();
            table.print();
            println!();
            println!(
                "ratio ringkv (RSS) / redis (used_memory), bytes beyond key+value: {:.2}",
                ring_rss / redis_used
            );
            println!(
                "ratio ringkv (RSS) / redis (RSS), bytes beyond key+value: {:.2}",
                ring_rss / redis_rss
            );
        }
        Err(e) => {
            println!("Redis part skipped: {e}");
            println!("{}", cpu.report());
            println!();
            table.print();
        }
    }
}
