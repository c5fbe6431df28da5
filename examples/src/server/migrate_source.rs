//! A slot migration's source side: the sessions a target opens with
//! `CLUSTER MIGRATE-OPEN` and drains with `CLUSTER MIGRATE-PULL`.
//!
//! Each session has a producer thread: it takes a filtered snapshot of the
//! slots ([`ringkv::Engine::snapshot_filtered_to`], no fork, writers go on)
//! and queues its keys as mutations, then tails the ring log from the
//! snapshot's offset, queueing the mutations that concern the slots
//! ([`filter_mutation`]) and the position reached after each batch. The
//! queue is bounded in bytes: a slow target slows the producer (and,
//! through the snapshot's own bound, never the writers beyond
//! `writer_wait_ms`), never the source's memory. A pull hands out what is
//! queued (waiting up to [`PULL_WAIT`] for something) and carries the
//! position the target has applied, which the hand-over
//! (`server/handover.rs`) waits for.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use ringkv::log::LogError;
use ringkv::snapshot::format::SnapshotReader;
use ringkv::snapshot::SnapshotError;
use ringkv::{Engine, Mutation};

use crate::cluster::{filter_mutation, snapshot_item, PullItem, SlotSet};

/// Longest a pull waits for an item when none is queued.
pub(crate) const PULL_WAIT: Duration = Duration::from_millis(100);
/// Bytes of items a session queues before its producer waits.
const QUEUE_BOUND: usize = 8 << 20;
/// A session nobody pulled from for this long is dropped (its target died).
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// How long a session's snapshot waits for the stream slot (a follower's
/// full sync may hold it).
const SNAPSHOT_SLOT_WAIT: Duration = Duration::from_secs(60);
/// Log bytes read per batch of the tail.
const TAIL_BATCH: usize = 1 << 20;

/// Where a session is, as the hand-over and the target's abort see it: an
/// abort counts only if it comes before the hand-over's compare-and-swap,
/// and a hand-over starts only on a session nobody aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Copying and following the log.
    Streaming,
    /// A hand-over is changing the slot map: the outcome is not known yet.
    Committing,
    /// The map gives the slots to the target (at this epoch).
    Committed(u64),
    /// The target gave up, or the session was dropped.
    Aborted,
}

/// One target's stream of slots.
pub(crate) struct SourceSession {
    /// Random: a pull names its session by it, so another client cannot
    /// guess it and drain (or fake the progress of) someone else's stream.
    pub(crate) id: u64,
    /// The shard the slots move to.
    pub(crate) to: String,
    pub(crate) slots: Arc<SlotSet>,
    queue: Mutex<Queue>,
    changed: Condvar,
    /// The position the target has applied (from its pulls, never beyond
    /// `handed_to`).
    applied: AtomicU64,
    /// The furthest position handed out in a pull.
    handed_to: AtomicU64,
    /// The last reply's number and items, sent again if the target says
    /// it did not get it (its connection dropped).
    last_reply: Mutex<(u64, Vec<Vec<u8>>)>,
    /// The position the producer has queued up to.
    queued_to: AtomicU64,
    /// The producer stops (the session ended, or the hand-over committed).
    closed: AtomicBool,
    phase: Mutex<Phase>,
    /// While a hand-over has the slots fenced: the log offset from which
    /// the producer holds mutations back instead of queueing them (only
    /// the source's own deletions can be there), to drop them if the
    /// hand-over commits and to send them if it does not.
    hold_from: AtomicU64,
    /// The target said it owns the slots (`MIGRATE-CLOSE` after the commit).
    confirmed: (Mutex<bool>, Condvar),
    last_pull: Mutex<Instant>,
    pub(crate) started: Instant,
    /// The producer thread has returned.
    producer_done: (Mutex<bool>, Condvar),
}

#[derive(Default)]
struct Queue {
    /// Encoded items, each with its position (a `Position`) or its log
    /// offset (a `Mutation` of the log).
    items: VecDeque<(Vec<u8>, Option<u64>, Option<u64>)>,
    bytes: usize,
    /// The producer stopped with this reason (queued after the rest).
    failed: Option<String>,
}

