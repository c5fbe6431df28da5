//! The scripted pair: one [`PrimarySession`] and one [`FollowerSession`]
//! over in-memory queues of frames with simulated time (quinn-proto's
//! `Pair` style), each over the smallest fake engine: the primary's ring is
//! a byte vector, the follower's keyspace is the bytes it applied (a
//! snapshot at offset X is the primary's first X bytes). Five scripted
//! scenarios; the seeded world with faults is in the sibling modules.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{FollowerConfig, PrimaryConfig};
use crate::protocol::{Codec, History, Message, PrimaryView, StreamKind};
use crate::session::*;
use crate::stats::FollowerState;
use crate::ReplError;

struct FakePrimary {
    ring: Vec<u8>,
    oldest: u64,
    history: History,
}

impl FakePrimary {
    fn published(&self) -> u64 {
        self.ring.len() as u64
    }
    fn served(&self) -> Served {
        Served {
            replid: self.history.replid.clone(),
            stale: false,
            published: self.published(),
            limit: self.published(),
            chained: false,
        }
    }
    fn view(&self) -> PrimaryView {
        PrimaryView {
            history: self.history.clone(),
            oldest: self.oldest,
            published: self.published(),
            max_replay_bytes: None,
            unavailable: None,
        }
    }
    fn write(&mut self, n: usize) {
        let base = self.ring.len();
        self.ring.extend((0..n).map(|i| ((base + i) % 251) as u8));
    }
}

#[derive(Default)]
struct FakeFollower {
    /// The keyspace: every byte applied, from offset 0.
    data: Vec<u8>,
    replid: String,
    stale: bool,
    /// During a full sync: the snapshot's offset, bytes stored since, the staging load.
    full: Option<(u64, Vec<u8>)>,
    staging: Vec<u8>,
    /// The ring's capacity, if small: during a full sync it holds at most
    /// this many bytes from the snapshot's offset (the engine refuses the
    /// rest with `LogError::Full`); the swap's save releases it.
    ring: Option<usize>,
}

impl FakeFollower {
    fn progress(&self) -> Progress {
        Progress {
            applied: self.data.len() as u64,
            durable: self.data.len() as u64,
        }
    }
    fn state(&self) -> ReplicaState {
        ReplicaState {
            applied: self.data.len() as u64,
            replid: self.replid.clone(),
            stale: self.stale,
            max_record: 1 << 20,
            capacity: 8 << 20,
        }
    }
}

/// One link between the two sessions: the streams are queues of frames.
struct Pair {
    now: Instant,
    p: PrimarySession,
    f: FollowerSession,
    pe: FakePrimary,
    fe: FakeFollower,
    to_follower: VecDeque<Message>,
    to_primary: VecDeque<Message>,
    log: Option<LogCursor>,
    log_frames: VecDeque<Message>,
    snapshot_frames: VecDeque<Message>,
    intake: Option<SnapshotIntake>,
    primary_closed: Option<PrimaryAction>,
    follower_end: Option<LinkEnd>,
}

impl Pair {
    fn new(pe: FakePrimary, fe: FakeFollower) -> Pair {
        let now = Instant::now();
        let pconfig = PrimaryConfig {
            ping_interval_ms: 50,
            codecs: vec![Codec::Lz4],
            ..PrimaryConfig::default()
        };
        let fconfig = FollowerConfig {
            codecs: vec![Codec::Lz4],
            ack_interval_ms: 20,
            ..FollowerConfig::default()
        };
        Pair {
            now,
            p: PrimarySession::new(1, &pconfig, now),
            f: FollowerSession::new(fconfig, now, 99),
            pe,
            fe,
            to_follower: VecDeque::new(),
            to_primary: VecDeque::new(),
            log: None,
            log_frames: VecDeque::new(),
            snapshot_frames: VecDeque::new(),
            intake: None,
            primary_closed: None,
            follower_end: None,
        }
    }

