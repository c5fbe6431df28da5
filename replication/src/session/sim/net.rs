//! The simulated network: one [`Wire`] per QUIC connection between a
//! follower and a primary, over the follower's [`Path`].
//!
//! What QUIC can do to the replication streams, and so what this models:
//!
//! - four streams (the control stream both ways, the log and the snapshot
//!   streams), each reliable and ordered, delivered independently of the
//!   others (QUIC has no head-of-line blocking across streams);
//! - latency with jitter and a bandwidth per direction (a packet leaves
//!   when the previous one has, at the path's rate), and flow control: a
//!   data stream takes a frame only while what is in flight and unread
//!   there leaves room in its window (the drivers' one frame being written
//!   waits for it: QUIC flow control is their only buffer);
//! - a partition (nothing is delivered; QUIC retransmits, so what was sent
//!   arrives in order once it heals, unless an end gave up first);
//! - keep-alives and the idle timeout: an end that has not heard from the
//!   other for `idle` (a partition, a paused or crashed peer, a peer whose
//!   connection is gone) closes the connection silently;
//! - a reset at any byte: what was in flight is cut at a random byte of
//!   each stream (a partial frame is never readable) and each end learns of
//!   it after a random delay, reading meanwhile what had arrived;
//! - a close by one end (its application code and reason, as quinn reports
//!   them), learned by the other after the path's latency.
//!
//! A hostile transport (level (b) of the simulation) also drops,
//! duplicates or reorders whole frames inside a stream
//! ([`Path::hostile`]): QUIC never does that, and a session must end the
//! link with an error rather than apply a byte at a wrong offset.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::protocol::{decode_frame, Message};
use crate::ReplError;

use super::rng::Rng;

/// The longest a hostile transport holds a frame back to reorder it.
const HOLD_BACK: Duration = Duration::from_millis(20);

/// An end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Primary,
    Follower,
}

impl End {
    fn idx(self) -> usize {
        match self {
            End::Primary => 0,
            End::Follower => 1,
        }
    }

    fn other(self) -> End {
        match self {
            End::Primary => End::Follower,
            End::Follower => End::Primary,
        }
    }
}

/// A stream of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// The control stream, follower to primary (`Hello`, acks).
    Up,
    /// The control stream, primary to follower (the answer, pings).
    Down,
    /// The log stream.
    Log,
    /// The snapshot stream.
    Snapshot,
}

impl Lane {
    pub(super) const ALL: [Lane; 4] = [Lane::Up, Lane::Down, Lane::Log, Lane::Snapshot];

    fn idx(self) -> usize {
        match self {
            Lane::Up => 0,
            Lane::Down => 1,
            Lane::Log => 2,
            Lane::Snapshot => 3,
        }
    }

    /// The end that writes this stream.
    pub(super) fn sender(self) -> End {
        match self {
            Lane::Up => End::Follower,
            _ => End::Primary,
        }
    }

    /// A data stream (flow-controlled at the sender in the drivers).
    pub(super) fn is_data(self) -> bool {
        matches!(self, Lane::Log | Lane::Snapshot)
    }
}

/// The path between a follower and whichever primary it connects to.
#[derive(Debug, Clone)]
pub(super) struct Path {
    /// One-way latency.
    pub(super) latency: Duration,
    /// Up to this much more, per packet (order within a stream is kept).
    pub(super) jitter_ms: u64,
    /// Bytes per millisecond, each direction.
    pub(super) rate: u64,
    /// Nothing is delivered before this.
    pub(super) partitioned_until: Option<Instant>,
    /// Per mille of frames dropped, duplicated or reordered by a hostile
    /// transport (0: QUIC's guarantees hold).
    pub(super) hostile: u64,
}

impl Path {
    pub(super) fn up(&self, now: Instant) -> bool {
        self.partitioned_until.is_none_or(|t| now >= t)
    }
}

/// How an end learns that its connection is gone.
#[derive(Debug, Clone)]
pub(super) enum Gone {
    /// This end closed it (or its process died).
    Local,
    /// The other end closed it with this application code and reason.
    Closed { code: u32, reason: String },
    /// A reset (a middlebox, a stateless reset after a restart).
    Reset,
    /// Nothing heard within the idle timeout.
    TimedOut,
}

