//! The follower's driver: connects to a primary, continues from its
//! applied offset (or loads a full sync beside the data it serves), appends
//! the received bytes verbatim to its own ring and applies them, and acks.
//!
//! What to send, when, and what a frame means is the
//! [`FollowerSession`]'s (sans-IO, in `session/follower.rs`); this driver
//! owns the QUIC connection, the tokio timers and tasks, and the engine
//! calls the session asks for (on blocking sections), and reports their
//! results back to the session.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringkv::{Engine, Promotion, Role};
use tokio::sync::{oneshot, watch};

use crate::config::FollowerConfig;
use crate::io::{code, frame_reader, read_frame, write_frame};
use crate::protocol::{History, MAX_CONTROL_FRAME, MIN_DATA_FRAME};
use crate::session::{
    DataStream, FollowerAction, FollowerSession, LinkEnd, Progress, ReplicaState, SnapshotIntake, SnapshotStep,
};
use crate::stats::ReplicaInfo;
use crate::tls::TlsMaterial;
use crate::ReplError;

struct Shared {
    engine: Engine,
    config: FollowerConfig,
    /// Locked for each event, never across an await.
    session: parking_lot::Mutex<FollowerSession>,
}

/// A follower replicating a primary into `engine` (async API; see
/// [`crate::blocking::Follower`] for a handle that owns its runtime).
pub struct Follower {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    endpoint: quinn::Endpoint,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("primary", &self.shared.config.primary)
            .finish()
    }
}

impl Follower {
    /// Makes `engine` a follower (it needs a ring log; writes then fail
    /// with `READONLY`) and starts replicating from `config.primary`,
    /// reconnecting with backoff and jitter until stopped. Must be called
    /// within a tokio runtime.
    pub async fn start(engine: Engine, config: FollowerConfig, tls: TlsMaterial) -> Result<Follower, ReplError> {
        if engine.log().is_none() {
            return Err(ReplError::Config("a follower's engine needs a ring log".into()));
        }
        if config.max_frame_bytes < MIN_DATA_FRAME {
            return Err(ReplError::Config(format!(
                "max_frame_bytes must be at least {MIN_DATA_FRAME}, not {}",
                config.max_frame_bytes
            )));
        }
        if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
            return Err(ReplError::Config(
                "a follower needs a multi-thread tokio runtime (it applies on blocking sections)".into(),
            ));
        }
        engine.set_role(Role::Follower)?;
        let client =
            crate::tls::client_config(&tls, config.window_bytes, Duration::from_millis(config.idle_timeout_ms))?;
        let bind: std::net::SocketAddr = if config.primary.is_ipv6() {
            "[::]:0"
                .parse()
                .map_err(|_| ReplError::Config("bad bind address".into()))?
        } else {
            std::net::SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(client);
        let shared = Arc::new(Shared {
            session: parking_lot::Mutex::new(FollowerSession::new(config.clone(), Instant::now(), crate::now_ms())),
            engine,
            config,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(shared.clone(), endpoint.clone(), stop_rx));
        Ok(Follower {
            shared,
            stop,
            task: Some(task),
            endpoint,
        })
    }

    /// The engine replicated into.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Replication stats (Redis INFO names where one exists).
    pub fn info(&self) -> ReplicaInfo {
        let mut info = self.shared.session.lock().info(Instant::now());
        let engine = &self.shared.engine;
        let p = progress(engine);
        info.slave_repl_offset = p.applied;
        info.durable_offset = p.durable;
        info.stale = engine.is_stale();
        info.lag_bytes = info.master_repl_offset.saturating_sub(info.slave_repl_offset);
        info
    }

    /// Until when the primary may count this follower for WAIT and its
    /// write gate (`None`: always, the default): past it no acks are sent
    /// while the stream is still applied (see
    /// [`FollowerSession::set_counted_until`]). Failover moves it forward on
    /// each renewal of the node's registration in etcd.
    pub fn set_counted_until(&self, until: Option<Instant>) {
        self.shared.session.lock().set_counted_until(until);
    }

    /// Whether the primary may count this follower now.
    pub fn counted(&self) -> bool {
        self.shared.session.lock().counted(Instant::now())
    }

    /// Stops replicating (the engine stays a follower, read-only).
    pub async fn stop(mut self) {
        self.halt().await;
    }

    async fn halt(&mut self) {
        let _ = self.stop.send(true);
        self.endpoint.close(code::SHUTDOWN.into(), b"follower stopping");
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "the replication task failed");
            }
        }
    }

    /// Stops replicating and makes the engine a primary with a new
    /// replication id (keeping the previous one and the switch offset, so
    /// the old primary's other followers can continue from this one).
    pub async fn promote(mut self) -> Result<Promotion, ReplError> {
        self.halt().await;
        let engine = self.shared.engine.clone();
        Ok(tokio::task::spawn_blocking(move || engine.promote())
            .await
            .map_err(|e| ReplError::Config(format!("promotion task failed: {e}")))??)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.endpoint.close(code::SHUTDOWN.into(), b"follower dropped");
    }
}

