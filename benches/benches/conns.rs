//! Connections the way the seeds' fleets make them, against
//! `ringkv-primary` and `redis-server` side by side:
//! - churn: new connections at a fixed rate (default 1,500/s, Report
//!   URI's rate before `pconnect`), each sending one PING and closing;
//! - idle: 10,000 long-lived idle connections opened and held;
//!
//! with, in both phases, another client sending GETs in a loop: errors,
//! server memory per idle connection (RSS), and that client's p50/p99.
//!
//! `cargo bench -p ringkv-benches --bench conns [-- --rate 1500 --secs 5 --idle 10000]`
//!
//! The ringkv server runs in a child process (this bench re-executed), so
//! the two processes' descriptors stay apart (20,000 here).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringkv_benches::redis::{redis_server, start_tcp};
use ringkv_benches::{fmt_duration, is_bench_run, percentile, rss_bytes_of, size_setting, CpuMonitor, Table};

const SERVER_ENV: &str = "RINGKV_CONNS_BENCH_SERVER";

fn arg(name: &str) -> Option<u64> {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
}

/// Child mode: runs a ringkv server in `dir` and prints its port.
fn serve(dir: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use ringkv_examples::server::{NodeRole, Server, ServerConfig};
        let mut config = ServerConfig::defaults(NodeRole::Primary);
        config.port = 0;
        config.dir = dir.into();
        config.maxclients = 20_000;
        config.replication.listen = "127.0.0.1:0".parse().expect("addr");
        config.save_on_shutdown = false;
        config.engine.snapshot.save.clear();
        let server = Server::start(config, NodeRole::Primary).await.expect("start");
        println!("PORT {}", server.local_addr().port());
        server.stopped().await;
        server.shutdown(false).await;
    });
}

struct Target {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ringkv(dir: &std::path::Path) -> Target {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env(SERVER_ENV, dir.join("ringkv"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server child");
    let out = child.stdout.take().expect("stdout");
    let line = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("PORT "))
        .expect("the child's port");
    let port: u16 = line[5..].trim().parse().expect("port");
    Target {
        name: "ringkv",
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

fn redis(dir: &std::path::Path) -> Option<Target> {
    let bin = redis_server().ok()?;
    let (child, addr) = start_tcp(&bin, dir, &["--maxclients", "19000"]).ok()?;
    Some(Target {
        name: "redis",
        child,
        addr,
    })
}

fn ping(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0 && buf[0] == b'+')
}

/// GETs in a loop on one connection until `stop`; their latencies (ns).
fn prober(addr: SocketAddr, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("probe connect");
        s.set_nodelay(true).expect("nodelay");
        let mut lat = Vec::new();
        let mut buf = [0u8; 64];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            if s.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").is_err() || s.read(&mut buf).is_err() {
                break;
            }
            lat.push(t.elapsed().as_nanos() as u64);
            std::thread::sleep(Duration::from_millis(1));
        }
        lat
    })
}

struct Phase {
    errors: u64,
    done: u64,
    lat: Vec<u64>,
    rss_per_conn: Option<f64>,
}

fn churn(t: &Target, rate: u64, secs: u64) -> Phase {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = prober(t.addr, stop.clone());
    let (mut errors, mut done) = (0, 0);
    let start = Instant::now();
    let total = rate * secs;
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        match TcpStream::connect_timeout(&t.addr, Duration::from_secs(2)) {
            Ok(mut s) => {
                if ping(&mut s) {
                    done += 1;
                } else {
                    errors += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lat = probe.join().expect("probe");
    lat.sort_unstable();
    Phase {
        errors,
        done,
        lat,
        rss_per_conn: None,
    }
}

fn idle(t: &Target, n: u64) -> Phase {
    let pid = t.child.id().to_string();
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_bytes_of(&pid).unwrap_or(0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = prober(t.addr, stop.clone());
    let mut conns = Vec::new();
    let mut errors = 0;
    for _ in 0..n {
        match TcpStream::connect_timeout(&t.addr, Duration::from_secs(2)) {
            Ok(mut s) => {
                if ping(&mut s) {
                    conns.push(s);
                } else {
                    errors += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes_of(&pid).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lat = probe.join().expect("probe");
    lat.sort_unstable();
    let done = conns.len() as u64;
    drop(conns);
    Phase {
        errors,
        done,
        lat,
        rss_per_conn: (done > 0).then(|| after.saturating_sub(before) as f64 / done as f64),
    }
}

fn main() {
    if let Ok(dir) = std::env::var(SERVER_ENV) {
        serve(&dir);
        return;
    }
    let full = is_bench_run();
    let rate = size_setting(arg("--rate"), "RINGKV_CONNS_RATE", 1500);
    let secs = size_setting(arg("--secs"), "RINGKV_CONNS_SECS", if full { 5 } else { 1 });
    let n_idle = size_setting(arg("--idle"), "RINGKV_CONNS_IDLE", if full { 10_000 } else { 100 });
    let dir = tempfile::tempdir().expect("dir");
    let mut targets = vec![ringkv(dir.path())];
    match redis(dir.path()) {
        Some(r) => targets.push(r),
        None => println!("redis-server not available: ringkv alone"),
    }
    println!("connections: churn {rate}/s for {secs} s (connect, PING, close), then {n_idle} idle connections; a probe client GETs every 1 ms meanwhile");
    let monitor = CpuMonitor::start();
    let mut table = Table::new([
        "server",
        "phase",
        "ok",
        "errors",
        "probe p50",
        "probe p99",
        "RSS per idle conn",
    ]);
    for t in &targets {
        let c = churn(t, rate, secs);
        let i = idle(t, n_idle);
        for (phase, p) in [("churn", &c), ("idle", &i)] {
            table.row([
                t.name.to_string(),
                phase.to_string(),
                p.done.to_string(),
                p.errors.to_string(),
                fmt_duration(Duration::from_nanos(percentile(&p.lat, 50.0))),
                fmt_duration(Duration::from_nanos(percentile(&p.lat, 99.0))),
                p.rss_per_conn.map_or("-".into(), |b| format!("{b:.0} B")),
            ]);
        }
    }
    table.print();
    println!("{}", monitor.report());
}
