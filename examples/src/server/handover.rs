//! The hand-over of migrating slots, on their source: the short pause at
//! the end of a slot migration, and the fence writers pass through.
//!
//! Every write in cluster mode runs inside [`HandoverFence::enter`] (a
//! shared lock: one atomic operation, unless a hand-over is taking it
//! exclusively, which lasts until the writes in flight end). `CLUSTER
//! HANDOVER` ([`hand_over`]) then:
//!
//! 1. fences the slots: it takes the lock exclusively, so no write to them
//!    is in flight once it holds it, and from then on writes to them wait
//!    ([`HandoverFence::wait`], asynchronously, bounded) instead of running;
//! 2. notes the log offset past every write made so far (`X`);
//! 3. waits, bounded by the command's time-out, for the target to have
//!    applied the stream up to `X` (its pulls say how far it is);
//! 4. gives the slots to the target in the slot map by one compare-and-swap
//!    in the map's source (etcd or a file), the commit point;
//! 5. tells the target (its next pull says `Committed`) and waits briefly
//!    for it to take the new map, so clients redirected to it are served;
//! 6. takes the new map itself and lifts the fence: the writers that waited
//!    are redirected with MOVED, to the target;
//! 7. deletes its copies of the slots' keys in the background (logged, so
//!    its followers drop them too).
//!
//! If the target does not catch up in time, or the map cannot be changed,
//! the fence is lifted with nothing changed: the writes that waited run
//! here, and the hand-over can be tried again. No write to the slots that
//! this node acknowledged is left behind: each is before `X`, and the
//! target had applied `X` before the map changed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{RwLock, RwLockReadGuard};
use ringkv::Engine;

use super::cluster::ClusterState;
use super::migrate_source::SourceSession;
use crate::cluster::{range_text, MapError, SlotMap, SlotSet};

/// How long the hand-over waits for the target to take the new map after
/// the commit, before lifting the fence anyway (the target also polls the
/// map).
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

/// Held by a write while it runs (see the module's docs).
pub(crate) type FenceEntry<'a> = RwLockReadGuard<'a, Option<Arc<SlotSet>>>;

/// The fence of slots being handed over.
#[derive(Debug, Default)]
pub(crate) struct HandoverFence {
    fenced: RwLock<Option<Arc<SlotSet>>>,
    lifted: tokio::sync::Notify,
    /// The largest log offset a write that ran inside the fence ended at.
    last_end: AtomicU64,
    /// A hand-over is running (one at a time: the fence is one set).
    pub(crate) running: std::sync::atomic::AtomicBool,
}

impl HandoverFence {
    /// Lets a write of `slot` run (`None`: a write without keys, such as
    /// FLUSHALL, or of several slots) unless its slots are fenced; the
    /// entry is held while the write runs.
    pub(crate) fn enter(&self, slot: Option<u16>) -> Option<FenceEntry<'_>> {
        let entry = self.fenced.read();
        let blocked = match (&*entry, slot) {
            (None, _) => false,
            (Some(set), Some(s)) => set.contains(s),
            (Some(_), None) => true,
        };
        (!blocked).then_some(entry)
    }

    /// A write inside the fence ended at log offset `end`.
    pub(crate) fn note_end(&self, end: u64) {
        self.last_end.fetch_max(end, Ordering::AcqRel);
    }

    /// Waits (at most `limit`) until a write of `slot` may run; false if
    /// the limit passed first.
    pub(crate) async fn wait(&self, slot: Option<u16>, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let lifted = self.lifted.notified();
            if self.enter(slot).is_some() {
                return true;
            }
            if tokio::time::timeout_at(deadline, lifted).await.is_err() {
                return self.enter(slot).is_some();
            }
        }
    }

    /// Slots are fenced now (something to wait for).
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.read().is_some()
    }

    /// Fences `slots` once no write is in flight; returns the log offset
    /// past every write that ran inside the fence.
    fn fence(&self, slots: Arc<SlotSet>) -> u64 {
        let mut fenced = self.fenced.write();
        *fenced = Some(slots);
        self.last_end.load(Ordering::Acquire)
    }

    fn lift(&self) {
        *self.fenced.write() = None;
        self.lifted.notify_waiters();
    }
}

