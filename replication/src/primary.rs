//! The primary: serves its engine's ring log to followers over QUIC.
//!
//! Per follower, one task: the control stream (handshake, acks, pings), the
//! log stream (raw ring bytes read from the follower's offset, one batch in
//! flight: QUIC flow control is the only buffer, so a slow follower costs
//! nothing but its offset), and for a full sync the snapshot stream,
//! produced by a fork-free snapshot while the log stream already runs from
//! the snapshot's offset.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ringkv::log::{LogError, LogView};
use ringkv::snapshot::{SnapshotError, SnapshotHeader};
use ringkv::{Engine, Role};
use tokio::sync::{mpsc, watch, Notify};

use crate::compress::Compressor;
use crate::config::{GateMode, PrimaryConfig, WriteGateConfig};
use crate::io::{code, finish_and_wait, frame_reader, read_frame, write_frame};
use crate::protocol::{
    choose_codec, decide, Codec, Decision, FollowerView, FullSyncReason, History, Message, PrimaryView, StreamKind,
};
use crate::stats::{FollowerLink, FollowerState, PrimaryStats};
use crate::tls::{fingerprint, TlsMaterial};
use crate::{now_ms, ReplError};

/// Wakes log senders when records are published (the ring's publish hook
/// notifies only when a sender is waiting, so appends stay cheap).
struct PublishSignal {
    notify: Notify,
    waiting: AtomicBool,
}

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    identity: String,
    addr: SocketAddr,
    state: FollowerState,
    applied: u64,
    durable: u64,
    sent: u64,
    last_ack: Instant,
    codec: Codec,
    bytes_raw: u64,
    bytes_wire: u64,
    snapshot_bytes: u64,
    snapshot_wire: u64,
}

#[derive(Default)]
struct Counters {
    sync_full: AtomicU64,
    sync_partial_ok: AtomicU64,
    sync_partial_err: AtomicU64,
    rejected: AtomicU64,
    protocol_errors: AtomicU64,
    resyncs_lagged: AtomicU64,
    snapshot_bytes: AtomicU64,
    snapshot_wire: AtomicU64,
}

pub(crate) struct Shared {
    engine: Engine,
    log: LogView,
    config: PrimaryConfig,
    followers: parking_lot::Mutex<BTreeMap<u64, Slot>>,
    next_id: AtomicU64,
    counters: Counters,
    publish: Arc<PublishSignal>,
    acks: Notify,
    ack_lock: parking_lot::Mutex<()>,
    ack_cv: parking_lot::Condvar,
    /// (log end, when it was first seen): for lag in time.
    samples: parking_lot::Mutex<VecDeque<(u64, Instant)>>,
}

/// A replication primary serving an engine's ring log (async API; see
/// [`crate::blocking::Primary`] for a handle that owns its runtime).
///
/// The engine may itself be a follower: it then serves its own followers
/// from its ring (chained replication).
///
/// ```
/// use std::time::Duration;
/// use ringkv::Engine;
/// use ringkv_replication::{tls::DevCerts, Follower, FollowerConfig, Primary, PrimaryConfig};
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = DevCerts::new("dev CA")?;
/// let primary_engine = Engine::builder().anonymous_log().build()?;
/// let primary = Primary::start(
///     primary_engine.clone(),
///     PrimaryConfig::default(), // 127.0.0.1, any port
///     ca.material(&ca.server(&["localhost"])?)?,
/// )
/// .await?;
/// let replica = Engine::builder().anonymous_log().build()?;
/// let follower = Follower::start(
///     replica.clone(),
///     FollowerConfig::new(primary.local_addr()),
///     ca.material(&ca.client("follower-1")?)?,
/// )
/// .await?;
///
/// primary_engine.incr("counter:api")?;
/// let at = primary_engine.last_write_offset().expect("logged");
/// // Redis' WAIT: one follower applied it.
/// assert_eq!(primary.wait_for_followers(at, 1, Duration::from_secs(10)).await, 1);
/// assert_eq!(replica.get("counter:api")?.expect("replicated"), "1");
/// assert_eq!(primary.stats().connected_slaves, 1);
/// follower.stop().await;
/// primary.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct Primary {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primary").field("local_addr", &self.local_addr).finish()
    }
}