    /// A new connection (a fresh primary-side session, the same follower session).
    fn reconnect(&mut self) {
        let pconfig = PrimaryConfig {
            ping_interval_ms: 50,
            codecs: vec![Codec::Lz4],
            ..PrimaryConfig::default()
        };
        self.p = PrimarySession::new(2, &pconfig, self.now);
        for q in [
            &mut self.to_follower,
            &mut self.to_primary,
            &mut self.log_frames,
            &mut self.snapshot_frames,
        ] {
            q.clear();
        }
        self.log = None;
        self.intake = None;
        self.primary_closed = None;
        self.follower_end = None;
    }

    fn primary(&mut self, actions: Vec<PrimaryAction>) {
        let mut queue = VecDeque::from(actions);
        while let Some(a) = queue.pop_front() {
            match a {
                PrimaryAction::Send(m) => self.to_follower.push_back(m),
                PrimaryAction::StartSnapshot => {
                    let started = Ok((self.pe.published(), self.pe.history.replid.clone()));
                    let history = self.pe.history.clone();
                    queue.extend(self.p.handle_snapshot_started(self.now, started, history));
                }
                PrimaryAction::OpenLog {
                    from,
                    codec,
                    replid,
                    limits,
                } => {
                    self.log_frames.push_back(Message::Stream { kind: StreamKind::Log });
                    self.log = Some(LogCursor::new(from, replid, codec, 100, limits));
                }
                PrimaryAction::OpenSnapshot { codec, limits } => {
                    // The snapshot is the ring's bytes so far, in chunks of 70.
                    let mut sender = SnapshotSender::new(codec, &limits);
                    self.snapshot_frames.push_back(sender.start());
                    let snapshot = self.pe.ring.clone();
                    for chunk in snapshot.chunks(70) {
                        self.snapshot_frames.extend(sender.chunk(chunk));
                    }
                    self.snapshot_frames.push_back(sender.end());
                    let (raw, wire) = sender.bytes();
                    self.p.handle_snapshot_progress(raw, wire);
                }
                PrimaryAction::Count(_) | PrimaryAction::Acked => {}
                end @ (PrimaryAction::Close { .. } | PrimaryAction::Done) => {
                    if let PrimaryAction::Close { last: Some(m), .. } = &end {
                        self.to_follower.push_back(m.clone());
                    }
                    self.primary_closed = Some(end);
                    return;
                }
            }
        }
    }

    fn follower(&mut self, actions: Result<Vec<FollowerAction>, LinkEnd>) {
        let mut queue = match actions {
            Ok(a) => VecDeque::from(a),
            Err(end) => {
                self.follower_end = Some(end);
                return;
            }
        };
        while let Some(a) = queue.pop_front() {
            match a {
                FollowerAction::Send(m) => self.to_primary.push_back(m),
                FollowerAction::AdoptHistory(h) => self.fe.replid = h.replid,
                FollowerAction::BeginFullSync { offset, history } => {
                    self.fe.replid = history.replid;
                    self.fe.stale = true;
                    self.fe.full = Some((offset, Vec::new()));
                    self.fe.staging.clear();
                }
                FollowerAction::Append { start, bytes, apply } => {
                    let end = match &self.fe.full {
                        Some((at, stored)) => at + stored.len() as u64,
                        None => self.fe.data.len() as u64,
                    };
                    if start != end {
                        self.follower_end = Some(LinkEnd::Failed(ReplError::Divergent(format!(
                            "append at {start}, ring ends at {end}"
                        ))));
                        return;
                    }
                    if let (Some((_, stored)), Some(cap)) = (&self.fe.full, self.fe.ring) {
                        if stored.len() + bytes.len() > cap {
                            let full = ReplError::Engine(ringkv::Error::Log(ringkv::log::LogError::Full {
                                needed: bytes.len() as u64,
                                free: (cap - stored.len()) as u64,
                            }));
                            match self.f.handle_ring_full(self.now, start, bytes, full) {
                                Ok(actions) => queue.extend(actions),
                                Err(end) => {
                                    self.follower_end = Some(end);
                                    return;
                                }
                            }
                            continue;
                        }
                    }
                    match (&mut self.fe.full, apply) {
                        (Some((_, stored)), false) => stored.extend_from_slice(&bytes),
                        (None, true) => self.fe.data.extend_from_slice(&bytes),
                        other => panic!("apply flag {apply} with full sync {:?}", other.0.is_some()),
                    }
                    let p = self.fe.progress();
                    queue.extend(self.f.handle_appended(self.now, p));
                }
                FollowerAction::SwapIn { offset } => {
                    let (at, stored) = self.fe.full.take().expect("a full sync");
                    assert_eq!(at, offset);
                    assert_eq!(
                        self.fe.staging.len() as u64,
                        offset,
                        "the snapshot holds the ring up to its offset"
                    );
                    self.fe.data = std::mem::take(&mut self.fe.staging);
                    self.fe.data.extend_from_slice(&stored);
                    self.fe.stale = false;
                    let p = self.fe.progress();
                    queue.extend(self.f.handle_swapped_in(self.now, p));
                }
            }
        }
    }

