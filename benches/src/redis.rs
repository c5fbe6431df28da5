//! Driving a `redis-server` for the side-by-side benches: finding (or
//! installing) the binary, starting a private server on a unix socket,
//! a minimal RESP2 client, `INFO` fields, and the server's forked children.
//!
//! The server is started with `--port 0 --unixsocket <socket> --save ''
//! --appendonly no` and stopped with `SHUTDOWN NOSAVE`; if it is still
//! running when its [`Server`] is dropped, that child process (and only it)
//! is killed.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `bin` in a directory of `PATH`, `/usr/bin` or `/usr/sbin`.
pub fn find_on_path(bin: &str) -> Option<PathBuf> {
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

/// The redis-server binary, installed with `apt-get install -y
/// redis-server` (then `apt-get update` and again) if it is missing.
pub fn redis_server() -> Result<PathBuf, String> {
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

/// A server this process started: killed (this child only) and its socket
/// removed if it is still running when dropped.
#[derive(Debug)]
pub struct Server {
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
    /// Starts `bin` listening only on `socket` (no TCP port), without
    /// snapshots or AOF, with `dir` as its working directory (where BGSAVE
    /// writes `dump.rdb` and from where it loads one at start), and waits
    /// until the socket accepts a connection.
    pub fn start(bin: &Path, socket: &Path, dir: &Path) -> Result<(Server, UnixStream), String> {
        Self::start_with(bin, socket, dir, &[])
    }

    /// As [`Server::start`], with more configuration arguments after the
    /// defaults (later ones win: `--port 6400 --bind 127.0.0.1` for a TCP
    /// listener, `--replicaof 127.0.0.1 6400` for a replica).
    pub fn start_with(bin: &Path, socket: &Path, dir: &Path, extra: &[&str]) -> Result<(Server, UnixStream), String> {
        let _ = std::fs::remove_file(socket);
        let child = Command::new(bin)
            .args(["--port", "0", "--unixsocket"])
            .arg(socket)
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--dir"])
            .arg(dir)
            .args(["--loglevel", "warning"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = Server {
            child,
            socket: socket.to_path_buf(),
        };
        for _ in 0..2000 {
            if let Ok(s) = UnixStream::connect(socket) {
                return Ok((server, s));
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("redis-server exited at start: {status}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(format!("redis-server did not open {} within 4 s", socket.display()))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new connection to the server.
    pub fn connect(&self) -> Result<Conn, String> {
        let s = UnixStream::connect(&self.socket).map_err(|e| format!("connecting to redis-server: {e}"))?;
        Conn::new(s).map_err(|e| e.to_string())
    }

    /// SHUTDOWN NOSAVE, then waits for the process to exit.
    pub fn shutdown(mut self, conn: &mut Conn) -> Result<(), String> {
        conn.send(&[&[&b"SHUTDOWN"[..], b"NOSAVE"]])
            .map_err(|e| e.to_string())?;
        // The server closes the connection instead of replying.
        let _ = conn.reply();
        for _ in 0..400 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err("redis-server did not exit after SHUTDOWN NOSAVE (killed)".into())
    }
}

/// A RESP2 reply (arrays are not supported: the commands used here do not
/// produce them).
#[derive(Debug)]
pub enum Reply {
    /// `+OK` and other status replies.
    Simple(Vec<u8>),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$len` bulk string, `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
}

/// A minimal RESP2 client over a unix socket.
#[derive(Debug)]
pub struct Conn {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    out: Vec<u8>,
    line: Vec<u8>,
}

impl Conn {
    /// A client on a connected socket.
    pub fn new(s: UnixStream) -> io::Result<Conn> {
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

    /// Adds a command to the pipeline that [`Conn::flush`] sends.
    pub fn queue(&mut self, args: &[&[u8]]) {
        Self::encode(&mut self.out, args);
    }

    /// Sends the queued commands in one write.
    pub fn flush(&mut self) -> io::Result<()> {
        let r = self.writer.write_all(&self.out);
        self.out.clear();
        r
    }

    /// Sends commands in one write (a pipeline).
    pub fn send(&mut self, cmds: &[&[&[u8]]]) -> io::Result<()> {
        self.out.clear();
        for c in cmds {
            Self::encode(&mut self.out, c);
        }
        self.flush()
    }

    /// Reads one reply.
    pub fn reply(&mut self) -> io::Result<Reply> {
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

    /// Reads `count` replies, each of which must be `+OK`.
    pub fn expect_ok(&mut self, count: u64) -> Result<(), String> {
        for _ in 0..count {
            match self.reply().map_err(|e| e.to_string())? {
                Reply::Simple(s) if s == b"OK" => {}
                r => return Err(format!("expected +OK, got {r:?}")),
            }
        }
        Ok(())
    }

    /// Sends one command and reads its reply; an error reply is `Err`.
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        self.send(&[args]).map_err(|e| e.to_string())?;
        match self.reply().map_err(|e| e.to_string())? {
            Reply::Error(e) => Err(e),
            r => Ok(r),
        }
    }

    /// `INFO <section>` as `field -> value` pairs.
    pub fn info(&mut self, section: &str) -> Result<Vec<(String, String)>, String> {
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

/// The value of field `name` in an `INFO` reply.
pub fn field<'a>(info: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    info.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| format!("INFO has no {name}"))
}

/// A numeric `INFO` field.
pub fn field_u64(info: &[(String, String)], name: &str) -> Result<u64, String> {
    field(info, name)?.parse().map_err(|e| format!("INFO {name}: {e}"))
}

/// Child processes of `pid`: from `/proc/<pid>/task/*/children` (a fork
/// from any of the process' threads), or, if the kernel does not provide
/// that file, by scanning `/proc` for processes whose `PPid` is `pid`.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut have_children_files = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                have_children_files = true;
                found.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    if !have_children_files {
        let ppid = format!("{pid}");
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let parent = status.lines().find_map(|l| l.strip_prefix("PPid:")).map(str::trim);
            if parent == Some(ppid.as_str()) {
                found.push(child);
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Starts `bin` on a free TCP port of 127.0.0.1 in `dir`, without
/// persistence (`extra` adds settings), and waits (up to 10 s) until it
/// accepts connections: the child and its address. Stop it with `kill`.
pub fn start_tcp(bin: &Path, dir: &Path, extra: &[&str]) -> Result<(Child, std::net::SocketAddr), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let mut child = Command::new(bin)
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
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{} did not listen on {addr} within 10 s", bin.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, addr))
}