impl Primary {
    /// Binds `config.listen` and starts serving `engine`'s ring (which it
    /// needs: a data directory or an anonymous log). Must be called within
    /// a tokio runtime.
    pub async fn start(engine: Engine, config: PrimaryConfig, tls: TlsMaterial) -> Result<Primary, ReplError> {
        let log = engine
            .log()
            .ok_or_else(|| ReplError::Config("the primary's engine needs a ring log".into()))?;
        let server =
            crate::tls::server_config(&tls, config.window_bytes, Duration::from_millis(config.idle_timeout_ms))?;
        let endpoint = quinn::Endpoint::server(server, config.listen)?;
        let local_addr = endpoint.local_addr()?;
        let publish = Arc::new(PublishSignal {
            notify: Notify::new(),
            waiting: AtomicBool::new(false),
        });
        // Runs on every append: a fence and a load of a line no one writes
        // while senders are busy (no shared read-modify-write per append).
        // The fence pairs with the one in `wait_published` (store `waiting`,
        // fence, load `published`), so a wake-up is not missed. The hook
        // keeps this small signal alive (ring hooks cannot be removed),
        // which costs a few bytes per primary started on the engine.
        let signal = publish.clone();
        log.on_publish(move || {
            std::sync::atomic::fence(Ordering::SeqCst);
            if signal.waiting.load(Ordering::Relaxed) && signal.waiting.swap(false, Ordering::SeqCst) {
                signal.notify.notify_waiters();
            }
        });
        let shared = Arc::new(Shared {
            engine,
            log,
            config,
            followers: parking_lot::Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            publish,
            acks: Notify::new(),
            ack_lock: parking_lot::Mutex::new(()),
            ack_cv: parking_lot::Condvar::new(),
            samples: parking_lot::Mutex::new(VecDeque::new()),
        });
        if let Some(gate) = shared.config.write_gate.clone() {
            shared.engine.set_write_gate(Some(Arc::new(Gate {
                shared: Arc::downgrade(&shared),
                config: gate,
            })));
        }
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(shared.clone(), endpoint.clone(), stop_rx.clone()));
        let sampler = tokio::spawn(sample_loop(shared.clone(), stop_rx));
        tracing::info!(%local_addr, "replication primary listening");
        Ok(Primary {
            shared,
            endpoint,
            local_addr,
            stop,
            tasks: vec![accept, sampler],
        })
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The engine served.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Replication stats (Redis INFO names where one exists).
    pub fn stats(&self) -> PrimaryStats {
        self.shared.stats()
    }

