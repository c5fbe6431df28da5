//! Shared helpers for the ringkv benches: key formatting, a cheap random
//! number generator, latency summaries, resident memory, and a table printer
//! whose output is a Markdown table (so it can be pasted into
//! `BENCHMARKS.md` as printed).
//!
//! Every bench is a plain `main` (`harness = false`). Cargo passes `--bench`
//! to it under `cargo bench`; without that flag (e.g. `cargo test
//! --all-targets`) a bench only does a tiny smoke run, see [`is_bench_run`].

use std::fmt::Write as _;
use std::time::Duration;

pub mod redis;

/// The engine of the recovery runs (`recovery` bench, `profile_load`):
/// no background thread, `threads` apply threads, a ring of `capacity`.
pub fn recovery_config(threads: usize, capacity: u64) -> ringkv::Config {
    ringkv::Config {
        active_expire: false,
        apply_threads: threads,
        log: ringkv::LogConfig {
            capacity,
            ..ringkv::LogConfig::default()
        },
        ..ringkv::Config::default()
    }
}

/// True when cargo started this program as a benchmark (`cargo bench` passes
/// `--bench`). Under `cargo test --all-targets` the flag is absent and the
/// benches shrink to a smoke run that finishes in a moment.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A size from, in order: the command line, the environment variable `env`,
/// or `default`. Underscores are allowed (`10_000_000`).
pub fn size_setting(cli: Option<u64>, env: &str, default: u64) -> u64 {
    if let Some(n) = cli {
        return n;
    }
    match std::env::var(env) {
        Ok(s) => s
            .replace('_', "")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{env}={s:?} is not a number")),
        Err(_) => default,
    }
}

/// Formats `prefix` followed by a number zero-padded to 8 digits (C's
/// `"%08d"`), reusing one buffer so the hot loops do not allocate.
#[derive(Debug, Clone)]
pub struct KeyFmt {
    buf: Vec<u8>,
    prefix_len: usize,
}

impl KeyFmt {
    /// A formatter for keys `"{prefix}{i:08}"`.
    pub fn new(prefix: &str) -> KeyFmt {
        let mut buf = Vec::with_capacity(prefix.len() + 20);
        buf.extend_from_slice(prefix.as_bytes());
        KeyFmt {
            buf,
            prefix_len: prefix.len(),
        }
    }

    /// The key for `i` (valid until the next call).
    pub fn key(&mut self, i: u64) -> &[u8] {
        self.buf.truncate(self.prefix_len);
        let mut digits = [0u8; 20];
        let mut n = i;
        let mut len = 0;
        while n > 0 || len < 8 {
            digits[len] = b'0' + (n % 10) as u8;
            n /= 10;
            len += 1;
        }
        self.buf.extend(digits[..len].iter().rev());
        &self.buf
    }
}

/// xorshift64*: a fast, reproducible stream of indexes for the hot loops
/// (the same cost for every store compared).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (multiply-shift; `n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The nearest-rank percentile `p` (0..=100) of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // The small epsilon keeps float error (99.9 / 100 * 1000 = 999.0000000000001)
    // from moving the rank up by one.
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Formats nanoseconds with a unit that keeps 3 significant digits.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// [`fmt_ns`] for a [`Duration`].
pub fn fmt_duration(d: Duration) -> String {
    fmt_ns(d.as_nanos() as f64)
}

/// Bytes of a page as `/proc/*/statm` counts them (4 KiB on x86-64 and on
/// the usual aarch64 kernels).
pub const PAGE_SIZE: u64 = 4096;

/// Resident set size of process `pid` (`"self"` for this one), from the
/// second field of `/proc/<pid>/statm`.
pub fn rss_bytes_of(pid: &str) -> std::io::Result<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("unexpected statm: {statm:?}")))?;
    Ok(pages * PAGE_SIZE)
}

/// Resident set size of this process.
pub fn rss_bytes() -> std::io::Result<u64> {
    rss_bytes_of("self")
}

/// Resident memory of process `pid` (`"self"` for this one) from
/// `/proc/<pid>/statm`: (all resident bytes, resident bytes of file-backed
/// or shared mappings). The difference is anonymous memory: heap, stacks
/// and anonymous mappings, without the page cache of mapped files.
pub fn rss_split_of(pid: &str) -> std::io::Result<(u64, u64)> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let f: Vec<u64> = statm.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    match (f.get(1), f.get(2)) {
        (Some(resident), Some(shared)) => Ok((resident * PAGE_SIZE, shared * PAGE_SIZE)),
        _ => Err(std::io::Error::other(format!("unexpected statm: {statm:?}"))),
    }
}

