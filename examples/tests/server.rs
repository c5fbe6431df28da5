//! The RESP server driven by real clients: the `redis` crate for typed
//! assertions, a raw connection for exact replies (RESP2 and RESP3),
//! pipelines, transactions, protocol errors, restarts and replication
//! between the two binaries.

mod common;

use std::time::Duration;

use common::{request, Proc};
use redis::Commands;
use ringkv_examples::resp::Frame;

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec())
}

fn err(f: &Frame) -> &str {
    match f {
        Frame::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn primary(dir: &std::path::Path) -> Proc {
    Proc::start("ringkv-primary", dir, &["--repl-listen", "127.0.0.1:0"])
}

#[test]
fn strings_hashes_and_keys_through_the_redis_crate() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut c = p.client();
    let _: () = c.set("session:42", "token-abc").expect("set");
    assert_eq!(c.get::<_, String>("session:42").expect("get"), "token-abc");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query(&mut c)
        .expect("set ex");
    let ttl: i64 = c.ttl("k").expect("ttl");
    assert!((99..=100).contains(&ttl), "ttl {ttl}");
    assert_eq!(c.incr::<_, _, i64>("requests", 3).expect("incrby"), 3);
    assert_eq!(c.decr::<_, _, i64>("requests", 1).expect("decrby"), 2);
    let _: () = c.mset(&[("a", "1"), ("b", "2")]).expect("mset");
    let got: Vec<Option<String>> = c.mget(&["a", "b", "nope"]).expect("mget");
    assert_eq!(got, vec![Some("1".into()), Some("2".into()), None]);
    assert_eq!(c.append::<_, _, i64>("a", "23").expect("append"), 3);
    assert_eq!(c.strlen::<_, i64>("a").expect("strlen"), 3);
    let added: i64 = c
        .hset_multiple::<_, _, _, ()>("telemetry:host-1", &[("cpu", "0.71"), ("mem", "2048")])
        .map(|_| 2)
        .expect("hmset");
    assert_eq!(added, 2);
    assert_eq!(c.hget::<_, _, String>("telemetry:host-1", "cpu").expect("hget"), "0.71");
    assert_eq!(c.hlen::<_, i64>("telemetry:host-1").expect("hlen"), 2);
    assert_eq!(
        c.hincr::<_, _, _, i64>("telemetry:host-1", "mem", 2).expect("hincrby"),
        2050
    );
    let all: std::collections::HashMap<String, String> = c.hgetall("telemetry:host-1").expect("hgetall");
    assert_eq!(all.len(), 2);
    let drained: Vec<String> = redis::cmd("HDRAIN")
        .arg("telemetry:host-1")
        .arg(10)
        .query(&mut c)
        .expect("hdrain");
    assert_eq!(drained.len(), 4, "two fields and their values");
    assert_eq!(
        c.exists::<_, i64>("telemetry:host-1").expect("exists"),
        0,
        "a drained hash is removed"
    );
    assert_eq!(c.del::<_, i64>(&["a", "b", "nope"]).expect("del"), 2);
    let t: String = redis::cmd("TYPE").arg("session:42").query(&mut c).expect("type");
    assert_eq!(t, "string");
    let _: () = c.rename("session:42", "session:43").expect("rename");
    assert_eq!(c.get::<_, Option<String>>("session:42").expect("get"), None);
    let keys: Vec<String> = c.keys("session:*").expect("keys");
    assert_eq!(keys, vec!["session:43".to_string()]);
    let mut scanned: Vec<String> = c.scan_match::<_, String>("*").expect("scan").collect();
    scanned.sort();
    assert_eq!(scanned, vec!["k", "requests", "session:43"]);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).expect("dbsize"), 3);
    let _: () = redis::cmd("FLUSHALL").query(&mut c).expect("flushall");
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).expect("dbsize"), 0);
}

