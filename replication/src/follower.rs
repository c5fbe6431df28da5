//! The follower: connects to a primary, continues from its applied offset
//! (or loads a full sync beside the data it serves), appends the received
//! bytes verbatim to its own ring and applies them, and acks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringkv::{Engine, Promotion, Role};
use tokio::sync::{oneshot, watch};

use crate::compress::Decompressor;
use crate::config::FollowerConfig;
use crate::io::{code, frame_reader, read_frame, write_frame};
use crate::protocol::{Codec, History, Message, StreamKind, PROTOCOL_VERSION};
use crate::stats::{LinkStatus, ReplicaInfo};
use crate::tls::TlsMaterial;
use crate::ReplError;

struct Shared {
    engine: Engine,
    config: FollowerConfig,
    info: parking_lot::Mutex<ReplicaInfo>,
    last_io: parking_lot::Mutex<Instant>,
    last_full_sync: parking_lot::Mutex<Option<Instant>>,
    /// Set after a sync loop: the next reconnect waits the longest backoff.
    slow_down: AtomicBool,
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

/// How a session ended without an error.
enum End {
    Stopped,
    Reconnect(String),
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
            info: parking_lot::Mutex::new(ReplicaInfo::new(config.primary.to_string())),
            engine,
            config,
            last_io: parking_lot::Mutex::new(Instant::now()),
            last_full_sync: parking_lot::Mutex::new(None),
            slow_down: AtomicBool::new(false),
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
        let mut info = self.shared.info.lock().clone();
        let engine = &self.shared.engine;
        info.slave_repl_offset = engine.applied_offset();
        info.durable_offset = engine.log().map_or(0, |l| l.synced().min(info.slave_repl_offset));
        info.stale = engine.is_stale();
        info.master_last_io_ms = self.shared.last_io.lock().elapsed().as_millis() as u64;
        info.lag_bytes = info.master_repl_offset.saturating_sub(info.slave_repl_offset);
        info
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

/// A small xorshift for jitter (no shared RNG needed).
fn jitter(seed: &mut u64, base: Duration) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    // 50% to 150% of the base.
    let frac = 0.5 + (*seed % 1000) as f64 / 1000.0;
    base.mul_f64(frac)
}

async fn run(shared: Arc<Shared>, endpoint: quinn::Endpoint, mut stop: watch::Receiver<bool>) {
    let min = Duration::from_millis(shared.config.min_backoff_ms.max(1));
    let max = Duration::from_millis(shared.config.max_backoff_ms.max(shared.config.min_backoff_ms));
    let mut backoff = min;
    let mut seed = crate::now_ms() | 1;
    loop {
        if *stop.borrow() {
            return;
        }
        let result = session(&shared, &endpoint, &mut stop).await;
        {
            let mut info = shared.info.lock();
            info.master_link_status = LinkStatus::Down;
        }
        let wait = match result {
            Ok(End::Stopped) => return,
            Ok(End::Reconnect(reason)) => {
                tracing::info!(%reason, "reconnecting to the primary");
                backoff = min;
                Duration::ZERO
            }
            Err(ReplError::Divergent(e)) => {
                tracing::error!(error = %e, "divergent stream: replication stopped");
                let mut info = shared.info.lock();
                info.last_error = Some(format!("divergent stream: {e}"));
                info.halted = true;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "replication link down");
                shared.info.lock().last_error = Some(e.to_string());
                let w = jitter(&mut seed, backoff);
                backoff = (backoff * 2).min(max);
                w
            }
        };
        let wait = if shared.slow_down.swap(false, Ordering::AcqRel) {
            wait.max(max)
        } else {
            wait
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

async fn session(
    shared: &Arc<Shared>,
    endpoint: &quinn::Endpoint,
    stop: &mut watch::Receiver<bool>,
) -> Result<End, ReplError> {
    let config = &shared.config;
    let engine = &shared.engine;
    let log = engine.log().ok_or_else(|| ReplError::Config("no ring log".into()))?;
    let max = config.max_frame_bytes;
    let conn = tokio::select! {
        c = endpoint.connect(config.primary, &config.server_name)? => c?,
        _ = stop.changed() => return Ok(End::Stopped),
    };
    shared.info.lock().connects += 1;
    let (mut csend, mut crecv) = conn.open_bi().await?;
    let offset = engine.applied_offset();
    // A follower interrupted in a full sync has no history to continue.
    let replid = if engine.is_stale() { String::new() } else { log.replid() };
    write_frame(
        &mut csend,
        &Message::Hello {
            version: PROTOCOL_VERSION,
            name: config.name.clone(),
            replid,
            offset,
            codecs: config.codecs.clone(),
            max_frame: config.max_frame_bytes.min(u32::MAX as usize) as u32,
        },
    )
    .await?;
    let reply = tokio::select! {
        r = read_frame(&mut crecv, max) => r?,
        _ = stop.changed() => return Ok(End::Stopped),
    };
    *shared.last_io.lock() = Instant::now();
    // Full sync state: the snapshot's offset and the keyspace it loads into.
    let mut full: Option<(u64, Engine)> = None;
    let codec;
    match reply {
        Some(Message::Continue {
            history,
            offset: from,
            codec: chosen,
        }) => {
            codec = chosen;
            if from != offset {
                return Err(ReplError::Peer(format!(
                    "continue at {from}, but this follower is at {offset}"
                )));
            }
            adopt_history(&engine, &log, &history)?;
            let mut info = shared.info.lock();
            info.partial_syncs += 1;
            info.master_link_status = LinkStatus::Up;
            info.last_error = None;
            tracing::info!(offset, "partial resync: continuing from our offset");
        }
        Some(Message::FullSync {
            history,
            offset: snap_offset,
            reason,
            lost_bytes,
            codec: chosen,
        }) => {
            codec = chosen;
            {
                let mut info = shared.info.lock();
                if lost_bytes > 0 {
                    info.lost_bytes += lost_bytes;
                    tracing::warn!(
                        lost_bytes,
                        "rejoining: this node's writes past the switch offset are lost"
                    );
                }
                let recent = shared
                    .last_full_sync
                    .lock()
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(config.sync_loop_window_ms));
                if recent {
                    info.sync_loops += 1;
                    let cause = format!("full sync needed again right after one: {reason}");
                    tracing::error!(%cause, "sync loop");
                    info.last_sync_loop_cause = Some(cause);
                    shared.slow_down.store(true, Ordering::Release);
                }
                info.last_full_sync_reason = Some(reason.clone());
                info.master_sync_in_progress = true;
                info.master_link_status = LinkStatus::Up;
                info.last_error = None;
            }
            tracing::info!(snap_offset, %reason, "full sync");
            let e = engine.clone();
            blocking(move || {
                e.replica_begin_full_sync(
                    snap_offset,
                    &history.replid,
                    &history.prev_replid,
                    history.switch_offset,
                )
            })?;
            let staging = engine.staging()?;
            full = Some((snap_offset, staging));
        }
        Some(Message::Reject { reason }) => return Err(ReplError::Peer(format!("primary refused: {reason}"))),
        Some(other) => return Err(ReplError::Peer(format!("unexpected reply {other:?}"))),
        None => return Err(ReplError::Peer("the primary closed the control stream".into())),
    }
    // The data streams.
    let streams = if full.is_some() { 2 } else { 1 };
    let mut log_stream = None;
    let mut loader: Option<oneshot::Receiver<Result<(), ReplError>>> = None;
    for _ in 0..streams {
        let mut recv = tokio::time::timeout(Duration::from_millis(config.idle_timeout_ms), conn.accept_uni())
            .await
            .map_err(|_| ReplError::Timeout("no data stream from the primary".into()))??;
        match read_frame(&mut recv, max).await? {
            Some(Message::Stream { kind: StreamKind::Log }) => log_stream = Some(recv),
            Some(Message::Stream {
                kind: StreamKind::Snapshot,
            }) => {
                let Some((_, staging)) = &full else {
                    return Err(ReplError::Peer("a snapshot stream without a full sync".into()));
                };
                loader = Some(spawn_loader(shared.clone(), recv, staging.clone(), codec));
            }
            other => {
                return Err(ReplError::Peer(format!(
                    "a data stream must start with Stream, got {other:?}"
                )))
            }
        }
    }
    let log_stream = log_stream.ok_or_else(|| ReplError::Peer("no log stream".into()))?;
    let mut log_frames = frame_reader(log_stream, max);
    let mut control = frame_reader(crecv, max);
    let mut ack_tick = tokio::time::interval(Duration::from_millis(config.ack_interval_ms.max(10)));
    let mut last_ack = (u64::MAX, u64::MAX);
    let mut log_decoder = Decompressor::new(codec);
    if full.is_none() {
        send_ack(engine, &mut csend, &mut last_ack, true).await?;
    }
    loop {
        tokio::select! {
            frame = log_frames.recv() => {
                let frame = frame.transpose()?;
                *shared.last_io.lock() = Instant::now();
                match frame {
                    Some(Message::Log { start, codec, raw_len, data }) => {
                        let raw = log_decoder.decompress(codec, &data, raw_len as usize, max)?;
                        {
                            let mut info = shared.info.lock();
                            info.bytes_raw += raw.len() as u64;
                            info.bytes_wire += data.len() as u64;
                        }
                        let live = full.is_none();
                        let e = engine.clone();
                        blocking(move || -> Result<(), ReplError> {
                            e.replica_append(start, &raw).map_err(stream_error)?;
                            if live {
                                // Applied straight from the received bytes (checked by the append).
                                e.replica_replay_stream(start, &raw).map_err(stream_error)?;
                            }
                            Ok(())
                        })?;
                        if live {
                            send_ack(engine, &mut csend, &mut last_ack, false).await?;
                        }
                    }
                    Some(other) => return Err(ReplError::Peer(format!("unexpected {other:?} on the log stream"))),
                    None => return Ok(End::Reconnect("the primary ended the log stream".into())),
                }
            }
            done = async { loader.as_mut().expect("guarded").await }, if loader.is_some() => {
                loader = None;
                done.map_err(|_| ReplError::Peer("snapshot loader stopped".into()))??;
                let Some((snap_offset, staging)) = full.take() else { continue };
                let e = engine.clone();
                let applied = blocking(move || e.swap_in(&staging, snap_offset))?;
                *shared.last_full_sync.lock() = Some(Instant::now());
                {
                    let mut info = shared.info.lock();
                    info.full_syncs += 1;
                    info.master_sync_in_progress = false;
                }
                tracing::info!(applied, "full sync complete: new data swapped in");
                send_ack(engine, &mut csend, &mut last_ack, true).await?;
            }
            frame = control.recv() => {
                *shared.last_io.lock() = Instant::now();
                match frame.transpose()? {
                    Some(Message::Ping { published, .. }) => {
                        shared.info.lock().master_repl_offset = published;
                    }
                    Some(Message::Resync { reason }) => return Ok(End::Reconnect(reason)),
                    Some(other) => return Err(ReplError::Peer(format!("unexpected {other:?} on the control stream"))),
                    None => return Ok(End::Reconnect("the primary closed the control stream".into())),
                }
            }
            _ = ack_tick.tick() => {
                // Also while idle: the primary's write gate counts recent acks.
                if full.is_none() {
                    send_ack(engine, &mut csend, &mut last_ack, true).await?;
                }
            }
            _ = stop.changed() => {
                conn.close(code::SHUTDOWN.into(), b"follower stopping");
                return Ok(End::Stopped);
            }
        }
    }
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

fn adopt_history(engine: &Engine, log: &ringkv::LogView, history: &History) -> Result<(), ReplError> {
    let h = log.header();
    if h.replid != history.replid || h.prev_replid != history.prev_replid || h.switch_offset != history.switch_offset {
        engine.replica_adopt_history(&history.replid, &history.prev_replid, history.switch_offset)?;
    }
    Ok(())
}

/// Acks the applied and durable offsets: when they changed, or always
/// with `force` (the periodic ack that keeps the link counted as fresh).
async fn send_ack(
    engine: &Engine,
    csend: &mut quinn::SendStream,
    last: &mut (u64, u64),
    force: bool,
) -> Result<(), ReplError> {
    let applied = engine.applied_offset();
    let durable = engine.log().map_or(0, |l| l.synced().min(applied));
    if force || (applied, durable) != *last {
        write_frame(csend, &Message::Ack { applied, durable }).await?;
        *last = (applied, durable);
    }
    Ok(())
}

/// Reads snapshot frames and feeds them to a blocking loader into `staging`.
fn spawn_loader(
    shared: Arc<Shared>,
    mut recv: quinn::RecvStream,
    staging: Engine,
    codec: Codec,
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
            let mut total = 0u64;
            let mut decoder = Decompressor::new(codec);
            loop {
                match read_frame(&mut recv, max).await? {
                    Some(Message::Snapshot { codec, raw_len, data }) => {
                        let raw = decoder.decompress(codec, &data, raw_len as usize, max)?;
                        total += raw.len() as u64;
                        shared.info.lock().bytes_wire += data.len() as u64;
                        *shared.last_io.lock() = Instant::now();
                        let tx = tx.clone();
                        // The loader applies as fast as it can; a full channel waits here.
                        tokio::task::spawn_blocking(move || tx.send(raw))
                            .await
                            .map_err(|_| ReplError::Peer("snapshot loader gone".into()))?
                            .map_err(|_| ReplError::Peer("snapshot loader stopped".into()))?;
                    }
                    Some(Message::SnapshotEnd { bytes }) if bytes == total => return Ok::<(), ReplError>(()),
                    Some(Message::SnapshotEnd { bytes }) => {
                        return Err(ReplError::Peer(format!(
                            "snapshot ended at {total} bytes, announced {bytes}"
                        )))
                    }
                    other => return Err(ReplError::Peer(format!("unexpected {other:?} on the snapshot stream"))),
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
