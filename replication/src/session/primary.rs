//! One follower's connection as its primary sees it, without I/O.
//!
//! A [`PrimarySession`] owns:
//!
//! - the handshake: the control stream and `Hello` each within
//!   `handshake_timeout_ms`, the codec, the follower's [`Limits`] (from its
//!   `Hello` and this primary's `max_frame_bytes`; limits that can carry no
//!   record are refused with `Incompatible`), and otherwise [`decide`]
//!   (PSYNC2's rules, and the protocol version): `Continue` with the log
//!   stream from the follower's offset, or a full sync (a snapshot is
//!   started; once its offset is known, `FullSync`, the log stream from
//!   there and the snapshot stream), or `Reject`;
//! - the follower's state (handshake, full sync until the snapshot is
//!   sent, online) and what it acknowledged (applied, durable, when); an
//!   ack beyond the offset sent to it (the follower's own offset at the
//!   handshake or the snapshot's, then the log handed to its stream) is a
//!   protocol violation: the follower is disconnected, and a closed
//!   session never counts for `WAIT` or the write gate;
//! - pings every `ping_interval_ms`, each after checking that the history
//!   served is still the one the follower was told (else `Resync`);
//! - how a log stream's end is answered (the follower left the ring, or
//!   the history changed: `Resync`; a record beyond the follower's limits:
//!   `Incompatible`, so it halts; anything else ends the connection);
//! - which errors are the follower's fault (protocol errors) and which
//!   counters each outcome moves ([`PrimaryCounter`]).
//!
//! The log stream runs beside the control stream; its logic is a
//! [`LogCursor`] (what to read next, when to stop because the history
//! changed, where to cut a batch: on a chained node at the applied offset,
//! and always at a record boundary within the follower's [`Limits`]; a
//! record beyond them stops the stream), driven by the task that writes
//! the stream. [`SnapshotSender`] frames the snapshot stream within the
//! same limits and [`SnapshotStall`] decides when a follower that takes no
//! snapshot bytes is given up on.

use std::time::{Duration, Instant};

use crate::compress::Compressor;
use crate::config::PrimaryConfig;
use crate::protocol::{
    choose_codec, decide, Codec, Decision, FollowerView, FullSyncReason, History, Limits, Message, PrimaryView,
    StreamKind, PROTOCOL_VERSION,
};
use crate::stats::FollowerState;
use crate::ReplError;

/// Why a log stream stops when the served history is no longer the one
/// the follower was told about (a promotion, or an upstream full sync on a
/// chained node).
pub const HISTORY_CHANGED: &str = "the primary's history changed";

/// What the primary serves right now, as the driver reads it from the
/// engine for each check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Replication id of the ring's history.
    pub replid: String,
    /// The engine is itself in a full sync (its data is stale).
    pub stale: bool,
    /// End of the ring.
    pub published: u64,
    /// How far the log may be sent: the ring's end on a primary, the
    /// applied offset on a follower serving others.
    pub limit: u64,
    /// This node is a follower serving others (its limit moves after the
    /// ring's end, so it is polled rather than waited for).
    pub chained: bool,
}

/// Counters of the primary's stats moved by a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryCounter {
    /// A handshake was refused.
    Rejected,
    /// A partial resync was accepted.
    PartialOk,
    /// A partial resync was asked for and refused (a full sync instead).
    PartialErr,
    /// A full sync was served.
    FullSync,
    /// A follower was told to resync because it left the ring.
    ResyncLagged,
    /// The follower sent a malformed or unexpected frame.
    ProtocolError,
}

/// Close codes a session asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The handshake was refused.
    Rejected,
    /// The follower must reconnect (it left the ring, or the history changed).
    Resync,
    /// The follower sent a malformed or unexpected frame.
    Protocol,
    /// The follower cannot take this primary's stream (its limits): it
    /// halts rather than reconnect.
    Incompatible,
    /// Anything else (a failure, a timeout).
    Shutdown,
}

/// What a [`PrimarySession`] wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryAction {
    /// Send this message on the control stream.
    Send(Message),
    /// Start a snapshot, then report [`PrimarySession::handle_snapshot_started`].
    StartSnapshot,
    /// Open the log stream, streaming from `from` with `codec` while the
    /// served history stays `replid` (a [`LogCursor`]), in frames within
    /// `limits`.
    OpenLog {
        /// First offset sent.
        from: u64,
        /// The connection's codec.
        codec: Codec,
        /// The history the follower was told about.
        replid: String,
        /// What the follower can take.
        limits: Limits,
    },
    /// Open the snapshot stream and stream the started snapshot (a
    /// [`SnapshotSender`], in frames within `limits`); report
    /// [`PrimarySession::handle_snapshot_sent`].
    OpenSnapshot {
        /// The connection's codec.
        codec: Codec,
        /// What the follower can take.
        limits: Limits,
    },
    /// Add one to this counter.
    Count(PrimaryCounter),
    /// The follower acknowledged offsets: wake whoever waits for acks.
    Acked,
    /// End the session: send `last` (if any; a failure to send it is not
    /// an error), finish the control stream and give the follower a moment
    /// to read it, then close the connection with `code` and `reason`.
    Close {
        /// A last message (`Reject`, `Resync`).
        last: Option<Message>,
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
        /// What went wrong, for the logs (`None`: an orderly end).
        error: Option<String>,
    },
    /// End the session quietly (the follower closed its control stream).
    Done,
}

/// Where a [`PrimarySession`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryPhase {
    /// Connected; waiting for the follower's control stream.
    AwaitingControl,
    /// Waiting for `Hello`.
    AwaitingHello,
    /// A full sync was decided; its snapshot is starting.
    StartingSnapshot,
    /// The snapshot streams beside the log.
    FullSync,
    /// Streaming the log.
    Online,
    /// The session ended.
    Closed,
}

/// A follower's link, as its primary reports it (once it said hello).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkProgress {
    /// Name the follower gave.
    pub name: String,
    /// State.
    pub state: FollowerState,
    /// Offset acknowledged as applied.
    pub applied: u64,
    /// Offset acknowledged as durable.
    pub durable: u64,
    /// Offset sent so far (what the follower had at the handshake, or the
    /// snapshot's offset, then the log handed to its stream): acks beyond
    /// it are refused.
    pub sent: u64,
    /// When the last ack arrived (the handshake, before any).
    pub last_ack: Instant,
    /// Codec in use.
    pub codec: Codec,
    /// Log bytes before compression.
    pub bytes_raw: u64,
    /// Log bytes sent.
    pub bytes_wire: u64,
    /// Snapshot bytes of its full sync (before compression).
    pub snapshot_bytes: u64,
    /// Snapshot bytes sent.
    pub snapshot_wire: u64,
}

/// How a log stream ended.
#[derive(Debug)]
pub enum LogEnd {
    /// The follower's offset left the ring.
    Lagged {
        /// The ring's oldest offset now.
        oldest: u64,
    },
    /// The served history is no longer the one the follower was told.
    HistoryChanged,
    /// The next record is beyond the follower's limits (the reason names
    /// the limit and the offset); the stream told the follower so.
    Incompatible(String),
    /// The stream failed (connection lost, engine error).
    Failed(ReplError),
}