#[test]
fn errors_have_redis_texts_and_keep_the_connection() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut r = p.raw();
    r.cmd(&["HSET", "h", "f", "v"]);
    assert_eq!(
        err(&r.cmd(&["GET", "h"])),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    r.cmd(&["SET", "s", "abc"]);
    assert_eq!(
        err(&r.cmd(&["INCR", "s"])),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err(&r.cmd(&["GET"])), "ERR wrong number of arguments for 'get' command");
    assert_eq!(err(&r.cmd(&["SET", "k", "v", "NX", "XX"])), "ERR syntax error");
    assert_eq!(
        err(&r.cmd(&["SET", "k", "v", "EX", "0"])),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err(&r.cmd(&["LPUSH", "l", "x"])),
        "ERR unknown command 'LPUSH', with args beginning with: 'l' 'x' "
    );
    assert_eq!(err(&r.cmd(&["SELECT", "1"])), "ERR DB index is out of range");
    r.cmd(&["SET", "n", "9223372036854775807"]);
    assert_eq!(err(&r.cmd(&["INCR", "n"])), "ERR increment or decrement would overflow");
    assert_eq!(err(&r.cmd(&["RENAME", "missing", "x"])), "ERR no such key");
    assert_eq!(
        r.cmd(&["PING"]),
        Frame::Simple("PONG".into()),
        "the connection survives errors"
    );
}

#[test]
fn resp3_after_hello_3() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut r = p.raw();
    let Frame::Map(hello) = r.cmd(&["HELLO", "3"]) else {
        panic!("HELLO 3 answers a map")
    };
    assert!(hello.contains(&(bulk("proto"), Frame::Int(3))));
    assert!(hello.contains(&(bulk("server"), bulk("redis"))));
    r.cmd(&["HSET", "h", "f", "v"]);
    assert_eq!(r.cmd(&["HGETALL", "h"]), Frame::Map(vec![(bulk("f"), bulk("v"))]));
    assert_eq!(r.cmd(&["GET", "missing"]), Frame::Null);
    assert!(matches!(r.cmd(&["INFO", "server"]), Frame::Verbatim(..)));
    assert_eq!(err(&r.cmd(&["HELLO", "4"])), "NOPROTO unsupported protocol version");
    let Frame::Array(pairs) = r.cmd(&["HELLO", "2"]) else {
        panic!("HELLO 2 answers a flat array")
    };
    assert!(pairs.contains(&Frame::Int(2)));
    assert_eq!(r.cmd(&["GET", "missing"]), Frame::Null, "RESP2 again: $-1");
}

#[test]
fn a_pipeline_gets_every_reply_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut r = p.raw();
    let mut batch = Vec::new();
    for i in 0..2000 {
        if i % 500 == 0 {
            batch.extend(b"PING\r\n"); // inline, as redis-benchmark's PING_INLINE
        }
        batch.extend(request(&[b"INCR", b"counter"]));
    }
    r.send(&batch);
    let mut last = 0;
    for i in 0..2000 {
        if i % 500 == 0 {
            assert_eq!(r.read(), Some(Frame::Simple("PONG".into())));
        }
        match r.read() {
            Some(Frame::Int(n)) => {
                assert_eq!(n, last + 1);
                last = n;
            }
            other => panic!("reply {i}: {other:?}"),
        }
    }
}

