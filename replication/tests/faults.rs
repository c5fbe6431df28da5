//! Faults between a primary and its followers: a follower process killed
//! with SIGKILL and restarted, a lossy UDP path that drops, delays and
//! reorders packets, sync loops, and random disconnect points.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use ringkv_replication::tls::TlsConfig;
use ringkv_replication::{blocking, Primary, PrimaryConfig};

const CHILD_ENV: &str = "RINGKV_REPL_CHILD";

/// Entry point of the child process: a follower in a data directory,
/// replicating until it is killed. A no-op in a normal test run.
#[test]
fn follower_child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let mut parts = spec.split('|');
    let (dir, addr, certs) = match (parts.next(), parts.next(), parts.next()) {
        (Some(d), Some(a), Some(c)) => (d.to_string(), a.to_string(), c.to_string()),
        _ => panic!("bad child spec {spec}"),
    };
    let certs = std::path::Path::new(&certs);
    let tls = TlsConfig {
        cert: certs.join("follower.pem"),
        key: certs.join("follower.key"),
        ca: certs.join("ca.pem"),
        pinned: Vec::new(),
    };
    let material = ringkv_replication::tls::TlsMaterial::load(&tls).expect("certificates");
    let engine = ringkv::Engine::open(&dir, config_with_ring(4 << 20)).expect("open");
    let addr: SocketAddr = addr.parse().expect("addr");
    let _follower = blocking::Follower::start(engine, follower_config(addr, "child"), material).expect("follower");
    // Replicate until killed (bounded, should the parent die first).
    std::thread::sleep(Duration::from_secs(120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_follower_process_resumes_by_offset() {
    let c = certs();
    let dir = tempfile::tempdir().expect("dir");
    let certs_dir = dir.path().join("certs");
    c.ca.write(&certs_dir, "follower", &c.ca.client("follower").expect("client"))
        .expect("write certs");
    let primary = anonymous(16 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    workload(&primary, 0, 500);
    let fdir = dir.path().join("follower");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(&exe)
        .args(["--exact", "follower_child_entry", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{}|{}|{}", fdir.display(), server.local_addr(), certs_dir.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("child");
    // Wait for the child's full sync to be on its disk (snapshot saved).
    let s = &server;
    let p = primary.clone();
    let saved = |d: &std::path::Path| {
        std::fs::read_dir(d).into_iter().flatten().flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("snapshot-") && n.ends_with(".rkvs")
        }) && !d.join("FULLSYNC").exists()
    };
    eventually(30, "the child synced and saved", || {
        saved(&fdir)
            && s.stats()
                .followers
                .first()
                .is_some_and(|f| f.applied == p.log().expect("log").published())
    })
    .await;
    // Writes go on; the child is killed in the middle of them.
    let writer = {
        let p = primary.clone();
        std::thread::spawn(move || {
            for r in 1..40 {
                workload(&p, r, 100);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    writer.join().expect("writer");
    assert_eq!(server.stats().sync_full, 1);

    // Restarted from its data directory, it resumes by offset.
    let replica = ringkv::Engine::open(&fdir, config_with_ring(4 << 20)).expect("reopen");
    let resumed_at = replica.applied_offset();
    assert!(resumed_at > 0);
    let f = follow(&replica, server.local_addr(), "child", &c.client).await;
    converged(&primary, &replica, 30).await;
    eventually(30, "the restarted follower continued by offset", || {
        f.info().partial_syncs == 1
    })
    .await;
    let info = f.info();
    assert_eq!(info.full_syncs, 0, "{info:?}");
    assert_eq!(server.stats().sync_full, 1, "no second full sync");
    f.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_right_after_another_is_reported_as_a_sync_loop() {
    init_tracing();
    let c = certs();
    let primary = anonymous(4 << 20);
    // Any replay is "too long": every reconnect after writes is a full sync.
    let config = PrimaryConfig {
        max_replay_bytes: Some(0),
        ..primary_config()
    };
    let server = Primary::start(primary.clone(), config.clone(), c.server.clone())
        .await
        .expect("primary");
    let addr = server.local_addr();
    workload(&primary, 0, 200);
    let replica = anonymous(4 << 20);
    let f = follow(&replica, addr, "f", &c.client).await;
    converged(&primary, &replica, 20).await;
    // The primary restarts on the same address; writes happened meanwhile.
    server.shutdown().await;
    workload(&primary, 1, 200);
    // The old endpoint's socket closes once its connections are gone.
    let mut again = None;
    for _ in 0..200 {
        let config = PrimaryConfig {
            listen: addr,
            ..config.clone()
        };
        match Primary::start(primary.clone(), config, c.server.clone()).await {
            Ok(s) => {
                again = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let server = again.expect("primary again on the same address");
    converged(&primary, &replica, 30).await;
    let info = f.info();
    assert_eq!(info.full_syncs, 2, "{info:?}");
    assert_eq!(info.sync_loops, 1, "{info:?}");
    let cause = info.last_sync_loop_cause.expect("a cause");
    assert!(cause.contains("replaying the ring"), "{cause}");
    f.stop().await;
    server.shutdown().await;
}

/// A UDP relay that drops, delays and reorders datagrams in both directions.
struct LossyProxy {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl LossyProxy {
    async fn start(upstream: SocketAddr, drop_per_mille: u64, seed: u64) -> LossyProxy {
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        back.connect(upstream).await.expect("connect");
        let addr = front.local_addr().expect("addr");
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let client: Arc<parking_lot::Mutex<Option<SocketAddr>>> = Arc::default();
        // client → primary
        {
            let (front, back, client, mut stop) = (front.clone(), back.clone(), client.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let mut rng = seed | 1;
                let mut buf = vec![0u8; 65536];
                loop {
                    let (n, from) = tokio::select! {
                        r = front.recv_from(&mut buf) => match r { Ok(x) => x, Err(_) => return },
                        _ = stop.changed() => return,
                    };
                    *client.lock() = Some(from);
                    relay(&mut rng, drop_per_mille, buf[..n].to_vec(), {
                        let back = back.clone();
                        move |d| async move {
                            let _ = back.send(&d).await;
                        }
                    });
                }
            });
        }
        // primary → client
        {
            let (front, back, client, mut stop) = (front, back, client, stop_rx);
            tokio::spawn(async move {
                let mut rng = seed.rotate_left(17) | 1;
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = tokio::select! {
                        r = back.recv(&mut buf) => match r { Ok(n) => n, Err(_) => return },
                        _ = stop.changed() => return,
                    };
                    let Some(to) = *client.lock() else { continue };
                    relay(&mut rng, drop_per_mille, buf[..n].to_vec(), {
                        let front = front.clone();
                        move |d| async move {
                            let _ = front.send_to(&d, to).await;
                        }
                    });
                }
            });
        }
        LossyProxy { addr, stop }
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// Drops a datagram, or sends it now, or after a random delay (which
/// reorders it behind later ones).
fn relay<F, Fut>(rng: &mut u64, drop_per_mille: u64, datagram: Vec<u8>, send: F)
where
    F: FnOnce(Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let r = next(rng) % 1000;
    if r < drop_per_mille {
        return;
    }
    let delay = if r.is_multiple_of(5) { next(rng) % 20 } else { 0 };
    tokio::spawn(async move {
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        send(datagram).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_reordering_path_still_converges() {
    let c = certs();
    let primary = anonymous(16 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    let proxy = LossyProxy::start(server.local_addr(), 50, 0x5eed).await;
    workload(&primary, 0, 500);
    let replica = anonymous(16 << 20);
    let f = follow(&replica, proxy.addr, "lossy", &c.client).await;
    let writer = {
        let p = primary.clone();
        std::thread::spawn(move || {
            for r in 1..30 {
                workload(&p, r, 200);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    writer.join().expect("writer");
    converged(&primary, &replica, 60).await;
    assert!(!f.info().halted);
    f.stop().await;
    drop(proxy);
    server.shutdown().await;
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Step {
    Write(u64),
    Disconnect,
    Pause,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1u64..200).prop_map(Step::Write),
        2 => Just(Step::Disconnect),
        1 => Just(Step::Pause),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Random writes with the follower disconnected and reconnected at
    /// random points: it ends equal to the primary, without a full sync
    /// after the first (the ring holds everything).
    #[test]
    fn follower_equals_primary_after_random_disconnects(steps in proptest::collection::vec(step(), 1..12)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async {
            let c = certs();
            let primary = anonymous(16 << 20);
            let server = Primary::start(primary.clone(), primary_config(), c.server.clone()).await.expect("primary");
            let replica = anonymous(16 << 20);
            let mut follower = Some(
                follow(&replica, server.local_addr(), "p", &c.client).await,
            );
            // The first sync (a full one: the follower starts with its own history).
            let first = follower.as_ref().expect("started");
            eventually(30, "the first full sync", || first.info().full_syncs == 1).await;
            let mut connects = 1;
            for (round, s) in steps.iter().enumerate() {
                match s {
                    Step::Write(n) => workload(&primary, round as u64, *n),
                    Step::Pause => tokio::time::sleep(Duration::from_millis(20)).await,
                    Step::Disconnect => match follower.take() {
                        Some(f) => f.stop().await,
                        None => {
                            follower = Some(
                                follow(&replica, server.local_addr(), "p", &c.client).await,
                            );
                            connects += 1;
                        }
                    },
                }
            }
            if follower.is_none() {
                follower = Some(
                    follow(&replica, server.local_addr(), "p", &c.client).await,
                );
                connects += 1;
            }
            let started = Instant::now();
            converged(&primary, &replica, 30).await;
            let stats = server.stats();
            assert_eq!(stats.sync_full, 1, "{stats:?} after {:?}", started.elapsed());
            // A follower stopped before its handshake makes no request.
            assert!(stats.sync_partial_ok < connects, "{stats:?}");
            let last = follower.expect("running");
            if connects > 1 {
                eventually(30, "the last follower continued by offset", || last.info().partial_syncs == 1).await;
                assert_eq!(last.info().full_syncs, 0, "{:?}", last.info());
            }
            assert_eq!(server.stats().sync_full, 1);
            last.stop().await;
            server.shutdown().await;
        });
    }
}
