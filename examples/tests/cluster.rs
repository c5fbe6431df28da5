//! Cluster mode: three ringkv-primary processes on loopback sharing a
//! static slot map (and a follower of one shard), driven by unchanged
//! cluster clients — `redis-cli -c`, redis-py's `RedisCluster`, phpredis'
//! `RedisCluster` — and compared with a cluster-enabled redis-server for
//! CLUSTER KEYSLOT and the exact error replies. Every client test checks
//! that values round-trip and that each key lives on the shard that owns
//! its slot (CLUSTER COUNTKEYSINSLOT on every node).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{find, python_with_redis_py, run_script, tools_missing, Proc, RedisServer};
use ringkv_examples::resp::Frame;

const RANGES: [[u16; 2]; 3] = [[0, 5460], [5461, 10922], [10923, 16383]];

fn node_id(i: usize) -> String {
    format!("{:040x}", 0xc1u64 * 1000 + i as u64)
}

/// Ports that are free now (all held until every one is picked).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

/// Three primaries, shard i owning `RANGES[i]`; with `replica_port`, shard
/// 0 also lists a replica (started by the caller).
struct Cluster {
    nodes: Vec<Proc>,
    map: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn write_map(path: &Path, ports: &[u16], replica_port: Option<u16>) {
    // A fourth port: a shard that owns no slots yet.
    if let Some(&p) = ports.get(3) {
        let text = format!(
            "[[shards]]\nname = \"shard-3\"\nslots = []\nprimary = {{ id = \"{}\", host = \"127.0.0.1\", port = {p} }}\n",
            node_id(3)
        );
        write_map(path, &ports[..3], replica_port);
        let mut all = std::fs::read_to_string(path).expect("map");
        all.push_str(&text);
        std::fs::write(path, all).expect("write the slot map");
        return;
    }
    let mut text = String::from("epoch = 1\n");
    for (i, range) in RANGES.iter().enumerate() {
        text.push_str(&format!(
            "[[shards]]\nname = \"shard-{i}\"\nslots = [[{}, {}]]\nprimary = {{ id = \"{}\", host = \"127.0.0.1\", port = {} }}\n",
            range[0],
            range[1],
            node_id(i),
            ports[i]
        ));
        if let (0, Some(p)) = (i, replica_port) {
            text.push_str(&format!(
                "replicas = [{{ id = \"{}\", host = \"127.0.0.1\", port = {p} }}]\n",
                node_id(9)
            ));
        }
    }
    std::fs::write(path, text).expect("write the slot map");
}

fn start_cluster(replica_port: Option<u16>) -> Cluster {
    start_nodes(3, replica_port)
}

/// `n` primaries (3, or 4 with an empty shard-3).
fn start_nodes(n: usize, replica_port: Option<u16>) -> Cluster {
    let dir = tempfile::tempdir().expect("dir");
    let ports = free_ports(n);
    let map = dir.path().join("cluster-map.toml");
    write_map(&map, &ports, replica_port);
    let source = map.to_str().expect("utf-8 path").to_string();
    let nodes = (0..n)
        .map(|i| start_cluster_primary(dir.path(), i, ports[i], ["--cluster-map", &source]))
        .collect();
    Cluster { nodes, map, _dir: dir }
}

/// Cluster node `i` (id `node_id(i)`) as a `ringkv-primary` on `port`, in
/// `root/node-<i>`, reading its slot map from `source` (`--cluster-map
/// FILE` or `--cluster-etcd URL`).
fn start_cluster_primary(root: &Path, i: usize, port: u16, source: [&str; 2]) -> Proc {
    let cwd = root.join(format!("node-{i}"));
    std::fs::create_dir_all(&cwd).expect("node dir");
    let id = node_id(i);
    let args = [
        "--repl-listen",
        "127.0.0.1:0",
        "--cluster-enabled",
        "--cluster-node-id",
        &id,
        source[0],
        source[1],
    ];
    Proc::start_on("ringkv-primary", &cwd, port, &args)
}

fn slot_owner(slot: u16) -> usize {
    RANGES
        .iter()
        .position(|r| (r[0]..=r[1]).contains(&slot))
        .expect("every slot is owned")
}

fn int(f: Frame) -> i64 {
    match f {
        Frame::Int(n) => n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

impl Cluster {
    /// Each key reads back `value(key)` from its owner, and its slot's keys
    /// are counted on its owner only.
    fn check_placement(&self, keys: &[String], value: impl Fn(&str) -> String) {
        let mut raws: Vec<_> = self.nodes.iter().map(|n| n.raw()).collect();
        let mut per_node = [0i64; 3];
        let mut slots = std::collections::BTreeMap::<u16, i64>::new();
        for k in keys {
            let slot = ringkv::key_slot(k.as_bytes());
            *slots.entry(slot).or_default() += 1;
            let owner = slot_owner(slot);
            per_node[owner] += 1;
            assert_eq!(
                raws[owner].cmd(&["GET", k]),
                Frame::Bulk(value(k).into_bytes()),
                "{k} on its owner"
            );
        }
        for (slot, n) in slots {
            for (i, raw) in raws.iter_mut().enumerate() {
                let counted = int(raw.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]));
                let want = if i == slot_owner(slot) { n } else { 0 };
                assert_eq!(counted, want, "slot {slot} on node {i}");
            }
        }
        for (i, raw) in raws.iter_mut().enumerate() {
            assert_eq!(int(raw.cmd(&["DBSIZE"])), per_node[i], "keys on node {i}");
        }
    }
}

#[test]
fn redirections_and_cluster_replies() {
    let c = start_cluster(None);
    let mut n0 = c.nodes[0].raw();
    // "foo" is slot 12182 (shard 2), "bar" 5061 (shard 0).
    assert_eq!(n0.cmd(&["SET", "bar", "1"]), Frame::Simple("OK".into()));
    assert_eq!(
        n0.cmd(&["SET", "foo", "1"]),
        Frame::Error(format!("MOVED 12182 127.0.0.1:{}", c.nodes[2].resp.port()))
    );
    assert_eq!(
        n0.cmd(&["GET", "foo"]),
        Frame::Error(format!("MOVED 12182 127.0.0.1:{}", c.nodes[2].resp.port()))
    );
    let cross = Frame::Error("CROSSSLOT Keys in request don't hash to the same slot".into());
    assert_eq!(n0.cmd(&["MGET", "foo", "bar"]), cross);
    assert_eq!(
        n0.cmd(&["MSET", "{bar}a", "1", "{bar}b", "2"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(n0.cmd(&["DEL", "bar", "hello"]), cross);
    assert_eq!(n0.cmd(&["RENAME", "bar", "foo"]), cross);
    // A transaction over two slots: queued one by one, refused at EXEC.
    assert_eq!(n0.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(n0.cmd(&["SET", "bar", "2"]), Frame::Simple("QUEUED".into()));
    assert_eq!(n0.cmd(&["SET", "{bar}a", "3"]), Frame::Simple("QUEUED".into()));
    assert_eq!(n0.cmd(&["SET", "{bar}x", "3"]), Frame::Simple("QUEUED".into()));
    assert_eq!(n0.cmd(&["EXEC"]), Frame::Array(vec![Frame::Simple("OK".into()); 3]));
    assert_eq!(n0.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(n0.cmd(&["SET", "bar", "2"]), Frame::Simple("QUEUED".into()));
    assert_eq!(n0.cmd(&["SET", "hello", "2"]), Frame::Simple("QUEUED".into()));
    assert_eq!(n0.cmd(&["EXEC"]), cross);
    assert_eq!(
        n0.cmd(&["GET", "bar"]),
        Frame::Bulk(b"2".to_vec()),
        "the refused EXEC wrote nothing"
    );
    // A command for another shard inside MULTI aborts the transaction.
    assert_eq!(n0.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert!(matches!(n0.cmd(&["SET", "foo", "x"]), Frame::Error(e) if e.starts_with("MOVED 12182 ")));
    assert_eq!(
        n0.cmd(&["EXEC"]),
        Frame::Error("EXECABORT Transaction discarded because of previous errors.".into())
    );

    assert_eq!(n0.cmd(&["CLUSTER", "KEYSLOT", "foo"]), Frame::Int(12182));
    assert_eq!(n0.cmd(&["CLUSTER", "MYID"]), Frame::Bulk(node_id(0).into_bytes()));
    assert_eq!(n0.cmd(&["CLUSTER", "COUNTKEYSINSLOT", "5061"]), Frame::Int(4));
    let slot = ringkv::key_slot(b"bar").to_string();
    let listed = |keys: &[&str]| Frame::Array(keys.iter().map(|k| Frame::Bulk(k.as_bytes().to_vec())).collect());
    assert_eq!(
        n0.cmd(&["CLUSTER", "GETKEYSINSLOT", &slot, "10"]),
        listed(&["bar", "{bar}a", "{bar}b", "{bar}x"])
    );
    assert_eq!(
        n0.cmd(&["CLUSTER", "GETKEYSINSLOT", &slot, "2"]),
        listed(&["bar", "{bar}a"])
    );
    let Frame::Bulk(info) = n0.cmd(&["CLUSTER", "INFO"]) else {
        panic!("CLUSTER INFO is a bulk string")
    };
    let info = String::from_utf8(info).expect("utf-8");
    for line in [
        "cluster_state:ok",
        "cluster_slots_assigned:16384",
        "cluster_known_nodes:3",
        "cluster_size:3",
    ] {
        assert!(info.contains(line), "{line} in {info}");
    }
    let Frame::Array(slots) = n0.cmd(&["CLUSTER", "SLOTS"]) else {
        panic!("CLUSTER SLOTS is an array")
    };
    assert_eq!(slots.len(), 3);
    for (i, s) in slots.iter().enumerate() {
        let want = Frame::Array(vec![
            Frame::Int(i64::from(RANGES[i][0])),
            Frame::Int(i64::from(RANGES[i][1])),
            Frame::Array(vec![
                Frame::Bulk(b"127.0.0.1".to_vec()),
                Frame::Int(i64::from(c.nodes[i].resp.port())),
                Frame::Bulk(node_id(i).into_bytes()),
                Frame::Array(vec![]),
            ]),
        ]);
        assert_eq!(s, &want);
    }
    let Frame::Bulk(nodes) = n0.cmd(&["CLUSTER", "NODES"]) else {
        panic!("CLUSTER NODES is a bulk string")
    };
    let nodes = String::from_utf8(nodes).expect("utf-8");
    let first = nodes.lines().next().expect("a line");
    assert_eq!(
        first,
        format!(
            "{} 127.0.0.1:{p}@{} myself,master - 0 0 1 connected 0-5460",
            node_id(0),
            u32::from(c.nodes[0].resp.port()) + 10_000,
            p = c.nodes[0].resp.port()
        )
    );
    assert_eq!(nodes.lines().count(), 3);
    let Frame::Array(shards) = n0.cmd(&["CLUSTER", "SHARDS"]) else {
        panic!("CLUSTER SHARDS is an array")
    };
    assert_eq!(shards.len(), 3);
    let _ = &c.map;
}

#[test]
fn keyslot_and_errors_match_a_cluster_enabled_redis_server() {
    let rdir = tempfile::tempdir().expect("dir");
    let Some(redis) = RedisServer::start_with(
        rdir.path(),
        &["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
    ) else {
        assert!(std::env::var_os("CI").is_none(), "redis-server is missing under CI");
        eprintln!("redis-server is not installed: skipped (the test command installs it)");
        return;
    };
    let c = start_cluster(None);
    let mut ours = c.nodes[0].raw();
    let mut theirs = common::Raw::connect(redis.addr);
    assert_eq!(
        theirs.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]),
        Frame::Simple("OK".into())
    );
    // A one-node Redis cluster says "ok" once it has settled (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let Frame::Bulk(info) = theirs.cmd(&["CLUSTER", "INFO"]) else {
            panic!("CLUSTER INFO")
        };
        if String::from_utf8_lossy(&info).contains("cluster_state:ok") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server's cluster did not settle"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Keys with every kind of brace placement, and plain ones.
    let mut keys: Vec<String> = vec![
        "".into(),
        "{".into(),
        "}".into(),
        "{}".into(),
        "{}{a}".into(),
        "a{b}c{d}".into(),
        "{{a}}".into(),
        "}{a}".into(),
        "foo{{bar}}zap".into(),
        "123456789".into(),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 12) as usize;
        let s: String = (0..len)
            .map(|j| {
                let c = (x >> (j * 5)) & 0x1f;
                match c {
                    0..=3 => '{',
                    4..=7 => '}',
                    _ => (b'a' + (c as u8 % 26)) as char,
                }
            })
            .collect();
        keys.push(format!("{s}{i}"));
    }
    for k in &keys {
        assert_eq!(
            ours.cmd(&["CLUSTER", "KEYSLOT", k]),
            theirs.cmd(&["CLUSTER", "KEYSLOT", k]),
            "CLUSTER KEYSLOT {k:?}"
        );
    }
    for cmd in [
        &["CLUSTER", "COUNTKEYSINSLOT", "16384"][..],
        &["CLUSTER", "COUNTKEYSINSLOT", "-1"],
        &["CLUSTER", "COUNTKEYSINSLOT", "x"],
        &["CLUSTER", "GETKEYSINSLOT", "1", "-1"],
        &["CLUSTER", "GETKEYSINSLOT", "16384", "1"],
        &["CLUSTER", "GETKEYSINSLOT", "1", "x"],
        &["CLUSTER", "GETKEYSINSLOT", "0", "5"],
        &["CLUSTER", "KEYSLOT"],
        &["CLUSTER", "NOSUCH"],
        &["MGET", "a", "b"],
        &["MSET", "a", "1", "b", "2"],
        &["EXISTS", "{x}a", "{y}a"],
        &["READONLY"],
        &["READWRITE"],
        &["ASKING"],
    ] {
        assert_eq!(ours.cmd(cmd), theirs.cmd(cmd), "{cmd:?}");
    }
    // MULTI/EXEC across two slots that node 0 owns, as Redis answers it.
    for cmd in [&["MULTI"][..], &["SET", "bar", "1"], &["SET", "hello", "1"], &["EXEC"]] {
        assert_eq!(ours.cmd(cmd), theirs.cmd(cmd), "{cmd:?}");
    }
}

#[test]
fn redis_cli_c_follows_redirections() {
    if tools_missing("redis-cli") {
        return;
    }
    let c = start_cluster(None);
    let bin = find("redis-cli").expect("redis-cli");
    let cli = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(["-c", "-h", "127.0.0.1", "-p", &c.nodes[0].resp.port().to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    };
    let keys: Vec<String> = (0..60).map(|i| format!("cli:{i}")).collect();
    for k in &keys {
        assert_eq!(cli(&["SET", k, &format!("v-{k}")]), "OK");
    }
    for k in &keys {
        assert_eq!(cli(&["GET", k]), format!("v-{k}"));
    }
    c.check_placement(&keys, |k| format!("v-{k}"));
}

#[test]
fn redis_py_redis_cluster_works_unchanged() {
    let Some(python) = python_with_redis_py() else { return };
    let c = start_cluster(None);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/redis_cluster.py");
    run_script(&python, script, c.nodes[1].resp.port());
    let keys: Vec<String> = (0..300).map(|i| format!("py:{i}")).collect();
    let mut all = keys.clone();
    all.extend((0..20).map(|i| format!("{{user{i}}}:name")));
    all.extend((0..20).map(|i| format!("{{user{i}}}:mail")));
    c.check_placement(&all, |k| format!("value of {k}"));
}

#[test]
fn phpredis_redis_cluster_works_unchanged() {
    if tools_missing("php") {
        return;
    }
    let has_cluster = Command::new("php")
        .args(["-r", "exit(class_exists('RedisCluster') ? 0 : 1);"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_cluster {
        assert!(std::env::var_os("CI").is_none(), "php-redis is missing under CI");
        eprintln!("php-redis is not installed: skipped");
        return;
    }
    let c = start_cluster(None);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/php/redis_cluster.php");
    run_script("php", script, c.nodes[2].resp.port());
    let keys: Vec<String> = (0..300).map(|i| format!("php:{i}")).collect();
    c.check_placement(&keys, |k| format!("value of {k}"));
}

#[test]
fn a_cluster_follower_serves_reads_after_readonly_and_moves_writes() {
    let ports = free_ports(1);
    let mut c = start_cluster(Some(ports[0]));
    let primary = &c.nodes[0];
    let repl = primary.repl.expect("the primary's replication address");
    let fdir = c.map.parent().expect("dir").join("follower");
    std::fs::create_dir_all(&fdir).expect("dir");
    let tls = primary.dir.join("ringkv-data").join("tls");
    let follower = Proc::start_on(
        "ringkv-follower",
        &fdir,
        ports[0],
        &[
            "--primary",
            &repl.to_string(),
            "--repl-listen",
            "127.0.0.1:0",
            "--tls-dir",
            tls.to_str().expect("utf-8"),
            "--cluster-enabled",
            "--cluster-node-id",
            &node_id(9),
            "--cluster-map",
            c.map.to_str().expect("utf-8"),
        ],
    );
    let mut p = primary.raw();
    assert_eq!(p.cmd(&["SET", "bar", "from-primary"]), Frame::Simple("OK".into()));
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Frame::Int(1));
    let mut f = follower.raw();
    let moved = Frame::Error(format!("MOVED 5061 127.0.0.1:{}", primary.resp.port()));
    assert_eq!(
        f.cmd(&["GET", "bar"]),
        moved,
        "reads go to the primary without READONLY"
    );
    assert_eq!(f.cmd(&["READONLY"]), Frame::Simple("OK".into()));
    assert_eq!(f.cmd(&["GET", "bar"]), Frame::Bulk(b"from-primary".to_vec()));
    assert_eq!(f.cmd(&["SET", "bar", "x"]), moved, "writes go to the primary");
    assert_eq!(
        f.cmd(&["GET", "foo"]),
        Frame::Error(format!("MOVED 12182 127.0.0.1:{}", c.nodes[2].resp.port())),
        "other shards' slots go to their owner"
    );
    assert_eq!(f.cmd(&["READWRITE"]), Frame::Simple("OK".into()));
    assert_eq!(f.cmd(&["GET", "bar"]), moved);
    drop(follower);
    c.nodes.clear();
}

fn cluster_tool(map: &Path, args: &[&str]) -> (bool, String) {
    cluster_tool_on(&["--map", map.to_str().expect("utf-8 path")], args)
}

/// `ringkv-cluster` with the map's `source` (`--map FILE` or `--etcd URL`):
/// whether it succeeded, and what it printed.
fn cluster_tool_on(source: &[&str], args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringkv-cluster"))
        .args(source)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ringkv-cluster");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn ringkv_cluster_moves_slots_with_their_keys() {
    let c = start_nodes(4, None);
    let (ok, shown) = cluster_tool(&c.map, &["show"]);
    assert!(ok, "{shown}");
    assert!(shown.contains("16384 of 16384 slots assigned"), "{shown}");
    assert!(shown.contains("shard-3: slots -"), "{shown}");
    let mut n0 = c.nodes[0].raw();
    // "hello" is slot 866 (shard 0), a hash and a TTL'd key beside it.
    assert_eq!(n0.cmd(&["SET", "hello", "1"]), Frame::Simple("OK".into()));
    assert_eq!(n0.cmd(&["HSET", "{hello}h", "f", "v", "g", "w"]), Frame::Int(2));
    assert_eq!(
        n0.cmd(&["SET", "{hello}t", "x", "EX", "1000"]),
        Frame::Simple("OK".into())
    );
    let (ok, shown) = cluster_tool(&c.map, &["move-slots", "--slots", "800-900", "--to", "shard-3"]);
    assert!(ok, "{shown}");
    assert!(shown.contains("handed over 800-900 to shard-3"), "{shown}");
    assert!(shown.contains("shard-3: slots 800-900"), "{shown}");
    let moved = |slot: u16| Frame::Error(format!("MOVED {slot} 127.0.0.1:{}", c.nodes[3].resp.port()));
    assert_eq!(n0.cmd(&["SET", "hello", "2"]), moved(866), "the source redirects");
    let mut n3 = c.nodes[3].raw();
    assert_eq!(n3.cmd(&["GET", "hello"]), Frame::Bulk(b"1".to_vec()));
    assert_eq!(n3.cmd(&["HGET", "{hello}h", "g"]), Frame::Bulk(b"w".to_vec()));
    let ttl = int(n3.cmd(&["TTL", "{hello}t"]));
    assert!((990..=1000).contains(&ttl), "the expiry moved too: {ttl}");
    assert_eq!(int(n3.cmd(&["CLUSTER", "COUNTKEYSINSLOT", "866"])), 3);
    // The source drops its copies in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while int(n0.cmd(&["CLUSTER", "COUNTKEYSINSLOT", "866"])) > 0 {
        assert!(Instant::now() < deadline, "the source kept the moved keys");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Empty slots move, and every node answers by the new map at once.
    let (ok, shown) = cluster_tool(&c.map, &["move-slots", "--slots", "0-99", "--to", "shard-3"]);
    assert!(ok, "{shown}");
    assert!(shown.contains("shard-0: slots 100-799,901-5460"), "{shown}");
    assert!(shown.contains("shard-3: slots 0-99,800-900"), "{shown}");
    let key = (0..100_000)
        .map(|i| format!("k{i}"))
        .find(|k| ringkv::key_slot(k.as_bytes()) < 100)
        .expect("a key of slots 0-99");
    let slot = ringkv::key_slot(key.as_bytes());
    assert_eq!(n0.cmd(&["SET", &key, "v"]), moved(slot));
    assert_eq!(c.nodes[1].raw().cmd(&["GET", &key]), moved(slot));
    assert_eq!(n3.cmd(&["SET", &key, "v"]), Frame::Simple("OK".into()));
    let Frame::Bulk(info) = n0.cmd(&["CLUSTER", "INFO"]) else {
        panic!("CLUSTER INFO")
    };
    assert!(String::from_utf8_lossy(&info).contains("cluster_current_epoch:3"));
    // A new map from scratch, and a shard added to it.
    let fresh = c.map.with_file_name("new-map.json");
    let (ok, shown) = cluster_tool(
        &fresh,
        &["create", "--primary", "a@127.0.0.1:1", "--primary", "b@127.0.0.1:2"],
    );
    assert!(ok, "{shown}");
    assert!(shown.contains("shard-0: slots 0-8191 primary a 127.0.0.1:1"), "{shown}");
    let (ok, _) = cluster_tool(&fresh, &["create", "--primary", "a@127.0.0.1:1"]);
    assert!(!ok, "create does not replace a map without --force");
    let (ok, shown) = cluster_tool(&fresh, &["add-shard", "--name", "s3", "--primary", "c@127.0.0.1:3"]);
    assert!(ok, "{shown}");
    assert!(shown.contains("s3: slots - primary c 127.0.0.1:3"), "{shown}");
    assert!(
        shown.contains("not reloaded"),
        "nodes that do not run are named: {shown}"
    );
}

#[test]
fn the_slot_map_in_etcd_drives_the_nodes_and_the_tool() {
    use ringkv_examples::cluster::{EtcdSource, SlotMapSource};
    use ringkv_examples::coord::LocalEtcd;
    if !common::etcd_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let etcd = LocalEtcd::start(&dir.path().join("etcd")).expect("etcd starts");
    let url = etcd.url().to_string();
    let ports = free_ports(3);
    let primaries: Vec<String> = (0..3)
        .map(|i| format!("{}@127.0.0.1:{}", node_id(i), ports[i]))
        .collect();
    let mut create = vec!["create"];
    for p in &primaries {
        create.extend(["--primary", p.as_str()]);
    }
    let tool = |args: &[&str]| cluster_tool_on(&["--etcd", &url], args);
    let (ok, shown) = tool(&create);
    assert!(ok, "{shown}");
    assert!(shown.contains("shard-2: slots 10922-16383"), "{shown}");
    let nodes: Vec<Proc> = (0..3)
        .map(|i| start_cluster_primary(dir.path(), i, ports[i], ["--cluster-etcd", &url]))
        .collect();
    let mut n0 = nodes[0].raw();
    // "foo" is slot 12182: shard 2 in the even split.
    let moved = |slot: u16, node: usize| Frame::Error(format!("MOVED {slot} 127.0.0.1:{}", ports[node]));
    assert_eq!(n0.cmd(&["SET", "foo", "1"]), moved(12182, 2));
    assert_eq!(nodes[2].raw().cmd(&["SET", "foo", "1"]), Frame::Simple("OK".into()));
    // Slots move with their keys through etcd; the nodes answer by the new map.
    let (ok, shown) = tool(&["move-slots", "--slots", "12000-12199", "--to", "shard-1"]);
    assert!(ok, "{shown}");
    assert_eq!(n0.cmd(&["SET", "foo", "2"]), moved(12182, 1));
    assert_eq!(nodes[2].raw().cmd(&["SET", "foo", "2"]), moved(12182, 1));
    assert_eq!(nodes[1].raw().cmd(&["GET", "foo"]), Frame::Bulk(b"1".to_vec()));
    // A change from a stale revision is refused (compare-and-swap).
    let source = EtcdSource::new(&url).expect("source");
    let (map, rev) = source.load_versioned().expect("read").expect("a map");
    assert_eq!(map, source.load().expect("load"));
    assert!(
        source.store(&map, Some(rev)).expect("store"),
        "from the current revision"
    );
    assert!(!source.store(&map, Some(rev)).expect("store"), "from a stale revision");
}

#[test]
fn asking_holds_across_multi_on_an_importing_node_and_a_half_moved_slot_says_tryagain() {
    // Slot 5061 ("bar") is moving from shard-0 to shard-1.
    let migration = "[[migrations]]\nslots = [5061, 5061]\nfrom = \"shard-0\"\nto = \"shard-1\"\n";
    let c = start_nodes(3, None);
    let (mut source, mut target) = (c.nodes[0].raw(), c.nodes[1].raw());
    let ok = Frame::Simple("OK".into());
    let queued = Frame::Simple("QUEUED".into());
    // A key written before the migration starts (a new key in a migrating
    // slot is ASKed away, as in Redis).
    assert_eq!(source.cmd(&["SET", "{bar}here", "1"]), ok);
    let mut text = std::fs::read_to_string(&c.map).expect("map");
    text.push_str(migration);
    std::fs::write(&c.map, text).expect("write the slot map");
    assert_eq!(source.cmd(&["CLUSTER", "RELOAD"]), ok);
    assert_eq!(target.cmd(&["CLUSTER", "RELOAD"]), ok);
    let ask = Frame::Error(format!("ASK 5061 127.0.0.1:{}", c.nodes[1].resp.port()));
    // The source: a key it no longer holds is ASK; some held, some not, TRYAGAIN.
    assert_eq!(source.cmd(&["GET", "bar"]), ask);
    assert_eq!(
        source.cmd(&["MGET", "{bar}here", "bar"]),
        Frame::Error("TRYAGAIN Multiple keys request during rehashing of slot".into())
    );
    // The target: without ASKING a MOVED back to the owner ...
    assert!(matches!(target.cmd(&["SET", "bar", "x"]), Frame::Error(e) if e.starts_with("MOVED 5061 ")));
    // ... with ASKING before MULTI, the whole transaction is served (as Redis).
    assert_eq!(target.cmd(&["ASKING"]), ok);
    assert_eq!(target.cmd(&["MULTI"]), ok);
    assert_eq!(target.cmd(&["SET", "bar", "moved"]), queued);
    assert_eq!(target.cmd(&["GET", "bar"]), queued);
    assert_eq!(
        target.cmd(&["EXEC"]),
        Frame::Array(vec![ok.clone(), Frame::Bulk(b"moved".to_vec())])
    );
    // EXEC ended the one-shot flag.
    assert!(matches!(target.cmd(&["GET", "bar"]), Frame::Error(e) if e.starts_with("MOVED 5061 ")));
}

/// Cluster mode under failover: one shard of a primary and a follower, the
/// slot map and the leader key in etcd. After the primary is SIGKILLed,
/// the promoted follower serves the shard's writes as its primary, and the
/// old primary, restarted (it rejoins as a follower), redirects to it with
/// MOVED and names it the primary in CLUSTER SLOTS: the map's static
/// primary gives way to the shard's leader in etcd.
#[test]
fn moved_follows_the_shards_leader_after_a_failover() {
    use ringkv_examples::coord::{leader, LocalEtcd};
    if !common::etcd_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    let etcd_server = LocalEtcd::start(&root.join("etcd")).expect("etcd starts");
    let url = etcd_server.url().to_string();
    let etcd = etcd_server.client().expect("client");
    let ports = free_ports(2);
    let repl: Vec<String> = (0..2)
        .map(|_| {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .expect("a free UDP port")
                .to_string()
        })
        .collect();
    let ids = ["n1", "n2"];
    let out = Command::new(env!("CARGO_BIN_EXE_ringkv-cluster"))
        .args(["--etcd", &url, "create", "--primary"])
        .arg(format!("n1@127.0.0.1:{}", ports[0]))
        .arg("--replica")
        .arg(format!("shard-0=n2@127.0.0.1:{}", ports[1]))
        .stdin(Stdio::null())
        .output()
        .expect("run ringkv-cluster");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tls = root.join("tls").display().to_string();
    let start = |i: usize, primary: Option<&str>| {
        let data = root.join(ids[i]).display().to_string();
        let mut args = vec![
            "--etcd",
            &url,
            "--shard",
            "shard-0",
            "--node-id",
            ids[i],
            "--dir",
            &data,
            "--tls-dir",
            &tls,
            "--repl-listen",
            &repl[i],
            "--no-save-on-exit",
            "--cluster-enabled",
            "--cluster-node-id",
            ids[i],
            "--cluster-etcd",
            &url,
        ];
        let bin = match primary {
            Some(p) => {
                args.extend(["--primary", p]);
                "ringkv-follower"
            }
            None => "ringkv-primary",
        };
        Proc::start_on(bin, root, ports[i], &args)
    };
    let wait_leader = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(l)) = leader(&etcd, "shard-0") {
                if l.record.id == want {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{want} did not become the leader");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Bounded retries of `args` on `node` until the reply is `want`.
    let until = |node: &Proc, args: &[&str], want: &Frame| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = node.raw().cmd(args);
            if &got == want {
                return;
            }
            assert!(Instant::now() < deadline, "{args:?}: {got:?}, not {want:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let ok = Frame::Simple("OK".into());
    let mut n1 = start(0, None);
    wait_leader("n1");
    let n2 = start(1, Some(&repl[0]));
    until(&n1, &["SET", "foo", "before"], &ok);
    // "foo" is slot 12182; the follower moves writes to the map's primary.
    let to = |i: usize| Frame::Error(format!("MOVED 12182 127.0.0.1:{}", ports[i]));
    until(&n2, &["SET", "foo", "x"], &to(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut replica = n2.raw();
    assert_eq!(replica.cmd(&["READONLY"]), ok);
    while replica.cmd(&["GET", "foo"]) != Frame::Bulk("before".into()) {
        assert!(Instant::now() < deadline, "the follower did not get foo");
        std::thread::sleep(Duration::from_millis(50));
    }

    signal_kill(&mut n1);
    wait_leader("n2");
    until(&n2, &["SET", "foo", "after"], &ok);
    let n1 = start(0, None);
    until(&n1, &["SET", "foo", "x"], &to(1));
    assert_eq!(
        n1.raw().cmd(&["GET", "foo"]),
        to(1),
        "a read without READONLY moves too"
    );
    assert_eq!(n2.raw().cmd(&["GET", "foo"]), Frame::Bulk("after".into()));
    // Both nodes name n2 the shard's primary.
    for node in [&n1, &n2] {
        let slots = node.raw().cmd(&["CLUSTER", "SLOTS"]);
        let Frame::Array(ranges) = slots else {
            panic!("CLUSTER SLOTS: {slots:?}")
        };
        let Some(Frame::Array(range)) = ranges.first() else {
            panic!("CLUSTER SLOTS: {ranges:?}")
        };
        let Some(Frame::Array(primary)) = range.get(2) else {
            panic!("CLUSTER SLOTS range: {range:?}")
        };
        assert_eq!(primary.get(1), Some(&Frame::Int(i64::from(ports[1]))), "{primary:?}");
        let nodes = node.raw().cmd(&["CLUSTER", "NODES"]);
        let text = String::from_utf8_lossy(nodes.as_bytes().expect("CLUSTER NODES text")).into_owned();
        let master = text.lines().find(|l| l.contains("master")).expect("a master line");
        assert!(master.starts_with("n2 "), "{text}");
    }
}

fn signal_kill(p: &mut Proc) {
    let _ = Command::new("kill").args(["-KILL", &p.child.id().to_string()]).status();
    let _ = p.child.wait();
}

/// One writer's connection, following MOVED (and retrying TRYAGAIN) as a
/// cluster client does.
struct Follows {
    raw: common::Raw,
    slowest: Duration,
}

impl Follows {
    /// Runs `args` until a node takes it; the reply.
    fn cmd(&mut self, args: &[&str]) -> Frame {
        let started = Instant::now();
        loop {
            match self.raw.cmd(args) {
                Frame::Error(e) if e.starts_with("MOVED ") => {
                    let addr = e.rsplit(' ').next().expect("an address").parse().expect("host:port");
                    self.raw = common::Raw::connect(addr);
                }
                Frame::Error(e) if e.starts_with("TRYAGAIN") => std::thread::sleep(Duration::from_millis(5)),
                other => {
                    self.slowest = self.slowest.max(started.elapsed());
                    return other;
                }
            }
        }
    }
}

/// A slot range moves from shard 0 to the empty shard 3 while four clients
/// write to it (SET of their own keys, INCR of shared counters, HSET into
/// a hash of 100,000 fields), following MOVED. Every acknowledged write is
/// on the new owner afterwards (its last SET value, the exact counter
/// totals, every field), nothing of the slots is left on the source, and
/// the writers' slowest call (the hand-over's pause, with the redirection)
/// is printed, not asserted. `RINGKV_MIGRATION_ROUNDS` (default 1) moves
/// the slots back and forth that many times (scripts/long-tests.sh: 20).
#[test]
fn slots_move_with_their_keys_under_load_and_no_acknowledged_write_is_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let c = start_nodes(4, None);
    let range = [0u16, 199];
    let in_range = |k: &str| (range[0]..=range[1]).contains(&ringkv::key_slot(k.as_bytes()));
    let keys: Vec<String> = (0..200_000)
        .map(|i| format!("k{i}"))
        .filter(|k| in_range(k))
        .take(400)
        .collect();
    let counters: Vec<String> = (0..10_000)
        .map(|i| format!("c{i}"))
        .filter(|k| in_range(k))
        .take(4)
        .collect();
    let hash = (0..10_000)
        .map(|i| format!("h{i}"))
        .find(|k| in_range(k))
        .expect("a hash key in the range");
    // The big hash first, in batches (it moves without blocking anyone).
    let mut n0 = c.nodes[0].raw();
    for batch in 0..100 {
        let mut args = vec!["HSET".to_string(), hash.clone()];
        for f in batch * 1000..(batch + 1) * 1000 {
            args.push(format!("f{f}"));
            args.push(format!("v{f}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(n0.cmd(&args), Frame::Int(1000));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let source = c.nodes[0].resp;
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (stop, keys, counters, hash) = (stop.clone(), keys.clone(), counters.clone(), hash.clone());
            std::thread::spawn(move || {
                let mut w = Follows {
                    raw: common::Raw::connect(source),
                    slowest: Duration::ZERO,
                };
                let mut last = std::collections::BTreeMap::new();
                let (mut incrs, mut n) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let key = &keys[(n as usize * 4 + t) % keys.len()];
                    let value = format!("{t}-{n}");
                    assert_eq!(w.cmd(&["SET", key, &value]), Frame::Simple("OK".into()));
                    last.insert(key.clone(), value);
                    assert!(matches!(w.cmd(&["INCR", &counters[t % counters.len()]]), Frame::Int(_)));
                    incrs += 1;
                    let field = format!("w{t}-{}", n % 50);
                    assert!(matches!(w.cmd(&["HSET", &hash, &field, &n.to_string()]), Frame::Int(_)));
                    n += 1;
                }
                (last, incrs, w.slowest, n)
            })
        })
        .collect();
    // Back and forth: odd rounds return the slots to shard 0.
    let rounds: usize = std::env::var("RINGKV_MIGRATION_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let slots = format!("{}-{}", range[0], range[1]);
    let mut lines = Vec::new();
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(300));
        let to = if round % 2 == 0 { "shard-3" } else { "shard-0" };
        let (ok, shown) = cluster_tool(&c.map, &["move-slots", "--slots", &slots, "--to", to]);
        assert!(ok, "round {round}: {shown}");
        lines.extend(shown.lines().filter(|l| l.contains("handed over")).map(str::to_string));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (owner, other) = if rounds % 2 == 1 { (3, 0) } else { (0, 3) };
    let mut totals = std::collections::BTreeMap::<String, u64>::new();
    let mut last_values = std::collections::BTreeMap::new();
    let mut slowest = Duration::ZERO;
    let (mut writes, mut fields) = (0, 100_000);
    for (t, w) in writers.into_iter().enumerate() {
        let (last, incrs, slow, n) = w.join().expect("writer");
        *totals.entry(counters[t % counters.len()].clone()).or_default() += incrs;
        last_values.extend(last);
        slowest = slowest.max(slow);
        writes += n * 3;
        fields += n.min(50) as i64;
    }
    println!("migration under load: {writes} writes, slowest client call {slowest:?}");
    for line in &lines {
        println!("  {line}");
    }
    let mut n3 = c.nodes[owner].raw();
    let mut n0 = c.nodes[other].raw();
    for (key, value) in &last_values {
        assert_eq!(n3.cmd(&["GET", key]), Frame::Bulk(value.clone().into_bytes()), "{key}");
    }
    for (counter, total) in &totals {
        assert_eq!(
            n3.cmd(&["GET", counter]),
            Frame::Bulk(total.to_string().into_bytes()),
            "{counter}"
        );
    }
    assert_eq!(int(n3.cmd(&["HLEN", &hash])), fields, "{hash}");
    assert_eq!(n3.cmd(&["HGET", &hash, "f99999"]), Frame::Bulk(b"v99999".to_vec()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: i64 = (range[0]..=range[1])
            .map(|s| int(n0.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &s.to_string()])))
            .sum();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} keys of the moved slots stayed on the source"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A hand-over whose target cannot catch up in time (its process is
/// stopped) changes nothing: it answers TRYAGAIN, the source takes the
/// writes that waited and keeps the slots, and a later hand-over, once the
/// target runs again, moves them with every write.
#[test]
fn a_hand_over_that_times_out_changes_nothing_and_a_retry_moves_the_slots() {
    let c = start_nodes(4, None);
    let mut n0 = c.nodes[0].raw();
    let mut n3 = c.nodes[3].raw();
    assert_eq!(n0.cmd(&["SET", "hello", "1"]), Frame::Simple("OK".into()));
    assert_eq!(
        n3.cmd(&["CLUSTER", "IMPORT", "shard-0", "866"]),
        Frame::Simple("OK".into())
    );
    let streaming = |n3: &mut common::Raw| {
        let Frame::Array(f) = n3.cmd(&["CLUSTER", "IMPORT", "STATUS"]) else {
            panic!("status")
        };
        f.chunks(2)
            .any(|kv| kv[0] == Frame::Bulk(b"state".to_vec()) && kv[1] == Frame::Bulk(b"streaming".to_vec()))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !streaming(&mut n3) {
        assert!(Instant::now() < deadline, "the import never streamed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let target = c.nodes[3].child.id().to_string();
    let signal = |sig: &str| {
        Command::new("kill").args([sig, &target]).status().expect("kill");
    };
    // A hand-over inside a transaction would wait for the fence EXEC
    // holds: refused there.
    assert_eq!(n0.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    let refused = n0.cmd(&["CLUSTER", "HANDOVER", "866"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("not allowed inside a transaction")),
        "{refused:?}"
    );
    assert!(matches!(n0.cmd(&["EXEC"]), Frame::Error(e) if e.starts_with("EXECABORT")));
    signal("-STOP");
    assert_eq!(n0.cmd(&["SET", "hello", "2"]), Frame::Simple("OK".into()));
    let reply = n0.cmd(&["CLUSTER", "HANDOVER", "866", "TIMEOUT", "300"]);
    assert!(
        matches!(&reply, Frame::Error(e) if e.starts_with("TRYAGAIN")),
        "{reply:?}"
    );
    assert_eq!(
        n0.cmd(&["SET", "hello", "3"]),
        Frame::Simple("OK".into()),
        "the source keeps the slot"
    );
    let Frame::Bulk(info) = n0.cmd(&["CLUSTER", "INFO"]) else {
        panic!("CLUSTER INFO")
    };
    assert!(
        String::from_utf8_lossy(&info).contains("cluster_current_epoch:1"),
        "the map is unchanged"
    );
    signal("-CONT");
    let reply = n0.cmd(&["CLUSTER", "HANDOVER", "866", "TIMEOUT", "5000"]);
    assert!(
        matches!(&reply, Frame::Bulk(b) if b.starts_with(b"handed over 866 to shard-3")),
        "{reply:?}"
    );
    let moved = Frame::Error(format!("MOVED 866 127.0.0.1:{}", c.nodes[3].resp.port()));
    assert_eq!(n0.cmd(&["SET", "hello", "4"]), moved);
    assert_eq!(n3.cmd(&["GET", "hello"]), Frame::Bulk(b"3".to_vec()));
    // Slots their source does not own, a move to itself, a hand-over of
    // nothing streaming, a bad pull: refused.
    let refused = n3.cmd(&["CLUSTER", "IMPORT", "shard-0", "866"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("not shard-0's")),
        "{refused:?}"
    );
    let refused = n3.cmd(&["CLUSTER", "IMPORT", "shard-3", "0"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("itself")),
        "{refused:?}"
    );
    let refused = n0.cmd(&["CLUSTER", "HANDOVER", "1-2"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("no migration")),
        "{refused:?}"
    );
    let refused = n0.cmd(&["CLUSTER", "MIGRATE-PULL", "99", "0", "0", "x"]);
    assert!(matches!(refused, Frame::Error(_)), "{refused:?}");
    let refused = n0.cmd(&["CLUSTER", "MIGRATE-PULL", "99", "0", "0", "100"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("no migration session")),
        "{refused:?}"
    );
}
