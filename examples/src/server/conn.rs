//! One client connection: read, parse every whole request in the buffer,
//! run each, encode the replies into one output buffer, write it once per
//! batch of pipelined requests.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::client::Client;
use super::command::{lookup, unknown_command, wrong_arity, AsyncOp, Ctx, Next};
use super::node::{ClientInfo, Node};
use crate::resp::{ReplyWriter, RequestParser};

/// Redis' text for a non-loopback client of an unprotected server.
const DENIED: &str = "DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Set up an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.";

/// Most commands one MULTI may queue before EXEC.
const MAX_QUEUED: usize = 1_000_000;

/// Serves one connection until it closes, errs, is killed, or the server stops.
pub(crate) async fn serve<S>(node: Arc<Node>, mut stream: S, peer: SocketAddr, local: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    node.counters.connections_received.fetch_add(1, Ordering::Relaxed);
    if !peer.ip().is_loopback() && !node.needs_auth() {
        let _ = stream.write_all(format!("-{DENIED}\r\n").as_bytes()).await;
        return;
    }
    let id = node.next_client_id.fetch_add(1, Ordering::Relaxed);
    if node.clients.lock().len() >= node.settings.maxclients() {
        node.counters.rejected_connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
        return;
    }
    let info = Arc::new(parking_lot::Mutex::new(ClientInfo {
        addr: peer.to_string(),
        laddr: local.to_string(),
        connected: Some(Instant::now()),
        last_active: Some(Instant::now()),
        resp: 2,
        multi: -1,
        ..ClientInfo::default()
    }));
    node.clients.lock().insert(id, Arc::clone(&info));
    let mut client = Client::new(id, node.needs_auth(), info);
    let result = run(&node, &mut client, &mut stream).await;
    if let Err(e) = result {
        tracing::debug!(client = id, %peer, error = %e, "connection closed");
    }
    node.clients.lock().remove(&id);
}

/// How often a connection waiting for input checks the idle `timeout`.
const IDLE_CHECK: Duration = Duration::from_secs(1);

async fn run<S>(node: &Arc<Node>, client: &mut Client, stream: &mut S) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut parser = RequestParser::new(node.config.limits);
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut last_active = Instant::now();
    loop {
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        let n = loop {
            // The idle limit is read again at every wake-up, so CONFIG SET
            // timeout applies to clients already connected (as Redis'
            // clientsCron does); a read wakes at least every IDLE_CHECK.
            let limit = Duration::from_secs(node.settings.timeout());
            let wait = if limit.is_zero() {
                IDLE_CHECK
            } else {
                match limit.checked_sub(last_active.elapsed()) {
                    Some(left) if !left.is_zero() => left.min(IDLE_CHECK),
                    _ => return Ok(()),
                }
            };
            tokio::select! {
                // `read_buf` is cancel-safe: a timeout loses no input.
                r = tokio::time::timeout(wait, stream.read_buf(&mut input)) => {
                    if let Ok(n) = r {
                        break n?;
                    }
                }
                _ = node.stop.notified() => return Ok(()),
            }
            if node.stopping.load(Ordering::Acquire) {
                return Ok(());
            }
        };
        last_active = Instant::now();
        if n == 0 {
            return Ok(());
        }
        node.counters.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
        let mut close = false;
        loop {
            let args = match parser.next(&mut input) {
                Ok(Some(args)) => args,
                Ok(None) => break,
                Err(e) => {
                    node.counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    ReplyWriter::new(&mut out, client.proto).error(&format!("ERR {e}"));
                    close = true;
                    break;
                }
            };
            match execute(node, client, &args, &mut out).await {
                Next::Close => {
                    close = true;
                    break;
                }
                Next::Done | Next::Async(_) => {}
            }
            if out.len() > node.config.client_output_limit {
                node.counters
                    .output_limit_disconnections
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    client = client.id,
                    pending = out.len(),
                    "client output buffer limit reached: closing"
                );
                return Ok(());
            }
        }
        if !out.is_empty() {
            node.counters
                .net_output_bytes
                .fetch_add(out.len() as u64, Ordering::Relaxed);
            stream.write_all(&out).await?;
            out.clear();
        }
        client.pending.flush(node);
        let killed = client.info.lock().kill;
        if close || killed || node.stopping.load(Ordering::Acquire) {
            stream.flush().await?;
            return Ok(());
        }
    }
}

