//! A slot migration's target side: `CLUSTER IMPORT <from-shard> <slots>...`
//! starts an [`Importer`] thread on this shard's primary. It connects to
//! the source shard's primary over RESP (with this node's `requirepass`,
//! as Redis' `masterauth` usually is), opens a stream of the slots
//! (`CLUSTER MIGRATE-OPEN`), deletes whatever keys of them this node still
//! holds (an earlier, abandoned import), and pulls (`CLUSTER
//! MIGRATE-PULL`), applying every item as this node's own write
//! ([`ringkv::Engine::import`]: logged and replicated to its followers),
//! each pull saying how far it has applied. Until the hand-over the slots
//! stay the source's: this node redirects clients for them there, and
//! holds its active expiry so that an imported key never expires by its
//! own clock before the source's deletion arrives. When the source
//! commits, the importer takes the new slot map, confirms
//! (`CLUSTER MIGRATE-CLOSE`), and ends; `CLUSTER IMPORT STATUS` reports
//! its progress throughout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use ringkv::{Engine, Mutation};

use super::cluster::{clear_slots, ClusterState};
use crate::cluster::{range_text, PullItem, SlotSet};
use crate::resp::{BlockingClient, Frame};

/// Bytes of items one pull asks for.
const PULL_BYTES: usize = 256 << 10;
/// Bounds each call to the source (a pull waits at most 100 ms there).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the importer waits, after the commit, to see the slots as its
/// own in the slot map.
const TAKE_MAP_WAIT: Duration = Duration::from_secs(2);
/// How long an import waits for a clean-up of its slots to end.
const PURGE_WAIT: Duration = Duration::from_secs(600);

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImportState {
    /// Connecting to the source and opening the stream.
    Connecting,
    /// Taking the snapshot's keys.
    Copying,
    /// Following the source's log (caught up to `applied`).
    Streaming,
    /// The slots are this shard's now.
    Committed,
    /// Stopped by an error (see `error`); the slots stay the source's.
    Failed,
    /// Stopped by `CLUSTER IMPORT CANCEL`.
    Cancelled,
}

impl ImportState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ImportState::Connecting => "connecting",
            ImportState::Copying => "copying",
            ImportState::Streaming => "streaming",
            ImportState::Committed => "committed",
            ImportState::Failed => "failed",
            ImportState::Cancelled => "cancelled",
        }
    }

    fn running(self) -> bool {
        matches!(
            self,
            ImportState::Connecting | ImportState::Copying | ImportState::Streaming
        )
    }
}

/// What `CLUSTER IMPORT STATUS` reports.
#[derive(Debug, Clone)]
pub(crate) struct ImportStatus {
    pub(crate) state: ImportState,
    pub(crate) error: Option<String>,
    /// The source's RESP endpoint.
    pub(crate) source: String,
    /// The source's session id.
    pub(crate) session: u64,
    /// The source's log position applied here.
    pub(crate) applied: u64,
    /// Keys and hash parts of the snapshot applied.
    pub(crate) snapshot_items: u64,
    /// Mutations of the source's log applied.
    pub(crate) mutations: u64,
    /// Keys of the slots this node held before the import, deleted.
    pub(crate) cleared: u64,
    /// The slot map's epoch after the hand-over.
    pub(crate) epoch: Option<u64>,
    pub(crate) started: Instant,
    pub(crate) elapsed: Option<Duration>,
}

/// One running (or finished) import.
#[derive(Debug)]
pub(crate) struct Importer {
    pub(crate) from: String,
    pub(crate) slots: Arc<SlotSet>,
    status: Mutex<ImportStatus>,
    cancel: AtomicBool,
}

