//! `ringkv-demo`: the main job of ringkv as it exists today, on defaults.
//!
//! Three workloads from the production write-ups the project started from,
//! run at once on one engine:
//! - telemetry ingestion: producers write report fields into per-host hashes
//!   while a consumer drains them in bounded, atomic batches (HDRAIN instead
//!   of HGETALL + DEL, which blocked Redis for a second and could lose
//!   fields written in between);
//! - session tokens with a TTL, expiring while the demo runs;
//! - API counters at a 62% write mix.
//!
//! Then it shows persistence: writes to a data directory (the ring log is the
//! write-ahead log), takes a fork-free snapshot while a writer keeps
//! overwriting keys (reporting the memory it took), stops the engine, reopens
//! the directory and reports what was loaded and replayed.
//!
//! Last, replication over loopback QUIC with mutual TLS (development
//! certificates made on the spot): a follower joins (full sync), tails the
//! primary's ring while telemetry streams in, is disconnected while the
//! primary goes on writing and reconnects with a partial resync (no
//! snapshot), reads its own writes through the primary's offsets, and is
//! promoted. Lag, compression and the sync counters are printed.
//!
//! It prints what happened, with timings, and checks that nothing was lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ringkv::{Config, Engine, ScanOptions, SetOptions};

/// Command-line options (all have defaults).
#[derive(Parser, Debug)]
#[command(about = "ringkv demo: telemetry ingestion and draining, TTL'd sessions, counters")]
struct Args {
    /// How long the workload runs, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    duration_ms: u64,
    /// Hosts reporting telemetry (one hash each).
    #[arg(long, default_value_t = 64)]
    hosts: u64,
    /// Producer threads.
    #[arg(long, default_value_t = 2)]
    producers: u64,
    /// Fields one drain call takes at most.
    #[arg(long, default_value_t = 500)]
    drain_batch: usize,
    /// Session token time to live, in milliseconds.
    #[arg(long, default_value_t = 500)]
    session_ttl_ms: u64,
    /// Print the engine's stats as JSON at the end.
    #[arg(long)]
    json: bool,
    /// Data directory for the persistence part (default: a fresh temporary one).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Durability of the ring log: none, everysec or always.
    #[arg(long, default_value = "none")]
    durability: String,
    /// Writes in the persistence part.
    #[arg(long, default_value_t = 200_000)]
    persist_writes: u64,
    /// 1 KB values loaded before the snapshot under load.
    #[arg(long, default_value_t = 100_000)]
    snapshot_keys: u64,
    /// Telemetry fields written while the follower tails the primary.
    #[arg(long, default_value_t = 300_000)]
    replicated_writes: u64,
    /// Skip the replication part.
    #[arg(long)]
    no_replication: bool,
}

