//! INFO, CLIENT LIST and CONFIG GET text, with Redis' section and field
//! names so that redis_exporter and Sentinel-style monitors read them.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::cmd_server::{last_save_secs, REDIS_VERSION};
use super::config::NodeRole;
use super::node::Node;

/// The sections INFO with no argument (or `default`) prints.
const DEFAULT: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
    "ringkv",
];

/// INFO [section ...]: `all`/`everything` is every section.
pub(crate) fn render(node: &Node, sections: &[String]) -> String {
    let wanted: Vec<&str> = if sections.is_empty()
        || sections
            .iter()
            .any(|s| s == "all" || s == "everything" || s == "default")
    {
        DEFAULT.to_vec()
    } else {
        DEFAULT
            .iter()
            .copied()
            .filter(|d| sections.iter().any(|s| s == d))
            .collect()
    };
    let stats = node.engine.stats();
    let mut out = String::new();
    for (i, section) in wanted.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let _ = match *section {
            "server" => server(node, &mut out),
            "clients" => clients(node, &mut out),
            "memory" => memory(node, &stats, &mut out),
            "persistence" => persistence(node, &stats, &mut out),
            "stats" => counters(node, &stats, &mut out),
            "replication" => replication(node, &mut out),
            "cpu" => cpu(&mut out),
            "cluster" => cluster(node, &mut out),
            "keyspace" => keyspace(node, &stats, &mut out),
            _ => ringkv_section(&stats, &mut out),
        };
    }
    out
}

fn server(node: &Node, out: &mut String) -> std::fmt::Result {
    let uptime = node.started.elapsed().as_secs();
    let port = node.resp_addr.lock().map_or(node.config.port, |a| a.port());
    writeln!(out, "# Server\r")?;
    writeln!(out, "redis_version:{REDIS_VERSION}\r")?;
    writeln!(out, "ringkv_version:{}\r", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "redis_mode:standalone\r")?;
    writeln!(out, "os:{} {}\r", std::env::consts::OS, std::env::consts::ARCH)?;
    writeln!(out, "arch_bits:64\r")?;
    writeln!(out, "multiplexing_api:tokio\r")?;
    writeln!(out, "process_id:{}\r", std::process::id())?;
    writeln!(out, "run_id:{}\r", node.run_id)?;
    writeln!(out, "tcp_port:{port}\r")?;
    writeln!(out, "uptime_in_seconds:{uptime}\r")?;
    writeln!(out, "uptime_in_days:{}\r", uptime / 86_400)?;
    writeln!(
        out,
        "executable:{}\r",
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    )?;
    writeln!(out, "config_file:\r")
}

fn clients(node: &Node, out: &mut String) -> std::fmt::Result {
    writeln!(out, "# Clients\r")?;
    writeln!(out, "connected_clients:{}\r", node.clients.lock().len())?;
    writeln!(out, "maxclients:{}\r", node.settings.maxclients())?;
    writeln!(out, "blocked_clients:0\r")
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / 1024.0 / 1024.0 / 1024.0)
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

/// Resident set size of this process, from /proc (0 where unavailable).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

fn memory(node: &Node, stats: &ringkv::Stats, out: &mut String) -> std::fmt::Result {
    let used = stats.used_memory;
    let rss = rss_bytes();
    writeln!(out, "# Memory\r")?;
    writeln!(out, "used_memory:{used}\r")?;
    writeln!(out, "used_memory_human:{}\r", human(used))?;
    writeln!(out, "used_memory_rss:{rss}\r")?;
    writeln!(out, "used_memory_rss_human:{}\r", human(rss))?;
    writeln!(out, "maxmemory:{}\r", stats.maxmemory)?;
    writeln!(out, "maxmemory_human:{}\r", human(stats.maxmemory))?;
    writeln!(out, "maxmemory_policy:{}\r", policy(node))?;
    let ratio = if used > 0 { rss as f64 / used as f64 } else { 0.0 };
    writeln!(out, "mem_fragmentation_ratio:{ratio:.2}\r")
}

fn policy(node: &Node) -> &'static str {
    super::settings::policy_name(node.engine.memory_limit().1)
}