impl std::fmt::Debug for SourceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSession")
            .field("to", &self.to)
            .field("slots", &self.slots)
            .field("phase", &*self.phase.lock())
            .finish_non_exhaustive()
    }
}

impl SourceSession {
    /// The position the target reported applied.
    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// The position the producer has reached in the log.
    pub(crate) fn queued_to(&self) -> u64 {
        self.queued_to.load(Ordering::Acquire)
    }

    /// Where the session is.
    pub(crate) fn phase(&self) -> Phase {
        *self.phase.lock()
    }

    /// Wakes every waiter, under the queue's lock (so none misses it).
    fn wake(&self) {
        let q = self.queue.lock();
        self.changed.notify_all();
        drop(q);
    }

    /// The hand-over fenced the slots with everything before `offset` in
    /// the log: later mutations are held back.
    pub(crate) fn hold_from(&self, offset: u64) {
        self.hold_from.store(offset, Ordering::Release);
    }

    /// The hand-over is changing the map: from now on an abort is refused.
    /// False if the target aborted first.
    pub(crate) fn begin_commit(&self) -> bool {
        let mut phase = self.phase.lock();
        if *phase != Phase::Streaming || self.closed.load(Ordering::Acquire) {
            return false;
        }
        *phase = Phase::Committing;
        true
    }

    /// The map did not change: streaming goes on (held mutations are sent).
    pub(crate) fn resume(&self) {
        let mut phase = self.phase.lock();
        if *phase == Phase::Committing {
            *phase = Phase::Streaming;
        }
        self.hold_from.store(u64::MAX, Ordering::Release);
        drop(phase);
        self.wake();
    }

    /// The map gives the slots to the target at `epoch`: the next pull
    /// says so, and the producer stops (what it held back is dropped).
    pub(crate) fn commit(&self, epoch: u64) {
        *self.phase.lock() = Phase::Committed(epoch);
        self.closed.store(true, Ordering::Release);
        // A deletion of the source's own from the fence on may have been
        // queued before the producer saw the fence: it must not reach the
        // target, which owns the slots now.
        let x = self.hold_from.load(Ordering::Acquire);
        let mut q = self.queue.lock();
        let before = q.items.len();
        q.items.retain(|(_, _, offset)| offset.is_none_or(|o| o < x));
        if q.items.len() != before {
            q.bytes = q.items.iter().map(|(b, _, _)| b.len()).sum();
        }
        self.changed.notify_all();
        drop(q);
    }

    /// The target gives up: refused once a hand-over is changing the map
    /// (the caller must then not drop its copy).
    pub(crate) fn abort(&self) -> Result<(), Phase> {
        let mut phase = self.phase.lock();
        match *phase {
            Phase::Streaming | Phase::Aborted => {
                *phase = Phase::Aborted;
                drop(phase);
                self.close();
                Ok(())
            }
            other => Err(other),
        }
    }

    /// Waits (until `deadline`) for the target to confirm the commit.
    pub(crate) fn wait_confirmed(&self, deadline: Instant) -> bool {
        let (lock, cv) = &self.confirmed;
        let mut done = lock.lock();
        while !*done {
            if cv.wait_until(&mut done, deadline).timed_out() {
                break;
            }
        }
        *done
    }