    /// Waits until at least `n` followers acknowledged applying `offset`
    /// (Redis' `WAIT`), or the timeout passes; returns how many did.
    pub async fn wait_for_followers(&self, offset: u64, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.acks.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let count = self.shared.count_acked(offset);
            if count >= n {
                return count;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.shared.count_acked(offset);
            }
        }
    }

    /// Closes every follower connection and the endpoint.
    pub async fn shutdown(mut self) {
        self.close();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.endpoint.wait_idle().await;
    }

    fn close(&self) {
        let _ = self.stop.send(true);
        self.endpoint.close(code::SHUTDOWN.into(), b"primary shutting down");
        if self.shared.config.write_gate.is_some() {
            self.shared.engine.set_write_gate(None);
        }
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn count_acked(&self, offset: u64) -> usize {
        self.followers
            .lock()
            .values()
            .filter(|s| s.state == FollowerState::Online && s.applied >= offset)
            .count()
    }

    fn lag_ms(&self, applied: u64, published: u64) -> u64 {
        if applied >= published {
            return 0;
        }
        let samples = self.samples.lock();
        match samples.iter().find(|(o, _)| *o > applied) {
            Some((_, at)) => at.elapsed().as_millis() as u64,
            None => samples.front().map_or(0, |(_, at)| at.elapsed().as_millis() as u64),
        }
    }

    fn stats(&self) -> PrimaryStats {
        let header = self.log.header();
        let published = self.log.published();
        let followers: Vec<FollowerLink> = self
            .followers
            .lock()
            .iter()
            .map(|(&id, s)| FollowerLink {
                id,
                name: s.name.clone(),
                identity: s.identity.clone(),
                addr: s.addr.to_string(),
                state: s.state,
                applied: s.applied,
                durable: s.durable,
                sent: s.sent,
                lag_bytes: published.saturating_sub(s.applied),
                lag_ms: 0,
                last_ack_ms: s.last_ack.elapsed().as_millis() as u64,
                codec: s.codec,
                bytes_raw: s.bytes_raw,
                bytes_wire: s.bytes_wire,
                snapshot_bytes: s.snapshot_bytes,
                snapshot_wire: s.snapshot_wire,
            })
            .collect();
        let followers = followers
            .into_iter()
            .map(|mut f| {
                f.lag_ms = self.lag_ms(f.applied, published);
                f
            })
            .collect();
        let c = &self.counters;
        PrimaryStats {
            connected_slaves: self.followers.lock().len(),
            master_repl_offset: published,
            master_replid: header.replid,
            master_replid2: header.prev_replid,
            second_repl_offset: header.switch_offset,
            repl_backlog_first_byte_offset: self.log.oldest(),
            repl_backlog_size: self.log.capacity(),
            sync_full: c.sync_full.load(Ordering::Relaxed),
            sync_partial_ok: c.sync_partial_ok.load(Ordering::Relaxed),
            sync_partial_err: c.sync_partial_err.load(Ordering::Relaxed),
            rejected_connections: c.rejected.load(Ordering::Relaxed),
            protocol_errors: c.protocol_errors.load(Ordering::Relaxed),
            resyncs_lagged: c.resyncs_lagged.load(Ordering::Relaxed),
            snapshot_bytes_sent: c.snapshot_bytes.load(Ordering::Relaxed),
            snapshot_wire_sent: c.snapshot_wire.load(Ordering::Relaxed),
            followers,
        }
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Slot)) {
        if let Some(slot) = self.followers.lock().get_mut(&id) {
            f(slot);
        }
    }

    fn view(&self) -> PrimaryView {
        let header = self.log.header();
        let unavailable = if self.engine.is_stale() {
            Some("this node is itself in a full sync".to_string())
        } else {
            None
        };
        // A follower serving others offers what it has applied.
        let published = match self.engine.role() {
            Role::Primary => self.log.published(),
            Role::Follower => self.engine.applied_offset(),
        };
        PrimaryView {
            history: History {
                replid: header.replid,
                prev_replid: header.prev_replid,
                switch_offset: header.switch_offset,
            },
            oldest: self.log.oldest(),
            published,
            max_replay_bytes: self.config.max_replay_bytes,
            unavailable,
        }
    }

    /// Waits until the log holds bytes at `pos`, or `limit` passes.
    async fn wait_published(&self, pos: u64, limit: Duration) {
        let signal = &self.publish;
        let notified = signal.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        signal.waiting.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.log.published() > pos {
            return;
        }
        let _ = tokio::time::timeout(limit, notified).await;
    }
}

async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint, mut stop: watch::Receiver<bool>) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = stop.changed() => return,
        };
        let Some(incoming) = incoming else { return };
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    // Includes clients without an acceptable certificate.
                    shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%addr, error = %e, "replication connection refused");
                    return;
                }
            };
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let result = serve(&shared, &conn, id, stop).await;
            shared.followers.lock().remove(&id);
            shared.acks.notify_waiters();
            match result {
                Ok(()) => tracing::info!(%addr, id, "follower disconnected"),
                Err(Closed::Protocol(e)) => {
                    shared.counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%addr, id, error = %e, "follower sent a bad frame: disconnected");
                    conn.close(code::PROTOCOL.into(), b"protocol error");
                }
                Err(Closed::Other(e)) => {
                    tracing::info!(%addr, id, error = %e, "follower connection ended");
                    conn.close(code::SHUTDOWN.into(), b"");
                }
            }
        });
    }
}

