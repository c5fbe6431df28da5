//! The primary's driver: serves its engine's ring log to followers over QUIC.
//!
//! At most `max_followers` connections are served at once (one more is
//! closed with close code 4, `code::TOO_MANY_FOLLOWERS`, and the reason as
//! soon as its QUIC handshake completes). Everything read from a follower
//! is a control frame, limited to [`MAX_CONTROL_FRAME`].
//!
//! Per follower, one task: the control stream (handshake, acks, pings), the
//! log stream (raw ring bytes read from the follower's offset, one batch in
//! flight: QUIC flow control is the only buffer, so a slow follower costs
//! nothing but its offset), and for a full sync the snapshot stream,
//! produced by a fork-free snapshot while the log stream already runs from
//! the snapshot's offset.
//!
//! The decisions are the sans-IO [`PrimarySession`]'s (in
//! `session/primary.rs`, one per connection, kept in the followers map so
//! stats and the write gate read it), the log stream's are a
//! [`LogCursor`]'s; this driver owns the quinn streams, the tokio timers,
//! the publish signal and the engine, reads the engine for each event
//! ([`Served`], [`PrimaryView`]) and carries out the actions.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ringkv::log::{LogError, LogView};
use ringkv::snapshot::{SnapshotError, SnapshotHeader};
use ringkv::{Engine, Role};
use tokio::sync::{mpsc, watch, Notify};

use crate::config::{GateMode, PrimaryConfig, WriteGateConfig};
use crate::io::{code, finish_and_wait, frame_reader, read_frame, write_frame};
use crate::protocol::{Codec, History, Limits, Message, PrimaryView, StreamKind, MAX_CONTROL_FRAME, MIN_DATA_FRAME};
use crate::session::{
    CloseCode, LogCursor, LogEnd, LogStep, PrimaryAction, PrimaryCounter, PrimarySession, Served, SnapshotSender,
    SnapshotStall,
};
use crate::stats::{FollowerLink, PrimaryStats};
use crate::tls::{fingerprint, TlsMaterial};
use crate::{now_ms, ReplError};

/// Wakes log senders when records are published (the ring's publish hook
/// notifies only when a sender is waiting, so appends stay cheap).
struct PublishSignal {
    notify: Notify,
    waiting: AtomicBool,
}

/// One connection; its session says hello-or-not (followers are listed
/// once they said hello).
struct Slot {
    identity: String,
    addr: SocketAddr,
    session: PrimarySession,
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

impl Counters {
    fn count(&self, c: PrimaryCounter) {
        let counter = match c {
            PrimaryCounter::Rejected => &self.rejected,
            PrimaryCounter::PartialOk => &self.sync_partial_ok,
            PrimaryCounter::PartialErr => &self.sync_partial_err,
            PrimaryCounter::FullSync => &self.sync_full,
            PrimaryCounter::ResyncLagged => &self.resyncs_lagged,
            PrimaryCounter::ProtocolError => &self.protocol_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
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
    /// The failover epoch sent with the history (`PrimaryConfig::epoch`,
    /// then `Primary::set_epoch`).
    epoch: AtomicU64,
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
    /// The write gate it installed (`[write_gate]`), removed on close only
    /// if still installed.
    gate: Option<Arc<dyn ringkv::WriteGate>>,
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
        if config.max_frame_bytes < MIN_DATA_FRAME {
            return Err(ReplError::Config(format!(
                "max_frame_bytes must be at least {MIN_DATA_FRAME}, not {}",
                config.max_frame_bytes
            )));
        }
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
        let epoch = config.epoch;
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
            epoch: AtomicU64::new(epoch),
        });
        let gate = shared.config.write_gate.clone().map(|config| {
            let gate: Arc<dyn ringkv::WriteGate> = Arc::new(Gate {
                shared: Arc::downgrade(&shared),
                config,
            });
            shared.engine.set_write_gate(Some(Arc::clone(&gate)));
            gate
        });
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
            gate,
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

