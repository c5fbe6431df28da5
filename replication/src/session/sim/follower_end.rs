//! The follower's end of a connection, driven as `follower.rs` drives its
//! [`FollowerSession`]: connect (or time out), `Hello`, the answer, the
//! data streams in the order the primary opened them, then the control,
//! log and snapshot streams and the ack timer in a random order each round
//! (as `select!` picks); the session's actions carried out on the
//! [`Store`](super::store::Store) as `perform` carries them out on the
//! engine, with the invariants checked on the way (`check.rs`).

use std::collections::VecDeque;
use std::time::Instant;

use crate::protocol::{encode_frame, Message, MAX_CONTROL_FRAME};
use crate::session::{DataStream, FollowerAction, LinkEnd, SnapshotIntake, SnapshotStep};
use crate::ReplError;

use super::net::{End, Lane, Read};
use super::store::AppendError;
use super::world::{Conn, FollowerNode, Link, NodeId, Role, World, IDLE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Reply,
    Streams,
    Live,
}

#[derive(Debug)]
pub(in crate::session::sim) struct FEnd {
    stage: Stage,
    /// The data streams must open by then.
    deadline: Option<Instant>,
    accepted: Vec<Lane>,
    log_lane: Option<Lane>,
    snapshot_lane: Option<Lane>,
    intake: Option<SnapshotIntake>,
    /// The offset the `Hello` carried.
    hello_offset: u64,
}

impl FEnd {
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// `follower.rs`'s `stream_error`: divergence is its own error.
fn stream_error(e: ringkv::log::LogError) -> ReplError {
    match e {
        ringkv::log::LogError::Divergent { offset } => {
            ReplError::Divergent(format!("the primary's bytes differ from ours at offset {offset}"))
        }
        other => ReplError::Engine(ringkv::Error::Log(other)),
    }
}

impl World {
    /// One round of a follower node: its link.
    pub(super) fn step_follower(&mut self, n: NodeId) -> bool {
        let Role::Follower(mut f) = std::mem::replace(&mut self.nodes[n].role, Role::Off) else {
            return false;
        };
        let moved = self.follower_link(n, &mut f);
        self.nodes[n].role = Role::Follower(f);
        moved
    }

    fn reachable(&self, n: NodeId) -> bool {
        let to = self.nodes[n].target;
        to != n
            && self.nodes[to].running()
            && matches!(self.nodes[to].role, Role::Primary(_))
            && self.nodes[n].path.up(self.now)
    }

    fn follower_link(&mut self, n: NodeId, f: &mut FollowerNode) -> bool {
        let now = self.now;
        match f.link {
            Link::Idle { at } if at <= now => {
                if self.reachable(n) {
                    self.open_link(n, f);
                } else {
                    f.link = Link::Connecting { deadline: now + IDLE };
                }
                true
            }
            Link::Connecting { deadline } => {
                if self.reachable(n) {
                    self.open_link(n, f);
                    true
                } else if deadline <= now {
                    self.end_link(n, f, None, LinkEnd::Failed(ReplError::Connection("timed out".into())));
                    true
                } else {
                    false
                }
            }
            Link::Conn(cid) => {
                let Some(mut conn) = self.conns.remove(&cid) else {
                    self.end_link(n, f, None, LinkEnd::Failed(ReplError::Connection("lost".into())));
                    return true;
                };
                let moved = self.follower_conn(n, f, &mut conn);
                self.conns.insert(cid, conn);
                moved
            }
            _ => false,
        }
    }

    fn open_link(&mut self, n: NodeId, f: &mut FollowerNode) {
        let to = self.nodes[n].target;
        let cid = self.connect(n, to);
        let state = self.nodes[n].store.replica_state();
        let hello = f.session.handle_connected(self.now, &state);
        let path = self.nodes[n].path.clone();
        let now = self.now;
        if let Some(conn) = self.conns.get_mut(&cid) {
            conn.wire
                .send(Lane::Up, encode_frame(&hello), now, &path, &mut self.rng);
            conn.f = Some(FEnd {
                stage: Stage::Reply,
                deadline: None,
                accepted: Vec::new(),
                log_lane: None,
                snapshot_lane: None,
                intake: None,
                hello_offset: state.applied,
            });
        }
        f.link = Link::Conn(cid);
        let (a, b) = (self.nodes[n].name.clone(), self.nodes[to].name.clone());
        self.note(format!(
            "conn {cid}: {a} connects to {b} at {} (history {}{})",
            state.applied,
            state.replid,
            if state.stale { ", stale" } else { "" }
        ));
    }