/// Keeps (log end, time first seen) samples for lag in time.
async fn sample_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let published = shared.log.published();
        let mut samples = shared.samples.lock();
        if samples.back().is_none_or(|(o, _)| *o < published) {
            samples.push_back((published, Instant::now()));
        }
        while samples.len() > 2
            && samples
                .front()
                .is_some_and(|(_, t)| t.elapsed() > Duration::from_secs(60))
        {
            samples.pop_front();
        }
    }
}

enum Closed {
    /// The peer misbehaved.
    Protocol(ReplError),
    /// Anything else (connection lost, shutdown).
    Other(ReplError),
}

fn other(e: impl Into<ReplError>) -> Closed {
    Closed::Other(e.into())
}

async fn serve(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    id: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Closed> {
    let identity = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().map(fingerprint))
        .unwrap_or_default();
    let max = shared.config.max_frame_bytes;
    let handshake = Duration::from_millis(shared.config.handshake_timeout_ms);
    let (mut csend, mut crecv) = tokio::time::timeout(handshake, conn.accept_bi())
        .await
        .map_err(|_| other(ReplError::Timeout("no control stream".into())))?
        .map_err(other)?;
    let hello = tokio::time::timeout(handshake, read_frame(&mut crecv, max))
        .await
        .map_err(|_| other(ReplError::Timeout("no hello".into())))?
        .map_err(Closed::Protocol)?;
    let Some(Message::Hello {
        version,
        name,
        replid,
        offset,
        codecs,
        max_frame,
    }) = hello
    else {
        return Err(Closed::Protocol(ReplError::Peer(
            "the first frame must be Hello".into(),
        )));
    };
    let codec = choose_codec(&codecs, &shared.config.codecs);
    shared.followers.lock().insert(
        id,
        Slot {
            name: name.clone(),
            identity,
            addr: conn.remote_address(),
            state: FollowerState::Handshake,
            applied: 0,
            durable: 0,
            sent: offset,
            last_ack: Instant::now(),
            codec,
            bytes_raw: 0,
            bytes_wire: 0,
            snapshot_bytes: 0,
            snapshot_wire: 0,
        },
    );
    let view = shared.view();
    // The largest Log frame carries one whole record of the largest size.
    let needed = shared.log.max_payload() + 64;
    let decision = if (max_frame as usize) < needed.min(shared.config.max_frame_bytes) {
        Decision::Reject(format!(
            "this ring's records can need frames of {needed} bytes; the follower accepts {max_frame}"
        ))
    } else {
        decide(
            &view,
            &FollowerView {
                version,
                replid,
                offset,
            },
        )
    };
    tracing::info!(id, %name, offset, ?decision, "follower handshake");
    let c = &shared.counters;
    let (start, snapshot, history_sent) = match decision {
        Decision::Reject(reason) => {
            c.rejected.fetch_add(1, Ordering::Relaxed);
            write_frame(&mut csend, &Message::Reject { reason: reason.clone() })
                .await
                .map_err(other)?;
            finish_and_wait(&mut csend).await;
            conn.close(code::REJECTED.into(), reason.as_bytes());
            return Ok(());
        }
        Decision::Continue => {
            c.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
            write_frame(
                &mut csend,
                &Message::Continue {
                    history: view.history.clone(),
                    offset,
                    codec,
                },
            )
            .await
            .map_err(other)?;
            shared.update(id, |s| s.state = FollowerState::Online);
            (offset, None, view.history.replid)
        }
        Decision::FullSync { reason, lost_bytes } => {
            if reason != FullSyncReason::UnknownHistory {
                c.sync_partial_err.fetch_add(1, Ordering::Relaxed);
            }
            c.sync_full.fetch_add(1, Ordering::Relaxed);
            shared.update(id, |s| s.state = FollowerState::FullSync);
            let snapshot_timeout = Duration::from_millis(shared.config.snapshot_send_timeout_ms);
            let (snap_offset, snap_replid, chunks) = start_snapshot(shared.engine.clone(), snapshot_timeout)
                .await
                .map_err(other)?;
            let history = {
                let h = shared.log.header();
                History {
                    replid: h.replid,
                    prev_replid: h.prev_replid,
                    switch_offset: h.switch_offset,
                }
            };
            if history.replid != snap_replid {
                return Err(other(ReplError::Peer(
                    "the history changed during the snapshot's start".into(),
                )));
            }
            write_frame(
                &mut csend,
                &Message::FullSync {
                    history,
                    offset: snap_offset,
                    codec,
                    reason: reason.to_string(),
                    lost_bytes,
                },
            )
            .await
            .map_err(other)?;
            shared.update(id, |s| s.sent = snap_offset);
            (snap_offset, Some(chunks), snap_replid)
        }
    };
    let mut control = frame_reader(crecv, max);
    let log_task = send_log(shared, conn, id, start, codec, &history_sent);
    tokio::pin!(log_task);
    let mut snapshot_running = snapshot.is_some();
    let snap_task = async {
        match snapshot {
            Some(chunks) => send_snapshot(shared, conn, id, chunks, codec).await,
            None => Ok(()),
        }
    };
    tokio::pin!(snap_task);
    let mut ping = tokio::time::interval(Duration::from_millis(shared.config.ping_interval_ms.max(10)));
    loop {
        tokio::select! {
            frame = control.recv() => match frame {
                Some(Ok(Message::Ack { applied, durable })) => {
                    shared.update(id, |s| {
                        s.applied = s.applied.max(applied);
                        s.durable = s.durable.max(durable);
                        s.last_ack = Instant::now();
                    });
                    shared.acks.notify_waiters();
                    let _guard = shared.ack_lock.lock();
                    shared.ack_cv.notify_all();
                }
                Some(Ok(other_msg)) => {
                    return Err(Closed::Protocol(ReplError::Peer(format!("unexpected {other_msg:?} on the control stream"))));
                }
                None => return Ok(()),
                Some(Err(e @ ReplError::Protocol(_))) => return Err(Closed::Protocol(e)),
                Some(Err(e)) => return Err(other(e)),
            },
            r = &mut log_task => {
                match r {
                    Err(ReplError::Engine(ringkv::Error::Log(LogError::Lagged { oldest }))) => {
                        c.resyncs_lagged.fetch_add(1, Ordering::Relaxed);
                        let reason = format!("the follower's offset left the ring (oldest is now {oldest})");
                        tracing::warn!(id, %reason, "follower must resync");
                        let _ = write_frame(&mut csend, &Message::Resync { reason: reason.clone() }).await;
                        finish_and_wait(&mut csend).await;
                        conn.close(code::RESYNC.into(), reason.as_bytes());
                        return Ok(());
                    }
                    Err(ReplError::Peer(reason)) if reason == HISTORY_CHANGED => {
                        let _ = write_frame(&mut csend, &Message::Resync { reason: reason.clone() }).await;
                        finish_and_wait(&mut csend).await;
                        conn.close(code::RESYNC.into(), reason.as_bytes());
                        return Ok(());
                    }
                    Err(e) => return Err(other(e)),
                    Ok(()) => return Ok(()),
                }
            }
            r = &mut snap_task, if snapshot_running => {
                r.map_err(other)?;
                snapshot_running = false;
                shared.update(id, |s| s.state = FollowerState::Online);
            }
            _ = ping.tick() => {
                if shared.log.replid() != history_sent || shared.engine.is_stale() {
                    // Promoted (or re-parented): the follower must adopt the new history.
                    let _ = write_frame(&mut csend, &Message::Resync { reason: HISTORY_CHANGED.into() }).await;
                    finish_and_wait(&mut csend).await;
                    conn.close(code::RESYNC.into(), HISTORY_CHANGED.as_bytes());
                    return Ok(());
                }
                let ping = Message::Ping { published: shared.log.published(), time_ms: now_ms() };
                write_frame(&mut csend, &ping).await.map_err(other)?;
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Why a log stream stops when the served history is no longer the one
/// the follower was told about (a promotion, or an upstream full sync on a
/// chained node).
const HISTORY_CHANGED: &str = "the primary's history changed";

/// Streams raw ring bytes from `from`; returns only on error.
async fn send_log(
    shared: &Shared,
    conn: &quinn::Connection,
    id: u64,
    from: u64,
    codec: Codec,
    replid: &str,
) -> Result<(), ReplError> {
    let mut send = conn.open_uni().await?;
    write_frame(&mut send, &Message::Stream { kind: StreamKind::Log }).await?;
    let mut pos = from;
    let mut compressor = Compressor::new(codec);
    let same_history = || shared.log.replid() == replid && !shared.engine.is_stale();
    loop {
        if !same_history() {
            return Err(ReplError::Peer(HISTORY_CHANGED.into()));
        }
        // On a follower serving others, only what it has applied is offered.
        let (limit, chained) = match shared.engine.role() {
            Role::Primary => (shared.log.published(), false),
            Role::Follower => (shared.engine.applied_offset(), true),
        };
        if limit <= pos {
            if chained {
                // Applied moves after published: poll it (bounded extra lag).
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                shared.wait_published(pos, Duration::from_millis(20)).await;
            }
            continue;
        }
        let batch = shared
            .log
            .read_stream(pos, shared.config.batch_bytes)
            .map_err(ringkv::Error::Log)?;
        // Read, then check: a reset that raced the read shows here.
        if !same_history() {
            return Err(ReplError::Peer(HISTORY_CHANGED.into()));
        }
        let mut bytes = batch.bytes;
        if batch.start + bytes.len() as u64 > limit {
            // Cut at the applied offset (a record boundary).
            let keep = (limit - batch.start) as usize;
            bytes.truncate(keep);
            if bytes.is_empty() {
                shared.wait_published(pos, Duration::from_millis(20)).await;
                continue;
            }
        }
        let raw_len = bytes.len();
        let (used, data) = compressor.compress(&bytes);
        write_frame(
            &mut send,
            &Message::Log {
                start: pos,
                codec: used,
                raw_len: raw_len as u32,
                data: data.into(),
            },
        )
        .await?;
        pos += raw_len as u64;
        let (raw, wire) = (compressor.bytes_raw, compressor.bytes_wire);
        shared.update(id, |s| {
            s.sent = pos;
            s.bytes_raw = raw;
            s.bytes_wire = wire;
        });
    }
}

/// Bytes written by a snapshot, in chunks, to an async receiver.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    /// A chunk the follower does not take within this time aborts the
    /// snapshot (writers touching unserialized keys wait for it).
    timeout: Duration,
}

const SNAPSHOT_CHUNK: usize = 256 * 1024;

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SNAPSHOT_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let mut chunk = std::mem::take(&mut self.buf);
            let deadline = Instant::now() + self.timeout;
            loop {
                match self.tx.try_send(chunk) {
                    Ok(()) => break,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "follower gone"))
                    }
                    Err(mpsc::error::TrySendError::Full(back)) => {
                        if Instant::now() > deadline {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "the follower stopped reading the snapshot",
                            ));
                        }
                        chunk = back;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Starts a snapshot on a blocking thread; returns its offset (read from
/// the stream's header) and the receiver of its bytes (header included).
async fn start_snapshot(
    engine: Engine,
    timeout: Duration,
) -> Result<(u64, String, mpsc::Receiver<Vec<u8>>), ReplError> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx,
            buf: Vec::with_capacity(SNAPSHOT_CHUNK),
            timeout,
        };
        // Another snapshot (a save, another follower's sync) may be running:
        // wait for it rather than fail the follower.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match engine.snapshot_to(&mut out) {
                Err(ringkv::Error::Snapshot(SnapshotError::InProgress)) if Instant::now() < deadline => {
                    if out.tx.is_closed() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(_) => {
                    let _ = std::io::Write::flush(&mut out);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "snapshot for a follower failed");
                    return;
                }
            }
        }
    });
    // The header comes first: the header is flushed with the first chunk.
    let first = rx
        .recv()
        .await
        .ok_or_else(|| ReplError::Connection("the snapshot for the follower failed".into()))?;
    let head: &[u8; ringkv::snapshot::format::HEADER_LEN] = first
        .get(..ringkv::snapshot::format::HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| ReplError::Connection("snapshot stream shorter than its header".into()))?;
    let header = SnapshotHeader::decode(head).map_err(ringkv::Error::Snapshot)?;
    // Hand the first chunk back in front of the rest.
    let (tx2, rx2) = mpsc::channel(4);
    tokio::spawn(async move {
        if tx2.send(first).await.is_err() {
            return;
        }
        while let Some(chunk) = rx.recv().await {
            if tx2.send(chunk).await.is_err() {
                return;
            }
        }
    });
    Ok((header.offset, header.replid, rx2))
}