    /// Waits (until `deadline`) for the target to have applied `offset`;
    /// false if it did not, or the session ended.
    pub(crate) fn wait_applied(&self, offset: u64, deadline: Instant) -> bool {
        let mut q = self.queue.lock();
        loop {
            if self.closed.load(Ordering::Acquire) || q.failed.is_some() {
                return false;
            }
            if self.applied() >= offset {
                return true;
            }
            if self.changed.wait_until(&mut q, deadline).timed_out() {
                return self.applied() >= offset && !self.closed.load(Ordering::Acquire);
            }
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake();
    }

    /// Stops the producer and waits (bounded) for it to return: nothing is
    /// queued after this. What is queued is still pulled.
    pub(crate) fn stop_producer(&self) {
        self.close();
        let (lock, cv) = &self.producer_done;
        let mut done = lock.lock();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !*done {
            if cv.wait_until(&mut done, deadline).timed_out() {
                tracing::warn!(slots = %self.slots, "slot migration: the producer did not stop within 5 s");
                break;
            }
        }
    }

    fn idle(&self) -> bool {
        self.last_pull.lock().elapsed() > IDLE_LIMIT
    }

    /// Queues one item; waits (no lock of the engine held) while the queue
    /// is over its bound. False once the session is closed, or when the
    /// target stopped pulling (it is then closed).
    fn push(&self, item: &PullItem) -> bool {
        let bytes = item.encode();
        let (position, offset) = match item {
            PullItem::Position(p) => (Some(*p), None),
            PullItem::Mutation { offset, .. } if *offset > 0 => (None, Some(*offset)),
            _ => (None, None),
        };
        let mut q = self.queue.lock();
        while q.bytes > QUEUE_BOUND && !self.closed.load(Ordering::Acquire) {
            if self.idle() {
                drop(q);
                tracing::warn!(slots = %self.slots, "slot migration: the target stopped pulling, session closed");
                self.abort_idle();
                return false;
            }
            self.changed.wait_for(&mut q, Duration::from_millis(100));
        }
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        q.bytes += bytes.len();
        q.items.push_back((bytes, position, offset));
        if let Some(p) = position {
            self.queued_to.fetch_max(p, Ordering::AcqRel);
        }
        self.changed.notify_all();
        true
    }

    fn abort_idle(&self) {
        let _ = self.abort();
    }

    fn fail(&self, why: String) {
        tracing::warn!(slots = %self.slots, error = %why, "slot migration stream failed");
        let mut q = self.queue.lock();
        q.failed = Some(why);
        self.changed.notify_all();
    }

    /// A pull by a target that got reply `received` (0: none yet): records
    /// `applied` (at most what was handed out), then hands out queued items
    /// up to about `max_bytes` (at least one), waiting up to [`PULL_WAIT`]
    /// if none is queued, as reply `received + 1`. After the commit, the
    /// last item is `Committed`. A target that did not get the last reply
    /// (`received` one behind) gets it again, so a dropped connection loses
    /// nothing.
    pub(crate) fn pull(&self, received: u64, applied: u64, max_bytes: usize) -> Result<(u64, Vec<Vec<u8>>), String> {
        *self.last_pull.lock() = Instant::now();
        let mut last = self.last_reply.lock();
        if received + 1 == last.0 {
            // The last reply was lost with its connection: the same again.
            return Ok((last.0, last.1.clone()));
        }
        if received != last.0 {
            return Err("ERR this pull does not follow the session's last reply".into());
        }
        let mut q = self.queue.lock();
        // Under the queue's lock, so that a hand-over waiting for this
        // position (`wait_applied`) cannot miss the wake-up.
        let applied = applied.min(self.handed_to.load(Ordering::Acquire));
        self.applied.fetch_max(applied, Ordering::AcqRel);
        self.changed.notify_all();
        let deadline = Instant::now() + PULL_WAIT;
        let committed = || match *self.phase.lock() {
            Phase::Committed(epoch) => Some(epoch),
            _ => None,
        };
        while q.items.is_empty() && q.failed.is_none() && committed().is_none() {
            if self.changed.wait_until(&mut q, deadline).timed_out() {
                break;
            }
        }
        let mut out = Vec::new();
        let mut size = 0;
        while let Some((item, _, _)) = q.items.front() {
            if !out.is_empty() && size + item.len() > max_bytes {
                break;
            }
            size += item.len();
            q.bytes -= item.len();
            if let Some((item, position, _)) = q.items.pop_front() {
                if let Some(p) = position {
                    self.handed_to.fetch_max(p, Ordering::AcqRel);
                }
                out.push(item);
            }
        }
        if q.items.is_empty() {
            if let Some(why) = &q.failed {
                out.push(PullItem::Failed(why.clone()).encode());
            } else if let Some(epoch) = committed() {
                out.push(PullItem::Committed { epoch }.encode());
            }
        }
        self.changed.notify_all();
        drop(q);
        *last = (received + 1, out.clone());
        Ok((received + 1, out))
    }
}

/// Most sessions a node serves at once.
const MAX_SESSIONS: usize = 16;

/// The sessions a node serves as a migration's source.
#[derive(Debug, Default)]
pub(crate) struct SourceSessions {
    sessions: Mutex<HashMap<u64, Arc<SourceSession>>>,
}

/// A random, non-zero session id.
fn session_id() -> u64 {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one((Instant::now(), std::process::id()));
    (h >> 1).max(1)
}

impl SourceSessions {
    /// Opens a session streaming `slots` to shard `to` from `engine`.
    /// Refused when the slots overlap another session's, or too many run.
    pub(crate) fn open(&self, engine: &Engine, to: String, slots: SlotSet) -> Result<Arc<SourceSession>, String> {
        let Some(log) = engine.log() else {
            return Err("ERR slot migration needs the source's ring log (a data directory)".into());
        };
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| {
            let over = s.closed.load(Ordering::Acquire) && *s.producer_done.0.lock() && s.idle();
            let idle = s.idle() && s.phase() == Phase::Streaming;
            if idle {
                s.abort_idle();
            }
            !(over || idle)
        });
        if let Some(other) = sessions
            .values()
            .find(|s| s.slots.overlaps(&slots) && !matches!(s.phase(), Phase::Aborted))
        {
            return Err(format!(
                "ERR slots {} are already being migrated (to {})",
                other.slots, other.to
            ));
        }
        if sessions.len() >= MAX_SESSIONS {
            return Err(format!("ERR {MAX_SESSIONS} migration streams are open here already"));
        }
        let id = session_id();
        let session = Arc::new(SourceSession {
            id,
            to,
            slots: Arc::new(slots),
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            applied: AtomicU64::new(0),
            handed_to: AtomicU64::new(0),
            last_reply: Mutex::new((0, Vec::new())),
            queued_to: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            phase: Mutex::new(Phase::Streaming),
            hold_from: AtomicU64::new(u64::MAX),
            confirmed: (Mutex::new(false), Condvar::new()),
            last_pull: Mutex::new(Instant::now()),
            started: Instant::now(),
            producer_done: (Mutex::new(false), Condvar::new()),
        });
        let producer = {
            let (engine, session) = (engine.clone(), Arc::clone(&session));
            std::thread::Builder::new()
                .name("ringkv-migrate".into())
                .spawn(move || {
                    produce(&engine, &log, &session);
                    let (lock, cv) = &session.producer_done;
                    *lock.lock() = true;
                    cv.notify_all();
                })
        };
        if let Err(e) = producer {
            return Err(format!("ERR starting the migration stream: {e}"));
        }
        tracing::info!(slots = %session.slots, to = %session.to, "slot migration: streaming to the target");
        sessions.insert(id, Arc::clone(&session));
        Ok(session)
    }