    /// The link ended: the session says when to try again.
    fn end_link(&mut self, n: NodeId, f: &mut FollowerNode, conn: Option<&mut Conn>, end: LinkEnd) {
        let now = self.now;
        let hostile = conn.as_ref().is_some_and(|c| c.wire.hostile_faults > 0);
        self.check_link_end(n, hostile, &end);
        if hostile {
            self.stats.hostile_link_errors += 1;
        }
        if matches!(end, LinkEnd::Failed(_)) {
            // A link fails here only through a fault (a reset, a partition,
            // a pause, a crash, a hostile transport): the next full sync,
            // if any, has a cause.
            self.nodes[n].acct.causes += 1;
        }
        // The staging keyspace goes with the link (the next full sync
        // makes a new one).
        self.nodes[n].store.staging.clear();
        let name = self.nodes[n].name.clone();
        let cid = conn.as_ref().map_or(0, |c| c.id);
        self.note(format!("conn {cid}: {name}'s link ends: {end:?}"));
        if let Some(c) = conn {
            let path = self.nodes[n].path.clone();
            c.wire.close(End::Follower, 0, "follower link ended", now, &path);
            c.f = None;
        }
        match f.session.handle_link_end(now, end) {
            Some(wait) => f.link = Link::Idle { at: now + wait },
            None => {
                f.link = Link::Halted;
                let why = f.session.info(now).last_error.unwrap_or_default();
                self.violate(format!("{name} halted: {why}"));
            }
        }
    }

    fn follower_conn(&mut self, n: NodeId, f: &mut FollowerNode, conn: &mut Conn) -> bool {
        let Some(mut fe) = conn.f.take() else {
            self.end_link(
                n,
                f,
                Some(conn),
                LinkEnd::Failed(ReplError::Connection("closed".into())),
            );
            return true;
        };
        let gone = conn.wire.gone(End::Follower, self.now).cloned();
        if gone.is_some() {
            conn.wire.discard_unread(End::Follower);
        }
        match self.f_drive(n, f, &mut fe, conn) {
            Ok(moved) => match gone {
                Some(g) => {
                    self.end_link(n, f, Some(conn), LinkEnd::Failed(g.error()));
                    true
                }
                None => {
                    conn.f = Some(fe);
                    moved
                }
            },
            Err(end) => {
                self.end_link(n, f, Some(conn), end);
                true
            }
        }
    }

