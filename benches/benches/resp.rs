//! `redis-benchmark` against `ringkv-primary` (run in this process) and
//! `redis-server`, side by side in one run, over TCP on 127.0.0.1:
//! `-t set,get,incr,hset,mset -c 50` at `-P 1` and `-P 16`, with 3-byte and
//! 1 KiB values; then bytes of memory per key as INFO `used_memory` shows
//! it after loading the same keys into both.
//!
//! `cargo bench -p ringkv-benches --bench resp [-- --requests 200000]`
//!
//! redis-benchmark runs on the same 2 cores as the server it drives (it
//! takes about one core itself), so these are ratios, not capacities.
//! redis-server and redis-tools are installed with apt-get when missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use ringkv_benches::redis::{find_on_path, redis_server, start_tcp};
use ringkv_benches::{is_bench_run, size_setting, CpuMonitor, Table};
use ringkv_examples::server::{NodeRole, Server, ServerConfig};

fn redis_benchmark() -> Result<std::path::PathBuf, String> {
    if let Some(p) = find_on_path("redis-benchmark") {
        return Ok(p);
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "redis-tools"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("apt-get install -y redis-tools failed".into());
    }
    find_on_path("redis-benchmark").ok_or_else(|| "redis-benchmark not found after installing".into())
}

/// Requests per second per test, from `redis-benchmark --csv`.
fn run(bench: &std::path::Path, port: u16, requests: u64, pipeline: u32, size: u32) -> Vec<(String, f64)> {
    let out = Command::new(bench)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "set,get,incr,hset,mset", "-c", "50", "--csv"])
        .args([
            "-n",
            &requests.to_string(),
            "-P",
            &pipeline.to_string(),
            "-d",
            &size.to_string(),
        ])
        .args(["-r", "100000"])
        .stdin(Stdio::null())
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(',').map(|c| c.trim_matches('"')).collect();
            let rps: f64 = cells.get(1)?.parse().ok()?;
            Some((cells[0].to_string(), rps))
        })
        .collect()
}

fn command(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = vec![0u8; 1 << 20];
    let n = s.read(&mut buf).expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn used_memory(port: u16) -> u64 {
    let info = command(port, &["INFO", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Loads `n` keys of `size`-byte values with pipelined SETs.
fn load(port: u16, n: u64, size: usize) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let value = "v".repeat(size);
    let mut sent = 0;
    let mut reply = vec![0u8; 1 << 16];
    while sent < n {
        let batch = (n - sent).min(1000);
        let mut req = String::new();
        for i in sent..sent + batch {
            let key = format!("key:{i:012}");
            req.push_str(&format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            ));
        }
        s.write_all(req.as_bytes()).expect("write");
        let mut got = 0;
        while got < batch as usize * 5 {
            got += s.read(&mut reply).expect("read");
        }
        sent += batch;
    }
}

fn main() {
    let full = is_bench_run();
    let cli_requests = std::env::args()
        .skip_while(|a| a != "--requests")
        .nth(1)
        .and_then(|v| v.parse().ok());
    let requests = size_setting(cli_requests, "RINGKV_RESP_REQUESTS", if full { 200_000 } else { 2_000 });
    let (bench, server_bin) = match (redis_benchmark(), redis_server()) {
        (Ok(b), Ok(s)) => (b, s),
        (b, s) => {
            println!("resp bench skipped: {:?} {:?}", b.err(), s.err());
            return;
        }
    };
    let dir = tempfile::tempdir().expect("dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = ServerConfig::defaults(NodeRole::Primary);
    config.port = 0;
    config.dir = dir.path().join("ringkv");
    config.replication.listen = "127.0.0.1:0".parse().expect("addr");
    config.engine.snapshot.save.clear();
    config.save_on_shutdown = false;
    let server = runtime
        .block_on(Server::start(config, NodeRole::Primary))
        .expect("start ringkv");
    let ringkv_port = server.local_addr().port();
    let (mut redis, redis_addr) = start_tcp(&server_bin, dir.path(), &[]).expect("start redis-server");
    let redis_port = redis_addr.port();

    println!("redis-benchmark -c 50 -n {requests} -r 100000, ringkv-primary (in process) vs redis-server, 127.0.0.1");
    let monitor = CpuMonitor::start();
    let mut table = Table::new(["test", "-P", "value", "ringkv req/s", "redis req/s", "ringkv/redis"]);
    for pipeline in [1u32, 16] {
        for size in [3u32, 1024] {
            let r = run(&bench, ringkv_port, requests, pipeline, size);
            let o = run(&bench, redis_port, requests, pipeline, size);
            for (test, rps) in &r {
                let theirs = o.iter().find(|(t, _)| t == test).map_or(0.0, |(_, v)| *v);
                table.row([
                    test.clone(),
                    pipeline.to_string(),
                    format!("{size} B"),
                    format!("{rps:.0}"),
                    format!("{theirs:.0}"),
                    format!("{:.2}", if theirs > 0.0 { rps / theirs } else { 0.0 }),
                ]);
            }
        }
    }
    table.print();
    println!("{}", monitor.report());

    // Memory per key: the same keys loaded into both.
    let keys = if full { 200_000 } else { 1_000 };
    for port in [ringkv_port, redis_port] {
        command(port, &["FLUSHALL"]);
    }
    let (r0, o0) = (used_memory(ringkv_port), used_memory(redis_port));
    load(ringkv_port, keys, 16);
    load(redis_port, keys, 16);
    let (r1, o1) = (used_memory(ringkv_port), used_memory(redis_port));
    let mut mem = Table::new([
        "keys (16-byte values)",
        "ringkv bytes/key",
        "redis bytes/key",
        "ringkv/redis",
    ]);
    let (rk, rd) = (
        r1.saturating_sub(r0) as f64 / keys as f64,
        o1.saturating_sub(o0) as f64 / keys as f64,
    );
    mem.row([
        keys.to_string(),
        format!("{rk:.1}"),
        format!("{rd:.1}"),
        format!("{:.2}", if rd > 0.0 { rk / rd } else { 0.0 }),
    ]);
    mem.print();

    let _ = redis.kill();
    let _ = redis.wait();
    runtime.block_on(server.shutdown(false));
}