#[test]
fn transactions_queue_then_exec_or_abort() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut r = p.raw();
    assert_eq!(r.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(r.cmd(&["SET", "a", "1"]), Frame::Simple("QUEUED".into()));
    assert_eq!(r.cmd(&["INCR", "a"]), Frame::Simple("QUEUED".into()));
    assert_eq!(r.cmd(&["HSET", "a", "f", "v"]), Frame::Simple("QUEUED".into()));
    let Frame::Array(replies) = r.cmd(&["EXEC"]) else {
        panic!("EXEC answers an array")
    };
    assert_eq!(replies[0], Frame::Simple("OK".into()));
    assert_eq!(replies[1], Frame::Int(2));
    assert!(
        matches!(&replies[2], Frame::Error(e) if e.starts_with("WRONGTYPE")),
        "a runtime error does not stop the others"
    );
    r.cmd(&["MULTI"]);
    assert!(matches!(r.cmd(&["GET"]), Frame::Error(_)));
    r.cmd(&["SET", "b", "1"]);
    assert_eq!(
        err(&r.cmd(&["EXEC"])),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(
        r.cmd(&["GET", "b"]),
        Frame::Null,
        "nothing of an aborted transaction ran"
    );
    assert_eq!(err(&r.cmd(&["EXEC"])), "ERR EXEC without MULTI");
    r.cmd(&["MULTI"]);
    r.cmd(&["SET", "c", "1"]);
    assert_eq!(r.cmd(&["DISCARD"]), Frame::Simple("OK".into()));
    assert_eq!(r.cmd(&["GET", "c"]), Frame::Null);
}

#[test]
fn a_protocol_error_closes_only_that_connection() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut good = p.raw();
    good.cmd(&["SET", "k", "v"]);
    let mut bad = p.raw();
    bad.send(b"*1\r\n$-5\r\n");
    assert_eq!(
        bad.read(),
        Some(Frame::Error("ERR Protocol error: invalid bulk length".into()))
    );
    assert_eq!(bad.read(), None, "the bad connection is closed");
    bad = p.raw();
    bad.send(b"*2\r\n:1\r\n");
    assert_eq!(
        bad.read(),
        Some(Frame::Error("ERR Protocol error: expected '$', got ':'".into()))
    );
    assert_eq!(good.cmd(&["GET", "k"]), bulk("v"), "others are unaffected");
}

#[test]
fn auth_with_requirepass() {
    let dir = tempfile::tempdir().expect("dir");
    let p = Proc::start(
        "ringkv-primary",
        dir.path(),
        &["--repl-listen", "127.0.0.1:0", "--requirepass", "s3cret"],
    );
    let mut r = p.raw();
    assert_eq!(err(&r.cmd(&["GET", "k"])), "NOAUTH Authentication required.");
    assert_eq!(
        err(&r.cmd(&["AUTH", "wrong"])),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(r.cmd(&["AUTH", "s3cret"]), Frame::Simple("OK".into()));
    assert_eq!(r.cmd(&["GET", "k"]), Frame::Null);
    let mut r2 = p.raw();
    assert!(matches!(
        r2.cmd(&["HELLO", "3", "AUTH", "default", "s3cret"]),
        Frame::Map(_)
    ));
    assert_eq!(r2.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn info_and_command_describe_the_server() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut c = p.client();
    let _: () = c.set_ex("session:1", "t", 60).expect("setex");
    let info: String = redis::cmd("INFO").query(&mut c).expect("info");
    for field in [
        "redis_version:",
        "role:master",
        "connected_clients:",
        "used_memory:",
        "db0:keys=1,expires=1",
        "# Ringkv",
        "ring_offset:",
    ] {
        assert!(info.contains(field), "INFO lacks {field}:\n{info}");
    }
    let repl: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut c)
        .expect("info replication");
    assert!(repl.starts_with("# Replication") && !repl.contains("# Server"));
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).expect("command count");
    assert!(count > 60);
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("MSET")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query(&mut c)
        .expect("getkeys");
    assert_eq!(keys, vec!["a", "b"]);
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory*")
        .query(&mut c)
        .expect("config get");
    assert!(cfg.contains(&"maxmemory-policy".to_string()));
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).expect("client id");
    assert!(id > 0);
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("worker-7")
        .query(&mut c)
        .expect("setname");
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).expect("client list");
    assert!(list.contains("name=worker-7"), "{list}");
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).expect("role");
    assert_eq!(role[0], redis::Value::BulkString(b"master".to_vec()));
}

#[test]
fn a_restart_resumes_the_dataset() {
    let dir = tempfile::tempdir().expect("dir");
    let mut p = primary(dir.path());
    {
        let mut c = p.client();
        for i in 0..500 {
            let _: () = c.set(format!("k{i}"), i).expect("set");
        }
        let _: () = c.hset("h", "f", "v").expect("hset");
    }
    assert_eq!(p.stop(), Some(0), "SIGTERM exits 0");
    let p = primary(dir.path());
    let mut c = p.client();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).expect("dbsize"), 501);
    assert_eq!(c.get::<_, i64>("k499").expect("get"), 499);
    assert_eq!(c.hget::<_, _, String>("h", "f").expect("hget"), "v");
}

