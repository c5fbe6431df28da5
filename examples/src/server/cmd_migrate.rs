//! The CLUSTER subcommands of slot migration (ringkv's own; Redis moves
//! keys one by one with MIGRATE instead):
//!
//! | subcommand | sent to | by |
//! |---|---|---|
//! | `IMPORT <from-shard> <slots>...` | the target's primary | `ringkv-cluster move-slots` |
//! | `IMPORT STATUS` / `IMPORT CANCEL` | the target's primary | the tool, an operator |
//! | `MIGRATE-OPEN <to-shard> <slots>...` | the source's primary | the target's importer |
//! | `MIGRATE-PULL <id> <received-reply> <applied> <max-bytes>` | the source's primary | the target's importer |
//! | `MIGRATE-CLOSE <id> [ABORT]` | the source's primary | the target's importer |
//! | `MIGRATE-STATUS` | the source's primary | the tool, an operator |
//! | `HANDOVER <slots>... [TIMEOUT <ms>]` | the source's primary | the tool |
//!
//! `<slots>` are `START-END` or `SLOT` arguments. The calls that wait (a
//! pull, up to 100 ms; a hand-over, up to its time-out) run off the async
//! workers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::cluster::ClusterState;
use super::cmd_cluster::off_the_workers;
use super::command::{int_arg, CmdResult, Ctx, Next};
use super::migrate_target::{Importer, Target};
use crate::cluster::SlotSet;

/// A hand-over's default time-out for the target to catch up.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest hand-over time-out accepted (writes to the slots wait that
/// long at most).
const HANDOVER_TIMEOUT_MAX: Duration = Duration::from_secs(30);
/// The largest pull served (a pull's first item is served whatever its size).
const PULL_MAX: usize = 16 << 20;

/// Whether `sub` (any case) is a slot-migration subcommand of CLUSTER.
pub(crate) fn is_migration(sub: &[u8]) -> bool {
    [
        "import",
        "migrate-open",
        "migrate-pull",
        "migrate-close",
        "migrate-status",
        "handover",
    ]
    .iter()
    .any(|name| sub.eq_ignore_ascii_case(name.as_bytes()))
}

/// Runs slot-migration subcommand `sub` (lower case) of CLUSTER, or
/// `None` if `sub` is not one.
pub(crate) fn run(cx: &mut Ctx<'_>, cluster: &Arc<ClusterState>, sub: &str, a: &[Bytes]) -> Option<CmdResult> {
    Some(match sub {
        "import" => import(cx, cluster, a),
        "migrate-open" => open(cx, cluster, a),
        "migrate-pull" => pull(cx, cluster, a),
        "migrate-close" => close(cx, cluster, a),
        "migrate-status" => status(cx, cluster),
        "handover" => handover(cx, cluster, a),
        _ => return None,
    })
}

fn text(a: &Bytes) -> String {
    String::from_utf8_lossy(a).into_owned()
}

fn slots(args: &[Bytes]) -> Result<SlotSet, String> {
    if args.is_empty() {
        return Err("ERR no slots given (START-END or SLOT)".into());
    }
    let args: Vec<String> = args.iter().map(text).collect();
    SlotSet::parse(&args).map_err(|e| format!("ERR {e}"))
}

fn primary_only(cx: &Ctx<'_>) -> Result<(), String> {
    if cx.node.engine.role() != ringkv::Role::Primary || cx.node.fenced() {
        return Err("READONLY slots move between primaries: send this to the shard's primary".into());
    }
    Ok(())
}

fn import(cx: &mut Ctx<'_>, cluster: &Arc<ClusterState>, a: &[Bytes]) -> CmdResult {
    let what = a.get(2).map(|s| s.to_ascii_lowercase());
    match what.as_deref() {
        Some(b"status") => {
            let Some(imp) = cluster.incoming.lock().clone() else {
                cx.out.null();
                return Ok(Next::Done);
            };
            let s = imp.status();
            let mut fields: Vec<(&str, String)> = vec![
                ("state", s.state.name().into()),
                ("from", imp.from.clone()),
                ("slots", imp.slots.to_string()),
                ("source", s.source),
                ("applied", s.applied.to_string()),
                ("snapshot-items", s.snapshot_items.to_string()),
                ("mutations", s.mutations.to_string()),
                ("cleared", s.cleared.to_string()),
                (
                    "elapsed-ms",
                    s.elapsed.unwrap_or_else(|| s.started.elapsed()).as_millis().to_string(),
                ),
            ];
            if let Some(e) = s.epoch {
                fields.push(("epoch", e.to_string()));
            }
            if let Some(e) = s.error {
                fields.push(("error", e));
            }
            cx.out.map(fields.len());
            for (k, v) in fields {
                cx.out.bulk(k.as_bytes());
                cx.out.bulk(v.as_bytes());
            }
        }
        Some(b"cancel") => {
            match cluster.incoming.lock().as_ref() {
                Some(imp) if imp.is_running() => imp.cancel(),
                _ => return Err("ERR no import is running".into()),
            }
            cx.out.ok();
        }
        _ if a.len() >= 4 => {
            primary_only(cx)?;
            let from = text(&a[2]);
            let slots = slots(&a[3..])?;
            let routing = cluster.routing();
            let mine = routing.my_shard();
            let Some(source) = routing.map().shards.iter().position(|s| s.name == from) else {
                return Err(format!("ERR no shard {from} in the slot map"));
            };
            if source == mine {
                return Err("ERR the slots would move from this shard to itself".into());
            }
            if let Some(slot) = slots.slots().find(|&s| routing.owner_of(s) != Some(source)) {
                return Err(format!("ERR slot {slot} is not {from}'s"));
            }
            let mut incoming = cluster.incoming.lock();
            if let Some(imp) = incoming.as_ref().filter(|i| i.is_running()) {
                return Err(format!(
                    "ERR an import of {} from {} is running (CLUSTER IMPORT CANCEL first)",
                    imp.slots, imp.from
                ));
            }
            let target = Target {
                engine: cx.node.engine.clone(),
                cluster: Arc::clone(cluster),
                auth: cx.node.config.requirepass.clone(),
                reply_limit: cx.node.config.limits.bulk_max,
            };
            *incoming = Some(Importer::start(target, from, slots)?);
            cx.out.ok();
        }
        _ => return Err("ERR CLUSTER IMPORT <from-shard> <slots>... | STATUS | CANCEL".into()),
    }
    Ok(Next::Done)
}

