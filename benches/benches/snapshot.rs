//! Snapshots while a writer goes on: ringkv's fork-free `Engine::save`
//! against redis-server's `BGSAVE` (fork), side by side in one run.
//!
//! Both stores get N keys `"key:%08d"` with 1 KiB values (random bytes from
//! a pool of 1024 values, so Redis' LZF compression gains nothing; default
//! N = 1,000,000, about 1 GB; `--keys` or `RINGKV_SNAPSHOT_KEYS` changes
//! it). Then one writer overwrites random keys without pause, each write
//! timed with `Instant` (into a buffer allocated and touched beforehand, so
//! it does not grow the memory being measured):
//! - baseline: `--baseline` seconds (default 3) without a snapshot, after
//!   half a second of warm-up;
//! - during the snapshot: ringkv `Engine::save()` on another thread (the cut,
//!   the walk, writing the file, fsync, rename); Redis `BGSAVE`, polled
//!   through `INFO persistence` every 20 ms until `rdb_bgsave_in_progress:0`.
//!
//! Memory is sampled every 5 ms in both windows, and the peak increase over
//! the value just before the window is reported:
//! - ringkv: this process' `/proc/self/statm`, all resident memory and the
//!   anonymous part (resident minus file-backed). The ring log is a mapped
//!   file: every write appends ~1 KiB to it, and its page-cache pages count
//!   in the RSS whether a snapshot runs or not (the baseline window shows
//!   that growth); the anonymous part is the heap, where a snapshot's
//!   buffers live.
//! - Redis: the server's RSS plus the RSS of its forked child (found through
//!   `/proc/<pid>/task/*/children`). The child's RSS also counts every page
//!   it still shares with the parent, so this sum overstates what the fork
//!   costs; Redis' `rdb_last_cow_size` (the child's private dirty memory when
//!   it ends: the pages the parent copied since the fork) is the memory the
//!   fork actually added.
//!
//! The start pause is `SnapshotInfo::start_pause_us` (all shards locked for
//! the cut) against Redis' `latest_fork_usec`. Afterwards each store loads
//! its snapshot into a fresh instance: ringkv `Engine::load_snapshot` of the
//! file through a 1 MiB `BufReader` (and `Engine::open` of the directory:
//! snapshot plus replay of the log written after the cut), Redis a new
//! server started on the directory holding `dump.rdb`, timed until `INFO
//! persistence` says `loading:0`. Both files are still in the page cache.
//!
//! ringkv runs on a data directory in a temporary directory with a ring log
//! large enough for the load and the writer (`--log-gib`; the default is
//! the load's size rounded up plus 8 GiB, a sparse file) and
//! `snapshot.auto_share` 0.9, so that no automatic snapshot starts during
//! the run, and `active_expire: false` (no background thread, so neither
//! does a `snapshot.save` rule). After the load the log is synced
//! (`Engine::sync`) so the measurement does not start with a gigabyte of
//! dirty pages queued for writeback. redis-server (installed with apt-get
//! if missing) runs with `--save '' --appendonly no` on a unix socket; the
//! load is pipelined (1000 SETs per write), the writer sends one SET at a
//! time, so each latency is one round trip.
//!
//! Aims (DESIGN.md): extra memory ≤ max(64 MiB, 2% of the data); start pause
//! ≤ 1 ms; write p99.9 during the snapshot ≤ 2× baseline.
//!
//! `--timeline` also prints, for each store, the writes (and those over
//! 100 µs) in 20 slices of the save, and a histogram of the slow ones.
//!
//! `cargo bench -p ringkv-benches --bench snapshot [-- --keys 1000000 --baseline 3 --timeline --no-redis]`

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use ringkv::{Config, Engine, LogConfig, SnapshotConfig, SnapshotInfo};
use ringkv_benches::redis::{child_pids, field, field_u64, redis_server, Conn, Reply, Server};
use ringkv_benches::{fmt_ns, is_bench_run, percentile, rss_bytes_of, rss_split_of, size_setting};
use ringkv_benches::{CpuMonitor, KeyFmt, Rng, Table};

