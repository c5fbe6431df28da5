//! [`Engine`]: the public API over the sharded keyspace.
//!
//! Every write follows the same path: lock the shards of its keys (in index
//! order), remove lazily-expired keys with their own logged deletion, *plan*
//! the change by reading the current state (type checks, limits, relative
//! times made absolute, counters computed), hand the resulting [`Mutation`] to
//! the sink, then apply it with the same code that replays mutations
//! ([`Engine::apply`]). Live state and replayed state therefore cannot differ.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam::utils::CachePadded;
use parking_lot::RwLock;

use crate::blob::Blob;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, EvictionPolicy};
use crate::error::{Error, Result};
use crate::expire::Background;
use crate::keyspace::apply::{Applier, Undo};
use crate::keyspace::{Hashing, KeyEntry, Locked, Shard, Value};
use crate::mutation::{DeleteReason, Mutation, MutationSink, NullSink};
use crate::stats::{Op, Stats};

/// The type of value a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyType {
    /// A string (bytes, also used for integers).
    String,
    /// A hash of fields to values.
    Hash,
}

impl KeyType {
    /// The name Redis' TYPE answers.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Hash => "hash",
        }
    }
}

/// Time to live of a key, as TTL/PTTL report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist (Redis: -2).
    Missing,
    /// The key exists without an expiry (Redis: -1).
    Persistent,
    /// The key expires in this many milliseconds.
    ExpiresIn(u64),
}

impl Ttl {
    /// The integer Redis' PTTL returns.
    pub fn as_redis_millis(self) -> i64 {
        match self {
            Ttl::Missing => -2,
            Ttl::Persistent => -1,
            Ttl::ExpiresIn(ms) => i64::try_from(ms).unwrap_or(i64::MAX),
        }
    }

    /// The integer Redis' TTL returns (seconds, rounded like Redis).
    pub fn as_redis_seconds(self) -> i64 {
        match self {
            Ttl::ExpiresIn(ms) => i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX),
            other => other.as_redis_millis(),
        }
    }
}

/// When SET applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetCondition {
    /// Always.
    #[default]
    Always,
    /// Only if the key does not exist (NX).
    IfMissing,
    /// Only if the key exists (XX).
    IfExists,
}

/// The expiry SET gives the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetExpiry {
    /// No expiry (a previous one is removed).
    #[default]
    None,
    /// Keep the key's current expiry (KEEPTTL).
    Keep,
    /// Expire after this many seconds (EX).
    Seconds(u64),
    /// Expire after this many milliseconds (PX).
    Millis(u64),
    /// Expire at this unix time in seconds (EXAT).
    AtSeconds(u64),
    /// Expire at this unix time in milliseconds (PXAT).
    AtMillis(u64),
}

/// Options of [`Engine::set_with`] (Redis' SET flags).
///
/// ```
/// use ringkv::SetOptions;
/// let opts = SetOptions::new().nx().px(1500).get();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// NX / XX.
    pub condition: SetCondition,
    /// EX / PX / EXAT / PXAT / KEEPTTL.
    pub expiry: SetExpiry,
    /// GET: return the previous value.
    pub get: bool,
}

impl SetOptions {
    /// Plain SET.
    pub fn new() -> SetOptions {
        SetOptions::default()
    }
    /// NX.
    pub fn nx(mut self) -> Self {
        self.condition = SetCondition::IfMissing;
        self
    }
    /// XX.
    pub fn xx(mut self) -> Self {
        self.condition = SetCondition::IfExists;
        self
    }
    /// EX seconds.
    pub fn ex(mut self, seconds: u64) -> Self {
        self.expiry = SetExpiry::Seconds(seconds);
        self
    }
    /// PX milliseconds.
    pub fn px(mut self, millis: u64) -> Self {
        self.expiry = SetExpiry::Millis(millis);
        self
    }
    /// EXAT unix seconds.
    pub fn exat(mut self, unix_seconds: u64) -> Self {
        self.expiry = SetExpiry::AtSeconds(unix_seconds);
        self
    }
    /// PXAT unix milliseconds.
    pub fn pxat(mut self, unix_millis: u64) -> Self {
        self.expiry = SetExpiry::AtMillis(unix_millis);
        self
    }
    /// KEEPTTL.
    pub fn keepttl(mut self) -> Self {
        self.expiry = SetExpiry::Keep;
        self
    }
    /// GET.
    pub fn get(mut self) -> Self {
        self.get = true;
        self
    }
}

/// What [`Engine::set_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// False when NX/XX prevented the write.
    pub applied: bool,
    /// The previous string value, when `get` was asked for.
    pub previous: Option<Blob>,
}

/// Builds an [`Engine`] with a custom clock or mutation sink.
///
/// ```
/// use ringkv::{Config, Engine, ManualClock, MemorySink};
/// let clock = ManualClock::new(1_700_000_000_000);
/// let engine = Engine::builder()
///     .config(Config { shards: 4, ..Config::default() })
///     .clock(clock.clone())
///     .sink(MemorySink::new())
///     .build()?;
/// # Ok::<(), ringkv::Error>(())
/// ```
#[must_use]
pub struct EngineBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    sink: Option<Arc<dyn MutationSink>>,
    data_dir: Option<std::path::PathBuf>,
    anonymous_log: bool,
}

