//! Fault-injecting proxies for partition tests on loopback (separate
//! network namespaces cannot share 127.0.0.1, so a partition is a proxy
//! between two processes that stops forwarding): a [`TcpProxy`] (a node's
//! etcd traffic: its `--etcd` URL names the proxy) and a [`UdpProxy`]
//! (QUIC replication: a node advertises the proxy with `--repl-advertise`,
//! so its followers connect through it).
//!
//! `cut()` black-holes both directions: nothing is forwarded (TCP
//! connections are accepted and held silent, UDP datagrams dropped), as a
//! network partition looks to both ends; `heal()` forwards again (TCP
//! connections that lived through the cut are closed at the heal, as
//! their lost segments would have reset them). Every thread loops with a
//! short timeout, checks a stop flag, and is joined when the proxy drops.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a proxy thread blocks before it looks at its flags again.
const POLL: Duration = Duration::from_millis(5);
/// Most UDP peers one proxy relays for (a follower handle is one peer).
const MAX_UDP_PEERS: usize = 256;

/// The flags a proxy's threads share.
#[derive(Default)]
struct Switch {
    cut: AtomicBool,
    /// Bumped on every heal: a TCP connection from an older generation
    /// that saw a cut is closed.
    heals: AtomicU64,
    stop: AtomicBool,
    /// Datagrams or TCP connections dropped while cut (for the test's log).
    dropped: AtomicU64,
}

