//! How big a backup is per GB of writes, and how long a restore of a data
//! set takes. Not a test: run it and read the figures.
//!
//! ```text
//! cargo run --release -p ringkv-examples --example backup_bench -- [DATA_MB] [VALUE_BYTES]
//! ```
//!
//! Writes DATA_MB of values (default 1024, 1 KiB each) to distinct keys of
//! a primary, then overwrites half of them once more, with `ringkv-backup`'s
//! writer following (snapshots every DATA_MB/2 of log). Prints the log bytes
//! written, the backup's bytes (snapshots and segments) per GB of log, and
//! the time `restore` takes to rebuild the final state into a new
//! directory (load the newest snapshot, replay the segments after it,
//! save), and the same from the first snapshot (the longest replay).

use std::time::{Duration, Instant};

use ringkv::{Config, Engine, LogConfig};
use ringkv_examples::backup::catalog::Catalog;
use ringkv_examples::backup::{restore, Backup, BackupOptions, RestoreOptions, Target, WriterConfig};
use ringkv_replication::tls::DevCerts;
use ringkv_replication::{blocking, FollowerConfig, PrimaryConfig};

fn config(capacity: u64) -> Config {
    Config {
        log: LogConfig {
            capacity,
            ..LogConfig::default()
        },
        ..Config::default()
    }
}

fn sealed_to(dir: &std::path::Path) -> u64 {
    Catalog::load(dir)
        .ok()
        .and_then(|c| c.chains.last().and_then(|c| c.ranges().first().map(|r| r.to)))
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let data_mb: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    let value_bytes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    let tmp = tempfile::tempdir()?;
    let ca = DevCerts::new("bench CA")?;
    let engine = Engine::builder().config(config(1 << 30)).anonymous_log().build()?;
    let primary = blocking::Primary::start(
        engine.clone(),
        PrimaryConfig::default(),
        ca.material(&ca.server(&["localhost"])?)?,
    )?;
    let dir = tmp.path().join("backup");
    let backup = Backup::start(
        BackupOptions {
            dir: dir.clone(),
            follower: FollowerConfig::new(primary.local_addr()),
            engine: config(1 << 30),
            writer: WriterConfig {
                snapshot_log_bytes: (data_mb << 20) / 2,
                snapshot_interval: Duration::from_secs(24 * 3600),
                ..WriterConfig::default()
            },
        },
        ca.material(&ca.client("backup")?)?,
    )?;
    while Catalog::load(&dir)?.chains.is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let keys = (data_mb << 20) / value_bytes as u64;
    let value = vec![b'x'; value_bytes];
    let started = Instant::now();
    for i in 0..keys + keys / 2 {
        engine.set(format!("key:{:012}", i % keys), value.clone())?;
        // Keep the backup within its ring (the bench measures sizes, not a race).
        if i % 65_536 == 0 {
            let at = engine.applied_offset();
            while sealed_to(&dir) + (256 << 20) < at {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let end = engine.applied_offset();
    while sealed_to(&dir) < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let written = started.elapsed();
    backup.stop()?;
    primary.shutdown();
    let catalog = Catalog::load(&dir)?;
    let (snap_bytes, seg_bytes): (u64, u64) = catalog.chains.iter().fold((0, 0), |(a, b), c| {
        (
            a + c.snapshots.iter().map(|s| s.bytes).sum::<u64>(),
            b + c.segments.iter().map(|s| s.bytes).sum::<u64>(),
        )
    });
    for line in catalog
        .describe()
        .lines()
        .filter(|l| l.starts_with("chain") || l.contains("restorable"))
    {
        println!("{line}");
    }
    let gb = end as f64 / (1u64 << 30) as f64;
    println!(
        "data set: {keys} keys of {value_bytes} bytes ({data_mb} MiB), then {} overwrites",
        keys / 2
    );
    println!(
        "log written: {end} bytes ({gb:.3} GiB) in {:.1} s",
        written.as_secs_f64()
    );
    println!(
        "backup: {} bytes = segments {seg_bytes} + snapshots {snap_bytes} ({} snapshots); per GiB of log: {:.3} GiB (segments alone {:.3})",
        snap_bytes + seg_bytes,
        catalog.chains.iter().map(|c| c.snapshots.len()).sum::<usize>(),
        (snap_bytes + seg_bytes) as f64 / end as f64,
        seg_bytes as f64 / end as f64,
    );
    drop(engine);
    for (what, chain_snapshot) in [("newest snapshot", None), ("first snapshot", Some(0usize))] {
        let to = tmp.path().join(format!("restored-{what}"));
        let target = match chain_snapshot {
            None => end,
            // Just before the second snapshot: a replay from the first.
            Some(_) => catalog.chains[0].snapshots.get(1).map_or(end, |s| s.offset - 8),
        };
        let t = Instant::now();
        let r = restore(
            &dir,
            &RestoreOptions {
                target: Target::Offset(target),
                chain: None,
                to: to.clone(),
                config: config(256 << 20),
            },
        )?;
        println!(
            "restore from the {what} (at {}, {} records replayed, {} keys): {:.2} s",
            r.snapshot_offset,
            r.records,
            r.keys,
            t.elapsed().as_secs_f64()
        );
        std::fs::remove_dir_all(&to)?;
    }
    Ok(())
}