    fn ended(&self) -> bool {
        self.primary_closed.is_some() || self.follower_end.is_some()
    }

    /// Handshake through data streams open.
    fn connect(&mut self) {
        let hello = self.f.handle_connected(self.now, &self.fe.state());
        self.p.handle_control_opened(self.now);
        let (view, now) = (self.pe.view(), self.now);
        let actions = self.p.handle_hello(now, Ok(Some(hello)), &view, 16);
        self.primary(actions);
        if self.ended() {
            return;
        }
        let reply = self.to_follower.pop_front();
        let actions = self.f.handle_reply(self.now, reply);
        self.follower(actions);
        for i in 0..self.f.expected_streams() {
            // The log stream first, then the snapshot stream.
            let first = if i == 0 {
                self.log_frames.pop_front()
            } else {
                self.snapshot_frames.pop_front()
            };
            match self.f.handle_stream(first) {
                Ok(DataStream::Log) => {}
                Ok(DataStream::Snapshot(intake)) => self.intake = Some(intake),
                Err(end) => {
                    self.follower_end = Some(end);
                    return;
                }
            }
        }
        let p = self.fe.progress();
        let actions = self.f.handle_streams_ready(self.now, p);
        self.follower(actions);
    }

    /// One tick of `dt`: the log stream, one snapshot frame, the control
    /// streams both ways, then timers.
    fn step(&mut self, dt: Duration) {
        if let Some(cursor) = &mut self.log {
            let step = match cursor.poll(&self.pe.served()) {
                LogStep::Read { from, max } => {
                    let from = from as usize;
                    let to = (from + max).min(self.pe.ring.len());
                    let bytes = self.pe.ring[from..to].to_vec();
                    cursor.handle_batch(from as u64, bytes, &self.pe.served())
                }
                s => s,
            };
            match step {
                LogStep::Send(frame) => {
                    let (pos, (raw, wire)) = (cursor.pos(), cursor.bytes());
                    self.p.handle_log_sent(pos, raw, wire);
                    self.log_frames.push_back(frame);
                }
                LogStep::HistoryChanged => {
                    let actions = self.p.handle_log_end(self.now, LogEnd::HistoryChanged);
                    self.log = None;
                    self.primary(actions);
                }
                LogStep::Incompatible { frame, reason } => {
                    self.log_frames.push_back(frame);
                    let actions = self.p.handle_log_end(self.now, LogEnd::Incompatible(reason));
                    self.log = None;
                    self.primary(actions);
                }
                _ => {}
            }
        }
        while !self.f.log_paused() {
            let Some(frame) = self.log_frames.pop_front() else {
                break;
            };
            let actions = self.f.handle_log_frame(self.now, Some(frame));
            self.follower(actions);
        }
        if let Some(intake) = &mut self.intake {
            if let Some(frame) = self.snapshot_frames.pop_front() {
                match intake.handle_frame(Some(frame)).expect("a good snapshot") {
                    SnapshotStep::Feed { raw, wire } => {
                        self.fe.staging.extend_from_slice(&raw);
                        self.f.handle_snapshot_io(self.now, wire);
                    }
                    SnapshotStep::Done => {
                        self.intake = None;
                        let actions = self.f.handle_snapshot_loaded(self.now);
                        self.follower(Ok(actions));
                        let actions = self.p.handle_snapshot_sent(self.now, Ok(()));
                        self.primary(actions);
                    }
                }
            }
        }
        while let Some(m) = self.to_primary.pop_front() {
            let actions = self.p.handle_control_frame(self.now, Some(Ok(m)));
            self.primary(actions);
        }
        while let Some(m) = self.to_follower.pop_front() {
            if let Err(end) = self.f.handle_control_frame(self.now, Some(m)) {
                self.follower_end = Some(end);
            }
        }
        self.now += dt;
        if self.p.poll_timeout().is_some_and(|t| t <= self.now) {
            let (served, now) = (self.pe.served(), self.now);
            let actions = self.p.handle_timeout(now, &served, 1_000);
            self.primary(actions);
        }
        if self.f.poll_timeout().is_some_and(|t| t <= self.now) {
            let (p, now) = (self.fe.progress(), self.now);
            let actions = self.f.handle_timeout(now, p);
            self.follower(Ok(actions));
        }
    }