impl EngineBuilder {
    /// Uses this configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    /// Uses this clock (tests use [`ManualClock`](crate::ManualClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Hands every mutation to this sink (instead of a ring log).
    pub fn sink(mut self, sink: impl MutationSink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Persists to this directory: the ring log `ring.log` (created on first
    /// use) is the write-ahead log, replayed on open; a `LOCK` file keeps a
    /// second process out.
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Keeps a ring log in anonymous memory, without persistence (a stream
    /// for followers; old laps are overwritten).
    pub fn anonymous_log(mut self) -> Self {
        self.anonymous_log = true;
        self
    }
    /// Validates the configuration and starts the engine (and its background
    /// thread, if `active_expire` is on).
    pub fn build(self) -> Result<Engine> {
        let shards = self.config.validate()?;
        let (log, lock) = match (&self.data_dir, self.anonymous_log, &self.sink) {
            (Some(_), _, Some(_)) | (_, true, Some(_)) => {
                return Err(Error::Config(
                    "a ring log is the engine's sink: do not set another one".into(),
                ))
            }
            (Some(dir), _, None) => {
                let (ring, lock) = crate::recovery::open_dir(dir, &self.config.log)?;
                (Some(ring), Some(lock))
            }
            (None, true, None) => (
                Some(Arc::new(crate::log::RingLog::anonymous_with(
                    self.config.log.clone(),
                    crate::log::Retention::Overwrite,
                )?)),
                None,
            ),
            (None, false, _) => (None, None),
        };
        let sink: Arc<dyn MutationSink> = match (&log, self.sink) {
            (Some(ring), _) => ring.clone(),
            (None, Some(sink)) => sink,
            (None, None) => Arc::new(NullSink),
        };
        let seed = self.config.hash_seed.unwrap_or_else(random_seed);
        let rng = self.config.rng_seed.unwrap_or_else(random_seed) | 1;
        // Each shard may be off by this much in the engine-wide total, so the
        // total stays within ~1% of maxmemory (and within 64 KiB per shard).
        let memory_slack = if self.config.maxmemory == 0 {
            64 * 1024
        } else {
            (self.config.maxmemory as usize / (shards * 100)).clamp(64, 64 * 1024)
        };
        let inner = Arc::new(Inner {
            shards: (0..shards)
                .map(|_| CachePadded::new(RwLock::new(Shard::new())))
                .collect(),
            hashing: Hashing::new(seed, shards),
            clock: self.clock,
            sink,
            log,
            _lock: lock,
            recovered: Default::default(),
            memory: AtomicI64::new(0),
            memory_slack,
            rng: AtomicU64::new(rng),
            ops: crate::stats::OpCounters::new(),
            eviction_pool: parking_lot::Mutex::new(Vec::new()),
            data_dir: self.data_dir.clone(),
            generation: std::sync::atomic::AtomicU32::new(0),
            snapshot_running: std::sync::atomic::AtomicBool::new(false),
            newest_snapshot: AtomicU64::new(0),
            bgsave_thread: parking_lot::Mutex::new(None),
            save_lock: parking_lot::Mutex::new(()),
            last_save: parking_lot::Mutex::new((0, 0)),
            snapshot_stats: Default::default(),
            self_ref: std::sync::OnceLock::new(),
            background: parking_lot::Mutex::new(None),
            replica: crate::replica::ReplicaState::new(),
            config: self.config,
        });
        let _ = inner.self_ref.set(Arc::downgrade(&inner));
        *inner.last_save.lock() = (inner.clock.now_ms(), 0);
        let engine = Engine { inner };
        if let Some(ring) = &engine.inner.log {
            if let Some(dir) = &engine.inner.data_dir {
                crate::recovery::restore(&engine, ring, dir)?;
                if ring.durability() == crate::log::Durability::Everysec {
                    crate::log::start_everysec(ring).map_err(|e| Error::Io {
                        context: "starting the log sync thread".into(),
                        source: e,
                    })?;
                }
            }
        }
        if engine.inner.config.active_expire {
            let bg = Background::start(&engine.inner)?;
            *engine.inner.background.lock() = Some(bg);
        }
        tracing::debug!(shards, "ringkv engine started");
        Ok(engine)
    }
}

fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}

/// An in-process, Redis-like key-value engine: sharded, thread-safe, cheap to
/// clone (clones share the same keyspace).
///
/// Reads take one shard's read lock and never block other readers; writes
/// take the write locks of the shards they touch, in index order. Every call
/// does bounded work except those documented as O(n).
///
/// ```
/// use ringkv::{Engine, Config, SetOptions};
/// let engine = Engine::new(Config::default())?;
/// engine.set("greeting", "hello")?;
/// assert_eq!(engine.get("greeting")?.unwrap(), "hello");
/// assert_eq!(engine.incr_by("hits", 5)?, 5);
/// engine.hset("telemetry:1", [("cpu", "0.93"), ("mem", "512")])?;
/// let drained = engine.hdrain("telemetry:1", 10)?;
/// assert_eq!(drained.len(), 2);
/// assert!(!engine.set_with("greeting", "again", SetOptions::new().nx())?.applied);
/// # Ok::<(), ringkv::Error>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) shards: Box<[CachePadded<RwLock<Shard>>]>,
    pub(crate) hashing: Hashing,
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    sink: Arc<dyn MutationSink>,
    /// The ring log, when the engine has one (it is then also `sink`).
    pub(crate) log: Option<Arc<crate::log::RingLog>>,
    /// Held for the engine's life: the data directory's lock.
    _lock: Option<std::fs::File>,
    /// What opening the data directory replayed.
    pub(crate) recovered: parking_lot::Mutex<crate::stats::RecoveryStats>,
    /// Approximate engine-wide accounted memory (each shard reports changes
    /// larger than `memory_slack`).
    memory: AtomicI64,
    memory_slack: usize,
    rng: AtomicU64,
    /// Calls per operation.
    pub(crate) ops: crate::stats::OpCounters,
    /// The data directory, when the engine persists.
    pub(crate) data_dir: Option<std::path::PathBuf>,
    /// Last snapshot generation started.
    pub(crate) generation: std::sync::atomic::AtomicU32,
    pub(crate) snapshot_running: std::sync::atomic::AtomicBool,
    /// Time (unix ms) and mutation count of the last snapshot's cut.
    pub(crate) last_save: parking_lot::Mutex<(u64, u64)>,
    /// Held for the whole of `Engine::save`.
    pub(crate) save_lock: parking_lot::Mutex<()>,
    /// The running or last background save.
    pub(crate) bgsave_thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Log offset of the newest durable snapshot (0: none).
    pub(crate) newest_snapshot: AtomicU64,
    pub(crate) snapshot_stats: parking_lot::Mutex<crate::snapshot::SnapshotStats>,
    /// The engine itself, for starting a background save from a write.
    self_ref: std::sync::OnceLock<std::sync::Weak<Inner>>,
    /// Eviction candidates: (LRU clock when sampled, key).
    pub(crate) eviction_pool: parking_lot::Mutex<Vec<(u32, Bytes)>>,
    /// Dropped with the engine, which stops the background thread.
    background: parking_lot::Mutex<Option<Background>>,
    /// Role, applied offset and write gate (see `replica.rs`).
    pub(crate) replica: crate::replica::ReplicaState,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

/// How a [`Writer`] hands over mutations.
enum Mode {
    /// Each mutation goes to the sink, then is applied.
    Direct,
    /// Mutations are applied at once (with undo records) and sent to the sink
    /// together, as one `Batch`, when the batch completes.
    Batch { mutations: Vec<Mutation>, undo: Vec<Undo> },
}

/// The shards a write holds, and how its mutations are committed.
pub(crate) struct Writer<'e> {
    pub(crate) inner: &'e Inner,
    pub(crate) locked: Locked<'e>,
    mode: Mode,
    now: Option<u64>,
    /// Offset after the last record this write appended (for group commit).
    last_end: Option<u64>,
}

impl<'e> Writer<'e> {
    pub(crate) fn now(&mut self) -> u64 {
        *self.now.get_or_insert_with(|| self.inner.clock.now_ms())
    }

    pub(crate) fn shard(&mut self, hash: u64) -> &mut Shard {
        let s = self.inner.hashing.shard_of(hash);
        self.locked.shard(s)
    }

    /// Commits one mutation: sink then apply (direct), or apply and keep it
    /// for the batch. Returns the count [`Applier::apply`] reports.
    pub(crate) fn commit(&mut self, m: Mutation) -> Result<usize> {
        let lru = self.inner.lru_now();
        let mut applier = Applier {
            locked: &mut self.locked,
            hashing: &self.inner.hashing,
            lru,
        };
        match &mut self.mode {
            Mode::Direct => {
                if let Some(end) = self.inner.sink.record(&m).map_err(Error::from_sink)? {
                    self.last_end = Some(end);
                }
                let r = applier.apply(&m, None);
                debug_assert!(r.is_ok(), "a planned mutation failed to apply: {r:?}");
                r
            }
            Mode::Batch { mutations, undo } => {
                let n = applier.apply(&m, Some(undo))?;
                mutations.push(m);
                Ok(n)
            }
        }
    }