/// One follower's connection, as its primary sees it (see the module docs).
#[derive(Debug)]
pub struct PrimarySession {
    id: u64,
    codecs: Vec<Codec>,
    max_frame_bytes: usize,
    handshake_timeout: Duration,
    ping_interval: Duration,
    phase: PrimaryPhase,
    deadline: Option<Instant>,
    next_ping: Option<Instant>,
    link: Option<LinkProgress>,
    /// Why a full sync is served, while its snapshot starts.
    full: Option<(FullSyncReason, u64)>,
    /// The history the follower was told about.
    history_sent: String,
    /// What the follower can take, once it said hello.
    limits: Option<Limits>,
    /// The follower said it is an observer (a backup): never counted by
    /// [`PrimarySession::acked`] or [`PrimarySession::within`].
    observer: bool,
}

impl PrimarySession {
    /// Session `id` (for logs) of a follower that connected at `now`.
    pub fn new(id: u64, config: &PrimaryConfig, now: Instant) -> PrimarySession {
        let handshake_timeout = Duration::from_millis(config.handshake_timeout_ms);
        PrimarySession {
            id,
            codecs: config.codecs.clone(),
            max_frame_bytes: config.max_frame_bytes,
            handshake_timeout,
            ping_interval: Duration::from_millis(config.ping_interval_ms.max(10)),
            phase: PrimaryPhase::AwaitingControl,
            deadline: Some(now + handshake_timeout),
            next_ping: None,
            link: None,
            full: None,
            history_sent: String::new(),
            limits: None,
            observer: false,
        }
    }

    /// Where the session is.
    pub fn phase(&self) -> PrimaryPhase {
        self.phase
    }

    /// The follower's link, once it said hello.
    pub fn link(&self) -> Option<&LinkProgress> {
        self.link.as_ref()
    }

    /// What the follower can take, once its hello was accepted.
    pub fn limits(&self) -> Option<Limits> {
        self.limits
    }

    /// Whether the follower said it is an observer (a backup).
    pub fn is_observer(&self) -> bool {
        self.observer
    }

    /// Online and acknowledged applying `offset` (a closed session never
    /// counts, nor does an observer's).
    pub fn acked(&self, offset: u64) -> bool {
        !self.observer
            && self.phase != PrimaryPhase::Closed
            && self
                .link
                .as_ref()
                .is_some_and(|l| l.state == FollowerState::Online && l.applied >= offset)
    }

    /// Counts for a write gate at `now`: online, within `max_lag` bytes of
    /// `published`, with an ack no older than `max_ack_age`.
    /// A closed session never counts, nor does an observer.
    pub fn within(&self, now: Instant, published: u64, max_lag: u64, max_ack_age: Duration) -> bool {
        !self.observer
            && self.phase != PrimaryPhase::Closed
            && self.link.as_ref().is_some_and(|l| {
                l.state == FollowerState::Online
                    && published.saturating_sub(l.applied) <= max_lag
                    && now.saturating_duration_since(l.last_ack) <= max_ack_age
            })
    }