    /// Sets the failover epoch sent to followers from their next
    /// handshake on (this primary took its shard's leader key at that
    /// revision). It only grows.
    pub fn set_epoch(&self, epoch: u64) {
        self.shared.epoch.fetch_max(epoch, Ordering::AcqRel);
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

    /// Stops serving now, through a shared handle: signals the tasks,
    /// closes every follower connection and the endpoint (its port is
    /// free once the endpoint is idle), and removes the write gate this
    /// primary installed if it is still the engine's (never a gate
    /// installed after it, such as a newer primary's). Dropping or
    /// [`shutdown`](Self::shutdown) does the same; a second call is a no-op.
    pub fn close(&self) {
        let _ = self.stop.send(true);
        self.endpoint.close(code::SHUTDOWN.into(), b"primary shutting down");
        if let Some(gate) = &self.gate {
            self.shared.engine.clear_write_gate_if(gate);
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
            .filter(|s| s.session.acked(offset))
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
        let now = Instant::now();
        let followers: Vec<FollowerLink> = self
            .followers
            .lock()
            .iter()
            .filter_map(|(&id, s)| {
                let l = s.session.link()?;
                Some(FollowerLink {
                    id,
                    name: l.name.clone(),
                    identity: s.identity.clone(),
                    addr: s.addr.to_string(),
                    state: l.state,
                    applied: l.applied,
                    durable: l.durable,
                    sent: l.sent,
                    lag_bytes: published.saturating_sub(l.applied),
                    lag_ms: 0,
                    last_ack_ms: now.saturating_duration_since(l.last_ack).as_millis() as u64,
                    codec: l.codec,
                    bytes_raw: l.bytes_raw,
                    bytes_wire: l.bytes_wire,
                    snapshot_bytes: l.snapshot_bytes,
                    snapshot_wire: l.snapshot_wire,
                })
            })
            .collect();
        let followers: Vec<FollowerLink> = followers
            .into_iter()
            .map(|mut f| {
                f.lag_ms = self.lag_ms(f.applied, published);
                f
            })
            .collect();
        let c = &self.counters;
        PrimaryStats {
            connected_slaves: followers.len(),
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

    /// Gives connection `id` a slot, unless `max_followers` are served
    /// already (connections that have not said hello count too).
    fn admit(&self, id: u64, conn: &quinn::Connection) -> bool {
        let identity = conn
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
            .and_then(|chain| chain.first().map(fingerprint))
            .unwrap_or_default();
        let mut followers = self.followers.lock();
        if followers.len() >= self.config.max_followers {
            return false;
        }
        followers.insert(
            id,
            Slot {
                identity,
                addr: conn.remote_address(),
                session: PrimarySession::new(id, &self.config, Instant::now()),
            },
        );
        true
    }

    /// Runs `f` on connection `id`'s session (under the followers lock:
    /// keep it short, never across an await).
    fn session<R: Default>(&self, id: u64, f: impl FnOnce(&mut PrimarySession) -> R) -> R {
        self.followers
            .lock()
            .get_mut(&id)
            .map(|slot| f(&mut slot.session))
            .unwrap_or_default()
    }

    // The engine adapter: what the sessions learn of the engine.

    fn history(&self) -> History {
        let header = self.log.header();
        History {
            replid: header.replid,
            prev_replid: header.prev_replid,
            switch_offset: header.switch_offset,
            epoch: self.epoch.load(Ordering::Acquire),
        }
    }

    fn view(&self) -> PrimaryView {
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
            history: self.history(),
            oldest: self.log.oldest(),
            published,
            max_replay_bytes: self.config.max_replay_bytes,
            unavailable,
        }
    }

    fn served(&self) -> Served {
        let replid = self.log.replid();
        let stale = self.engine.is_stale();
        let published = self.log.published();
        // On a follower serving others, only what it has applied is offered.
        let (limit, chained) = match self.engine.role() {
            Role::Primary => (published, false),
            Role::Follower => (self.engine.applied_offset(), true),
        };
        Served {
            replid,
            stale,
            published,
            limit,
            chained,
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
            if !shared.admit(id, &conn) {
                let limit = shared.config.max_followers;
                shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%addr, limit, "too many followers: replication connection refused");
                let reason = format!("too many followers (the limit is {limit})");
                conn.close(code::TOO_MANY_FOLLOWERS.into(), reason.as_bytes());
                return;
            }
            let result = serve(&shared, &conn, id, stop).await;
            shared.followers.lock().remove(&id);
            shared.acks.notify_waiters();
            match result {
                Ok(()) => tracing::info!(%addr, id, "follower disconnected"),
                // Closed already when the session said so (closing again is a no-op).
                Err(Closed::Protocol(e)) => {
                    tracing::warn!(%addr, id, error = %e, "follower violated the protocol: disconnected");
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

/// How a connection ended, for the logs (it is closed by then).
enum Closed {
    /// The peer misbehaved.
    Protocol(String),
    /// Anything else (connection lost, a timeout, a failure).
    Other(String),
}

fn other(e: impl Into<ReplError>) -> Closed {
    Closed::Other(e.into().to_string())
}

fn close_code(c: CloseCode) -> u32 {
    match c {
        CloseCode::Rejected => code::REJECTED,
        CloseCode::Resync => code::RESYNC,
        CloseCode::Protocol => code::PROTOCOL,
        CloseCode::Incompatible => code::INCOMPATIBLE,
        CloseCode::Shutdown => code::SHUTDOWN,
    }
}

/// Carries out a session's actions in order, up to the one that ends the
/// session (returned, with the connection closed by then). The actions
/// that open streams are handed back in `opens` for the caller.
async fn act(
    shared: &Shared,
    conn: &quinn::Connection,
    mut csend: Option<&mut quinn::SendStream>,
    actions: Vec<PrimaryAction>,
    opens: &mut Vec<PrimaryAction>,
) -> Option<Result<(), Closed>> {
    for action in actions {
        match action {
            PrimaryAction::Send(msg) => {
                let Some(send) = csend.as_deref_mut() else {
                    conn.close(code::SHUTDOWN.into(), b"");
                    return Some(Err(Closed::Other("no control stream to send on".into())));
                };
                if let Err(e) = write_frame(send, &msg).await {
                    conn.close(code::SHUTDOWN.into(), b"");
                    return Some(Err(other(e)));
                }
            }
            PrimaryAction::Count(c) => shared.counters.count(c),
            PrimaryAction::Acked => {
                shared.acks.notify_waiters();
                let _guard = shared.ack_lock.lock();
                shared.ack_cv.notify_all();
            }
            PrimaryAction::Close {
                last,
                code,
                reason,
                error,
            } => {
                if let (Some(msg), Some(send)) = (last, csend.as_deref_mut()) {
                    let _ = write_frame(send, &msg).await;
                    finish_and_wait(send).await;
                }
                conn.close(close_code(code).into(), reason.as_bytes());
                return Some(match (code, error) {
                    (CloseCode::Protocol, e) => Err(Closed::Protocol(e.unwrap_or(reason))),
                    (_, Some(e)) => Err(Closed::Other(e)),
                    (_, None) => Ok(()),
                });
            }
            PrimaryAction::Done => return Some(Ok(())),
            open @ (PrimaryAction::StartSnapshot
            | PrimaryAction::OpenLog { .. }
            | PrimaryAction::OpenSnapshot { .. }) => opens.push(open),
        }
    }
    None
}

/// Until `deadline` (none: forever).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

async fn serve(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    id: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Closed> {
    // The slot was given by `Shared::admit`.
    let timed_out = || async {
        let served = shared.served();
        let actions = shared.session(id, |s| s.handle_timeout(Instant::now(), &served, now_ms()));
        act(shared, conn, None, actions, &mut Vec::new())
            .await
            .unwrap_or_else(|| Err(Closed::Other("handshake timed out".into())))
    };
    // The handshake, each step within its deadline.
    let deadline = shared.session(id, |s| s.poll_timeout());
    let (mut csend, mut crecv) = tokio::select! {
        bi = conn.accept_bi() => bi.map_err(other)?,
        _ = sleep_until(deadline) => return timed_out().await,
    };
    shared.session(id, |s| s.handle_control_opened(Instant::now()));
    let deadline = shared.session(id, |s| s.poll_timeout());
    let hello = tokio::select! {
        hello = read_frame(&mut crecv, MAX_CONTROL_FRAME) => hello,
        _ = sleep_until(deadline) => return timed_out().await,
    };
    let view = shared.view();
    let max_payload = shared.log.max_payload();
    let actions = shared.session(id, |s| s.handle_hello(Instant::now(), hello, &view, max_payload));
    let mut opens = Vec::new();
    if let Some(end) = act(shared, conn, Some(&mut csend), actions, &mut opens).await {
        return end;
    }
    // The data streams the session asks for (a snapshot first, if any).
    let mut cursor = None;
    let mut snapshot = None;
    let mut chunks = None;
    let mut queue = VecDeque::from(opens);
    while let Some(open) = queue.pop_front() {
        match open {
            PrimaryAction::StartSnapshot => {
                let timeout = Duration::from_millis(shared.config.snapshot_send_timeout_ms);
                // A follower that goes away while its snapshot waits for the
                // engine's one stream slot gives up its request: dropping the
                // receiver ends the waiting thread, or cancels the snapshot.
                let start = tokio::select! {
                    started = start_snapshot(shared.engine.clone(), timeout) => started,
                    _ = conn.closed() => return Err(Closed::Other("gone before its full sync started".into())),
                    _ = stop.changed() => return Ok(()),
                };
                let started = match start {
                    Ok((offset, replid, rx)) => {
                        chunks = Some(rx);
                        Ok((offset, replid))
                    }
                    Err(e) => Err(e),
                };
                let history = shared.history();
                let actions = shared.session(id, |s| s.handle_snapshot_started(Instant::now(), started, history));
                let mut more = Vec::new();
                if let Some(end) = act(shared, conn, Some(&mut csend), actions, &mut more).await {
                    return end;
                }
                queue.extend(more);
            }
            PrimaryAction::OpenLog {
                from,
                codec,
                replid,
                limits,
            } => {
                cursor = Some(LogCursor::new(from, replid, codec, shared.config.batch_bytes, limits));
            }
            PrimaryAction::OpenSnapshot { codec, limits } => snapshot = chunks.take().map(|c| (c, codec, limits)),
            _ => {}
        }
    }
    let Some(cursor) = cursor else {
        conn.close(code::SHUTDOWN.into(), b"");
        return Err(Closed::Other("the session opened no log stream".into()));
    };
    let mut control = frame_reader(crecv, MAX_CONTROL_FRAME);
    let log_task = send_log(shared, conn, id, cursor);
    tokio::pin!(log_task);
    let mut snapshot_running = snapshot.is_some();
    let snap_task = async {
        match snapshot {
            Some((chunks, codec, limits)) => send_snapshot(shared, conn, id, chunks, codec, limits).await,
            None => Ok(()),
        }
    };
    tokio::pin!(snap_task);
    loop {
        let deadline = shared.session(id, |s| s.poll_timeout());
        let actions = tokio::select! {
            frame = control.recv() => shared.session(id, |s| s.handle_control_frame(Instant::now(), frame)),
            end = &mut log_task => shared.session(id, |s| s.handle_log_end(Instant::now(), end)),
            r = &mut snap_task, if snapshot_running => {
                snapshot_running = false;
                shared.session(id, |s| s.handle_snapshot_sent(Instant::now(), r))
            }
            _ = sleep_until(deadline) => {
                let served = shared.served();
                shared.session(id, |s| s.handle_timeout(Instant::now(), &served, now_ms()))
            }
            _ = stop.changed() => return Ok(()),
        };
        if let Some(end) = act(shared, conn, Some(&mut csend), actions, &mut Vec::new()).await {
            return end;
        }
    }
}

/// Streams raw ring bytes as the cursor asks; returns only when the stream ends.
async fn send_log(shared: &Shared, conn: &quinn::Connection, id: u64, mut cursor: LogCursor) -> LogEnd {
    match stream_log(shared, conn, id, &mut cursor).await {
        Ok(end) => end,
        Err(e) => LogEnd::Failed(e),
    }
}

async fn stream_log(
    shared: &Shared,
    conn: &quinn::Connection,
    id: u64,
    cursor: &mut LogCursor,
) -> Result<LogEnd, ReplError> {
    let mut send = conn.open_uni().await?;
    write_frame(&mut send, &Message::Stream { kind: StreamKind::Log }).await?;
    loop {
        let step = match cursor.poll(&shared.served()) {
            LogStep::Read { from, max } => match shared.log.read_stream(from, max) {
                // Read, then check again: a reset that raced the read shows here.
                Ok(batch) => cursor.handle_batch(batch.start, batch.bytes, &shared.served()),
                Err(LogError::Lagged { oldest }) => return Ok(LogEnd::Lagged { oldest }),
                Err(e) => return Err(ringkv::Error::Log(e).into()),
            },
            step => step,
        };
        match step {
            LogStep::Send(frame) => {
                // Before the write: the follower may ack the bytes as soon
                // as they arrive, and acks beyond what was sent are refused.
                let (pos, (raw, wire)) = (cursor.pos(), cursor.bytes());
                shared.session(id, |s| s.handle_log_sent(pos, raw, wire));
                write_frame(&mut send, &frame).await?;
            }
            LogStep::WaitPublished { pos } => shared.wait_published(pos, Duration::from_millis(20)).await,
            // Applied moves after published: poll it (bounded extra lag).
            LogStep::PollApplied => tokio::time::sleep(Duration::from_millis(1)).await,
            LogStep::HistoryChanged => return Ok(LogEnd::HistoryChanged),
            LogStep::Incompatible { frame, reason } => {
                // In the stream, after every record before it: the
                // follower reads it before the connection closes.
                write_frame(&mut send, &frame).await?;
                finish_and_wait(&mut send).await;
                return Ok(LogEnd::Incompatible(reason));
            }
            LogStep::Read { .. } => {}
        }
    }
}

/// Bytes written by a snapshot, in chunks, to an async receiver.
/// What a full sync's snapshot producer hands the sender: bytes, then
/// `Done` only once the whole stream was written. A producer that fails
/// says so; one that stops without `Done` (a panic) is a failure too, so a
/// partial snapshot is never ended with `SnapshotEnd`.
#[derive(Debug)]
enum SnapshotPiece {
    Bytes(Vec<u8>),
    Done,
    Failed(String),
}

/// The next bytes of a snapshot stream; `None` at its end. A failed or
/// abandoned producer is an error.
async fn next_piece(rx: &mut mpsc::Receiver<SnapshotPiece>) -> Result<Option<Vec<u8>>, ReplError> {
    match rx.recv().await {
        Some(SnapshotPiece::Bytes(b)) => Ok(Some(b)),
        Some(SnapshotPiece::Done) => Ok(None),
        Some(SnapshotPiece::Failed(e)) => Err(ReplError::Connection(format!(
            "the snapshot for the follower failed: {e}"
        ))),
        None => Err(ReplError::Connection(
            "the snapshot for the follower stopped before it was complete".into(),
        )),
    }
}

struct ChannelWriter {
    tx: mpsc::Sender<SnapshotPiece>,
    buf: Vec<u8>,
    /// A chunk the follower does not take within the timeout aborts the
    /// snapshot (the engine holds no lock while this waits).
    stall: SnapshotStall,
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
            let mut piece = SnapshotPiece::Bytes(std::mem::take(&mut self.buf));
            loop {
                match self.tx.try_send(piece) {
                    Ok(()) => {
                        self.stall.handle_taken();
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "follower gone"))
                    }
                    Err(mpsc::error::TrySendError::Full(back)) => {
                        if self.stall.handle_blocked(Instant::now()) {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "the follower stopped reading the snapshot",
                            ));
                        }
                        piece = back;
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
) -> Result<(u64, String, mpsc::Receiver<SnapshotPiece>), ReplError> {
    let (tx, mut rx) = mpsc::channel::<SnapshotPiece>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx,
            buf: Vec::with_capacity(SNAPSHOT_CHUNK),
            stall: SnapshotStall::new(timeout),
        };
        // Another stream snapshot (another follower's sync, a backup) may be
        // running: wait for it rather than fail the follower (saves run
        // beside it). A follower that went away drops the receiver.
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
                    // `Done` only once every byte was handed over.
                    let end = match std::io::Write::flush(&mut out) {
                        Ok(()) => SnapshotPiece::Done,
                        Err(e) => SnapshotPiece::Failed(e.to_string()),
                    };
                    let _ = out.tx.blocking_send(end);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "snapshot for a follower failed");
                    let _ = out.tx.blocking_send(SnapshotPiece::Failed(e.to_string()));
                    return;
                }
            }
        }
    });
    // The header comes first: the header is flushed with the first chunk.
    let first = next_piece(&mut rx)
        .await?
        .ok_or_else(|| ReplError::Connection("the snapshot for the follower was empty".into()))?;
    let head: &[u8; ringkv::snapshot::format::HEADER_LEN] = first
        .get(..ringkv::snapshot::format::HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| ReplError::Connection("snapshot stream shorter than its header".into()))?;
    let header = SnapshotHeader::decode(head).map_err(ringkv::Error::Snapshot)?;
    // Hand the first chunk back in front of the rest.
    let (tx2, rx2) = mpsc::channel(4);
    tokio::spawn(async move {
        if tx2.send(SnapshotPiece::Bytes(first)).await.is_err() {
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
    mut chunks: mpsc::Receiver<SnapshotPiece>,
    codec: Codec,
    limits: Limits,
) -> Result<(), ReplError> {
    let mut send = conn.open_uni().await?;
    let mut sender = SnapshotSender::new(codec, &limits);
    write_frame(&mut send, &sender.start()).await?;
    // A failed producer returns an error here: no `SnapshotEnd` follows a
    // partial snapshot, and the follower is not marked online.
    while let Some(chunk) = next_piece(&mut chunks).await? {
        for frame in sender.chunk(&chunk) {
            write_frame(&mut send, &frame).await?;
        }
        let (raw, wire) = sender.bytes();
        shared.session(id, |s| s.handle_snapshot_progress(raw, wire));
    }
    let (raw, wire) = sender.bytes();
    let c = &shared.counters;
    c.snapshot_bytes.fetch_add(raw, Ordering::Relaxed);
    c.snapshot_wire.fetch_add(wire, Ordering::Relaxed);
    let end = sender.end();
    write_frame(&mut send, &end).await?;
    send.finish().map_err(|e| ReplError::Connection(e.to_string()))?;
    if let Message::SnapshotEnd { bytes } = end {
        tracing::info!(id, bytes, "snapshot sent to follower");
    }
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
        let now = Instant::now();
        shared
            .followers
            .lock()
            .values()
            .filter(|s| s.session.within(now, published, self.config.max_lag_bytes, max_age))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime")
    }

    /// F17: a snapshot stream ends only with the producer's `Done`; a
    /// failure, or a producer that went away without `Done` (a panic),
    /// is an error instead of a `SnapshotEnd` after a partial stream.
    #[test]
    fn a_snapshot_stream_ends_only_when_its_producer_says_done() {
        runtime().block_on(async {
            let (tx, mut rx) = mpsc::channel(4);
            tx.send(SnapshotPiece::Bytes(b"head".to_vec())).await.expect("send");
            tx.send(SnapshotPiece::Done).await.expect("send");
            assert_eq!(next_piece(&mut rx).await.expect("bytes"), Some(b"head".to_vec()));
            assert_eq!(next_piece(&mut rx).await.expect("done"), None);

            let (tx, mut rx) = mpsc::channel(4);
            tx.send(SnapshotPiece::Bytes(b"part".to_vec())).await.expect("send");
            tx.send(SnapshotPiece::Failed("disk error".into())).await.expect("send");
            assert!(next_piece(&mut rx).await.expect("bytes").is_some());
            let e = next_piece(&mut rx).await.expect_err("failed");
            assert!(e.to_string().contains("disk error"), "{e}");

            let (tx, mut rx) = mpsc::channel(4);
            tx.send(SnapshotPiece::Bytes(b"part".to_vec())).await.expect("send");
            drop(tx);
            assert!(next_piece(&mut rx).await.expect("bytes").is_some());
            let e = next_piece(&mut rx).await.expect_err("abandoned");
            assert!(e.to_string().contains("before it was complete"), "{e}");
        });
    }
}