async fn run(shared: Arc<Shared>, endpoint: quinn::Endpoint, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let end = link(&shared, &endpoint, &mut stop).await;
        let Some(wait) = shared.session.lock().handle_link_end(Instant::now(), end) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

// The engine adapter: the follower's only reads of the engine's ring.

/// The engine's offsets for the session: durable is what survives a
/// crash of this machine (synced by the engine as its durability says, or
/// in a durable snapshot), never more than applied.
fn progress(engine: &Engine) -> Progress {
    Progress {
        applied: engine.applied_offset(),
        durable: engine.durable_offset(),
    }
}

/// The engine's state when a link starts.
fn replica_state(engine: &Engine) -> ReplicaState {
    let log = engine.log();
    ReplicaState {
        applied: engine.applied_offset(),
        replid: log.as_ref().map_or_else(String::new, |l| l.replid()),
        stale: engine.is_stale(),
        max_record: log.as_ref().map_or(0, |l| l.max_payload()),
        capacity: log.as_ref().map_or(0, |l| l.capacity()),
    }
}

fn adopt_history(engine: &Engine, history: &History) -> Result<(), ReplError> {
    let log = engine.log().ok_or_else(|| ReplError::Config("no ring log".into()))?;
    let h = log.header();
    if h.replid != history.replid || h.prev_replid != history.prev_replid || h.switch_offset != history.switch_offset {
        engine.replica_adopt_history(&history.replid, &history.prev_replid, history.switch_offset)?;
    }
    Ok(())
}

/// Divergence is its own error: it stops replication instead of retrying.
fn stream_error(e: ringkv::Error) -> ReplError {
    match e {
        ringkv::Error::Log(ringkv::log::LogError::Divergent { offset }) => {
            ReplError::Divergent(format!("the primary's bytes differ from ours at offset {offset}"))
        }
        other => ReplError::Engine(other),
    }
}

/// One link to the primary, until it ends.
async fn link(shared: &Arc<Shared>, endpoint: &quinn::Endpoint, stop: &mut watch::Receiver<bool>) -> LinkEnd {
    match drive(shared, endpoint, stop).await {
        Ok(end) | Err(end) => end,
    }
}

/// Carries out the session's actions (and the ones that follow from their
/// results) in order.
async fn perform(
    shared: &Shared,
    csend: &mut quinn::SendStream,
    staging: &mut Option<Engine>,
    actions: Vec<FollowerAction>,
) -> Result<(), LinkEnd> {
    let engine = &shared.engine;
    let mut queue = VecDeque::from(actions);
    while let Some(action) = queue.pop_front() {
        match action {
            FollowerAction::Send(msg) => write_frame(csend, &msg).await?,
            FollowerAction::AdoptHistory(history) => adopt_history(engine, &history)?,
            FollowerAction::BeginFullSync { offset, history } => {
                let e = engine.clone();
                blocking(move || {
                    e.replica_begin_full_sync(offset, &history.replid, &history.prev_replid, history.switch_offset)
                })
                .map_err(ReplError::from)?;
                *staging = Some(engine.staging().map_err(ReplError::from)?);
            }
            FollowerAction::Append { start, bytes, apply } => {
                match blocking(|| engine.replica_append(start, &bytes)) {
                    Ok(_) => {}
                    Err(e) if e.is_log_full() => {
                        // During a full sync the session holds the bytes
                        // and pauses the log stream until the swap.
                        let actions = shared
                            .session
                            .lock()
                            .handle_ring_full(Instant::now(), start, bytes, e.into())?;
                        queue.extend(actions);
                        continue;
                    }
                    Err(e) => return Err(stream_error(e).into()),
                }
                if apply {
                    // Applied straight from the received bytes (checked by the append).
                    blocking(|| engine.replica_replay_stream(start, &bytes)).map_err(stream_error)?;
                }
                let p = progress(engine);
                queue.extend(shared.session.lock().handle_appended(Instant::now(), p));
            }
            FollowerAction::SwapIn { offset } => {
                let loaded = staging
                    .take()
                    .ok_or_else(|| ReplError::Peer("no full sync to swap in".into()))?;
                let e = engine.clone();
                blocking(move || e.swap_in(&loaded, offset)).map_err(ReplError::from)?;
                let p = progress(engine);
                queue.extend(shared.session.lock().handle_swapped_in(Instant::now(), p));
            }
        }
    }
    Ok(())
}

async fn drive(
    shared: &Arc<Shared>,
    endpoint: &quinn::Endpoint,
    stop: &mut watch::Receiver<bool>,
) -> Result<LinkEnd, LinkEnd> {
    let config = &shared.config;
    let engine = &shared.engine;
    let max = config.max_frame_bytes;
    let conn = tokio::select! {
        c = endpoint.connect(config.primary, &config.server_name).map_err(ReplError::from)? => c.map_err(ReplError::from)?,
        _ = stop.changed() => return Ok(LinkEnd::Stopped),
    };
    let hello = shared
        .session
        .lock()
        .handle_connected(Instant::now(), &replica_state(engine));
    let (mut csend, mut crecv) = conn.open_bi().await.map_err(ReplError::from)?;
    write_frame(&mut csend, &hello).await?;
    let reply = tokio::select! {
        r = read_frame(&mut crecv, MAX_CONTROL_FRAME) => r?,
        _ = stop.changed() => return Ok(LinkEnd::Stopped),
    };
    // The staging keyspace a full sync loads into.
    let mut staging: Option<Engine> = None;
    let actions = shared.session.lock().handle_reply(Instant::now(), reply)?;
    perform(shared, &mut csend, &mut staging, actions).await?;
    // The data streams.
    let streams = shared.session.lock().expected_streams();
    let mut log_stream = None;
    let mut loader: Option<oneshot::Receiver<Result<(), ReplError>>> = None;
    for _ in 0..streams {
        let mut recv = tokio::time::timeout(Duration::from_millis(config.idle_timeout_ms), conn.accept_uni())
            .await
            .map_err(|_| ReplError::Timeout("no data stream from the primary".into()))?
            .map_err(ReplError::from)?;
        let first = read_frame(&mut recv, max).await?;
        match shared.session.lock().handle_stream(first)? {
            DataStream::Log => log_stream = Some(recv),
            DataStream::Snapshot(intake) => {
                let into = staging
                    .clone()
                    .ok_or_else(|| ReplError::Peer("a snapshot stream without a full sync".into()))?;
                loader = Some(spawn_loader(shared.clone(), recv, into, intake));
            }
        }
    }
    let actions = shared
        .session
        .lock()
        .handle_streams_ready(Instant::now(), progress(engine))?;
    let log_stream = log_stream.ok_or_else(|| ReplError::Peer("no log stream".into()))?;
    let mut log_frames = frame_reader(log_stream, max);
    let mut control = frame_reader(crecv, MAX_CONTROL_FRAME);
    perform(shared, &mut csend, &mut staging, actions).await?;
    loop {
        let (deadline, paused) = {
            let session = shared.session.lock();
            (session.poll_timeout(), session.log_paused())
        };
        let timer = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = log_frames.recv(), if !paused => {
                let frame = frame.transpose()?;
                let actions = shared.session.lock().handle_log_frame(Instant::now(), frame)?;
                perform(shared, &mut csend, &mut staging, actions).await?;
            }
            done = async { loader.as_mut().expect("guarded").await }, if loader.is_some() => {
                loader = None;
                done.map_err(|_| ReplError::Peer("snapshot loader stopped".into()))??;
                let actions = shared.session.lock().handle_snapshot_loaded(Instant::now());
                perform(shared, &mut csend, &mut staging, actions).await?;
            }
            frame = control.recv() => {
                let frame = frame.transpose()?;
                shared.session.lock().handle_control_frame(Instant::now(), frame)?;
            }
            _ = timer => {
                // Also while idle: the primary's write gate counts recent acks.
                let actions = shared.session.lock().handle_timeout(Instant::now(), progress(engine));
                perform(shared, &mut csend, &mut staging, actions).await?;
            }
            _ = stop.changed() => {
                conn.close(code::SHUTDOWN.into(), b"follower stopping");
                return Ok(LinkEnd::Stopped);
            }
        }
    }
}