/// Anonymous resident memory of this process in bytes (Linux), or 0: the
/// heap, without the ring log's file pages (which a snapshot does not add).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let engine = Engine::new(Config {
        active_expire_interval_ms: 50,
        ..Config::default()
    })?;
    println!(
        "ringkv demo: {} shards, {} producers, {} hosts, {} ms",
        engine.stats().shards,
        args.producers,
        args.hosts,
        args.duration_ms
    );

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let sessions = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let (drained, drain_calls, mut drain_times, counter_ops) = std::thread::scope(|s| {
        // Producers: telemetry fields, session logins.
        for p in 0..args.producers {
            let (engine, stop, written, sessions) = (engine.clone(), stop.clone(), written.clone(), sessions.clone());
            s.spawn(move || -> ringkv::Result<()> {
                let mut report = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let host = report % args.hosts;
                    engine.hset(
                        format!("telemetry:host-{host}"),
                        [
                            (
                                format!("p{p}:r{report}:cpu"),
                                format!("{:.2}", (report % 100) as f64 / 100.0),
                            ),
                            (format!("p{p}:r{report}:mem"), format!("{}", 1024 + report % 4096)),
                        ],
                    )?;
                    written.fetch_add(2, Ordering::Relaxed);
                    if report.is_multiple_of(10) {
                        engine.set_with(
                            format!("session:{p}:{report}"),
                            format!("token-{report:016x}"),
                            SetOptions::new().px(args.session_ttl_ms),
                        )?;
                        sessions.fetch_add(1, Ordering::Relaxed);
                    }
                    report += 1;
                }
                Ok(())
            });
        }
        // API counters: 62% writes (INCR), 38% reads (GET).
        let counters = {
            let (engine, stop) = (engine.clone(), stop.clone());
            s.spawn(move || -> ringkv::Result<u64> {
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("api:tenant-{}:requests", ops % 100);
                    if ops % 100 < 62 {
                        engine.incr(&key)?;
                    } else {
                        engine.get(&key)?;
                    }
                    ops += 1;
                }
                Ok(ops)
            })
        };
        // Consumer: drain every host's hash in bounded batches.
        let consumer = {
            let (engine, stop) = (engine.clone(), stop.clone());
            s.spawn(move || -> ringkv::Result<(u64, u64, Vec<Duration>)> {
                let (mut drained, mut calls, mut times) = (0u64, 0u64, Vec::new());
                loop {
                    let finishing = stop.load(Ordering::Relaxed);
                    let mut got_any = false;
                    for host in 0..args.hosts {
                        let t = Instant::now();
                        let batch = engine.hdrain(format!("telemetry:host-{host}"), args.drain_batch)?;
                        calls += 1;
                        if !batch.is_empty() {
                            times.push(t.elapsed());
                            got_any = true;
                        }
                        drained += batch.len() as u64;
                    }
                    if finishing && !got_any {
                        return Ok((drained, calls, times));
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(args.duration_ms));
        stop.store(true, Ordering::Relaxed);
        let (drained, calls, times) = consumer.join().expect("consumer thread")?;
        let counter_ops = counters.join().expect("counter thread")?;
        Ok::<_, ringkv::Error>((drained, calls, times, counter_ops))
    })?;
    let elapsed = started.elapsed();

    let written = written.load(Ordering::Relaxed);
    println!("\ntelemetry");
    println!(
        "  fields written   {written:>10}  ({:.0}/s)",
        written as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  fields drained   {drained:>10}  in {drain_calls} HDRAIN calls of at most {}",
        args.drain_batch
    );
    drain_times.sort_unstable();
    let pct = |q: f64| {
        drain_times
            .get(((drain_times.len() as f64 * q) as usize).min(drain_times.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "  HDRAIN latency   p50 {:.1?}  p99 {:.1?}  max {:.1?}  (wall time; {} busy threads on this machine's cores)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        args.producers + 2
    );
    let left: usize = (0..args.hosts)
        .map(|h| engine.hlen(format!("telemetry:host-{h}")))
        .sum::<ringkv::Result<usize>>()?;
    println!(
        "  fields left      {left:>10}  (lost: {})",
        written - drained - left as u64
    );
    if written != drained + left as u64 {
        return Err("telemetry fields were lost".into());
    }

    println!("\nsessions (TTL {} ms)", args.session_ttl_ms);
    let created = sessions.load(Ordering::Relaxed);
    let live_now = engine
        .scan_iter(ScanOptions::default().count(1000).pattern("session:*"))
        .count();
    println!("  created          {created:>10}");
    println!("  live now         {live_now:>10}");
    let wait = Instant::now();
    while engine
        .scan_iter(ScanOptions::default().count(1000).pattern("session:*"))
        .count()
        > 0
        && wait.elapsed() < Duration::from_millis(args.session_ttl_ms + 2000)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "  all expired in   {:>10.0?} after the last login (active expiry, {} keys expired so far)",
        wait.elapsed(),
        engine.stats().expired_keys
    );

    println!("\ncounters (62% INCR / 38% GET)");
    println!(
        "  operations       {counter_ops:>10}  ({:.0}/s on one thread)",
        counter_ops as f64 / elapsed.as_secs_f64()
    );

    let stats = engine.stats();
    println!("\nengine");
    println!("  keys             {:>10}", stats.keys);
    println!("  used memory      {:>10} bytes", stats.used_memory);
    println!("  expired keys     {:>10}", stats.expired_keys);
    println!("  rehashing shards {:>10}", stats.rehashing_shards);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    }
    persistence(&args)?;
    if !args.no_replication {
        replication(&args)?;
    }
    Ok(())
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// A primary and a follower over loopback QUIC: full sync, tailing under
/// load, disconnect and partial resync, read-after-write, promotion.
fn replication(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    use ringkv_replication::tls::DevCerts;
    use ringkv_replication::{blocking, FollowerConfig, PrimaryConfig};

    println!("\nreplication (QUIC on 127.0.0.1, mutual TLS with a development CA)");
    let ca = DevCerts::new("ringkv demo CA")?;
    let server_tls = ca.material(&ca.server(&["localhost"])?)?;
    let client_tls = ca.material(&ca.client("demo-follower")?)?;
    let anonymous = || Engine::builder().anonymous_log().build();
    let primary = anonymous()?;
    for i in 0..10_000u64 {
        primary.hset(format!("telemetry:host-{}", i % 64), [(format!("boot:{i}"), "ok")])?;
    }
    let server = blocking::Primary::start(primary.clone(), PrimaryConfig::default(), server_tls)?;
    let follower_config = FollowerConfig {
        name: "demo-follower".into(),
        ..FollowerConfig::new(server.local_addr())
    };
    let replica = anonymous()?;
    let started = Instant::now();
    let follower = blocking::Follower::start(replica.clone(), follower_config.clone(), client_tls.clone())?;
    wait_until("the full sync", 30, || follower.info().full_syncs == 1)?;
    println!(
        "  follower joined   full sync in {:.0?} ({} keys; reason: {})",
        started.elapsed(),
        replica.dbsize(),
        follower.info().last_full_sync_reason.unwrap_or_default()
    );

    // Telemetry streams in; the follower's lag is sampled meanwhile.
    let stop = AtomicBool::new(false);
    let mut lags = Vec::new();
    let started = Instant::now();
    std::thread::scope(|s| -> ringkv::Result<()> {
        let writer = s.spawn(|| -> ringkv::Result<()> {
            for i in 0..args.replicated_writes {
                primary.hset(
                    format!("telemetry:host-{}", i % 64),
                    [(
                        format!("m{}", i % 32),
                        format!("{{\"cpu\":{:.2}}}", (i % 100) as f64 / 100.0),
                    )],
                )?;
            }
            stop.store(true, Ordering::Release);
            Ok(())
        });
        while !stop.load(Ordering::Acquire) {
            let behind = primary
                .log()
                .map_or(0, |l| l.published())
                .saturating_sub(replica.applied_offset());
            lags.push(behind);
            std::thread::sleep(Duration::from_millis(2));
        }
        writer
            .join()
            .map_err(|_| ringkv::Error::Replication("writer panicked".into()))?
    })?;
    let end = primary.log().map_or(0, |l| l.published());
    wait_until("the follower to catch up", 60, || replica.applied_offset() >= end)?;
    let took = started.elapsed();
    lags.sort_unstable();
    let pct = |p: f64| {
        lags.get(((lags.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let link = server.stats().followers.first().cloned().ok_or("no follower")?;
    println!(
        "  tailing           {} writes replicated in {:.0?} ({:.0}/s); lag p50 {} B, p99 {} B",
        args.replicated_writes,
        took,
        args.replicated_writes as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    println!(
        "  compression       {:?}: {:.1} MB of log sent as {:.1} MB ({:.0}%)",
        link.codec,
        link.bytes_raw as f64 / 1e6,
        link.bytes_wire as f64 / 1e6,
        100.0 * link.bytes_wire as f64 / link.bytes_raw.max(1) as f64
    );
    if replica.digest() != primary.digest() {
        return Err("the follower differs from the primary".into());
    }
    match replica.set("x", "y") {
        Err(ringkv::Error::ReadOnly) => println!("  follower writes   refused: {}", ringkv::Error::ReadOnly),
        other => return Err(format!("a follower write was not refused: {other:?}").into()),
    }

    // Disconnect, keep writing, reconnect: the follower continues by offset.
    follower.stop();
    for i in 0..50_000u64 {
        if i % 100 < 62 {
            primary.incr(format!("counter:{}", i % 100))?;
        } else {
            primary.get(format!("counter:{}", i % 100))?;
        }
    }
    let behind = primary.log().map_or(0, |l| l.published()) - replica.applied_offset();
    let started = Instant::now();
    let follower = blocking::Follower::start(replica.clone(), follower_config, client_tls)?;
    let end = primary.log().map_or(0, |l| l.published());
    wait_until("the partial resync", 30, || replica.applied_offset() >= end)?;
    let stats = server.stats();
    println!(
        "  reconnected       {behind} bytes behind, caught up in {:.0?} by partial resync \
         (sync_full {}, sync_partial_ok {})",
        started.elapsed(),
        stats.sync_full,
        stats.sync_partial_ok
    );
    if stats.sync_full != 1 || follower.info().full_syncs != 0 {
        return Err("the reconnect needed a full sync".into());
    }

    // Read-after-write on the follower through the primary's offset.
    primary.set("greeting", "written on the primary")?;
    let at = primary.last_write_offset().ok_or("no offset")?;
    let started = Instant::now();
    let acked = server.wait_for_followers(at, 1, Duration::from_secs(5));
    let seen = replica.wait_applied(at, Duration::from_secs(5));
    println!(
        "  read-after-write  offset {at}: {acked} follower acked, visible on the follower: {seen} ({:.0?})",
        started.elapsed()
    );

    // Promotion: the follower becomes a primary with a new history.
    let promotion = follower.promote()?;
    replica.set("greeting", "written on the promoted follower")?;
    println!(
        "  promoted          new replid {}…, previous {}… until offset {}",
        &promotion.replid[..8],
        &promotion.prev_replid[..8],
        promotion.switch_offset
    );
    server.shutdown();
    Ok(())
}

/// Write to a data directory, stop, reopen, report what was recovered.
fn persistence(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let durability: ringkv::Durability = serde_json::from_str(&format!("\"{}\"", args.durability))
        .map_err(|_| format!("unknown durability {:?} (none, everysec, always)", args.durability))?;
    let temp = std::env::temp_dir().join(format!("ringkv-demo-{}", std::process::id()));
    let dir = args.data_dir.clone().unwrap_or_else(|| temp.clone());
    let config = Config {
        log: ringkv::LogConfig {
            durability,
            ..ringkv::LogConfig::default()
        },
        ..Config::default()
    };
    println!("\npersistence ({}, durability {})", dir.display(), args.durability);
    let started = Instant::now();
    let engine = Engine::open(&dir, config.clone())?;
    let before = engine.stats().log.map(|l| l.recovered_records).unwrap_or(0);
    for i in 0..args.persist_writes {
        match i % 4 {
            0 => {
                engine.incr(format!("api:tenant-{}:requests", i % 100))?;
            }
            1 => {
                engine.hset(format!("telemetry:host-{}", i % 64), [(format!("r{i}"), "0.5")])?;
            }
            2 => {
                engine.set_with(format!("session:{}", i % 5000), "token", SetOptions::new().ex(3600))?;
            }
            _ => {
                engine.hdrain(format!("telemetry:host-{}", i % 64), 1)?;
            }
        }
    }
    let wrote = started.elapsed();
    snapshot_under_load(&engine, args.snapshot_keys)?;
    let digest = engine.digest();
    let log = engine.stats().log.ok_or("the engine has no log")?;
    println!(
        "  wrote            {:>10} operations in {wrote:.1?} ({:.0}/s), log offset {} of {} bytes",
        args.persist_writes,
        args.persist_writes as f64 / wrote.as_secs_f64(),
        log.offset,
        log.capacity
    );
    if before > 0 {
        println!("  (the directory already held {before} records)");
    }
    // Waits for a background save (the snapshot rules may have started one).
    engine.close();

    let reopened = Instant::now();
    let engine = Engine::open(&dir, config)?;
    let took = reopened.elapsed();
    let log = engine.stats().log.ok_or("the engine has no log")?;
    println!(
        "  reopened in      {took:>10.1?}: loaded the snapshot, replayed {} records ({} bytes) after it, torn tail {} bytes",
        log.recovered_records, log.recovered_bytes, log.torn_bytes
    );
    println!(
        "  state            {:>10}  ({} keys)",
        if engine.digest() == digest {
            "identical"
        } else {
            "DIFFERENT"
        },
        engine.dbsize()
    );
    let same = engine.digest() == digest;
    drop(engine);
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    if !same {
        return Err("the reopened state differs from the state written".into());
    }
    Ok(())
}

/// Loads `keys` 1 KB values, then snapshots while a writer overwrites them.
fn snapshot_under_load(engine: &Engine, keys: u64) -> Result<(), Box<dyn std::error::Error>> {
    let value = bytes::Bytes::from(vec![b'v'; 1024]);
    for i in 0..keys {
        engine.set(format!("cache:{i:08}"), value.clone())?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let overwrites = Arc::new(AtomicU64::new(0));
    let before = rss_bytes();
    let peak = Arc::new(AtomicU64::new(before));
    let info = std::thread::scope(|s| {
        let (e, stop2, n) = (engine.clone(), stop.clone(), overwrites.clone());
        s.spawn(move || {
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let _ = e.set(
                    format!("cache:{:08}", (i * 7919) % keys.max(1)),
                    bytes::Bytes::from(vec![b'w'; 1024]),
                );
                n.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
        let (stop3, peak2) = (stop.clone(), peak.clone());
        s.spawn(move || {
            while !stop3.load(Ordering::Relaxed) {
                peak2.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        // An automatic snapshot may be running already: wait for our turn.
        let mut info = engine.save();
        for _ in 0..1000 {
            match info {
                Err(ringkv::Error::Snapshot(ringkv::snapshot::SnapshotError::InProgress)) => {
                    std::thread::sleep(Duration::from_millis(10));
                    info = engine.save();
                }
                _ => break,
            }
        }
        stop.store(true, Ordering::Relaxed);
        info
    })?;
    let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "  snapshot         {:>10} keys ({:.0} MB) under {} overwrites: pause {} µs, {} ms, {:.0} MB/s, writers waited {} ms",
        info.keys,
        info.bytes as f64 / 1e6,
        overwrites.load(Ordering::Relaxed),
        info.start_pause_us,
        info.duration_ms,
        info.bytes as f64 / 1e6 / (info.duration_ms.max(1) as f64 / 1e3),
        info.writer_wait_ms
    );
    println!(
        "  snapshot memory  {:>10.1} MB peak growth of anonymous RSS during the snapshot (data {:.0} MB; fork() would copy every page written meanwhile)",
        grew as f64 / 1e6,
        (keys * 1024) as f64 / 1e6
    );
    Ok(())
}