fn persistence(node: &Node, stats: &ringkv::Stats, out: &mut String) -> std::fmt::Result {
    let snap = &stats.snapshot;
    writeln!(out, "# Persistence\r")?;
    writeln!(out, "loading:{}\r", u8::from(node.engine.is_stale()))?;
    writeln!(out, "rdb_bgsave_in_progress:{}\r", u8::from(snap.in_progress))?;
    writeln!(out, "rdb_last_save_time:{}\r", last_save_secs(node))?;
    writeln!(
        out,
        "rdb_last_bgsave_status:{}\r",
        if snap.last_error.is_some() { "err" } else { "ok" }
    )?;
    writeln!(
        out,
        "rdb_last_bgsave_time_sec:{}\r",
        snap.last.as_ref().map_or(-1, |l| (l.duration_ms / 1000) as i64)
    )?;
    writeln!(out, "rdb_saves:{}\r", snap.completed)?;
    writeln!(out, "aof_enabled:0\r")
}

fn counters(node: &Node, stats: &ringkv::Stats, out: &mut String) -> std::fmt::Result {
    let c = &node.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    writeln!(out, "# Stats\r")?;
    writeln!(out, "total_connections_received:{}\r", get(&c.connections_received))?;
    writeln!(out, "total_commands_processed:{}\r", get(&c.commands_processed))?;
    writeln!(out, "total_net_input_bytes:{}\r", get(&c.net_input_bytes))?;
    writeln!(out, "total_net_output_bytes:{}\r", get(&c.net_output_bytes))?;
    writeln!(out, "rejected_connections:{}\r", get(&c.rejected_connections))?;
    writeln!(out, "expired_keys:{}\r", stats.expired_keys)?;
    writeln!(out, "evicted_keys:{}\r", stats.evicted_keys)?;
    writeln!(out, "keyspace_hits:{}\r", get(&c.keyspace_hits))?;
    writeln!(out, "keyspace_misses:{}\r", get(&c.keyspace_misses))?;
    writeln!(out, "total_error_replies:{}\r", get(&c.error_replies))?;
    writeln!(
        out,
        "client_output_buffer_limit_disconnections:{}\r",
        get(&c.output_limit_disconnections)
    )?;
    writeln!(out, "protocol_errors:{}\r", get(&c.protocol_errors))
}

