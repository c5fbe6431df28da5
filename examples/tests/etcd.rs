//! The etcd client (`coord`) against a real etcd 3.4 on loopback: reads,
//! writes, prefixes, transactions on the create revision, leases that
//! expire, revision numbers. Without an etcd binary (the test command
//! installs Debian's etcd-server) each test says so and passes.

use std::time::{Duration, Instant};

use ringkv_examples::coord::{Compare, Etcd, EtcdError, LocalEtcd, Op, OpResult};

fn etcd() -> Option<(tempfile::TempDir, LocalEtcd, Etcd)> {
    if !ringkv_examples::coord::etcd_installed() {
        eprintln!("etcd is not installed: skipping (scripts/test.sh installs etcd-server)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = LocalEtcd::start(dir.path()).expect("etcd starts");
    let client = server.client().expect("client");
    Some((dir, server, client))
}

#[test]
fn put_get_range_delete_and_revisions() {
    let Some((_dir, _server, etcd)) = etcd() else { return };
    assert_eq!(etcd.get(b"/t/a").expect("get"), None);
    let r1 = etcd.put(b"/t/a", b"1", None).expect("put");
    let r2 = etcd.put(b"/t/b", b"2", None).expect("put");
    let r3 = etcd.put(b"/t/a", b"\x00\xffbinary", None).expect("put");
    etcd.put(b"/u/c", b"3", None).expect("put");
    assert!(r1 < r2 && r2 < r3, "{r1} {r2} {r3}");
    let a = etcd.get(b"/t/a").expect("get").expect("present");
    assert_eq!(a.value, b"\x00\xffbinary");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r1, r3, 2));
    let range = etcd.range_prefix(b"/t/").expect("range");
    let keys: Vec<&[u8]> = range.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, [&b"/t/a"[..], b"/t/b"]);
    assert_eq!(range.revision, r3 + 1);
    assert_eq!(etcd.delete(b"/t/b").expect("delete"), 1);
    assert_eq!(etcd.delete(b"/t/b").expect("delete"), 0);
    assert_eq!(etcd.delete_prefix(b"/").expect("delete prefix"), 2);
    assert!(etcd.range_prefix(b"/").expect("range").kvs.is_empty());
}

#[test]
fn txn_on_create_revision_admits_one_taker() {
    let Some((_dir, _server, etcd)) = etcd() else { return };
    let key = b"/ringkv/shards/s/leader";
    let take = |who: &[u8]| {
        etcd.txn(
            &[Compare::create_revision(key, 0)],
            &[Op::put(key, who, None)],
            &[Op::get(key)],
        )
        .expect("txn")
    };
    let first = take(b"n1");
    assert!(first.succeeded);
    assert!(matches!(first.results.as_slice(), [OpResult::Put { revision }] if *revision == first.revision));
    let second = take(b"n2");
    assert!(!second.succeeded);
    match second.results.as_slice() {
        [OpResult::Range(kvs)] => {
            assert_eq!(kvs.len(), 1);
            assert_eq!(kvs[0].value, b"n1");
            assert_eq!(kvs[0].create_revision, first.revision);
        }
        other => panic!("expected the holder, got {other:?}"),
    }
    // Compare on the mod revision and on the value; delete in a txn.
    let kv = etcd.get(key).expect("get").expect("present");
    let cas = etcd
        .txn(
            &[Compare::mod_revision(key, kv.mod_revision), Compare::value(key, b"n1")],
            &[Op::delete(key)],
            &[],
        )
        .expect("txn");
    assert!(cas.succeeded);
    assert!(matches!(cas.results.as_slice(), [OpResult::Delete { deleted: 1 }]));
    // After the delete, the next taker gets a newer epoch.
    let third = take(b"n3");
    assert!(third.succeeded);
    assert!(third.revision > first.revision);
}

#[test]
fn leases_keep_keys_alive_and_expire() {
    let Some((_dir, _server, etcd)) = etcd() else { return };
    let lease = etcd.lease_grant(2).expect("grant");
    assert_eq!(lease.ttl, 2);
    etcd.put(b"/l/k", b"v", Some(lease.id)).expect("put with lease");
    assert_eq!(etcd.get(b"/l/k").expect("get").expect("present").lease, lease.id);
    // Renewed past its TTL, the key stays.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(etcd.lease_keepalive(lease.id).expect("keepalive"), Some(2));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(etcd.get(b"/l/k").expect("get").is_some());
    // Not renewed, it expires (etcd checks every 500 ms): bounded wait.
    let deadline = Instant::now() + Duration::from_secs(15);
    while etcd.get(b"/l/k").expect("get").is_some() {
        assert!(Instant::now() < deadline, "the leased key outlived its lease by far");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(etcd.lease_keepalive(lease.id).expect("keepalive"), None);
    // Revoking deletes at once.
    let l2 = etcd.lease_grant(30).expect("grant");
    etcd.put(b"/l/r", b"v", Some(l2.id)).expect("put");
    etcd.lease_revoke(l2.id).expect("revoke");
    assert!(etcd.get(b"/l/r").expect("get").is_none());
    // A put with an unknown lease is an etcd error, not a panic.
    let e = etcd.put(b"/l/x", b"v", Some(12345)).expect_err("unknown lease");
    assert!(matches!(e, EtcdError::Status { .. }), "{e}");
}

#[test]
fn unreachable_and_garbage_servers_are_errors() {
    // Nothing listens: a connect error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let etcd = Etcd::new(&format!("http://127.0.0.1:{port}"))
        .expect("url")
        .with_timeout(Duration::from_millis(500));
    assert!(matches!(etcd.get(b"k"), Err(EtcdError::Connect { .. })));
    // A server that answers garbage, one that never answers, one that
    // sends too much.
    for (reply, expect_timeout) in [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(), false),
        (Vec::new(), true),
        (vec![b'x'; 8 << 20], false),
    ] {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let t = std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut s, _)) = l.accept() {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req);
                let _ = s.write_all(&reply);
                std::thread::sleep(Duration::from_millis(1500));
            }
        });
        let etcd = Etcd::new(&addr.to_string())
            .expect("url")
            .with_timeout(Duration::from_millis(700))
            .with_max_response(1 << 20);
        let e = etcd.get(b"k").expect_err("garbage");
        if expect_timeout {
            assert!(matches!(e, EtcdError::Timeout(_)), "{e}");
        } else {
            assert!(
                matches!(e, EtcdError::Json(_) | EtcdError::TooLarge(_) | EtcdError::Http(_)),
                "{e}"
            );
        }
        let _ = t.join();
    }
}