impl Gone {
    /// The error a driver sees for it (quinn's `ConnectionLost`, with the
    /// close code mapping of `ReplError::from(quinn::ConnectionError)`).
    pub(super) fn error(&self) -> ReplError {
        match self {
            Gone::Closed { code, reason } if *code == 5 => ReplError::Incompatible(reason.clone()),
            Gone::Closed { code, reason } => ReplError::Connection(format!("closed by peer: {reason} (code {code})")),
            Gone::Reset => ReplError::Connection("reset by peer".into()),
            Gone::TimedOut => ReplError::Connection("timed out".into()),
            Gone::Local => ReplError::Connection("closed".into()),
        }
    }
}

/// What a reader finds on a stream.
#[derive(Debug)]
pub(super) enum Read {
    /// Nothing complete yet.
    Nothing,
    /// A whole frame.
    Frame(Message),
    /// The stream was finished between frames.
    End,
    /// A frame that does not decode, or a stream that ended inside one.
    Error(ReplError),
}

#[derive(Debug)]
struct Packet {
    at: Instant,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Stream {
    flight: VecDeque<Packet>,
    flight_bytes: usize,
    /// Delivered, not read yet (from `read`).
    buf: Vec<u8>,
    read: usize,
    last_at: Option<Instant>,
    /// The FIN was sent; it arrives after the last packet.
    fin_sent: bool,
    fin_seen: bool,
    /// Order in which the streams were opened (first bytes sent).
    opened: Option<u64>,
    /// Anything delivered yet (the receiver can accept the stream).
    seen: bool,
    /// A frame a hostile transport holds back to deliver after the next
    /// (or after [`HOLD_BACK`], if no next one comes).
    held_back: Option<Vec<u8>>,
    held_since: Option<Instant>,
}

impl Stream {
    fn unread(&self) -> usize {
        self.buf.len() - self.read
    }

    fn queued(&self) -> usize {
        self.flight_bytes + self.unread() + self.held_back.as_ref().map_or(0, Vec::len)
    }
}

/// One QUIC connection between a follower and a primary.
#[derive(Debug)]
pub(super) struct Wire {
    streams: [Stream; 4],
    /// When each direction's link is free again (0: to the follower).
    busy: [Instant; 2],
    last_heard: [Instant; 2],
    /// When each end learns that the connection is gone, and how.
    gone: [Option<(Instant, Gone)>; 2],
    /// Stream window (bytes in flight and unread per stream).
    pub(super) window: usize,
    idle: Duration,
    /// On learning that the connection is gone, an end drops what it had
    /// received and not read yet (quinn may), or reads it first.
    drop_unread: bool,
    opened: u64,
    /// Reset: nothing written from now on is delivered.
    cut: bool,
    /// Whole-frame faults a hostile transport made on this connection.
    pub(super) hostile_faults: u64,
}

impl Wire {
    pub(super) fn new(now: Instant, window: usize, idle: Duration, rng: &mut Rng) -> Wire {
        Wire {
            streams: Default::default(),
            busy: [now; 2],
            last_heard: [now; 2],
            gone: [None, None],
            window,
            idle,
            drop_unread: rng.chance(500),
            opened: 0,
            cut: false,
            hostile_faults: 0,
        }
    }

    fn stream(&self, lane: Lane) -> &Stream {
        &self.streams[lane.idx()]
    }

    fn stream_mut(&mut self, lane: Lane) -> &mut Stream {
        &mut self.streams[lane.idx()]
    }

    /// Bytes in flight and unread on `lane`.
    pub(super) fn queued(&self, lane: Lane) -> usize {
        self.stream(lane).queued()
    }

    /// Whether a frame of `len` bytes may be written on a data stream now
    /// (the window has room, or the stream is empty: a frame larger than
    /// the window goes alone).
    pub(super) fn room(&self, lane: Lane, len: usize) -> bool {
        let q = self.queued(lane);
        q == 0 || q + len <= self.window
    }

    /// The end has not learned yet that the connection is gone.
    pub(super) fn open_for(&self, end: End, now: Instant) -> bool {
        self.gone[end.idx()].as_ref().is_none_or(|(at, _)| *at > now)
    }

    /// How `end` learned that the connection is gone, once it has.
    pub(super) fn gone(&self, end: End, now: Instant) -> Option<&Gone> {
        match &self.gone[end.idx()] {
            Some((at, g)) if *at <= now => Some(g),
            _ => None,
        }
    }

    fn learn(&mut self, end: End, at: Instant, how: Gone) {
        let slot = &mut self.gone[end.idx()];
        if slot.as_ref().is_none_or(|(t, _)| at < *t) {
            *slot = Some((at, how));
        }
    }

