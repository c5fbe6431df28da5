//! Connection, server and replication commands.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::command::{int_arg, is, lookup, table, uint_arg, wrong_arity, AsyncOp, CmdResult, Ctx, Next, Spec, SYNTAX};
use super::config::NodeRole;
use super::info;
use crate::resp::Protocol;

/// The Redis version ringkv answers with (clients check it for features).
pub(crate) const REDIS_VERSION: &str = "7.2.0";

pub(crate) fn ping(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    match a.len() {
        1 => cx.out.simple("PONG"),
        2 => cx.out.bulk(&a[1]),
        _ => return Err(wrong_arity("ping")),
    }
    Ok(Next::Done)
}

pub(crate) fn echo(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    cx.out.bulk(&a[1]);
    Ok(Next::Done)
}

pub(crate) fn quit(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    cx.out.ok();
    Ok(Next::Close)
}

pub(crate) fn reset(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    let needs_auth = cx.node.needs_auth();
    let id = cx.client.id;
    let info = std::sync::Arc::clone(&cx.client.info);
    cx.client.pending.flush(cx.node);
    *cx.client = super::client::Client::new(id, needs_auth, info);
    cx.out.simple("RESET");
    Ok(Next::Done)
}

pub(crate) fn select(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    match int_arg(&a[1]) {
        Ok(0) => {
            cx.out.ok();
            Ok(Next::Done)
        }
        Ok(_) => Err("ERR DB index is out of range".into()),
        Err(_) => Err("ERR value is not an integer or out of range".into()),
    }
}

/// Logs the client in as `user`, or WRONGPASS.
fn check_password(cx: &mut Ctx<'_>, user: &[u8], pass: &[u8]) -> Result<(), String> {
    if !cx.node.authenticate(user, pass) {
        return Err("WRONGPASS invalid username-password pair or user is disabled.".into());
    }
    cx.client.authenticated = true;
    cx.client.user = String::from_utf8_lossy(user).into_owned();
    Ok(())
}

pub(crate) fn auth(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    match a.len() {
        2 => {
            if !cx.node.needs_auth() {
                return Err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into());
            }
            check_password(cx, b"default", &a[1])?;
        }
        3 => check_password(cx, &a[1], &a[2])?,
        _ => return Err(SYNTAX.into()),
    }
    cx.out.ok();
    Ok(Next::Done)
}

fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

pub(crate) fn hello(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let mut proto = cx.client.proto;
    let mut i = 1;
    if let Some(v) = a.get(1) {
        match int_arg(v) {
            Ok(2) => proto = Protocol::Resp2,
            Ok(3) => proto = Protocol::Resp3,
            Ok(_) => return Err("NOPROTO unsupported protocol version".into()),
            Err(_) => return Err("ERR Protocol version is not an integer or out of range".into()),
        }
        i = 2;
    }
    let mut name = None;
    while i < a.len() {
        if is(&a[i], "AUTH") && i + 2 < a.len() {
            check_password(cx, &a[i + 1], &a[i + 2])?;
            i += 3;
        } else if is(&a[i], "SETNAME") && i + 1 < a.len() {
            if !valid_client_name(&a[i + 1]) {
                return Err("ERR Client names cannot contain spaces, newlines or special characters.".into());
            }
            name = Some(String::from_utf8_lossy(&a[i + 1]).into_owned());
            i += 2;
        } else {
            return Err(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&a[i])
            ));
        }
    }
    if !cx.client.authenticated {
        return Err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
    }
    if let Some(n) = name {
        cx.client.name = n;
    }
    cx.client.proto = proto;
    cx.out.set_protocol(proto);
    let role = match cx.node.role() {
        NodeRole::Primary => "master",
        NodeRole::Follower => "replica",
    };
    cx.out.map(7);
    cx.out.bulk(b"server");
    cx.out.bulk(b"redis");
    cx.out.bulk(b"version");
    cx.out.bulk(REDIS_VERSION.as_bytes());
    cx.out.bulk(b"proto");
    cx.out.int(if proto == Protocol::Resp3 { 3 } else { 2 });
    cx.out.bulk(b"id");
    cx.out.int(cx.client.id as i64);
    cx.out.bulk(b"mode");
    cx.out.bulk(b"standalone");
    cx.out.bulk(b"role");
    cx.out.bulk(role.as_bytes());
    cx.out.bulk(b"modules");
    cx.out.array(0);
    Ok(Next::Done)
}