    /// When [`PrimarySession::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            PrimaryPhase::AwaitingControl | PrimaryPhase::AwaitingHello => self.deadline,
            PrimaryPhase::FullSync | PrimaryPhase::Online => self.next_ping,
            _ => None,
        }
    }

    /// Timers: the handshake deadlines, and pings (each after the history
    /// check). `time_ms` is the wall clock sent in pings.
    pub fn handle_timeout(&mut self, now: Instant, served: &Served, time_ms: u64) -> Vec<PrimaryAction> {
        match self.phase {
            PrimaryPhase::AwaitingControl | PrimaryPhase::AwaitingHello if self.deadline.is_some_and(|t| t <= now) => {
                let what = if self.phase == PrimaryPhase::AwaitingControl {
                    "no control stream"
                } else {
                    "no hello"
                };
                self.fail(ReplError::Timeout(what.into()))
            }
            PrimaryPhase::FullSync | PrimaryPhase::Online if self.next_ping.is_some_and(|t| t <= now) => {
                self.next_ping = Some(now + self.ping_interval);
                if served.replid != self.history_sent || served.stale {
                    // Promoted (or re-parented): the follower must adopt the new history.
                    return self.resync(HISTORY_CHANGED.into());
                }
                vec![PrimaryAction::Send(Message::Ping {
                    published: served.published,
                    time_ms,
                })]
            }
            _ => Vec::new(),
        }
    }

    /// The follower opened its control stream.
    pub fn handle_control_opened(&mut self, now: Instant) {
        if self.phase == PrimaryPhase::AwaitingControl {
            self.phase = PrimaryPhase::AwaitingHello;
            self.deadline = Some(now + self.handshake_timeout);
        }
    }

    /// The first frame on the control stream (`Ok(None)`: the stream
    /// ended). `view` is what the engine serves now, `max_payload` the
    /// ring's largest record (a follower that cannot take a record that
    /// large is warned about in the logs; the record itself, if ever
    /// written, stops its stream).
    pub fn handle_hello(
        &mut self,
        now: Instant,
        frame: Result<Option<Message>, ReplError>,
        view: &PrimaryView,
        max_payload: usize,
    ) -> Vec<PrimaryAction> {
        let Ok(Some(Message::Hello {
            version,
            name,
            replid,
            offset,
            codecs,
            max_frame,
            max_record,
            capacity,
            observer,
        })) = frame
        else {
            // A bad first frame, or none, is the follower's fault.
            let e = match frame {
                Err(e) => e,
                Ok(_) => ReplError::Peer("the first frame must be Hello".into()),
            };
            return self.protocol_error(e);
        };
        self.deadline = None;
        self.observer = observer;
        let codec = choose_codec(&codecs, &self.codecs);
        self.link = Some(LinkProgress {
            name: name.clone(),
            state: FollowerState::Handshake,
            applied: 0,
            durable: 0,
            sent: offset,
            last_ack: now,
            codec,
            bytes_raw: 0,
            bytes_wire: 0,
            snapshot_bytes: 0,
            snapshot_wire: 0,
        });
        let follower = FollowerView {
            version,
            replid,
            offset,
        };
        // Another version's Hello carries no limits: refused by its version.
        let limits = match version {
            PROTOCOL_VERSION => Limits::negotiate(self.max_frame_bytes, max_frame, max_record, capacity).map(Some),
            _ => Ok(None),
        };
        let limits = match limits {
            Ok(l) => l,
            Err(reason) => {
                tracing::error!(id = self.id, %name, %reason, "follower refused: incompatible limits");
                return self.incompatible(reason);
            }
        };
        let decision = decide(view, &follower);
        tracing::info!(id = self.id, %name, offset, ?decision, ?limits, "follower handshake");
        let (decision, limits) = match (decision, limits) {
            (Decision::Reject(reason), _) => return self.reject(reason),
            // Not reached: `decide` refuses another version.
            (_, None) => return self.reject(format!("protocol version {version} is not supported")),
            (decision, Some(limits)) => (decision, limits),
        };
        if limits.check_record(0, max_payload).is_err() {
            tracing::warn!(
                id = self.id,
                %name,
                max_payload,
                follower_max_record = limits.max_record,
                max_frame = limits.max_frame,
                "this ring accepts records the follower cannot take: such a record would stop it"
            );
        }
        self.limits = Some(limits);
        match decision {
            // Answered above.
            Decision::Reject(reason) => self.fail(ReplError::Peer(reason)),
            Decision::Continue => {
                self.set_state(FollowerState::Online);
                self.phase = PrimaryPhase::Online;
                self.history_sent = view.history.replid.clone();
                self.next_ping = Some(now);
                vec![
                    PrimaryAction::Count(PrimaryCounter::PartialOk),
                    PrimaryAction::Send(Message::Continue {
                        history: view.history.clone(),
                        offset,
                        codec,
                    }),
                    PrimaryAction::OpenLog {
                        from: offset,
                        codec,
                        replid: view.history.replid.clone(),
                        limits,
                    },
                ]
            }
            Decision::FullSync { reason, lost_bytes } => {
                let mut actions = Vec::new();
                if reason != FullSyncReason::UnknownHistory {
                    actions.push(PrimaryAction::Count(PrimaryCounter::PartialErr));
                }
                actions.push(PrimaryAction::Count(PrimaryCounter::FullSync));
                actions.push(PrimaryAction::StartSnapshot);
                self.set_state(FollowerState::FullSync);
                self.phase = PrimaryPhase::StartingSnapshot;
                self.full = Some((reason, lost_bytes));
                actions
            }
        }
    }

    /// The snapshot started (its offset and history id, from its header),
    /// or failed to; `history` is the ring's history now.
    pub fn handle_snapshot_started(
        &mut self,
        now: Instant,
        started: Result<(u64, String), ReplError>,
        history: History,
    ) -> Vec<PrimaryAction> {
        let Some((reason, lost_bytes)) = self.full.take() else {
            return self.fail(ReplError::Peer("a snapshot without a full sync".into()));
        };
        let (offset, snap_replid) = match started {
            Ok(s) => s,
            Err(e) => return self.fail(e),
        };
        if history.replid != snap_replid {
            return self.fail(ReplError::Peer(
                "the history changed during the snapshot's start".into(),
            ));
        }
        let codec = self.link.as_ref().map_or(Codec::None, |l| l.codec);
        let Some(limits) = self.limits else {
            return self.fail(ReplError::Peer("a snapshot before the follower's limits".into()));
        };
        if let Some(l) = &mut self.link {
            l.sent = offset;
        }
        self.phase = PrimaryPhase::FullSync;
        self.history_sent = snap_replid.clone();
        self.next_ping = Some(now);
        vec![
            PrimaryAction::Send(Message::FullSync {
                history,
                offset,
                codec,
                reason: reason.to_string(),
                lost_bytes,
            }),
            PrimaryAction::OpenLog {
                from: offset,
                codec,
                replid: snap_replid,
                limits,
            },
            PrimaryAction::OpenSnapshot { codec, limits },
        ]
    }

    /// Snapshot bytes were sent (totals so far, raw and on the wire).
    pub fn handle_snapshot_progress(&mut self, raw: u64, wire: u64) {
        if let Some(l) = &mut self.link {
            l.snapshot_bytes = raw;
            l.snapshot_wire = wire;
        }
    }

    /// The snapshot stream is complete (the follower is online), or failed.
    pub fn handle_snapshot_sent(&mut self, _now: Instant, result: Result<(), ReplError>) -> Vec<PrimaryAction> {
        match result {
            Err(e) => self.fail(e),
            Ok(()) => {
                if self.phase == PrimaryPhase::FullSync {
                    self.phase = PrimaryPhase::Online;
                    self.set_state(FollowerState::Online);
                }
                Vec::new()
            }
        }
    }

    /// Log bytes up to `sent` are handed to the log stream, `raw` and
    /// `wire` bytes in total. Report it before writing them: the follower
    /// may ack them as soon as they arrive, and an ack beyond `sent` is a
    /// protocol violation.
    pub fn handle_log_sent(&mut self, sent: u64, raw: u64, wire: u64) {
        if let Some(l) = &mut self.link {
            l.sent = sent;
            l.bytes_raw = raw;
            l.bytes_wire = wire;
        }
    }

    /// The log stream ended.
    pub fn handle_log_end(&mut self, _now: Instant, end: LogEnd) -> Vec<PrimaryAction> {
        match end {
            LogEnd::Lagged { oldest } => {
                let reason = format!("the follower's offset left the ring (oldest is now {oldest})");
                tracing::warn!(id = self.id, %reason, "follower must resync");
                let mut actions = vec![PrimaryAction::Count(PrimaryCounter::ResyncLagged)];
                actions.extend(self.resync(reason));
                actions
            }
            LogEnd::HistoryChanged => self.resync(HISTORY_CHANGED.into()),
            LogEnd::Incompatible(reason) => {
                let name = self.link.as_ref().map_or("", |l| l.name.as_str());
                tracing::error!(id = self.id, %name, %reason, "follower cannot take the log: stopped there");
                self.incompatible(reason)
            }
            LogEnd::Failed(e) => self.fail(e),
        }
    }

    /// A frame on the control stream after the handshake (`None`: the
    /// follower closed it; `Some(Err)`: it could not be read).
    pub fn handle_control_frame(
        &mut self,
        now: Instant,
        frame: Option<Result<Message, ReplError>>,
    ) -> Vec<PrimaryAction> {
        match frame {
            Some(Ok(Message::Ack { applied, durable })) => {
                let sent = self.link.as_ref().map_or(0, |l| l.sent);
                if applied > sent || durable > sent {
                    // A follower that claims more than it was sent would
                    // satisfy WAIT and the write gate with nothing.
                    return self.protocol_error(ReplError::Peer(format!(
                        "ack of applied {applied}, durable {durable} beyond offset {sent}, the end of what was sent"
                    )));
                }
                if let Some(l) = &mut self.link {
                    l.applied = l.applied.max(applied);
                    l.durable = l.durable.max(durable);
                    l.last_ack = now;
                }
                vec![PrimaryAction::Acked]
            }
            Some(Ok(other)) => self.protocol_error(ReplError::Peer(format!(
                "unexpected {} on the control stream",
                other.summary()
            ))),
            Some(Err(e @ ReplError::Protocol(_))) => self.protocol_error(e),
            Some(Err(e)) => self.fail(e),
            None => {
                self.phase = PrimaryPhase::Closed;
                vec![PrimaryAction::Done]
            }
        }
    }

    fn set_state(&mut self, state: FollowerState) {
        if let Some(l) = &mut self.link {
            l.state = state;
        }
    }

    fn resync(&mut self, reason: String) -> Vec<PrimaryAction> {
        self.phase = PrimaryPhase::Closed;
        vec![PrimaryAction::Close {
            last: Some(Message::Resync { reason: reason.clone() }),
            code: CloseCode::Resync,
            reason,
            error: None,
        }]
    }

    /// Refuses the handshake (the follower may retry).
    fn reject(&mut self, reason: String) -> Vec<PrimaryAction> {
        self.phase = PrimaryPhase::Closed;
        vec![
            PrimaryAction::Count(PrimaryCounter::Rejected),
            PrimaryAction::Close {
                last: Some(Message::Reject { reason: reason.clone() }),
                code: CloseCode::Rejected,
                reason,
                error: None,
            },
        ]
    }

    /// Refuses the follower for good (it halts): its limits.
    fn incompatible(&mut self, reason: String) -> Vec<PrimaryAction> {
        self.phase = PrimaryPhase::Closed;
        vec![
            PrimaryAction::Count(PrimaryCounter::Rejected),
            PrimaryAction::Close {
                last: Some(Message::Incompatible { reason: reason.clone() }),
                code: CloseCode::Incompatible,
                reason,
                error: None,
            },
        ]
    }

    fn protocol_error(&mut self, e: ReplError) -> Vec<PrimaryAction> {
        self.phase = PrimaryPhase::Closed;
        vec![
            PrimaryAction::Count(PrimaryCounter::ProtocolError),
            PrimaryAction::Close {
                last: None,
                code: CloseCode::Protocol,
                reason: "protocol error".into(),
                error: Some(e.to_string()),
            },
        ]
    }

    fn fail(&mut self, e: ReplError) -> Vec<PrimaryAction> {
        self.phase = PrimaryPhase::Closed;
        vec![PrimaryAction::Close {
            last: None,
            code: CloseCode::Shutdown,
            reason: String::new(),
            error: Some(e.to_string()),
        }]
    }
}