/// Kernel clock ticks per second in `/proc` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Shortest run [`CpuMonitor`] reports on (its counters tick every 10 ms).
const MIN_MONITOR_SECS: f64 = 1.0;

fn system_busy_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?;
    Some((busy, *f.get(7)?))
}

fn own_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime, stime, cutime and
    // cstime (children waited for) are the 14th to 17th fields of the line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (11..15).map(|i| f.get(i)?.parse::<u64>().ok()).sum()
}

/// Measures how busy the machine was during a run, to tell a quiet run
/// from one that shared the cores: CPU used by this process (and its
/// children it has waited for), by everything else, and stolen by the
/// hypervisor (from `/proc/stat` and `/proc/self/stat`).
#[derive(Debug, Clone)]
pub struct CpuMonitor {
    start: std::time::Instant,
    system: Option<(u64, u64)>,
    own: Option<u64>,
}

impl CpuMonitor {
    /// Starts measuring.
    pub fn start() -> CpuMonitor {
        CpuMonitor {
            start: std::time::Instant::now(),
            system: system_busy_ticks(),
            own: own_ticks(),
        }
    }

    /// Cores' worth of CPU used by other processes since [`CpuMonitor::start`]
    /// (`None` if `/proc` is not readable).
    pub fn others_cores(&self) -> Option<f64> {
        let secs = self.start.elapsed().as_secs_f64();
        if secs < MIN_MONITOR_SECS {
            return None;
        }
        let ((b0, _), (b1, _)) = (self.system?, system_busy_ticks()?);
        let own = own_ticks()?.checked_sub(self.own?)?;
        Some(((b1 - b0) as f64 - own as f64).max(0.0) / USER_HZ / secs)
    }

    /// One line: cores' worth of CPU used by this process and by others
    /// since [`CpuMonitor::start`], hypervisor steal, and the load average.
    pub fn report(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64();
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let loadavg: Vec<&str> = loadavg.split_whitespace().take(3).collect();
        match (self.system, system_busy_ticks(), self.own, own_ticks()) {
            _ if secs < MIN_MONITOR_SECS => {
                format!(
                    "machine during the run: too short to measure; load average {}",
                    loadavg.join(" ")
                )
            }
            (Some((b0, s0)), Some((b1, s1)), Some(o0), Some(o1)) => {
                let own = (o1 - o0) as f64 / USER_HZ / secs;
                let all = (b1 - b0) as f64 / USER_HZ / secs;
                let steal = (s1 - s0) as f64 / USER_HZ / secs;
                format!(
                    "machine during the run ({secs:.0} s): this bench used {own:.2} cores, other processes {:.2} cores, \
                     hypervisor steal {steal:.2} cores; load average {}",
                    (all - own).max(0.0),
                    loadavg.join(" ")
                )
            }
            _ => format!(
                "machine during the run: /proc not readable; load average {}",
                loadavg.join(" ")
            ),
        }
    }
}

/// A table printed as Markdown, columns padded to line up.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as headers).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let row: Vec<String> = cells.into_iter().map(Into::into).collect();
        assert_eq!(row.len(), self.headers.len(), "row width differs from the header's");
        self.rows.push(row);
    }

    /// The table as Markdown text.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                std::iter::once(&self.headers[c])
                    .chain(self.rows.iter().map(|r| &r[c]))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            out.push('|');
            for (cell, w) in cells.iter().zip(&widths) {
                let pad = w - cell.chars().count();
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            }
            out.push('\n');
        };
        line(&mut out, &self.headers);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&mut out, &rule);
        for r in &self.rows {
            line(&mut out, r);
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded() {
        let mut k = KeyFmt::new("key:");
        assert_eq!(k.key(0), b"key:00000000");
        assert_eq!(k.key(42), b"key:00000042");
        assert_eq!(k.key(123_456_789), b"key:123456789");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), 500);
        assert_eq!(percentile(&v, 99.9), 999);
        assert_eq!(percentile(&v, 100.0), 1000);
        assert_eq!(percentile(&v, 0.0), 1);
        let big: Vec<u64> = (1..=10_000_000).collect();
        assert_eq!(percentile(&big, 99.9), 9_990_000);
        assert_eq!(percentile(&big, 99.99), 9_999_000);
        assert_eq!(percentile(&[], 99.0), 0);
    }

    #[test]
    fn rng_stays_below_bound() {
        let mut r = Rng::new(7);
        assert!((0..10_000).all(|_| r.below(10) < 10));
    }
}