    /// Writes one encoded frame on `lane` (flow control is the caller's:
    /// see [`Wire::room`]). A hostile path may drop, duplicate or hold the
    /// frame back behind the next one.
    pub(super) fn send(&mut self, lane: Lane, frame: Vec<u8>, now: Instant, path: &Path, rng: &mut Rng) {
        if self.cut || !self.open_for(lane.sender(), now) {
            return;
        }
        if self.stream(lane).opened.is_none() {
            self.opened += 1;
            let n = self.opened;
            self.stream_mut(lane).opened = Some(n);
        }
        if path.hostile > 0 && rng.chance(path.hostile) {
            self.hostile_faults += 1;
            match rng.below(3) {
                0 => return,
                1 => {
                    self.push(lane, frame.clone(), now, path, rng);
                    self.push(lane, frame, now, path, rng);
                    return;
                }
                _ => {
                    let s = self.stream_mut(lane);
                    s.held_since = Some(now);
                    if let Some(old) = s.held_back.replace(frame) {
                        self.push(lane, old, now, path, rng);
                    }
                    return;
                }
            }
        }
        self.push(lane, frame, now, path, rng);
        if let Some(old) = self.stream_mut(lane).held_back.take() {
            self.push(lane, old, now, path, rng);
        }
    }

    fn push(&mut self, lane: Lane, bytes: Vec<u8>, now: Instant, path: &Path, rng: &mut Rng) {
        let dir = match lane.sender() {
            End::Primary => 0,
            End::Follower => 1,
        };
        let rate = path.rate.max(1);
        let wire_ms = (bytes.len() as u64).div_ceil(rate);
        let leaves = self.busy[dir].max(now) + Duration::from_millis(wire_ms);
        self.busy[dir] = leaves;
        let jitter = Duration::from_millis(rng.below(path.jitter_ms + 1));
        let stream = self.stream_mut(lane);
        let at = (leaves + path.latency + jitter).max(stream.last_at.unwrap_or(now));
        stream.last_at = Some(at);
        stream.flight_bytes += bytes.len();
        stream.flight.push_back(Packet { at, bytes });
    }

    /// Finishes `lane` (after what was written; a held-back frame first).
    pub(super) fn finish(&mut self, lane: Lane, now: Instant, path: &Path, rng: &mut Rng) {
        if self.cut {
            return;
        }
        if let Some(old) = self.stream_mut(lane).held_back.take() {
            self.push(lane, old, now, path, rng);
        }
        self.stream_mut(lane).fin_sent = true;
    }

    /// Moves what has arrived by `now` into the receivers' buffers, and
    /// runs keep-alives and idle timeouts. `running` says which ends'
    /// processes run (not paused, not crashed).
    pub(super) fn tick(&mut self, now: Instant, path: &Path, running: [bool; 2], rng: &mut Rng) {
        for lane in Lane::ALL {
            let s = self.stream_mut(lane);
            if s.held_since.is_some_and(|t| now >= t + HOLD_BACK) {
                s.held_since = None;
                if let Some(old) = s.held_back.take() {
                    self.push(lane, old, now, path, rng);
                }
            }
        }
        if path.up(now) {
            for lane in Lane::ALL {
                let receiver = lane.sender().other();
                // What arrives after the receiver learned the end is lost.
                let cutoff = match &self.gone[receiver.idx()] {
                    Some((at, _)) => (*at).min(now),
                    None => now,
                };
                let s = self.stream_mut(lane);
                while s.flight.front().is_some_and(|p| p.at <= cutoff) {
                    let Some(p) = s.flight.pop_front() else { break };
                    s.flight_bytes -= p.bytes.len();
                    s.seen = true;
                    if s.read > 0 && s.read == s.buf.len() {
                        s.buf.clear();
                        s.read = 0;
                    }
                    s.buf.extend_from_slice(&p.bytes);
                }
                if s.fin_sent && s.flight.is_empty() && s.held_back.is_none() {
                    s.fin_seen = true;
                    s.seen = true;
                }
            }
        }
        // Keep-alives flow while the path is up, both ends run and neither
        // has closed its end.
        let alive = self.gone.iter().all(Option::is_none);
        if path.up(now) && running[0] && running[1] && alive {
            self.last_heard = [now, now];
        }
        for end in [End::Primary, End::Follower] {
            if running[end.idx()]
                && self.gone[end.idx()].is_none()
                && now.saturating_duration_since(self.last_heard[end.idx()]) >= self.idle
            {
                self.learn(end, now, Gone::TimedOut);
            }
        }
    }