#[derive(Parser, Debug)]
#[command(about = "Snapshot while a writer goes on: ringkv Engine::save vs redis-server BGSAVE")]
struct Args {
    /// Set by `cargo bench`; without it this is a short smoke run (no Redis).
    #[arg(long, hide = true)]
    bench: bool,
    /// Keys of 1 KiB values (default 1,000,000, or RINGKV_SNAPSHOT_KEYS).
    #[arg(long)]
    keys: Option<u64>,
    /// Seconds of writes without a snapshot (the baseline).
    #[arg(long, default_value_t = 3.0)]
    baseline: f64,
    /// Ring log capacity in GiB (default: the load's size rounded up, plus 8).
    #[arg(long)]
    log_gib: Option<u64>,
    /// Most write latencies kept per run (4 bytes each, allocated up front).
    #[arg(long, default_value_t = 40_000_000)]
    max_samples: usize,
    /// Also print, for each store, writes and slow writes (over 100 µs) in
    /// 20 slices of the save's duration (keeps each write's start time: 4
    /// more bytes per write).
    #[arg(long)]
    timeline: bool,
    /// Skip the Redis comparison.
    #[arg(long)]
    no_redis: bool,
    /// Skip ringkv (Redis only).
    #[arg(long)]
    no_ringkv: bool,
    /// Where the temporary directories go (default: the system's).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Unix socket of the Redis server this bench starts.
    #[arg(long, default_value = "/tmp/ringkv-bench-snapshot-redis.sock")]
    socket: PathBuf,
}

/// Bytes of each value.
const VALUE_LEN: usize = 1024;
/// Bytes of each key (`"key:%08d"`).
const KEY_LEN: usize = 12;
/// Distinct random values.
const POOL: usize = 1024;
/// SETs per pipelined write when loading Redis.
const PIPELINE: u64 = 1000;
/// Memory sampling period.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// `INFO persistence` is polled every this many samples during BGSAVE.
const INFO_EVERY: u32 = 4;
const MIB: f64 = (1u64 << 20) as f64;

/// The settings both stores run with.
struct Run<'a> {
    n: u64,
    baseline: Duration,
    warmup: Duration,
    pool: &'a [Vec<u8>],
    tmp: &'a Path,
}

/// Write latencies of one window.
#[derive(Debug, Clone, Default)]
struct Lat {
    count: usize,
    secs: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl Lat {
    fn of(samples: &[u32], secs: f64) -> Lat {
        let mut v: Vec<u64> = samples.iter().map(|&x| u64::from(x)).collect();
        v.sort_unstable();
        Lat {
            count: v.len(),
            secs,
            p50: percentile(&v, 50.0),
            p99: percentile(&v, 99.0),
            p999: percentile(&v, 99.9),
            max: v.last().copied().unwrap_or(0),
        }
    }

    fn rate(&self) -> f64 {
        self.count as f64 / self.secs.max(1e-9)
    }
}

/// Peak of a sampled quantity over a window, against its value at the start.
#[derive(Debug, Clone, Copy, Default)]
struct Peak {
    start: u64,
    peak: u64,
}

impl Peak {
    fn new(start: u64) -> Peak {
        Peak { start, peak: start }
    }

    fn add(&mut self, v: u64) {
        self.peak = self.peak.max(v);
    }

    fn increase(&self) -> u64 {
        self.peak.saturating_sub(self.start)
    }
}

/// The writer's shared state: a stop flag and the number of writes done
/// (the main thread reads it to split the latencies into windows).
#[derive(Default)]
struct WriterCtl {
    stop: AtomicBool,
    done: AtomicUsize,
}

/// Write latencies (ns) and, with `--timeline`, start times (µs after
/// `epoch`), in buffers allocated and touched before the measurement so
/// that filling them does not grow the memory being measured.
struct Samples {
    lat: Vec<u32>,
    start_us: Vec<u32>,
    epoch: Instant,
}

impl Samples {
    fn new(max: usize, timeline: bool) -> Samples {
        Samples {
            lat: vec![u32::MAX; max],
            start_us: if timeline { vec![u32::MAX; max] } else { Vec::new() },
            epoch: Instant::now(),
        }
    }

    fn since_epoch_us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Latencies of writes `from..to` (clipped to what the buffer kept).
    fn window(&self, from: usize, to: usize, secs: f64) -> Lat {
        let (a, b) = (from.min(self.lat.len()), to.min(self.lat.len()));
        if b - a < to - from {
            println!(
                "  warning: only {} of {} latencies kept (raise --max-samples)",
                b - a,
                to - from
            );
        }
        Lat::of(&self.lat[a..b], secs)
    }