    fn f_drive(&mut self, n: NodeId, f: &mut FollowerNode, fe: &mut FEnd, conn: &mut Conn) -> Result<bool, LinkEnd> {
        let now = self.now;
        let max = self.fconfig.max_frame_bytes;
        match fe.stage {
            Stage::Reply => {
                let reply = match conn.wire.read(Lane::Down, MAX_CONTROL_FRAME) {
                    Read::Nothing => return Ok(false),
                    Read::Frame(m) => Some(m),
                    Read::End => None,
                    Read::Error(e) => return Err(LinkEnd::Failed(e)),
                };
                let what = match &reply {
                    Some(Message::Continue { offset, .. }) => format!("continue at {offset}"),
                    Some(Message::FullSync { offset, reason, .. }) => format!("full sync at {offset}: {reason}"),
                    other => format!("{other:?}"),
                };
                let continued = matches!(reply, Some(Message::Continue { .. }));
                let actions = f.session.handle_reply(now, reply)?;
                let name = self.nodes[n].name.clone();
                self.note(format!("conn {}: {name} told {what}", conn.id));
                if continued {
                    self.stats.partial_syncs += 1;
                    self.check_continue(n, conn.primary, fe.hello_offset);
                }
                self.f_perform(n, f, conn, actions)?;
                fe.stage = Stage::Streams;
                fe.deadline = Some(now + IDLE);
                Ok(true)
            }
            Stage::Streams => {
                let expected = f.session.expected_streams();
                let mut moved = false;
                loop {
                    if fe.accepted.len() >= expected {
                        let actions = f.session.handle_streams_ready(now, self.nodes[n].store.progress())?;
                        self.f_perform(n, f, conn, actions)?;
                        fe.stage = Stage::Live;
                        fe.deadline = None;
                        return Ok(true);
                    }
                    // `accept_uni` returns the streams in the order they were opened.
                    let mut lanes: Vec<(u64, Lane)> = [Lane::Log, Lane::Snapshot]
                        .into_iter()
                        .filter(|l| !fe.accepted.contains(l))
                        .filter_map(|l| conn.wire.opened(l).map(|o| (o, l)))
                        .collect();
                    lanes.sort_by_key(|(o, _)| *o);
                    let Some(&(_, lane)) = lanes.first() else { break };
                    if !conn.wire.seen(lane) {
                        break;
                    }
                    let first = match conn.wire.read(lane, max) {
                        Read::Nothing => break,
                        Read::Frame(m) => Some(m),
                        Read::End => None,
                        Read::Error(e) => return Err(LinkEnd::Failed(e)),
                    };
                    match f.session.handle_stream(first)? {
                        DataStream::Log => fe.log_lane = Some(lane),
                        DataStream::Snapshot(intake) => {
                            fe.intake = Some(intake);
                            fe.snapshot_lane = Some(lane);
                        }
                    }
                    fe.accepted.push(lane);
                    fe.deadline = Some(now + IDLE);
                    moved = true;
                }
                if fe.deadline.is_some_and(|t| t <= now) {
                    return Err(LinkEnd::Failed(ReplError::Timeout(
                        "no data stream from the primary".into(),
                    )));
                }
                Ok(moved)
            }
            Stage::Live => {
                let mut order = [0u8, 1, 2, 3];
                for i in (1..order.len()).rev() {
                    order.swap(i, self.rng.below(i as u64 + 1) as usize);
                }
                let mut moved = false;
                for part in order {
                    moved |= match part {
                        0 => self.f_control(f, conn)?,
                        1 => self.f_log(n, f, fe, conn)?,
                        2 => self.f_snapshot(n, f, fe, conn)?,
                        _ => {
                            if f.session.poll_timeout().is_some_and(|t| t <= now) {
                                let actions = f.session.handle_timeout(now, self.nodes[n].store.progress());
                                self.f_perform(n, f, conn, actions)?;
                                true
                            } else {
                                false
                            }
                        }
                    };
                }
                Ok(moved)
            }
        }
    }

    fn f_control(&mut self, f: &mut FollowerNode, conn: &mut Conn) -> Result<bool, LinkEnd> {
        let mut moved = false;
        loop {
            let frame = match conn.wire.read(Lane::Down, MAX_CONTROL_FRAME) {
                Read::Nothing => return Ok(moved),
                Read::Frame(m) => Some(m),
                Read::End => None,
                Read::Error(e) => return Err(LinkEnd::Failed(e)),
            };
            f.session.handle_control_frame(self.now, frame)?;
            moved = true;
        }
    }

    fn f_log(&mut self, n: NodeId, f: &mut FollowerNode, fe: &mut FEnd, conn: &mut Conn) -> Result<bool, LinkEnd> {
        let Some(lane) = fe.log_lane else { return Ok(false) };
        let max = self.fconfig.max_frame_bytes;
        let mut moved = false;
        while !f.session.log_paused() {
            let frame = match conn.wire.read(lane, max) {
                Read::Nothing => break,
                Read::Frame(m) => Some(m),
                Read::End => None,
                Read::Error(e) => return Err(LinkEnd::Failed(e)),
            };
            let actions = f.session.handle_log_frame(self.now, frame)?;
            self.f_perform(n, f, conn, actions)?;
            moved = true;
        }
        Ok(moved)
    }