fn replication(node: &Node, out: &mut String) -> std::fmt::Result {
    writeln!(out, "# Replication\r")?;
    if node.fence.enabled() {
        // Failover through etcd: the epoch (leader key revision) and
        // whether the leader lease's fence refuses writes now.
        writeln!(out, "ringkv_failover_epoch:{}\r", node.epoch.load(Ordering::Relaxed))?;
        writeln!(out, "ringkv_fenced:{}\r", u8::from(node.fenced()))?;
    }
    if let Some(p) = node.primary() {
        let s = p.stats();
        writeln!(out, "role:master\r")?;
        writeln!(out, "connected_slaves:{}\r", s.connected_slaves)?;
        for (i, f) in s.followers.iter().enumerate() {
            let (ip, port) = f.addr.rsplit_once(':').unwrap_or((f.addr.as_str(), "0"));
            writeln!(
                out,
                "slave{i}:ip={ip},port={port},state={},offset={},lag={}\r",
                match f.state {
                    ringkv_replication::FollowerState::Online => "online",
                    _ => "wait_bgsave",
                },
                f.applied,
                f.lag_bytes
            )?;
        }
        writeln!(out, "master_replid:{}\r", s.master_replid)?;
        writeln!(out, "master_replid2:{}\r", s.master_replid2)?;
        writeln!(out, "master_repl_offset:{}\r", s.master_repl_offset)?;
        writeln!(out, "second_repl_offset:{}\r", s.second_repl_offset)?;
        writeln!(out, "repl_backlog_active:1\r")?;
        writeln!(out, "repl_backlog_size:{}\r", s.repl_backlog_size)?;
        writeln!(
            out,
            "repl_backlog_first_byte_offset:{}\r",
            s.repl_backlog_first_byte_offset
        )
    } else if node.role() == NodeRole::Follower || node.follower().is_some() {
        let addr = node.upstream.lock().unwrap_or(node.config.follower.primary);
        writeln!(out, "role:slave\r")?;
        writeln!(out, "master_host:{}\r", addr.ip())?;
        writeln!(out, "master_port:{}\r", addr.port())?;
        match node.follower() {
            Some(f) => {
                let i = f.info();
                let up = matches!(i.master_link_status, ringkv_replication::LinkStatus::Up);
                writeln!(out, "master_link_status:{}\r", if up { "up" } else { "down" })?;
                writeln!(out, "master_last_io_seconds_ago:{}\r", i.master_last_io_ms / 1000)?;
                writeln!(out, "master_sync_in_progress:{}\r", u8::from(i.master_sync_in_progress))?;
                writeln!(out, "slave_read_repl_offset:{}\r", i.slave_repl_offset)?;
                writeln!(out, "slave_repl_offset:{}\r", i.slave_repl_offset)?;
                writeln!(out, "slave_priority:100\r")?;
                writeln!(out, "slave_read_only:1\r")?;
                writeln!(out, "master_repl_offset:{}\r", i.master_repl_offset)?;
                writeln!(out, "ringkv_lag_bytes:{}\r", i.lag_bytes)?;
                writeln!(out, "ringkv_full_syncs:{}\r", i.full_syncs)?;
                writeln!(out, "ringkv_partial_syncs:{}\r", i.partial_syncs)?;
                writeln!(out, "ringkv_failed_full_syncs:{}\r", i.failed_full_syncs)?;
                writeln!(out, "ringkv_full_sync_log_pauses:{}\r", i.full_sync_log_pauses)?;
                writeln!(out, "ringkv_durable_offset:{}\r", i.durable_offset)?;
                // A follower that stopped on divergence says so, and why
                // (one line: a newline would end the INFO field).
                writeln!(out, "ringkv_halted:{}\r", u8::from(i.halted))?;
                let why = i.last_error.as_deref().unwrap_or("").replace(['\r', '\n'], " ");
                writeln!(out, "ringkv_last_error:{why}\r")?;
                if node.registration.enabled() {
                    // Failover: whether the primary may count this follower
                    // for WAIT and its write gate (registered in etcd).
                    writeln!(out, "ringkv_counted_for_wait:{}\r", u8::from(f.counted()))?;
                }
                writeln!(out, "ringkv_lost_bytes:{}\r", i.lost_bytes)
            }
            None => writeln!(out, "master_link_status:down\r"),
        }
    } else {
        writeln!(out, "role:master\r")?;
        writeln!(out, "connected_slaves:0\r")
    }
}

fn cpu(out: &mut String) -> std::fmt::Result {
    // utime and stime of this process, in clock ticks (100 per second).
    let (user, sys) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some((after.get(11)?.parse::<f64>().ok()?, after.get(12)?.parse::<f64>().ok()?))
        })
        .unwrap_or((0.0, 0.0));
    writeln!(out, "# CPU\r")?;
    writeln!(out, "used_cpu_sys:{:.6}\r", sys / 100.0)?;
    writeln!(out, "used_cpu_user:{:.6}\r", user / 100.0)
}

fn keyspace(_node: &Node, stats: &ringkv::Stats, out: &mut String) -> std::fmt::Result {
    writeln!(out, "# Keyspace\r")?;
    if stats.keys > 0 {
        writeln!(
            out,
            "db0:keys={},expires={},avg_ttl=0\r",
            stats.keys, stats.keys_with_expiry
        )?;
    }
    Ok(())
}

fn ringkv_section(stats: &ringkv::Stats, out: &mut String) -> std::fmt::Result {
    writeln!(out, "# Ringkv\r")?;
    writeln!(out, "shards:{}\r", stats.shards)?;
    if let Some(log) = &stats.log {
        writeln!(out, "ring_capacity:{}\r", log.capacity)?;
        writeln!(out, "ring_oldest_offset:{}\r", log.oldest_offset)?;
        writeln!(out, "ring_offset:{}\r", log.offset)?;
        writeln!(out, "ring_synced_offset:{}\r", log.synced_offset)?;
        writeln!(out, "ring_durability:{:?}\r", log.durability)?;
        writeln!(out, "ring_recovered_records:{}\r", log.recovered_records)?;
        writeln!(out, "ring_torn_bytes:{}\r", log.torn_bytes)?;
    }
    let snap = &stats.snapshot;
    writeln!(out, "snapshots_completed:{}\r", snap.completed)?;
    if let Some(last) = &snap.last {
        writeln!(out, "snapshot_last_offset:{}\r", last.offset)?;
        writeln!(out, "snapshot_last_keys:{}\r", last.keys)?;
        writeln!(out, "snapshot_last_bytes:{}\r", last.bytes)?;
        writeln!(out, "snapshot_last_duration_ms:{}\r", last.duration_ms)?;
        writeln!(out, "snapshot_last_start_pause_us:{}\r", last.start_pause_us)?;
    }
    writeln!(out, "rehashing_shards:{}\r", stats.rehashing_shards)
}

