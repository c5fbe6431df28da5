//! Replication over QUIC on 127.0.0.1: partial and full resyncs, chains,
//! promotion, rejoining, security, garbage, write gate.

mod common;

use std::time::Duration;

use common::*;
use ringkv::{Error, Role};
use ringkv_replication::protocol::{encode_frame, Message};
use ringkv_replication::{Follower, GateMode, LinkStatus, Primary, PrimaryConfig, WriteGateConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_resync_after_disconnect_needs_no_full_sync() {
    init_tracing();
    let c = certs();
    let primary = anonymous(8 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    workload(&primary, 0, 500);
    let replica = anonymous(8 << 20);
    let f = follow(&replica, server.local_addr(), "f1", &c.client).await;
    converged(&primary, &replica, 20).await;
    assert_eq!(replica.role(), Role::Follower);
    assert!(matches!(replica.set("x", "1"), Err(Error::ReadOnly)));
    let first = f.info();
    eprintln!("FIRST {first:?}");
    assert_eq!(first.full_syncs, 1, "a fresh follower starts with a full sync");
    assert_eq!(first.master_link_status, LinkStatus::Up);
    let stats = server.stats();
    assert_eq!((stats.sync_full, stats.sync_partial_ok), (1, 0));
    assert_eq!(stats.connected_slaves, 1);
    assert_eq!(stats.followers[0].name, "f1");
    assert!(!stats.followers[0].identity.is_empty());

    // Disconnect; the primary goes on writing; reconnect: a partial resync.
    f.stop().await;
    workload(&primary, 1, 500);
    let f = follow(&replica, server.local_addr(), "f1", &c.client).await;
    converged(&primary, &replica, 20).await;
    let stats = server.stats();
    assert_eq!(stats.sync_full, 1, "no second full sync: {stats:?} {:?}", f.info());
    assert_eq!(stats.sync_partial_ok, 1, "{stats:?} {:?}", f.info());
    let info = f.info();
    assert_eq!((info.full_syncs, info.partial_syncs), (0, 1));
    // Byte-identical rings at the same offsets.
    let (p, r) = (primary.log().expect("log"), replica.log().expect("log"));
    let from = r.oldest().max(p.oldest());
    let a = p.read_stream(from, 1 << 30).expect("read");
    let b = r.read_stream(from, 1 << 30).expect("read");
    assert_eq!(a.bytes, b.bytes);
    // Compression of telemetry-like records pays.
    let link = &server.stats().followers[0];
    assert!(link.bytes_wire < link.bytes_raw, "{link:?}");
    assert!(info.bytes_wire < info.bytes_raw, "{info:?}");

    // Acks: wait_for_followers and read-after-write.
    primary.set("raw", "v").expect("set");
    let at = primary.last_write_offset().expect("offset");
    assert_eq!(server.wait_for_followers(at, 1, Duration::from_secs(10)).await, 1);
    assert!(replica.wait_applied(at, Duration::from_secs(1)));
    assert_eq!(replica.get("raw").expect("get").expect("value"), "v");
    assert_eq!(
        server
            .wait_for_followers(at + (1 << 40), 1, Duration::from_millis(50))
            .await,
        0
    );
    f.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_when_the_offset_left_the_ring_while_writes_continue() {
    let c = certs();
    let dir = tempfile::tempdir().expect("dir");
    // A data directory with a small ring: snapshots release history, so an
    // absent follower's offset leaves the ring.
    let primary = ringkv::Engine::open(dir.path().join("p"), config_with_ring(1 << 20)).expect("primary");
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    let replica = ringkv::Engine::open(dir.path().join("f"), config_with_ring(4 << 20)).expect("follower");
    workload(&primary, 0, 200);
    let f = follow(&replica, server.local_addr(), "f", &c.client).await;
    converged(&primary, &replica, 20).await;
    f.stop().await;
    let left_at = replica.applied_offset();
    let mut round = 1;
    while primary.log().expect("log").oldest() <= left_at {
        workload(&primary, round, 2000);
        round += 1;
        assert!(round < 200, "the ring never moved past the follower");
    }
    // Reconnect while a writer keeps going.
    let writer = {
        let p = primary.clone();
        std::thread::spawn(move || {
            for r in 0..20 {
                workload(&p, 1000 + r, 300);
            }
        })
    };
    let f = follow(&replica, server.local_addr(), "f", &c.client).await;
    writer.join().expect("writer");
    converged(&primary, &replica, 30).await;
    // The data is swapped in before the sync is reported: the follower
    // saves it first.
    let fr = &f;
    eventually(20, "the full sync is reported", || fr.info().full_syncs == 1).await;
    let info = f.info();
    assert_eq!(info.full_syncs, 1, "{info:?}");
    assert!(
        info.last_full_sync_reason
            .as_deref()
            .is_some_and(|r| r.contains("no longer in the primary's ring")),
        "{info:?}"
    );
    let stats = server.stats();
    assert_eq!(stats.sync_partial_err, 1);
    assert_eq!(stats.sync_full, 2);
    assert_eq!(info.sync_loops, 0);
    f.stop().await;
    // The follower's directory reopens to the same state (its save after the swap).
    let digest = replica.digest();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while replica.stats().snapshot.completed == 0 {
        assert!(std::time::Instant::now() < deadline, "no snapshot after the full sync");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replica.close();
    let reopened = ringkv::Engine::open(dir.path().join("f"), config_with_ring(4 << 20)).expect("reopen");
    assert_eq!(reopened.digest(), digest);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_followers_then_promotion_and_rejoin() {
    let c = certs();
    // A → B → C.
    let a = anonymous(8 << 20);
    let sa = Primary::start(a.clone(), primary_config(), c.server.clone())
        .await
        .expect("A");
    let b = anonymous(8 << 20);
    let fb = follow(&b, sa.local_addr(), "B", &c.client).await;
    let sb = Primary::start(b.clone(), primary_config(), c.server.clone())
        .await
        .expect("B serves");
    let cc = anonymous(8 << 20);
    let fc = follow(&cc, sb.local_addr(), "C", &c.client).await;
    workload(&a, 0, 1000);
    converged(&a, &b, 20).await;
    converged(&a, &cc, 20).await;
    assert_eq!(cc.log().expect("log").replid(), a.log().expect("log").replid());

    // C moves to A directly (same history, partial), then B is promoted and
    // C re-parents to B with a partial resync.
    fc.stop().await;
    let fc = follow(&cc, sa.local_addr(), "C", &c.client).await;
    workload(&a, 1, 300);
    converged(&a, &b, 20).await;
    converged(&a, &cc, 20).await;
    assert_eq!(fc.info().partial_syncs, 1);
    fc.stop().await;
    let promotion = fb.promote().await.expect("promote B");
    assert_eq!(b.role(), Role::Primary);
    assert_eq!(promotion.prev_replid, a.log().expect("log").replid());
    let fc = follow(&cc, sb.local_addr(), "C", &c.client).await;
    b.set("written on B", "after promotion").expect("B takes writes");
    workload(&b, 2, 300);
    converged(&b, &cc, 20).await;
    let info = fc.info();
    assert_eq!((info.full_syncs, info.partial_syncs), (0, 1), "{info:?}");
    assert_eq!(cc.log().expect("log").header().prev_replid, promotion.prev_replid);

    // The old primary A took writes after the switch: it rejoins as B's
    // follower with a full sync, and the bytes it loses are reported.
    workload(&a, 3, 100);
    let lost = a.log().expect("log").published() - promotion.switch_offset;
    sa.shutdown().await;
    let fa = follow(&a, sb.local_addr(), "A", &c.client).await;
    converged(&b, &a, 20).await;
    let info = fa.info();
    assert_eq!(info.full_syncs, 1);
    assert_eq!(info.lost_bytes, lost, "{info:?}");
    assert!(info
        .last_full_sync_reason
        .as_deref()
        .is_some_and(|r| r.contains("histories split")));
    assert_eq!(a.get("written on B").expect("get").expect("value"), "after promotion");
    fa.stop().await;
    fc.stop().await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_or_none_are_rejected() {
    let c = certs();
    let primary = anonymous(1 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    // A client certificate from another CA (trusting the right CA for the server).
    let other = ringkv_replication::tls::DevCerts::new("another CA").expect("ca");
    let mut foreign = other
        .material(&other.client("intruder").expect("client"))
        .expect("material");
    foreign.ca = c.server.ca.clone();
    let replica = anonymous(1 << 20);
    let f = Follower::start(
        replica.clone(),
        follower_config(server.local_addr(), "intruder"),
        foreign,
    )
    .await
    .expect("starts");
    let s = &server;
    eventually(10, "the primary refused the foreign certificate", || {
        s.stats().rejected_connections >= 1
    })
    .await;
    primary.set("secret", "1").expect("set");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(replica.dbsize(), 0);
    let info = f.info();
    assert_eq!(info.master_link_status, LinkStatus::Down);
    assert!(info.last_error.is_some());
    assert_eq!(server.stats().connected_slaves, 0);
    f.stop().await;

    // No client certificate at all.
    let before = server.stats().rejected_connections;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(c.server.ca[0].clone()).expect("root");
    let mut crypto =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_root_certificates(roots)
            .with_no_client_auth();
    crypto.alpn_protocols = vec![ringkv_replication::protocol::ALPN.to_vec()];
    let client = quinn::ClientConfig::new(std::sync::Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).expect("quic"),
    ));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(client);
    let result = async {
        let conn = endpoint
            .connect(server.local_addr(), "localhost")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        // The server may only refuse once it reads the (missing) certificate.
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1];
        recv.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    }
    .await;
    assert!(result.is_err(), "a client without a certificate got through");
    eventually(10, "the refusal is counted", || s.stats().rejected_connections > before).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_disconnect_that_peer_only() {
    let c = certs();
    let primary = anonymous(4 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    let replica = anonymous(4 << 20);
    let f = follow(&replica, server.local_addr(), "good", &c.client).await;
    workload(&primary, 0, 200);
    converged(&primary, &replica, 20).await;

    let client = ringkv_replication::tls::client_config(&c.client, 1 << 20, Duration::from_secs(5)).expect("client");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(client);
    for garbage in [
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],                  // oversized frame
        vec![5, 0, 0, 0, 99, 1, 2, 3, 4],                       // unknown kind
        encode_frame(&Message::Ack { applied: 1, durable: 1 }), // not a Hello
    ] {
        let conn = endpoint
            .connect(server.local_addr(), "localhost")
            .expect("connect")
            .await
            .expect("handshake");
        let (mut send, _recv) = conn.open_bi().await.expect("stream");
        send.write_all(&garbage).await.expect("write");
        let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
            .await
            .expect("the primary closes the connection");
        assert!(
            matches!(reason, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == 1u32.into()),
            "{reason:?}"
        );
    }
    assert_eq!(server.stats().protocol_errors, 3);
    // The good follower never noticed.
    workload(&primary, 1, 200);
    converged(&primary, &replica, 20).await;
    assert_eq!(f.info().full_syncs, 1);
    assert_eq!(server.stats().sync_full, 1);
    f.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_gate_refuses_or_delays_without_enough_followers() {
    let c = certs();
    let primary = anonymous(4 << 20);
    let config = PrimaryConfig {
        write_gate: Some(WriteGateConfig {
            min_followers: 1,
            max_lag_bytes: 1 << 20,
            max_ack_age_ms: 300,
            mode: GateMode::Refuse,
            ..WriteGateConfig::default()
        }),
        ..primary_config()
    };
    let server = Primary::start(primary.clone(), config, c.server.clone())
        .await
        .expect("primary");
    let err = primary.set("k", "v").expect_err("no follower yet");
    assert!(matches!(err, Error::NoReplicas(_)), "{err}");
    assert!(err.to_string().starts_with("NOREPLICAS"));
    let replica = anonymous(4 << 20);
    let f = follow(&replica, server.local_addr(), "f", &c.client).await;
    let p = primary.clone();
    eventually(20, "writes admitted once a follower is online", move || {
        p.set("k", "v").is_ok()
    })
    .await;
    converged(&primary, &replica, 20).await;
    f.stop().await;
    let p = primary.clone();
    eventually(20, "writes refused again after the follower left", move || {
        matches!(p.set("k", "w"), Err(Error::NoReplicas(_)))
    })
    .await;
    server.shutdown().await;
    // Without the server, no gate.
    primary.set("k", "free").expect("gate removed");

    // Delay mode: a write waits (bounded) for a follower, then is refused.
    let config = PrimaryConfig {
        write_gate: Some(WriteGateConfig {
            min_followers: 1,
            mode: GateMode::Delay,
            max_delay_ms: 50,
            ..WriteGateConfig::default()
        }),
        ..primary_config()
    };
    let server = Primary::start(primary.clone(), config, c.server.clone())
        .await
        .expect("primary");
    let p = primary.clone();
    let refused = tokio::task::spawn_blocking(move || p.set("k", "delayed"))
        .await
        .expect("join");
    assert!(matches!(refused, Err(Error::NoReplicas(_))), "{refused:?}");
    let f = follow(&replica, server.local_addr(), "f", &c.client).await;
    let p = primary.clone();
    eventually(20, "a delayed write admitted once the follower is online", move || {
        p.set("k", "delayed").is_ok()
    })
    .await;
    converged(&primary, &replica, 20).await;
    f.stop().await;
    server.shutdown().await;
}

/// A gate installed after a primary's own (a newer primary's, or a leader
/// lease's fence).
struct Newer;

impl ringkv::WriteGate for Newer {
    fn admit(&self) -> Result<(), String> {
        Err("newer gate".into())
    }
}

/// Issue 14 finding 5: a primary still held elsewhere (a WAIT's handle) is
/// closed through the shared handle, and its late drop does not remove a
/// gate installed after its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_primary_leaves_a_newer_gate_alone() {
    let c = certs();
    let primary = anonymous(4 << 20);
    let config = PrimaryConfig {
        write_gate: Some(WriteGateConfig {
            min_followers: 1,
            mode: GateMode::Refuse,
            ..WriteGateConfig::default()
        }),
        ..primary_config()
    };
    let server = std::sync::Arc::new(
        Primary::start(primary.clone(), config, c.server.clone())
            .await
            .expect("primary"),
    );
    let held = std::sync::Arc::clone(&server);
    server.close();
    assert!(primary.write_gate().is_none(), "its own gate goes on close");
    primary.set_write_gate(Some(std::sync::Arc::new(Newer)));
    drop(server);
    drop(held);
    let err = primary.set("k", "v").expect_err("the newer gate is still installed");
    assert!(err.to_string().contains("newer gate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_full_sync_syncs_again_and_a_small_frame_limit_still_converges() {
    let c = certs();
    let primary = anonymous(4 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    workload(&primary, 0, 300);
    let replica = anonymous(4 << 20);
    replica.set_role(Role::Follower).expect("follower");
    replica.set("old", "data").expect_err("read-only");
    // A full sync that began (the ring restarted in the primary's history)
    // but never swapped in: the data is stale, the history is not ours.
    let p = primary.log().expect("log");
    replica
        .replica_begin_full_sync(p.published(), &p.replid(), "", 0)
        .expect("begin");
    assert!(replica.is_stale());
    let f = follow(&replica, server.local_addr(), "f", &c.client).await;
    converged(&primary, &replica, 20).await;
    let r = replica.clone();
    eventually(10, "the follower is no longer stale", move || !r.is_stale()).await;
    let info = f.info();
    assert_eq!(info.full_syncs, 1, "{info:?}");
    f.stop().await;

    // A follower whose frame limit is below the primary's largest record:
    // frames are cut to it (only a record that needs more would stop it).
    let small = anonymous(4 << 20);
    let config = ringkv_replication::FollowerConfig {
        max_frame_bytes: 4096,
        ..follower_config(server.local_addr(), "small")
    };
    let f = Follower::start(small.clone(), config.clone(), c.client.clone())
        .await
        .expect("starts");
    converged(&primary, &small, 20).await;
    assert_eq!(f.info().connects, 1);
    f.stop().await;
    // One that no record could reach is a configuration error.
    let useless = ringkv_replication::FollowerConfig {
        max_frame_bytes: 512,
        ..config
    };
    let e = Follower::start(small.clone(), useless, c.client.clone())
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("max_frame_bytes"), "{e}");
    server.shutdown().await;
}

/// One record at `offset` holding `m`, as a primary's stream carries it.
fn record_at(offset: u64, m: &ringkv::Mutation) -> Vec<u8> {
    use ringkv::log::record;
    let mut payload = Vec::new();
    record::encode_mutation(m, &mut payload);
    let mut bytes = record::header(offset, &payload).to_vec();
    bytes.extend_from_slice(&payload);
    bytes.resize(record::record_len(payload.len()) as usize, 0);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_converges_when_the_log_written_meanwhile_exceeds_the_follower_ring() {
    init_tracing();
    let c = certs();
    let primary = anonymous(64 << 20);
    // A dataset whose snapshot takes a while to stream and load.
    for i in 0..32_000u32 {
        primary.set(format!("data:{i}"), vec![b'd'; 500]).expect("set");
    }
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    let dir = tempfile::tempdir().expect("dir");
    let ring = 1u64 << 20;
    let replica = ringkv::Engine::open(dir.path(), config_with_ring(ring)).expect("follower");
    // Each time the follower begins a full sync (its ring restarts at the
    // snapshot's offset), the primary writes three times the follower's
    // ring while the snapshot streams (on at most 20 full syncs).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (p, r, stop) = (primary.clone(), replica.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut bursts = 0u64;
            let mut synced_at = None;
            while bursts < 20 && !stop.load(std::sync::atomic::Ordering::Acquire) {
                let at = r.log().expect("log").oldest();
                if !r.is_stale() || synced_at == Some(at) {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                synced_at = Some(at);
                let start = p.log().expect("log").published();
                let mut n = 0u64;
                while p.log().expect("log").published() - start < 3 * ring {
                    p.set(format!("burst:{bursts}:{n}"), vec![b'b'; 1000]).expect("set");
                    n += 1;
                }
                bursts += 1;
            }
            bursts
        })
    };
    let f = follow(&replica, server.local_addr(), "small-ring", &c.client).await;
    let (p, r) = (primary.clone(), replica.clone());
    eventually(60, "the follower converges", move || {
        !r.is_stale() && r.applied_offset() >= p.log().expect("log").published()
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let bursts = writer.join().expect("writer");
    assert!(bursts >= 1, "the primary wrote during the full sync");
    converged(&primary, &replica, 30).await;
    let fr = &f;
    eventually(20, "the full sync is reported", || fr.info().full_syncs >= 1).await;
    let info = f.info();
    let stats = server.stats();
    assert_eq!(stats.sync_full, 1, "one full sync was enough: {info:?}");
    assert_eq!(info.full_syncs, 1, "{info:?}");
    assert_eq!(info.full_sync_log_pauses, 1, "the log outgrew the ring: {info:?}");
    assert!(!info.halted, "{info:?}");
    f.stop().await;
    // The directory reopens to the same state.
    let digest = replica.digest();
    replica.close();
    // A blocking task of the stopped follower (a replay or load step) can
    // hold the engine, and so the directory's lock, for a moment after
    // `stop` returns: retry `Locked` for a bounded time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let reopened = loop {
        match ringkv::Engine::open(dir.path(), config_with_ring(ring)) {
            Err(ringkv::Error::Locked(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            r => break r.expect("reopen"),
        }
    };
    assert_eq!(reopened.digest(), digest);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_acks_as_durable_only_what_it_synced() {
    init_tracing();
    let c = certs();
    let primary = anonymous(8 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    workload(&primary, 0, 300);
    let dir = tempfile::tempdir().expect("dir");
    // Durability always: every batch is synced before it is acked durable.
    let mut config = config_with_ring(8 << 20);
    config.log.durability = ringkv::Durability::Always;
    let always = ringkv::Engine::open(dir.path().join("always"), config).expect("follower");
    let fa = follow(&always, server.local_addr(), "always", &c.client).await;
    for round in 1..4 {
        workload(&primary, round, 300);
        converged(&primary, &always, 20).await;
        let end = primary.log().expect("log").published();
        let (fa_ref, srv) = (&fa, &server);
        eventually(10, "the durable ack reaches the primary's log end", || {
            let info = fa_ref.info();
            let link = srv.stats().followers.iter().find(|l| l.name == "always").cloned();
            info.durable_offset == end && link.is_some_and(|l| l.durable == end)
        })
        .await;
        assert!(always.log().expect("log").synced() >= end);
    }
    fa.stop().await;

    // Durability none: what is applied is not durable until synced.
    let none = ringkv::Engine::open(dir.path().join("none"), config_with_ring(8 << 20)).expect("follower");
    let fnone = follow(&none, server.local_addr(), "none", &c.client).await;
    converged(&primary, &none, 20).await;
    workload(&primary, 10, 300);
    converged(&primary, &none, 20).await;
    let info = fnone.info();
    assert!(
        info.durable_offset < info.slave_repl_offset,
        "nothing synced the last writes: {info:?}"
    );
    assert!(
        info.durable_offset
            <= none
                .log()
                .expect("log")
                .synced()
                .max(none.stats().snapshot.last.map_or(0, |s| s.offset))
    );
    none.sync().expect("sync");
    let end = primary.log().expect("log").published();
    let (fn_ref, srv) = (&fnone, &server);
    eventually(10, "after a sync everything applied is durable", || {
        let link = srv.stats().followers.iter().find(|l| l.name == "none").cloned();
        fn_ref.info().durable_offset == end && link.is_some_and(|l| l.durable == end)
    })
    .await;
    fnone.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_apply_halts_the_follower_and_keeps_its_directory_openable() {
    init_tracing();
    let c = certs();
    let primary = anonymous(8 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    workload(&primary, 0, 300);
    primary.set("s", "a string").expect("set");
    let dir = tempfile::tempdir().expect("dir");
    let replica = ringkv::Engine::open(dir.path(), config_with_ring(8 << 20)).expect("follower");
    let f = follow(&replica, server.local_addr(), "f", &c.client).await;
    converged(&primary, &replica, 20).await;
    let digest = replica.digest();
    let applied = replica.applied_offset();
    // A buggy primary: its ring gets a record that validates but cannot
    // apply (HSET on a string), then serves it.
    let at = primary.log().expect("log").published();
    primary.set_role(Role::Follower).expect("follower for a moment");
    let bad = record_at(
        at,
        &ringkv::Mutation::HSet {
            key: "s".into(),
            fields: vec![("f".into(), "v".into())],
        },
    );
    primary.replica_append(at, &bad).expect("the record validates");
    primary.set_role(Role::Primary).expect("primary again");
    let fr = &f;
    eventually(10, "the follower halts", || fr.info().halted).await;
    let info = f.info();
    let reason = info.last_error.clone().unwrap_or_default();
    assert!(reason.contains("does not apply"), "{info:?}");
    assert!(reason.contains(&at.to_string()), "the offset is named: {info:?}");
    assert_eq!(replica.applied_offset(), applied);
    assert_eq!(replica.digest(), digest);
    f.stop().await;
    replica.close();
    let reopened = ringkv::Engine::open(dir.path(), config_with_ring(8 << 20)).expect("the directory opens");
    assert_eq!(reopened.digest(), digest, "every applied record is there");
    server.shutdown().await;
}

/// F8: a follower whose frame limit is below the primary's `batch_bytes`
/// (and below a snapshot frame) gets its data in frames it accepts, on a
/// full sync and on a partial resync with much to catch up, instead of
/// failing at the same offset forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_frame_limit_below_the_batch_size_splits_frames_and_converges() {
    init_tracing();
    let c = certs();
    // Records up to 128 KiB, batches of 256 KiB.
    let primary = anonymous(1 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    for i in 0..400u32 {
        primary.set(format!("snap:{i}"), vec![b's'; 1000]).expect("set");
    }
    let replica = anonymous(4 << 20);
    let config = ringkv_replication::FollowerConfig {
        // Above the primary's largest record, below its batches.
        max_frame_bytes: 192 << 10,
        ..follower_config(server.local_addr(), "narrow")
    };
    let f = Follower::start(replica.clone(), config.clone(), c.client.clone())
        .await
        .expect("starts");
    converged(&primary, &replica, 20).await;
    for i in 0..300u32 {
        primary.set(format!("live:{i}"), vec![b'l'; 1000]).expect("set");
    }
    converged(&primary, &replica, 20).await;
    let info = f.info();
    assert_eq!((info.connects, info.full_syncs), (1, 1), "{info:?}");
    assert_eq!(info.last_error, None);
    f.stop().await;

    // Much to catch up on a partial resync: 600 KB of log in batches of 256 KiB.
    for i in 0..600u32 {
        primary.set(format!("later:{i}"), vec![b'p'; 1000]).expect("set");
    }
    let f = Follower::start(replica.clone(), config, c.client.clone())
        .await
        .expect("starts");
    converged(&primary, &replica, 20).await;
    let info = f.info();
    assert_eq!(
        (info.connects, info.partial_syncs, info.full_syncs),
        (1, 1, 0),
        "{info:?}"
    );
    assert_eq!(info.last_error, None);
    f.stop().await;
    server.shutdown().await;
}

/// F8: a record larger than the follower's ring accepts stops that
/// follower with the reason (the limit and the offset) instead of a
/// reconnect at the same offset forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_beyond_the_follower_ring_limit_halts_it_with_the_reason() {
    init_tracing();
    let c = certs();
    // Records up to 512 KiB on the primary, 32 KiB on the follower.
    let primary = anonymous(4 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    workload(&primary, 0, 100);
    let replica = anonymous(256 << 10);
    let limit = replica.log().expect("log").max_payload();
    let f = follow(&replica, server.local_addr(), "small-ring", &c.client).await;
    converged(&primary, &replica, 20).await;
    let at = primary.log().expect("log").published();
    primary
        .set("big", vec![b'x'; 100_000])
        .expect("a record the primary's ring takes");
    primary.set("after", "small").expect("set");
    let fr = &f;
    eventually(10, "the follower halts", || fr.info().halted).await;
    let info = f.info();
    let error = info.last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&limit.to_string()) && error.contains(&format!("offset {at}")),
        "{error}"
    );
    assert_eq!(replica.applied_offset(), at, "everything before the record is applied");
    assert_eq!(replica.get("big").expect("read"), None);
    // No reconnect loop.
    let connects = info.connects;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(f.info().connects, connects);
    assert!(connects <= 1, "{info:?}");
    f.stop().await;
    server.shutdown().await;
}

/// A snapshot output that takes nothing until its sender is dropped, then fails.
struct Stalled(std::sync::mpsc::Receiver<()>);

impl std::io::Write for Stalled {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.recv();
        Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_gone_while_its_full_sync_waits_gives_up_its_request() {
    init_tracing();
    let c = certs();
    let primary = anonymous(8 << 20);
    workload(&primary, 0, 500);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    // Another full sync (or a backup) holds the engine's stream snapshot.
    let (release, stalled) = std::sync::mpsc::channel();
    let busy = {
        let primary = primary.clone();
        std::thread::spawn(move || primary.snapshot_to(Stalled(stalled)))
    };
    eventually(10, "the busy snapshot runs", || primary.stats().snapshot.in_progress).await;
    let completed = primary.stats().snapshot.completed;
    let replica = anonymous(8 << 20);
    let f = follow(&replica, server.local_addr(), "f1", &c.client).await;
    eventually(10, "the primary decides a full sync", || server.stats().sync_full == 1).await;
    // The follower goes away while its full sync waits for the slot.
    f.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(release);
    assert!(busy.join().expect("busy snapshot").is_err(), "its output failed");
    // A request still queued would take its snapshot now (it retries every 20 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        primary.stats().snapshot.completed,
        completed,
        "a snapshot was taken for a follower that had gone"
    );
    primary.snapshot_to(Vec::new()).expect("the slot is free");
    server.shutdown().await;
}