pub(crate) fn client(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&a[1]).to_ascii_lowercase();
    match (sub.as_str(), a.len()) {
        ("id", 2) => cx.out.int(cx.client.id as i64),
        ("getname", 2) => {
            if cx.client.name.is_empty() {
                cx.out.null();
            } else {
                cx.out.bulk(cx.client.name.as_bytes());
            }
        }
        ("setname", 3) => {
            if !valid_client_name(&a[2]) {
                return Err("ERR Client names cannot contain spaces, newlines or special characters.".into());
            }
            cx.client.name = String::from_utf8_lossy(&a[2]).into_owned();
            cx.out.ok();
        }
        ("setinfo", 4) => {
            let value = String::from_utf8_lossy(&a[3]).into_owned();
            let mut info = cx.client.info.lock();
            if is(&a[2], "LIB-NAME") {
                info.lib_name = value;
            } else if is(&a[2], "LIB-VER") {
                info.lib_ver = value;
            } else {
                return Err(format!("ERR Unrecognized option '{}'", String::from_utf8_lossy(&a[2])));
            }
            cx.out.ok();
        }
        ("list", _) => {
            let text = info::client_list(cx.node, None);
            cx.out.verbatim("txt", text.as_bytes());
        }
        ("info", 2) => {
            let text = info::client_list(cx.node, Some(cx.client.id));
            cx.out.verbatim("txt", text.as_bytes());
        }
        ("kill", n) if n >= 3 => {
            let mut killed = 0;
            let clients: Vec<_> = cx.node.clients.lock().values().cloned().collect();
            if n == 3 {
                // CLIENT KILL addr:port (old form).
                let addr = String::from_utf8_lossy(&a[2]);
                for c in &clients {
                    let mut c = c.lock();
                    if c.addr == addr {
                        c.kill = true;
                        killed += 1;
                    }
                }
                if killed == 0 {
                    return Err("ERR No such client".into());
                }
                cx.out.ok();
            } else {
                let mut i = 2;
                while i + 1 < n {
                    let v = String::from_utf8_lossy(&a[i + 1]).into_owned();
                    if is(&a[i], "ID") {
                        let id: u64 = v
                            .parse()
                            .map_err(|_| "ERR client-id should be greater than 0".to_string())?;
                        if let Some(c) = cx.node.clients.lock().get(&id) {
                            c.lock().kill = true;
                            killed += 1;
                        }
                    } else if is(&a[i], "ADDR") {
                        for c in &clients {
                            let mut c = c.lock();
                            if c.addr == v {
                                c.kill = true;
                                killed += 1;
                            }
                        }
                    } else {
                        return Err(SYNTAX.into());
                    }
                    i += 2;
                }
                cx.out.int(killed);
            }
        }
        _ => {
            return Err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&a[1])
            ))
        }
    }
    Ok(Next::Done)
}

pub(crate) fn info(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let sections: Vec<String> = a[1..]
        .iter()
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .collect();
    let text = info::render(cx.node, &sections);
    cx.out.verbatim("txt", text.as_bytes());
    Ok(Next::Done)
}

/// CONFIG GET/SET/RESETSTAT for the settings that map onto ringkv's.
pub(crate) fn config(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&a[1]).to_ascii_lowercase();
    match sub.as_str() {
        "get" if a.len() >= 3 => {
            let params = info::config_params(cx.node);
            let mut found: Vec<(&str, String)> = Vec::new();
            for pattern in &a[2..] {
                for (name, value) in &params {
                    if ringkv::glob_match(&pattern.to_ascii_lowercase(), name.as_bytes())
                        && !found.iter().any(|(n, _)| n == name)
                    {
                        found.push((name, value.clone()));
                    }
                }
            }
            cx.out.map(found.len());
            for (n, v) in &found {
                cx.out.bulk(n.as_bytes());
                cx.out.bulk(v.as_bytes());
            }
        }
        "set" if a.len() >= 4 && a.len().is_multiple_of(2) => {
            for pair in a[2..].chunks(2) {
                let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
                super::settings::config_set(cx.node, &name, &pair[1])?;
            }
            cx.out.ok();
        }
        "resetstat" if a.len() == 2 => {
            let c = &cx.node.counters;
            for counter in [
                &c.commands_processed,
                &c.connections_received,
                &c.rejected_connections,
                &c.keyspace_hits,
                &c.keyspace_misses,
                &c.error_replies,
                &c.net_input_bytes,
                &c.net_output_bytes,
            ] {
                counter.store(0, Ordering::Relaxed);
            }
            cx.out.ok();
        }
        _ => {
            return Err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG HELP.",
                String::from_utf8_lossy(&a[1])
            ))
        }
    }
    Ok(Next::Done)
}

