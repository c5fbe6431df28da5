//! A hostile follower that holds a valid certificate: more connections than
//! the primary serves, control frames larger than any honest one, acks of
//! bytes it was never sent. Each is refused or disconnected with a clear
//! reason, and the honest followers beside it keep replicating.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ringkv::Error;
use ringkv_replication::protocol::{decode_body, encode_frame, frame_len, Codec, Message, PROTOCOL_VERSION};
use ringkv_replication::tls::TlsMaterial;
use ringkv_replication::{GateMode, Primary, PrimaryConfig, WriteGateConfig};

/// Close codes of the primary (`io::code` in the crate).
const PROTOCOL: u64 = 1;
const TOO_MANY_FOLLOWERS: u64 = 4;

/// A raw QUIC connection to the primary, authenticated like a follower.
struct Raw {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

async fn raw(addr: SocketAddr, tls: &TlsMaterial) -> Raw {
    let client = ringkv_replication::tls::client_config(tls, 1 << 20, Duration::from_secs(10)).expect("client");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(client);
    let conn = endpoint
        .connect(addr, "localhost")
        .expect("connect")
        .await
        .expect("handshake");
    Raw {
        _endpoint: endpoint,
        conn,
    }
}

/// Waits (up to `secs`) for the primary to close `conn`; its code and reason.
async fn closed_within(conn: &quinn::Connection, secs: u64) -> (u64, String) {
    let reason = tokio::time::timeout(Duration::from_secs(secs), conn.closed())
        .await
        .unwrap_or_else(|_| panic!("the primary did not close the connection within {secs} s"));
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => (
            c.error_code.into_inner(),
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        other => panic!("closed, but not by the primary's application: {other:?}"),
    }
}

/// One frame from the primary.
async fn read_reply(recv: &mut quinn::RecvStream) -> Message {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.expect("reply prefix");
    let len = frame_len(prefix, 1 << 20).expect("reply length");
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.expect("reply body");
    decode_body(&body).expect("reply")
}

/// A `Hello` that continues from the primary's end of log.
fn hello_at_end(primary: &ringkv::Engine, name: String) -> Message {
    let log = primary.log().expect("log");
    Message::Hello {
        version: PROTOCOL_VERSION,
        name,
        replid: log.replid(),
        offset: log.published(),
        codecs: vec![Codec::None],
        max_frame: 64 << 20,
        max_record: log.max_payload() as u32,
        capacity: log.capacity(),
        observer: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_beyond_max_followers_are_refused_and_the_others_keep_working() {
    init_tracing();
    let c = certs();
    let primary = anonymous(8 << 20);
    // As a configuration file would set it.
    let config: PrimaryConfig =
        serde_json::from_value(serde_json::json!({ "max_followers": 2, "ping_interval_ms": 50 })).expect("config");
    let server = Primary::start(primary.clone(), config, c.server.clone())
        .await
        .expect("primary");
    workload(&primary, 0, 200);
    let (r1, r2, r3) = (anonymous(8 << 20), anonymous(8 << 20), anonymous(8 << 20));
    let f1 = follow(&r1, server.local_addr(), "f1", &c.client).await;
    let f2 = follow(&r2, server.local_addr(), "f2", &c.client).await;
    converged(&primary, &r1, 20).await;
    converged(&primary, &r2, 20).await;
    assert_eq!(server.stats().connected_slaves, 2);

    // A third connection is refused at once, with the reason.
    let before = server.stats().rejected_connections;
    let extra = raw(server.local_addr(), &c.client).await;
    let (code, reason) = closed_within(&extra.conn, 3).await;
    assert_eq!(code, TOO_MANY_FOLLOWERS, "{reason}");
    assert_eq!(reason, "too many followers (the limit is 2)");
    assert_eq!(server.stats().rejected_connections, before + 1);
    // So is a third follower, which keeps retrying meanwhile.
    let f3 = follow(&r3, server.local_addr(), "f3", &c.client).await;
    eventually(10, "the third follower is told why", || {
        f3.info()
            .last_error
            .is_some_and(|e| e.contains("too many followers (the limit is 2)"))
    })
    .await;
    // The first two keep replicating.
    workload(&primary, 1, 300);
    converged(&primary, &r1, 20).await;
    converged(&primary, &r2, 20).await;
    let stats = server.stats();
    assert_eq!(stats.connected_slaves, 2, "{stats:?}");
    let mut names: Vec<&str> = stats.followers.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["f1", "f2"]);
    assert_eq!(r3.applied_offset(), 0, "the refused follower got nothing");

    // A slot that frees up is taken by the waiting follower.
    f1.stop().await;
    converged(&primary, &r3, 30).await;
    workload(&primary, 2, 100);
    converged(&primary, &r2, 20).await;
    converged(&primary, &r3, 20).await;
    assert_eq!(server.stats().connected_slaves, 2);
    f2.stop().await;
    f3.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_hello_and_control_frames_are_protocol_errors_at_once() {
    init_tracing();
    let c = certs();
    let primary = anonymous(8 << 20);
    // A long handshake timeout: a refusal must not be the timeout's.
    let config = PrimaryConfig {
        handshake_timeout_ms: 60_000,
        ..primary_config()
    };
    let server = Primary::start(primary.clone(), config, c.server.clone())
        .await
        .expect("primary");
    workload(&primary, 0, 200);
    let replica = anonymous(8 << 20);
    let f = follow(&replica, server.local_addr(), "good", &c.client).await;
    converged(&primary, &replica, 20).await;

    // A Hello frame announcing 1 MiB (far below the 64 MiB data-frame
    // limit; no honest Hello reaches 9 KiB), of which the first 64 KiB
    // arrive: refused on its length, not after buffering the body.
    let h = raw(server.local_addr(), &c.client).await;
    let (mut send, _recv) = h.conn.open_bi().await.expect("stream");
    let mut frame = encode_frame(&hello_at_end(&primary, "big-hello".into()));
    let announced = 1u32 << 20;
    frame[..4].copy_from_slice(&announced.to_le_bytes());
    frame.resize(4 + (64 << 10), 0);
    // The primary may close before the write completes.
    let _ = send.write_all(&frame).await;
    let (code, reason) = closed_within(&h.conn, 5).await;
    assert_eq!((code, reason.as_str()), (PROTOCOL, "protocol error"));

    // A length prefix announcing 64 MiB - 1, and no body: refused on the
    // prefix, not after waiting for (and buffering) the body.
    let h = raw(server.local_addr(), &c.client).await;
    let (mut send, _recv) = h.conn.open_bi().await.expect("stream");
    let _ = send.write_all(&((64u32 << 20) - 1).to_le_bytes()).await;
    let (code, reason) = closed_within(&h.conn, 5).await;
    assert_eq!((code, reason.as_str()), (PROTOCOL, "protocol error"));

    // After a good handshake, an Ack frame announcing 1 MiB, 64 KiB of it sent.
    let h = raw(server.local_addr(), &c.client).await;
    let (mut send, mut recv) = h.conn.open_bi().await.expect("stream");
    send.write_all(&encode_frame(&hello_at_end(&primary, "big-ack".into())))
        .await
        .expect("write");
    assert!(matches!(read_reply(&mut recv).await, Message::Continue { .. }));
    let mut ack = encode_frame(&Message::Ack { applied: 0, durable: 0 });
    ack[..4].copy_from_slice(&(1u32 << 20).to_le_bytes());
    ack.resize(4 + (64 << 10), 0);
    let _ = send.write_all(&ack).await;
    let (code, reason) = closed_within(&h.conn, 5).await;
    assert_eq!((code, reason.as_str()), (PROTOCOL, "protocol error"));
    eventually(10, "three protocol errors counted", || {
        server.stats().protocol_errors == 3
    })
    .await;

    // The honest follower never noticed.
    workload(&primary, 1, 200);
    converged(&primary, &replica, 20).await;
    let stats = server.stats();
    assert_eq!(stats.connected_slaves, 1, "{stats:?}");
    assert_eq!(f.info().full_syncs, 1);
    f.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_acking_bytes_it_was_not_sent_is_disconnected_and_never_counted() {
    init_tracing();
    let c = certs();
    let primary = anonymous(8 << 20);
    workload(&primary, 0, 200);
    let config = PrimaryConfig {
        write_gate: Some(WriteGateConfig {
            min_followers: 1,
            max_lag_bytes: 1 << 20,
            mode: GateMode::Refuse,
            ..WriteGateConfig::default()
        }),
        ..primary_config()
    };
    let server = Primary::start(primary.clone(), config, c.server.clone())
        .await
        .expect("primary");
    let at = primary.log().expect("log").published();

    // A follower that continues from the end of the log, then claims to
    // have applied everything there will ever be.
    let liar = raw(server.local_addr(), &c.client).await;
    let (mut send, mut recv) = liar.conn.open_bi().await.expect("stream");
    send.write_all(&encode_frame(&hello_at_end(&primary, "liar".into())))
        .await
        .expect("write");
    assert!(matches!(read_reply(&mut recv).await, Message::Continue { offset, .. } if offset == at));
    send.write_all(&encode_frame(&Message::Ack {
        applied: u64::MAX,
        durable: u64::MAX,
    }))
    .await
    .expect("write");

    // WAIT does not count it; the write gate does not either.
    assert_eq!(server.wait_for_followers(at, 1, Duration::from_secs(2)).await, 0);
    let err = primary.set("k", "v").expect_err("the gate has no good follower");
    assert!(matches!(err, Error::NoReplicas(_)), "{err}");
    // It is disconnected as a protocol violation.
    let (code, reason) = closed_within(&liar.conn, 5).await;
    assert_eq!((code, reason.as_str()), (PROTOCOL, "protocol error"));
    eventually(10, "the liar is gone and counted", || {
        let s = server.stats();
        s.protocol_errors == 1 && s.followers.is_empty()
    })
    .await;

    // An honest follower is counted as usual.
    let replica = anonymous(8 << 20);
    let f = follow(&replica, server.local_addr(), "honest", &c.client).await;
    converged(&primary, &replica, 20).await;
    assert_eq!(server.wait_for_followers(at, 1, Duration::from_secs(10)).await, 1);
    eventually(10, "the gate admits writes again", || primary.set("k", "v").is_ok()).await;
    f.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cannot_open_streams_the_primary_never_reads() {
    init_tracing();
    let c = certs();
    let primary = anonymous(8 << 20);
    let server = Primary::start(primary.clone(), primary_config(), c.server.clone())
        .await
        .expect("primary");
    let h = raw(server.local_addr(), &c.client).await;
    // The control stream is the one stream a follower opens.
    let (mut send, mut recv) = h.conn.open_bi().await.expect("control stream");
    send.write_all(&encode_frame(&hello_at_end(&primary, "streams".into())))
        .await
        .expect("write");
    assert!(matches!(read_reply(&mut recv).await, Message::Continue { .. }));
    // Any other stream would be buffered by QUIC and never read: there is
    // no credit for one.
    let second = tokio::time::timeout(Duration::from_secs(1), h.conn.open_bi()).await;
    assert!(second.is_err(), "a second bidirectional stream was opened");
    let uni = tokio::time::timeout(Duration::from_secs(1), h.conn.open_uni()).await;
    assert!(uni.is_err(), "a unidirectional stream was opened");
    // The link itself is fine.
    assert_eq!(server.stats().connected_slaves, 1);
    server.shutdown().await;
}