    /// The session `id`.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<SourceSession>> {
        self.sessions.lock().get(&id).cloned()
    }

    /// The live session moving exactly `slots`.
    pub(crate) fn find(&self, slots: &SlotSet) -> Option<Arc<SourceSession>> {
        self.sessions
            .lock()
            .values()
            .find(|s| *s.slots == *slots && s.phase() == Phase::Streaming && !s.closed.load(Ordering::Acquire))
            .cloned()
    }

    /// Ends session `id`: with `abort`, the target gives up (refused, with
    /// the phase, once a hand-over is changing the map); without, it owns
    /// the slots now. `None`: no such session.
    pub(crate) fn close(&self, id: u64, abort: bool) -> Option<Result<(), Phase>> {
        let session = self.get(id)?;
        if abort {
            let r = session.abort();
            if r.is_ok() {
                self.sessions.lock().remove(&id);
            }
            return Some(r);
        }
        self.sessions.lock().remove(&id);
        session.close();
        let (lock, cv) = &session.confirmed;
        *lock.lock() = true;
        cv.notify_all();
        Some(Ok(()))
    }

    /// Every session (INFO, status).
    pub(crate) fn all(&self) -> Vec<Arc<SourceSession>> {
        self.sessions.lock().values().cloned().collect()
    }
}