/// What the log stream does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogStep {
    /// Read up to `max` ring bytes from `from`, then report
    /// [`LogCursor::handle_batch`].
    Read {
        /// Offset to read from.
        from: u64,
        /// Most bytes to read.
        max: usize,
    },
    /// Nothing to send: wait until the ring holds bytes past `pos` (or a
    /// short while), then poll again.
    WaitPublished {
        /// The cursor.
        pos: u64,
    },
    /// Nothing to send on a chained node: poll again shortly (its applied
    /// offset moves after the ring's end, no signal tells).
    PollApplied,
    /// Send this frame, then report [`PrimarySession::handle_log_sent`]
    /// and poll again.
    Send(Message),
    /// The served history changed: end the stream ([`LogEnd::HistoryChanged`]).
    HistoryChanged,
    /// The record at the cursor is beyond the follower's limits (`reason`
    /// names the limit and the offset): send `frame` on the log stream
    /// (after every record before it), finish the stream, and end it with
    /// [`LogEnd::Incompatible`].
    Incompatible {
        /// The `Incompatible` frame.
        frame: Message,
        /// Why.
        reason: String,
    },
}

/// The log stream's logic: what to read and send next, while the history
/// stays the one the follower was told about.
#[derive(Debug)]
pub struct LogCursor {
    pos: u64,
    replid: String,
    batch_bytes: usize,
    limits: Limits,
    compressor: Compressor,
    /// The limit when the pending read was asked for.
    limit: u64,
}

impl LogCursor {
    /// A stream from `from`, in history `replid`, compressed with `codec`,
    /// reading up to `batch_bytes` at a time, in frames within `limits`.
    pub fn new(from: u64, replid: String, codec: Codec, batch_bytes: usize, limits: Limits) -> LogCursor {
        LogCursor {
            pos: from,
            replid,
            batch_bytes,
            limits,
            compressor: Compressor::new(codec),
            limit: from,
        }
    }

    /// The next offset to send.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Log bytes sent before compression, and on the wire.
    pub fn bytes(&self) -> (u64, u64) {
        (self.compressor.bytes_raw, self.compressor.bytes_wire)
    }

    fn same_history(&self, served: &Served) -> bool {
        served.replid == self.replid && !served.stale
    }

    /// What to do next, given what is served now.
    pub fn poll(&mut self, served: &Served) -> LogStep {
        if !self.same_history(served) {
            return LogStep::HistoryChanged;
        }
        // On a follower serving others, only what it has applied is offered.
        if served.limit <= self.pos {
            return if served.chained {
                LogStep::PollApplied
            } else {
                LogStep::WaitPublished { pos: self.pos }
            };
        }
        self.limit = served.limit;
        LogStep::Read {
            from: self.pos,
            max: self.batch_bytes.min(self.limits.log_bytes_per_frame()).max(1),
        }
    }

    /// The bytes read from `start` for the last [`LogStep::Read`] (whole
    /// records, at least one, as `LogView::read_stream` returns them);
    /// `served` is read again after the read (a reset that raced it shows
    /// here). A batch longer than the follower's [`Limits`] allow is cut at
    /// a record boundary (the rest is read again for the next frame); a
    /// first record beyond them is [`LogStep::Incompatible`].
    pub fn handle_batch(&mut self, start: u64, mut bytes: Vec<u8>, served: &Served) -> LogStep {
        if !self.same_history(served) {
            return LogStep::HistoryChanged;
        }
        if start + bytes.len() as u64 > self.limit {
            // Cut at the applied offset (a record boundary).
            let keep = self.limit.saturating_sub(start) as usize;
            bytes.truncate(keep);
            if bytes.is_empty() {
                return LogStep::WaitPublished { pos: self.pos };
            }
        }
        let cap = self.limits.log_bytes_per_frame();
        if bytes.len() > cap {
            // Every record of a batch within `cap` is within the limits;
            // a longer one is cut after the records that fit (a record is
            // never split), and its first record is checked.
            match fit_records(start, &bytes, cap, &self.limits) {
                Ok(keep) => bytes.truncate(keep),
                Err(reason) => {
                    return LogStep::Incompatible {
                        frame: Message::Incompatible { reason: reason.clone() },
                        reason,
                    }
                }
            }
        }
        let raw_len = bytes.len();
        let (codec, data) = self.compressor.compress(&bytes);
        let frame = Message::Log {
            start: self.pos,
            codec,
            raw_len: raw_len as u32,
            data: data.into(),
        };
        self.pos += raw_len as u64;
        LogStep::Send(frame)
    }
}

/// How many bytes of `bytes` (whole records from `start`) go in one frame
/// of at most `cap` ring bytes: the records that fit, and at least the
/// first one if the follower can take it (else why not).
fn fit_records(start: u64, bytes: &[u8], cap: usize, limits: &Limits) -> Result<usize, String> {
    use ringkv::log::record::{record_len, Header, HEADER_LEN};
    let mut keep = 0usize;
    while let Some(head) = bytes.get(keep..keep + HEADER_LEN) {
        let mut b = [0u8; HEADER_LEN];
        b.copy_from_slice(head);
        let payload = Header::parse(&b).len as usize;
        let len = usize::try_from(record_len(payload)).unwrap_or(usize::MAX);
        if keep == 0 {
            limits.check_record(start, payload)?;
        } else if keep.saturating_add(len) > cap {
            break;
        }
        keep = keep.saturating_add(len);
    }
    // The bytes were validated by the read: `keep` ends on a record
    // boundary within them (bytes that are not records are sent as read,
    // for the follower to refuse).
    Ok(if keep == 0 { bytes.len() } else { keep.min(bytes.len()) })
}

/// Bytes per snapshot frame (before compression), at most (less when the
/// follower's frame limit is smaller).
pub const SNAPSHOT_FRAME: usize = 256 * 1024;

/// Frames the snapshot stream.
#[derive(Debug)]
pub struct SnapshotSender {
    compressor: Compressor,
    total: u64,
    piece: usize,
}

impl SnapshotSender {
    /// A snapshot stream compressed with `codec`, in frames within `limits`.
    pub fn new(codec: Codec, limits: &Limits) -> SnapshotSender {
        SnapshotSender {
            compressor: Compressor::new(codec),
            total: 0,
            piece: limits.snapshot_bytes_per_frame(SNAPSHOT_FRAME),
        }
    }

    /// The stream's first frame.
    pub fn start(&self) -> Message {
        Message::Stream {
            kind: StreamKind::Snapshot,
        }
    }

    /// The frames carrying one chunk of snapshot bytes, compressed one at
    /// a time as they are taken (a chunk can hold one large value in one
    /// piece: frames stay small).
    pub fn chunk<'a>(&'a mut self, chunk: &'a [u8]) -> impl Iterator<Item = Message> + 'a {
        self.total += chunk.len() as u64;
        let compressor = &mut self.compressor;
        chunk.chunks(self.piece).map(move |piece| {
            let (codec, data) = compressor.compress(piece);
            Message::Snapshot {
                codec,
                raw_len: piece.len() as u32,
                data: data.into(),
            }
        })
    }

    /// Snapshot bytes so far, before compression and on the wire.
    pub fn bytes(&self) -> (u64, u64) {
        (self.compressor.bytes_raw, self.compressor.bytes_wire)
    }

    /// The last frame.
    pub fn end(&self) -> Message {
        Message::SnapshotEnd { bytes: self.total }
    }
}