    /// Prints writes `from..to` in `slices` slices of time from `start_us`
    /// to `end_us`: how many, how many took over 100 µs, the slowest.
    fn timeline(&self, label: &str, from: usize, to: usize, start_us: u64, end_us: u64, slices: u64) {
        if self.start_us.is_empty() {
            return;
        }
        let to = to.min(self.start_us.len());
        let span = (end_us.saturating_sub(start_us) / slices).max(1);
        let mut rows = vec![(0u64, 0u64, 0u32); slices as usize];
        for i in from..to {
            let at = u64::from(self.start_us[i]).saturating_sub(start_us) / span;
            let r = &mut rows[(at as usize).min(slices as usize - 1)];
            r.0 += 1;
            r.1 += u64::from(self.lat[i] > 100_000);
            r.2 = r.2.max(self.lat[i]);
        }
        println!(
            "{label}: writes by time since the start, {:.1} ms slices",
            span as f64 / 1e3
        );
        for (k, (writes, slow, max)) in rows.iter().enumerate() {
            println!(
                "  {:>7.1} ms  {writes:>8} writes  {slow:>5} over 100 µs  max {}",
                (k as u64 * span) as f64 / 1e3,
                fmt_ns(f64::from(*max))
            );
        }
        // Latencies over 50 µs in doubling buckets: 50-100 µs, 100-200 µs, ...
        let mut buckets = [0u64; 12];
        for &ns in &self.lat[from.min(to)..to] {
            if ns >= 50_000 {
                let b = (f64::from(ns) / 50_000.0).log2() as usize;
                buckets[b.min(buckets.len() - 1)] += 1;
            }
        }
        let mut line = format!("{label}: writes over 50 µs by latency:");
        for (b, count) in buckets.iter().enumerate().filter(|(_, c)| **c > 0) {
            let lo = 50_000u64 << b;
            let _ = write!(line, "  {}-{}: {count}", fmt_ns(lo as f64), fmt_ns((lo * 2) as f64));
        }
        println!("{line}");
    }
}

/// Runs `op` (one timed write; returns its latency in ns) until stopped,
/// storing each latency (and start time) while there is room. Returns the
/// writes done.
fn writer_loop(
    ctl: &WriterCtl,
    lat: &mut [u32],
    start_us: &mut [u32],
    epoch: Instant,
    mut op: impl FnMut(&mut Rng) -> Result<u64, String>,
) -> Result<usize, String> {
    let mut rng = Rng::new(0x5eed);
    let mut i = 0usize;
    while !ctl.stop.load(Ordering::Relaxed) {
        if let Some(slot) = start_us.get_mut(i) {
            *slot = epoch.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        }
        let ns = op(&mut rng)?;
        if let Some(slot) = lat.get_mut(i) {
            *slot = ns.min(u64::from(u32::MAX)) as u32;
        }
        i += 1;
        ctl.done.store(i, Ordering::Release);
    }
    Ok(i)
}

fn values(rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..POOL)
        .map(|_| {
            let mut v = Vec::with_capacity(VALUE_LEN);
            while v.len() < VALUE_LEN {
                v.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
            v.truncate(VALUE_LEN);
            v
        })
        .collect()
}

// ----- ringkv ------------------------------------------------------------

struct RingResult {
    load: Duration,
    rss_loaded: (u64, u64),
    base: Lat,
    during: Lat,
    /// Whole RSS and anonymous RSS over the baseline window.
    base_mem: (Peak, Peak),
    /// Whole RSS and anonymous RSS over the save.
    save_mem: (Peak, Peak),
    info: SnapshotInfo,
    save_wall: Duration,
    file_bytes: u64,
    log_used: u64,
    log_capacity: u64,
    load_back: Duration,
    open_back: Duration,
    replayed: u64,
}

fn self_mem() -> (u64, u64) {
    let (rss, file) = rss_split_of("self").expect("read /proc/self/statm");
    (rss, rss - file)
}

fn ringkv(run: &Run<'_>, log_capacity: u64, samples: &mut Samples) -> RingResult {
    let tmp = tempfile::tempdir_in(run.tmp).expect("temporary directory");
    let dir = tmp.path().join("data");
    let config = Config {
        active_expire: false,
        log: LogConfig {
            capacity: log_capacity,
            ..LogConfig::default()
        },
        snapshot: SnapshotConfig {
            auto_share: 0.9,
            ..SnapshotConfig::default()
        },
        ..Config::default()
    };
    let before = self_mem();
    let engine = Engine::open(&dir, config.clone()).expect("Engine::open of a new data directory");
    let mut kf = KeyFmt::new("key:");
    let t = Instant::now();
    for i in 0..run.n {
        let v = Bytes::copy_from_slice(&run.pool[i as usize % POOL]);
        engine.set(kf.key(i), v).expect("SET while loading");
    }
    engine.sync().expect("sync of the ring log");
    let load = t.elapsed();
    assert_eq!(engine.dbsize(), run.n);
    let after = self_mem();
    let rss_loaded = (after.0.saturating_sub(before.0), after.1.saturating_sub(before.1));
    println!(
        "ringkv: loaded {} keys in {:.2} s (log synced); RSS +{} MiB, of which anonymous +{} MiB; {} shards",
        run.n,
        load.as_secs_f64(),
        rss_loaded.0 >> 20,
        rss_loaded.1 >> 20,
        engine.stats().shards
    );

    let ctl = WriterCtl::default();
    let n = run.n as usize;
    let pool = run.pool;
    samples.epoch = Instant::now();
    let epoch = samples.epoch;
    let (lat, start_us) = (&mut samples.lat[..], &mut samples.start_us[..]);
    let (base, during, base_mem, save_mem, info, save_wall, t1) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut kf = KeyFmt::new("key:");
            writer_loop(&ctl, lat, start_us, epoch, |rng| {
                let i = rng.below(n) as u64;
                let v = Bytes::copy_from_slice(&pool[rng.below(POOL)]);
                let k = kf.key(i);
                let t = Instant::now();
                engine.set(k, v).map_err(|e| format!("SET: {e}"))?;
                Ok(t.elapsed().as_nanos() as u64)
            })
        });
        std::thread::sleep(run.warmup);

        // Baseline: no snapshot.
        let b0 = ctl.done.load(Ordering::Acquire);
        let t0 = Instant::now();
        let m = self_mem();
        let mut base_mem = (Peak::new(m.0), Peak::new(m.1));
        while t0.elapsed() < run.baseline {
            std::thread::sleep(SAMPLE_EVERY);
            let m = self_mem();
            base_mem.0.add(m.0);
            base_mem.1.add(m.1);
        }
        let b1 = ctl.done.load(Ordering::Acquire);
        let base_secs = t0.elapsed().as_secs_f64();

        // The save, on another thread, while the writer goes on.
        let m = self_mem();
        let mut save_mem = (Peak::new(m.0), Peak::new(m.1));
        let t1 = Instant::now();
        let saver = s.spawn(|| {
            let t = Instant::now();
            let r = engine.save();
            (r, t.elapsed())
        });
        while !saver.is_finished() {
            std::thread::sleep(SAMPLE_EVERY);
            let m = self_mem();
            save_mem.0.add(m.0);
            save_mem.1.add(m.1);
        }
        let s1 = ctl.done.load(Ordering::Acquire);
        let during_secs = t1.elapsed().as_secs_f64();
        ctl.stop.store(true, Ordering::Relaxed);
        let (info, save_wall) = saver.join().expect("the save thread panicked");
        let info = info.expect("Engine::save");
        let writes = writer.join().expect("the writer panicked").expect("writer");
        println!("ringkv: {writes} writes in all");
        (
            (b0, b1, base_secs),
            (b1, s1, during_secs),
            base_mem,
            save_mem,
            info,
            save_wall,
            t1,
        )
    });
    let base = samples.window(base.0, base.1, base.2);
    let during_lat = samples.window(during.0, during.1, during.2);
    let save_start = samples.since_epoch_us(t1);
    samples.timeline(
        "ringkv, during save()",
        during.0,
        during.1,
        save_start,
        save_start + save_wall.as_micros() as u64,
        20,
    );
    if !samples.start_us.is_empty() {
        println!(
            "  (the cut at 0 ms; the snapshot stream ended at {} ms; fsync, rename and the log's new oldest offset until {} ms)",
            info.duration_ms,
            save_wall.as_millis()
        );
    }
    let during = during_lat;
    let stats = engine.stats();
    let log = stats.log.expect("the engine has a ring log");
    let log_used = log.offset.saturating_sub(log.oldest_offset);
    println!(
        "ringkv: {info:?}; save() took {:.2} s; ring log holds {} MiB of {} MiB",
        save_wall.as_secs_f64(),
        log_used >> 20,
        log.capacity >> 20
    );
    drop(engine);

    let snapshot = std::fs::read_dir(&dir)
        .expect("read the data directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "rkvs"))
        .expect("a snapshot file in the data directory");
    let file_bytes = std::fs::metadata(&snapshot).expect("snapshot file size").len();

    // Load the file into a fresh engine (no log).
    let fresh = Engine::new(Config {
        active_expire: false,
        ..Config::default()
    })
    .expect("engine");
    let t = Instant::now();
    let file = File::open(&snapshot).expect("open the snapshot file");
    fresh
        .load_snapshot(BufReader::with_capacity(1 << 20, file))
        .expect("load_snapshot");
    let load_back = t.elapsed();
    assert_eq!(fresh.dbsize(), run.n);
    drop(fresh);

    // Reopen the directory: the snapshot, then the log after the cut.
    let t = Instant::now();
    let reopened = Engine::open(&dir, config).expect("Engine::open of the data directory");
    let open_back = t.elapsed();
    assert_eq!(reopened.dbsize(), run.n);
    let replayed = reopened.stats().log.map_or(0, |l| l.recovered_records);
    drop(reopened);
    println!(
        "ringkv: load_snapshot {:.2} s, Engine::open {:.2} s ({replayed} log records replayed)",
        load_back.as_secs_f64(),
        open_back.as_secs_f64()
    );
    RingResult {
        load,
        rss_loaded,
        base,
        during,
        base_mem,
        save_mem,
        info,
        save_wall,
        file_bytes,
        log_used,
        log_capacity: log.capacity,
        load_back,
        open_back,
        replayed,
    }
}

