//! CLUSTER (SLOTS, SHARDS, NODES, INFO, KEYSLOT, MYID, COUNTKEYSINSLOT,
//! GETKEYSINSLOT), ASKING, READONLY and READWRITE, in Redis 7's reply
//! formats. Without cluster mode they answer as a Redis with
//! `cluster-enabled no` does.

use bytes::Bytes;

use super::command::{int_arg, CmdResult, Ctx, Next};
use crate::cluster::{NodeAddr, Routing, ShardMap, SlotRange};

const DISABLED: &str = "ERR This instance has cluster support disabled";

/// The node's routing, or the error of a server without cluster mode.
fn routing(cx: &Ctx<'_>) -> Result<std::sync::Arc<Routing>, String> {
    match &cx.node.cluster {
        Some(c) => Ok(c.routing()),
        None => Err(DISABLED.into()),
    }
}

pub(crate) fn asking(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    routing(cx)?;
    cx.client.asking = true;
    cx.out.ok();
    Ok(Next::Done)
}

pub(crate) fn readonly(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    routing(cx)?;
    cx.client.readonly = true;
    cx.out.ok();
    Ok(Next::Done)
}

pub(crate) fn readwrite(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    routing(cx)?;
    cx.client.readonly = false;
    cx.out.ok();
    Ok(Next::Done)
}

pub(crate) fn cluster(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let r = routing(cx)?;
    let sub = String::from_utf8_lossy(&a[1]).to_ascii_lowercase();
    let arity = |n: usize| {
        if a.len() == n {
            Ok(())
        } else {
            Err(format!("ERR wrong number of arguments for 'cluster|{sub}' command"))
        }
    };
    match sub.as_str() {
        "keyslot" => {
            arity(3)?;
            cx.out.int(i64::from(ringkv::key_slot(&a[2])));
        }
        "myid" => {
            arity(2)?;
            cx.out.bulk(r.my_id().as_bytes());
        }
        "countkeysinslot" => {
            arity(3)?;
            let slot = int_arg(&a[2])?;
            let slot = slot_number(slot).ok_or("ERR Invalid slot")?;
            let n = cx
                .node
                .engine
                .count_keys_in_slot(slot)
                .map_err(|e| format!("ERR {e}"))?;
            cx.out.int(n as i64);
        }
        "getkeysinslot" => {
            arity(4)?;
            let (slot, count) = (int_arg(&a[2])?, int_arg(&a[3])?);
            let (Some(slot), Ok(count)) = (slot_number(slot), usize::try_from(count)) else {
                return Err("ERR Invalid slot or number of keys".into());
            };
            let keys = cx
                .node
                .engine
                .keys_in_slot(slot, None, count)
                .map_err(|e| format!("ERR {e}"))?;
            cx.out.array(keys.len());
            for k in &keys {
                cx.out.bulk(k);
            }
        }
        "info" => {
            arity(2)?;
            let text = info(&r);
            cx.out.verbatim("txt", text.as_bytes());
        }
        "slots" => {
            arity(2)?;
            slots(cx, &r);
        }
        "shards" => {
            arity(2)?;
            shards(cx, &r);
        }
        "nodes" => {
            arity(2)?;
            let text = nodes(&r);
            cx.out.verbatim("txt", text.as_bytes());
        }
        "reload" => {
            // ringkv's own: read the slot map again from its source.
            arity(2)?;
            if let Some(c) = &cx.node.cluster {
                // The map's source may be etcd over the network: wait for it
                // off the async workers, so a slow etcd stalls only this
                // client, not every connection on the worker.
                off_the_workers(|| c.reload()).map_err(|e| format!("ERR {e}"))?;
            }
            cx.out.ok();
        }
        _ => {
            if let Some(cluster) = &cx.node.cluster {
                let cluster = std::sync::Arc::clone(cluster);
                if let Some(result) = super::cmd_migrate::run(cx, &cluster, &sub, a) {
                    return result;
                }
            }
            return Err(format!(
                "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
                String::from_utf8_lossy(&a[1])
            ));
        }
    }
    Ok(Next::Done)
}

fn slot_number(v: i64) -> Option<u16> {
    u16::try_from(v).ok().filter(|&s| usize::from(s) < ringkv::SLOT_COUNT)
}

/// CLUSTER INFO's text.
fn info(r: &Routing) -> String {
    let map = r.map();
    let assigned = map.assigned_slots();
    let known: usize = map.shards.iter().map(|s| 1 + s.replicas.len()).sum();
    let size = map.shards.iter().filter(|s| !s.slots.is_empty()).count();
    let state = if assigned == ringkv::SLOT_COUNT { "ok" } else { "fail" };
    format!(
        "cluster_state:{state}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{assigned}\r\n\
         cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{known}\r\n\
         cluster_size:{size}\r\ncluster_current_epoch:{e}\r\ncluster_my_epoch:{e}\r\n\
         cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
         total_cluster_links_buffer_limit_exceeded:0\r\n",
        e = map.epoch
    )
}