/// CLIENT LIST (all clients, or one for CLIENT INFO), in Redis' format.
pub(crate) fn client_list(node: &Node, only: Option<u64>) -> String {
    let clients: Vec<(u64, std::sync::Arc<parking_lot::Mutex<super::node::ClientInfo>>)> = node
        .clients
        .lock()
        .iter()
        .map(|(id, c)| (*id, std::sync::Arc::clone(c)))
        .collect();
    let mut out = String::new();
    for (id, c) in clients.iter().filter(|(id, _)| only.is_none_or(|o| o == *id)) {
        let c = c.lock();
        let age = c.connected.map_or(0, |t| t.elapsed().as_secs());
        let idle = c.last_active.map_or(0, |t| t.elapsed().as_secs());
        let _ = writeln!(
            out,
            "id={id} addr={} laddr={} fd=0 name={} age={age} idle={idle} flags=N db=0 sub=0 psub=0 ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            c.addr, c.laddr, c.name, c.multi, c.last_cmd, c.resp, c.lib_name, c.lib_ver
        );
    }
    out
}

/// The CONFIG GET parameters that map onto ringkv's settings.
pub(crate) fn config_params(node: &Node) -> Vec<(&'static str, String)> {
    let c = &node.config;
    let e = node.engine.config();
    let save = e
        .snapshot
        .save
        .iter()
        .map(|r| format!("{} {}", r.seconds, r.changes))
        .collect::<Vec<_>>()
        .join(" ");
    let port = node.resp_addr.lock().map_or(c.port, |a| a.port());
    vec![
        ("bind", c.bind.clone()),
        ("port", port.to_string()),
        ("dir", c.dir.display().to_string()),
        ("maxmemory", node.engine.memory_limit().0.to_string()),
        ("maxmemory-policy", policy(node).to_string()),
        ("maxmemory-samples", e.maxmemory_samples.to_string()),
        ("save", save),
        ("appendonly", "no".into()),
        ("databases", "1".into()),
        ("timeout", node.settings.timeout().to_string()),
        ("maxclients", node.settings.maxclients().to_string()),
        (
            "requirepass",
            node.users
                .lock()
                .get("default")
                .and_then(|u| u.passwords.first().cloned())
                .unwrap_or_default(),
        ),
        ("protected-mode", "yes".into()),
        ("proto-max-bulk-len", c.limits.bulk_max.to_string()),
        ("client-query-buffer-limit", c.limits.query_buffer_max.to_string()),
        (
            "slowlog-log-slower-than",
            node.settings.slowlog_log_slower_than().to_string(),
        ),
        ("slowlog-max-len", node.settings.slowlog_max_len().to_string()),
        ("replica-read-only", "yes".into()),
    ]
}

/// `# Cluster`: Redis' one field, then a slot migration's counters
/// (hand-overs done here as a source and the last one's pause of writes,
/// streams served, and this node's import).
fn cluster(node: &Node, out: &mut String) -> std::fmt::Result {
    writeln!(
        out,
        "# Cluster\r\ncluster_enabled:{}\r",
        u8::from(node.cluster.is_some())
    )?;
    let Some(c) = &node.cluster else {
        return Ok(());
    };
    let (handovers, paused) = c.handovers();
    writeln!(
        out,
        "ringkv_handovers:{handovers}\r\nringkv_last_handover_pause_us:{}\r\nringkv_migrations_out:{}\r",
        paused.as_micros(),
        c.outgoing.all().len()
    )?;
    if let Some(imp) = c.incoming.lock().as_ref() {
        let s = imp.status();
        writeln!(
            out,
            "ringkv_import_state:{}\r\nringkv_import_slots:{}\r\nringkv_import_applied:{}\r",
            s.state.name(),
            imp.slots,
            s.applied
        )?;
    }
    Ok(())
}