impl Importer {
    /// Starts importing `slots` from shard `from` on a thread of its own.
    pub(crate) fn start(target: Target, from: String, slots: SlotSet) -> Result<Arc<Importer>, String> {
        let importer = Arc::new(Importer {
            from,
            slots: Arc::new(slots),
            status: Mutex::new(ImportStatus {
                state: ImportState::Connecting,
                error: None,
                source: String::new(),
                session: 0,
                applied: 0,
                snapshot_items: 0,
                mutations: 0,
                cleared: 0,
                epoch: None,
                started: Instant::now(),
                elapsed: None,
            }),
            cancel: AtomicBool::new(false),
        });
        let running = Arc::clone(&importer);
        std::thread::Builder::new()
            .name("ringkv-import".into())
            .spawn(move || {
                let result = run(&target, &running);
                let mut status = running.status.lock();
                status.elapsed = Some(status.started.elapsed());
                match result {
                    Ok(epoch) => {
                        status.state = ImportState::Committed;
                        status.epoch = Some(epoch);
                        tracing::info!(slots = %running.slots, from = %running.from, epoch, "slot migration: imported");
                    }
                    Err(Stopped { why, clear }) => {
                        let cancelled = running.cancel.load(Ordering::Acquire);
                        status.state = if cancelled {
                            ImportState::Cancelled
                        } else {
                            ImportState::Failed
                        };
                        tracing::warn!(slots = %running.slots, from = %running.from, error = %why, "slot migration: import stopped");
                        status.error = Some(why);
                        drop(status);
                        // What was imported is of no use once the source
                        // agreed to the abort: the slots stay its own. (A
                        // copy kept otherwise goes with the next import.)
                        if !clear {
                            return;
                        }
                        if let Err(e) = clear_slots(&target.engine, &running.slots) {
                            tracing::warn!(error = %e, "slot migration: clearing the abandoned import");
                        }
                    }
                }
            })
            .map_err(|e| format!("ERR starting the import: {e}"))?;
        Ok(importer)
    }

    /// A copy of the progress.
    pub(crate) fn status(&self) -> ImportStatus {
        self.status.lock().clone()
    }

    /// Still connecting, copying or streaming.
    pub(crate) fn is_running(&self) -> bool {
        self.status.lock().state.running()
    }

    /// Asks the import to stop (before its commit; a committed import is
    /// over already).
    pub(crate) fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }

    fn update(&self, f: impl FnOnce(&mut ImportStatus)) {
        f(&mut self.status.lock());
    }
}

/// What an import works with on the target node.
pub(crate) struct Target {
    pub(crate) engine: Engine,
    pub(crate) cluster: Arc<ClusterState>,
    /// The password for the source (this node's `requirepass`).
    pub(crate) auth: Option<String>,
    /// The largest reply accepted from the source (bytes).
    pub(crate) reply_limit: usize,
}

/// How an import stopped.
struct Stopped {
    why: String,
    /// The source agreed to the abort: this node's copy can go.
    clear: bool,
}

/// The connection to the source, connected again (bounded) when it drops:
/// a pull names its session, so the stream goes on where it was.
struct Link<'a> {
    conn: BlockingClient,
    endpoint: String,
    target: &'a Target,
}

/// Reconnections tried after a dropped connection, 200 ms apart.
const RECONNECTS: u32 = 50;