    /// The entry of `key` if it exists and has not expired; an expired one is
    /// deleted first (a logged `Delete { reason: Expired }`).
    pub(crate) fn live(&mut self, key: &[u8], hash: u64) -> Result<Option<usize>> {
        let Some(idx) = self.shard(hash).find(hash, key) else {
            return Ok(None);
        };
        if self.shard(hash).entry(idx).expire_at == 0 {
            return Ok(Some(idx));
        }
        let now = self.now();
        if !self.shard(hash).entry(idx).is_expired(now) {
            return Ok(Some(idx));
        }
        self.commit(Mutation::Delete {
            keys: vec![Bytes::copy_from_slice(key)],
            reason: DeleteReason::Expired,
        })?;
        Ok(None)
    }

    pub(crate) fn entry(&mut self, hash: u64, idx: usize) -> &KeyEntry {
        self.shard(hash).entry(idx)
    }

    /// Ends the write: for a batch, sends its mutation to the sink (rolling
    /// everything back if the sink refuses it); then reports memory changes.
    fn finish(mut self, ok: bool) -> Result<Option<u64>> {
        let mut result = Ok(());
        if let Mode::Batch { mutations, undo } = std::mem::replace(&mut self.mode, Mode::Direct) {
            let recorded = if !ok || mutations.is_empty() {
                Ok(())
            } else {
                match self.inner.sink.record(&Mutation::Batch(mutations)) {
                    Ok(end) => {
                        self.last_end = end.or(self.last_end);
                        Ok(())
                    }
                    Err(e) => Err(Error::from_sink(e)),
                }
            };
            if !ok || recorded.is_err() {
                let mut applier = Applier {
                    locked: &mut self.locked,
                    hashing: &self.inner.hashing,
                    lru: self.inner.lru_now(),
                };
                applier.rollback(undo);
            }
            result = recorded;
        }
        let inner = self.inner;
        self.locked.for_each(|_, shard| inner.publish_memory(shard, false));
        result.map(|()| self.last_end)
    }

    /// Reports the memory change of the shard of `hash` to the engine-wide
    /// total now, however small (eviction needs to see its effect).
    pub(crate) fn publish_memory_now(&mut self, hash: u64) {
        let inner = self.inner;
        inner.publish_memory(self.shard(hash), true);
    }
}

impl Inner {
    pub(crate) fn lru_now(&self) -> u32 {
        if self.config.maxmemory_policy == EvictionPolicy::AllkeysLru {
            (self.clock.now_ms() / 1000) as u32
        } else {
            0
        }
    }

    /// A pseudo-random number (xorshift; only eviction sampling uses it).
    pub(crate) fn random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// Adds the shard's memory change to the engine-wide total if it is
    /// larger than the slack (or at all, with `force`).
    fn publish_memory(&self, shard: &mut Shard, force: bool) {
        let now = shard.memory();
        let diff = now.abs_diff(shard.memory_reported);
        if diff > self.memory_slack || (force && diff > 0) {
            self.memory
                .fetch_add(now as i64 - shard.memory_reported as i64, Ordering::Relaxed);
            shard.memory_reported = now;
        }
    }

    /// Adds `delta` to the engine-wide accounted memory (a keyspace swap).
    pub(crate) fn add_memory(&self, delta: i64) {
        self.memory.fetch_add(delta, Ordering::Relaxed);
    }

    /// Applies one mutation under the locks of the shards it touches;
    /// `on_locked` runs after a successful apply, before the locks are
    /// released (a follower moves its applied offset there).
    pub(crate) fn apply_locked(&self, m: &Mutation, on_locked: impl FnOnce(&Inner)) -> Result<()> {
        let inner = self;
        let locked = if m.touches_all_keys() {
            Locked::Many(inner.shards.iter().enumerate().map(|(s, l)| (s, l.write())).collect())
        } else {
            let mut idx = Vec::new();
            m.for_each_key(&mut |k| idx.push(inner.hashing.shard_of(inner.hashing.hash(k))));
            idx.sort_unstable();
            idx.dedup();
            match idx[..] {
                [] => {
                    on_locked(inner);
                    return Ok(());
                }
                [s] => Locked::One(s, inner.shards[s].write()),
                _ => Locked::Many(idx.into_iter().map(|s| (s, inner.shards[s].write())).collect()),
            }
        };
        let mut w = Writer {
            inner,
            locked,
            mode: Mode::Direct,
            now: None,
            last_end: None,
        };
        let mut applier = Applier {
            locked: &mut w.locked,
            hashing: &inner.hashing,
            lru: inner.lru_now(),
        };
        let r = applier.apply(m, None).map(|_| ());
        if r.is_ok() {
            on_locked(inner);
        }
        w.finish(true)?;
        r
    }

    pub(crate) fn used_memory_approx(&self) -> u64 {
        self.memory.load(Ordering::Relaxed).max(0) as u64
    }