/// The producer: the filtered snapshot, then the filtered tail.
fn produce(engine: &Engine, log: &ringkv::LogView, session: &SourceSession) {
    let offset = match stream_snapshot(engine, session) {
        Ok(Some(offset)) => offset,
        Ok(None) => return,
        Err(why) => return session.fail(why),
    };
    if !session.push(&PullItem::Position(offset)) {
        return;
    }
    let mut tail = log.tail(offset);
    let mut held: Vec<PullItem> = Vec::new();
    let mut last_position = offset;
    while !session.closed.load(Ordering::Acquire) {
        let batch = match tail.next_mutations(PULL_WAIT, TAIL_BATCH) {
            Ok(batch) => batch,
            Err(LogError::Lagged { .. }) => {
                return session.fail(format!(
                    "the source's ring log dropped offset {} before the migration read it: start the migration again (a larger ring or a faster target)",
                    tail.offset()
                ))
            }
            Err(e) => return session.fail(format!("reading the source's log: {e}")),
        };
        if batch.is_empty() && held.is_empty() {
            continue;
        }
        for (at, m) in batch {
            match filter_mutation(m, &session.slots) {
                Ok(Some(mutation)) => held.push(PullItem::Mutation { offset: at, mutation }),
                Ok(None) => {}
                Err(e) => return session.fail(e.to_string()),
            }
        }
        // Mutations from the hand-over's fence on wait here (in order,
        // with everything after them) until it commits or gives up.
        let hold_from = session.hold_from.load(Ordering::Acquire);
        let first_held = held
            .iter()
            .position(|i| matches!(i, PullItem::Mutation { offset, .. } if *offset >= hold_from))
            .unwrap_or(held.len());
        for item in held.drain(..first_held) {
            if !session.push(&item) {
                return;
            }
        }
        // Everything before this position that concerns the slots is queued.
        let position = match held.first() {
            Some(PullItem::Mutation { offset, .. }) => *offset,
            _ => tail.offset(),
        };
        if position > last_position {
            if !session.push(&PullItem::Position(position)) {
                return;
            }
            last_position = position;
        }
    }
}

/// Streams the filtered snapshot's items into the session; returns its
/// offset (`None`: the session closed meanwhile).
fn stream_snapshot(engine: &Engine, session: &SourceSession) -> Result<Option<u64>, String> {
    let (tx, rx) = sync_channel::<Vec<u8>>(16);
    let writer = {
        let engine = engine.clone();
        let slots = Arc::clone(&session.slots);
        std::thread::Builder::new()
            .name("ringkv-migrate-snapshot".into())
            .spawn(move || {
                let deadline = Instant::now() + SNAPSHOT_SLOT_WAIT;
                let mut out = ChannelWriter(Some(tx));
                loop {
                    let keep = Arc::clone(&slots);
                    match engine.snapshot_filtered_to(&mut out, move |k| keep.contains_key(k)) {
                        Err(ringkv::Error::Snapshot(SnapshotError::InProgress)) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        other => return other.map(|(_, info)| info),
                    }
                }
            })
            .map_err(|e| format!("starting the snapshot: {e}"))?
    };
    let streamed = read_snapshot(
        ChannelReader {
            rx,
            buf: Vec::new(),
            at: 0,
        },
        session,
    );
    let written = writer
        .join()
        .map_err(|_| "the migration's snapshot thread panicked".to_string())?;
    if !streamed? {
        return Ok(None);
    }
    let info = written.map_err(|e| format!("the migration's snapshot: {e}"))?;
    tracing::info!(
        slots = %session.slots,
        items = info.items,
        offset = info.offset,
        "slot migration: snapshot sent"
    );
    Ok(Some(info.offset))
}

