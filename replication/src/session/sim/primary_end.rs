//! The primary's end of a connection, driven as `primary.rs`'s `serve`
//! drives a [`PrimarySession`]: the control stream and `Hello` within
//! their deadlines, the opens the session asks for (a full sync waits for
//! the one stream snapshot slot), then the control stream, the log stream
//! (a [`LogCursor`] with one frame in flight beyond the window) and the
//! snapshot stream (a [`SnapshotSender`] over the producer's chunks, given
//! up by a [`SnapshotStall`]) side by side, in a random order each round
//! (as `select!` picks), and the session's timers.

use std::collections::VecDeque;
use std::time::Duration;

use crate::protocol::{encode_frame, Message, MAX_CONTROL_FRAME};
use crate::session::{
    CloseCode, LogCursor, LogEnd, LogStep, PrimaryAction, PrimaryCounter, PrimarySession, SnapshotSender, SnapshotStall,
};
use crate::ReplError;

use super::net::{End, Lane, Read};
use super::world::{Conn, NodeId, PrimaryNode, Role, World, SNAPSHOT_CHUNK};

#[derive(Debug)]
enum Stage {
    AwaitControl,
    AwaitHello,
    /// Carrying out the handshake's opens (a snapshot may wait for the slot).
    Opening(VecDeque<PrimaryAction>),
    Serving,
}

/// A full sync's snapshot stream.
#[derive(Debug)]
struct SnapSend {
    bytes: Vec<u8>,
    pos: usize,
    sender: SnapshotSender,
    pending: VecDeque<Vec<u8>>,
    stall: SnapshotStall,
    end_queued: bool,
}

#[derive(Debug)]
pub(in crate::session::sim) struct PEnd {
    pub(super) session: PrimarySession,
    stage: Stage,
    cursor: Option<LogCursor>,
    /// The frame being written (waits for room in the window).
    log_pending: Option<Vec<u8>>,
    /// After the pending frame: the stream stops here, `Incompatible`.
    log_incompatible: Option<String>,
    /// The started snapshot, until its stream opens.
    snapshot: Option<(u64, Vec<u8>)>,
    snap: Option<SnapSend>,
    ended: bool,
}

impl PEnd {
    pub(super) fn new(session: PrimarySession) -> PEnd {
        PEnd {
            session,
            stage: Stage::AwaitControl,
            cursor: None,
            log_pending: None,
            log_incompatible: None,
            snapshot: None,
            snap: None,
            ended: false,
        }
    }

    /// Frames waiting in the session's streams beyond what the window took.
    pub(super) fn pending_bytes(&self) -> usize {
        self.log_pending.as_ref().map_or(0, Vec::len)
            + self
                .snap
                .as_ref()
                .map_or(0, |s| s.pending.iter().map(Vec::len).sum::<usize>())
    }
}

fn close_code(c: CloseCode) -> u32 {
    match c {
        CloseCode::Rejected => 3,
        CloseCode::Resync => 2,
        CloseCode::Protocol => 1,
        CloseCode::Incompatible => 5,
        CloseCode::Shutdown => 0,
    }
}

impl World {
    /// One round of a primary node: each of its connections.
    pub(super) fn step_primary(&mut self, p: NodeId) -> bool {
        let Role::Primary(mut pn) = std::mem::replace(&mut self.nodes[p].role, Role::Off) else {
            return false;
        };
        let ids: Vec<u64> = self
            .conns
            .values()
            .filter(|c| c.primary == p && c.p.is_some())
            .map(|c| c.id)
            .collect();
        let mut moved = false;
        for cid in ids {
            let Some(mut conn) = self.conns.remove(&cid) else {
                continue;
            };
            moved |= self.primary_conn(p, &mut pn, &mut conn);
            self.conns.insert(cid, conn);
        }
        self.nodes[p].role = Role::Primary(pn);
        moved
    }

