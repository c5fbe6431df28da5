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

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use ringkv::{Config, Engine};
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

fn find_on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn apt_get(args: &[&str]) -> bool {
    println!("  running: apt-get {}", args.join(" "));
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The redis-server binary, installed with apt-get if it is missing.
fn redis_server() -> Result<PathBuf, String> {
    if let Some(p) = find_on_path("redis-server") {
        return Ok(p);
    }
    println!("redis-server is not on PATH: installing it");
    if !apt_get(&["install", "-y", "redis-server"]) {
        if !apt_get(&["update"]) {
            return Err("apt-get update failed".into());
        }
        if !apt_get(&["install", "-y", "redis-server"]) {
            return Err("apt-get install -y redis-server failed".into());
        }
    }
    find_on_path("redis-server").ok_or_else(|| "redis-server still not found after installing it".into())
}

/// The server this bench started: killed (this child only) and its socket
/// removed if it is still running when dropped.
struct Server {
    child: Child,
    socket: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Server {
    fn start(bin: &Path, socket: &Path) -> Result<(Server, UnixStream), String> {
        let _ = std::fs::remove_file(socket);
        let child = Command::new(bin)
            .args(["--port", "0", "--unixsocket"])
            .arg(socket)
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--dir", "/tmp", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = Server {
            child,
            socket: socket.to_path_buf(),
        };
        for _ in 0..200 {
            if let Ok(s) = UnixStream::connect(socket) {
                return Ok((server, s));
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("redis-server exited at start: {status}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!("redis-server did not open {} within 5 s", socket.display()))
    }

    /// SHUTDOWN NOSAVE, then waits for the process to exit.
    fn shutdown(mut self, conn: &mut Conn) -> Result<(), String> {
        conn.send(&[&[&b"SHUTDOWN"[..], b"NOSAVE"]])
            .map_err(|e| e.to_string())?;
        // The server closes the connection instead of replying.
        let _ = conn.reply();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err("redis-server did not exit after SHUTDOWN NOSAVE (killed)".into())
    }
}

#[derive(Debug)]
enum Reply {
    Simple(Vec<u8>),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

/// A minimal RESP2 client over a unix socket (no array replies: the commands
/// used here do not produce them).
struct Conn {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    out: Vec<u8>,
    line: Vec<u8>,
}

impl Conn {
    fn new(s: UnixStream) -> io::Result<Conn> {
        Ok(Conn {
            writer: s.try_clone()?,
            reader: BufReader::with_capacity(1 << 16, s),
            out: Vec::with_capacity(1 << 20),
            line: Vec::new(),
        })
    }

    fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
        let _ = write!(out, "*{}\r\n", args.len());
        for a in args {
            let _ = write!(out, "${}\r\n", a.len());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Sends commands in one write (a pipeline).
    fn send(&mut self, cmds: &[&[&[u8]]]) -> io::Result<()> {
        self.out.clear();
        for c in cmds {
            Self::encode(&mut self.out, c);
        }
        self.writer.write_all(&self.out)
    }

    fn reply(&mut self) -> io::Result<Reply> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let bad = || io::Error::other("malformed RESP reply");
        let body = self.line.strip_suffix(b"\r\n").ok_or_else(bad)?;
        let (kind, rest) = body.split_first().ok_or_else(bad)?;
        let int =
            |b: &[u8]| -> io::Result<i64> { std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or_else(bad) };
        match kind {
            b'+' => Ok(Reply::Simple(rest.to_vec())),
            b'-' => Ok(Reply::Error(String::from_utf8_lossy(rest).into_owned())),
            b':' => Ok(Reply::Int(int(rest)?)),
            b'$' => {
                let len = int(rest)?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut data = vec![0; len as usize + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(len as usize);
                Ok(Reply::Bulk(Some(data)))
            }
            _ => Err(bad()),
        }
    }

    fn command(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        self.send(&[args]).map_err(|e| e.to_string())?;
        match self.reply().map_err(|e| e.to_string())? {
            Reply::Error(e) => Err(e),
            r => Ok(r),
        }
    }

    /// `INFO <section>` as `field -> value` pairs.
    fn info(&mut self, section: &str) -> Result<Vec<(String, String)>, String> {
        match self.command(&[b"INFO", section.as_bytes()])? {
            Reply::Bulk(Some(text)) => Ok(String::from_utf8_lossy(&text)
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect()),
            r => Err(format!("unexpected INFO reply: {r:?}")),
        }
    }
}

fn field<'a>(info: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    info.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| format!("INFO has no {name}"))
}

fn used_memory(conn: &mut Conn) -> Result<u64, String> {
    let info = conn.info("memory")?;
    field(&info, "used_memory")?
        .parse()
        .map_err(|e| format!("used_memory: {e}"))
}

fn redis(n: u64, socket: &Path) -> Result<RedisResult, String> {
    let bin = redis_server()?;
    let (server, stream) = Server::start(&bin, socket)?;
    let pid = server.child.id().to_string();
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
        conn.out.clear();
        for i in start..end {
            let k = kf.key(i).to_vec();
            Conn::encode(&mut conn.out, &[b"SET", &k, vf.key(i)]);
        }
        conn.writer.write_all(&conn.out).map_err(|e| e.to_string())?;
        for _ in start..end {
            match conn.reply().map_err(|e| e.to_string())? {
                Reply::Simple(s) if s == b"OK" => {}
                r => return Err(format!("unexpected SET reply: {r:?}")),
            }
        }
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