/// Runs the hand-over of `session`'s slots (see the module's docs), waiting
/// at most `timeout` for the target to catch up; the reply's text, or the
/// error's (with its code). One hand-over runs at a time on a node.
///
/// `may_write` says whether this node may still take writes for its shard
/// (its leader lease's fence is open and it is the primary): asked just
/// before the map changes, so that a node paused past its lease (another
/// one leads the shard now, and takes writes for the slots) does not give
/// them away.
pub(crate) fn hand_over(
    engine: &Engine,
    cluster: &Arc<ClusterState>,
    session: &Arc<SourceSession>,
    timeout: Duration,
    may_write: &dyn Fn() -> bool,
) -> Result<String, String> {
    if cluster.fence.running.swap(true, Ordering::AcqRel) {
        return Err("ERR another hand-over is running on this node".into());
    }
    let result = run(engine, cluster, session, timeout, may_write);
    // A thread finishes what is still pending, and clears `running` then.
    if !matches!(result, Err(Pending::Unknown(_)) | Ok((_, false))) {
        cluster.fence.running.store(false, Ordering::Release);
    }
    match result {
        Ok((text, true)) => Ok(text),
        Ok((e, false)) | Err(Pending::Failed(e) | Pending::Unknown(e)) => Err(e),
    }
}

/// How a hand-over did not finish.
enum Pending {
    /// Nothing changed (the fence is lifted).
    Failed(String),
    /// The map's compare-and-swap failed and the map cannot be read back:
    /// the slots stay fenced until a thread learns the outcome.
    Unknown(String),
}

fn run(
    engine: &Engine,
    cluster: &Arc<ClusterState>,
    session: &Arc<SourceSession>,
    timeout: Duration,
    may_write: &dyn Fn() -> bool,
) -> Result<(String, bool), Pending> {
    let routing = cluster.routing();
    let my = routing.map().shards[routing.my_shard()].name.clone();
    if let Some(slot) = session
        .slots
        .slots()
        .find(|&s| routing.owner_of(s) != Some(routing.my_shard()))
    {
        return Err(Pending::Failed(format!(
            "ERR slot {slot} is not this shard's ({my}) to hand over"
        )));
    }
    let log = engine
        .log()
        .ok_or_else(|| Pending::Failed("ERR slot migration needs the source's ring log".to_string()))?;
    let started = Instant::now();
    let deadline = started + timeout;
    let fenced_end = cluster.fence.fence(Arc::clone(&session.slots));
    let fenced_at = Instant::now();
    // Every write to the slots is in the log before this offset: those
    // that ran inside the fence end at most at `fenced_end`, and any other
    // record published so far is before `published`.
    let x = fenced_end.max(log.published());
    session.hold_from(x);
    let give_up = |why: String| {
        session.resume();
        cluster.fence.lift();
        Pending::Failed(why)
    };
    if !session.wait_applied(x, deadline) {
        return Err(give_up(format!(
            "TRYAGAIN the target applied the stream up to {} of {x} within {} ms: nothing changed, writes resumed",
            session.applied(),
            timeout.as_millis()
        )));
    }
    if !may_write() {
        return Err(give_up(
            "ERR this node may no longer take writes for its shard (its leader lease lapsed, or it is no longer the primary): nothing changed".into(),
        ));
    }
    if !session.begin_commit() {
        return Err(give_up(
            "ERR the target gave the import up: nothing changed, writes resumed".into(),
        ));
    }
    let to = session.to.clone();
    let slots = Arc::clone(&session.slots);
    let mut give = |current: &SlotMap| -> Result<SlotMap, MapError> {
        if let Some(slot) = slots
            .slots()
            .find(|&s| current.owner_of(s).is_none_or(|o| o.name != my))
        {
            return Err(MapError::BadMigration(format!(
                "slot {slot} is no longer {my}'s in the stored map"
            )));
        }
        let mut map = current.clone();
        for range in slots.ranges() {
            map = map.with_slots_assigned(range, &to)?;
        }
        Ok(map)
    };
    let map = match cluster.replace_map(&mut give) {
        Ok(map) => map,
        Err(e) => match outcome(cluster, &session.slots, &session.to) {
            // The compare-and-swap's answer was lost, but it took.
            Outcome::Committed(map) => map,
            Outcome::NotCommitted => {
                return Err(give_up(format!(
                    "ERR the slot map was not changed ({e}): nothing changed, writes resumed"
                )))
            }
            Outcome::Unknown => {
                resolve_later(engine.clone(), Arc::clone(cluster), Arc::clone(session), fenced_at);
                return Err(Pending::Unknown(format!(
                    "ERR the slot map's change failed ({e}) and the map cannot be read back: writes to the slots wait until it can"
                )));
            }
        },
    };
    Ok(finish(engine, cluster, session, map, x, fenced_at))
}