    fn primary_conn(&mut self, p: NodeId, pn: &mut PrimaryNode, conn: &mut Conn) -> bool {
        let Some(mut pe) = conn.p.take() else { return false };
        let now = self.now;
        let gone = conn.wire.gone(End::Primary, now).cloned();
        if gone.is_some() {
            conn.wire.discard_unread(End::Primary);
        }
        let mut moved = false;
        match &mut pe.stage {
            Stage::AwaitControl if conn.wire.seen(Lane::Up) => {
                pe.session.handle_control_opened(now);
                pe.stage = Stage::AwaitHello;
                moved = true;
            }
            Stage::AwaitHello => {
                let hello = match conn.wire.read(Lane::Up, MAX_CONTROL_FRAME) {
                    Read::Nothing => None,
                    Read::Frame(m) => Some(Ok(Some(m))),
                    Read::End => Some(Ok(None)),
                    Read::Error(e) => Some(Err(e)),
                };
                if let Some(hello) = hello {
                    let view = self.nodes[p].store.view(self.pconfig.max_replay_bytes);
                    let max_payload = self.nodes[p].store.max_payload;
                    let actions = pe.session.handle_hello(now, hello, &view, max_payload);
                    let opens = self.p_act(&mut pe, conn, actions);
                    pe.stage = Stage::Opening(opens.into());
                    moved = true;
                }
            }
            _ => {}
        }
        if matches!(pe.stage, Stage::Opening(_)) && !pe.ended {
            moved |= self.p_open(p, pn, &mut pe, conn);
        }
        if matches!(pe.stage, Stage::Serving) && !pe.ended {
            let mut order = [0u8, 1, 2, 3];
            for i in (1..order.len()).rev() {
                order.swap(i, self.rng.below(i as u64 + 1) as usize);
            }
            for part in order {
                if pe.ended {
                    break;
                }
                moved |= match part {
                    0 => self.p_control(&mut pe, conn),
                    1 => self.p_log(p, &mut pe, conn),
                    2 => self.p_snapshot(pn, &mut pe, conn),
                    _ => {
                        if pe.session.poll_timeout().is_some_and(|t| t <= now) {
                            let served = self.nodes[p].store.served();
                            let actions = pe.session.handle_timeout(now, &served, self.ms());
                            self.p_act(&mut pe, conn, actions);
                            true
                        } else {
                            false
                        }
                    }
                };
            }
        }
        // Handshake deadlines (the session times out a silent follower).
        if !pe.ended
            && matches!(pe.stage, Stage::AwaitControl | Stage::AwaitHello)
            && pe.session.poll_timeout().is_some_and(|t| t <= now)
        {
            let served = self.nodes[p].store.served();
            let actions = pe.session.handle_timeout(now, &served, self.ms());
            self.p_act(&mut pe, conn, actions);
            if !pe.ended && pe.session.phase() == crate::session::PrimaryPhase::Closed {
                pe.ended = true;
            }
            moved = true;
        }
        if let (Some(g), false) = (&gone, pe.ended) {
            // The driver's reads fail: in `serve` through the session, in
            // the handshake by dropping the slot.
            if matches!(pe.stage, Stage::Serving) {
                let actions = pe.session.handle_control_frame(now, Some(Err(g.error())));
                self.p_act(&mut pe, conn, actions);
            }
            pe.ended = true;
            moved = true;
        }
        if pe.ended {
            if pn.snapshot == Some(conn.id) {
                pn.snapshot = None;
            }
        } else {
            conn.p = Some(pe);
        }
        moved
    }

    /// The handshake's opens, in order.
    fn p_open(&mut self, p: NodeId, pn: &mut PrimaryNode, pe: &mut PEnd, conn: &mut Conn) -> bool {
        let now = self.now;
        let mut moved = false;
        loop {
            let Stage::Opening(queue) = &mut pe.stage else {
                return moved;
            };
            let Some(open) = queue.pop_front() else {
                if pe.cursor.is_none() {
                    // `serve`: the session opened no log stream.
                    let path = self.nodes[conn.follower].path.clone();
                    conn.wire.close(End::Primary, 0, "", now, &path);
                    pe.ended = true;
                    return true;
                }
                pe.stage = Stage::Serving;
                return true;
            };
            match open {
                PrimaryAction::StartSnapshot => {
                    if pn.snapshot.is_some_and(|c| c != conn.id) {
                        // Another follower's full sync streams: wait for it.
                        queue.push_front(PrimaryAction::StartSnapshot);
                        return moved;
                    }
                    pn.snapshot = Some(conn.id);
                    let store = &self.nodes[p].store;
                    let (offset, bytes) = store.snapshot();
                    let started = Ok((offset, store.history.replid.clone()));
                    let history = store.history.clone();
                    pe.snapshot = Some((offset, bytes));
                    let actions = pe.session.handle_snapshot_started(now, started, history);
                    let more = self.p_act(pe, conn, actions);
                    if pe.ended {
                        return true;
                    }
                    if let Stage::Opening(queue) = &mut pe.stage {
                        queue.extend(more);
                    }
                }
                PrimaryAction::OpenLog {
                    from,
                    codec,
                    replid,
                    limits,
                } => {
                    pe.cursor = Some(LogCursor::new(from, replid, codec, self.pconfig.batch_bytes, limits));
                    let path = self.nodes[conn.follower].path.clone();
                    let frame = encode_frame(&Message::Stream {
                        kind: crate::protocol::StreamKind::Log,
                    });
                    conn.wire.send(Lane::Log, frame, now, &path, &mut self.rng);
                }
                PrimaryAction::OpenSnapshot { codec, limits } => {
                    if let Some((_, bytes)) = pe.snapshot.take() {
                        let sender = SnapshotSender::new(codec, &limits);
                        let path = self.nodes[conn.follower].path.clone();
                        conn.wire
                            .send(Lane::Snapshot, encode_frame(&sender.start()), now, &path, &mut self.rng);
                        pe.snap = Some(SnapSend {
                            bytes,
                            pos: 0,
                            sender,
                            pending: VecDeque::new(),
                            stall: SnapshotStall::new(Duration::from_millis(self.pconfig.snapshot_send_timeout_ms)),
                            end_queued: false,
                        });
                    }
                }
                _ => {}
            }
            moved = true;
        }
    }