    /// Locks the shards of `hashes` in index order and runs `f` as one write.
    /// Keeps the write-ahead ring from filling: starts a background snapshot
    /// once uncovered history passes `snapshot.auto_share` of the ring, and
    /// when the ring is nearly full waits (bounded, holding no lock) for the
    /// running snapshot to release space.
    fn ensure_log_room(&self) {
        let (Some(log), Some(_)) = (&self.log, &self.data_dir) else {
            return;
        };
        let cap = log.capacity();
        // The ring keeps history from the previous snapshot on (so a damaged
        // newest snapshot can fall back to it); a new snapshot releases the
        // span before the current newest one.
        let used = log.published().saturating_sub(log.oldest());
        if (used as f64) < cap as f64 * self.config.snapshot.auto_share {
            return;
        }
        let Some(engine) = self
            .self_ref
            .get()
            .and_then(std::sync::Weak::upgrade)
            .map(|inner| Engine { inner })
        else {
            return;
        };
        if !self.snapshot_running.load(Ordering::Acquire) {
            let _ = engine.bgsave();
        }
        if cap - used < cap / 16 {
            let deadline =
                std::time::Instant::now() + std::time::Duration::from_millis(self.config.snapshot.log_full_wait_ms);
            while log.capacity() - log.published().saturating_sub(log.oldest()) < cap / 16
                && std::time::Instant::now() < deadline
            {
                if !self.snapshot_running.load(Ordering::Acquire) {
                    let _ = engine.bgsave();
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    /// SNAPSHOT loading: makes `key` a hash (empty if new) with this expiry.
    pub(crate) fn load_hash_head(&self, key: &[u8], expire_at: Option<u64>) -> Result<()> {
        let h = self.hashing.hash(key);
        let mut shard = self.shards[self.hashing.shard_of(h)].write();
        match shard.find(h, key) {
            None => {
                shard.insert(
                    h,
                    Blob::copy_from_slice(key),
                    Value::Hash(Box::new(crate::keyspace::HashValue::new())),
                    crate::keyspace::encode_expire(expire_at),
                    0,
                );
            }
            Some(idx) => {
                if !matches!(shard.entry(idx).value, Value::Hash(_)) {
                    return Err(Error::Apply("hash head for a key that holds a string"));
                }
                shard.set_expire(idx, crate::keyspace::encode_expire(expire_at));
            }
        }
        Ok(())
    }

    /// Empties every shard without logging (a failed snapshot load).
    pub(crate) fn clear_unlogged(&self) {
        for shard in self.shards.iter() {
            shard.write().clear();
        }
    }

    /// A write from the public API: refused on a follower or by the write
    /// gate, then as [`Inner::write_unchecked`].
    pub(crate) fn write<R>(
        &self,
        hashes: &[u64],
        batch: bool,
        f: impl FnOnce(&mut Writer<'_>) -> Result<R>,
    ) -> Result<R> {
        self.replica.check_writable()?;
        self.write_unchecked(hashes, batch, f)
    }

    /// Locks the shards of `hashes` in index order and runs `f` as one
    /// write (internal writes: lazy expiry, eviction).
    pub(crate) fn write_unchecked<R>(
        &self,
        hashes: &[u64],
        batch: bool,
        f: impl FnOnce(&mut Writer<'_>) -> Result<R>,
    ) -> Result<R> {
        self.ensure_log_room();
        let locked = if let [h] = hashes {
            let s = self.hashing.shard_of(*h);
            Locked::One(s, self.shards[s].write())
        } else {
            let mut idx: Vec<usize> = hashes.iter().map(|h| self.hashing.shard_of(*h)).collect();
            idx.sort_unstable();
            idx.dedup();
            Locked::Many(idx.into_iter().map(|s| (s, self.shards[s].write())).collect())
        };
        self.run(locked, batch, f)
    }

    /// Locks every shard in index order and runs `f` as one write.
    pub(crate) fn write_all<R>(&self, f: impl FnOnce(&mut Writer<'_>) -> Result<R>) -> Result<R> {
        self.replica.check_writable()?;
        let locked = Locked::Many(self.shards.iter().enumerate().map(|(s, l)| (s, l.write())).collect());
        self.run(locked, false, f)
    }

    pub(crate) fn run<'e, R>(
        &'e self,
        locked: Locked<'e>,
        batch: bool,
        f: impl FnOnce(&mut Writer<'e>) -> Result<R>,
    ) -> Result<R> {
        let mode = if batch {
            Mode::Batch {
                mutations: Vec::new(),
                undo: Vec::new(),
            }
        } else {
            Mode::Direct
        };
        let mut w = Writer {
            inner: self,
            locked,
            mode,
            now: None,
            last_end: None,
        };
        let r = f(&mut w);
        let finished = w.finish(r.is_ok());
        // The locks are released: wait for durability (group commit) now.
        if let Ok(Some(end)) = finished {
            crate::replica::note_write_end(self, end);
            self.sink.flush_to(end).map_err(Error::from_sink)?;
        }
        let r = r?;
        finished.map(|_| r)
    }

    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() > self.config.max_key_len {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: self.config.max_key_len,
            });
        }
        Ok(())
    }

    pub(crate) fn check_value(&self, len: usize) -> Result<()> {
        if len > self.config.max_value_len {
            return Err(Error::ValueTooLarge {
                len,
                max: self.config.max_value_len,
            });
        }
        Ok(())
    }

    /// Reads the live entry of `key` under the shard's read lock. A key found
    /// expired is reported missing and deleted afterwards under the write lock.
    pub(crate) fn read<R>(&self, key: &[u8], op: Op, f: impl FnOnce(&KeyEntry) -> R) -> Option<R> {
        self.ops.count(op);
        let h = self.hashing.hash(key);
        let s = self.hashing.shard_of(h);
        {
            let shard = self.shards[s].read();
            let idx = shard.find(h, key)?;
            let e = shard.entry(idx);
            if e.expire_at == 0 || !e.is_expired(self.clock.now_ms()) {
                if self.config.maxmemory_policy == EvictionPolicy::AllkeysLru {
                    e.lru.store(self.lru_now(), Ordering::Relaxed);
                }
                return Some(f(e));
            }
        }
        // Lazy expiry. A failure to log the deletion only delays it. A
        // follower leaves the deletion to its primary's stream.
        if !self.replica.is_follower() {
            let _ = self.write_unchecked(&[h], false, |w| w.live(key, h));
        }
        None
    }
}

/// Strict base-10 i64 parsing, as Redis' string2ll: no sign but '-', no
/// leading zeros or spaces, no "-0".
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || neg) {
        return None;
    }
    let mut v: i64 = 0;
    for d in digits {
        let d = i64::from(d - b'0');
        v = if neg {
            v.checked_mul(10)?.checked_sub(d)?
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(v)
}

fn int_bytes(v: i64) -> Bytes {
    Bytes::from(v.to_string())
}

impl Engine {
    /// An engine with this configuration, the system clock and no mutation sink.
    pub fn new(config: Config) -> Result<Engine> {
        Engine::builder().config(config).build()
    }

    /// A builder (custom clock, mutation sink).
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            config: Config::default(),
            clock: Arc::new(SystemClock),
            sink: None,
            data_dir: None,
            anonymous_log: false,
        }
    }

    /// Opens (or creates) a persistent engine in `dir`: replays the ring log
    /// into a fresh keyspace, then logs every write to it.
    ///
    /// ```
    /// use ringkv::{Config, Engine};
    /// let dir = tempfile::tempdir().unwrap();
    /// {
    ///     let engine = Engine::open(dir.path(), Config::default())?;
    ///     engine.set("k", "v")?;
    /// }
    /// let engine = Engine::open(dir.path(), Config::default())?;
    /// assert_eq!(engine.get("k")?.unwrap(), "v");
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn open(dir: impl Into<std::path::PathBuf>, config: Config) -> Result<Engine> {
        Engine::builder().config(config).data_dir(dir).build()
    }

    /// The ring log, if the engine has one.
    pub fn log(&self) -> Option<&Arc<crate::log::RingLog>> {
        self.inner.log.as_ref()
    }

    /// Forces every logged write to disk (msync), whatever the durability mode.
    pub fn sync(&self) -> Result<()> {
        match &self.inner.log {
            Some(ring) => ring.sync().map_err(Error::Log),
            None => Ok(()),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.inner.hashing.hash(key)
    }

    // ----- strings -------------------------------------------------------

    /// GET: the string at `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Blob>> {
        self.inner
            .read(key.as_ref(), Op::Get, |e| match &e.value {
                Value::Str(b) => Ok(b.clone()),
                Value::Hash(_) => Err(Error::WrongType),
            })
            .transpose()
    }

    /// SET without options.
    pub fn set(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<()> {
        self.set_with(key, value, SetOptions::default()).map(|_| ())
    }

    /// SET with NX/XX, EX/PX/EXAT/PXAT/KEEPTTL and GET.
    ///
    /// With `get`, a key holding a hash is a [`Error::WrongType`] and nothing
    /// is written (as Redis does). A relative expiry of 0 is an
    /// [`Error::InvalidExpire`]; an absolute one in the past writes a key that
    /// is already expired.
    pub fn set_with(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>, opts: SetOptions) -> Result<SetOutcome> {
        let key = key.as_ref();
        let value = value.into();
        self.inner.check_key(key)?;
        self.inner.check_value(value.len())?;
        if matches!(opts.expiry, SetExpiry::Seconds(0) | SetExpiry::Millis(0)) {
            return Err(Error::InvalidExpire);
        }
        self.inner.ensure_memory()?;
        let h = self.hash(key);
        self.inner.write(&[h], false, |w| {
            w.inner.ops.count(Op::Set);
            plan_set(w, key, h, value, opts)
        })
    }

    /// DEL: removes the keys; returns how many existed.
    pub fn del<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) -> Result<u64> {
        let keys: Vec<K> = keys.into_iter().collect();
        let hashes: Vec<u64> = keys.iter().map(|k| self.hash(k.as_ref())).collect();
        if hashes.is_empty() {
            return Ok(0);
        }
        self.inner.write(&hashes, false, |w| {
            w.inner.ops.count(Op::Del);
            let mut found: Vec<Bytes> = Vec::new();
            for (k, &h) in keys.iter().zip(&hashes) {
                let k = k.as_ref();
                if w.live(k, h)?.is_some() && !found.iter().any(|f| f == k) {
                    found.push(Bytes::copy_from_slice(k));
                }
            }
            if found.is_empty() {
                return Ok(0);
            }
            let n = found.len() as u64;
            w.commit(Mutation::Delete {
                keys: found,
                reason: DeleteReason::User,
            })?;
            Ok(n)
        })
    }

    /// EXISTS: how many of the keys exist (a key named twice counts twice).
    pub fn exists<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) -> u64 {
        keys.into_iter()
            .filter(|k| self.inner.read(k.as_ref(), Op::Exists, |_| ()).is_some())
            .count() as u64
    }

    /// INCRBY: adds `delta` to the integer at `key` (0 if missing), keeping
    /// its expiry. Non-integer values and overflow are errors.
    pub fn incr_by(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        let key = key.as_ref();
        self.inner.check_key(key)?;
        self.inner.ensure_memory()?;
        let h = self.hash(key);
        self.inner.write(&[h], false, |w| {
            w.inner.ops.count(Op::IncrBy);
            plan_incr(w, key, h, delta)
        })
    }

    /// DECRBY.
    pub fn decr_by(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        self.incr_by(key, delta.checked_neg().ok_or(Error::Overflow)?)
    }

    /// INCR.
    pub fn incr(&self, key: impl AsRef<[u8]>) -> Result<i64> {
        self.incr_by(key, 1)
    }

    /// DECR.
    pub fn decr(&self, key: impl AsRef<[u8]>) -> Result<i64> {
        self.incr_by(key, -1)
    }

    /// APPEND: appends to the string (creating it); returns the new length.
    pub fn append(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<usize> {
        let key = key.as_ref();
        let value = value.into();
        self.inner.check_key(key)?;
        self.inner.ensure_memory()?;
        let h = self.hash(key);
        self.inner.write(&[h], false, |w| {
            w.inner.ops.count(Op::Append);
            plan_append(w, key, h, value)
        })
    }

    /// MGET: the strings at the keys (`None` for missing keys and non-strings),
    /// read at one point in time (all shards involved are read-locked together).
    pub fn mget<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) -> Vec<Option<Blob>> {
        let keys: Vec<K> = keys.into_iter().collect();
        let hashes: Vec<u64> = keys.iter().map(|k| self.hash(k.as_ref())).collect();
        let mut shards: Vec<usize> = hashes.iter().map(|h| self.inner.hashing.shard_of(*h)).collect();
        shards.sort_unstable();
        shards.dedup();
        let guards: Vec<_> = shards.iter().map(|&s| (s, self.inner.shards[s].read())).collect();
        self.inner.ops.count(Op::MGet);
        let mut now = None;
        keys.iter()
            .zip(&hashes)
            .map(|(k, &h)| {
                let s = self.inner.hashing.shard_of(h);
                let g = &guards[guards.binary_search_by_key(&s, |(i, _)| *i).ok()?].1;
                let e = g.entry(g.find(h, k.as_ref())?);
                if e.expire_at != 0 && e.is_expired(*now.get_or_insert_with(|| self.inner.clock.now_ms())) {
                    return None;
                }
                match &e.value {
                    Value::Str(b) => Some(b.clone()),
                    Value::Hash(_) => None,
                }
            })
            .collect()
    }

    /// MSET: sets all pairs atomically (one mutation).
    pub fn mset<K: AsRef<[u8]>, V: Into<Bytes>>(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let mut sets = Vec::new();
        let mut hashes = Vec::new();
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.into());
            self.inner.check_key(k)?;
            self.inner.check_value(v.len())?;
            hashes.push(self.hash(k));
            sets.push(Mutation::Set {
                key: Bytes::copy_from_slice(k),
                value: v,
                expire_at: None,
            });
        }
        if sets.is_empty() {
            return Err(Error::InvalidArgument("wrong number of arguments for 'mset' command"));
        }
        self.inner.ensure_memory()?;
        self.inner.write(&hashes, false, |w| {
            w.inner.ops.count(Op::MSet);
            w.commit(Mutation::Batch(sets)).map(|_| ())
        })
    }