#[test]
fn a_follower_replicates_waits_and_takes_over() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let repl = p.repl.expect("the primary names its replication address");
    let fdir = dir.path().join("f");
    std::fs::create_dir_all(&fdir).expect("dir");
    let tls = dir.path().join("ringkv-data").join("tls");
    let f = Proc::start(
        "ringkv-follower",
        &fdir,
        &[
            "--primary",
            &repl.to_string(),
            "--repl-listen",
            "127.0.0.1:0",
            "--tls-dir",
            tls.to_str().expect("utf-8 path"),
        ],
    );
    let mut pc = p.client();
    let mut fc = f.client();
    let _: () = pc.set("k", "v1").expect("set");
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(10_000).query(&mut pc).expect("wait");
    assert_eq!(acked, 1, "the follower acked the write");
    assert_eq!(fc.get::<_, String>("k").expect("read on the follower"), "v1");
    // Read-after-write: the offset of my last write, waited for on the follower.
    let _: () = pc.set("k", "v2").expect("set");
    let offset: i64 = redis::cmd("LASTWRITEOFFSET").query(&mut pc).expect("offset");
    assert!(offset > 0);
    let reached: i64 = redis::cmd("WAITOFFSET")
        .arg(offset)
        .arg(10_000)
        .query(&mut fc)
        .expect("waitoffset");
    assert_eq!(reached, 1);
    assert_eq!(fc.get::<_, String>("k").expect("read"), "v2");
    let e = fc.set::<_, _, ()>("k", "x").expect_err("a follower refuses writes");
    assert_eq!(e.code(), Some("READONLY"));
    let info: String = redis::cmd("INFO").arg("replication").query(&mut fc).expect("info");
    assert!(
        info.contains("role:slave") && info.contains("master_link_status:up"),
        "{info}"
    );
    // Fail over.
    drop(p);
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut fc)
        .expect("promote");
    let _: () = fc.set("k", "v3").expect("a promoted follower takes writes");
    assert_eq!(fc.get::<_, String>("k").expect("get"), "v3");
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut fc).expect("role");
    assert_eq!(role[0], redis::Value::BulkString(b"master".to_vec()));
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn the_commands_added_to_the_engine_answer_like_redis() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut r = p.raw();
    r.cmd(&["SET", "s", "hello"]);
    assert_eq!(r.cmd(&["GETRANGE", "s", "-3", "-1"]), bulk("llo"));
    assert_eq!(r.cmd(&["SETRANGE", "s", "8", "xyz"]), Frame::Int(11));
    assert_eq!(r.cmd(&["GET", "s"]), Frame::Bulk(b"hello\0\0\0xyz".to_vec()));
    assert_eq!(r.cmd(&["GETDEL", "s"]), Frame::Bulk(b"hello\0\0\0xyz".to_vec()));
    assert_eq!(r.cmd(&["EXISTS", "s"]), Frame::Int(0));
    assert_eq!(r.cmd(&["INCRBYFLOAT", "price", "10.5"]), bulk("10.5"));
    assert_eq!(r.cmd(&["INCRBYFLOAT", "price", "0.1"]), bulk("10.6"));
    r.cmd(&["SET", "t", "v"]);
    assert_eq!(r.cmd(&["GETEX", "t", "EX", "100"]), bulk("v"));
    assert_eq!(r.cmd(&["TTL", "t"]), Frame::Int(100));
    assert_eq!(r.cmd(&["EXPIRE", "t", "50", "GT"]), Frame::Int(0));
    assert_eq!(r.cmd(&["EXPIRE", "t", "500", "GT"]), Frame::Int(1));
    assert_eq!(r.cmd(&["EXPIRE", "t", "10", "NX"]), Frame::Int(0));
    assert!(matches!(r.cmd(&["EXPIRETIME", "t"]), Frame::Int(t) if t > 1_700_000_000));
    assert_eq!(r.cmd(&["MSETNX", "a", "1", "b", "2"]), Frame::Int(1));
    assert_eq!(r.cmd(&["MSETNX", "a", "1", "c", "3"]), Frame::Int(0));
    assert_eq!(r.cmd(&["COPY", "a", "a2"]), Frame::Int(1));
    assert_eq!(r.cmd(&["COPY", "a", "a2"]), Frame::Int(0));
    assert_eq!(r.cmd(&["HSETNX", "h", "f", "v"]), Frame::Int(1));
    assert_eq!(r.cmd(&["HSETNX", "h", "f", "w"]), Frame::Int(0));
    assert_eq!(r.cmd(&["HINCRBYFLOAT", "h", "g", "1.5"]), bulk("1.5"));
    assert_eq!(
        err(&r.cmd(&["HINCRBY", "h", "f", "1"])),
        "ERR hash value is not an integer"
    );
    assert!(matches!(r.cmd(&["HRANDFIELD", "h", "-5", "WITHVALUES"]), Frame::Array(a) if a.len() == 10));
    assert!(matches!(r.cmd(&["RANDOMKEY"]), Frame::Bulk(_)));
    assert_eq!(r.cmd(&["TOUCH", "a", "b", "nope"]), Frame::Int(2));
}

