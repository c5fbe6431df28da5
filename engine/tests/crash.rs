//! Crash test that really crashes: a child process (this test binary,
//! re-run) writes to a data directory and reports each write that returned;
//! the parent kills it with SIGKILL at a random moment, reopens the data, and
//! checks that the recovered state is the state after some prefix of the
//! writes that contains every write whose call had returned (durability
//! `none`: a process crash loses nothing the kernel has). In about half of
//! the rounds the recovery itself is killed too, one to three times, by
//! children that only open the directory, before the parent reopens it.
//!
//! Rounds per test: `RINGKV_CRASH_ROUNDS` (default 16: 32 kills of a writer
//! in the test command, and recoveries killed in about half of them; the
//! long run in `scripts/long-tests.sh` runs 500 per test, 1,000 in all).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringkv::{Config, Engine, LogConfig, SetOptions};

const CHILD_ENV: &str = "RINGKV_CRASH_CHILD_DIR";
/// Set for a child that only opens (recovers) the directory, then waits.
const OPEN_ONLY_ENV: &str = "RINGKV_CRASH_CHILD_OPEN_ONLY";
/// Rounds per test.
const ROUNDS_ENV: &str = "RINGKV_CRASH_ROUNDS";
/// Ring capacity for the child (small: snapshots run all the time).
const CAPACITY_ENV: &str = "RINGKV_CRASH_RING_BYTES";
const OPS: u64 = 200_000;
const FAR: u64 = 4_000_000_000_000;

fn config() -> Config {
    let capacity = std::env::var(CAPACITY_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64 << 20);
    Config {
        shards: 8,
        active_expire: false,
        log: LogConfig {
            capacity,
            ..LogConfig::default()
        },
        ..Config::default()
    }
}

fn op(e: &Engine, i: u64) -> ringkv::Result<()> {
    match i % 6 {
        0 => e.set(
            format!("k{}", i % 500),
            format!("value-{i}-{}", "x".repeat((i % 40) as usize)),
        ),
        1 => e
            .hset(format!("h{}", i % 7), [(format!("f{}", i % 300), format!("{i}"))])
            .map(|_| ()),
        2 => e.incr_by(format!("c{}", i % 5), 3).map(|_| ()),
        3 => e.del([format!("k{}", (i * 13) % 500)]).map(|_| ()),
        4 => e
            .set_with(format!("s{}", i % 100), "tok", SetOptions::new().pxat(FAR + i))
            .map(|_| ()),
        _ => e.hdrain(format!("h{}", i % 7), 2).map(|_| ()),
    }
}

/// The child: write operations in order and report each one that returned.
#[test]
fn crash_child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let e = Engine::open(&dir, config()).expect("child open");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if std::env::var_os(OPEN_ONLY_ENV).is_some() {
        writeln!(out, "opened").expect("report");
        out.flush().expect("flush");
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    for i in 0..OPS {
        op(&e, i).expect("child op");
        writeln!(out, "{}", i + 1).expect("report");
        out.flush().expect("flush");
    }
    // Wait to be killed.
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn sigkill_mid_write_recovers_a_prefix_with_every_returned_write() {
    crash_rounds(64 << 20, rounds());
}

fn rounds() -> u32 {
    std::env::var(ROUNDS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16)
}

/// With a 256 KiB ring the child snapshots every few thousand writes, so the
/// kills land before, during and after snapshots (a half-written
/// `snapshot.tmp`, a fresh snapshot whose log history was just released).
#[test]
fn sigkill_during_snapshots_recovers_a_prefix_with_every_returned_write() {
    crash_rounds(256 << 10, rounds());
}

fn crash_rounds(capacity: u64, rounds: u32) {
    let exe = std::env::current_exe().expect("test binary");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..rounds {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child_entry", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(CAPACITY_ENV, capacity.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // Let it write for a random while, then kill it mid-write.
        let target = 200 + rand() % 20_000;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut acked = 0u64;
        while acked < target && Instant::now() < deadline {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Ok(n) = line.trim().parse::<u64>() {
                        acked = n;
                    }
                }
                _ => break,
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // Lines already in the pipe were also acknowledged before the kill.
        for line in lines.map_while(Result::ok) {
            if let Ok(n) = line.trim().parse::<u64>() {
                acked = acked.max(n);
            }
        }
        assert!(acked > 0, "round {round}: the child never wrote");

        // Kill the recovery too, sometimes more than once: a child that
        // only opens the directory, killed after a random short while.
        let recovery_kills = if rand() % 2 == 0 { 1 + rand() % 3 } else { 0 };
        for _ in 0..recovery_kills {
            let mut opener = Command::new(&exe)
                .args(["--exact", "crash_child_entry", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, dir.path())
                .env(CAPACITY_ENV, capacity.to_string())
                .env(OPEN_ONLY_ENV, "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn opener");
            std::thread::sleep(Duration::from_micros(rand() % 30_000));
            opener.kill().expect("SIGKILL opener");
            opener.wait().expect("reap opener");
        }

        let recovered = Engine::open(
            dir.path(),
            Config {
                log: LogConfig {
                    capacity,
                    ..LogConfig::default()
                },
                ..config()
            },
        )
        .expect("reopen after SIGKILL");
        let want = recovered.digest();
        let model = Engine::new(Config {
            shards: 8,
            active_expire: false,
            ..Config::default()
        })
        .expect("model");
        let mut matched = None;
        for i in 0..OPS {
            if i >= acked && model.digest() == want {
                matched = Some(i);
                break;
            }
            op(&model, i).expect("model op");
        }
        let matched =
            matched.expect("the recovered state is no prefix of the writes containing every acknowledged one");
        let stats = recovered.stats();
        println!(
            "ring {capacity} B, round {round}: acknowledged {acked}, recovery killed {recovery_kills} times, \
             recovered a prefix of {matched} writes, torn tail {} bytes, replayed {} records",
            stats.log.as_ref().map_or(0, |l| l.torn_bytes),
            stats.log.as_ref().map_or(0, |l| l.recovered_records),
        );
    }
}
