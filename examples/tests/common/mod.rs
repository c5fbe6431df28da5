//! Starting the server binaries (and redis-server) for the integration
//! tests: every process binds 127.0.0.1 on ports the OS picks, runs in its
//! own temporary directory, and is stopped (SIGTERM, then SIGKILL after a
//! bounded wait) when its handle drops.

#![allow(dead_code)]

pub mod proxy;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringkv_examples::resp::{Frame, Protocol};

/// A server process this test started.
pub struct Proc {
    pub child: Child,
    pub resp: SocketAddr,
    pub repl: Option<SocketAddr>,
    pub dir: PathBuf,
    pub log: mpsc::Receiver<String>,
}

fn field(line: &str, key: &str) -> Option<SocketAddr> {
    let at = line.find(key)? + key.len();
    line[at..].split_whitespace().next()?.parse().ok()
}

impl Proc {
    /// Starts `bin` (`ringkv-primary` or `ringkv-follower`) in `cwd` with
    /// `args` (plus `--port 0`), and waits (bounded) for its start-up line.
    pub fn start(bin: &str, cwd: &Path, args: &[&str]) -> Proc {
        Proc::start_on(bin, cwd, 0, args)
    }

    /// As [`Proc::start`], on RESP port `port` (a cluster's slot map names
    /// its nodes' ports before they start; see [`free_port`]).
    pub fn start_on(bin: &str, cwd: &Path, port: u16, args: &[&str]) -> Proc {
        let exe = match bin {
            "ringkv-primary" => env!("CARGO_BIN_EXE_ringkv-primary"),
            _ => env!("CARGO_BIN_EXE_ringkv-follower"),
        };
        let mut child = Command::new(exe)
            .current_dir(cwd)
            .args(["--port", &port.to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server binary");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut repl = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{bin} did not start within 30 s");
            };
            if line.contains("replication (QUIC) listening") {
                repl = field(&line, "addr=");
            }
            if line.contains("ringkv server started") {
                let resp = field(&line, "resp=").expect("the start-up line names the RESP address");
                return Proc {
                    child,
                    resp,
                    repl,
                    dir: cwd.to_path_buf(),
                    log: rx,
                };
            }
        }
    }

    /// A `redis` crate client.
    pub fn client(&self) -> redis::Connection {
        let c = redis::Client::open(format!("redis://{}/", self.resp)).expect("client");
        c.get_connection_with_timeout(Duration::from_secs(10)).expect("connect")
    }

    /// A raw RESP connection.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.resp)
    }

    /// SIGTERM, then waits (bounded) for exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        // SIGTERM through kill(1): the std library sends only SIGKILL.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port that was free a moment ago (the OS picked it; closed again).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A raw RESP connection (our own frame parser), for exact replies.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// Encodes a request as a multibulk array.
pub fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one reply; `None` if the server closed the connection.
    pub fn read(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, used)) = Frame::parse(&self.buf).expect("a valid reply") {
                self.buf.drain(..used);
                return Some(f);
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Frame {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&request(&args));
        self.read().expect("a reply")
    }
}

/// Encodes a frame the way RESP2 would (for expected values).
pub fn resp2(f: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    f.encode(Protocol::Resp2, &mut out);
    out.to_vec()
}

/// `bin` on PATH or in /usr/bin.
pub fn find(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// A redis-server started on a free port in `dir` (no persistence).
pub struct RedisServer {
    pub child: Child,
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts one, or `None` when redis-server is not installed (the test
    /// command installs it; outside it, such tests say so and pass).
    pub fn start(dir: &Path) -> Option<RedisServer> {
        RedisServer::start_with(dir, &[])
    }

    /// As [`RedisServer::start`], with `extra` configuration arguments
    /// (`--databases 1`, ...).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Option<RedisServer> {
        let bin = find("redis-server")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        let child = Command::new(bin)
            .current_dir(dir)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(addr).is_ok() {
                return Some(RedisServer { child, addr });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the tool `what` is missing (the test then says so and passes);
/// under CI, where the test command installs it, a missing tool fails.
pub fn tools_missing(what: &str) -> bool {
    if find(what).is_some() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is missing under CI: the test command installs it"
    );
    eprintln!("{what} is not installed: skipped (the test command installs it)");
    true
}

/// The Python with redis-py that the test command prepares
/// (`RINGKV_TEST_PYTHON`), or `None` (skip) outside it.
pub fn python_with_redis_py() -> Option<String> {
    match std::env::var("RINGKV_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "RINGKV_TEST_PYTHON is unset under CI: the test command prepares a venv with redis-py"
            );
            eprintln!("RINGKV_TEST_PYTHON is unset: skipped (the test command prepares a venv with redis-py)");
            None
        }
    }
}

/// Runs `program script port` (a client test script against the server on
/// `port`) and fails the test with its output unless it succeeds.
pub fn run_script(program: &str, script: &str, port: u16) {
    let out = Command::new(program)
        .arg(script)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run the client script");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether etcd is installed for the tests that start one; without it a
/// test notes it and skips, except under CI (the test command installs
/// etcd-server), where that is a failure.
pub fn etcd_present() -> bool {
    if ringkv_examples::coord::etcd_installed() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "etcd is missing under CI: the test command installs etcd-server"
    );
    eprintln!("etcd is not installed: skipped (the test command installs etcd-server)");
    false
}