#[test]
fn watch_aborts_exec_when_a_watched_key_changes() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut me = p.raw();
    let mut other = p.raw();
    me.cmd(&["SET", "balance", "10"]);
    // Untouched: EXEC runs (as one atomic batch: all writes).
    assert_eq!(me.cmd(&["WATCH", "balance"]), Frame::Simple("OK".into()));
    me.cmd(&["MULTI"]);
    me.cmd(&["DECRBY", "balance", "3"]);
    me.cmd(&["INCR", "spent"]);
    assert_eq!(me.cmd(&["EXEC"]), Frame::Array(vec![Frame::Int(7), Frame::Int(1)]));
    // Changed by another client between WATCH and EXEC: a null reply.
    me.cmd(&["WATCH", "balance"]);
    other.cmd(&["SET", "balance", "100"]);
    me.cmd(&["MULTI"]);
    me.cmd(&["DECRBY", "balance", "3"]);
    assert_eq!(me.cmd(&["EXEC"]), Frame::Null, "EXEC after a watched key changed");
    assert_eq!(me.cmd(&["GET", "balance"]), bulk("100"), "nothing of it ran");
    // A write to another key, or UNWATCH, does not fire it.
    me.cmd(&["WATCH", "balance"]);
    other.cmd(&["SET", "unrelated", "x"]);
    me.cmd(&["MULTI"]);
    me.cmd(&["GET", "balance"]);
    assert_eq!(me.cmd(&["EXEC"]), Frame::Array(vec![bulk("100")]));
    me.cmd(&["WATCH", "balance"]);
    me.cmd(&["UNWATCH"]);
    other.cmd(&["DEL", "balance"]);
    me.cmd(&["MULTI"]);
    me.cmd(&["SET", "balance", "1"]);
    assert_eq!(me.cmd(&["EXEC"]), Frame::Array(vec![Frame::Simple("OK".into())]));
    // FLUSHALL changes every key.
    me.cmd(&["WATCH", "balance"]);
    other.cmd(&["FLUSHALL"]);
    me.cmd(&["MULTI"]);
    me.cmd(&["SET", "balance", "2"]);
    assert_eq!(me.cmd(&["EXEC"]), Frame::Null);
    // WATCH inside MULTI is refused.
    me.cmd(&["MULTI"]);
    assert_eq!(err(&me.cmd(&["WATCH", "x"])), "ERR WATCH inside MULTI is not allowed");
    me.cmd(&["DISCARD"]);
}