async fn send_snapshot(
    shared: &Shared,
    conn: &quinn::Connection,
    id: u64,
    mut chunks: mpsc::Receiver<Vec<u8>>,
    codec: Codec,
) -> Result<(), ReplError> {
    let mut send = conn.open_uni().await?;
    write_frame(
        &mut send,
        &Message::Stream {
            kind: StreamKind::Snapshot,
        },
    )
    .await?;
    let mut compressor = Compressor::new(codec);
    let mut total = 0u64;
    while let Some(chunk) = chunks.recv().await {
        total += chunk.len() as u64;
        // A chunk can hold one large value in one piece: frames stay small.
        for piece in chunk.chunks(SNAPSHOT_CHUNK) {
            let (used, data) = compressor.compress(piece);
            write_frame(
                &mut send,
                &Message::Snapshot {
                    codec: used,
                    raw_len: piece.len() as u32,
                    data: data.into(),
                },
            )
            .await?;
        }
        let (raw, wire) = (compressor.bytes_raw, compressor.bytes_wire);
        shared.update(id, |s| {
            s.snapshot_bytes = raw;
            s.snapshot_wire = wire;
        });
    }
    let c = &shared.counters;
    c.snapshot_bytes.fetch_add(compressor.bytes_raw, Ordering::Relaxed);
    c.snapshot_wire.fetch_add(compressor.bytes_wire, Ordering::Relaxed);
    write_frame(&mut send, &Message::SnapshotEnd { bytes: total }).await?;
    send.finish().map_err(|e| ReplError::Connection(e.to_string()))?;
    tracing::info!(id, bytes = total, "snapshot sent to follower");
    Ok(())
}

