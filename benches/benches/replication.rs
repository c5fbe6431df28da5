//! Replication on loopback: ringkv (QUIC, mutual TLS) against redis-server
//! with a replica, side by side in one run.
//!
//! 1. Throughput: a follower connected and idle; one writer sends N telemetry
//!    HSETs (`telemetry:host-<i % 1000>`, field `m<i % 16>`, a ~24-byte
//!    reading) as fast as it can; timed from the first write until the
//!    follower has applied the last one. Reported: records/s and MiB/s of
//!    replication stream. Redis: the same HSETs pipelined (1000 per write)
//!    to the primary over a unix socket, until the replica's
//!    `master_repl_offset` equals the primary's.
//! 2. Lag at a fixed rate: the counters workload of the seeds (30k req/s, 62%
//!    writes: 18,600 INCRs/s on 10,000 counters), then 100,000 INCRs/s (the
//!    rate of DESIGN.md's lag aim), each paced for `--seconds`; every
//!    10 ms a probe writes a marker on the primary and measures the time until
//!    the follower shows it. ringkv: `last_write_offset` then polling the
//!    follower's `applied_offset` in-process; Redis: SET on the primary, then
//!    GET on the replica in a loop (each poll is a unix-socket round trip,
//!    ~20-40 µs, which Redis' figure includes).
//! 3. Full sync: `--keys` keys with 100-byte values on the primary; a fresh
//!    follower (a child process, so the primary's RSS is its own) joins; timed
//!    until it has loaded and swapped in the data. The primary's RSS is
//!    sampled every 5 ms; reported with the peak increase over the value
//!    before; then, in this process, the snapshot walk alone (into memory)
//!    and a load of it alone (into an empty engine). Redis: a replica started
//!    against the loaded primary (a forked
//!    RDB transfer), timed until `master_link_status:up` and not syncing;
//!    RSS of the server and its forked child, and `rdb_last_cow_size`.
//! 4. Wire bytes: the same number of records as telemetry (repetitive) and as
//!    random 100-byte values, through connections negotiating none, lz4 and
//!    zstd: bytes of ring stream versus bytes sent. Redis sends its
//!    replication stream uncompressed.
//!
//! Rings are anonymous (no disk); redis-server runs with `--save ''
//! --appendonly no` (installed with apt-get if missing).
//!
//! `cargo bench -p ringkv-benches --bench replication [-- --records 1000000 --seconds 5 --keys 1000000 --no-redis]`
//! (`RINGKV_BENCH_APPLY_THREADS=1` applies on one thread: the sequential path.)

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use ringkv::{Config, Engine, LogConfig};
use ringkv_benches::redis::{self, Conn};
use ringkv_benches::{fmt_duration, is_bench_run, percentile, rss_bytes, rss_split_of, CpuMonitor, Rng, Table};
use ringkv_replication::protocol::Codec;
use ringkv_replication::tls::{DevCerts, TlsConfig, TlsMaterial};
use ringkv_replication::{blocking, FollowerConfig, PrimaryConfig};

/// Replication side by side with Redis.
#[derive(Parser, Debug)]
struct Args {
    /// Set by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// Records for the throughput and wire-bytes runs.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Seconds of the fixed-rate lag run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Keys for the full-sync run.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Skip Redis.
    #[arg(long)]
    no_redis: bool,
}

const CHILD_ENV: &str = "RINGKV_BENCH_FOLLOWER";