/// After the commit: tell the target, route by the new map, lift the
/// fence, clean up. The reply's text, and whether it is all done (else a
/// thread waits for a map this node can route by, then lifts the fence,
/// cleans up and clears `running`).
fn finish(
    engine: &Engine,
    cluster: &Arc<ClusterState>,
    session: &Arc<SourceSession>,
    map: SlotMap,
    x: u64,
    fenced_at: Instant,
) -> (String, bool) {
    session.commit(map.epoch);
    let confirmed = session.wait_confirmed(Instant::now() + CONFIRM_WAIT);
    let installed = cluster.install(map.clone());
    if let Err(e) = &installed {
        // Still routing by the old map: lifting the fence would take
        // writes for slots that are not this shard's any more. They stay
        // fenced (TRYAGAIN after their bound) until a map is taken.
        tracing::error!(error = %e, "hand-over: the new slot map is stored but this node cannot route by it; the slots stay fenced");
        session.stop_producer();
        await_routing(engine.clone(), Arc::clone(cluster), Arc::clone(&session.slots));
        return (
            format!("ERR the slot map gives the slots away but this node cannot route by it ({e}): their writes stay fenced until it can"),
            false,
        );
    }
    // Routing by the new map: the writes that waited are redirected.
    cluster.fence.lift();
    let paused = fenced_at.elapsed();
    cluster.note_handover(paused);
    tracing::info!(
        slots = %session.slots,
        to = %session.to,
        offset = x,
        paused_us = paused.as_micros() as u64,
        confirmed,
        epoch = map.epoch,
        "slot migration: handed over"
    );
    // The target pulls nothing after `Committed`; and the producer stops
    // before the clean-up's deletions are logged, so none is ever queued.
    session.stop_producer();
    cluster.start_purge(engine.clone(), Arc::clone(&session.slots));
    let ranges: Vec<String> = session.slots.ranges().into_iter().map(range_text).collect();
    let text = format!(
        "handed over {} to {} at offset {x}, epoch {}: writes to them paused {} us{}",
        ranges.join(","),
        session.to,
        map.epoch,
        paused.as_micros(),
        if confirmed {
            ""
        } else {
            " (the target did not confirm in time; it takes the map when it next polls it)"
        }
    );
    (text, true)
}

/// After a commit this node could not route by: polls the map until the
/// routing gives `slots` away, then lifts the fence, cleans up, and lets
/// the next hand-over run.
fn await_routing(engine: Engine, cluster: Arc<ClusterState>, slots: Arc<SlotSet>) {
    let spawned = std::thread::Builder::new()
        .name("ringkv-handover-route".into())
        .spawn(move || {
            loop {
                std::thread::sleep(RESOLVE_EVERY);
                let _ = cluster.poll();
                let r = cluster.routing();
                if slots.slots().all(|s| r.owner_of(s) != Some(r.my_shard())) {
                    break;
                }
            }
            cluster.fence.lift();
            cluster.start_purge(engine, slots);
            cluster.fence.running.store(false, Ordering::Release);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "hand-over: cannot start the thread that waits for the new routing");
    }
}

/// What the stored map says after a failed compare-and-swap.
enum Outcome {
    /// It gives every slot to the target.
    Committed(SlotMap),
    /// It does not.
    NotCommitted,
    /// It cannot be read.
    Unknown,
}

fn outcome(cluster: &ClusterState, slots: &SlotSet, to: &str) -> Outcome {
    match cluster.load_map() {
        Ok(map) if slots.slots().all(|s| map.owner_of(s).is_some_and(|o| o.name == to)) => Outcome::Committed(map),
        Ok(_) => Outcome::NotCommitted,
        Err(_) => Outcome::Unknown,
    }
}

/// How often the outcome of a hand-over whose map change was lost is
/// looked for.
const RESOLVE_EVERY: Duration = Duration::from_millis(200);

/// Keeps the slots fenced and reads the map until it says whether the
/// hand-over's change took; then finishes it, or lifts the fence.
fn resolve_later(engine: Engine, cluster: Arc<ClusterState>, session: Arc<SourceSession>, fenced_at: Instant) {
    let x = session.applied();
    let spawned = std::thread::Builder::new()
        .name("ringkv-handover-resolve".into())
        .spawn(move || {
            loop {
                std::thread::sleep(RESOLVE_EVERY);
                match outcome(&cluster, &session.slots, &session.to) {
                    Outcome::Committed(map) => {
                        let (done, all) = finish(&engine, &cluster, &session, map, x, fenced_at);
                        tracing::info!(%done, "hand-over: the lost map change had taken");
                        if !all {
                            // `await_routing` clears `running`.
                            return;
                        }
                        break;
                    }
                    Outcome::NotCommitted => {
                        session.resume();
                        cluster.fence.lift();
                        tracing::warn!("hand-over: the lost map change had not taken; writes resumed here");
                        break;
                    }
                    Outcome::Unknown => {}
                }
            }
            cluster.fence.running.store(false, Ordering::Release);
        });
    if let Err(e) = spawned {
        // Without the thread nobody would lift the fence: the node keeps
        // the slots fenced (their writes answer TRYAGAIN) until restarted.
        tracing::error!(error = %e, "hand-over: cannot start the thread that learns the outcome");
    }
}