    fn f_snapshot(&mut self, n: NodeId, f: &mut FollowerNode, fe: &mut FEnd, conn: &mut Conn) -> Result<bool, LinkEnd> {
        let Some(lane) = fe.snapshot_lane else { return Ok(false) };
        let max = self.fconfig.max_frame_bytes;
        let mut moved = false;
        while let Some(intake) = &mut fe.intake {
            let frame = match conn.wire.read(lane, max) {
                Read::Nothing => break,
                Read::Frame(m) => Some(m),
                Read::End => None,
                Read::Error(e) => return Err(LinkEnd::Failed(e)),
            };
            moved = true;
            match intake.handle_frame(frame)? {
                SnapshotStep::Feed { raw, wire } => {
                    self.nodes[n].store.staging.extend_from_slice(&raw);
                    f.session.handle_snapshot_io(self.now, wire);
                }
                SnapshotStep::Done => {
                    fe.intake = None;
                    self.nodes[n]
                        .store
                        .load()
                        .map_err(|e| LinkEnd::Failed(ReplError::Peer(format!("the snapshot did not load: {e}"))))?;
                    let actions = f.session.handle_snapshot_loaded(self.now);
                    self.f_perform(n, f, conn, actions)?;
                }
            }
        }
        Ok(moved)
    }

    /// `perform`: the session's actions on the store, in order, with the
    /// results reported back.
    fn f_perform(
        &mut self,
        n: NodeId,
        f: &mut FollowerNode,
        conn: &mut Conn,
        actions: Vec<FollowerAction>,
    ) -> Result<(), LinkEnd> {
        let now = self.now;
        let name = self.nodes[n].name.clone();
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                FollowerAction::Send(m) => {
                    if let Message::Ack { applied, .. } = &m {
                        if *applied != self.nodes[n].store.applied() {
                            self.violate(format!(
                                "{name} acks applied {applied}, its keyspace is at {}",
                                self.nodes[n].store.applied()
                            ));
                        }
                    }
                    let path = self.nodes[n].path.clone();
                    conn.wire.send(Lane::Up, encode_frame(&m), now, &path, &mut self.rng);
                }
                FollowerAction::AdoptHistory(h) => self.nodes[n].store.history = h,
                FollowerAction::BeginFullSync { offset, history } => {
                    self.count_full_sync(n);
                    self.nodes[n].drop_acked();
                    self.stats.full_syncs += 1;
                    self.nodes[n].store.begin_full_sync(offset, history);
                }
                FollowerAction::Append { start, bytes, apply } => {
                    let end = self.nodes[n].store.end();
                    let stale = self.nodes[n].store.stale();
                    if start != end {
                        self.violate(format!(
                            "{name}'s session handed the engine a log frame at offset {start}, but the ring ends at \
                             {end}: a frame skipped, repeated or reordered by the transport went unnoticed"
                        ));
                    }
                    if apply == stale {
                        self.violate(format!(
                            "{name}'s session asked for apply = {apply} with a full sync {}",
                            if stale { "loading" } else { "done" }
                        ));
                    }
                    match self.nodes[n].store.append(start, &bytes) {
                        Ok(new) => {
                            if apply && new > 0 {
                                self.check_applied(n, conn.primary, end, new);
                            }
                        }
                        Err(AppendError::Full(e)) => {
                            self.stats.ring_full_holds += 1;
                            self.check_held(n, bytes.len());
                            let error = ReplError::Engine(ringkv::Error::Log(e));
                            queue.extend(f.session.handle_ring_full(now, start, bytes, error)?);
                            continue;
                        }
                        Err(AppendError::Engine(e)) => return Err(LinkEnd::Failed(stream_error(e))),
                    }
                    let progress = self.nodes[n].store.progress();
                    queue.extend(f.session.handle_appended(now, progress));
                }
                FollowerAction::SwapIn { offset } => {
                    self.nodes[n]
                        .store
                        .swap_in(offset)
                        .map_err(|e| LinkEnd::Failed(ReplError::Peer(e)))?;
                    self.stats.swaps += 1;
                    self.nodes[n].acct.unfinished = false;
                    self.note(format!(
                        "{name}: full sync at {offset} swapped in, now at {}",
                        self.nodes[n].store.end()
                    ));
                    self.check_swap(n, conn.primary);
                    let progress = self.nodes[n].store.progress();
                    queue.extend(f.session.handle_swapped_in(now, progress));
                }
            }
        }
        Ok(())
    }
}