/// `apply_threads` of every engine (and the follower child), from
/// `RINGKV_BENCH_APPLY_THREADS` (unset: the default, one per core up to 8;
/// 1: the sequential apply, for comparison).
fn apply_threads() -> usize {
    std::env::var("RINGKV_BENCH_APPLY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn engine(ring: u64) -> Engine {
    let config = Config {
        log: LogConfig {
            capacity: ring,
            ..LogConfig::default()
        },
        apply_threads: apply_threads(),
        ..Config::default()
    };
    Engine::builder()
        .config(config)
        .anonymous_log()
        .build()
        .expect("engine")
}

struct Certs {
    ca: DevCerts,
    server: TlsMaterial,
    client: TlsMaterial,
}

fn certs() -> Certs {
    let ca = DevCerts::new("bench CA").expect("ca");
    let server = ca.material(&ca.server(&["localhost"]).expect("server")).expect("tls");
    let client = ca.material(&ca.client("bench-follower").expect("client")).expect("tls");
    Certs { ca, server, client }
}

fn follower_config(addr: SocketAddr, codecs: Vec<Codec>) -> FollowerConfig {
    FollowerConfig {
        codecs,
        ack_interval_ms: 10,
        ..FollowerConfig::new(addr)
    }
}

fn wait(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn telemetry(i: u64) -> (String, String, String) {
    (
        format!("telemetry:host-{}", i % 1000),
        format!("m{}", i % 16),
        format!("{{\"v\":{},\"t\":{}}}", (i * 7919) % 10_000, 1_700_000_000 + i),
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// A ringkv primary and a connected follower, both in this process.
struct Pair {
    primary: Engine,
    replica: Engine,
    server: blocking::Primary,
    follower: blocking::Follower,
}

fn pair(certs: &Certs, ring: u64, codecs: Vec<Codec>) -> Pair {
    let primary = engine(ring);
    let server =
        blocking::Primary::start(primary.clone(), PrimaryConfig::default(), certs.server.clone()).expect("primary");
    let replica = engine(ring);
    let follower = blocking::Follower::start(
        replica.clone(),
        follower_config(server.local_addr(), codecs),
        certs.client.clone(),
    )
    .expect("follower");
    wait("initial sync", 30, || follower.info().full_syncs == 1);
    Pair {
        primary,
        replica,
        server,
        follower,
    }
}

fn throughput_ringkv(certs: &Certs, n: u64) -> (f64, f64, Duration) {
    let p = pair(certs, 4 << 30, vec![Codec::Lz4]);
    let start_offset = p.primary.log().expect("log").published();
    let started = Instant::now();
    for i in 0..n {
        let (k, f, v) = telemetry(i);
        p.primary.hset(k, [(f, v)]).expect("hset");
    }
    let end = p.primary.log().expect("log").published();
    wait("follower caught up", 300, || p.replica.applied_offset() >= end);
    let took = started.elapsed();
    let bytes = end - start_offset;
    drop(p.follower);
    drop(p.server);
    (n as f64 / took.as_secs_f64(), mib(bytes) / took.as_secs_f64(), took)
}

/// The follower away while the primary writes `n` records; then the time
/// from its reconnect until it has applied them all (a partial resync
/// reading the ring as fast as the path allows).
fn catchup_ringkv(certs: &Certs, n: u64) -> (Duration, Duration, u64) {
    let p = pair(certs, 4 << 30, vec![Codec::Lz4]);
    let config = follower_config(p.server.local_addr(), vec![Codec::Lz4]);
    p.follower.stop();
    let from = p.replica.applied_offset();
    let started = Instant::now();
    for i in 0..n {
        let (k, f, v) = telemetry(i);
        p.primary.hset(k, [(f, v)]).expect("hset");
    }
    let wrote = started.elapsed();
    let end = p.primary.log().expect("log").published();
    let started = Instant::now();
    let follower = blocking::Follower::start(p.replica.clone(), config, certs.client.clone()).expect("follower");
    wait("follower caught up", 300, || p.replica.applied_offset() >= end);
    let took = started.elapsed();
    assert_eq!(follower.info().full_syncs, 0, "a partial resync");
    drop(follower);
    drop(p.server);
    (wrote, took, end - from)
}

/// Redis' equivalent: the replica blocked by `DEBUG SLEEP` while the
/// primary takes `n` pipelined HSETs (kept in the replica's output buffer
/// and socket); then the time from the end of the sleep until the replica's
/// offset equals the primary's.
fn catchup_redis(bin: &Path, dir: &Path, n: u64) -> Result<(Duration, Duration, u64), String> {
    let mut rp = redis_pair(bin, dir, &["--enable-debug-command", "yes"])?;
    let before = redis::field_u64(&rp.p.info("replication")?, "master_repl_offset")?;
    let sleep_s = 2 + n / 100_000;
    let secs = sleep_s.to_string();
    rp.r.queue(&[b"DEBUG", b"SLEEP", secs.as_bytes()]);
    rp.r.flush().map_err(|e| e.to_string())?;
    let started = Instant::now();
    pipeline_hsets(&mut rp.p, n)?;
    let wrote = started.elapsed();
    if wrote.as_secs() >= sleep_s {
        return Err(format!("the writes took {wrote:?}, longer than the replica's sleep"));
    }
    rp.r.reply().map_err(|e| e.to_string())?;
    let t = Instant::now();
    redis_caught_up(&mut rp)?;
    let took = t.elapsed();
    let after = redis::field_u64(&rp.p.info("replication")?, "master_repl_offset")?;
    Ok((wrote, took, after - before))
}

fn pipeline_hsets(conn: &mut Conn, n: u64) -> Result<(), String> {
    let mut queued = 0;
    for i in 0..n {
        let (k, f, v) = telemetry(i);
        conn.queue(&[b"HSET", k.as_bytes(), f.as_bytes(), v.as_bytes()]);
        queued += 1;
        if queued == 1000 || i + 1 == n {
            conn.flush().map_err(|e| e.to_string())?;
            for _ in 0..queued {
                conn.reply().map_err(|e| e.to_string())?;
            }
            queued = 0;
        }
    }
    Ok(())
}

struct RedisPair {
    _primary: redis::Server,
    _replica: redis::Server,
    p: Conn,
    r: Conn,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn redis_pair(bin: &Path, dir: &Path, replica_args: &[&str]) -> Result<RedisPair, String> {
    let port = free_port().to_string();
    let pdir = dir.join("primary");
    let rdir = dir.join("replica");
    std::fs::create_dir_all(&pdir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&rdir).map_err(|e| e.to_string())?;
    let (primary, ps) = redis::Server::start_with(
        bin,
        &dir.join("p.sock"),
        &pdir,
        &["--port", &port, "--bind", "127.0.0.1", "--repl-backlog-size", "1gb"],
    )?;
    let mut args = vec!["--replicaof", "127.0.0.1", &port, "--repl-diskless-load", "disabled"];
    args.extend_from_slice(replica_args);
    let (replica, rs) = redis::Server::start_with(bin, &dir.join("r.sock"), &rdir, &args)?;
    let mut r = Conn::new(rs).map_err(|e| e.to_string())?;
    let p = Conn::new(ps).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = r.info("replication")?;
        if redis::field(&info, "master_link_status")? == "up"
            && redis::field_u64(&info, "master_sync_in_progress")? == 0
        {
            break;
        }
        if Instant::now() > deadline {
            return Err("the Redis replica did not connect".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(RedisPair {
        _primary: primary,
        _replica: replica,
        p,
        r,
    })
}

fn redis_caught_up(rp: &mut RedisPair) -> Result<(), String> {
    let target = redis::field_u64(&rp.p.info("replication")?, "master_repl_offset")?;
    loop {
        let at = redis::field_u64(&rp.r.info("replication")?, "master_repl_offset")?;
        if at >= target {
            return Ok(());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn throughput_redis(bin: &Path, dir: &Path, n: u64) -> Result<(f64, f64, Duration), String> {
    let mut rp = redis_pair(bin, dir, &[])?;
    let before = redis::field_u64(&rp.p.info("replication")?, "master_repl_offset")?;
    let started = Instant::now();
    pipeline_hsets(&mut rp.p, n)?;
    redis_caught_up(&mut rp)?;
    let took = started.elapsed();
    let after = redis::field_u64(&rp.p.info("replication")?, "master_repl_offset")?;
    Ok((
        n as f64 / took.as_secs_f64(),
        mib(after - before) / took.as_secs_f64(),
        took,
    ))
}

/// Paced counters (62% of 30k req/s are writes) for `secs`: `step(i,
/// false)` writes, `step(i, true)` probes and returns the lag in ns.
fn paced(rate: f64, secs: f64, mut step: impl FnMut(u64, bool) -> u64) -> Vec<u64> {
    let started = Instant::now();
    let total = (rate * secs) as u64;
    let mut lags = Vec::new();
    let mut next_probe = Duration::ZERO;
    let mut i = 0;
    // The writes due so far, then a 1 ms sleep (the writer must not take a
    // core from the replication threads by spinning).
    while i < total {
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(total);
        while i < due {
            step(i, false);
            i += 1;
        }
        if started.elapsed() >= next_probe {
            lags.push(step(i, true));
            next_probe += Duration::from_millis(10);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    lags.sort_unstable();
    lags
}

fn lag_ringkv(certs: &Certs, rate: f64, secs: f64) -> Vec<u64> {
    let p = pair(certs, 1 << 30, vec![Codec::Lz4]);
    let lags = paced(rate, secs, |i, probe| {
        if !probe {
            p.primary.incr(format!("counter:{}", i % 10_000)).expect("incr");
            return 0;
        }
        p.primary.set("marker", i.to_string()).expect("set");
        let at = p.primary.last_write_offset().expect("offset");
        let t = Instant::now();
        // Read-after-write as a user does it (a condition variable, not a spin
        // that would take a core from the replication threads).
        assert!(p.replica.wait_applied(at, Duration::from_secs(10)));
        t.elapsed().as_nanos() as u64
    });
    drop(p.follower);
    drop(p.server);
    lags
}

fn lag_redis(bin: &Path, dir: &Path, rate: f64, secs: f64) -> Result<Vec<u64>, String> {
    let mut rp = redis_pair(bin, dir, &[])?;
    let mut err = None;
    let lags = paced(rate, secs, |i, probe| {
        if !probe {
            let key = format!("counter:{}", i % 10_000);
            // Replies are left unread (a round trip per write would pace
            // the writer by the socket instead of the clock).
            rp.p.queue(&[b"INCR", key.as_bytes()]);
            if let Err(e) = rp.p.flush() {
                err = Some(e.to_string());
            }
            return 0;
        }
        let v = i.to_string();
        rp.p.queue(&[b"SET", b"marker", v.as_bytes()]);
        let _ = rp.p.flush();
        let t = Instant::now();
        loop {
            match rp.r.command(&[b"GET", b"marker"]) {
                Ok(redis::Reply::Bulk(Some(b))) if b == v.as_bytes() => break,
                Ok(_) => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        t.elapsed().as_nanos() as u64
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok(lags)
}

/// Child process: a follower that full-syncs from the primary, prints how
/// long it took, and exits.
fn follower_child(spec: &str) {
    let (addr, dir) = spec.split_once('|').expect("spec");
    let dir = Path::new(dir);
    let tls = TlsMaterial::load(&TlsConfig {
        cert: dir.join("follower.pem"),
        key: dir.join("follower.key"),
        ca: dir.join("ca.pem"),
        pinned: Vec::new(),
    })
    .expect("tls");
    let replica = engine(1 << 30);
    let started = Instant::now();
    let f = blocking::Follower::start(
        replica.clone(),
        follower_config(addr.parse().expect("addr"), vec![Codec::Lz4]),
        tls,
    )
    .expect("follower");
    wait("full sync", 600, || f.info().full_syncs == 1);
    println!("synced {} {}", started.elapsed().as_micros(), replica.dbsize());
}

struct FullSync {
    took: Duration,
    bytes: u64,
    rss_before: u64,
    rss_peak: u64,
    extra: String,
}

fn sample_rss(pid: &str, stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut peak = 0;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        peak = peak.max(rss_split_of(pid).map_or(0, |(r, _)| r));
        std::thread::sleep(Duration::from_millis(5));
    }
    peak
}

/// 1024 random 100-byte values: neither Redis' LZF nor lz4 gains much.
fn value_pool() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(11);
    (0..1024)
        .map(|_| (0..100).map(|_| rng.next_u64() as u8).collect())
        .collect()
}

fn full_sync_ringkv(certs: &Certs, keys: u64, dir: &Path) -> FullSync {
    let primary = engine(1 << 30);
    let pool = value_pool();
    for i in 0..keys {
        primary
            .set(format!("key:{i:08}"), pool[i as usize % pool.len()].clone())
            .expect("set");
    }
    let server =
        blocking::Primary::start(primary.clone(), PrimaryConfig::default(), certs.server.clone()).expect("primary");
    let cert_dir = dir.join("certs");
    certs
        .ca
        .write(&cert_dir, "follower", &certs.ca.client("child").expect("client"))
        .expect("certs");
    let rss_before = rss_bytes().unwrap_or(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (out, peak) = std::thread::scope(|s| {
        let sampler = s.spawn(|| sample_rss("self", &stop));
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .env(CHILD_ENV, format!("{}|{}", server.local_addr(), cert_dir.display()))
            .output()
            .expect("child follower");
        stop.store(true, std::sync::atomic::Ordering::Release);
        (out, sampler.join().expect("sampler"))
    });
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("synced "))
        .unwrap_or_else(|| panic!("child: {text}"));
    let mut parts = line.split_whitespace().skip(1);
    let us: u64 = parts.next().and_then(|x| x.parse().ok()).expect("time");
    let loaded: u64 = parts.next().and_then(|x| x.parse().ok()).expect("keys");
    assert_eq!(loaded, keys);
    let stats = server.stats();
    let snap = primary.stats().snapshot.last.expect("a snapshot was taken");
    // The two ends alone, in this process, after the sync: the snapshot
    // walk into memory, and a load of it into an empty engine.
    let t = Instant::now();
    let (image, _) = primary.snapshot_to(Vec::new()).expect("snapshot");
    let walk = t.elapsed();
    let fresh = Engine::new(Config::default()).expect("engine");
    let t = Instant::now();
    fresh.load_snapshot(&image[..]).expect("load");
    let load = t.elapsed();
    let link = format!(
        "snapshot {:.1} MB raw, {:.1} MB sent; snapshot buffer peak {:.1} MB; alone: walk {}, load {}",
        snap.bytes as f64 / 1e6,
        stats.snapshot_wire_sent as f64 / 1e6,
        snap.peak_buffer_bytes as f64 / 1e6,
        fmt_duration(walk),
        fmt_duration(load)
    );
    FullSync {
        took: Duration::from_micros(us),
        bytes: snap.bytes,
        rss_before,
        rss_peak: peak,
        extra: link,
    }
}

fn full_sync_redis(bin: &Path, dir: &Path, keys: u64) -> Result<FullSync, String> {
    let port = free_port().to_string();
    let pdir = dir.join("fs-primary");
    let rdir = dir.join("fs-replica");
    std::fs::create_dir_all(&pdir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&rdir).map_err(|e| e.to_string())?;
    // No 5 s wait for more replicas before a diskless transfer.
    let (primary, ps) = redis::Server::start_with(
        bin,
        &dir.join("fp.sock"),
        &pdir,
        &[
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--repl-diskless-sync-delay",
            "0",
        ],
    )?;
    let mut p = Conn::new(ps).map_err(|e| e.to_string())?;
    let pool = value_pool();
    let mut queued = 0;
    for i in 0..keys {
        let k = format!("key:{i:08}");
        p.queue(&[b"SET", k.as_bytes(), &pool[i as usize % pool.len()]]);
        queued += 1;
        if queued == 1000 || i + 1 == keys {
            p.flush().map_err(|e| e.to_string())?;
            p.expect_ok(queued)?;
            queued = 0;
        }
    }
    let pid = primary.pid();
    let rss_before = rss_split_of(&pid.to_string()).map_err(|e| e.to_string())?.0;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let mut total = rss_split_of(&pid.to_string()).map_or(0, |(r, _)| r);
                for child in redis::child_pids(pid) {
                    total += rss_split_of(&child.to_string()).map_or(0, |(r, _)| r);
                }
                peak = peak.max(total);
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        let r = (|| {
            let (replica, rs) = redis::Server::start_with(
                bin,
                &dir.join("fr.sock"),
                &rdir,
                &["--replicaof", "127.0.0.1", &port, "--repl-diskless-load", "disabled"],
            )?;
            let mut r = Conn::new(rs).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                if let Ok(info) = r.info("replication") {
                    if redis::field(&info, "master_link_status").is_ok_and(|s| s == "up")
                        && redis::field_u64(&info, "master_sync_in_progress").is_ok_and(|v| v == 0)
                    {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    return Err("the Redis replica did not sync".to_string());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok::<_, String>((started.elapsed(), replica))
        })();
        stop.store(true, std::sync::atomic::Ordering::Release);
        (r, sampler.join().expect("sampler"))
    });
    let ((took, _replica), peak) = (result.0?, result.1);
    let persistence = p.info("persistence")?;
    let cow = redis::field_u64(&persistence, "rdb_last_cow_size").unwrap_or(0);
    // The transfer was diskless; the same RDB, saved afterwards, gives its size.
    p.command(&[b"SAVE"])?;
    let rdb = std::fs::metadata(pdir.join("dump.rdb")).map_or(0, |m| m.len());
    drop(primary);
    Ok(FullSync {
        took,
        bytes: rdb,
        rss_before,
        rss_peak: peak,
        extra: format!(
            "RDB {:.1} MB; forked child's RSS counts shared pages, its copy-on-write was {:.1} MB",
            rdb as f64 / 1e6,
            cow as f64 / 1e6
        ),
    })
}

fn wire(certs: &Certs, n: u64, codec: Codec, random: bool) -> (u64, u64) {
    let p = pair(certs, 1 << 30, vec![codec]);
    let mut rng = Rng::new(7);
    for i in 0..n {
        if random {
            let v: Vec<u8> = (0..100).map(|_| rng.next_u64() as u8).collect();
            p.primary.set(format!("key:{i:08}"), v).expect("set");
        } else {
            let (k, f, v) = telemetry(i);
            p.primary.hset(k, [(f, v)]).expect("hset");
        }
    }
    let end = p.primary.log().expect("log").published();
    wait("caught up", 300, || p.replica.applied_offset() >= end);
    let link = p.server.stats().followers.first().cloned().expect("follower");
    drop(p.follower);
    drop(p.server);
    (link.bytes_raw, link.bytes_wire)
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        follower_child(&spec);
        return;
    }
    let mut args = Args::parse();
    args.bench |= is_bench_run();
    if !args.bench {
        args.records = args.records.min(2_000);
        args.keys = args.keys.min(2_000);
        args.seconds = args.seconds.min(0.2);
        args.no_redis = true;
        println!("smoke run (no --bench flag): tiny sizes, no Redis, numbers are meaningless");
    }
    let cpu = CpuMonitor::start();
    let certs = certs();
    let tmp = tempfile::tempdir().expect("temp dir");
    let redis_bin = if args.no_redis {
        None
    } else {
        match redis::redis_server() {
            Ok(b) => Some(b),
            Err(e) => {
                println!("Redis skipped: {e}");
                None
            }
        }
    };

    println!(
        "\n## Throughput: {} telemetry HSETs, follower connected\n",
        args.records
    );
    let mut t = Table::new([
        "store",
        "records/s",
        "MiB/s of stream",
        "time to caught up",
        "ratio to Redis",
    ]);
    let (r_rate, r_mib, r_took) = throughput_ringkv(&certs, args.records);
    let redis_tp = redis_bin
        .as_deref()
        .map(|b| throughput_redis(b, tmp.path(), args.records));
    let ratio = match &redis_tp {
        Some(Ok((rate, _, _))) => format!("{:.2}", r_rate / rate),
        _ => "-".into(),
    };
    t.row([
        "ringkv (QUIC, lz4)".to_string(),
        format!("{r_rate:.0}"),
        format!("{r_mib:.1}"),
        fmt_duration(r_took),
        ratio,
    ]);
    match redis_tp {
        Some(Ok((rate, mibs, took))) => t.row([
            "redis-server + replica".to_string(),
            format!("{rate:.0}"),
            format!("{mibs:.1}"),
            fmt_duration(took),
            "1.00".into(),
        ]),
        Some(Err(e)) => println!("Redis throughput failed: {e}"),
        None => {}
    }
    t.print();

    println!(
        "\n## Catch-up after a pause: {} telemetry HSETs written while the follower was away\n",
        args.records
    );
    let mut t = Table::new([
        "store",
        "primary wrote in",
        "caught up in",
        "records/s",
        "MiB/s of stream",
        "ratio to Redis",
    ]);
    let (wrote, took, bytes) = catchup_ringkv(&certs, args.records);
    let redis_cu = redis_bin
        .as_deref()
        .map(|b| catchup_redis(b, &tmp.path().join("catchup"), args.records));
    let rate = args.records as f64 / took.as_secs_f64();
    let ratio = match &redis_cu {
        Some(Ok((_, rtook, _))) => format!("{:.2}", rtook.as_secs_f64() / took.as_secs_f64()),
        _ => "-".into(),
    };
    t.row([
        "ringkv (partial resync from the ring)".to_string(),
        fmt_duration(wrote),
        fmt_duration(took),
        format!("{rate:.0}"),
        format!("{:.1}", mib(bytes) / took.as_secs_f64()),
        ratio,
    ]);
    match redis_cu {
        Some(Ok((wrote, took, bytes))) => t.row([
            "redis-server + replica (after DEBUG SLEEP)".to_string(),
            fmt_duration(wrote),
            fmt_duration(took),
            format!("{:.0}", args.records as f64 / took.as_secs_f64()),
            format!("{:.1}", mib(bytes) / took.as_secs_f64()),
            "1.00".into(),
        ]),
        Some(Err(e)) => println!("Redis catch-up failed: {e}"),
        None => {}
    }
    t.print();

    for (rate, what) in [(18_600.0, "62% of 30k req/s"), (100_000.0, "the DESIGN.md aim's rate")] {
        println!(
            "\n## Lag at {rate:.0} INCRs/s ({what}) for {:.1} s, probe every 10 ms\n",
            args.seconds
        );
        let mut t = Table::new(["store", "probes", "p50", "p99", "max"]);
        let fmt = |ns: u64| ringkv_benches::fmt_ns(ns as f64);
        let lags = lag_ringkv(&certs, rate, args.seconds);
        t.row([
            "ringkv (wait_applied on the follower)".to_string(),
            lags.len().to_string(),
            fmt(percentile(&lags, 50.0)),
            fmt(percentile(&lags, 99.0)),
            fmt(lags.last().copied().unwrap_or(0)),
        ]);
        if let Some(b) = &redis_bin {
            match lag_redis(b, &tmp.path().join(format!("lag{rate}")), rate, args.seconds) {
                Ok(lags) => t.row([
                    "redis-server + replica (GET poll over a socket)".to_string(),
                    lags.len().to_string(),
                    fmt(percentile(&lags, 50.0)),
                    fmt(percentile(&lags, 99.0)),
                    fmt(lags.last().copied().unwrap_or(0)),
                ]),
                Err(e) => println!("Redis lag failed: {e}"),
            }
        }
        t.print();
    }

    println!("\n## Full sync of {} keys with 100-byte values\n", args.keys);
    let mut t = Table::new([
        "store",
        "time",
        "keys+values MB/s",
        "stream MB/s",
        "primary RSS before",
        "peak increase",
        "notes",
    ]);
    let dataset = args.keys as f64 * (12.0 + 100.0);
    let mut row = |name: &str, f: &FullSync| {
        t.row([
            name.to_string(),
            fmt_duration(f.took),
            format!("{:.1}", dataset / 1e6 / f.took.as_secs_f64()),
            format!("{:.1}", f.bytes as f64 / 1e6 / f.took.as_secs_f64()),
            format!("{:.0} MB", f.rss_before as f64 / 1e6),
            format!("{:.0} MB", f.rss_peak.saturating_sub(f.rss_before) as f64 / 1e6),
            f.extra.clone(),
        ])
    };
    let fs = full_sync_ringkv(&certs, args.keys, tmp.path());
    row("ringkv (snapshot stream + log)", &fs);
    if let Some(b) = &redis_bin {
        match full_sync_redis(b, &tmp.path().join("fs"), args.keys) {
            Ok(f) => row("redis-server (fork + RDB)", &f),
            Err(e) => println!("Redis full sync failed: {e}"),
        }
    }
    t.print();

    println!("\n## Wire bytes for {} records\n", args.records);
    let mut t = Table::new(["workload", "codec", "stream bytes", "sent", "ratio"]);
    for random in [false, true] {
        for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
            let (raw, sent) = wire(&certs, args.records, codec, random);
            t.row([
                if random {
                    "random 100-byte values"
                } else {
                    "telemetry HSETs"
                }
                .to_string(),
                format!("{codec:?}"),
                format!("{:.1} MB", raw as f64 / 1e6),
                format!("{:.1} MB", sent as f64 / 1e6),
                format!("{:.2}", sent as f64 / raw.max(1) as f64),
            ]);
        }
    }
    t.print();
    println!("\n{}", cpu.report());
}