/// Runs one request, writing its reply into `out`.
pub(crate) async fn execute(node: &Node, client: &mut Client, args: &[Bytes], out: &mut BytesMut) -> Next {
    let started = Instant::now();
    client.pending.commands += 1;
    let before = out.len();
    let next = dispatch(node, client, args, out).await;
    if out.get(before) == Some(&b'-') {
        client.pending.errors += 1;
    }
    let now = Instant::now();
    let micros = now.duration_since(started).as_micros() as u64;
    let mut info = client.info.lock();
    info.last_cmd.clear();
    info.last_cmd.push_str(&String::from_utf8_lossy(&args[0]));
    info.last_cmd.make_ascii_lowercase();
    info.last_active = Some(now);
    if info.name != client.name {
        info.name.clone_from(&client.name);
    }
    info.resp = if client.proto == crate::resp::Protocol::Resp3 {
        3
    } else {
        2
    };
    info.multi = client.multi.as_ref().map_or(-1, |m| m.len() as i64);
    if micros >= node.settings.slowlog_log_slower_than() {
        let snapshot = info.clone();
        drop(info);
        node.slowlog_push(micros, args, &snapshot);
    }
    next
}

async fn dispatch(node: &Node, client: &mut Client, args: &[Bytes], out: &mut BytesMut) -> Next {
    let proto = client.proto;
    let mut reply = ReplyWriter::new(out, proto);
    let Some(spec) = lookup(&args[0]) else {
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        reply.error(&unknown_command(args));
        return Next::Done;
    };
    if !client.authenticated && !spec.flags.contains(&"noauth") {
        reply.error("NOAUTH Authentication required.");
        return Next::Done;
    }
    if !spec.arity_ok(args.len()) {
        if spec.name == "exec" {
            // Redis aborts the transaction (if any) when EXEC itself is
            // rejected, and says why.
            client.multi = None;
            client.multi_failed = false;
            client.watch = None;
            let why = wrong_arity(spec.name);
            let why = why.strip_prefix("ERR ").unwrap_or(&why);
            reply.error(&format!("EXECABORT Transaction discarded because of: {why}"));
            return Next::Done;
        }
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        reply.error(&wrong_arity(spec.name));
        return Next::Done;
    }
    // Cluster mode: a write whose slots are being handed over to another
    // shard waits (bounded) for the hand-over to end, then runs inside the
    // fence (`handover.rs`); after a hand-over it is redirected.
    let fenced = node
        .cluster
        .as_ref()
        .filter(|_| spec.is_write() || spec.name == "exec")
        .filter(|_| client.multi.is_none() || spec.name == "exec")
        .map(|c| (c, super::cluster::write_slot(spec, args, client)));
    let next = loop {
        if let Some((cluster, slot)) = fenced {
            if cluster.fence.is_fenced() && !cluster.fence.wait(slot, FENCE_WAIT_MAX).await {
                ReplyWriter::new(out, proto)
                    .error("TRYAGAIN the slot is being handed over to another shard, try again later");
                return Next::Done;
            }
        }
        match run_command(node, client, spec, args, out, fenced.map(|(c, slot)| (&**c, slot))) {
            Step::Fenced => continue,
            Step::Done(next) => break next,
        }
    };
    match next {
        Next::Async(op) => {
            run_async(node, client, op, out).await;
            Next::Done
        }
        other => other,
    }
}

/// The longest a write waits for a hand-over of its slots to end (a
/// hand-over waits at most 30 s for its target, then changes the map and
/// gives the target 2 s to take it).
const FENCE_WAIT_MAX: Duration = Duration::from_secs(35);

/// What [`run_command`] did.
enum Step {
    /// The command's slots were fenced meanwhile: wait, then try again.
    Fenced,
    /// It ran (or was refused); what the connection does next.
    Done(Next),
}

