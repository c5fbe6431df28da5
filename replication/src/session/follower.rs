//! The follower's side of replication, without I/O.
//!
//! One [`FollowerSession`] lives as long as the follower and sees every
//! link to the primary in turn. It owns:
//!
//! - the `Hello` of each link (the follower's history, or none while a
//!   full sync was interrupted and the data is stale; its applied offset;
//!   its limits: `max_frame_bytes`, its ring's largest record payload and
//!   capacity, which the primary keeps every frame and record within);
//! - the reading of the primary's answer: `Continue` (adopt the history,
//!   stream from our offset), `FullSync` (begin a full sync: a snapshot
//!   stream and a log stream), `Reject`, `Incompatible` (halt);
//! - the data streams: which ones to expect, what each first frame must
//!   be, decoding log frames into engine appends (applied at once when
//!   live, only stored during a full sync), swapping the snapshot in; each
//!   log frame must start where the previous one ended (from the offset
//!   continued from or the snapshot's): a frame lost, repeated or
//!   reordered ends the link with a peer error before it is decompressed
//!   or reaches the engine;
//! - a ring too small for the log written during a full sync's transfer:
//!   the refused bytes are held and the log stream pauses
//!   ([`FollowerSession::log_paused`]; QUIC flow control holds the rest at
//!   the primary) until the snapshot is swapped in and saved, which
//!   releases the ring; then the held bytes go in and the stream resumes.
//!   A full sync therefore completes whatever the ring's size, instead of
//!   failing and starting over forever;
//! - acks: after every applied frame when the offsets moved, and every
//!   `ack_interval_ms` regardless (the primary's write gate counts fresh
//!   acks, so an idle follower acks too);
//! - sync-loop detection: a full sync within `sync_loop_window_ms` of the
//!   previous one is counted with its cause, and the next reconnect waits
//!   the longest backoff;
//! - lost bytes on a rejoin, the reconnect backoff with jitter, and
//!   halting for good on a divergent stream: bytes that contradict the
//!   ring, or a record that does not decode or apply here (the engine's
//!   `BadRecord` / `RecordRejected`: retrying would fail the same way),
//!   `max_full_sync_attempts` full syncs in a row that did not complete, or
//!   the primary's `Incompatible` (at the handshake, on the log stream at
//!   the record this follower's limits cannot take, on the control stream,
//!   or as close code 5: the reason names the limit and the offset);
//! - the stats ([`ReplicaInfo`]) that follow from all this.
//!
//! The driver reads the engine for each event ([`ReplicaState`],
//! [`Progress`]) and carries out the [`FollowerAction`]s on it. The
//! snapshot stream is decoded by a [`SnapshotIntake`] handed to the task
//! that feeds the loader, so a slow load never stalls the log and control
//! streams (as before).

use std::time::{Duration, Instant};

use crate::compress::Decompressor;
use crate::config::FollowerConfig;
use crate::protocol::{Codec, History, Message, StreamKind, PROTOCOL_VERSION};
use crate::stats::{LinkStatus, ReplicaInfo};
use crate::ReplError;

/// What the follower's engine looks like when a link starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// Offset applied to the keyspace (where the follower continues).
    pub applied: u64,
    /// Replication id of the ring's history.
    pub replid: String,
    /// The keyspace is stale (a full sync began and never swapped in).
    pub stale: bool,
    /// Largest record payload the ring accepts (`LogView::max_payload`).
    pub max_record: usize,
    /// The ring's capacity.
    pub capacity: u64,
}

/// The follower engine's offsets, reported after engine calls and on timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Applied to the keyspace.
    pub applied: u64,
    /// Durable in the ring (at most `applied`).
    pub durable: u64,
}

/// What a [`FollowerSession`] wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowerAction {
    /// Send this message on the control stream.
    Send(Message),
    /// Make the ring's history this one (if it differs).
    AdoptHistory(History),
    /// Begin a full sync at `offset` in `history` (the ring restarts there,
    /// the keyspace is stale), and prepare the staging keyspace the
    /// snapshot loads into.
    BeginFullSync {
        /// The snapshot's offset.
        offset: u64,
        /// The primary's history.
        history: History,
    },
    /// Append these ring bytes at `start`, and apply them to the keyspace
    /// when `apply` (not during a full sync); then report
    /// [`FollowerSession::handle_appended`].
    Append {
        /// Stream offset of the first byte.
        start: u64,
        /// The raw (decompressed) bytes.
        bytes: Vec<u8>,
        /// Apply them too.
        apply: bool,
    },
    /// Swap the loaded staging keyspace in at the snapshot's offset (and
    /// save it, in a data directory); then report
    /// [`FollowerSession::handle_swapped_in`].
    SwapIn {
        /// The snapshot's offset.
        offset: u64,
    },
}

/// Why a link ended.
#[derive(Debug)]
pub enum LinkEnd {
    /// The follower was stopped.
    Stopped,
    /// The primary ended the link in order (a resync, a closed stream):
    /// reconnect at once.
    Reconnect(String),
    /// The link failed: reconnect after a backoff, or halt for good on a
    /// divergent stream.
    Failed(ReplError),
}

impl From<ReplError> for LinkEnd {
    fn from(e: ReplError) -> Self {
        LinkEnd::Failed(e)
    }
}

impl From<crate::protocol::ProtocolError> for LinkEnd {
    fn from(e: crate::protocol::ProtocolError) -> Self {
        LinkEnd::Failed(e.into())
    }
}

impl From<crate::compress::CompressError> for LinkEnd {
    fn from(e: crate::compress::CompressError) -> Self {
        LinkEnd::Failed(e.into())
    }
}

/// Where a [`FollowerSession`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerPhase {
    /// No link (between connections).
    Down,
    /// `Hello` sent, waiting for the answer.
    Handshake,
    /// Answered; waiting for the data streams.
    Streams,
    /// Loading a full sync beside the log.
    FullSync,
    /// Applying the log as it comes.
    Live,
    /// Stopped for good (a divergent stream, a record that does not apply,
    /// too many failed full syncs, a primary whose stream is beyond this
    /// follower's limits): `ReplicaInfo::halted` and `last_error` say why.
    Halted,
}

/// A data stream, as identified by its first frame.
#[derive(Debug)]
pub enum DataStream {
    /// The log stream: feed its frames to [`FollowerSession::handle_log_frame`].
    Log,
    /// The snapshot stream: feed its frames to this intake, its bytes to
    /// the loader, and report [`FollowerSession::handle_snapshot_loaded`].
    Snapshot(SnapshotIntake),
}

/// What a snapshot frame asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStep {
    /// Give these snapshot bytes to the loader (`wire` bytes were received).
    Feed {
        /// Decompressed bytes.
        raw: Vec<u8>,
        /// Bytes on the wire.
        wire: u64,
    },
    /// The snapshot is complete (its announced length matches).
    Done,
}

/// Checks and decodes the snapshot stream (after its `Stream` frame).
#[derive(Debug)]
pub struct SnapshotIntake {
    decoder: Decompressor,
    total: u64,
    max: usize,
}

impl SnapshotIntake {
    fn new(codec: Codec, max: usize) -> SnapshotIntake {
        SnapshotIntake {
            decoder: Decompressor::new(codec),
            total: 0,
            max,
        }
    }