fn command_info(cx: &mut Ctx<'_>, s: &Spec) {
    cx.out.array(10);
    cx.out.bulk(s.name.as_bytes());
    cx.out.int(i64::from(s.arity));
    cx.out.set(s.flags.len());
    for f in s.flags {
        cx.out.simple(f);
    }
    cx.out.int(i64::from(s.first_key));
    cx.out.int(i64::from(s.last_key));
    cx.out.int(i64::from(s.step));
    cx.out.set(s.categories.len());
    for c in s.categories {
        cx.out.simple(c);
    }
    cx.out.set(0); // tips
    cx.out.array(0); // key specs
    cx.out.array(0); // subcommands
}

pub(crate) fn command(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let sub = a.get(1).map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
    match sub.as_deref() {
        None => {
            cx.out.array(table().len());
            for s in table() {
                command_info(cx, s);
            }
        }
        Some("count") => cx.out.int(table().len() as i64),
        Some("list") => {
            cx.out.array(table().len());
            for s in table() {
                cx.out.bulk(s.name.as_bytes());
            }
        }
        Some("info") => {
            let names: Vec<&Bytes> = a[2..].iter().collect();
            if names.is_empty() {
                cx.out.array(table().len());
                for s in table() {
                    command_info(cx, s);
                }
            } else {
                cx.out.array(names.len());
                for n in names {
                    match lookup(n) {
                        Some(s) => command_info(cx, s),
                        None => cx.out.null_array(),
                    }
                }
            }
        }
        Some("docs") => {
            let specs: Vec<&Spec> = if a.len() > 2 {
                a[2..].iter().filter_map(|n| lookup(n)).collect()
            } else {
                table().iter().collect()
            };
            cx.out.map(specs.len());
            for s in specs {
                cx.out.bulk(s.name.as_bytes());
                cx.out.map(2);
                cx.out.bulk(b"summary");
                cx.out
                    .bulk(format!("the Redis {} command", s.name.to_ascii_uppercase()).as_bytes());
                cx.out.bulk(b"group");
                let group = s
                    .categories
                    .iter()
                    .find(|c| ["@string", "@hash", "@keyspace", "@connection", "@transaction"].contains(c))
                    .map_or("server", |c| &c[1..]);
                cx.out.bulk(group.as_bytes());
            }
        }
        Some("getkeys") if a.len() >= 3 => {
            let spec = lookup(&a[2]).ok_or_else(|| "ERR Invalid command specified".to_string())?;
            if !spec.arity_ok(a.len() - 2) {
                return Err("ERR Invalid number of arguments specified for command".into());
            }
            let keys = spec.keys(&a[2..]);
            if keys.is_empty() {
                return Err("ERR The command has no key arguments".into());
            }
            cx.out.array(keys.len());
            for k in keys {
                cx.out.bulk(k);
            }
        }
        Some(_) => {
            return Err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(&a[1])
            ))
        }
    }
    Ok(Next::Done)
}

pub(crate) fn time(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    cx.out.array(2);
    cx.out.bulk(now.as_secs().to_string().as_bytes());
    cx.out.bulk(now.subsec_micros().to_string().as_bytes());
    Ok(Next::Done)
}

pub(crate) fn save(_cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    Ok(Next::Async(AsyncOp::Save))
}

pub(crate) fn bgsave(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let schedule = match &a[1..] {
        [] => false,
        [o] if is(o, "SCHEDULE") => true,
        _ => return Err(SYNTAX.into()),
    };
    match cx.node.engine.bgsave() {
        Ok(true) => cx.out.simple("Background saving started"),
        Ok(false) if schedule => cx.out.simple("Background saving scheduled"),
        Ok(false) => return Err("ERR Background save already in progress".into()),
        Err(e) => return Err(format!("ERR {e}")),
    }
    Ok(Next::Done)
}