    fn p_control(&mut self, pe: &mut PEnd, conn: &mut Conn) -> bool {
        let mut moved = false;
        while !pe.ended {
            let frame = match conn.wire.read(Lane::Up, MAX_CONTROL_FRAME) {
                Read::Nothing => break,
                Read::Frame(m) => Some(Ok(m)),
                Read::End => None,
                Read::Error(e) => Some(Err(e)),
            };
            let actions = pe.session.handle_control_frame(self.now, frame);
            self.p_act(pe, conn, actions);
            moved = true;
        }
        moved
    }

    /// The log stream: `stream_log`.
    fn p_log(&mut self, p: NodeId, pe: &mut PEnd, conn: &mut Conn) -> bool {
        let now = self.now;
        let path = self.nodes[conn.follower].path.clone();
        let mut moved = false;
        for _ in 0..1000 {
            if let Some(frame) = pe.log_pending.take() {
                if !conn.wire.room(Lane::Log, frame.len()) {
                    pe.log_pending = Some(frame);
                    return moved;
                }
                conn.wire.send(Lane::Log, frame, now, &path, &mut self.rng);
                moved = true;
            }
            if let Some(reason) = pe.log_incompatible.take() {
                conn.wire.finish(Lane::Log, now, &path, &mut self.rng);
                let actions = pe.session.handle_log_end(now, LogEnd::Incompatible(reason));
                self.p_act(pe, conn, actions);
                return true;
            }
            let Some(cursor) = &mut pe.cursor else { return moved };
            let store = &self.nodes[p].store;
            let served = store.served();
            let step = match cursor.poll(&served) {
                LogStep::Read { from, max } => match store.read_stream(from, max) {
                    Ok(bytes) => cursor.handle_batch(from, bytes, &served),
                    Err(ringkv::log::LogError::Lagged { oldest }) => {
                        pe.cursor = None;
                        let f = conn.follower;
                        self.nodes[f].acct.causes += 1;
                        self.stats.lagged += 1;
                        let name = self.nodes[f].name.clone();
                        self.note(format!(
                            "conn {}: {name}'s log position left the ring (oldest {oldest})",
                            conn.id
                        ));
                        let actions = pe.session.handle_log_end(now, LogEnd::Lagged { oldest });
                        self.p_act(pe, conn, actions);
                        return true;
                    }
                    Err(e) => {
                        pe.cursor = None;
                        let end = LogEnd::Failed(ReplError::Engine(ringkv::Error::Log(e)));
                        let actions = pe.session.handle_log_end(now, end);
                        self.p_act(pe, conn, actions);
                        return true;
                    }
                },
                other => other,
            };
            match step {
                LogStep::Send(frame) => {
                    let (pos, (raw, wire)) = (cursor.pos(), cursor.bytes());
                    pe.session.handle_log_sent(pos, raw, wire);
                    pe.log_pending = Some(encode_frame(&frame));
                }
                LogStep::HistoryChanged => {
                    pe.cursor = None;
                    let actions = pe.session.handle_log_end(now, LogEnd::HistoryChanged);
                    self.p_act(pe, conn, actions);
                    return true;
                }
                LogStep::Incompatible { frame, reason } => {
                    pe.cursor = None;
                    pe.log_pending = Some(encode_frame(&frame));
                    pe.log_incompatible = Some(reason);
                }
                LogStep::WaitPublished { .. } | LogStep::PollApplied | LogStep::Read { .. } => return moved,
            }
            moved = true;
        }
        moved
    }