    /// One frame of the snapshot stream (`None`: the stream ended).
    pub fn handle_frame(&mut self, frame: Option<Message>) -> Result<SnapshotStep, ReplError> {
        match frame {
            Some(Message::Snapshot { codec, raw_len, data }) => {
                let raw = self.decoder.decompress(codec, &data, raw_len as usize, self.max)?;
                self.total += raw.len() as u64;
                Ok(SnapshotStep::Feed {
                    raw,
                    wire: data.len() as u64,
                })
            }
            Some(Message::SnapshotEnd { bytes }) if bytes == self.total => Ok(SnapshotStep::Done),
            Some(Message::SnapshotEnd { bytes }) => Err(ReplError::Peer(format!(
                "snapshot ended at {} bytes, announced {bytes}",
                self.total
            ))),
            Some(other) => Err(ReplError::Peer(format!(
                "unexpected {} on the snapshot stream",
                other.summary()
            ))),
            None => Err(ReplError::Peer("the snapshot stream ended before SnapshotEnd".into())),
        }
    }

    /// Snapshot bytes received so far (decompressed).
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[derive(Debug)]
struct Data {
    codec: Codec,
    decoder: Decompressor,
    /// The snapshot's offset while a full sync loads.
    full: Option<u64>,
    log_stream: bool,
    snapshot_stream: bool,
    /// All data streams are open.
    ready: bool,
    last_ack: Option<(u64, u64)>,
    next_ack: Option<Instant>,
    /// Log bytes the ring refused during the full sync (it was full): held
    /// until the swap, the log stream paused meanwhile.
    held: Option<(u64, Vec<u8>)>,
    /// Where the next log frame must start: the offset the primary
    /// continued from or its snapshot's, then the end of the last frame.
    /// QUIC delivers a stream in order and whole, so any other start is a
    /// frame lost, repeated or reordered on the way (and the codec's
    /// history, shared by both ends, would no longer match either).
    next_log: u64,
}

impl Data {
    fn live(&self) -> bool {
        self.ready && self.full.is_none()
    }
}

#[derive(Debug)]
enum Link {
    Down,
    Halted,
    Handshake { offset: u64 },
    Data(Box<Data>),
}

/// A follower's replication state machine (see the module docs).
#[derive(Debug)]
pub struct FollowerSession {
    config: FollowerConfig,
    info: ReplicaInfo,
    last_io: Instant,
    last_full_sync: Option<Instant>,
    /// Set after a sync loop: the next reconnect waits the longest backoff.
    slow_down: bool,
    /// Full syncs begun in a row that ended before their swap.
    failed_full_syncs: u32,
    backoff: Duration,
    seed: u64,
    link: Link,
    /// The newest failover epoch seen (`FollowerConfig::min_epoch`, raised
    /// by each history adopted): an older primary is refused.
    min_epoch: u64,
    /// Until when this follower's acks may count for the primary's WAIT and
    /// write gate (`None`: always; see [`FollowerSession::set_counted_until`]).
    counted_until: Option<Instant>,
}

impl FollowerSession {
    /// A session for `config`; `seed` drives the backoff jitter (any value).
    pub fn new(config: FollowerConfig, now: Instant, seed: u64) -> FollowerSession {
        let info = ReplicaInfo::new(config.primary.to_string());
        let backoff = Self::min_backoff(&config);
        let min_epoch = config.min_epoch;
        FollowerSession {
            config,
            info,
            last_io: now,
            last_full_sync: None,
            slow_down: false,
            failed_full_syncs: 0,
            backoff,
            seed: seed | 1,
            min_epoch,
            link: Link::Down,
            counted_until: None,
        }
    }

    /// Until when this follower may be counted by its primary (WAIT, the
    /// write gate): from then on it sends no acks, so the primary's view of
    /// its offsets stops where it was (WAIT does not count it for later
    /// writes) and its last ack ages (a write gate drops it), while it keeps
    /// receiving and applying the stream. `None` (the default): always
    /// counted. Failover sets it to when this node's registration in etcd
    /// may lapse: a follower that may no longer be a promotion candidate
    /// must not be what a `WAIT 1` relies on. A later deadline resumes the
    /// acks at the next periodic ack.
    pub fn set_counted_until(&mut self, until: Option<Instant>) {
        self.counted_until = until;
    }

    /// Whether this follower's acks count at `now` (see
    /// [`FollowerSession::set_counted_until`]).
    pub fn counted(&self, now: Instant) -> bool {
        self.counted_until.is_none_or(|t| now < t)
    }

    fn min_backoff(config: &FollowerConfig) -> Duration {
        Duration::from_millis(config.min_backoff_ms.max(1))
    }

    fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.config.max_backoff_ms.max(self.config.min_backoff_ms))
    }

    fn ack_interval(&self) -> Duration {
        Duration::from_millis(self.config.ack_interval_ms.max(10))
    }

    /// The settings.
    pub fn config(&self) -> &FollowerConfig {
        &self.config
    }

    /// Where the session is.
    pub fn phase(&self) -> FollowerPhase {
        match &self.link {
            Link::Down => FollowerPhase::Down,
            Link::Halted => FollowerPhase::Halted,
            Link::Handshake { .. } => FollowerPhase::Handshake,
            Link::Data(d) if !d.ready => FollowerPhase::Streams,
            Link::Data(d) if d.full.is_some() => FollowerPhase::FullSync,
            Link::Data(_) => FollowerPhase::Live,
        }
    }

    /// The stats this session keeps, as of `now`. The engine's own figures
    /// (`slave_repl_offset`, `durable_offset`, `stale`, `lag_bytes`) are the
    /// driver's to fill in.
    pub fn info(&self, now: Instant) -> ReplicaInfo {
        let mut info = self.info.clone();
        info.master_last_io_ms = now.saturating_duration_since(self.last_io).as_millis() as u64;
        info
    }

    /// A connection to the primary is up: returns the `Hello` to send first
    /// on the control stream.
    pub fn handle_connected(&mut self, _now: Instant, state: &ReplicaState) -> Message {
        self.info.connects += 1;
        self.link = Link::Handshake { offset: state.applied };
        Message::Hello {
            version: PROTOCOL_VERSION,
            name: self.config.name.clone(),
            // A follower interrupted in a full sync has no history to continue.
            replid: if state.stale {
                String::new()
            } else {
                state.replid.clone()
            },
            offset: state.applied,
            codecs: self.config.codecs.clone(),
            max_frame: self.config.max_frame_bytes.min(u32::MAX as usize) as u32,
            max_record: state.max_record.min(u32::MAX as usize) as u32,
            capacity: state.capacity,
            observer: self.config.observer,
        }
    }

    /// The primary's answer to `Hello` (`None`: it closed the control stream).
    pub fn handle_reply(&mut self, now: Instant, reply: Option<Message>) -> Result<Vec<FollowerAction>, LinkEnd> {
        self.last_io = now;
        let Link::Handshake { offset } = self.link else {
            return Err(ReplError::Peer("a handshake reply outside the handshake".into()).into());
        };
        // A deposed primary (an older failover epoch) must not feed us:
        // refused before anything is adopted; we reconnect later (the
        // coordinator re-points us to the shard's leader).
        if let Some(Message::Continue { history, .. } | Message::FullSync { history, .. }) = &reply {
            if history.epoch < self.min_epoch {
                let why = format!(
                    "the primary's failover epoch {} is older than this follower's {}",
                    history.epoch, self.min_epoch
                );
                tracing::warn!(%why, "refusing a deposed primary");
                self.info.last_error = Some(why.clone());
                return Err(ReplError::Peer(why).into());
            }
            self.min_epoch = history.epoch;
        }
        match reply {
            Some(Message::Continue {
                history,
                offset: from,
                codec,
            }) => {
                if from != offset {
                    return Err(
                        ReplError::Peer(format!("continue at {from}, but this follower is at {offset}")).into(),
                    );
                }
                // Not stale: the last full sync, if any, was swapped in.
                self.failed_full_syncs = 0;
                let info = &mut self.info;
                info.partial_syncs += 1;
                info.master_link_status = LinkStatus::Up;
                info.last_error = None;
                tracing::info!(offset, "partial resync: continuing from our offset");
                self.link = Link::Data(Box::new(Data::new(codec, None, offset)));
                Ok(vec![FollowerAction::AdoptHistory(history)])
            }
            Some(Message::FullSync {
                history,
                offset: snap_offset,
                reason,
                lost_bytes,
                codec,
            }) => {
                let window = Duration::from_millis(self.config.sync_loop_window_ms);
                let recent = self
                    .last_full_sync
                    .is_some_and(|t| now.saturating_duration_since(t) < window);
                let info = &mut self.info;
                if lost_bytes > 0 {
                    info.lost_bytes += lost_bytes;
                    tracing::warn!(
                        lost_bytes,
                        "rejoining: this node's writes past the switch offset are lost"
                    );
                }
                if recent {
                    info.sync_loops += 1;
                    let cause = format!("full sync needed again right after one: {reason}");
                    tracing::error!(%cause, "sync loop");
                    info.last_sync_loop_cause = Some(cause);
                    self.slow_down = true;
                }
                tracing::info!(snap_offset, %reason, "full sync");
                info.last_full_sync_reason = Some(reason);
                info.master_sync_in_progress = true;
                info.master_link_status = LinkStatus::Up;
                info.last_error = None;
                self.link = Link::Data(Box::new(Data::new(codec, Some(snap_offset), snap_offset)));
                Ok(vec![FollowerAction::BeginFullSync {
                    offset: snap_offset,
                    history,
                }])
            }
            Some(Message::Reject { reason }) => Err(ReplError::Peer(format!("primary refused: {reason}")).into()),
            Some(Message::Incompatible { reason }) => Err(ReplError::Incompatible(reason).into()),
            Some(other) => Err(ReplError::Peer(format!("unexpected reply {}", other.summary())).into()),
            None => Err(ReplError::Peer("the primary closed the control stream".into()).into()),
        }
    }

    /// How many data streams the primary opens on this link (the log, and
    /// the snapshot for a full sync); 0 before the handshake is answered.
    pub fn expected_streams(&self) -> usize {
        match &self.link {
            Link::Data(d) if d.full.is_some() => 2,
            Link::Data(_) => 1,
            _ => 0,
        }
    }

    /// The first frame of a data stream the primary opened (`None`: it
    /// ended empty): which stream it is.
    pub fn handle_stream(&mut self, first: Option<Message>) -> Result<DataStream, LinkEnd> {
        let max = self.config.max_frame_bytes;
        let Link::Data(d) = &mut self.link else {
            return Err(ReplError::Peer("a data stream before the handshake".into()).into());
        };
        match first {
            Some(Message::Stream { kind: StreamKind::Log }) if !d.log_stream => {
                d.log_stream = true;
                Ok(DataStream::Log)
            }
            Some(Message::Stream {
                kind: StreamKind::Snapshot,
            }) if !d.snapshot_stream => {
                if d.full.is_none() {
                    return Err(ReplError::Peer("a snapshot stream without a full sync".into()).into());
                }
                d.snapshot_stream = true;
                Ok(DataStream::Snapshot(SnapshotIntake::new(d.codec, max)))
            }
            Some(Message::Stream { kind }) => Err(ReplError::Peer(format!("a second {kind:?} stream")).into()),
            Some(other) => {
                Err(ReplError::Peer(format!("a data stream must start with Stream, got {}", other.summary())).into())
            }
            None => Err(ReplError::Peer("a data stream ended before its Stream frame".into()).into()),
        }
    }

    /// The expected data streams are open: streaming starts (with an ack
    /// at once unless a full sync is loading).
    pub fn handle_streams_ready(&mut self, now: Instant, progress: Progress) -> Result<Vec<FollowerAction>, LinkEnd> {
        let interval = self.ack_interval();
        let counted = self.counted(now);
        let Link::Data(d) = &mut self.link else {
            return Err(ReplError::Peer("data streams before the handshake".into()).into());
        };
        if !d.log_stream {
            return Err(ReplError::Peer("no log stream".into()).into());
        }
        d.ready = true;
        if d.full.is_some() {
            return Ok(Vec::new());
        }
        d.next_ack = Some(now + interval);
        Ok(d.ack(progress, true, counted).into_iter().collect())
    }

    /// A frame of the log stream (`None`: the primary ended it).
    pub fn handle_log_frame(&mut self, now: Instant, frame: Option<Message>) -> Result<Vec<FollowerAction>, LinkEnd> {
        self.last_io = now;
        let max = self.config.max_frame_bytes;
        let Link::Data(d) = &mut self.link else {
            return Err(ReplError::Peer("a log frame before the handshake".into()).into());
        };
        match frame {
            Some(Message::Log {
                start,
                codec,
                raw_len,
                data,
            }) => {
                if start != d.next_log {
                    // Checked before decompressing: the frame never reaches
                    // the codec's history or the engine.
                    return Err(ReplError::Peer(format!(
                        "a log frame at offset {start} where the stream is at {}: the transport lost, repeated or \
                         reordered a frame",
                        d.next_log
                    ))
                    .into());
                }
                let raw = d.decoder.decompress(codec, &data, raw_len as usize, max)?;
                d.next_log = start.saturating_add(raw.len() as u64);
                self.info.bytes_raw += raw.len() as u64;
                self.info.bytes_wire += data.len() as u64;
                Ok(vec![FollowerAction::Append {
                    start,
                    bytes: raw,
                    apply: d.full.is_none(),
                }])
            }
            // The primary stops the stream at a record we cannot take.
            Some(Message::Incompatible { reason }) => Err(ReplError::Incompatible(reason).into()),
            Some(other) => Err(ReplError::Peer(format!("unexpected {} on the log stream", other.summary())).into()),
            None => Err(LinkEnd::Reconnect("the primary ended the log stream".into())),
        }
    }

    /// The ring refused an [`FollowerAction::Append`] because it is full
    /// (`error`, the engine's `LogError::Full`). During a full sync nothing
    /// can release the ring before the swap: the bytes are held, the log
    /// stream pauses ([`FollowerSession::log_paused`]) and both resume
    /// after [`FollowerSession::handle_swapped_in`]. Live, the engine has
    /// already waited for a save: the link fails with `error`.
    pub fn handle_ring_full(
        &mut self,
        _now: Instant,
        start: u64,
        bytes: Vec<u8>,
        error: ReplError,
    ) -> Result<Vec<FollowerAction>, LinkEnd> {
        match &mut self.link {
            Link::Data(d) if d.full.is_some() && d.held.is_none() => {
                tracing::info!(
                    start,
                    "ring full during the full sync: the log waits for the snapshot to be swapped in"
                );
                self.info.full_sync_log_pauses += 1;
                d.held = Some((start, bytes));
                Ok(Vec::new())
            }
            _ => Err(error.into()),
        }
    }

    /// True while the driver must not feed log frames (they wait in the
    /// stream, under QUIC flow control): the ring refused bytes during a
    /// full sync, see [`FollowerSession::handle_ring_full`].
    pub fn log_paused(&self) -> bool {
        matches!(&self.link, Link::Data(d) if d.held.is_some())
    }

    /// An [`FollowerAction::Append`] was carried out: acks when live and
    /// the offsets moved.
    pub fn handle_appended(&mut self, now: Instant, progress: Progress) -> Vec<FollowerAction> {
        let counted = self.counted(now);
        match &mut self.link {
            Link::Data(d) if d.live() => d.ack(progress, false, counted).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// A frame of the control stream after the handshake (`None`: the
    /// primary closed it).
    pub fn handle_control_frame(&mut self, now: Instant, frame: Option<Message>) -> Result<(), LinkEnd> {
        self.last_io = now;
        match frame {
            Some(Message::Ping { published, .. }) => {
                self.info.master_repl_offset = published;
                Ok(())
            }
            Some(Message::Resync { reason }) => Err(LinkEnd::Reconnect(reason)),
            Some(Message::Incompatible { reason }) => Err(ReplError::Incompatible(reason).into()),
            Some(other) => Err(ReplError::Peer(format!("unexpected {} on the control stream", other.summary())).into()),
            None => Err(LinkEnd::Reconnect("the primary closed the control stream".into())),
        }
    }

    /// Snapshot bytes arrived (`wire` bytes on the wire).
    pub fn handle_snapshot_io(&mut self, now: Instant, wire: u64) {
        self.info.bytes_wire += wire;
        self.last_io = now;
    }

    /// The snapshot loaded into the staging keyspace: swap it in.
    pub fn handle_snapshot_loaded(&mut self, _now: Instant) -> Vec<FollowerAction> {
        match &self.link {
            Link::Data(d) => d
                .full
                .map(|offset| FollowerAction::SwapIn { offset })
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A [`FollowerAction::SwapIn`] was carried out: the full sync is
    /// complete, the follower is live (and acks at once).
    pub fn handle_swapped_in(&mut self, now: Instant, progress: Progress) -> Vec<FollowerAction> {
        let interval = self.ack_interval();
        let counted = self.counted(now);
        let Link::Data(d) = &mut self.link else {
            return Vec::new();
        };
        if d.full.take().is_none() {
            return Vec::new();
        }
        self.last_full_sync = Some(now);
        self.failed_full_syncs = 0;
        self.info.full_syncs += 1;
        self.info.master_sync_in_progress = false;
        tracing::info!(applied = progress.applied, "full sync complete: new data swapped in");
        d.next_ack = Some(now + interval);
        let mut actions: Vec<_> = d.ack(progress, true, counted).into_iter().collect();
        // The bytes the ring refused go in now (the swap's save released
        // the ring), and the log stream resumes.
        if let Some((start, bytes)) = d.held.take() {
            actions.push(FollowerAction::Append {
                start,
                bytes,
                apply: true,
            });
        }
        actions
    }

    /// When [`FollowerSession::handle_timeout`] is next due (the periodic ack).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.link {
            Link::Data(d) if d.live() => d.next_ack,
            _ => None,
        }
    }

    /// Timers: the periodic ack (sent while idle too: the primary's write
    /// gate counts recent acks).
    pub fn handle_timeout(&mut self, now: Instant, progress: Progress) -> Vec<FollowerAction> {
        let interval = self.ack_interval();
        let counted = self.counted(now);
        match &mut self.link {
            Link::Data(d) if d.live() && d.next_ack.is_some_and(|t| t <= now) => {
                d.next_ack = Some(now + interval);
                d.ack(progress, true, counted).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// The link ended: how long to wait before the next connection, or
    /// `None` to stop (stopped, or halted for good: a divergent stream, a
    /// record that does not apply here, `max_full_sync_attempts` failed full
    /// syncs in a row, a primary whose stream is beyond this follower's
    /// limits).
    pub fn handle_link_end(&mut self, _now: Instant, end: LinkEnd) -> Option<Duration> {
        self.info.master_link_status = LinkStatus::Down;
        let min = Self::min_backoff(&self.config);
        let max = self.max_backoff();
        let in_full_sync = matches!(&self.link, Link::Data(d) if d.full.is_some());
        self.link = Link::Down;
        if let LinkEnd::Failed(e @ ReplError::Incompatible(_)) = &end {
            // The primary would stop at the same record again.
            return self.halt(e.to_string());
        }
        if in_full_sync && !matches!(end, LinkEnd::Stopped) {
            self.failed_full_syncs += 1;
            self.info.failed_full_syncs += 1;
            let limit = self.config.max_full_sync_attempts;
            if limit > 0 && self.failed_full_syncs >= limit {
                let why = match &end {
                    LinkEnd::Reconnect(reason) => reason.clone(),
                    LinkEnd::Failed(e) => e.to_string(),
                    LinkEnd::Stopped => String::new(),
                };
                return self.halt(format!(
                    "{} full syncs in a row did not complete (max_full_sync_attempts); the last: {why}",
                    self.failed_full_syncs
                ));
            }
        }
        let wait = match end {
            LinkEnd::Stopped => return None,
            LinkEnd::Reconnect(reason) => {
                tracing::info!(%reason, "reconnecting to the primary");
                self.backoff = min;
                Duration::ZERO
            }
            LinkEnd::Failed(ReplError::Divergent(e)) => return self.halt(format!("divergent stream: {e}")),
            LinkEnd::Failed(ReplError::Engine(
                e @ (ringkv::Error::RecordRejected { .. } | ringkv::Error::BadRecord { .. }),
            )) => {
                // The engine cut its ring back to the applied offset; the
                // primary would send the same record again.
                return self.halt(format!(
                    "divergent stream: the primary's {e}; this follower's state differs from the primary's"
                ));
            }
            LinkEnd::Failed(e) => {
                tracing::warn!(error = %e, backoff_ms = self.backoff.as_millis() as u64, "replication link down");
                self.info.last_error = Some(e.to_string());
                let w = jitter(&mut self.seed, self.backoff);
                self.backoff = (self.backoff * 2).min(max);
                w
            }
        };
        if std::mem::take(&mut self.slow_down) {
            Some(wait.max(max))
        } else {
            Some(wait)
        }
    }

    /// Stops for good, saying why.
    fn halt(&mut self, reason: String) -> Option<Duration> {
        tracing::error!(%reason, "replication stopped");
        self.info.last_error = Some(reason);
        self.info.halted = true;
        self.link = Link::Halted;
        None
    }
}

impl Data {
    fn new(codec: Codec, full: Option<u64>, next_log: u64) -> Data {
        Data {
            next_log,
            codec,
            decoder: Decompressor::new(codec),
            full,
            log_stream: false,
            snapshot_stream: false,
            ready: false,
            last_ack: None,
            next_ack: None,
            held: None,
        }
    }

    /// Acks the applied and durable offsets: when they changed, or always
    /// with `force` (the periodic ack that keeps the link counted as fresh);
    /// never while not `counted` (nor is the ack remembered as sent).
    fn ack(&mut self, progress: Progress, force: bool, counted: bool) -> Option<FollowerAction> {
        if !counted {
            return None;
        }
        let now = (progress.applied, progress.durable);
        if force || self.last_ack != Some(now) {
            self.last_ack = Some(now);
            Some(FollowerAction::Send(Message::Ack {
                applied: progress.applied,
                durable: progress.durable,
            }))
        } else {
            None
        }
    }
}

/// A small xorshift for jitter (no shared RNG needed).
fn jitter(seed: &mut u64, base: Duration) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    // 50% to 150% of the base.
    let frac = 0.5 + (*seed % 1000) as f64 / 1000.0;
    base.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Codec;

    /// No split brain: once a follower knows epoch 5 (from its config, as
    /// persisted by the server, or from a history it adopted), a primary
    /// serving an older epoch is refused, and nothing of it is adopted.
    #[test]
    fn a_primary_of_an_older_epoch_is_refused() {
        let now = Instant::now();
        let with_epoch = |replid: &str, epoch| History {
            epoch,
            ..history(replid)
        };
        let cont = |h: History| {
            Some(Message::Continue {
                history: h,
                offset: 0,
                codec: Codec::Lz4,
            })
        };
        let mut s = FollowerSession::new(
            FollowerConfig {
                min_epoch: 5,
                ..config()
            },
            now,
            1,
        );
        s.handle_connected(now, &state(0, "A", false));
        assert!(s.handle_reply(now, cont(with_epoch("A", 4))).is_err());
        assert!(s.info(now).last_error.is_some_and(|e| e.contains("epoch 4")));
        s.handle_connected(now, &state(0, "A", false));
        let full = Some(Message::FullSync {
            history: with_epoch("A", 0),
            offset: 0,
            codec: Codec::Lz4,
            reason: "r".into(),
            lost_bytes: 0,
        });
        assert!(s.handle_reply(now, full).is_err(), "no epoch is the oldest");
        s.handle_connected(now, &state(0, "A", false));
        let actions = s.handle_reply(now, cont(with_epoch("A", 7))).expect("a newer epoch");
        assert!(matches!(actions.as_slice(), [FollowerAction::AdoptHistory(h)] if h.epoch == 7));
        // Having adopted 7, epoch 5 (what it was configured with) is old now.
        let mut s2 = s;
        s2.handle_link_end(now, LinkEnd::from(ReplError::Peer("gone".into())));
        s2.handle_connected(now, &state(0, "A", false));
        assert!(s2.handle_reply(now, cont(with_epoch("A", 5))).is_err());
        // Without failover (epoch 0 everywhere) nothing changes.
        let mut plain = FollowerSession::new(config(), now, 1);
        plain.handle_connected(now, &state(0, "A", false));
        assert!(plain.handle_reply(now, cont(history("A"))).is_ok());
    }

    fn config() -> FollowerConfig {
        FollowerConfig {
            name: "f".into(),
            codecs: vec![Codec::Lz4],
            min_backoff_ms: 20,
            max_backoff_ms: 200,
            ack_interval_ms: 100,
            sync_loop_window_ms: 30_000,
            ..FollowerConfig::default()
        }
    }

    fn history(replid: &str) -> History {
        History {
            replid: replid.into(),
            prev_replid: String::new(),
            switch_offset: 0,
            epoch: 0,
        }
    }

    fn state(applied: u64, replid: &str, stale: bool) -> ReplicaState {
        ReplicaState {
            applied,
            replid: replid.into(),
            stale,
            max_record: 1 << 20,
            capacity: 8 << 20,
        }
    }

    fn progress(applied: u64) -> Progress {
        Progress {
            applied,
            durable: applied,
        }
    }

    fn ack(applied: u64) -> FollowerAction {
        FollowerAction::Send(Message::Ack {
            applied,
            durable: applied,
        })
    }

    fn log_frame(start: u64, bytes: &[u8]) -> Message {
        Message::Log {
            start,
            codec: Codec::None,
            raw_len: bytes.len() as u32,
            data: bytes::Bytes::copy_from_slice(bytes),
        }
    }

    fn full_sync(offset: u64, reason: &str, lost_bytes: u64) -> Message {
        Message::FullSync {
            history: history("P"),
            offset,
            codec: Codec::None,
            reason: reason.into(),
            lost_bytes,
        }
    }

    fn stream(kind: StreamKind) -> Option<Message> {
        Some(Message::Stream { kind })
    }

    /// Connects and has the primary answer `Continue`, streams open.
    fn live_at(s: &mut FollowerSession, now: Instant, offset: u64) {
        s.handle_connected(now, &state(offset, "P", false));
        let actions = s
            .handle_reply(
                now,
                Some(Message::Continue {
                    history: history("P"),
                    offset,
                    codec: Codec::None,
                }),
            )
            .expect("continue");
        assert_eq!(actions, vec![FollowerAction::AdoptHistory(history("P"))]);
        assert!(matches!(s.handle_stream(stream(StreamKind::Log)), Ok(DataStream::Log)));
        assert_eq!(
            s.handle_streams_ready(now, progress(offset)).expect("ready"),
            vec![ack(offset)]
        );
    }

    /// Runs a whole full sync at `offset`.
    fn full_sync_at(s: &mut FollowerSession, now: Instant, offset: u64, reason: &str) {
        s.handle_connected(now, &state(0, "old", false));
        let actions = s
            .handle_reply(now, Some(full_sync(offset, reason, 0)))
            .expect("full sync");
        assert_eq!(
            actions,
            vec![FollowerAction::BeginFullSync {
                offset,
                history: history("P")
            }]
        );
        assert!(matches!(s.handle_stream(stream(StreamKind::Log)), Ok(DataStream::Log)));
        assert!(matches!(
            s.handle_stream(stream(StreamKind::Snapshot)),
            Ok(DataStream::Snapshot(_))
        ));
        assert_eq!(s.handle_streams_ready(now, progress(0)).expect("ready"), vec![]);
        assert_eq!(s.handle_snapshot_loaded(now), vec![FollowerAction::SwapIn { offset }]);
        assert_eq!(s.handle_swapped_in(now, progress(offset)), vec![ack(offset)]);
    }

    #[test]
    fn hello_carries_the_history_or_none_when_stale() {
        let now = Instant::now();
        let mut s = FollowerSession::new(config(), now, 7);
        let Message::Hello {
            replid,
            offset,
            codecs,
            version,
            ..
        } = s.handle_connected(now, &state(42, "abc", false))
        else {
            panic!("a hello")
        };
        assert_eq!((replid.as_str(), offset, version), ("abc", 42, PROTOCOL_VERSION));
        assert_eq!(codecs, vec![Codec::Lz4]);
        assert_eq!(s.phase(), FollowerPhase::Handshake);
        let Message::Hello { replid, .. } = s.handle_connected(now, &state(42, "abc", true)) else {
            panic!("a hello")
        };
        assert_eq!(replid, "", "an interrupted full sync has no history to continue");
        assert_eq!(s.info(now).connects, 2);
    }

    #[test]
    fn continue_goes_live_and_acks_every_applied_frame() {
        let now = Instant::now();
        let mut s = FollowerSession::new(config(), now, 7);
        live_at(&mut s, now, 100);
        assert_eq!(s.phase(), FollowerPhase::Live);
        let info = s.info(now);
        assert_eq!((info.partial_syncs, info.full_syncs), (1, 0));
        assert_eq!(info.master_link_status, LinkStatus::Up);
        let actions = s.handle_log_frame(now, Some(log_frame(100, b"abcd"))).expect("log");
        assert_eq!(
            actions,
            vec![FollowerAction::Append {
                start: 100,
                bytes: b"abcd".to_vec(),
                apply: true
            }]
        );
        assert_eq!(s.handle_appended(now, progress(104)), vec![ack(104)]);
        // Offsets that did not move are not acked again.
        assert_eq!(s.handle_appended(now, progress(104)), vec![]);
        let info = s.info(now);
        assert_eq!((info.bytes_raw, info.bytes_wire), (4, 4));
    }

    /// QUIC delivers a stream whole and in order; a transport that lost,
    /// repeated or reordered a log frame is caught by the session before
    /// the frame is decompressed or handed to the engine (found by the
    /// simulation, seeds 10 and 38: `sim/tests.rs`).
    #[test]
    fn a_log_frame_that_does_not_start_where_the_stream_is_ends_the_link() {
        let now = Instant::now();
        let is_refused = |r: Result<Vec<FollowerAction>, LinkEnd>, at: u64, expected: u64| match r {
            Err(LinkEnd::Failed(ReplError::Peer(e))) => {
                assert!(
                    e.contains(&format!("a log frame at offset {at} where the stream is at {expected}")),
                    "{e}"
                );
            }
            other => panic!("a frame at {at} was taken: {other:?}"),
        };
        // Live from 100: the first frame must start there.
        for at in [96, 104] {
            let mut s = FollowerSession::new(config(), now, 7);
            live_at(&mut s, now, 100);
            is_refused(s.handle_log_frame(now, Some(log_frame(at, b"abcdefgh"))), at, 100);
        }
        // Repeated, skipped and reordered frames after the first.
        let mut s = FollowerSession::new(config(), now, 7);
        live_at(&mut s, now, 100);
        assert!(s.handle_log_frame(now, Some(log_frame(100, b"abcdefgh"))).is_ok());
        is_refused(s.handle_log_frame(now, Some(log_frame(100, b"abcdefgh"))), 100, 108);
        let mut s = FollowerSession::new(config(), now, 7);
        live_at(&mut s, now, 100);
        assert!(s.handle_log_frame(now, Some(log_frame(100, b"abcdefgh"))).is_ok());
        is_refused(s.handle_log_frame(now, Some(log_frame(116, b"ijklmnop"))), 116, 108);
        // During a full sync the stream starts at the snapshot's offset,
        // whatever the keyspace's offset was.
        let mut s = FollowerSession::new(config(), now, 7);
        s.handle_connected(now, &state(40, "old", false));
        s.handle_reply(now, Some(full_sync(5000, "unknown", 0)))
            .expect("full sync");
        assert!(matches!(s.handle_stream(stream(StreamKind::Log)), Ok(DataStream::Log)));
        is_refused(s.handle_log_frame(now, Some(log_frame(40, b"abcdefgh"))), 40, 5000);
        let mut s = FollowerSession::new(config(), now, 7);
        s.handle_connected(now, &state(40, "old", false));
        s.handle_reply(now, Some(full_sync(5000, "unknown", 0)))
            .expect("full sync");
        assert!(matches!(s.handle_stream(stream(StreamKind::Log)), Ok(DataStream::Log)));
        assert_eq!(
            s.handle_log_frame(now, Some(log_frame(5000, b"abcdefgh")))
                .expect("log"),
            vec![FollowerAction::Append {
                start: 5000,
                bytes: b"abcdefgh".to_vec(),
                apply: false
            }]
        );
        assert!(s.handle_log_frame(now, Some(log_frame(5008, b"ijkl"))).is_ok());
    }

    #[test]
    fn continue_at_another_offset_is_refused() {
        let now = Instant::now();
        let mut s = FollowerSession::new(config(), now, 7);
        s.handle_connected(now, &state(100, "P", false));
        let end = s.handle_reply(
            now,
            Some(Message::Continue {
                history: history("P"),
                offset: 90,
                codec: Codec::None,
            }),
        );
        assert!(matches!(end, Err(LinkEnd::Failed(ReplError::Peer(ref m))) if m.contains("continue at 90")));
    }

    #[test]
    fn acks_on_the_interval_while_idle_with_simulated_time() {
        let t0 = Instant::now();
        let mut s = FollowerSession::new(config(), t0, 7);
        live_at(&mut s, t0, 10);
        let interval = Duration::from_millis(100);
        assert_eq!(s.poll_timeout(), Some(t0 + interval));
        // Too early: nothing.
        assert_eq!(s.handle_timeout(t0 + Duration::from_millis(50), progress(10)), vec![]);
        // Idle: the same offsets are acked again on each tick.
        let mut now = t0;
        for _ in 0..3 {
            now = s.poll_timeout().expect("armed");
            assert_eq!(s.handle_timeout(now, progress(10)), vec![ack(10)]);
        }
        assert_eq!(now, t0 + 3 * interval);
        assert_eq!(s.poll_timeout(), Some(t0 + 4 * interval));
        // The interval has a floor of 10 ms.
        let mut s = FollowerSession::new(
            FollowerConfig {
                ack_interval_ms: 0,
                ..config()
            },
            t0,
            7,
        );
        live_at(&mut s, t0, 0);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(10)));
    }

    /// Failover's switch: past its `counted_until` the follower sends no
    /// acks (neither after an append nor on the interval) while it keeps
    /// appending; a later deadline resumes them with the current offsets.
    #[test]
    fn no_acks_past_the_counted_deadline_then_acks_again() {
        let t0 = Instant::now();
        let mut s = FollowerSession::new(config(), t0, 7);
        live_at(&mut s, t0, 10);
        assert!(s.counted(t0), "counted by default");
        let interval = Duration::from_millis(100);
        s.set_counted_until(Some(t0 + interval / 2));
        assert!(s.counted(t0));
        assert_eq!(
            s.handle_appended(t0, progress(20)),
            vec![ack(20)],
            "before the deadline"
        );
        let late = t0 + interval;
        assert!(!s.counted(late));
        assert_eq!(s.handle_appended(late, progress(30)), vec![], "no ack after an append");
        assert_eq!(s.handle_timeout(late, progress(30)), vec![], "nor on the interval");
        assert_eq!(s.poll_timeout(), Some(late + interval), "the timer keeps running");
        // Registered again: the next periodic ack carries the offsets
        // applied meanwhile.
        s.set_counted_until(Some(late + 10 * interval));
        let next = s.poll_timeout().expect("armed");
        assert_eq!(s.handle_timeout(next, progress(30)), vec![ack(30)]);
        s.set_counted_until(None);
        assert!(s.counted(next + 100 * interval));
    }

    #[test]
    fn full_sync_stores_the_log_without_applying_then_swaps_in() {
        let now = Instant::now();
        let mut s = FollowerSession::new(config(), now, 7);
        s.handle_connected(now, &state(0, "old", false));
        s.handle_reply(now, Some(full_sync(500, "unknown", 0))).expect("full");
        assert_eq!(s.expected_streams(), 2);
        assert_eq!(s.phase(), FollowerPhase::Streams);
        // Either order of the two streams.
        let Ok(DataStream::Snapshot(mut intake)) = s.handle_stream(stream(StreamKind::Snapshot)) else {
            panic!("snapshot stream")
        };
        assert!(matches!(s.handle_stream(stream(StreamKind::Log)), Ok(DataStream::Log)));
        assert_eq!(s.handle_streams_ready(now, progress(0)).expect("ready"), vec![]);
        assert_eq!(s.phase(), FollowerPhase::FullSync);
        assert!(s.info(now).master_sync_in_progress);
        // No ack timer while loading.
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(
            s.handle_log_frame(now, Some(log_frame(500, b"xy"))).expect("log"),
            vec![FollowerAction::Append {
                start: 500,
                bytes: b"xy".to_vec(),
                apply: false
            }]
        );
        assert_eq!(s.handle_appended(now, progress(0)), vec![]);
        // The snapshot stream.
        let step = intake
            .handle_frame(Some(Message::Snapshot {
                codec: Codec::None,
                raw_len: 3,
                data: bytes::Bytes::from_static(b"abc"),
            }))
            .expect("feed");
        assert_eq!(
            step,
            SnapshotStep::Feed {
                raw: b"abc".to_vec(),
                wire: 3
            }
        );
        s.handle_snapshot_io(now, 3);
        assert_eq!(
            intake
                .handle_frame(Some(Message::SnapshotEnd { bytes: 3 }))
                .expect("end"),
            SnapshotStep::Done
        );
        assert_eq!(
            s.handle_snapshot_loaded(now),
            vec![FollowerAction::SwapIn { offset: 500 }]
        );
        assert_eq!(s.handle_swapped_in(now, progress(502)), vec![ack(502)]);
        assert_eq!(s.phase(), FollowerPhase::Live);
        let info = s.info(now);
        assert_eq!(info.full_syncs, 1);
        assert!(!info.master_sync_in_progress);
        assert_eq!(info.last_full_sync_reason.as_deref(), Some("unknown"));
        assert_eq!(info.bytes_wire, 5);
    }

    #[test]
    fn a_snapshot_of_the_wrong_length_or_frame_fails() {
        let mut intake = SnapshotIntake::new(Codec::None, 1 << 20);
        assert!(intake.handle_frame(Some(Message::SnapshotEnd { bytes: 9 })).is_err());
        let mut intake = SnapshotIntake::new(Codec::None, 1 << 20);
        assert!(intake.handle_frame(None).is_err());
        assert!(intake
            .handle_frame(Some(Message::Ack { applied: 0, durable: 0 }))
            .is_err());
    }

    #[test]
    fn lost_bytes_on_rejoin_are_summed() {
        let now = Instant::now();
        let mut s = FollowerSession::new(config(), now, 7);
        s.handle_connected(now, &state(1200, "A", false));
        s.handle_reply(now, Some(full_sync(1000, "diverged", 200)))
            .expect("full");
        assert_eq!(s.info(now).lost_bytes, 200);
    }

    #[test]
    fn a_full_sync_right_after_another_is_a_sync_loop_with_the_longest_backoff() {
        let t0 = Instant::now();
        let mut s = FollowerSession::new(config(), t0, 7);
        full_sync_at(&mut s, t0, 100, "first");
        assert_eq!(s.info(t0).sync_loops, 0);
        // Ordered reconnect: normally immediate.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            s.handle_link_end(t1, LinkEnd::Reconnect("resync".into())),
            Some(Duration::ZERO)
        );
        full_sync_at(&mut s, t1, 200, "replaying the ring from the offset would cost more");
        let info = s.info(t1);
        assert_eq!(info.sync_loops, 1);
        assert_eq!(info.full_syncs, 2);
        assert_eq!(
            info.last_sync_loop_cause.as_deref(),
            Some("full sync needed again right after one: replaying the ring from the offset would cost more")
        );
        // The next reconnect waits the longest backoff, once.
        assert_eq!(
            s.handle_link_end(t1, LinkEnd::Reconnect("resync".into())),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            s.handle_link_end(t1, LinkEnd::Reconnect("resync".into())),
            Some(Duration::ZERO)
        );
        // Outside the window: no loop.
        let t2 = t1 + Duration::from_secs(31);
        full_sync_at(&mut s, t2, 300, "later");
        assert_eq!(s.info(t2).sync_loops, 1);
    }

    #[test]
    fn failures_back_off_with_jitter_up_to_the_maximum_and_reset_on_order() {
        let now = Instant::now();
        let mut s = FollowerSession::new(config(), now, 12345);
        let mut waits = Vec::new();
        for _ in 0..6 {
            let w = s
                .handle_link_end(now, LinkEnd::Failed(ReplError::Timeout("x".into())))
                .expect("retry");
            waits.push(w);
        }
        // 50%..150% of 20, 40, 80, 160, 200, 200 ms.
        for (w, base) in waits.iter().zip([20u64, 40, 80, 160, 200, 200]) {
            let base = Duration::from_millis(base);
            assert!(*w >= base / 2 && *w <= base * 3 / 2, "{w:?} for {base:?}");
        }
        assert_eq!(s.info(now).last_error.as_deref(), Some("timed out: x"));
        assert_eq!(s.info(now).master_link_status, LinkStatus::Down);
        // Same seed, same schedule.
        let mut again = FollowerSession::new(config(), now, 12345);
        let first = again.handle_link_end(now, LinkEnd::Failed(ReplError::Timeout("x".into())));
        assert_eq!(first, Some(waits[0]));
        // An ordered reconnect resets the backoff.
        assert_eq!(
            s.handle_link_end(now, LinkEnd::Reconnect("r".into())),
            Some(Duration::ZERO)
        );
        let w = s
            .handle_link_end(now, LinkEnd::Failed(ReplError::Timeout("x".into())))
            .expect("retry");
        assert!(w <= Duration::from_millis(30), "{w:?}");
        assert_eq!(s.handle_link_end(now, LinkEnd::Stopped), None);
    }

    #[test]
    fn a_divergent_stream_halts_for_good() {
        let now = Instant::now();
        let mut s = FollowerSession::new(config(), now, 7);
        live_at(&mut s, now, 0);
        let end = LinkEnd::Failed(ReplError::Divergent("bytes differ at 7".into()));
        assert_eq!(s.handle_link_end(now, end), None);
        assert_eq!(s.phase(), FollowerPhase::Halted);
        let info = s.info(now);
        assert!(info.halted);
        assert_eq!(info.last_error.as_deref(), Some("divergent stream: bytes differ at 7"));
        assert_eq!(info.master_link_status, LinkStatus::Down);
    }

    #[test]
    fn a_record_that_does_not_apply_halts_for_good() {
        let now = Instant::now();
        let mut s = FollowerSession::new(config(), now, 7);
        live_at(&mut s, now, 0);
        let rejected = ringkv::Error::RecordRejected {
            offset: 4096,
            source: Box::new(ringkv::Error::Apply("HSET on a key that holds a string")),
        };
        assert_eq!(
            s.handle_link_end(now, LinkEnd::Failed(ReplError::Engine(rejected))),
            None
        );
        assert_eq!(s.phase(), FollowerPhase::Halted);
        let info = s.info(now);
        assert!(info.halted);
        assert_eq!(
            info.last_error.as_deref(),
            Some(
                "divergent stream: the primary's log record at offset 4096 does not apply: cannot apply mutation: \
                 HSET on a key that holds a string; this follower's state differs from the primary's"
            )
        );
        // Other engine errors are retried.
        let mut s = FollowerSession::new(config(), now, 7);
        live_at(&mut s, now, 0);
        let io = ringkv::Error::Replication("busy".into());
        assert!(s.handle_link_end(now, LinkEnd::Failed(ReplError::Engine(io))).is_some());
        assert!(!s.info(now).halted);
    }

    /// F8: the primary's `Incompatible` (a record beyond this follower's
    /// limits) halts it, wherever it arrives, with the reason.
    #[test]
    fn an_incompatible_primary_halts_for_good_with_the_reason() {
        let now = Instant::now();
        let reason =
            "the record at offset 4096 has a payload of 100010 bytes, above the follower's ring limit of 32752";
        let incompatible = || Some(Message::Incompatible { reason: reason.into() });
        let halted = |s: &mut FollowerSession, end: LinkEnd| {
            assert_eq!(s.handle_link_end(now, end), None);
            assert_eq!(s.phase(), FollowerPhase::Halted);
            let info = s.info(now);
            assert!(info.halted);
            assert_eq!(
                info.last_error.as_deref(),
                Some(format!("incompatible with the primary: {reason}").as_str())
            );
        };
        // On the log stream, at the record.
        let mut s = FollowerSession::new(config(), now, 7);
        live_at(&mut s, now, 4096);
        let end = s.handle_log_frame(now, incompatible()).expect_err("ends");
        halted(&mut s, end);
        // On the control stream.
        let mut s = FollowerSession::new(config(), now, 7);
        live_at(&mut s, now, 4096);
        let end = s.handle_control_frame(now, incompatible()).expect_err("ends");
        halted(&mut s, end);
        // As the handshake's answer, or the close code (also during a full sync).
        let mut s = FollowerSession::new(config(), now, 7);
        s.handle_connected(now, &state(0, "P", false));
        let end = s.handle_reply(now, incompatible()).expect_err("ends");
        halted(&mut s, end);
        let mut s = FollowerSession::new(config(), now, 7);
        s.handle_connected(now, &state(0, "old", false));
        s.handle_reply(now, Some(full_sync(500, "unknown", 0))).expect("full");
        halted(&mut s, LinkEnd::Failed(ReplError::Incompatible(reason.into())));
        // The Hello says what this follower can take.
        let Message::Hello {
            max_frame,
            max_record,
            capacity,
            ..
        } = s.handle_connected(now, &state(0, "P", false))
        else {
            panic!("a hello")
        };
        assert_eq!((max_frame, max_record, capacity), (64 << 20, 1 << 20, 8 << 20));
    }

    #[test]
    fn a_full_ring_during_a_full_sync_holds_the_bytes_until_the_swap() {
        let now = Instant::now();
        let mut s = FollowerSession::new(config(), now, 7);
        s.handle_connected(now, &state(0, "old", false));
        s.handle_reply(now, Some(full_sync(500, "unknown", 0))).expect("full");
        assert!(matches!(s.handle_stream(stream(StreamKind::Log)), Ok(DataStream::Log)));
        assert!(matches!(
            s.handle_stream(stream(StreamKind::Snapshot)),
            Ok(DataStream::Snapshot(_))
        ));
        assert_eq!(s.handle_streams_ready(now, progress(0)).expect("ready"), vec![]);
        let full = || ReplError::Engine(ringkv::Error::Log(ringkv::log::LogError::Full { needed: 2, free: 0 }));
        assert!(!s.log_paused());
        assert_eq!(
            s.handle_ring_full(now, 500, b"xy".to_vec(), full()).expect("held"),
            vec![]
        );
        assert!(s.log_paused());
        assert_eq!(s.phase(), FollowerPhase::FullSync);
        assert_eq!(
            s.handle_snapshot_loaded(now),
            vec![FollowerAction::SwapIn { offset: 500 }]
        );
        assert_eq!(
            s.handle_swapped_in(now, progress(500)),
            vec![
                ack(500),
                FollowerAction::Append {
                    start: 500,
                    bytes: b"xy".to_vec(),
                    apply: true
                }
            ]
        );
        assert!(!s.log_paused());
        assert_eq!(s.info(now).full_sync_log_pauses, 1);
        // Live, a full ring fails the link (the engine already waited for a save).
        assert!(matches!(
            s.handle_ring_full(now, 502, b"zz".to_vec(), full()),
            Err(LinkEnd::Failed(ReplError::Engine(_)))
        ));
    }

    #[test]
    fn resync_ping_and_unexpected_control_frames() {
        let t0 = Instant::now();
        let mut s = FollowerSession::new(config(), t0, 7);
        live_at(&mut s, t0, 0);
        let t1 = t0 + Duration::from_millis(30);
        s.handle_control_frame(
            t1,
            Some(Message::Ping {
                published: 77,
                time_ms: 1,
            }),
        )
        .expect("ping");
        assert_eq!(s.info(t1).master_repl_offset, 77);
        assert_eq!(s.info(t1 + Duration::from_millis(5)).master_last_io_ms, 5);
        assert!(matches!(
            s.handle_control_frame(t1, Some(Message::Resync { reason: "left".into() })),
            Err(LinkEnd::Reconnect(ref r)) if r == "left"
        ));
        assert!(matches!(s.handle_control_frame(t1, None), Err(LinkEnd::Reconnect(_))));
        assert!(matches!(
            s.handle_control_frame(t1, Some(Message::Ack { applied: 1, durable: 1 })),
            Err(LinkEnd::Failed(ReplError::Peer(ref m))) if m.contains("control stream")
        ));
    }

    /// An error about a peer's frame names the frame, never its bytes:
    /// the text is kept as `last_error` and logged, and a data frame may
    /// hold megabytes (found by the simulation, seed 102: `sim/tests.rs`).
    #[test]
    fn errors_about_large_frames_stay_small() {
        let now = Instant::now();
        let big = log_frame(4096, &vec![0x5a; 1 << 20]);
        let short = |end: LinkEnd| match end {
            LinkEnd::Failed(e) => {
                let text = e.to_string();
                assert!(
                    text.len() < 200,
                    "{} bytes: {}",
                    text.len(),
                    &text[..200.min(text.len())]
                );
                text
            }
            other => panic!("{other:?}"),
        };
        let mut s = FollowerSession::new(config(), now, 7);
        live_at(&mut s, now, 0);
        let first = s.handle_stream(Some(big.clone())).expect_err("not a Stream frame");
        assert_eq!(
            short(first),
            "peer: a data stream must start with Stream, got Log frame at 4096 (1048576 bytes)"
        );
        let mut s = FollowerSession::new(config(), now, 7);
        s.handle_connected(now, &state(0, "P", false));
        short(s.handle_reply(now, Some(big.clone())).expect_err("not a reply"));
        let mut s = FollowerSession::new(config(), now, 7);
        live_at(&mut s, now, 0);
        short(
            s.handle_control_frame(now, Some(big.clone()))
                .expect_err("not a control frame"),
        );
        let snapshot = Message::Snapshot {
            codec: Codec::None,
            raw_len: 1 << 20,
            data: bytes::Bytes::from(vec![1; 1 << 20]),
        };
        short(
            s.handle_log_frame(now, Some(snapshot.clone()))
                .expect_err("not a log frame"),
        );
        let mut intake = SnapshotIntake::new(Codec::None, 1 << 21);
        let e = intake.handle_frame(Some(big)).expect_err("not a snapshot frame");
        assert!(e.to_string().len() < 200);
    }

    #[test]
    fn malformed_and_unexpected_frames_end_the_link() {
        let now = Instant::now();
        let mut s = FollowerSession::new(config(), now, 7);
        s.handle_connected(now, &state(0, "P", false));
        assert!(matches!(
            s.handle_reply(now, Some(Message::Reject { reason: "frames of 9 bytes".into() })),
            Err(LinkEnd::Failed(ReplError::Peer(ref m))) if m == "primary refused: frames of 9 bytes"
        ));
        s.handle_connected(now, &state(0, "P", false));
        assert!(matches!(
            s.handle_reply(now, Some(Message::Ping { published: 0, time_ms: 0 })),
            Err(LinkEnd::Failed(ReplError::Peer(ref m))) if m.starts_with("unexpected reply")
        ));
        s.handle_connected(now, &state(0, "P", false));
        assert!(s.handle_reply(now, None).is_err());
        // A data stream that does not start with Stream, a snapshot without
        // a full sync, a second log stream, no log stream.
        live_at(&mut s, now, 0);
        assert!(matches!(
            s.handle_stream(stream(StreamKind::Log)),
            Err(LinkEnd::Failed(_))
        ));
        assert!(matches!(
            s.handle_stream(stream(StreamKind::Snapshot)),
            Err(LinkEnd::Failed(ReplError::Peer(ref m))) if m.contains("without a full sync")
        ));
        assert!(matches!(
            s.handle_stream(Some(log_frame(0, b"x"))),
            Err(LinkEnd::Failed(_))
        ));
        s.handle_connected(now, &state(0, "P", false));
        s.handle_reply(now, Some(full_sync(5, "r", 0))).expect("full");
        assert!(matches!(
            s.handle_stream(stream(StreamKind::Snapshot)),
            Ok(DataStream::Snapshot(_))
        ));
        assert!(matches!(
            s.handle_streams_ready(now, progress(0)),
            Err(LinkEnd::Failed(ReplError::Peer(ref m))) if m == "no log stream"
        ));
        // On the log stream: anything but Log, a bad compressed body, the end.
        live_at(&mut s, now, 0);
        assert!(matches!(
            s.handle_log_frame(now, Some(Message::SnapshotEnd { bytes: 0 })),
            Err(LinkEnd::Failed(ReplError::Peer(_)))
        ));
        let bad = Message::Log {
            start: 0,
            codec: Codec::Lz4,
            raw_len: 100,
            data: bytes::Bytes::from_static(b"\xff\xff\xff"),
        };
        assert!(matches!(
            s.handle_log_frame(now, Some(bad)),
            Err(LinkEnd::Failed(ReplError::Compress(_)))
        ));
        assert!(matches!(s.handle_log_frame(now, None), Err(LinkEnd::Reconnect(_))));
    }
}