    /// TYPE: the type of the value at `key`, `None` if missing.
    pub fn key_type(&self, key: impl AsRef<[u8]>) -> Option<KeyType> {
        self.inner.read(key.as_ref(), Op::Type, |e| match e.value {
            Value::Str(_) => KeyType::String,
            Value::Hash(_) => KeyType::Hash,
        })
    }

    /// EXPIRE: expire after `seconds` (≤ 0 deletes the key). True if the key exists.
    pub fn expire(&self, key: impl AsRef<[u8]>, seconds: i64) -> Result<bool> {
        let ms = seconds.checked_mul(1000).ok_or(Error::InvalidExpire)?;
        self.pexpire(key, ms)
    }

    /// PEXPIRE: expire after `millis` (≤ 0 deletes the key).
    pub fn pexpire(&self, key: impl AsRef<[u8]>, millis: i64) -> Result<bool> {
        let now = self.inner.clock.now_ms() as i64;
        self.pexpire_at(key, now.checked_add(millis).ok_or(Error::InvalidExpire)?)
    }

    /// EXPIREAT: expire at a unix time in seconds (in the past: delete).
    pub fn expire_at(&self, key: impl AsRef<[u8]>, unix_seconds: i64) -> Result<bool> {
        self.pexpire_at(key, unix_seconds.checked_mul(1000).ok_or(Error::InvalidExpire)?)
    }