/// Reads snapshot frames and feeds them to a blocking loader into `staging`.
fn spawn_loader(
    shared: Arc<Shared>,
    mut recv: quinn::RecvStream,
    staging: Engine,
    mut intake: SnapshotIntake,
) -> oneshot::Receiver<Result<(), ReplError>> {
    let (done_tx, done_rx) = oneshot::channel();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let load = tokio::task::spawn_blocking(move || {
        staging
            .load_snapshot(ChannelReader {
                rx,
                buf: Vec::new(),
                pos: 0,
            })
            .map(|_| ())
    });
    let max = shared.config.max_frame_bytes;
    tokio::spawn(async move {
        let feed = async {
            loop {
                match intake.handle_frame(read_frame(&mut recv, max).await?)? {
                    SnapshotStep::Feed { raw, wire } => {
                        shared.session.lock().handle_snapshot_io(Instant::now(), wire);
                        let tx = tx.clone();
                        // The loader applies as fast as it can; a full channel waits here.
                        tokio::task::spawn_blocking(move || tx.send(raw))
                            .await
                            .map_err(|_| ReplError::Peer("snapshot loader gone".into()))?
                            .map_err(|_| ReplError::Peer("snapshot loader stopped".into()))?;
                    }
                    SnapshotStep::Done => return Ok::<(), ReplError>(()),
                }
            }
        };
        let fed = feed.await;
        drop(tx);
        let loaded = load
            .await
            .map_err(|e| ReplError::Peer(format!("snapshot loader panicked: {e}")))
            .and_then(|r| r.map_err(ReplError::from));
        let _ = done_tx.send(fed.and(loaded));
    });
    done_rx
}

/// A `Read` over chunks received from a channel (the snapshot loader's input).
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