/// Decides when a follower that takes no snapshot bytes is given up on:
/// a chunk not taken within the timeout aborts the snapshot (writers
/// touching keys not yet serialized wait for it).
#[derive(Debug, Clone)]
pub struct SnapshotStall {
    timeout: Duration,
    since: Option<Instant>,
}

impl SnapshotStall {
    /// A stall timeout of `timeout`.
    pub fn new(timeout: Duration) -> SnapshotStall {
        SnapshotStall { timeout, since: None }
    }

    /// A chunk could not be handed over at `now`: true when it has waited
    /// longer than the timeout (abort the snapshot).
    pub fn handle_blocked(&mut self, now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        now.saturating_duration_since(since) > self.timeout
    }

    /// The chunk was handed over.
    pub fn handle_taken(&mut self) {
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PROTOCOL_VERSION;

    fn config() -> PrimaryConfig {
        PrimaryConfig {
            codecs: vec![Codec::Zstd, Codec::Lz4],
            ping_interval_ms: 50,
            handshake_timeout_ms: 1000,
            max_frame_bytes: 1 << 20,
            ..PrimaryConfig::default()
        }
    }

    fn history() -> History {
        History {
            replid: "B".into(),
            prev_replid: "A".into(),
            switch_offset: 1000,
            epoch: 0,
        }
    }

    fn view(oldest: u64, published: u64) -> PrimaryView {
        PrimaryView {
            history: history(),
            oldest,
            published,
            max_replay_bytes: None,
            unavailable: None,
        }
    }

    fn served(replid: &str, published: u64) -> Served {
        Served {
            replid: replid.into(),
            stale: false,
            published,
            limit: published,
            chained: false,
        }
    }

    fn hello(replid: &str, offset: u64, max_frame: u32) -> Result<Option<Message>, ReplError> {
        Ok(Some(Message::Hello {
            version: PROTOCOL_VERSION,
            name: "f1".into(),
            replid: replid.into(),
            offset,
            codecs: vec![Codec::Lz4, Codec::None],
            max_frame,
            max_record: 512 << 10,
            capacity: 4 << 20,
            observer: false,
        }))
    }

    fn limits(max_frame: usize) -> Limits {
        Limits::negotiate(1 << 20, max_frame as u32, 512 << 10, 4 << 20).expect("limits")
    }

    fn session(now: Instant) -> PrimarySession {
        let mut s = PrimarySession::new(1, &config(), now);
        s.handle_control_opened(now);
        s
    }

    fn counts(actions: &[PrimaryAction]) -> Vec<PrimaryCounter> {
        actions
            .iter()
            .filter_map(|a| match a {
                PrimaryAction::Count(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hello_in_history_continues_with_the_log_stream() {
        let now = Instant::now();
        let mut s = session(now);
        let actions = s.handle_hello(now, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
        assert_eq!(
            actions,
            vec![
                PrimaryAction::Count(PrimaryCounter::PartialOk),
                PrimaryAction::Send(Message::Continue {
                    history: history(),
                    offset: 4000,
                    codec: Codec::Lz4,
                }),
                PrimaryAction::OpenLog {
                    from: 4000,
                    codec: Codec::Lz4,
                    replid: "B".into(),
                    limits: limits(1 << 20),
                },
            ]
        );
        assert_eq!(s.phase(), PrimaryPhase::Online);
        let link = s.link().expect("said hello");
        assert_eq!(
            (link.state, link.sent, link.name.as_str()),
            (FollowerState::Online, 4000, "f1")
        );
        // The first ping is due at once.
        assert_eq!(s.poll_timeout(), Some(now));
    }

    #[test]
    fn hello_outside_the_ring_or_history_gets_a_full_sync_with_both_streams() {
        let now = Instant::now();
        let mut s = session(now);
        // The previous history, beyond the switch: diverged, with lost bytes.
        let actions = s.handle_hello(now, hello("A", 1200, 1 << 20), &view(0, 5000), 1024);
        assert_eq!(
            counts(&actions),
            vec![PrimaryCounter::PartialErr, PrimaryCounter::FullSync]
        );
        assert_eq!(actions.last(), Some(&PrimaryAction::StartSnapshot));
        assert_eq!(s.phase(), PrimaryPhase::StartingSnapshot);
        assert_eq!(s.link().map(|l| l.state), Some(FollowerState::FullSync));
        assert_eq!(s.poll_timeout(), None, "no pings before the follower is answered");
        let actions = s.handle_snapshot_started(now, Ok((5000, "B".into())), history());
        assert_eq!(
            actions,
            vec![
                PrimaryAction::Send(Message::FullSync {
                    history: history(),
                    offset: 5000,
                    codec: Codec::Lz4,
                    reason: FullSyncReason::Diverged.to_string(),
                    lost_bytes: 200,
                }),
                PrimaryAction::OpenLog {
                    from: 5000,
                    codec: Codec::Lz4,
                    replid: "B".into(),
                    limits: limits(1 << 20),
                },
                PrimaryAction::OpenSnapshot {
                    codec: Codec::Lz4,
                    limits: limits(1 << 20),
                },
            ]
        );
        assert_eq!(s.phase(), PrimaryPhase::FullSync);
        assert_eq!(s.link().map(|l| l.sent), Some(5000));
        // Acks during the full sync do not count for WAIT.
        s.handle_control_frame(
            now,
            Some(Ok(Message::Ack {
                applied: 5000,
                durable: 0,
            })),
        );
        assert!(!s.acked(5000));
        s.handle_snapshot_progress(10, 4);
        assert_eq!(s.handle_snapshot_sent(now, Ok(())), vec![]);
        assert_eq!(s.phase(), PrimaryPhase::Online);
        let link = s.link().expect("link");
        assert_eq!(
            (link.state, link.snapshot_bytes, link.snapshot_wire),
            (FollowerState::Online, 10, 4)
        );
        assert!(s.acked(5000));

        // An unknown history is a full sync, not a refused partial one.
        let mut s = session(now);
        let actions = s.handle_hello(now, hello("Z", 10, 1 << 20), &view(0, 5000), 1024);
        assert_eq!(counts(&actions), vec![PrimaryCounter::FullSync]);
        // An offset that left the ring.
        let mut s = session(now);
        let actions = s.handle_hello(now, hello("B", 10, 1 << 20), &view(100, 5000), 1024);
        assert_eq!(
            counts(&actions),
            vec![PrimaryCounter::PartialErr, PrimaryCounter::FullSync]
        );
    }

    #[test]
    fn a_history_change_while_the_snapshot_starts_fails_the_session() {
        let now = Instant::now();
        let mut s = session(now);
        s.handle_hello(now, hello("Z", 10, 1 << 20), &view(0, 5000), 1024);
        let actions = s.handle_snapshot_started(now, Ok((5000, "old".into())), history());
        assert!(matches!(
            actions.as_slice(),
            [PrimaryAction::Close { code: CloseCode::Shutdown, error: Some(e), .. }] if e.contains("changed during")
        ));
        assert_eq!(s.phase(), PrimaryPhase::Closed);
    }

    /// F8: the follower's frame limit is no reason to refuse it unless no
    /// record fits (frames are cut to it); below that, it is refused for
    /// good with `Incompatible`, naming the limit.
    #[test]
    fn frame_limits_are_negotiated_and_only_useless_ones_refused() {
        let now = Instant::now();
        let mut s = session(now);
        // Below the ring's largest record (64 KiB): accepted, frames are cut.
        let actions = s.handle_hello(now, hello("B", 4000, 4096), &view(0, 5000), 64 << 10);
        assert_eq!(counts(&actions), vec![PrimaryCounter::PartialOk]);
        assert_eq!(s.limits(), Some(limits(4096)));
        assert!(matches!(
            actions.last(),
            Some(PrimaryAction::OpenLog { limits: l, .. }) if l.max_frame == 4096 && l.log_bytes_per_frame() <= 4096
        ));
        // Above this primary's own limit: its own limit applies.
        let mut s = session(now);
        s.handle_hello(now, hello("B", 4000, 64 << 20), &view(0, 5000), 4 << 20);
        let l = s.limits().expect("limits");
        assert_eq!((l.max_frame, l.frame_limit_is_the_followers), (1 << 20, false));
        // A limit that carries no record: refused for good.
        let mut s = session(now);
        let actions = s.handle_hello(now, hello("B", 4000, 512), &view(0, 5000), 64 << 10);
        let [PrimaryAction::Count(PrimaryCounter::Rejected), PrimaryAction::Close {
            last: Some(Message::Incompatible { reason }),
            code: CloseCode::Incompatible,
            ..
        }] = actions.as_slice()
        else {
            panic!("{actions:?}")
        };
        assert!(
            reason.contains("512") && reason.contains("follower's max_frame_bytes"),
            "{reason}"
        );
        assert_eq!(s.phase(), PrimaryPhase::Closed);
        // Another version: a Reject that version reads, never its limits.
        let mut s = session(now);
        let Ok(Some(Message::Hello {
            name,
            replid,
            offset,
            codecs,
            ..
        })) = hello("B", 4000, 512)
        else {
            panic!("a hello")
        };
        let old = Message::Hello {
            version: 1,
            name,
            replid,
            offset,
            codecs,
            max_frame: 512,
            max_record: 0,
            capacity: 0,
            observer: false,
        };
        let actions = s.handle_hello(now, Ok(Some(old)), &view(0, 5000), 1024);
        assert!(
            matches!(
                actions.as_slice(),
                [PrimaryAction::Count(PrimaryCounter::Rejected), PrimaryAction::Close {
                    last: Some(Message::Reject { reason }),
                    code: CloseCode::Rejected,
                    ..
                }] if reason == "protocol version 1 is not supported (this primary speaks 3)"
            ),
            "{actions:?}"
        );
    }

    /// Whole records from `start` with these payload lengths, as the ring
    /// holds them.
    fn records(start: u64, payloads: &[usize]) -> Vec<u8> {
        use ringkv::log::record;
        let mut out = Vec::new();
        for &n in payloads {
            let at = start + out.len() as u64;
            let payload = vec![(n % 251) as u8; n];
            out.extend_from_slice(&record::header(at, &payload));
            out.extend_from_slice(&payload);
            out.resize((at - start + record::record_len(n)) as usize, 0);
        }
        out
    }

    /// F8: a batch longer than the follower's frames allow is cut at a
    /// record boundary, the rest sent next; a record it cannot take stops
    /// the stream there with the limit and the offset.
    #[test]
    fn the_log_cursor_splits_batches_to_the_follower_limits_and_stops_at_a_record_it_cannot_take() {
        let served = |published| served("B", published);
        // Frames of at most 4096 bytes: 4072 ring bytes of several records.
        let mut c = LogCursor::new(0, "B".into(), Codec::None, 256 << 10, limits(4096));
        let ring = records(0, &[1000, 1000, 1000, 1000, 1000, 4000, 100, 5000]);
        let published = ring.len() as u64;
        let LogStep::Read { from: 0, max } = c.poll(&served(published)) else {
            panic!("a read")
        };
        assert_eq!(max, 4072, "reads ask for what fits a frame");
        let mut sent = Vec::new();
        let reason = loop {
            let from = c.pos();
            let step = match c.poll(&served(published)) {
                LogStep::Read { from: at, max } => {
                    assert_eq!(at, from);
                    // As `read_stream`: whole records up to about `max`, at least one.
                    let mut end = from as usize;
                    while end < ring.len() && (end == from as usize || end - (from as usize) < max) {
                        let mut h = [0u8; 16];
                        h.copy_from_slice(&ring[end..end + 16]);
                        end += ringkv::log::record::record_len(ringkv::log::record::Header::parse(&h).len as usize)
                            as usize;
                    }
                    c.handle_batch(from, ring[from as usize..end].to_vec(), &served(published))
                }
                other => panic!("{other:?}"),
            };
            match step {
                LogStep::Send(frame) => {
                    let frame_len = crate::protocol::encode_frame(&frame).len() - crate::protocol::LEN_PREFIX;
                    assert!(frame_len <= 4096, "a frame of {frame_len} bytes");
                    let Message::Log { start, data, .. } = frame else {
                        panic!("a log frame")
                    };
                    assert_eq!(start, sent.len() as u64);
                    sent.extend_from_slice(&data);
                    ringkv::log::validate_stream(start, &data, 1 << 20).expect("whole records");
                }
                LogStep::Incompatible { frame, reason } => {
                    assert_eq!(frame, Message::Incompatible { reason: reason.clone() });
                    break reason;
                }
                other => panic!("{other:?}"),
            }
        };
        // Everything before the 5000-byte record went, in frames that fit.
        let big_at = records(0, &[1000, 1000, 1000, 1000, 1000, 4000, 100]).len();
        assert_eq!(sent, ring[..big_at]);
        assert_eq!(c.pos(), big_at as u64, "the cursor stays at the record");
        assert!(
            reason.contains(&format!("offset {big_at}")) && reason.contains("4096"),
            "{reason}"
        );

        // A record beyond the follower ring's limit, within its frames.
        let small_ring = Limits::negotiate(64 << 20, 64 << 20, 32752, 256 << 10).expect("limits");
        let mut c = LogCursor::new(0, "B".into(), Codec::None, 256 << 10, small_ring);
        let ring = records(0, &[100, 40_000]);
        assert!(matches!(
            c.poll(&served(ring.len() as u64)),
            LogStep::Read { from: 0, max: 32768 }
        ));
        let LogStep::Send(Message::Log { raw_len, .. }) = c.handle_batch(0, ring.clone(), &served(ring.len() as u64))
        else {
            panic!("the first record goes")
        };
        assert_eq!(raw_len as usize, records(0, &[100]).len());
        c.poll(&served(ring.len() as u64));
        let at = c.pos();
        let LogStep::Incompatible { reason, .. } =
            c.handle_batch(at, ring[at as usize..].to_vec(), &served(ring.len() as u64))
        else {
            panic!("refused")
        };
        assert!(
            reason.contains(&format!("offset {at}")) && reason.contains("32752") && reason.contains("40000"),
            "{reason}"
        );
    }

    #[test]
    fn a_record_the_follower_cannot_take_ends_the_session_for_good() {
        let now = Instant::now();
        let mut s = session(now);
        s.handle_hello(now, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
        let actions = s.handle_log_end(now, LogEnd::Incompatible("the record at offset 4000 ...".into()));
        assert_eq!(
            actions,
            vec![
                PrimaryAction::Count(PrimaryCounter::Rejected),
                PrimaryAction::Close {
                    last: Some(Message::Incompatible {
                        reason: "the record at offset 4000 ...".into()
                    }),
                    code: CloseCode::Incompatible,
                    reason: "the record at offset 4000 ...".into(),
                    error: None,
                }
            ]
        );
    }

    #[test]
    fn an_unavailable_primary_or_another_version_rejects() {
        let now = Instant::now();
        let mut s = session(now);
        let mut v = view(0, 5000);
        v.unavailable = Some("this node is itself in a full sync".into());
        let actions = s.handle_hello(now, hello("B", 4000, 1 << 20), &v, 1024);
        assert!(matches!(
            actions.as_slice(),
            [PrimaryAction::Count(PrimaryCounter::Rejected), PrimaryAction::Close { code: CloseCode::Rejected, reason, .. }]
                if reason == "this node is itself in a full sync"
        ));
    }

    #[test]
    fn a_bad_first_frame_is_a_protocol_error() {
        let now = Instant::now();
        for frame in [
            Ok(Some(Message::Ack { applied: 1, durable: 1 })),
            Ok(None),
            Err(ReplError::Protocol(crate::protocol::ProtocolError::UnknownKind(99))),
        ] {
            let mut s = session(now);
            let actions = s.handle_hello(now, frame, &view(0, 5000), 1024);
            assert!(
                matches!(
                    actions.as_slice(),
                    [
                        PrimaryAction::Count(PrimaryCounter::ProtocolError),
                        PrimaryAction::Close { code: CloseCode::Protocol, last: None, reason, .. }
                    ] if reason == "protocol error"
                ),
                "{actions:?}"
            );
            assert!(s.link().is_none(), "not a follower until it said hello");
        }
    }

    #[test]
    fn handshake_deadlines() {
        let t0 = Instant::now();
        let mut s = PrimarySession::new(1, &config(), t0);
        let second = Duration::from_secs(1);
        assert_eq!(s.poll_timeout(), Some(t0 + second));
        assert_eq!(s.handle_timeout(t0 + second / 2, &served("B", 0), 0), vec![]);
        // The control stream restarts the clock for the hello.
        s.handle_control_opened(t0 + second / 2);
        assert_eq!(s.poll_timeout(), Some(t0 + second * 3 / 2));
        let actions = s.handle_timeout(t0 + second * 3 / 2, &served("B", 0), 0);
        assert!(matches!(
            actions.as_slice(),
            [PrimaryAction::Close { code: CloseCode::Shutdown, error: Some(e), .. }] if e == "timed out: no hello"
        ));
        let mut s = PrimarySession::new(1, &config(), t0);
        let actions = s.handle_timeout(t0 + second, &served("B", 0), 0);
        assert!(matches!(
            actions.as_slice(),
            [PrimaryAction::Close { error: Some(e), .. }] if e == "timed out: no control stream"
        ));
    }

    #[test]
    fn pings_on_schedule_then_resync_when_the_history_changes() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.handle_hello(t0, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
        let interval = Duration::from_millis(50);
        let mut now = t0;
        for i in 0..3u64 {
            assert_eq!(s.poll_timeout(), Some(t0 + interval * i as u32));
            now = t0 + interval * i as u32;
            assert_eq!(
                s.handle_timeout(now, &served("B", 5000 + i), 77 + i),
                vec![PrimaryAction::Send(Message::Ping {
                    published: 5000 + i,
                    time_ms: 77 + i
                })]
            );
        }
        // Early: nothing.
        assert_eq!(s.handle_timeout(now + interval / 2, &served("B", 0), 0), vec![]);
        // Promoted meanwhile: the follower must adopt the new history.
        let actions = s.handle_timeout(now + interval, &served("C", 6000), 0);
        assert_eq!(
            actions,
            vec![PrimaryAction::Close {
                last: Some(Message::Resync {
                    reason: HISTORY_CHANGED.into()
                }),
                code: CloseCode::Resync,
                reason: HISTORY_CHANGED.into(),
                error: None,
            }]
        );
        assert_eq!(s.poll_timeout(), None);
        // A node that became stale (an upstream full sync) resyncs too.
        let mut s = session(t0);
        s.handle_hello(t0, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
        let mut stale = served("B", 5000);
        stale.stale = true;
        assert!(matches!(
            s.handle_timeout(t0, &stale, 0).as_slice(),
            [PrimaryAction::Close {
                code: CloseCode::Resync,
                ..
            }]
        ));
    }

    /// An observer (a backup) is served and its acks are kept, but it is
    /// never counted by WAIT or the write gate.
    #[test]
    fn an_observer_is_never_counted_for_wait_or_the_gate() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let Ok(Some(Message::Hello { observer, .. })) = hello("B", 4000, 1 << 20) else {
            panic!("a hello")
        };
        assert!(!observer);
        let mut observer = hello("B", 4000, 1 << 20);
        if let Ok(Some(Message::Hello { observer, .. })) = &mut observer {
            *observer = true;
        }
        let actions = s.handle_hello(t0, observer, &view(0, 5000), 1024);
        assert_eq!(counts(&actions), vec![PrimaryCounter::PartialOk]);
        assert!(s.is_observer());
        s.handle_log_sent(5000, 1000, 1000);
        s.handle_control_frame(
            t0,
            Some(Ok(Message::Ack {
                applied: 5000,
                durable: 5000,
            })),
        );
        assert_eq!(
            s.link().map(|l| (l.state, l.applied)),
            Some((FollowerState::Online, 5000))
        );
        assert!(!s.acked(1) && !s.acked(5000));
        assert!(!s.within(t0, 5000, u64::MAX, Duration::from_secs(60)));
    }

    #[test]
    fn acks_are_kept_monotonic_and_feed_the_gate() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.handle_hello(t0, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
        s.handle_log_sent(5000, 1000, 1000);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(
            s.handle_control_frame(
                t1,
                Some(Ok(Message::Ack {
                    applied: 4500,
                    durable: 4400
                }))
            ),
            vec![PrimaryAction::Acked]
        );
        s.handle_control_frame(
            t1,
            Some(Ok(Message::Ack {
                applied: 4100,
                durable: 4000,
            })),
        );
        let link = s.link().expect("link");
        assert_eq!((link.applied, link.durable, link.last_ack), (4500, 4400, t1));
        assert!(s.acked(4500) && !s.acked(4501));
        let age = Duration::from_millis(300);
        assert!(s.within(t1, 5000, 500, age));
        assert!(!s.within(t1, 5001, 500, age), "lag over budget");
        assert!(
            !s.within(t1 + Duration::from_millis(301), 5000, 500, age),
            "ack too old"
        );
    }

    /// A follower can only have applied what it was sent: an ack beyond
    /// that (a lying follower satisfying WAIT and the write gate with
    /// `u64::MAX`) is a protocol violation, and the session never counts.
    #[test]
    fn an_ack_beyond_what_was_sent_is_a_protocol_violation() {
        let t0 = Instant::now();
        let age = Duration::from_secs(10);
        let is_violation = |actions: &[PrimaryAction]| {
            matches!(
                actions,
                [
                    PrimaryAction::Count(PrimaryCounter::ProtocolError),
                    PrimaryAction::Close { code: CloseCode::Protocol, last: None, reason, error: Some(e) }
                ] if reason == "protocol error" && e.contains("beyond offset 4500")
            )
        };
        for (applied, durable) in [(u64::MAX, u64::MAX), (4501, 0), (4500, 4501), (0, u64::MAX)] {
            let mut s = session(t0);
            s.handle_hello(t0, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
            s.handle_log_sent(4500, 500, 500);
            // Exactly what was sent is fine.
            let ack = |applied, durable| Some(Ok(Message::Ack { applied, durable }));
            assert_eq!(s.handle_control_frame(t0, ack(4500, 4500)), vec![PrimaryAction::Acked]);
            assert!(s.acked(4500));
            let actions = s.handle_control_frame(t0, ack(applied, durable));
            assert!(is_violation(&actions), "ack {applied}/{durable}: {actions:?}");
            assert_eq!(s.phase(), PrimaryPhase::Closed);
            let link = s.link().expect("link");
            assert_eq!((link.applied, link.durable), (4500, 4500), "the lie is not recorded");
            // Neither WAIT nor the write gate counts it any more.
            assert!(!s.acked(4500) && !s.acked(4501) && !s.acked(u64::MAX));
            assert!(!s.within(t0, 5000, 1 << 20, age));
            assert!(!s.within(t0, u64::MAX, u64::MAX, age));
        }
        // A liar's first ack, before it ever acked the truth.
        let mut s = session(t0);
        s.handle_hello(t0, hello("B", 4500, 1 << 20), &view(0, 5000), 1024);
        let actions = s.handle_control_frame(
            t0,
            Some(Ok(Message::Ack {
                applied: u64::MAX,
                durable: u64::MAX,
            })),
        );
        assert!(is_violation(&actions), "{actions:?}");
        assert!(!s.acked(0) && !s.within(t0, 5000, u64::MAX, age));
        // During a full sync, what was sent starts at the snapshot's offset.
        let mut s = session(t0);
        s.handle_hello(t0, hello("Z", 9000, 1 << 20), &view(0, 9000), 1024);
        s.handle_snapshot_started(t0, Ok((4500, "B".into())), history());
        let actions = s.handle_control_frame(
            t0,
            Some(Ok(Message::Ack {
                applied: 9000,
                durable: 0,
            })),
        );
        assert!(is_violation(&actions), "{actions:?}");
    }

    /// A protocol error names the frame, never its bytes (a control frame
    /// may hold 64 KiB; the error goes to the logs).
    #[test]
    fn a_protocol_error_about_a_large_frame_stays_small() {
        let now = Instant::now();
        let mut s = session(now);
        s.handle_hello(now, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
        let frame = Message::Log {
            start: 4000,
            codec: Codec::None,
            raw_len: 60_000,
            data: bytes::Bytes::from(vec![0x77; 60_000]),
        };
        let actions = s.handle_control_frame(now, Some(Ok(frame)));
        let Some(PrimaryAction::Close { error: Some(e), .. }) = actions.last() else {
            panic!("{actions:?}")
        };
        assert_eq!(
            e,
            "peer: unexpected Log frame at 4000 (60000 bytes) on the control stream"
        );
    }

    #[test]
    fn unexpected_or_malformed_control_frames_close_with_a_protocol_error() {
        let now = Instant::now();
        let bad: [Option<Result<Message, ReplError>>; 2] = [
            Some(Ok(Message::Hello {
                version: 1,
                name: String::new(),
                replid: String::new(),
                offset: 0,
                codecs: vec![],
                max_frame: 0,
                max_record: 0,
                capacity: 0,
                observer: false,
            })),
            Some(Err(ReplError::Protocol(crate::protocol::ProtocolError::Empty))),
        ];
        for frame in bad {
            let mut s = session(now);
            s.handle_hello(now, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
            let actions = s.handle_control_frame(now, frame);
            assert_eq!(counts(&actions), vec![PrimaryCounter::ProtocolError]);
            assert!(matches!(
                actions.last(),
                Some(PrimaryAction::Close {
                    code: CloseCode::Protocol,
                    ..
                })
            ));
        }
        // A lost connection is no protocol error; a closed stream ends quietly.
        let mut s = session(now);
        s.handle_hello(now, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
        let actions = s.handle_control_frame(now, Some(Err(ReplError::Connection("lost".into()))));
        assert!(matches!(
            actions.as_slice(),
            [PrimaryAction::Close {
                code: CloseCode::Shutdown,
                ..
            }]
        ));
        let mut s = session(now);
        s.handle_hello(now, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
        assert_eq!(s.handle_control_frame(now, None), vec![PrimaryAction::Done]);
    }

    #[test]
    fn a_lagged_log_stream_resyncs_and_counts() {
        let now = Instant::now();
        let mut s = session(now);
        s.handle_hello(now, hello("B", 4000, 1 << 20), &view(0, 5000), 1024);
        let actions = s.handle_log_end(now, LogEnd::Lagged { oldest: 9000 });
        let reason = "the follower's offset left the ring (oldest is now 9000)".to_string();
        assert_eq!(
            actions,
            vec![
                PrimaryAction::Count(PrimaryCounter::ResyncLagged),
                PrimaryAction::Close {
                    last: Some(Message::Resync { reason: reason.clone() }),
                    code: CloseCode::Resync,
                    reason,
                    error: None
                }
            ]
        );
    }

    #[test]
    fn the_log_cursor_reads_cuts_and_stops_on_a_history_change() {
        let mut c = LogCursor::new(100, "B".into(), Codec::None, 64, limits(1 << 20));
        // Caught up: wait for the ring to grow.
        assert_eq!(c.poll(&served("B", 100)), LogStep::WaitPublished { pos: 100 });
        assert_eq!(c.poll(&served("B", 150)), LogStep::Read { from: 100, max: 64 });
        let LogStep::Send(Message::Log { start, raw_len, .. }) = c.handle_batch(100, vec![7; 50], &served("B", 150))
        else {
            panic!("a frame")
        };
        assert_eq!((start, raw_len, c.pos()), (100, 50, 150));
        assert_eq!(c.bytes().0, 50);
        // A chained node offers only what it applied: a batch is cut there.
        let chained = Served {
            limit: 160,
            chained: true,
            ..served("B", 200)
        };
        assert_eq!(c.poll(&chained), LogStep::Read { from: 150, max: 64 });
        let LogStep::Send(Message::Log { raw_len, .. }) = c.handle_batch(150, vec![1; 50], &chained) else {
            panic!("a frame")
        };
        assert_eq!((raw_len, c.pos()), (10, 160));
        assert_eq!(c.poll(&chained), LogStep::PollApplied);
        // The history changed between the read and the send.
        assert_eq!(c.poll(&served("B", 300)), LogStep::Read { from: 160, max: 64 });
        assert_eq!(
            c.handle_batch(160, vec![1; 10], &served("C", 300)),
            LogStep::HistoryChanged
        );
        let mut stale = served("B", 300);
        stale.stale = true;
        assert_eq!(c.poll(&stale), LogStep::HistoryChanged);
    }

    #[test]
    fn snapshot_frames_and_stall() {
        let mut s = SnapshotSender::new(Codec::None, &limits(1 << 20));
        assert_eq!(
            s.start(),
            Message::Stream {
                kind: StreamKind::Snapshot
            }
        );
        let data = vec![3u8; SNAPSHOT_FRAME + 10];
        let frames: Vec<Message> = s.chunk(&data).collect();
        assert_eq!(frames.len(), 2, "a large chunk goes in small frames");
        assert_eq!(
            s.end(),
            Message::SnapshotEnd {
                bytes: SNAPSHOT_FRAME as u64 + 10
            }
        );
        assert_eq!(s.bytes(), (SNAPSHOT_FRAME as u64 + 10, SNAPSHOT_FRAME as u64 + 10));

        let t0 = Instant::now();
        let mut stall = SnapshotStall::new(Duration::from_millis(100));
        assert!(!stall.handle_blocked(t0));
        assert!(!stall.handle_blocked(t0 + Duration::from_millis(100)));
        assert!(stall.handle_blocked(t0 + Duration::from_millis(101)));
        stall.handle_taken();
        assert!(
            !stall.handle_blocked(t0 + Duration::from_millis(500)),
            "each chunk gets the full timeout"
        );
    }
}