/// Turns the snapshot's items into queued mutations, hash expiries last;
/// false if the session closed.
fn read_snapshot(input: ChannelReader, session: &SourceSession) -> Result<bool, String> {
    let mut reader = SnapshotReader::new(input).map_err(|e| format!("the migration's snapshot: {e}"))?;
    let mut expiries: Vec<(Bytes, u64)> = Vec::new();
    while let Some(items) = reader
        .next_chunk()
        .map_err(|e| format!("the migration's snapshot: {e}"))?
    {
        for item in items {
            match snapshot_item(item) {
                Ok(mutation) => {
                    if !session.push(&PullItem::Mutation { offset: 0, mutation }) {
                        return Ok(false);
                    }
                }
                Err(Some(expiry)) => expiries.push(expiry),
                Err(None) => {}
            }
        }
    }
    for (key, at) in expiries {
        let mutation = Mutation::Expire {
            key,
            expire_at: Some(at),
        };
        if !session.push(&PullItem::Mutation { offset: 0, mutation }) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The snapshot's output: buffers handed to the reading thread.
struct ChannelWriter(Option<SyncSender<Vec<u8>>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let tx = self.0.as_ref().ok_or_else(|| std::io::Error::other("closed"))?;
        tx.send(buf.to_vec())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the migration stream closed"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The reading end of a [`ChannelWriter`].
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            match self.rx.recv() {
                Ok(buf) => {
                    self.buf = buf;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulled(items: &[Vec<u8>]) -> Vec<PullItem> {
        items
            .iter()
            .map(|i| PullItem::decode(Bytes::from(i.clone())).expect("an item"))
            .collect()
    }

    /// A reply lost with its connection comes again; a pull cannot skip
    /// replies or claim progress it was not handed; an abort is refused
    /// once a hand-over is changing the map.
    #[test]
    fn pulls_resend_a_lost_reply_and_cannot_fake_progress() {
        let dir = tempfile::tempdir().expect("dir");
        let config = ringkv::Config {
            cluster_slots: true,
            ..ringkv::Config::default()
        };
        let engine = Engine::open(dir.path(), config).expect("engine");
        let slot = ringkv::key_slot(b"{s}1");
        engine.set("{s}1", "a").expect("set");
        engine.set("other", "b").expect("set");
        let sessions = SourceSessions::default();
        let slots = SlotSet::from_ranges(&[[slot, slot]]).expect("slots");
        let s = sessions.open(&engine, "b".into(), slots).expect("open");
        // Pull until the snapshot's key and its end position arrived.
        let (mut received, mut got) = (0, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !got.iter().any(|i| matches!(i, PullItem::Position(_))) {
            assert!(Instant::now() < deadline, "nothing streamed: {got:?}");
            let (seq, items) = s.pull(received, 0, 1 << 20).expect("pull");
            assert_eq!(seq, received + 1);
            // The same pull again (its reply "lost"): the same reply.
            let (again, same) = s.pull(received, 0, 1 << 20).expect("pull again");
            assert_eq!((again, &same), (seq, &items));
            received = seq;
            got.extend(pulled(&items));
        }
        let keys: Vec<_> = got
            .iter()
            .filter_map(|i| match i {
                PullItem::Mutation { mutation, .. } => Some(mutation.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            keys,
            vec![Mutation::Set {
                key: "{s}1".into(),
                value: "a".into(),
                expire_at: None
            }]
        );
        assert!(s.pull(received + 5, 0, 1 << 20).is_err(), "a reply number from nowhere");
        // Progress beyond what was handed out is clamped.
        s.pull(received, u64::MAX, 1 << 20).expect("pull");
        let handed = s.handed_to.load(Ordering::Acquire);
        assert!(handed > 0 && handed < u64::MAX);
        assert_eq!(s.applied(), handed, "applied is clamped to what was handed out");
        assert!(s.begin_commit());
        assert_eq!(s.abort(), Err(Phase::Committing), "past the point of no return");
        s.resume();
        assert_eq!(s.abort(), Ok(()));
        assert!(!s.begin_commit(), "an aborted session is not handed over");
    }
}