/// The write gate: enough followers within the lag budget.
struct Gate {
    shared: Weak<Shared>,
    config: WriteGateConfig,
}

impl Gate {
    fn good(&self, shared: &Shared) -> usize {
        let published = shared.log.published();
        let max_age = Duration::from_millis(self.config.max_ack_age_ms);
        shared
            .followers
            .lock()
            .values()
            .filter(|s| {
                s.state == FollowerState::Online
                    && published.saturating_sub(s.applied) <= self.config.max_lag_bytes
                    && s.last_ack.elapsed() <= max_age
            })
            .count()
    }
}

impl ringkv::WriteGate for Gate {
    fn admit(&self) -> Result<(), String> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let need = self.config.min_followers;
        let mut good = self.good(&shared);
        if good >= need {
            return Ok(());
        }
        if self.config.mode == GateMode::Delay {
            let deadline = Instant::now() + Duration::from_millis(self.config.max_delay_ms);
            let mut guard = shared.ack_lock.lock();
            // Again under the lock: an ack that landed meanwhile is not missed.
            good = self.good(&shared);
            while good < need {
                if shared.ack_cv.wait_until(&mut guard, deadline).timed_out() {
                    good = self.good(&shared);
                    break;
                }
                good = self.good(&shared);
            }
            if good >= need {
                return Ok(());
            }
        }
        Err(format!(
            "{good} of the {need} required followers are within {} bytes",
            self.config.max_lag_bytes
        ))
    }
}