    /// Once `end` learned the connection is gone: what it had not read is
    /// dropped, or kept to be read first (see `drop_unread`).
    pub(super) fn discard_unread(&mut self, end: End) {
        if !self.drop_unread {
            return;
        }
        for lane in Lane::ALL {
            if lane.sender() != end {
                let s = self.stream_mut(lane);
                s.buf.clear();
                s.read = 0;
                s.fin_seen = false;
                s.fin_sent = false;
            }
        }
    }

    /// Whether the receiver can accept `lane` (anything of it arrived).
    pub(super) fn seen(&self, lane: Lane) -> bool {
        self.stream(lane).seen
    }

    /// The order in which `lane` was opened, once it was.
    pub(super) fn opened(&self, lane: Lane) -> Option<u64> {
        self.stream(lane).opened
    }

    /// The next frame of `lane` for its receiver, with frames limited to
    /// `max` bytes (as the drivers' `read_frame`).
    pub(super) fn read(&mut self, lane: Lane, max: usize) -> Read {
        let s = self.stream_mut(lane);
        let pending = &s.buf[s.read..];
        match decode_frame(pending, max) {
            Ok(Some((msg, used))) => {
                s.read += used;
                if s.read == s.buf.len() {
                    s.buf.clear();
                    s.read = 0;
                }
                Read::Frame(msg)
            }
            Ok(None) if s.fin_seen && pending.is_empty() => Read::End,
            Ok(None) if s.fin_seen => Read::Error(ReplError::Connection(format!(
                "the stream ended inside a frame ({} bytes)",
                pending.len()
            ))),
            Ok(None) => Read::Nothing,
            Err(e) => {
                // The driver's reader stops at a bad frame.
                s.buf.clear();
                s.read = 0;
                Read::Error(e.into())
            }
        }
    }

    /// `end` closes the connection with an application code: it is gone
    /// for `end` at once, and the other end learns it after the latency
    /// (if the path is up; else it times out on its own).
    pub(super) fn close(&mut self, end: End, code: u32, reason: &str, now: Instant, path: &Path) {
        self.learn(end, now, Gone::Local);
        if path.up(now) {
            self.learn(
                end.other(),
                now + path.latency,
                Gone::Closed {
                    code,
                    reason: reason.to_string(),
                },
            );
        }
    }

    /// `end`'s process died: its end is gone; the other end times out (or
    /// learns of it from a stateless reset, see [`Wire::reset_by_restart`]).
    pub(super) fn crash(&mut self, end: End, now: Instant) {
        self.learn(end, now, Gone::Local);
    }

    /// The crashed `end` runs again: a packet of the other end's gets a
    /// stateless reset.
    pub(super) fn reset_by_restart(&mut self, end: End, now: Instant, path: &Path) {
        if path.up(now) {
            self.learn(end.other(), now + path.latency * 2, Gone::Reset);
        }
    }

    /// A reset at any byte: each stream's bytes in flight are cut at a
    /// random byte (a partial frame is delivered, and never readable), and
    /// each end learns of it within twice the latency.
    pub(super) fn reset(&mut self, now: Instant, path: &Path, rng: &mut Rng) {
        self.cut = true;
        for lane in Lane::ALL {
            let s = self.stream_mut(lane);
            s.held_back = None;
            // A FIN still in flight is lost with the bytes before it.
            if !s.fin_seen {
                s.fin_sent = false;
            }
            let total = s.flight_bytes;
            let mut keep = rng.below(total as u64 + 1) as usize;
            let mut kept = VecDeque::new();
            while let Some(mut p) = s.flight.pop_front() {
                if keep == 0 {
                    break;
                }
                if p.bytes.len() > keep {
                    p.bytes.truncate(keep);
                }
                keep -= p.bytes.len();
                kept.push_back(p);
            }
            s.flight_bytes = kept.iter().map(|p| p.bytes.len()).sum();
            s.flight = kept;
        }
        let limit = (path.latency * 2).as_millis() as u64;
        for end in [End::Primary, End::Follower] {
            let at = now + Duration::from_millis(rng.below(limit + 1));
            self.learn(end, at, Gone::Reset);
        }
    }

    /// The next time something happens on this wire by itself.
    pub(super) fn next_event(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for s in &self.streams {
            if let Some(p) = s.flight.front() {
                consider(p.at);
            }
            if let Some(t) = s.held_since {
                consider(t + HOLD_BACK);
            }
        }
        for (at, _) in self.gone.iter().flatten() {
            consider(*at);
        }
        for at in self.last_heard {
            consider(at + self.idle);
        }
        next
    }
}