    /// PEXPIREAT: expire at a unix time in milliseconds (in the past: delete).
    pub fn pexpire_at(&self, key: impl AsRef<[u8]>, unix_millis: i64) -> Result<bool> {
        let key = key.as_ref();
        let h = self.hash(key);
        self.inner.write(&[h], false, |w| {
            w.inner.ops.count(Op::Expire);
            plan_expire_at(w, key, h, unix_millis)
        })
    }

    /// TTL/PTTL of the key.
    pub fn ttl(&self, key: impl AsRef<[u8]>) -> Ttl {
        let now = self.inner.clock.now_ms();
        self.inner
            .read(key.as_ref(), Op::Ttl, |e| match e.expire() {
                None => Ttl::Persistent,
                Some(t) => Ttl::ExpiresIn(t.saturating_sub(now)),
            })
            .unwrap_or(Ttl::Missing)
    }

    /// PERSIST: removes the expiry; true if there was one.
    pub fn persist(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        let h = self.hash(key);
        self.inner.write(&[h], false, |w| {
            w.inner.ops.count(Op::Persist);
            plan_persist(w, key, h)
        })
    }

    /// RENAME: moves the value and expiry of `from` to `to` atomically (across
    /// shards), replacing `to`. A missing `from` is [`Error::NoSuchKey`].
    pub fn rename(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<()> {
        self.rename_inner(from.as_ref(), to.as_ref(), false).map(|_| ())
    }

    /// RENAMENX: like rename, but only if `to` does not exist; true if renamed.
    pub fn rename_nx(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<bool> {
        self.rename_inner(from.as_ref(), to.as_ref(), true)
    }

    fn rename_inner(&self, from: &[u8], to: &[u8], nx: bool) -> Result<bool> {
        self.inner.check_key(to)?;
        let (hf, ht) = (self.hash(from), self.hash(to));
        self.inner.write(&[hf, ht], false, |w| {
            w.inner.ops.count(Op::Rename);
            if w.live(from, hf)?.is_none() {
                return Err(Error::NoSuchKey);
            }
            let to_exists = w.live(to, ht)?.is_some();
            if nx && to_exists {
                return Ok(false);
            }
            if from != to {
                w.commit(Mutation::Rename {
                    from: Bytes::copy_from_slice(from),
                    to: Bytes::copy_from_slice(to),
                })?;
            }
            Ok(true)
        })
    }

    /// DBSIZE: number of keys (including expired keys not yet removed, as Redis).
    pub fn dbsize(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.read().table.len() as u64).sum()
    }

    /// FLUSHALL: removes every key (one mutation). Takes every shard's write
    /// lock at once; O(n) to free the memory.
    pub fn flush(&self) -> Result<()> {
        self.inner.write_all(|w| {
            w.inner.ops.count(Op::Flush);
            w.commit(Mutation::Flush).map(|_| ())
        })
    }

    // ----- hashes --------------------------------------------------------

    /// HSET: sets fields of the hash at `key` (created if missing); returns
    /// how many fields are new.
    pub fn hset<F: AsRef<[u8]>, V: Into<Bytes>>(
        &self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = (F, V)>,
    ) -> Result<usize> {
        let key = key.as_ref();
        self.inner.check_key(key)?;
        let mut pairs = Vec::new();
        for (f, v) in fields {
            let (f, v) = (f.as_ref(), v.into());
            self.inner.check_key(f)?;
            self.inner.check_value(v.len())?;
            pairs.push((Bytes::copy_from_slice(f), v));
        }
        if pairs.is_empty() {
            return Err(Error::InvalidArgument("wrong number of arguments for 'hset' command"));
        }
        self.inner.ensure_memory()?;
        let h = self.hash(key);
        self.inner.write(&[h], false, |w| {
            w.inner.ops.count(Op::HSet);
            plan_hset(w, key, h, pairs)
        })
    }

    /// Runs `f` on the live hash at `key` under its shard's read lock.
    fn read_hash<R>(&self, key: &[u8], op: Op, f: impl FnOnce(&crate::keyspace::HashValue) -> R) -> Result<Option<R>> {
        self.inner
            .read(key, op, |e| match &e.value {
                Value::Hash(hv) => Ok(f(hv)),
                Value::Str(_) => Err(Error::WrongType),
            })
            .transpose()
    }

    fn field_hash(&self, field: &[u8]) -> u32 {
        self.hash(field) as u32
    }

    /// HGET.
    pub fn hget(&self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> Result<Option<Blob>> {
        let field = field.as_ref();
        let fh = self.field_hash(field);
        Ok(self
            .read_hash(key.as_ref(), Op::HGet, |hv| hv.get(fh, field).cloned())?
            .flatten())
    }

    /// HMGET.
    pub fn hmget<F: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = F>,
    ) -> Result<Vec<Option<Blob>>> {
        let fields: Vec<(F, u32)> = fields
            .into_iter()
            .map(|f| {
                let fh = self.field_hash(f.as_ref());
                (f, fh)
            })
            .collect();
        let found = self.read_hash(key.as_ref(), Op::HMGet, |hv| {
            fields.iter().map(|(f, fh)| hv.get(*fh, f.as_ref()).cloned()).collect()
        })?;
        Ok(found.unwrap_or_else(|| vec![None; fields.len()]))
    }

    /// HDEL: removes fields; returns how many existed. A hash left empty is removed.
    pub fn hdel<F: AsRef<[u8]>>(&self, key: impl AsRef<[u8]>, fields: impl IntoIterator<Item = F>) -> Result<usize> {
        let key = key.as_ref();
        let fields: Vec<Bytes> = fields.into_iter().map(|f| Bytes::copy_from_slice(f.as_ref())).collect();
        let h = self.hash(key);
        self.inner.write(&[h], false, |w| {
            w.inner.ops.count(Op::HDel);
            plan_hdel(w, key, h, &fields)
        })
    }

    /// HLEN.
    pub fn hlen(&self, key: impl AsRef<[u8]>) -> Result<usize> {
        Ok(self.read_hash(key.as_ref(), Op::HLen, |hv| hv.len())?.unwrap_or(0))
    }

    /// HEXISTS.
    pub fn hexists(&self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> Result<bool> {
        let field = field.as_ref();
        let fh = self.field_hash(field);
        Ok(self
            .read_hash(key.as_ref(), Op::HExists, |hv| hv.get(fh, field).is_some())?
            .unwrap_or(false))
    }

    /// HINCRBY: adds `delta` to the integer in a hash field (0 if missing).
    pub fn hincr_by(&self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        let (key, field) = (key.as_ref(), field.as_ref());
        self.inner.check_key(key)?;
        self.inner.check_key(field)?;
        self.inner.ensure_memory()?;
        let h = self.hash(key);
        self.inner.write(&[h], false, |w| {
            w.inner.ops.count(Op::HIncrBy);
            plan_hincr(w, key, h, field, delta)
        })
    }

    /// HGETALL: every field and value. **O(n) in the size of the hash, under
    /// the shard's read lock**: use [`Engine::hscan`] or [`Engine::hdrain`]
    /// for large hashes.
    pub fn hgetall(&self, key: impl AsRef<[u8]>) -> Result<Vec<(Blob, Blob)>> {
        Ok(self
            .read_hash(key.as_ref(), Op::HGetAll, |hv| {
                hv.table.iter().map(|e| (e.field.clone(), e.value.clone())).collect()
            })?
            .unwrap_or_default())
    }

    /// HKEYS: every field. O(n), like [`Engine::hgetall`].
    pub fn hkeys(&self, key: impl AsRef<[u8]>) -> Result<Vec<Blob>> {
        Ok(self
            .read_hash(key.as_ref(), Op::HKeys, |hv| {
                hv.table.iter().map(|e| e.field.clone()).collect()
            })?
            .unwrap_or_default())
    }

    /// HVALS: every value. O(n), like [`Engine::hgetall`].
    pub fn hvals(&self, key: impl AsRef<[u8]>) -> Result<Vec<Blob>> {
        Ok(self
            .read_hash(key.as_ref(), Op::HVals, |hv| {
                hv.table.iter().map(|e| e.value.clone()).collect()
            })?
            .unwrap_or_default())
    }

    /// Hash drain: atomically removes and returns up to `count` fields of the
    /// hash at `key` (the safe form of "HSCAN a batch, then HDEL it": no field
    /// written meanwhile can be lost). O(count). The hash is removed when
    /// emptied. `count` must be at least 1.
    pub fn hdrain(&self, key: impl AsRef<[u8]>, count: usize) -> Result<Vec<(Blob, Blob)>> {
        if count == 0 {
            return Err(Error::InvalidArgument("count must be positive"));
        }
        let key = key.as_ref();
        let h = self.hash(key);
        self.inner.write(&[h], false, |w| {
            w.inner.ops.count(Op::HDrain);
            let Some(idx) = w.live(key, h)? else {
                return Ok(Vec::new());
            };
            let Value::Hash(hv) = &w.entry(h, idx).value else {
                return Err(Error::WrongType);
            };
            // Take from the end of the hash's dense slab: O(count), no scan.
            let last = hv.table.last_index().unwrap_or(0);
            let taken: Vec<(Blob, Blob)> = (0..count.min(hv.len()))
                .map(|i| {
                    let e = hv.table.at(last - i);
                    (e.field.clone(), e.value.clone())
                })
                .collect();
            if taken.is_empty() {
                return Ok(taken);
            }
            w.commit(Mutation::HDel {
                key: Bytes::copy_from_slice(key),
                fields: taken.iter().map(|(f, _)| Bytes::copy_from_slice(f)).collect(),
            })?;
            Ok(taken)
        })
    }

    // ----- batches, replay, stats -----------------------------------------

    /// Applies a write batch atomically: either every operation applies and
    /// the sink receives one `Mutation::Batch`, or (an operation fails, or
    /// the sink refuses) nothing changes. Operations see the effects of the
    /// earlier ones. Returns one reply per operation.
    ///
    /// ```
    /// use ringkv::{Engine, Config, WriteBatch, BatchReply};
    /// let engine = Engine::new(Config::default())?;
    /// let mut batch = WriteBatch::new();
    /// batch.set("a", "1").incr_by("a", 2).hset("h", [("f", "v")]);
    /// let replies = engine.write_batch(batch)?;
    /// assert_eq!(replies[1], BatchReply::Int(3));
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn write_batch(&self, batch: crate::batch::WriteBatch) -> Result<Vec<crate::batch::BatchReply>> {
        let ops = batch.into_ops();
        for op in &ops {
            op.check(&self.inner)?;
        }
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.ensure_memory()?;
        let hashes: Vec<u64> = ops.iter().map(|op| self.hash(op.key())).collect();
        self.inner.write(&hashes, true, |w| {
            w.inner.ops.count(Op::Batch);
            ops.into_iter().zip(&hashes).map(|(op, &h)| op.run(w, h)).collect()
        })
    }

    /// Applies one mutation produced by another engine (or read back from a
    /// log), without consulting the clock and without sending it to this
    /// engine's sink. An engine that started from the same state and applies
    /// the same stream ends in the same state. A mutation that does not fit
    /// the current state is an [`Error::Apply`] and changes nothing.
    pub fn apply(&self, m: &Mutation) -> Result<()> {
        self.inner.apply_locked(m, |_| {})
    }

    /// Current statistics.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            maxmemory: self.inner.config.maxmemory,
            shards: self.inner.shards.len() as u64,
            ..Stats::default()
        };
        let ops = self.inner.ops.totals();
        for shard in self.inner.shards.iter() {
            let s = shard.read();
            stats.keys += s.table.len() as u64;
            stats.keys_with_expiry += s.expires.len() as u64;
            stats.used_memory += s.memory() as u64;
            stats.expired_keys += s.expired;
            stats.evicted_keys += s.evicted;
            stats.rehashing_shards += u64::from(s.table.is_rehashing());
        }
        if let Some(ring) = &self.inner.log {
            let recovered = self.inner.recovered.lock().clone();
            stats.log = Some(crate::stats::LogStats {
                capacity: ring.capacity(),
                oldest_offset: ring.oldest(),
                offset: ring.published(),
                synced_offset: ring.synced(),
                durability: ring.durability(),
                replid: ring.replid(),
                recovered_records: recovered.records,
                recovered_bytes: recovered.bytes,
                torn_bytes: ring.torn_bytes(),
            });
        }
        stats.snapshot = self.inner.snapshot_stats.lock().clone();
        stats.commands = Op::ALL
            .iter()
            .map(|op| (op.name().to_string(), ops[*op as usize]))
            .collect();
        stats
    }