/// Unix seconds of the last completed snapshot (the start time before any).
pub(crate) fn last_save_secs(node: &super::node::Node) -> u64 {
    node.engine
        .stats()
        .snapshot
        .last
        .map_or(node.last_save.load(Ordering::Relaxed), |s| s.created_ms / 1000)
}

pub(crate) fn lastsave(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    cx.out.int(last_save_secs(cx.node) as i64);
    Ok(Next::Done)
}

pub(crate) fn shutdown(_cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let mut save = None;
    for o in &a[1..] {
        if is(o, "NOSAVE") {
            save = Some(false);
        } else if is(o, "SAVE") {
            save = Some(true);
        } else if is(o, "NOW") || is(o, "FORCE") || is(o, "ABORT") {
            // Accepted for compatibility; ringkv's shutdown is always immediate.
        } else {
            return Err(SYNTAX.into());
        }
    }
    Ok(Next::Async(AsyncOp::Shutdown { save }))
}

pub(crate) fn slowlog(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&a[1]).to_ascii_lowercase();
    match (sub.as_str(), a.len()) {
        ("get", 2 | 3) => {
            let n = match a.get(2) {
                Some(n) => int_arg(n)?,
                None => 10,
            };
            let log = cx.node.slowlog.lock().clone();
            let take = if n < 0 { log.len() } else { (n as usize).min(log.len()) };
            cx.out.array(take);
            for e in log.iter().take(take) {
                cx.out.array(6);
                cx.out.int(e.id as i64);
                cx.out.int(e.at_unix as i64);
                cx.out.int(e.micros as i64);
                cx.out.array(e.args.len());
                for arg in &e.args {
                    cx.out.bulk(arg);
                }
                cx.out.bulk(e.client.as_bytes());
                cx.out.bulk(e.name.as_bytes());
            }
        }
        ("len", 2) => cx.out.int(cx.node.slowlog.lock().len() as i64),
        ("reset", 2) => {
            cx.node.slowlog.lock().clear();
            cx.out.ok();
        }
        _ => {
            return Err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try SLOWLOG HELP.",
                String::from_utf8_lossy(&a[1])
            ))
        }
    }
    Ok(Next::Done)
}

pub(crate) fn role(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    if let Some(p) = cx.node.primary() {
        let stats = p.stats();
        cx.out.array(3);
        cx.out.bulk(b"master");
        cx.out.int(stats.master_repl_offset as i64);
        cx.out.array(stats.followers.len());
        for f in &stats.followers {
            let (ip, port) = f.addr.rsplit_once(':').unwrap_or((f.addr.as_str(), "0"));
            cx.out.array(3);
            cx.out.bulk(ip.as_bytes());
            cx.out.bulk(port.as_bytes());
            cx.out.bulk(f.applied.to_string().as_bytes());
        }
    } else {
        let (host, port, state, offset) = match cx.node.follower() {
            Some(f) => {
                let info = f.info();
                let state = if info.master_sync_in_progress {
                    "sync"
                } else if matches!(info.master_link_status, ringkv_replication::LinkStatus::Up) {
                    "connected"
                } else {
                    "connecting"
                };
                let addr = cx.node.config.follower.primary;
                (addr.ip().to_string(), addr.port(), state, info.slave_repl_offset)
            }
            None => (String::new(), 0, "none", cx.node.engine.applied_offset()),
        };
        cx.out.array(5);
        cx.out.bulk(b"slave");
        cx.out.bulk(host.as_bytes());
        cx.out.int(i64::from(port));
        cx.out.bulk(state.as_bytes());
        cx.out.int(offset as i64);
    }
    Ok(Next::Done)
}

/// A WAIT-style timeout in milliseconds (0: Redis waits forever; ringkv
/// caps the wait at one day so nothing is left waiting unbounded).
fn timeout_arg(a: &[u8]) -> Result<u64, String> {
    let t = uint_arg(a, "timeout").map_err(|_| "ERR timeout is not an integer or out of range".to_string())?;
    Ok(if t == 0 { 86_400_000 } else { t })
}

pub(crate) fn wait(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    if cx.node.role() == NodeRole::Follower {
        return Err("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.".into());
    }
    let replicas = uint_arg(&a[1], "numreplicas")? as usize;
    let timeout_ms = timeout_arg(&a[2])?;
    Ok(Next::Async(AsyncOp::Wait { replicas, timeout_ms }))
}