/// The synchronous part of a command: redirection, MULTI, the READONLY
/// check, the handler. With `fenced`, it runs inside the cluster's
/// hand-over fence for that slot (held until it returns), or returns
/// [`Step::Fenced`] if the slot is fenced now.
fn run_command(
    node: &Node,
    client: &mut Client,
    spec: &'static super::command::Spec,
    args: &[Bytes],
    out: &mut BytesMut,
    fenced: Option<(&super::cluster::ClusterState, Option<u16>)>,
) -> Step {
    let entry = match fenced {
        Some((cluster, slot)) => match cluster.fence.enter(slot) {
            Some(entry) => Some((cluster, entry)),
            None => return Step::Fenced,
        },
        None => None,
    };
    let next = run_unfenced(node, client, spec, args, out);
    if let Some((cluster, entry)) = entry {
        if let Some(end) = node.engine.last_write_offset() {
            cluster.fence.note_end(end);
        }
        drop(entry);
    }
    Step::Done(next)
}

fn run_unfenced(
    node: &Node,
    client: &mut Client,
    spec: &'static super::command::Spec,
    args: &[Bytes],
    out: &mut BytesMut,
) -> Next {
    let proto = client.proto;
    let mut reply = ReplyWriter::new(out, proto);
    if let Some(cluster) = &node.cluster {
        if let Some(redirect) = super::cluster::redirect(cluster, node, client, spec, args) {
            // As Redis: a redirected EXEC discards the transaction, a
            // redirected command inside one makes EXEC abort.
            if spec.name == "exec" {
                client.multi = None;
                client.multi_failed = false;
                client.watch = None;
            } else if client.multi.is_some() {
                client.multi_failed = true;
            }
            reply.error(&redirect);
            return Next::Done;
        }
    }
    if let Some(queue) = client.multi.as_mut() {
        // A hand-over inside EXEC would wait for the fence that EXEC
        // itself holds: the migration subcommands run only on their own.
        if spec.name == "cluster" && args.get(1).is_some_and(|sub| super::cmd_migrate::is_migration(sub)) {
            client.multi_failed = true;
            reply.error("ERR Command not allowed inside a transaction");
            return Next::Done;
        }
        if !matches!(spec.name, "exec" | "discard" | "multi" | "watch" | "quit" | "reset") {
            // A transaction is held in memory until EXEC: bounded like the
            // query buffer it arrived through.
            if queue.len() >= MAX_QUEUED {
                client.multi_failed = true;
                reply.error("ERR too many commands queued in this transaction");
                return Next::Done;
            }
            queue.push(args.to_vec());
            reply.simple("QUEUED");
            return Next::Done;
        }
        if spec.name == "exec" {
            return exec(node, client, out);
        }
    }
    if spec.is_write() && (node.engine.role() == ringkv::Role::Follower || node.fenced()) {
        reply.error("READONLY You can't write against a read only replica.");
        return Next::Done;
    }
    let next = {
        let mut cx = Ctx {
            node,
            client,
            out: reply,
        };
        match (spec.handler)(&mut cx, args) {
            Ok(next) => next,
            Err(e) => {
                cx.out.error(&e);
                Next::Done
            }
        }
    };
    if spec.is_write() {
        if let Some(end) = node.engine.last_write_offset() {
            client.last_write_offset = client.last_write_offset.max(end);
        }
    }
    next
}