fn open(cx: &mut Ctx<'_>, cluster: &ClusterState, a: &[Bytes]) -> CmdResult {
    if a.len() < 4 {
        return Err("ERR CLUSTER MIGRATE-OPEN <to-shard> <slots>...".into());
    }
    primary_only(cx)?;
    let to = text(&a[2]);
    let slots = slots(&a[3..])?;
    let routing = cluster.routing();
    if routing.map().shard(&to).is_none() {
        return Err(format!("ERR no shard {to} in the slot map"));
    }
    if let Some(slot) = slots.slots().find(|&s| routing.owner_of(s) != Some(routing.my_shard())) {
        return Err(format!("ERR slot {slot} is not this shard's"));
    }
    let session = cluster.outgoing.open(&cx.node.engine, to, slots)?;
    cx.out.int(session.id as i64);
    Ok(Next::Done)
}

fn session_id(a: &Bytes) -> Result<u64, String> {
    u64::try_from(int_arg(a)?).map_err(|_| "ERR bad session id".to_string())
}

fn pull(cx: &mut Ctx<'_>, cluster: &ClusterState, a: &[Bytes]) -> CmdResult {
    const USAGE: &str = "ERR CLUSTER MIGRATE-PULL <id> <received-reply> <applied> <max-bytes>";
    if a.len() != 6 {
        return Err(USAGE.into());
    }
    let id = session_id(&a[2])?;
    let number = |v: &Bytes| u64::try_from(int_arg(v)?).map_err(|_| USAGE.to_string());
    let (received, applied) = (number(&a[3])?, number(&a[4])?);
    let max = usize::try_from(number(&a[5])?).map_err(|_| USAGE.to_string())?;
    let session = cluster
        .outgoing
        .get(id)
        .ok_or_else(|| format!("ERR no migration session {id} (it ended, or the source restarted)"))?;
    let (seq, items) = off_the_workers(|| session.pull(received, applied, max.min(PULL_MAX)))?;
    cx.out.array(items.len() + 1);
    cx.out.int(i64::try_from(seq).unwrap_or(i64::MAX));
    for item in &items {
        cx.out.bulk(item);
    }
    Ok(Next::Done)
}

fn close(cx: &mut Ctx<'_>, cluster: &ClusterState, a: &[Bytes]) -> CmdResult {
    let abort = match a.get(3).map(|s| s.to_ascii_lowercase()) {
        None => false,
        Some(s) if s == b"abort" => true,
        Some(_) => return Err("ERR CLUSTER MIGRATE-CLOSE <id> [ABORT]".into()),
    };
    let id = session_id(a.get(2).ok_or("ERR CLUSTER MIGRATE-CLOSE <id> [ABORT]")?)?;
    match cluster.outgoing.close(id, abort) {
        None => return Err(format!("ERR no migration session {id}")),
        Some(Err(phase)) => {
            return Err(format!(
                "ERR the hand-over is past the point of no return ({phase:?}): the slots are, or are becoming, the target's"
            ))
        }
        Some(Ok(())) => {}
    }
    cx.out.ok();
    Ok(Next::Done)
}

fn status(cx: &mut Ctx<'_>, cluster: &ClusterState) -> CmdResult {
    let sessions = cluster.outgoing.all();
    cx.out.array(sessions.len());
    for s in sessions {
        let fields = [
            ("to", s.to.clone()),
            ("slots", s.slots.to_string()),
            ("queued-to", s.queued_to().to_string()),
            ("applied", s.applied().to_string()),
            ("elapsed-ms", s.started.elapsed().as_millis().to_string()),
        ];
        cx.out.map(fields.len());
        for (k, v) in fields {
            cx.out.bulk(k.as_bytes());
            cx.out.bulk(v.as_bytes());
        }
    }
    Ok(Next::Done)
}

fn handover(cx: &mut Ctx<'_>, cluster: &Arc<ClusterState>, a: &[Bytes]) -> CmdResult {
    let mut args = &a[2..];
    let mut timeout = HANDOVER_TIMEOUT;
    if args.len() >= 2 && args[args.len() - 2].eq_ignore_ascii_case(b"timeout") {
        let ms = u64::try_from(int_arg(&args[args.len() - 1])?).map_err(|_| "ERR bad TIMEOUT".to_string())?;
        timeout = Duration::from_millis(ms).min(HANDOVER_TIMEOUT_MAX);
        args = &args[..args.len() - 2];
    }
    primary_only(cx)?;
    let slots = slots(args)?;
    let session: Arc<_> = cluster
        .outgoing
        .find(&slots)
        .ok_or_else(|| format!("ERR no migration of exactly {slots} is streaming from here"))?;
    let engine = cx.node.engine.clone();
    let node = cx.node;
    let may_write = || node.engine.role() == ringkv::Role::Primary && !node.fenced();
    let done = off_the_workers(|| super::handover::hand_over(&engine, cluster, &session, timeout, &may_write))?;
    cx.out.bulk(done.as_bytes());
    Ok(Next::Done)
}