pub(crate) fn waitaof(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    if cx.node.role() == NodeRole::Follower {
        return Err("ERR WAITAOF cannot be used with replica instances. Please also note that writes to replicas are just local and are not propagated.".into());
    }
    let local = uint_arg(&a[1], "numlocal")?;
    if local > 1 {
        return Err("ERR WAITAOF numlocal must be 0 or 1".into());
    }
    let replicas = uint_arg(&a[2], "numreplicas")? as usize;
    let timeout_ms = timeout_arg(&a[3])?;
    Ok(Next::Async(AsyncOp::WaitAof {
        local: local == 1,
        replicas,
        timeout_ms,
    }))
}

/// REPLICAOF NO ONE, or REPLICAOF host port: `port` is the primary's RESP
/// port; its replication (QUIC) port is taken as `port + 1000` (the
/// defaults: 6379 serves RESP, 7379 replication).
pub(crate) fn replicaof(_cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    if is(&a[1], "NO") && is(&a[2], "ONE") {
        return Ok(Next::Async(AsyncOp::ReplicaOf(None)));
    }
    let port = uint_arg(&a[2], "port").map_err(|_| "ERR Invalid master port".to_string())?;
    let repl_port = u16::try_from(port + 1000).map_err(|_| "ERR Invalid master port".to_string())?;
    let host = String::from_utf8_lossy(&a[1]).into_owned();
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| format!("ERR ringkv needs an IP address for the primary, not '{host}'"))?;
    Ok(Next::Async(AsyncOp::ReplicaOf(Some(std::net::SocketAddr::new(
        ip, repl_port,
    )))))
}

/// LASTWRITEOFFSET: the log offset just after this client's last write on
/// this node (0 before any): pass it to WAITOFFSET on a follower.
pub(crate) fn lastwriteoffset(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    cx.out.int(cx.client.last_write_offset as i64);
    Ok(Next::Done)
}

/// WAITOFFSET offset timeout-ms: waits (bounded) until this node has
/// applied `offset`; 1 if it has, 0 on timeout.
pub(crate) fn waitoffset(_cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let offset = uint_arg(&a[1], "offset")?;
    let timeout_ms = timeout_arg(&a[2])?;
    Ok(Next::Async(AsyncOp::WaitOffset { offset, timeout_ms }))
}

pub(crate) fn multi(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    if cx.client.multi.is_some() {
        return Err("ERR MULTI calls can not be nested".into());
    }
    cx.client.multi = Some(Vec::new());
    cx.client.multi_failed = false;
    cx.out.ok();
    Ok(Next::Done)
}

pub(crate) fn watch(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    if cx.client.multi.is_some() {
        return Err("ERR WATCH inside MULTI is not allowed".into());
    }
    let engine = &cx.node.engine;
    let w = cx.client.watch.get_or_insert_with(|| super::txn::Watch::start(engine));
    for k in &a[1..] {
        w.add(engine, k);
    }
    cx.out.ok();
    Ok(Next::Done)
}

pub(crate) fn unwatch(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    cx.client.watch = None;
    cx.out.ok();
    Ok(Next::Done)
}

pub(crate) fn discard(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    if cx.client.multi.take().is_none() {
        return Err("ERR DISCARD without MULTI".into());
    }
    cx.client.watch = None;
    cx.client.multi_failed = false;
    cx.out.ok();
    Ok(Next::Done)
}

/// EXEC is run by the connection (it dispatches the queued commands);
/// reaching this handler means there was no MULTI.
pub(crate) fn exec(_cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    Err("ERR EXEC without MULTI".into())
}

/// ACL WHOAMI / LIST / USERS.
pub(crate) fn acl(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&a[1]).to_ascii_lowercase();
    match (sub.as_str(), a.len()) {
        ("whoami", 2) => cx.out.bulk(cx.client.user.as_bytes()),
        ("users", 2) => {
            let names: Vec<String> = cx.node.users.lock().keys().cloned().collect();
            cx.out.array(names.len());
            for n in &names {
                cx.out.bulk(n.as_bytes());
            }
        }
        ("list", 2) => {
            let lines: Vec<String> = cx.node.users.lock().iter().map(|(n, u)| u.describe(n)).collect();
            cx.out.array(lines.len());
            for l in &lines {
                cx.out.bulk(l.as_bytes());
            }
        }
        _ => {
            return Err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.",
                String::from_utf8_lossy(&a[1])
            ))
        }
    }
    Ok(Next::Done)
}