    /// The snapshot stream: `send_snapshot` over the producer's chunks.
    fn p_snapshot(&mut self, pn: &mut PrimaryNode, pe: &mut PEnd, conn: &mut Conn) -> bool {
        let now = self.now;
        let path = self.nodes[conn.follower].path.clone();
        let mut moved = false;
        for _ in 0..10_000 {
            let Some(snap) = &mut pe.snap else { return moved };
            if let Some(front) = snap.pending.front() {
                if conn.wire.room(Lane::Snapshot, front.len()) {
                    let frame = snap.pending.pop_front().unwrap_or_default();
                    conn.wire.send(Lane::Snapshot, frame, now, &path, &mut self.rng);
                    snap.stall.handle_taken();
                    moved = true;
                    continue;
                }
                // The producer waits to hand a chunk over; given up after
                // the stall timeout (only while it still has chunks).
                if snap.pos < snap.bytes.len() && snap.stall.handle_blocked(now) {
                    pe.snap = None;
                    if pn.snapshot == Some(conn.id) {
                        pn.snapshot = None;
                    }
                    self.stats.snapshot_stalls += 1;
                    self.nodes[conn.follower].acct.causes += 1;
                    let e = ReplError::Connection("the snapshot for the follower failed: stalled".into());
                    let actions = pe.session.handle_snapshot_sent(now, Err(e));
                    self.p_act(pe, conn, actions);
                    return true;
                }
                return moved;
            }
            if snap.pos < snap.bytes.len() {
                let to = (snap.pos + SNAPSHOT_CHUNK).min(snap.bytes.len());
                let chunk = snap.bytes[snap.pos..to].to_vec();
                snap.pos = to;
                let frames: Vec<Vec<u8>> = snap.sender.chunk(&chunk).map(|m| encode_frame(&m)).collect();
                snap.pending.extend(frames);
                let (raw, wire) = snap.sender.bytes();
                pe.session.handle_snapshot_progress(raw, wire);
                if snap.pos == snap.bytes.len() && pn.snapshot == Some(conn.id) {
                    // The walk is done: the slot is free for the next.
                    pn.snapshot = None;
                }
                moved = true;
                continue;
            }
            if !snap.end_queued {
                snap.end_queued = true;
                snap.pending.push_back(encode_frame(&snap.sender.end()));
                continue;
            }
            conn.wire.finish(Lane::Snapshot, now, &path, &mut self.rng);
            pe.snap = None;
            let actions = pe.session.handle_snapshot_sent(now, Ok(()));
            self.p_act(pe, conn, actions);
            return true;
        }
        moved
    }

    /// `act`: carries out a session's actions up to the one that ends it;
    /// returns the opens.
    fn p_act(&mut self, pe: &mut PEnd, conn: &mut Conn, actions: Vec<PrimaryAction>) -> Vec<PrimaryAction> {
        let now = self.now;
        let path = self.nodes[conn.follower].path.clone();
        let mut opens = Vec::new();
        for action in actions {
            match action {
                PrimaryAction::Send(m) => conn.wire.send(Lane::Down, encode_frame(&m), now, &path, &mut self.rng),
                PrimaryAction::Count(c) => {
                    if matches!(c, PrimaryCounter::ProtocolError | PrimaryCounter::Rejected)
                        && conn.wire.hostile_faults == 0
                    {
                        let name = self.nodes[conn.follower].name.clone();
                        self.violate(format!(
                            "conn {}: the primary counted {c:?} for {name} over an honest transport",
                            conn.id
                        ));
                    }
                }
                PrimaryAction::Acked => {}
                PrimaryAction::Close {
                    last,
                    code,
                    reason,
                    error,
                } => {
                    let name = self.nodes[conn.follower].name.clone();
                    self.note(format!(
                        "conn {}: primary closes {name}'s link ({code:?} {reason:?}{})",
                        conn.id,
                        error.map(|e| format!(", {e}")).unwrap_or_default()
                    ));
                    // `finish_and_wait`: the last message is read before
                    // the close (within a second).
                    let mut at = now;
                    if let Some(m) = last {
                        conn.wire.send(Lane::Down, encode_frame(&m), now, &path, &mut self.rng);
                        conn.wire.finish(Lane::Down, now, &path, &mut self.rng);
                        at = (now + path.latency * 2 + Duration::from_millis(path.jitter_ms))
                            .min(now + Duration::from_secs(1));
                    }
                    conn.close_at = Some((at, close_code(code), reason));
                    pe.ended = true;
                    return opens;
                }
                PrimaryAction::Done => {
                    conn.wire.close(End::Primary, 0, "", now, &path);
                    pe.ended = true;
                    return opens;
                }
                open @ (PrimaryAction::StartSnapshot
                | PrimaryAction::OpenLog { .. }
                | PrimaryAction::OpenSnapshot { .. }) => opens.push(open),
            }
        }
        opens
    }
}