    fn run(&mut self, steps: usize, write_each: usize) {
        for _ in 0..steps {
            if self.ended() {
                return;
            }
            self.pe.write(write_each);
            self.step(Duration::from_millis(5));
        }
    }
}

fn primary_engine(replid: &str, bytes: usize) -> FakePrimary {
    let mut pe = FakePrimary {
        ring: Vec::new(),
        oldest: 0,
        history: History {
            replid: replid.into(),
            prev_replid: String::new(),
            switch_offset: 0,
            epoch: 0,
        },
    };
    pe.write(bytes);
    pe
}

#[test]
fn full_sync_then_live_then_partial_resync_after_reconnect() {
    let fe = FakeFollower {
        replid: "mine".into(),
        ..FakeFollower::default()
    };
    let mut pair = Pair::new(primary_engine("P", 1000), fe);
    pair.connect();
    assert_eq!(pair.f.phase(), FollowerPhase::FullSync);
    assert_eq!(pair.p.phase(), PrimaryPhase::FullSync);
    // Writes go on during the full sync; then idle steps for the acks and pings.
    pair.run(40, 37);
    pair.run(40, 0);
    assert!(!pair.ended(), "{:?} {:?}", pair.primary_closed, pair.follower_end);
    assert_eq!(pair.fe.data, pair.pe.ring, "the follower holds the primary's bytes");
    assert_eq!(pair.f.phase(), FollowerPhase::Live);
    assert_eq!(pair.p.phase(), PrimaryPhase::Online);
    let link = pair.p.link().expect("link").clone();
    assert_eq!(link.state, FollowerState::Online);
    assert_eq!(link.applied, pair.pe.published());
    assert_eq!(link.sent, pair.pe.published());
    assert_eq!(link.snapshot_bytes, 1000);
    assert_eq!(
        link.bytes_raw,
        pair.pe.published() - 1000,
        "the log from the snapshot's offset"
    );
    assert!(pair.p.acked(pair.pe.published()));
    // The last ack is recent: idle acks flow on the interval.
    assert!(pair.now.saturating_duration_since(link.last_ack) <= Duration::from_millis(25));
    let info = pair.f.info(pair.now);
    assert_eq!((info.full_syncs, info.partial_syncs, info.sync_loops), (1, 0, 0));
    assert_eq!(info.master_repl_offset, pair.pe.published(), "pings carry the log end");

    // The link drops; the primary writes; the follower continues by offset.
    assert_eq!(
        pair.f.handle_link_end(pair.now, LinkEnd::Reconnect("dropped".into())),
        Some(Duration::ZERO)
    );
    pair.pe.write(500);
    pair.reconnect();
    pair.connect();
    assert_eq!(pair.f.phase(), FollowerPhase::Live);
    pair.run(30, 11);
    pair.run(10, 0);
    assert!(!pair.ended());
    assert_eq!(pair.fe.data, pair.pe.ring);
    let info = pair.f.info(pair.now);
    assert_eq!((info.full_syncs, info.partial_syncs), (1, 1));
}

