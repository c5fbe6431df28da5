//! The hand-over of migrating slots, on their source: the short pause at
//! the end of a slot migration, and the fence writers pass through.
//!
//! Every write in cluster mode runs inside [`HandoverFence::enter`] (a
//! shared lock, so taking it costs one atomic operation). `CLUSTER
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
/// error's (with its code).
pub(crate) fn hand_over(
    engine: &Engine,
    cluster: &Arc<ClusterState>,
    session: &Arc<SourceSession>,
    timeout: Duration,
) -> Result<String, String> {
    let routing = cluster.routing();
    let my = routing.map().shards[routing.my_shard()].name.clone();
    if let Some(slot) = session
        .slots
        .slots()
        .find(|&s| routing.owner_of(s) != Some(routing.my_shard()))
    {
        return Err(format!("ERR slot {slot} is not this shard's ({my}) to hand over"));
    }
    let log = engine
        .log()
        .ok_or_else(|| "ERR slot migration needs the source's ring log".to_string())?;
    let started = Instant::now();
    let deadline = started + timeout;
    let fenced_end = cluster.fence.fence(Arc::clone(&session.slots));
    let fenced_at = Instant::now();
    // Every write to the slots is in the log before this offset: those
    // that ran inside the fence end at most at `fenced_end`, and any other
    // record published so far is before `published`.
    let x = fenced_end.max(log.published());
    if !session.wait_applied(x, deadline) {
        cluster.fence.lift();
        return Err(format!(
            "TRYAGAIN the target applied the stream up to {} of {x} within {} ms: nothing changed, writes resumed",
            session.applied(),
            timeout.as_millis()
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
        Err(e) => match committed_anyway(cluster, &session.slots, &to) {
            // The compare-and-swap's answer was lost, but it took.
            Some(map) => map,
            None => {
                cluster.fence.lift();
                return Err(format!(
                    "ERR the slot map was not changed ({e}): nothing changed, writes resumed"
                ));
            }
        },
    };
    session.commit(map.epoch);
    let confirmed = session.wait_confirmed(Instant::now() + CONFIRM_WAIT);
    let installed = cluster.install(map.clone());
    cluster.fence.lift();
    let paused = fenced_at.elapsed();
    cluster.note_handover(paused);
    // The target pulls nothing after `Committed`; and the producer stops
    // before the clean-up's deletions are logged, so none is ever queued.
    session.stop_producer();
    if let Err(e) = &installed {
        tracing::error!(error = %e, "hand-over: the new slot map is stored but this node could not take it; it polls the map");
    }
    tracing::info!(
        slots = %session.slots,
        to = %session.to,
        offset = x,
        paused_us = paused.as_micros() as u64,
        confirmed,
        epoch = map.epoch,
        "slot migration: handed over"
    );
    cluster.start_purge(engine.clone(), Arc::clone(&session.slots));
    let ranges: Vec<String> = session.slots.ranges().into_iter().map(range_text).collect();
    Ok(format!(
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
    ))
}

/// After a failed compare-and-swap: the stored map, if it reads and already
/// gives every slot of `slots` to `to`.
fn committed_anyway(cluster: &ClusterState, slots: &SlotSet, to: &str) -> Option<SlotMap> {
    let map = cluster.load_map().ok()?;
    slots
        .slots()
        .all(|s| map.owner_of(s).is_some_and(|o| o.name == to))
        .then_some(map)
}