#[test]
fn exec_with_reads_and_writes_sees_one_point_in_time() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut me = p.raw();
    let mut other = p.raw();
    me.cmd(&["SET", "n", "0"]);
    // Another client increments `n` all along.
    let hammer = std::thread::spawn(move || {
        for _ in 0..3000 {
            assert!(matches!(other.cmd(&["INCR", "n"]), Frame::Int(_)));
        }
    });
    let int = |f: &Frame| match f {
        Frame::Bulk(b) => std::str::from_utf8(b).expect("utf8").parse::<i64>().expect("int"),
        Frame::Int(i) => *i,
        other => panic!("expected a number, got {other:?}"),
    };
    for _ in 0..200 {
        me.cmd(&["MULTI"]);
        for c in [
            &["GET", "n"][..],
            &["INCR", "n"],
            &["GET", "n"],
            &["STRLEN", "n"],
            &["TYPE", "n"],
        ] {
            assert_eq!(me.cmd(c), Frame::Simple("QUEUED".into()));
        }
        let Frame::Array(r) = me.cmd(&["EXEC"]) else {
            panic!("EXEC")
        };
        let before = int(&r[0]);
        // Nobody else's INCR lands between the transaction's reads and write.
        assert_eq!(int(&r[1]), before + 1, "{r:?}");
        assert_eq!(int(&r[2]), before + 1, "{r:?}");
        assert_eq!(r[3], Frame::Int((before + 1).to_string().len() as i64));
        assert_eq!(r[4], Frame::Simple("string".into()));
    }
    hammer.join().expect("hammer");
    assert_eq!(int(&me.cmd(&["GET", "n"])), 3200);
    // Hash reads, TTL and EXISTS inside EXEC, RESP2 shapes.
    me.cmd(&["HSET", "h", "f", "1"]);
    me.cmd(&["MULTI"]);
    for c in [
        &["HSET", "h", "g", "2"][..],
        &["HMGET", "h", "f", "g", "nope"],
        &["HLEN", "h"],
        &["HEXISTS", "h", "g"],
        &["HSTRLEN", "h", "g"],
        &["HKEYS", "h"],
        &["EXPIRE", "h", "100"],
        &["TTL", "h"],
        &["EXISTS", "h", "n", "missing"],
        &["MSET", "a", "1", "b", "2"],
        &["GETSET", "a", "3"],
    ] {
        me.cmd(c);
    }
    let Frame::Array(r) = me.cmd(&["EXEC"]) else {
        panic!("EXEC")
    };
    assert_eq!(r[0], Frame::Int(1));
    assert_eq!(r[1], Frame::Array(vec![bulk("1"), bulk("2"), Frame::Null]));
    assert_eq!(r[2..5], [Frame::Int(2), Frame::Int(1), Frame::Int(1)]);
    let Frame::Array(mut fields) = r[5].clone() else {
        panic!("HKEYS {:?}", r[5])
    };
    fields.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(fields, vec![bulk("f"), bulk("g")]);
    assert_eq!(r[6], Frame::Int(1));
    assert!(matches!(r[7], Frame::Int(99..=100)), "{:?}", r[7]);
    assert_eq!(r[8..], [Frame::Int(2), Frame::Simple("OK".into()), bulk("1")]);
    // A runtime error still answers each command on its own (Redis' rule).
    me.cmd(&["MULTI"]);
    me.cmd(&["INCR", "n"]);
    me.cmd(&["GET", "h"]);
    let Frame::Array(r) = me.cmd(&["EXEC"]) else {
        panic!("EXEC")
    };
    assert_eq!(r[0], Frame::Int(3201));
    assert!(err(&r[1]).starts_with("WRONGTYPE"), "{r:?}");
}

