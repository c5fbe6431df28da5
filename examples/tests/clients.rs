//! Redis' own tools against ringkv-primary: redis-cli (commands, inline
//! pipes, RESP3 with `-3`, `--scan`) and a short redis-benchmark run,
//! including its inline PING. The test command installs redis-tools; run
//! elsewhere without it, these tests say so and pass.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{find, python_with_redis_py, run_script, tools_missing, Proc};

fn cli(p: &Proc, args: &[&str]) -> String {
    let bin = find("redis-cli").expect("redis-cli");
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &p.resp.port().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn redis_cli_commands_pipes_resp3_and_scan() {
    if tools_missing("redis-cli") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let p = Proc::start("ringkv-primary", dir.path(), &["--repl-listen", "127.0.0.1:0"]);
    assert_eq!(cli(&p, &["PING"]), "PONG");
    assert_eq!(cli(&p, &["SET", "greeting", "hello world"]), "OK");
    assert_eq!(cli(&p, &["GET", "greeting"]), "hello world");
    assert_eq!(cli(&p, &["INCRBY", "hits", "5"]), "5");
    assert!(
        cli(&p, &["GET", "missing"]).is_empty(),
        "nil prints nothing when not a tty"
    );

    // Commands piped on stdin (what `cat cmds.txt | redis-cli` does).
    let bin = find("redis-cli").expect("redis-cli");
    let mut child = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &p.resp.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"SET a 1\nINCR a\nHSET telemetry:h1 cpu 0.5 mem 512\nHLEN telemetry:h1\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(),
        vec!["OK", "2", "2", "2"]
    );

    // RESP3: a map prints as field => value pairs.
    let resp3 = cli(&p, &["-3", "HGETALL", "telemetry:h1"]);
    assert!(resp3.contains("cpu") && resp3.contains("0.5"), "{resp3}");
    let hello = cli(&p, &["-3", "HELLO", "3"]);
    assert!(hello.contains("proto"), "{hello}");

    // --scan walks the cursor to the end.
    for i in 0..300 {
        cli(&p, &["SET", &format!("session:{i}"), "t"]);
    }
    let scanned = cli(&p, &["--scan", "--pattern", "session:*"]);
    let mut keys: Vec<&str> = scanned.lines().collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 300);

    // Errors print as Redis' do.
    let e = cli(&p, &["HGET", "greeting", "f"]);
    assert!(e.starts_with("(error) WRONGTYPE") || e.starts_with("WRONGTYPE"), "{e}");
}

#[test]
fn redis_benchmark_runs_against_ringkv() {
    if tools_missing("redis-benchmark") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let p = Proc::start("ringkv-primary", dir.path(), &["--repl-listen", "127.0.0.1:0"]);
    let out = Command::new(find("redis-benchmark").expect("redis-benchmark"))
        .args(["-h", "127.0.0.1", "-p", &p.resp.port().to_string()])
        .args([
            "-t",
            "ping_inline,ping_mbulk,set,get,incr,hset,mset",
            "-n",
            "2000",
            "-c",
            "4",
            "-P",
            "4",
            "-q",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for t in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "HSET", "MSET"] {
        let ran = text
            .split(['\r', '\n'])
            .any(|l| l.trim_start().starts_with(t) && l.contains("requests per second"));
        assert!(ran, "redis-benchmark did not run {t}:\n{text}");
    }
    let mut c = p.client();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).expect("dbsize");
    assert!(n > 0, "the benchmark's writes landed");
}

#[test]
fn redis_py_resp3_setinfo_pipelines_and_watch_retries() {
    let Some(python) = python_with_redis_py() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let p = Proc::start("ringkv-primary", dir.path(), &["--repl-listen", "127.0.0.1:0"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/redis_py.py");
    run_script(&python, script, p.resp.port());
}

#[test]
fn phpredis_pconnect_hscan_and_follower_readonly() {
    if tools_missing("php") {
        return;
    }
    let has_redis = Command::new("php")
        .args(["-r", "exit(class_exists('Redis') ? 0 : 1);"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_redis {
        assert!(std::env::var_os("CI").is_none(), "php-redis is missing under CI");
        eprintln!("php-redis is not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let p = Proc::start("ringkv-primary", dir.path(), &["--repl-listen", "127.0.0.1:0"]);
    let fdir = dir.path().join("f");
    std::fs::create_dir_all(&fdir).expect("dir");
    let repl = p.repl.expect("replication address").to_string();
    let tls = dir.path().join("ringkv-data").join("tls");
    let f = Proc::start(
        "ringkv-follower",
        &fdir,
        &[
            "--primary",
            &repl,
            "--repl-listen",
            "127.0.0.1:0",
            "--tls-dir",
            tls.to_str().expect("utf-8"),
        ],
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/php/phpredis.php");
    let out = Command::new("php")
        .arg(script)
        .arg(p.resp.port().to_string())
        .arg(f.resp.port().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run php");
    assert!(
        out.status.success(),
        "phpredis checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_addr(p: &Proc) -> std::net::SocketAddr {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = p.log.recv_timeout(left).expect("the TLS listener's log line");
        if let Some(at) = line.find("tls=") {
            return line[at + 4..]
                .split_whitespace()
                .next()
                .and_then(|a| a.parse().ok())
                .expect("an address");
        }
    }
}

#[test]
fn redis_cli_over_tls_with_and_without_client_certificates() {
    if tools_missing("redis-cli") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let tls = dir.path().join("ringkv-data").join("tls");
    let run = |port: u16, extra: &[&str]| {
        Command::new(find("redis-cli").expect("redis-cli"))
            .args(["--tls", "--cacert", tls.join("ca.pem").to_str().expect("utf-8")])
            .args(extra)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli")
    };
    let p = Proc::start(
        "ringkv-primary",
        dir.path(),
        &["--repl-listen", "127.0.0.1:0", "--tls-port", "0"],
    );
    let port = tls_addr(&p).port();
    let out = run(port, &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "PONG",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(p);

    let p = Proc::start(
        "ringkv-primary",
        dir.path(),
        &["--repl-listen", "127.0.0.1:0", "--tls-port", "0", "--tls-auth-clients"],
    );
    let port = tls_addr(&p).port();
    let without = run(port, &[]);
    assert_ne!(
        String::from_utf8_lossy(&without.stdout).trim(),
        "PONG",
        "no client certificate: refused"
    );
    let cert = tls.join("client.pem");
    let key = tls.join("client.key");
    let with = run(
        port,
        &[
            "--cert",
            cert.to_str().expect("utf-8"),
            "--key",
            key.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&with.stdout).trim(),
        "PONG",
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
}