impl<'a> Link<'a> {
    fn open(endpoint: &str, target: &'a Target) -> Result<Link<'a>, String> {
        let mut conn = BlockingClient::connect(endpoint, CALL_TIMEOUT).map_err(|e| e.to_string())?;
        conn.set_reply_limit(target.reply_limit.max(PULL_BYTES) + (1 << 20));
        if let Some(password) = &target.auth {
            match conn.call(&[&b"AUTH"[..], password.as_bytes()]) {
                Ok(Frame::Simple(_)) => {}
                Ok(other) => return Err(format!("AUTH answered {other:?}")),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(Link {
            conn,
            endpoint: endpoint.to_string(),
            target,
        })
    }

    /// One call; an error reply is an `Err`; a dropped connection is
    /// connected again (bounded) and the call repeated.
    fn call(&mut self, args: &[&[u8]]) -> Result<Frame, String> {
        let mut tries = 0;
        loop {
            match self.conn.call(args) {
                Ok(Frame::Error(e)) => return Err(format!("{}: {e}", self.endpoint)),
                Ok(frame) => return Ok(frame),
                Err(e) if tries < RECONNECTS => {
                    tries += 1;
                    tracing::warn!(error = %e, "slot migration: the source's connection dropped, connecting again");
                    std::thread::sleep(Duration::from_millis(200));
                    if let Ok(fresh) = Link::open(&self.endpoint, self.target) {
                        self.conn = fresh.conn;
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// The import: returns the slot map's epoch after the hand-over.
fn run(target: &Target, imp: &Importer) -> Result<u64, Stopped> {
    let (engine, cluster) = (&target.engine, &*target.cluster);
    // Before a session is open nothing was imported: nothing is cleared
    // (the slots may even be this shard's already, after a hand-over).
    let early = |why: String| Stopped { why, clear: false };
    if engine.role() != ringkv::Role::Primary {
        return Err(early("this node is a replica: import on its shard's primary".into()));
    }
    let routing = cluster.routing();
    let my_shard = routing.map().shards[routing.my_shard()].name.clone();
    let source = routing
        .map()
        .shard(&imp.from)
        .ok_or_else(|| early(format!("no shard {} in the slot map", imp.from)))?
        .primary
        .endpoint();
    imp.update(|s| s.source.clone_from(&source));
    let mut link = Link::open(&source, target).map_err(early)?;
    // Imported keys expire when the source's deletions arrive.
    let _hold = engine.hold_active_expiry();
    let ranges: Vec<String> = imp.slots.ranges().into_iter().map(range_text).collect();
    let mut open: Vec<&[u8]> = vec![b"CLUSTER", b"MIGRATE-OPEN", my_shard.as_bytes()];
    open.extend(ranges.iter().map(|r| r.as_bytes()));
    // Not repeated on a dropped connection: a second open of the same
    // slots would be refused while the first is alive.
    let opened = match link.conn.call(&open) {
        Ok(Frame::Error(e)) => Err(format!("{source}: {e}")),
        Ok(frame) => Ok(frame),
        Err(e) => Err(e.to_string()),
    };
    let session = match opened.map_err(early)? {
        Frame::Int(id) if id > 0 => id as u64,
        other => return Err(early(format!("MIGRATE-OPEN answered {other:?}"))),
    };
    let session_arg = session.to_string();
    imp.update(|s| {
        s.session = session;
        s.state = ImportState::Copying;
    });
    let result = stream(engine, cluster, imp, &mut link, &session_arg);
    match result {
        Ok(epoch) => {
            take_map(cluster, &imp.slots);
            let close: [&[u8]; 3] = [b"CLUSTER", b"MIGRATE-CLOSE", session_arg.as_bytes()];
            if let Err(e) = link.call(&close) {
                // The source lifts its fence after a bounded wait anyway.
                tracing::warn!(error = %e, "slot migration: confirming the hand-over");
            }
            Ok(epoch)
        }
        Err(why) => {
            // This copy may go only if the source agrees to the abort: a
            // hand-over past its map change makes it the slots' only one.
            let close: [&[u8]; 4] = [b"CLUSTER", b"MIGRATE-CLOSE", session_arg.as_bytes(), b"ABORT"];
            match link.call(&close) {
                // The source keeps the slots: unless the map says otherwise
                // (read again), this copy is of no use.
                Ok(_) => {
                    let clear = !(cluster.poll().is_ok() && owns(cluster, &imp.slots));
                    Err(Stopped { why, clear })
                }
                Err(refused) => {
                    if cluster.poll().is_ok() && owns(cluster, &imp.slots) {
                        tracing::warn!(error = %why, "slot migration: the import failed after the hand-over committed; this node keeps the slots");
                        return Ok(cluster.routing().map().epoch);
                    }
                    Err(Stopped {
                        why: format!("{why}; the copy is kept: the source did not confirm the abort ({refused})"),
                        clear: false,
                    })
                }
            }
        }
    }
}

fn owns(cluster: &ClusterState, slots: &SlotSet) -> bool {
    let r = cluster.routing();
    slots.slots().all(|s| r.owner_of(s) == Some(r.my_shard()))
}

/// Clears the slots, then pulls and applies until the source commits.
fn stream(
    engine: &Engine,
    cluster: &ClusterState,
    imp: &Importer,
    link: &mut Link<'_>,
    session: &str,
) -> Result<u64, String> {
    // A hand-over's clean-up of these slots (they left this shard lately)
    // would delete what is imported: let it finish first.
    let deadline = Instant::now() + PURGE_WAIT;
    while cluster.purging(&imp.slots) {
        if Instant::now() >= deadline || imp.cancel.load(Ordering::Acquire) {
            return Err("the slots' clean-up from an earlier hand-over is still running here".to_string());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Never clear slots this shard owns (a routing not yet updated after
    // an earlier hand-over could have let the import through).
    let _ = cluster.poll();
    if owns(cluster, &imp.slots) {
        return Err("the slots are this shard's already".into());
    }
    let cleared = clear_slots(engine, &imp.slots)?;
    imp.update(|s| s.cleared = cleared);
    let mut applied = 0u64;
    // The number of the last reply applied: a pull repeated after a
    // dropped connection gets that reply again, never skips one.
    let mut received = 0u64;
    loop {
        if imp.cancel.load(Ordering::Acquire) {
            return Err("cancelled".to_string());
        }
        let (received_arg, applied_arg) = (received.to_string(), applied.to_string());
        let max = PULL_BYTES.to_string();
        let pull: [&[u8]; 6] = [
            b"CLUSTER",
            b"MIGRATE-PULL",
            session.as_bytes(),
            received_arg.as_bytes(),
            applied_arg.as_bytes(),
            max.as_bytes(),
        ];
        let Frame::Array(reply) = link.call(&pull)? else {
            return Err("MIGRATE-PULL did not answer an array".into());
        };
        let mut reply = reply.into_iter();
        match reply.next() {
            Some(Frame::Int(n)) if u64::try_from(n).ok() == received.checked_add(1) => received += 1,
            other => return Err(format!("MIGRATE-PULL answered reply {other:?} after reply {received}")),
        }
        let (mut snapshot_items, mut mutations) = (0, 0);
        for item in reply {
            let Frame::Bulk(bytes) = item else {
                return Err("MIGRATE-PULL answered a non-bulk item".into());
            };
            match PullItem::decode(Bytes::from(bytes)).map_err(|e| e.to_string())? {
                PullItem::Mutation { offset, mutation } => {
                    apply(engine, &imp.slots, mutation)?;
                    if offset == 0 {
                        snapshot_items += 1;
                    } else {
                        mutations += 1;
                    }
                }
                PullItem::Position(p) => applied = applied.max(p),
                PullItem::Committed { epoch } => return Ok(epoch),
                PullItem::Failed(why) => return Err(format!("the source stopped the stream: {why}")),
            }
        }
        imp.update(|s| {
            s.snapshot_items += snapshot_items;
            s.mutations += mutations;
            if applied > 0 {
                s.applied = applied;
                s.state = ImportState::Streaming;
            }
        });
    }
}

/// Reads the slot map again until it gives this shard `slots` (bounded:
/// the map poller takes it later otherwise).
fn take_map(cluster: &ClusterState, slots: &SlotSet) {
    let deadline = Instant::now() + TAKE_MAP_WAIT;
    loop {
        let owned = cluster.reload().is_ok() && {
            let r = cluster.routing();
            slots.slots().all(|s| r.owner_of(s) == Some(r.my_shard()))
        };
        if owned || Instant::now() >= deadline {
            if !owned {
                tracing::warn!(slots = %slots, "slot migration: committed, but the slot map read here does not show it yet");
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Applies one item of the stream: a flush of the source removes this
/// node's keys of the slots (only), a batch holding one is applied part by
/// part, anything else is imported as one write.
fn apply(engine: &Engine, slots: &SlotSet, m: Mutation) -> Result<(), String> {
    let mut outside = None;
    m.for_each_key(&mut |k| {
        if outside.is_none() && !slots.contains_key(k) {
            outside = Some(String::from_utf8_lossy(k).into_owned());
        }
    });
    if let Some(key) = outside {
        return Err(format!("the source sent a change of {key:?}, a key outside the slots"));
    }
    match m {
        Mutation::Flush => clear_slots(engine, slots).map(|_| ()),
        Mutation::Batch(parts) if parts.iter().any(Mutation::touches_all_keys) => {
            parts.into_iter().try_for_each(|p| apply(engine, slots, p))
        }
        m => engine
            .import(&m)
            .map_err(|e| format!("importing {m:?}: {e} (this node's copy differs from the source's)")),
    }
}