/// Every node of `shard`, primary first.
fn members(shard: &ShardMap) -> impl Iterator<Item = &NodeAddr> {
    std::iter::once(&shard.primary).chain(&shard.replicas)
}

/// CLUSTER SLOTS: `[start, end, [host, port, id, []], ...]` per range.
fn slots(cx: &mut Ctx<'_>, r: &Routing) {
    let ranges: Vec<(SlotRange, &ShardMap)> = r
        .map()
        .shards
        .iter()
        .flat_map(|s| s.slots.iter().map(move |&range| (range, s)))
        .collect();
    cx.out.array(ranges.len());
    for ([start, end], shard) in ranges {
        cx.out.array(2 + 1 + shard.replicas.len());
        cx.out.int(i64::from(start));
        cx.out.int(i64::from(end));
        for n in members(shard) {
            cx.out.array(4);
            cx.out.bulk(n.host.as_bytes());
            cx.out.int(i64::from(n.port));
            cx.out.bulk(n.id.as_bytes());
            cx.out.array(0);
        }
    }
}

/// CLUSTER SHARDS: a map of `slots` and `nodes` per shard.
fn shards(cx: &mut Ctx<'_>, r: &Routing) {
    let map = r.map();
    cx.out.array(map.shards.len());
    for shard in &map.shards {
        cx.out.map(2);
        cx.out.bulk(b"slots");
        cx.out.array(shard.slots.len() * 2);
        for &[start, end] in &shard.slots {
            cx.out.int(i64::from(start));
            cx.out.int(i64::from(end));
        }
        cx.out.bulk(b"nodes");
        cx.out.array(1 + shard.replicas.len());
        for (i, n) in members(shard).enumerate() {
            let offset = if n.id == r.my_id() {
                cx.node.engine.applied_offset()
            } else {
                0
            };
            cx.out.map(7);
            cx.out.bulk(b"id");
            cx.out.bulk(n.id.as_bytes());
            cx.out.bulk(b"port");
            cx.out.int(i64::from(n.port));
            cx.out.bulk(b"ip");
            cx.out.bulk(n.host.as_bytes());
            cx.out.bulk(b"endpoint");
            cx.out.bulk(n.host.as_bytes());
            cx.out.bulk(b"role");
            cx.out.bulk(if i == 0 { b"master" } else { b"replica" });
            cx.out.bulk(b"replication-offset");
            cx.out.int(offset as i64);
            cx.out.bulk(b"health");
            cx.out.bulk(b"online");
        }
    }
}

/// CLUSTER NODES: one line per node, as Redis writes them (the cluster
/// bus port is nominal: port + 10000), with this node's migrating and
/// importing slots.
fn nodes(r: &Routing) -> String {
    let map = r.map();
    let mut out = String::new();
    for (si, shard) in map.shards.iter().enumerate() {
        for (i, n) in members(shard).enumerate() {
            let me = n.id == r.my_id();
            let role = if i == 0 { "master" } else { "slave" };
            let flags = if me { format!("myself,{role}") } else { role.to_string() };
            let master = if i == 0 { "-" } else { &shard.primary.id };
            let bus = u32::from(n.port) + 10_000;
            out.push_str(&format!(
                "{} {}:{}@{bus} {flags} {master} 0 0 {} connected",
                n.id, n.host, n.port, map.epoch
            ));
            if i == 0 {
                for &[start, end] in &shard.slots {
                    if start == end {
                        out.push_str(&format!(" {start}"));
                    } else {
                        out.push_str(&format!(" {start}-{end}"));
                    }
                }
            }
            if me && i == 0 {
                for m in &map.migrations {
                    let from = map.shard(&m.from);
                    let to = map.shard(&m.to);
                    let (Some(from), Some(to)) = (from, to) else { continue };
                    for slot in m.slots[0]..=m.slots[1] {
                        if si == r.my_shard() && from.name == shard.name {
                            out.push_str(&format!(" [{slot}->-{}]", to.primary.id));
                        } else if to.name == shard.name {
                            out.push_str(&format!(" [{slot}-<-{}]", from.primary.id));
                        }
                    }
                }
            }
            out.push('\n');
        }
    }
    out
}

/// Runs `f`, which may block on I/O, with the runtime's other tasks moved
/// to other workers first (`block_in_place`) when it is a multi-threaded
/// runtime, as the server's is; directly otherwise.
pub(crate) fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