/// EXEC: a null reply if a watched key changed; else, when every queued
/// command is a batchable write, one atomic engine write batch (one
/// record in the log); else the commands one by one, each atomic on its
/// own but not isolated from other clients' commands as a whole (see the
/// README's list of differences).
fn exec(node: &Node, client: &mut Client, out: &mut BytesMut) -> Next {
    let queued = client.multi.take().unwrap_or_default();
    let failed = std::mem::take(&mut client.multi_failed);
    let watch = client.watch.take();
    let proto = client.proto;
    if failed {
        ReplyWriter::new(out, proto).error("EXECABORT Transaction discarded because of previous errors.");
        return Next::Done;
    }
    if watch.as_ref().is_some_and(|w| w.expired()) {
        ReplyWriter::new(out, proto).null_array();
        return Next::Done;
    }
    if node.engine.role() == ringkv::Role::Primary {
        let watched = watch.as_ref().filter(|w| !w.keys.is_empty());
        match super::txn::exec_atomic(&node.engine, &queued, watched, &mut ReplyWriter::new(&mut *out, proto)) {
            super::txn::Atomic::Done => {
                if let Some(end) = node.engine.last_write_offset() {
                    client.last_write_offset = client.last_write_offset.max(end);
                }
                return Next::Done;
            }
            super::txn::Atomic::Aborted => {
                ReplyWriter::new(out, proto).null_array();
                return Next::Done;
            }
            super::txn::Atomic::OneByOne => {}
        }
    }
    if watch.is_some_and(|w| w.fired(&node.engine)) {
        ReplyWriter::new(out, proto).null_array();
        return Next::Done;
    }
    ReplyWriter::new(out, proto).array(queued.len());
    for args in &queued {
        let Some(spec) = lookup(&args[0]) else { continue };
        if spec.is_write() && (node.engine.role() == ringkv::Role::Follower || node.fenced()) {
            ReplyWriter::new(out, proto).error("READONLY You can't write against a read only replica.");
            continue;
        }
        let mut cx = Ctx {
            node,
            client: &mut *client,
            out: ReplyWriter::new(&mut *out, proto),
        };
        match (spec.handler)(&mut cx, args) {
            Ok(Next::Async(_)) => cx.out.error("ERR this command is not allowed inside a transaction"),
            Ok(_) => {}
            Err(e) => cx.out.error(&e),
        }
        if spec.is_write() {
            if let Some(end) = node.engine.last_write_offset() {
                client.last_write_offset = client.last_write_offset.max(end);
            }
        }
    }
    Next::Done
}

async fn run_async(node: &Node, client: &mut Client, op: AsyncOp, out: &mut BytesMut) {
    let mut reply = ReplyWriter::new(out, client.proto);
    match op {
        AsyncOp::Wait { replicas, timeout_ms } => {
            let offset = client.last_write_offset;
            let n = node
                .wait_for_followers(offset, replicas, Duration::from_millis(timeout_ms))
                .await;
            reply.int(n as i64);
        }
        AsyncOp::WaitAof {
            local,
            replicas,
            timeout_ms,
        } => {
            let synced = if local {
                let engine = node.engine.clone();
                tokio::task::spawn_blocking(move || engine.sync().is_ok())
                    .await
                    .unwrap_or(false)
            } else {
                false
            };
            let offset = client.last_write_offset;
            let n = node
                .wait_for_followers(offset, replicas, Duration::from_millis(timeout_ms))
                .await;
            reply.array(2);
            reply.int(i64::from(synced));
            reply.int(n as i64);
        }
        AsyncOp::ReplicaOf(target) => {
            let r = match target {
                None => node.promote().await,
                Some(addr) => node.follow(addr).await,
            };
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(&format!("ERR {e}")),
            }
        }
        AsyncOp::Save => {
            let engine = node.engine.clone();
            match tokio::task::spawn_blocking(move || engine.save()).await {
                Ok(Ok(_)) => {
                    node.last_save.store(super::node::unix_secs(), Ordering::Relaxed);
                    reply.ok()
                }
                Ok(Err(ringkv::Error::Snapshot(ringkv::snapshot::SnapshotError::InProgress))) => {
                    reply.error("ERR Background save already in progress")
                }
                Ok(Err(e)) => reply.error(&format!("ERR {e}")),
                Err(_) => reply.error("ERR the save failed"),
            }
        }
        AsyncOp::Shutdown { save } => {
            let save = save.unwrap_or(node.config.save_on_shutdown);
            if save {
                let engine = node.engine.clone();
                match tokio::task::spawn_blocking(move || engine.save()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        reply.error(&format!("ERR Errors trying to SHUTDOWN. Check logs. ({e})"));
                        return;
                    }
                    Err(_) => {
                        reply.error("ERR Errors trying to SHUTDOWN. Check logs.");
                        return;
                    }
                }
            }
            node.request_stop();
        }
        AsyncOp::WaitOffset { offset, timeout_ms } => {
            let engine = node.engine.clone();
            let reached =
                tokio::task::spawn_blocking(move || engine.wait_applied(offset, Duration::from_millis(timeout_ms)))
                    .await
                    .unwrap_or(false);
            reply.int(i64::from(reached));
        }
    }
}