    /// Accounted memory in bytes (exact sum over shards; see [`Stats::used_memory`]).
    pub fn used_memory(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.read().memory() as u64).sum()
    }

    /// An order-independent digest of the whole keyspace: keys, types, values,
    /// hash fields and expiries. Two engines with equal digests hold the same
    /// data (up to a 64-bit collision). O(n); meant for tests and for checking
    /// that a follower or a recovery reproduced a primary.
    pub fn digest(&self) -> u64 {
        let fixed = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let mut total = 0u64;
        for shard in self.inner.shards.iter() {
            let s = shard.read();
            for e in s.table.iter() {
                let key_part = fixed.hash_one((&e.key[..], e.expire_at));
                let value_part = match &e.value {
                    Value::Str(b) => fixed.hash_one((0u8, &b[..])),
                    Value::Hash(hv) => hv.table.iter().fold(fixed.hash_one(1u8), |acc, f| {
                        acc.wrapping_add(fixed.hash_one((&f.field[..], &f.value[..])))
                    }),
                };
                total = total.wrapping_add(fixed.hash_one((key_part, value_part)));
            }
        }
        total
    }
}

pub(crate) fn plan_set(w: &mut Writer<'_>, key: &[u8], h: u64, value: Bytes, opts: SetOptions) -> Result<SetOutcome> {
    if opts == SetOptions::default() {
        // A plain SET depends on nothing the key holds (not even whether it
        // expired: it replaces it either way), so it skips the lookup.
        w.commit(Mutation::Set {
            key: Bytes::copy_from_slice(key),
            value,
            expire_at: None,
        })?;
        return Ok(SetOutcome {
            applied: true,
            previous: None,
        });
    }
    let existing = w.live(key, h)?;
    let mut previous = None;
    let mut keep_expire = 0;
    if let Some(idx) = existing {
        let e = w.entry(h, idx);
        if opts.get {
            match &e.value {
                Value::Str(b) => previous = Some(b.clone()),
                Value::Hash(_) => return Err(Error::WrongType),
            }
        }
        keep_expire = e.expire_at;
    }
    let applies = match opts.condition {
        SetCondition::Always => true,
        SetCondition::IfMissing => existing.is_none(),
        SetCondition::IfExists => existing.is_some(),
    };
    if !applies {
        return Ok(SetOutcome {
            applied: false,
            previous,
        });
    }
    let expire_at = match opts.expiry {
        SetExpiry::None => None,
        SetExpiry::Keep => (keep_expire != 0).then_some(keep_expire),
        SetExpiry::Seconds(s) => Some(relative(w.now(), s.checked_mul(1000))?),
        SetExpiry::Millis(ms) => Some(relative(w.now(), Some(ms))?),
        SetExpiry::AtSeconds(s) => Some(s.checked_mul(1000).ok_or(Error::InvalidExpire)?),
        SetExpiry::AtMillis(ms) => Some(ms),
    };
    w.commit(Mutation::Set {
        key: Bytes::copy_from_slice(key),
        value,
        expire_at,
    })?;
    Ok(SetOutcome {
        applied: true,
        previous,
    })
}