#[test]
fn config_set_changes_the_running_server() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let mut me = p.raw();
    let ok = Frame::Simple("OK".into());
    let token = "t".repeat(200);
    for i in 0..1000 {
        me.cmd(&["SET", &format!("session:{i}"), &token]);
    }
    // maxmemory, with Redis' units, then the OOM refusal.
    assert_eq!(me.cmd(&["CONFIG", "SET", "maxmemory", "1kb"]), ok);
    assert_eq!(
        me.cmd(&["CONFIG", "GET", "maxmemory"]),
        Frame::Array(vec![bulk("maxmemory"), bulk("1024")])
    );
    let Frame::Bulk(info) = me.cmd(&["INFO", "memory"]) else {
        panic!("INFO")
    };
    let used: u64 = String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    // Half of what 1000 keys use: the limit is reached, and evicting some
    // of them makes room.
    let half = (used / 2).to_string();
    assert_eq!(me.cmd(&["CONFIG", "SET", "maxmemory", &half]), ok);
    assert!(err(&me.cmd(&["SET", "one", "more"])).starts_with("OOM "));
    assert_eq!(me.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]), ok);
    assert_eq!(me.cmd(&["SET", "one", "more"]), ok, "evicts instead");
    let Frame::Int(left) = me.cmd(&["DBSIZE"]) else {
        panic!("DBSIZE")
    };
    assert!((1..1000).contains(&left), "{left} keys left");
    assert_eq!(me.cmd(&["CONFIG", "SET", "maxmemory", "0"]), ok);
    assert!(err(&me.cmd(&["CONFIG", "SET", "maxmemory-policy", "lfu"])).contains("maxmemory-policy"));
    assert!(err(&me.cmd(&["CONFIG", "SET", "maxmemory", "lots"])).contains("memory value"));
    // Immutable and unknown settings.
    assert_eq!(
        err(&me.cmd(&["CONFIG", "SET", "port", "1"])),
        "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config"
    );
    assert!(err(&me.cmd(&["CONFIG", "SET", "no-such-thing", "1"])).starts_with("ERR Unknown option"));
    // The SLOWLOG threshold: 0 logs every command.
    assert_eq!(me.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]), ok);
    me.cmd(&["GET", "one"]);
    let Frame::Int(n) = me.cmd(&["SLOWLOG", "LEN"]) else {
        panic!("SLOWLOG LEN")
    };
    assert!(n >= 1, "slowlog has {n}");
    assert_eq!(me.cmd(&["CONFIG", "SET", "slowlog-max-len", "1"]), ok);
    assert_eq!(me.cmd(&["SLOWLOG", "LEN"]), Frame::Int(1));
    // maxclients: the next connection is refused with Redis' text.
    assert_eq!(me.cmd(&["CONFIG", "SET", "maxclients", "1"]), ok);
    let mut extra = p.raw();
    assert_eq!(
        extra.read(),
        Some(Frame::Error("ERR max number of clients reached".into()))
    );
    assert_eq!(me.cmd(&["CONFIG", "SET", "maxclients", "100"]), ok);
    // timeout applies to clients already connected.
    let mut idle = p.raw();
    assert_eq!(idle.cmd(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(me.cmd(&["CONFIG", "SET", "timeout", "1"]), ok);
    let started = std::time::Instant::now();
    assert_eq!(idle.read(), None, "closed when idle");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_restarted_follower_resumes_by_offset() {
    let dir = tempfile::tempdir().expect("dir");
    let p = primary(dir.path());
    let repl = p.repl.expect("replication address").to_string();
    let fdir = dir.path().join("f");
    std::fs::create_dir_all(&fdir).expect("dir");
    let tls = dir.path().join("ringkv-data").join("tls");
    let tls = tls.to_str().expect("utf-8").to_string();
    let args = ["--primary", &repl, "--repl-listen", "127.0.0.1:0", "--tls-dir", &tls];
    let mut pc = p.client();
    let mut f = Proc::start("ringkv-follower", &fdir, &args);
    for i in 0..200 {
        let _: () = pc.set(format!("k{i}"), i).expect("set");
    }
    let _: i64 = redis::cmd("WAIT").arg(1).arg(10_000).query(&mut pc).expect("wait");
    assert_eq!(f.stop(), Some(0), "the follower exits cleanly on SIGTERM");
    // Writes while the follower is away, then it comes back.
    for i in 200..300 {
        let _: () = pc.set(format!("k{i}"), i).expect("set");
    }
    let f = Proc::start("ringkv-follower", &fdir, &args);
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(10_000).query(&mut pc).expect("wait");
    assert_eq!(acked, 1);
    let mut fc = f.client();
    assert_eq!(fc.get::<_, i64>("k299").expect("caught up"), 299);
    let info: String = redis::cmd("INFO").arg("replication").query(&mut fc).expect("info");
    assert!(info.contains("ringkv_partial_syncs:1"), "resumed by offset:\n{info}");
    assert!(
        info.contains("ringkv_full_syncs:0"),
        "no full sync after the restart:\n{info}"
    );
    assert!(info.contains("ringkv_halted:0"), "{info}");
    assert!(info.contains("ringkv_last_error:"), "{info}");
}

#[test]
fn acl_users_from_the_config_file() {
    let dir = tempfile::tempdir().expect("dir");
    let conf = dir.path().join("ringkv.toml");
    std::fs::write(
        &conf,
        "requirepass = \"rootpw\"\nusers = [\"user app on >apppw ~* +@all\", \"user old off >oldpw\"]\n",
    )
    .expect("write config");
    let p = Proc::start(
        "ringkv-primary",
        dir.path(),
        &[
            "--repl-listen",
            "127.0.0.1:0",
            "--config",
            conf.to_str().expect("utf-8"),
        ],
    );
    let mut r = p.raw();
    assert_eq!(err(&r.cmd(&["SET", "k", "v"])), "NOAUTH Authentication required.");
    assert_eq!(r.cmd(&["AUTH", "app", "apppw"]), Frame::Simple("OK".into()));
    assert_eq!(r.cmd(&["ACL", "WHOAMI"]), bulk("app"));
    assert_eq!(r.cmd(&["SET", "k", "v"]), Frame::Simple("OK".into()));
    let mut r2 = p.raw();
    assert!(
        err(&r2.cmd(&["AUTH", "old", "oldpw"])).starts_with("WRONGPASS"),
        "a disabled user cannot log in"
    );
    assert_eq!(
        r2.cmd(&["AUTH", "rootpw"]),
        Frame::Simple("OK".into()),
        "AUTH password is the default user"
    );
    assert_eq!(r2.cmd(&["ACL", "WHOAMI"]), bulk("default"));
    let Frame::Array(users) = r2.cmd(&["ACL", "USERS"]) else {
        panic!("ACL USERS answers an array")
    };
    assert_eq!(users, vec![bulk("app"), bulk("default"), bulk("old")]);
    // A rule that would restrict a user is refused at start, not ignored.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "users = [\"user ro on >p ~cache:* +get\"]\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv-primary"))
        .current_dir(dir.path())
        .args([
            "--port",
            "0",
            "--repl-listen",
            "127.0.0.1:0",
            "--config",
            bad.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not supported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_client_over_its_output_limit_is_disconnected_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let conf = dir.path().join("ringkv.toml");
    std::fs::write(&conf, "client_output_limit = 100000\n").expect("write config");
    let p = Proc::start(
        "ringkv-primary",
        dir.path(),
        &[
            "--repl-listen",
            "127.0.0.1:0",
            "--config",
            conf.to_str().expect("utf-8"),
        ],
    );
    let mut other = p.raw();
    other.cmd(&["SET", "big", &"x".repeat(10_000)]);
    let mut greedy = p.raw();
    let mut batch = Vec::new();
    for _ in 0..50 {
        batch.extend(request(&[b"GET", b"big"]));
    }
    greedy.send(&batch);
    assert_eq!(
        greedy.read(),
        None,
        "500 KB of replies to one batch passes the 100 KB limit: closed"
    );
    assert!(
        matches!(other.cmd(&["GET", "big"]), Frame::Bulk(b) if b.len() == 10_000),
        "others are unaffected"
    );
    let info = other.cmd(&["INFO", "stats"]);
    let info = String::from_utf8_lossy(info.as_bytes().expect("INFO answers text")).into_owned();
    assert!(info.contains("client_output_buffer_limit_disconnections:1"), "{info}");
}