#[test]
fn a_history_change_mid_stream_resyncs_the_follower() {
    let fe = FakeFollower {
        replid: "P".into(),
        ..FakeFollower::default()
    };
    let mut pair = Pair::new(primary_engine("P", 0), fe);
    pair.connect();
    assert_eq!(
        pair.f.phase(),
        FollowerPhase::Live,
        "same history from 0: a partial resync"
    );
    pair.run(10, 20);
    // Promoted elsewhere: the served history changes.
    pair.pe.history.replid = "Q".into();
    pair.run(40, 0);
    assert!(matches!(
        &pair.primary_closed,
        Some(PrimaryAction::Close { code: CloseCode::Resync, reason, .. }) if reason == HISTORY_CHANGED
    ));
    assert!(matches!(&pair.follower_end, Some(LinkEnd::Reconnect(r)) if r == HISTORY_CHANGED));
}

#[test]
fn a_follower_that_left_the_ring_gets_a_full_sync() {
    let fe = FakeFollower {
        replid: "P".into(),
        data: vec![0; 10],
        ..FakeFollower::default()
    };
    let mut pe = primary_engine("P", 1000);
    pe.oldest = 500;
    let mut pair = Pair::new(pe, fe);
    pair.connect();
    assert_eq!(pair.f.phase(), FollowerPhase::FullSync);
    assert_eq!(
        pair.f.info(pair.now).last_full_sync_reason.as_deref(),
        Some("the follower's offset is no longer in the primary's ring")
    );
    pair.run(60, 3);
    assert!(!pair.ended());
    assert_eq!(pair.fe.data, pair.pe.ring);
}

#[test]
fn a_full_sync_whose_log_outgrows_the_ring_pauses_the_log_until_the_swap() {
    let fe = FakeFollower {
        replid: "mine".into(),
        ring: Some(300),
        ..FakeFollower::default()
    };
    let mut pair = Pair::new(primary_engine("P", 2000), fe);
    pair.connect();
    assert_eq!(pair.f.phase(), FollowerPhase::FullSync);
    // The snapshot streams in 29 steps of 70 bytes while the primary writes
    // 60 bytes a step: far more than the 300-byte ring.
    pair.run(10, 60);
    assert!(pair.f.log_paused(), "the ring filled: the log waits");
    assert_eq!(pair.f.phase(), FollowerPhase::FullSync);
    pair.run(60, 60);
    pair.run(40, 0);
    assert!(!pair.ended(), "{:?} {:?}", pair.primary_closed, pair.follower_end);
    assert_eq!(pair.f.phase(), FollowerPhase::Live);
    assert!(!pair.f.log_paused());
    assert_eq!(pair.fe.data, pair.pe.ring, "the follower holds the primary's bytes");
    let info = pair.f.info(pair.now);
    assert_eq!(
        (info.full_syncs, info.failed_full_syncs, info.full_sync_log_pauses),
        (1, 0, 1)
    );
    assert!(pair.p.acked(pair.pe.published()));
}

#[test]
fn full_syncs_that_keep_failing_halt_after_the_configured_attempts() {
    let mut pair = Pair::new(primary_engine("P", 2000), FakeFollower::default());
    for attempt in 1..=10u64 {
        pair.reconnect();
        pair.connect();
        assert_eq!(pair.f.phase(), FollowerPhase::FullSync, "attempt {attempt}");
        pair.run(3, 10);
        let end = LinkEnd::Failed(ReplError::Timeout("snapshot stalled".into()));
        let wait = pair.f.handle_link_end(pair.now, end);
        assert_eq!(pair.f.info(pair.now).failed_full_syncs, attempt);
        if attempt < 10 {
            assert!(wait.is_some(), "attempt {attempt} retries");
        } else {
            assert_eq!(wait, None, "halts after max_full_sync_attempts");
        }
    }
    assert_eq!(pair.f.phase(), FollowerPhase::Halted);
    let info = pair.f.info(pair.now);
    assert!(info.halted);
    assert_eq!(
        info.last_error.as_deref(),
        Some("10 full syncs in a row did not complete (max_full_sync_attempts); the last: timed out: snapshot stalled")
    );
}