// ----- Redis -------------------------------------------------------------

struct RedisResult {
    version: String,
    load: Duration,
    rss_loaded: u64,
    base: Lat,
    during: Lat,
    /// Server RSS over the baseline window.
    base_mem: Peak,
    /// Server + child RSS over the BGSAVE.
    save_mem: Peak,
    child_seen: bool,
    fork_usec: u64,
    cow: u64,
    cow_polled: u64,
    save_wall: Duration,
    dump_bytes: u64,
    load_back: Duration,
}

fn rss_of(pid: u32) -> u64 {
    rss_bytes_of(&pid.to_string()).unwrap_or(0)
}

/// Waits until the server has loaded its dataset (`loading:0`).
fn wait_loaded(conn: &mut Conn) -> Result<(), String> {
    loop {
        let info = conn.info("persistence")?;
        if field(&info, "loading")? == "0" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn redis(run: &Run<'_>, socket: &Path, samples: &mut Samples) -> Result<RedisResult, String> {
    let bin = redis_server()?;
    let tmp = tempfile::tempdir_in(run.tmp).map_err(|e| format!("temporary directory: {e}"))?;
    let (server, stream) = Server::start(&bin, socket, tmp.path())?;
    let pid = server.pid();
    let mut conn = Conn::new(stream).map_err(|e| e.to_string())?;
    let version = field(&conn.info("server")?, "redis_version")?.to_string();
    println!("redis-server {version} ({}), pid {pid}", bin.display());
    let rss_empty = rss_of(pid);

    let mut kf = KeyFmt::new("key:");
    let t = Instant::now();
    let mut start = 0;
    while start < run.n {
        let end = (start + PIPELINE).min(run.n);
        for i in start..end {
            conn.queue(&[b"SET", kf.key(i), &run.pool[i as usize % POOL]]);
        }
        conn.flush().map_err(|e| e.to_string())?;
        conn.expect_ok(end - start).map_err(|e| format!("SET: {e}"))?;
        start = end;
    }
    let load = t.elapsed();
    match conn.command(&[b"DBSIZE"])? {
        Reply::Int(k) if k as u64 == run.n => {}
        r => return Err(format!("DBSIZE is {r:?}, expected {}", run.n)),
    }
    let rss_loaded = rss_of(pid).saturating_sub(rss_empty);
    println!(
        "redis: loaded {} keys in {:.2} s; RSS +{} MiB",
        run.n,
        load.as_secs_f64(),
        rss_loaded >> 20
    );

    let ctl = WriterCtl::default();
    let n = run.n as usize;
    let pool = run.pool;
    let mut wconn = server.connect()?;
    samples.epoch = Instant::now();
    let epoch = samples.epoch;
    let (lat, start_us) = (&mut samples.lat[..], &mut samples.start_us[..]);
    let measured = std::thread::scope(|s| -> Result<_, String> {
        let writer = s.spawn(|| {
            let mut kf = KeyFmt::new("key:");
            let r = writer_loop(&ctl, lat, start_us, epoch, |rng| {
                let i = rng.below(n) as u64;
                wconn.queue(&[b"SET", kf.key(i), &pool[rng.below(POOL)]]);
                let t = Instant::now();
                wconn.flush().map_err(|e| format!("SET: {e}"))?;
                wconn.expect_ok(1).map_err(|e| format!("SET: {e}"))?;
                Ok(t.elapsed().as_nanos() as u64)
            });
            // Do not leave the main thread waiting for a BGSAVE it can no
            // longer compare if the writer fails.
            ctl.stop.store(true, Ordering::Relaxed);
            r
        });
        let mut measure = || -> Result<_, String> {
            std::thread::sleep(run.warmup);
            let b0 = ctl.done.load(Ordering::Acquire);
            let t0 = Instant::now();
            let mut base_mem = Peak::new(rss_of(pid));
            while t0.elapsed() < run.baseline {
                std::thread::sleep(SAMPLE_EVERY);
                base_mem.add(rss_of(pid));
            }
            let b1 = ctl.done.load(Ordering::Acquire);
            let base_secs = t0.elapsed().as_secs_f64();

            let mut save_mem = Peak::new(rss_of(pid));
            let t1 = Instant::now();
            match conn.command(&[b"BGSAVE"])? {
                Reply::Simple(_) => {}
                r => return Err(format!("unexpected BGSAVE reply: {r:?}")),
            }
            let (mut child, mut child_seen, mut cow_polled) = (None, false, 0);
            let mut tick = 0u32;
            loop {
                if child.is_none() {
                    child = child_pids(pid).first().copied();
                }
                let child_rss = child.map_or(0, rss_of);
                child_seen |= child_rss > 0;
                save_mem.add(rss_of(pid) + child_rss);
                if tick.is_multiple_of(INFO_EVERY) {
                    let info = conn.info("persistence")?;
                    cow_polled = cow_polled.max(field_u64(&info, "current_cow_size").unwrap_or(0));
                    if field(&info, "rdb_bgsave_in_progress")? == "0" {
                        break;
                    }
                }
                if ctl.stop.load(Ordering::Relaxed) {
                    return Err("the writer stopped during BGSAVE".into());
                }
                tick += 1;
                std::thread::sleep(SAMPLE_EVERY);
            }
            let save_wall = t1.elapsed();
            let s1 = ctl.done.load(Ordering::Acquire);
            let during_secs = t1.elapsed().as_secs_f64();
            Ok((
                (b0, b1, base_secs),
                (b1, s1, during_secs),
                base_mem,
                save_mem,
                child_seen,
                cow_polled,
                save_wall,
                t1,
            ))
        };
        let measured = measure();
        ctl.stop.store(true, Ordering::Relaxed);
        let writes = writer.join().map_err(|_| "the writer panicked".to_string())??;
        println!("redis: {writes} writes in all");
        measured
    })?;
    let (base, during, base_mem, save_mem, child_seen, cow_polled, save_wall, t1) = measured;
    drop(wconn);
    let base = samples.window(base.0, base.1, base.2);
    let save_start = samples.since_epoch_us(t1);
    samples.timeline(
        "redis, during BGSAVE",
        during.0,
        during.1,
        save_start,
        save_start + save_wall.as_micros() as u64,
        20,
    );
    let during = samples.window(during.0, during.1, during.2);

    let persistence = conn.info("persistence")?;
    let status = field(&persistence, "rdb_last_bgsave_status")?;
    if status != "ok" {
        return Err(format!("BGSAVE failed: rdb_last_bgsave_status:{status}"));
    }
    let cow = field_u64(&persistence, "rdb_last_cow_size")?;
    let fork_usec = field_u64(&conn.info("stats")?, "latest_fork_usec")?;
    let dump = tmp.path().join("dump.rdb");
    let dump_bytes = std::fs::metadata(&dump)
        .map_err(|e| format!("{}: {e}", dump.display()))?
        .len();
    println!(
        "redis: BGSAVE {:.2} s, latest_fork_usec {fork_usec}, rdb_last_cow_size {} MiB, dump.rdb {} MiB",
        save_wall.as_secs_f64(),
        cow >> 20,
        dump_bytes >> 20
    );
    server.shutdown(&mut conn)?;

    // A new server on the same directory loads dump.rdb at start.
    let t = Instant::now();
    let (server, stream) = Server::start(&bin, socket, tmp.path())?;
    let mut conn = Conn::new(stream).map_err(|e| e.to_string())?;
    wait_loaded(&mut conn)?;
    let load_back = t.elapsed();
    match conn.command(&[b"DBSIZE"])? {
        Reply::Int(k) if k as u64 == run.n => {}
        r => return Err(format!("DBSIZE after loading dump.rdb is {r:?}, expected {}", run.n)),
    }
    server.shutdown(&mut conn)?;
    println!(
        "redis: dump.rdb loaded in {:.2} s; servers shut down (SHUTDOWN NOSAVE)",
        load_back.as_secs_f64()
    );
    Ok(RedisResult {
        version,
        load,
        rss_loaded,
        base,
        during,
        base_mem,
        save_mem,
        child_seen,
        fork_usec,
        cow,
        cow_polled,
        save_wall,
        dump_bytes,
        load_back,
    })
}

// ----- the table ---------------------------------------------------------

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / MIB)
}