/// A TCP proxy from a free loopback port to `upstream`.
pub struct TcpProxy {
    addr: SocketAddr,
    switch: Arc<Switch>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Starts forwarding 127.0.0.1:<free port> to `upstream`.
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TCP proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let switch = Arc::new(Switch::default());
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (switch, threads) = (switch.clone(), threads.clone());
            std::thread::spawn(move || {
                while !switch.stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let s = switch.clone();
                            let t = std::thread::spawn(move || relay(client, upstream, &s));
                            let mut threads = threads.lock().expect("threads");
                            threads.retain(|t| !t.is_finished());
                            threads.push(t);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            })
        };
        TcpProxy {
            addr,
            switch,
            threads,
            accept: Some(accept),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy as an etcd client URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops forwarding (both directions, all connections).
    pub fn cut(&self) {
        self.switch.cut.store(true, Ordering::Release);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.switch.heals.fetch_add(1, Ordering::AcqRel);
        self.switch.cut.store(false, Ordering::Release);
    }

    /// Connections held silent while cut, so far.
    pub fn dropped(&self) -> u64 {
        self.switch.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.switch.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads"));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// One TCP connection: bytes both ways while not cut; silent while cut;
/// closed at the heal after a cut, at either end's close, or at stop.
fn relay(client: TcpStream, upstream: SocketAddr, s: &Switch) {
    let generation = s.heals.load(Ordering::Acquire);
    let mut saw_cut = s.cut.load(Ordering::Acquire);
    if saw_cut {
        s.dropped.fetch_add(1, Ordering::Relaxed);
    }
    // Accepted during a cut: held silent (the client's request vanishes)
    // until the heal or stop, then closed.
    let mut server = None;
    let mut a = client;
    let mut buf = vec![0u8; 16 << 10];
    let _ = a.set_read_timeout(Some(POLL));
    let _ = a.set_write_timeout(Some(Duration::from_secs(5)));
    while !s.stop.load(Ordering::Acquire) {
        if s.cut.load(Ordering::Acquire) {
            saw_cut = true;
            std::thread::sleep(POLL);
            continue;
        }
        if saw_cut || s.heals.load(Ordering::Acquire) != generation {
            break;
        }
        let b: &mut TcpStream = match &mut server {
            Some(b) => b,
            None => match TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) {
                Ok(b) => {
                    let _ = b.set_read_timeout(Some(POLL));
                    let _ = b.set_write_timeout(Some(Duration::from_secs(5)));
                    let _ = b.set_nodelay(true);
                    server.insert(b)
                }
                Err(_) => break,
            },
        };
        if !pump(&mut a, b, &mut buf, s) || !pump(b, &mut a, &mut buf, s) {
            break;
        }
    }
    let _ = a.shutdown(Shutdown::Both);
    if let Some(b) = server {
        let _ = b.shutdown(Shutdown::Both);
    }
}

/// Forwards what `from` has within [`POLL`] (bytes read as the cut came
/// are lost, as in a partition); false once either end closed.
fn pump(from: &mut TcpStream, to: &mut TcpStream, buf: &mut [u8], s: &Switch) -> bool {
    match from.read(buf) {
        Ok(0) => false,
        Ok(_) if s.cut.load(Ordering::Acquire) => true,
        Ok(n) => to.write_all(&buf[..n]).is_ok(),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
        Err(_) => false,
    }
}

/// A UDP proxy from a free loopback port to `upstream`: each peer gets its
/// own upstream socket (so replies find their way back).
pub struct UdpProxy {
    addr: SocketAddr,
    switch: Arc<Switch>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    front: Option<JoinHandle<()>>,
}

impl UdpProxy {
    /// Starts forwarding 127.0.0.1:<free port> to `upstream`.
    pub fn start(upstream: SocketAddr) -> UdpProxy {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind the UDP proxy"));
        front.set_read_timeout(Some(POLL)).expect("timeout");
        let addr = front.local_addr().expect("addr");
        let switch = Arc::new(Switch::default());
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let handle = {
            let (switch, threads) = (switch.clone(), threads.clone());
            std::thread::spawn(move || {
                let mut peers: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
                let mut buf = vec![0u8; 65536];
                while !switch.stop.load(Ordering::Acquire) {
                    let Ok((n, peer)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    if switch.cut.load(Ordering::Acquire) {
                        switch.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if !peers.contains_key(&peer) {
                        if peers.len() >= MAX_UDP_PEERS {
                            switch.dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let Some(back) = peer_socket(upstream) else {
                            continue;
                        };
                        let (s, f, b) = (switch.clone(), front.clone(), back.clone());
                        let t = std::thread::spawn(move || backward(&b, &f, peer, &s));
                        threads.lock().expect("threads").push(t);
                        peers.insert(peer, back);
                    }
                    if let Some(back) = peers.get(&peer) {
                        let _ = back.send(&buf[..n]);
                    }
                }
            })
        };
        UdpProxy {
            addr,
            switch,
            threads,
            front: Some(handle),
        }
    }

    /// Where peers send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every datagram, both ways.
    pub fn cut(&self) {
        self.switch.cut.store(true, Ordering::Release);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.switch.heals.fetch_add(1, Ordering::AcqRel);
        self.switch.cut.store(false, Ordering::Release);
    }

    /// Datagrams dropped while cut, so far.
    pub fn dropped(&self) -> u64 {
        self.switch.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.switch.stop.store(true, Ordering::Release);
        if let Some(t) = self.front.take() {
            let _ = t.join();
        }
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads"));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A socket connected to `upstream` for one peer.
fn peer_socket(upstream: SocketAddr) -> Option<Arc<UdpSocket>> {
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    s.connect(upstream).ok()?;
    s.set_read_timeout(Some(POLL)).ok()?;
    Some(Arc::new(s))
}

/// Upstream's replies to one peer, through the front socket.
fn backward(back: &UdpSocket, front: &UdpSocket, peer: SocketAddr, s: &Switch) {
    let mut buf = vec![0u8; 65536];
    while !s.stop.load(Ordering::Acquire) {
        let Ok(n) = back.recv(&mut buf) else {
            continue;
        };
        if s.cut.load(Ordering::Acquire) {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let _ = front.send_to(&buf[..n], peer);
    }
}

/// A node's links to the rest: its etcd traffic and its followers'
/// replication traffic, cut and healed together (its RESP clients still
/// reach it directly: the dangerous case of a partition).
pub struct NodeLinks {
    /// Between the node and etcd (`--etcd` names it).
    pub etcd: TcpProxy,
    /// Between the node's replication listener and its followers
    /// (`--repl-advertise` names it).
    pub repl: UdpProxy,
}

impl NodeLinks {
    /// Proxies to etcd at `etcd` and to the node's replication at `repl`.
    pub fn start(etcd: SocketAddr, repl: SocketAddr) -> NodeLinks {
        NodeLinks {
            etcd: TcpProxy::start(etcd),
            repl: UdpProxy::start(repl),
        }
    }

    /// Isolates the node from etcd and from its followers.
    pub fn cut(&self) {
        self.etcd.cut();
        self.repl.cut();
    }

    /// Connects it again.
    pub fn heal(&self) {
        self.etcd.heal();
        self.repl.heal();
    }
}

/// The `host:port` of an `http://host:port` URL.
pub fn url_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("an http://host:port URL")
}