fn relative(now: u64, ms: Option<u64>) -> Result<u64> {
    ms.and_then(|ms| now.checked_add(ms))
        .filter(|t| *t <= i64::MAX as u64)
        .ok_or(Error::InvalidExpire)
}

pub(crate) fn plan_incr(w: &mut Writer<'_>, key: &[u8], h: u64, delta: i64) -> Result<i64> {
    let (current, expire) = match w.live(key, h)? {
        None => (0, None),
        Some(idx) => {
            let e = w.entry(h, idx);
            match &e.value {
                Value::Str(b) => (parse_i64(b).ok_or(Error::NotAnInteger)?, e.expire()),
                Value::Hash(_) => return Err(Error::WrongType),
            }
        }
    };
    let new = current.checked_add(delta).ok_or(Error::Overflow)?;
    w.commit(Mutation::Set {
        key: Bytes::copy_from_slice(key),
        value: int_bytes(new),
        expire_at: expire,
    })?;
    Ok(new)
}

pub(crate) fn plan_append(w: &mut Writer<'_>, key: &[u8], h: u64, value: Bytes) -> Result<usize> {
    let old_len = match w.live(key, h)? {
        None => 0,
        Some(idx) => match &w.entry(h, idx).value {
            Value::Str(b) => b.len(),
            Value::Hash(_) => return Err(Error::WrongType),
        },
    };
    let new_len = old_len.checked_add(value.len()).ok_or(Error::ValueTooLarge {
        len: usize::MAX,
        max: w.inner.config.max_value_len,
    })?;
    w.inner.check_value(new_len)?;
    w.commit(Mutation::Append {
        key: Bytes::copy_from_slice(key),
        suffix: value,
    })?;
    Ok(new_len)
}

pub(crate) fn plan_expire_at(w: &mut Writer<'_>, key: &[u8], h: u64, unix_millis: i64) -> Result<bool> {
    if w.live(key, h)?.is_none() {
        return Ok(false);
    }
    let key = Bytes::copy_from_slice(key);
    if unix_millis <= w.now() as i64 {
        w.commit(Mutation::Delete {
            keys: vec![key],
            reason: DeleteReason::Expired,
        })?;
    } else {
        w.commit(Mutation::Expire {
            key,
            expire_at: Some(unix_millis as u64),
        })?;
    }
    Ok(true)
}

pub(crate) fn plan_hset(w: &mut Writer<'_>, key: &[u8], h: u64, fields: Vec<(Bytes, Bytes)>) -> Result<usize> {
    if let Some(idx) = w.live(key, h)? {
        if !matches!(w.entry(h, idx).value, Value::Hash(_)) {
            return Err(Error::WrongType);
        }
    }
    w.commit(Mutation::HSet {
        key: Bytes::copy_from_slice(key),
        fields,
    })
}

pub(crate) fn plan_hincr(w: &mut Writer<'_>, key: &[u8], h: u64, field: &[u8], delta: i64) -> Result<i64> {
    let fh = w.inner.hashing.hash(field) as u32;
    let current = match w.live(key, h)? {
        None => 0,
        Some(idx) => match &w.entry(h, idx).value {
            Value::Hash(hv) => match hv.get(fh, field) {
                Some(v) => parse_i64(v).ok_or(Error::NotAnInteger)?,
                None => 0,
            },
            Value::Str(_) => return Err(Error::WrongType),
        },
    };
    let new = current.checked_add(delta).ok_or(Error::Overflow)?;
    w.commit(Mutation::HSet {
        key: Bytes::copy_from_slice(key),
        fields: vec![(Bytes::copy_from_slice(field), int_bytes(new))],
    })?;
    Ok(new)
}

pub(crate) fn plan_del(w: &mut Writer<'_>, key: &[u8], h: u64) -> Result<bool> {
    if w.live(key, h)?.is_none() {
        return Ok(false);
    }
    w.commit(Mutation::Delete {
        keys: vec![Bytes::copy_from_slice(key)],
        reason: DeleteReason::User,
    })?;
    Ok(true)
}

pub(crate) fn plan_persist(w: &mut Writer<'_>, key: &[u8], h: u64) -> Result<bool> {
    let Some(idx) = w.live(key, h)? else {
        return Ok(false);
    };
    if w.entry(h, idx).expire_at == 0 {
        return Ok(false);
    }
    w.commit(Mutation::Expire {
        key: Bytes::copy_from_slice(key),
        expire_at: None,
    })?;
    Ok(true)
}

pub(crate) fn plan_hdel(w: &mut Writer<'_>, key: &[u8], h: u64, fields: &[Bytes]) -> Result<usize> {
    let Some(idx) = w.live(key, h)? else {
        return Ok(0);
    };
    let hashing = &w.inner.hashing;
    let Value::Hash(hv) = &w.locked.shard(hashing.shard_of(h)).entry(idx).value else {
        return Err(Error::WrongType);
    };
    let mut present: Vec<Bytes> = Vec::new();
    for f in fields {
        if hv.get(hashing.hash(f) as u32, f).is_some() && !present.contains(f) {
            present.push(f.clone());
        }
    }
    if present.is_empty() {
        return Ok(0);
    }
    w.commit(Mutation::HDel {
        key: Bytes::copy_from_slice(key),
        fields: present,
    })
}