fn mb_s(bytes: u64, d: Duration) -> String {
    format!("{:.0} MB/s", bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9))
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        String::new()
    }
}

fn main() {
    let mut args = Args::parse();
    let cpu = CpuMonitor::start();
    args.bench |= is_bench_run();
    let mut n = size_setting(args.keys, "RINGKV_SNAPSHOT_KEYS", 1_000_000);
    let (mut baseline, mut warmup) = (Duration::from_secs_f64(args.baseline), Duration::from_millis(500));
    if !args.bench {
        n = n.min(2_000);
        baseline = Duration::from_millis(200);
        warmup = Duration::from_millis(50);
        args.no_redis = true;
        args.max_samples = args.max_samples.min(1 << 20);
        println!("smoke run (no --bench flag): tiny sizes, no Redis, numbers are meaningless");
    }
    let data = n * (KEY_LEN + VALUE_LEN) as u64;
    let log_gib = match args.log_gib {
        Some(g) => g,
        None if !args.bench => 1,
        None => (n * (VALUE_LEN as u64 + 64)).div_ceil(1 << 30) + 8,
    };
    println!(
        "snapshot: {n} keys \"key:%08d\" with {VALUE_LEN}-byte random values ({:.0} MB of keys and values); \
         one writer overwriting random keys; baseline {:.1} s; ring log {log_gib} GiB",
        data as f64 / 1e6,
        baseline.as_secs_f64()
    );
    let tmp = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let pool = values(&mut Rng::new(1));
    let run = Run {
        n,
        baseline,
        warmup,
        pool: &pool,
        tmp: &tmp,
    };
    let mut samples = Samples::new(args.max_samples, args.timeline);

    let ring = (!args.no_ringkv).then(|| ringkv(&run, log_gib << 30, &mut samples));
    let redis = if args.no_redis {
        Err("skipped (--no-redis)".to_string())
    } else {
        redis(&run, &args.socket, &mut samples)
    };
    if let Err(e) = &redis {
        println!("Redis part: {e}");
    }
    let redis = redis.ok();
    println!("{}", cpu.report());
    println!();

    let redis_label = redis
        .as_ref()
        .map_or_else(|| "redis-server".to_string(), |r| format!("redis-server {}", r.version));
    let mut t = Table::new([
        "measure",
        "ringkv (Engine::save)",
        &format!("{redis_label} (BGSAVE)"),
        "ringkv/redis",
    ]);
    let cell = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let mut row = |name: &str, a: Option<String>, b: Option<String>, r: String| {
        t.row([name.to_string(), cell(a), cell(b), r]);
    };
    let both = |f: &dyn Fn(&RingResult) -> f64, g: &dyn Fn(&RedisResult) -> f64| match (&ring, &redis) {
        (Some(a), Some(b)) => ratio(f(a), g(b)),
        _ => String::new(),
    };
    let rg = ring.as_ref();
    let rd = redis.as_ref();
    row(
        "load N keys",
        rg.map(|r| format!("{} ({})", secs(r.load), mb_s(data, r.load))),
        rd.map(|r| format!("{} ({})", secs(r.load), mb_s(data, r.load))),
        both(&|a| a.load.as_secs_f64(), &|b| b.load.as_secs_f64()),
    );
    row(
        "RSS growth from the load (ringkv: anonymous + ring log pages)",
        rg.map(|r| format!("{} + {}", mib(r.rss_loaded.1), mib(r.rss_loaded.0 - r.rss_loaded.1))),
        rd.map(|r| mib(r.rss_loaded)),
        both(&|a| a.rss_loaded.1 as f64, &|b| b.rss_loaded as f64),
    );
    for (name, pick) in [
        ("write p50", (|l: &Lat| l.p50) as fn(&Lat) -> u64),
        ("write p99", |l: &Lat| l.p99),
        ("write p99.9", |l: &Lat| l.p999),
        ("write max", |l: &Lat| l.max),
    ] {
        for (phase, during) in [("baseline", false), ("during the snapshot", true)] {
            let lat_of = |base: &Lat, dur: &Lat| if during { pick(dur) } else { pick(base) };
            row(
                &format!("{name}, {phase}"),
                rg.map(|r| fmt_ns(lat_of(&r.base, &r.during) as f64)),
                rd.map(|r| fmt_ns(lat_of(&r.base, &r.during) as f64)),
                both(&|a| lat_of(&a.base, &a.during) as f64, &|b| {
                    lat_of(&b.base, &b.during) as f64
                }),
            );
        }
    }
    for (name, pick) in [
        ("write p99 during / baseline", (|l: &Lat| l.p99) as fn(&Lat) -> u64),
        ("write p99.9 during / baseline", |l: &Lat| l.p999),
    ] {
        row(
            name,
            rg.map(|r| ratio(pick(&r.during) as f64, pick(&r.base) as f64)),
            rd.map(|r| ratio(pick(&r.during) as f64, pick(&r.base) as f64)),
            String::new(),
        );
    }
    row(
        "writes/s: baseline, during the snapshot",
        rg.map(|r| format!("{:.0}, {:.0}", r.base.rate(), r.during.rate())),
        rd.map(|r| format!("{:.0}, {:.0}", r.base.rate(), r.during.rate())),
        String::new(),
    );
    row(
        "start pause (ringkv: start_pause_us; redis: latest_fork_usec)",
        rg.map(|r| fmt_ns(r.info.start_pause_us as f64 * 1e3)),
        rd.map(|r| fmt_ns(r.fork_usec as f64 * 1e3)),
        both(&|a| a.info.start_pause_us as f64, &|b| b.fork_usec as f64),
    );
    row(
        "save wall time (ringkv: save() incl. fsync; redis: BGSAVE until done)",
        rg.map(|r| secs(r.save_wall)),
        rd.map(|r| secs(r.save_wall)),
        both(&|a| a.save_wall.as_secs_f64(), &|b| b.save_wall.as_secs_f64()),
    );
    row(
        "snapshot file size",
        rg.map(|r| mib(r.file_bytes)),
        rd.map(|r| mib(r.dump_bytes)),
        both(&|a| a.file_bytes as f64, &|b| b.dump_bytes as f64),
    );
    row(
        "snapshot MB/s (ringkv: info.bytes / info.duration_ms)",
        rg.map(|r| {
            format!(
                "{} ({:.2} s)",
                mb_s(r.info.bytes, Duration::from_millis(r.info.duration_ms)),
                r.info.duration_ms as f64 / 1e3
            )
        }),
        None,
        String::new(),
    );
    row(
        "file MB/s over the save wall time",
        rg.map(|r| mb_s(r.file_bytes, r.save_wall)),
        rd.map(|r| mb_s(r.dump_bytes, r.save_wall)),
        both(&|a| a.file_bytes as f64 / a.save_wall.as_secs_f64(), &|b| {
            b.dump_bytes as f64 / b.save_wall.as_secs_f64()
        }),
    );
    row(
        "peak RSS increase during the save (ringkv: whole process; redis: server + child)",
        rg.map(|r| mib(r.save_mem.0.increase())),
        rd.map(|r| mib(r.save_mem.increase())),
        both(&|a| a.save_mem.0.increase() as f64, &|b| b.save_mem.increase() as f64),
    );
    row(
        "same, over the baseline window (no snapshot)",
        rg.map(|r| mib(r.base_mem.0.increase())),
        rd.map(|r| mib(r.base_mem.increase())),
        String::new(),
    );
    row(
        "memory the snapshot added (ringkv: peak anonymous RSS increase; redis: rdb_last_cow_size)",
        rg.map(|r| mib(r.save_mem.1.increase())),
        rd.map(|r| mib(r.cow)),
        both(&|a| a.save_mem.1.increase() as f64, &|b| b.cow as f64),
    );
    row(
        "ringkv: peak anonymous RSS increase over the baseline window",
        rg.map(|r| mib(r.base_mem.1.increase())),
        None,
        String::new(),
    );
    row(
        "redis: largest current_cow_size polled during BGSAVE",
        None,
        rd.map(|r| mib(r.cow_polled)),
        String::new(),
    );
    row(
        "ringkv: peak_buffer_bytes; writers' waits for the output; the walk's pauses",
        rg.map(|r| {
            format!(
                "{}; {} waits, {} ms; {} ms",
                mib(r.info.peak_buffer_bytes),
                r.info.writer_waits,
                r.info.writer_wait_ms,
                r.info.walk_wait_ms
            )
        }),
        None,
        String::new(),
    );
    row(
        "load the snapshot into a fresh store",
        rg.map(|r| format!("{} ({})", secs(r.load_back), mb_s(r.file_bytes, r.load_back))),
        rd.map(|r| format!("{} ({})", secs(r.load_back), mb_s(r.dump_bytes, r.load_back))),
        both(&|a| a.load_back.as_secs_f64(), &|b| b.load_back.as_secs_f64()),
    );
    row(
        "ringkv: Engine::open (snapshot + log replay)",
        rg.map(|r| format!("{} ({} records replayed)", secs(r.open_back), r.replayed)),
        None,
        String::new(),
    );
    t.print();
    println!();

    if let Some(r) = &redis {
        if !r.child_seen {
            println!("note: the BGSAVE child was never sampled (it ended within one 5 ms tick?)");
        }
    }
    if let Some(r) = &ring {
        println!(
            "ringkv: ring log used {} MiB of {} MiB; snapshot {} keys, {} items, {} bytes",
            r.log_used >> 20,
            r.log_capacity >> 20,
            r.info.keys,
            r.info.items,
            r.info.bytes
        );
        let limit = (64u64 << 20).max(data / 50);
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let extra = r.save_mem.1.increase();
        println!(
            "aim: extra memory ≤ max(64 MiB, 2% of {:.0} MB) = {}: anonymous RSS +{} -> {} (whole RSS +{})",
            data as f64 / 1e6,
            mib(limit),
            mib(extra),
            verdict(extra <= limit),
            mib(r.save_mem.0.increase())
        );
        println!(
            "aim: start pause ≤ 1 ms: {} µs -> {}",
            r.info.start_pause_us,
            verdict(r.info.start_pause_us <= 1000)
        );
        println!(
            "aim: write p99.9 during the snapshot ≤ 2× baseline: {} vs {} ({}×) -> {}",
            fmt_ns(r.during.p999 as f64),
            fmt_ns(r.base.p999 as f64),
            ratio(r.during.p999 as f64, r.base.p999 as f64),
            verdict(r.during.p999 <= 2 * r.base.p999)
        );
    }
}
