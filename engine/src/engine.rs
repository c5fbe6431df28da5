//! L6 facade: [`Engine`], the public API. Each method is a documented
//! one- to three-line hand-off to the layer that does the work: commands
//! to `ops/`, snapshots, expiry and replication primitives to `services/`.
//! The map of the layers is ARCHITECTURE.md at the repository root.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::blob::Blob;
use crate::config::{Config, EvictionPolicy};
use crate::core::{Inner, Promotion, Role, WriteGate};
use crate::error::{Error, Result};
use crate::log::LogView;
use crate::mutation::Mutation;
use crate::ops::batch::{BatchReply, WriteBatch};
use crate::ops::keys::{ExpireCondition, KeyType, Ttl};
use crate::ops::scan::{HScanIter, ScanIter, ScanOptions, ScanPage};
use crate::ops::strings::{GetExpiry, SetOptions, SetOutcome};
use crate::snapshot::{SnapshotHeader, SnapshotInfo};
use crate::stats::Stats;
use crate::{ops, services};

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
    /// The background thread, shared by the handles: dropped (stopped and
    /// joined) with the last one, before `inner` (fields drop in order), so
    /// that the state and the data directory's lock go with that drop.
    _background: Option<Arc<crate::services::background::Background>>,
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("shards", &self.inner.keyspace.shard_count())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The facade over state the builder assembled.
    pub(crate) fn from_inner(inner: Arc<Inner>, background: Option<crate::services::background::Background>) -> Engine {
        Engine {
            _background: background.map(Arc::new),
            inner,
        }
    }

    /// An engine with this configuration, the system clock and no mutation sink.
    pub fn new(config: Config) -> Result<Engine> {
        Engine::builder().config(config).build()
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

    /// A read-only view of the ring log, if the engine has one: offsets,
    /// reads by offset, tail readers. Appending, trimming and resetting the
    /// log are the engine's business (through its documented methods).
    pub fn log(&self) -> Option<LogView> {
        self.inner.log().map(|ring| LogView::new(Arc::clone(ring)))
    }

    /// Forces every logged write to disk (msync), whatever the durability mode.
    pub fn sync(&self) -> Result<()> {
        match self.inner.log() {
            Some(ring) => ring.sync().map_err(Error::Log),
            None => Ok(()),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    // ----- strings -----------------------------------------------------------

    /// GET: the string at `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Blob>> {
        ops::strings::get(&self.inner, key)
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
        ops::strings::set_with(&self.inner, key, value, opts)
    }

    /// INCRBY: adds `delta` to the integer at `key` (0 if missing), keeping
    /// its expiry. Non-integer values and overflow are errors.
    pub fn incr_by(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        ops::strings::incr_by(&self.inner, key, delta)
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
        ops::strings::append(&self.inner, key, value)
    }

    /// MGET: the strings at the keys (`None` for missing keys and non-strings),
    /// read at one point in time (all shards involved are read-locked together).
    pub fn mget<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) -> Vec<Option<Blob>> {
        ops::strings::mget(&self.inner, keys)
    }

    /// MSET: sets all pairs atomically (one mutation).
    pub fn mset<K: AsRef<[u8]>, V: Into<Bytes>>(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        ops::strings::mset(&self.inner, pairs)
    }

    /// GETDEL: the string at `key`, removed in the same step.
    ///
    /// ```
    /// # let engine = ringkv::Engine::new(ringkv::Config::default())?;
    /// engine.set("token", "abc")?;
    /// assert_eq!(engine.getdel("token")?.unwrap(), "abc");
    /// assert!(engine.get("token")?.is_none());
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn getdel(&self, key: impl AsRef<[u8]>) -> Result<Option<Blob>> {
        ops::strings::getdel(&self.inner, key)
    }

    /// GETEX: the string at `key`, changing its expiry as `expiry` says
    /// (an absolute time in the past deletes the key after reading it).
    pub fn getex(&self, key: impl AsRef<[u8]>, expiry: GetExpiry) -> Result<Option<Blob>> {
        ops::strings::getex(&self.inner, key, expiry)
    }

    /// SETRANGE: overwrites the string from `offset`, zero-padding past its
    /// end (creating it if missing, unless `value` is empty); returns the
    /// new length.
    pub fn setrange(&self, key: impl AsRef<[u8]>, offset: usize, value: impl AsRef<[u8]>) -> Result<usize> {
        ops::strings::setrange(&self.inner, key, offset, value)
    }

    /// INCRBYFLOAT: adds `delta` to the float at `key` (0 if missing),
    /// keeping its expiry; returns the stored text (`10.5` + `0.1` is `10.6`).
    ///
    /// ```
    /// # let engine = ringkv::Engine::new(ringkv::Config::default())?;
    /// engine.set("price", "10.5")?;
    /// assert_eq!(engine.incr_by_float("price", 0.1)?, "10.6");
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn incr_by_float(&self, key: impl AsRef<[u8]>, delta: f64) -> Result<Bytes> {
        ops::strings::incr_by_float(&self.inner, key, delta)
    }

    /// MSETNX: sets every pair only if none of the keys exists (one
    /// mutation); true if it set them.
    pub fn msetnx<K: AsRef<[u8]>, V: Into<Bytes>>(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<bool> {
        ops::strings::msetnx(&self.inner, pairs)
    }

    // ----- keys --------------------------------------------------------------

    /// DEL: removes the keys; returns how many existed.
    pub fn del<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) -> Result<u64> {
        ops::keys::del(&self.inner, keys)
    }

    /// EXISTS: how many of the keys exist (a key named twice counts twice).
    pub fn exists<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) -> u64 {
        ops::keys::exists(&self.inner, keys)
    }

    /// TYPE: the type of the value at `key`, `None` if missing.
    pub fn key_type(&self, key: impl AsRef<[u8]>) -> Option<KeyType> {
        ops::keys::key_type(&self.inner, key)
    }

    /// EXPIRE: expire after `seconds` (≤ 0 deletes the key). True if the key exists.
    pub fn expire(&self, key: impl AsRef<[u8]>, seconds: i64) -> Result<bool> {
        ops::keys::expire(&self.inner, key, seconds)
    }

    /// PEXPIRE: expire after `millis` (≤ 0 deletes the key).
    pub fn pexpire(&self, key: impl AsRef<[u8]>, millis: i64) -> Result<bool> {
        ops::keys::pexpire(&self.inner, key, millis)
    }

    /// EXPIREAT: expire at a unix time in seconds (in the past: delete).
    pub fn expire_at(&self, key: impl AsRef<[u8]>, unix_seconds: i64) -> Result<bool> {
        ops::keys::expire_at(&self.inner, key, unix_seconds)
    }

    /// PEXPIREAT: expire at a unix time in milliseconds (in the past: delete).
    pub fn pexpire_at(&self, key: impl AsRef<[u8]>, unix_millis: i64) -> Result<bool> {
        ops::keys::pexpire_at(&self.inner, key, unix_millis)
    }

    /// PEXPIREAT with Redis 7's NX / XX / GT / LT condition; true if the
    /// expiry was set (or the key deleted, for a time in the past).
    ///
    /// ```
    /// use ringkv::ExpireCondition;
    /// # let engine = ringkv::Engine::new(ringkv::Config::default())?;
    /// engine.set("k", "v")?;
    /// let soon = 4_000_000_000_000;
    /// assert!(!engine.pexpire_at_if("k", soon, ExpireCondition::IfLater)?); // no expiry: GT never applies
    /// assert!(engine.pexpire_at_if("k", soon, ExpireCondition::IfNone)?);
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn pexpire_at_if(&self, key: impl AsRef<[u8]>, unix_millis: i64, cond: ExpireCondition) -> Result<bool> {
        ops::keys::pexpire_at_if(&self.inner, key, unix_millis, cond)
    }

    /// EXPIRETIME in milliseconds: `None` if the key is missing,
    /// `Some(None)` if it has no expiry, else its unix-ms expiry.
    pub fn expire_time(&self, key: impl AsRef<[u8]>) -> Option<Option<u64>> {
        ops::keys::expire_time(&self.inner, key)
    }

    /// COPY: `dst` gets a copy of `src`'s value and expiry; false if `src`
    /// is missing or `dst` exists (and not `replace`).
    pub fn copy(&self, src: impl AsRef<[u8]>, dst: impl AsRef<[u8]>, replace: bool) -> Result<bool> {
        ops::keys::copy(&self.inner, src, dst, replace)
    }

    /// RANDOMKEY: a live key picked at random, `None` if there is none.
    pub fn random_key(&self) -> Option<Blob> {
        ops::keys::random_key(&self.inner)
    }

    /// TTL/PTTL of the key.
    pub fn ttl(&self, key: impl AsRef<[u8]>) -> Ttl {
        ops::keys::ttl(&self.inner, key)
    }

    /// PERSIST: removes the expiry; true if there was one.
    pub fn persist(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        ops::keys::persist(&self.inner, key)
    }

    /// RENAME: moves the value and expiry of `from` to `to` atomically (across
    /// shards), replacing `to`. A missing `from` is [`Error::NoSuchKey`].
    pub fn rename(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<()> {
        ops::keys::rename(&self.inner, from.as_ref(), to.as_ref(), false).map(|_| ())
    }

    /// RENAMENX: like rename, but only if `to` does not exist; true if renamed.
    pub fn rename_nx(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<bool> {
        ops::keys::rename(&self.inner, from.as_ref(), to.as_ref(), true)
    }

    /// DBSIZE: number of keys (including expired keys not yet removed, as Redis).
    pub fn dbsize(&self) -> u64 {
        ops::keys::dbsize(&self.inner)
    }

    /// CLUSTER COUNTKEYSINSLOT: keys in cluster `slot` (0..16,384, see
    /// [`key_slot`](crate::key_slot)); O(shards). Needs
    /// [`Config::cluster_slots`]; without it, or for a slot out of range,
    /// [`Error::InvalidArgument`].
    ///
    /// ```
    /// let config = ringkv::Config { cluster_slots: true, ..Default::default() };
    /// let db = ringkv::Engine::builder().config(config).build()?;
    /// db.set("{user1}:name", "ada")?;
    /// db.set("{user1}:mail", "ada@example.org")?;
    /// let slot = ringkv::key_slot(b"user1");
    /// assert_eq!(db.count_keys_in_slot(slot)?, 2);
    /// let keys = db.keys_in_slot(slot, None, 10)?;
    /// assert_eq!(keys, ["{user1}:mail", "{user1}:name"]);
    /// // A cursor: the keys after the last one returned.
    /// assert_eq!(db.keys_in_slot(slot, Some(b"{user1}:mail"), 10)?, ["{user1}:name"]);
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn count_keys_in_slot(&self, slot: u16) -> Result<u64> {
        ops::slots::count_keys_in_slot(&self.inner, slot)
    }

    /// CLUSTER GETKEYSINSLOT: up to `count` keys of `slot` in byte order,
    /// after `after` (exclusive) if given, so the last key returned is the
    /// cursor of the next page. Reads only that slot's keys (at most `count`
    /// per shard). Same conditions as [`Engine::count_keys_in_slot`].
    pub fn keys_in_slot(&self, slot: u16, after: Option<&[u8]>, count: usize) -> Result<Vec<Blob>> {
        ops::slots::keys_in_slot(&self.inner, slot, after, count)
    }

    /// FLUSHALL: removes every key (one mutation). Takes every shard's write
    /// lock at once; O(n) to free the memory.
    pub fn flush(&self) -> Result<()> {
        ops::keys::flush(&self.inner)
    }

    // ----- hashes ------------------------------------------------------------

    /// HSET: sets fields of the hash at `key` (created if missing); returns
    /// how many fields are new.
    pub fn hset<F: AsRef<[u8]>, V: Into<Bytes>>(
        &self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = (F, V)>,
    ) -> Result<usize> {
        ops::hashes::hset(&self.inner, key, fields)
    }

    /// HGET.
    pub fn hget(&self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> Result<Option<Blob>> {
        ops::hashes::hget(&self.inner, key, field)
    }

    /// HMGET.
    pub fn hmget<F: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = F>,
    ) -> Result<Vec<Option<Blob>>> {
        ops::hashes::hmget(&self.inner, key, fields)
    }

    /// HDEL: removes fields; returns how many existed. A hash left empty is removed.
    pub fn hdel<F: AsRef<[u8]>>(&self, key: impl AsRef<[u8]>, fields: impl IntoIterator<Item = F>) -> Result<usize> {
        ops::hashes::hdel(&self.inner, key, fields)
    }

    /// HLEN.
    pub fn hlen(&self, key: impl AsRef<[u8]>) -> Result<usize> {
        ops::hashes::hlen(&self.inner, key)
    }

    /// HEXISTS.
    pub fn hexists(&self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> Result<bool> {
        ops::hashes::hexists(&self.inner, key, field)
    }

    /// HINCRBY: adds `delta` to the integer in a hash field (0 if missing).
    pub fn hincr_by(&self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        ops::hashes::hincr_by(&self.inner, key, field, delta)
    }

    /// HGETALL: every field and value. **O(n) in the size of the hash, under
    /// the shard's read lock**: use [`Engine::hscan`] or [`Engine::hdrain`]
    /// for large hashes.
    pub fn hgetall(&self, key: impl AsRef<[u8]>) -> Result<Vec<(Blob, Blob)>> {
        ops::hashes::hgetall(&self.inner, key)
    }

    /// HKEYS: every field. O(n), like [`Engine::hgetall`].
    pub fn hkeys(&self, key: impl AsRef<[u8]>) -> Result<Vec<Blob>> {
        ops::hashes::hkeys(&self.inner, key)
    }

    /// HVALS: every value. O(n), like [`Engine::hgetall`].
    pub fn hvals(&self, key: impl AsRef<[u8]>) -> Result<Vec<Blob>> {
        ops::hashes::hvals(&self.inner, key)
    }

    /// Hash drain: atomically removes and returns up to `count` fields of the
    /// hash at `key` (the safe form of "HSCAN a batch, then HDEL it": no field
    /// written meanwhile can be lost). O(count). The hash is removed when
    /// emptied. `count` must be at least 1.
    pub fn hdrain(&self, key: impl AsRef<[u8]>, count: usize) -> Result<Vec<(Blob, Blob)>> {
        ops::hashes::hdrain(&self.inner, key, count)
    }

    /// HSETNX: sets the field only if it is absent; true if set.
    pub fn hsetnx(&self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<bool> {
        ops::hashes::hsetnx(&self.inner, key, field, value)
    }

    /// HINCRBYFLOAT: adds `delta` to the float in a hash field (0 if
    /// missing); returns the stored text.
    pub fn hincr_by_float(&self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>, delta: f64) -> Result<Bytes> {
        ops::hashes::hincr_by_float(&self.inner, key, field, delta)
    }

    /// HRANDFIELD: with `count > 0` up to `count` distinct fields, with
    /// `count < 0` exactly `-count` fields that may repeat; fields with
    /// their values. O(|count|).
    pub fn hrandfield(&self, key: impl AsRef<[u8]>, count: i64) -> Result<Vec<(Blob, Blob)>> {
        ops::hashes::hrandfield(&self.inner, key, count)
    }

    // ----- scans -------------------------------------------------------------

    /// SCAN: one bounded step of an iteration over the keys. Start with
    /// cursor 0; the iteration is complete when the returned cursor is 0.
    /// Logically expired keys are skipped.
    ///
    /// ```
    /// use ringkv::{Engine, Config, ScanOptions};
    /// let engine = Engine::new(Config::default())?;
    /// for i in 0..100 { engine.set(format!("session:{i}"), "token")?; }
    /// let (mut cursor, mut seen) = (0, 0);
    /// loop {
    ///     let page = engine.scan(cursor, &ScanOptions::default().pattern("session:*"));
    ///     seen += page.items.len();
    ///     cursor = page.cursor;
    ///     if cursor == 0 { break; }
    /// }
    /// assert_eq!(seen, 100);
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn scan(&self, cursor: u64, opts: &ScanOptions) -> ScanPage<Blob> {
        ops::scan::scan(&self.inner, cursor, opts)
    }

    /// HSCAN: one bounded step of an iteration over the fields of a hash.
    /// A missing key is an empty, complete iteration.
    pub fn hscan(&self, key: impl AsRef<[u8]>, cursor: u64, opts: &ScanOptions) -> Result<ScanPage<(Blob, Blob)>> {
        ops::scan::hscan(&self.inner, key, cursor, opts)
    }

    /// An iterator over all keys, scanning in bounded steps and holding no
    /// lock between them (SCAN's guarantees apply).
    pub fn scan_iter(&self, opts: ScanOptions) -> ScanIter {
        ops::scan::scan_iter(&self.inner, opts)
    }

    /// An iterator over the fields of a hash, scanning in bounded steps and
    /// holding no lock between them (HSCAN's guarantees apply). Yields an
    /// error (once) if the key holds a string.
    ///
    /// ```
    /// use ringkv::{Engine, Config, ScanOptions};
    /// let engine = Engine::new(Config::default())?;
    /// engine.hset("h", (0..50).map(|i| (format!("f{i}"), "v")))?;
    /// let fields: Result<Vec<_>, _> = engine.hscan_iter("h", ScanOptions::default().count(20)).collect();
    /// assert_eq!(fields?.len(), 50);
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn hscan_iter(&self, key: impl AsRef<[u8]>, opts: ScanOptions) -> HScanIter {
        ops::scan::hscan_iter(&self.inner, key, opts)
    }

    // ----- batches, replay, stats --------------------------------------------

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
    pub fn write_batch(&self, batch: WriteBatch) -> Result<Vec<BatchReply>> {
        ops::batch::write_batch(&self.inner, batch)
    }

    /// Redis' WATCH + EXEC for a write batch: applies `batch` atomically
    /// only if no mutation touching one of `watched` (or every key, as
    /// FLUSHALL does) was logged since log offset `since` (take it with
    /// `engine.log()?.published()` when watching starts); `Ok(None)` and
    /// nothing applied otherwise. Needs a ring log.
    ///
    /// ```
    /// use ringkv::{Engine, WriteBatch};
    /// let engine = Engine::builder().anonymous_log().build()?;
    /// engine.set("balance", "10")?;
    /// let since = engine.log().unwrap().published();
    /// engine.set("balance", "20")?; // someone else wrote the watched key
    /// let mut batch = WriteBatch::new();
    /// batch.incr_by("balance", -3);
    /// assert!(engine.write_batch_if_unchanged(batch, &["balance"], since)?.is_none());
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn write_batch_if_unchanged<K: AsRef<[u8]>>(
        &self,
        batch: WriteBatch,
        watched: &[K],
        since: u64,
    ) -> Result<Option<Vec<BatchReply>>> {
        ops::batch::write_batch_if_unchanged(&self.inner, batch, watched, since)
    }

    /// Applies one mutation produced by another engine (or read back from a
    /// log), without consulting the clock and without sending it to this
    /// engine's sink. An engine that started from the same state and applies
    /// the same stream ends in the same state. A mutation that does not fit
    /// the current state is an [`Error::Apply`] and changes nothing.
    pub fn replay(&self, m: &Mutation) -> Result<()> {
        self.inner.replay_mutation(m, |_| {})
    }

    /// Applies one mutation produced by another engine as this engine's own
    /// write (a slot migration's target takes the source's keys this way):
    /// unlike [`Engine::replay`] it is refused on a follower or by the write
    /// gate, reaches the log (so followers and the durability setting see
    /// it), and is applied only if it fits the current state (an HSET on a
    /// string is an [`Error::Apply`] and changes nothing). A flush of every
    /// key is refused: the importer deletes the keys it owns instead.
    ///
    /// ```
    /// use ringkv::{Engine, MemorySink, Mutation};
    /// let sink = MemorySink::new();
    /// let target = Engine::builder().sink(sink.clone()).build()?;
    /// let m = Mutation::Set { key: "k".into(), value: "v".into(), expire_at: None };
    /// target.import(&m)?;
    /// assert_eq!(target.get("k")?.unwrap(), "v");
    /// assert_eq!(sink.len(), 1, "logged like any write");
    /// let wrong = Mutation::HSet { key: "k".into(), fields: vec![("f".into(), "v".into())] };
    /// assert!(matches!(target.import(&wrong), Err(ringkv::Error::Apply(_))));
    /// assert_eq!(sink.len(), 1, "nothing logged for what did not fit");
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn import(&self, m: &Mutation) -> Result<()> {
        ops::import::import(&self.inner, m)
    }

    /// Stops the active expiry until the returned hold (and every other)
    /// is dropped. A slot migration's target holds it while it imports, so
    /// that a key it copied never expires by its own clock before the
    /// source's deletion arrives (the source may still change the key). Keys
    /// still expire lazily: a read never sees an expired key.
    ///
    /// ```
    /// use ringkv::{Engine, ManualClock};
    /// let clock = ManualClock::new(1_000);
    /// let engine = Engine::builder().clock(clock.clone()).build()?;
    /// engine.set("token", "t")?;
    /// engine.pexpire("token", 10)?;
    /// clock.advance(100);
    /// let hold = engine.hold_active_expiry();
    /// assert_eq!(engine.active_expire_cycle(), 0, "held");
    /// drop(hold);
    /// assert_eq!(engine.active_expire_cycle(), 1);
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn hold_active_expiry(&self) -> ExpiryHold {
        self.inner.replica.hold_expiry(true);
        ExpiryHold { engine: self.clone() }
    }

    /// Current statistics.
    pub fn stats(&self) -> Stats {
        services::stats::collect(&self.inner)
    }

    /// Changes the memory limit (`maxmemory`, 0: none) and the eviction
    /// policy for the writes that follow, as Redis' `CONFIG SET maxmemory`
    /// and `maxmemory-policy` do. A limit below the memory in use evicts
    /// nothing at once: the next write that may add memory evicts, or is
    /// refused, as the policy says. A follower keeps the setting for when
    /// it is promoted (it never evicts itself).
    ///
    /// ```
    /// use ringkv::{Engine, Error, EvictionPolicy};
    /// let engine = Engine::builder().build()?;
    /// engine.set("a", "1")?;
    /// engine.set_memory_limit(1, EvictionPolicy::Noeviction);
    /// assert!(matches!(engine.set("b", "2"), Err(Error::OutOfMemory { .. })));
    /// assert_eq!(engine.memory_limit(), (1, EvictionPolicy::Noeviction));
    /// engine.set_memory_limit(0, EvictionPolicy::Noeviction);
    /// engine.set("b", "2")?;
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn set_memory_limit(&self, maxmemory: u64, policy: EvictionPolicy) {
        self.inner.set_memory_limit(maxmemory, policy);
    }

    /// The memory limit and eviction policy in force (the configured ones
    /// unless [`Engine::set_memory_limit`] changed them).
    pub fn memory_limit(&self) -> (u64, EvictionPolicy) {
        (self.inner.memory.limit(), self.inner.memory.policy())
    }

    /// Accounted memory in bytes (exact sum over shards; see [`Stats::used_memory`]).
    pub fn used_memory(&self) -> u64 {
        self.inner.keyspace.used_memory()
    }

    /// An order-independent digest of the whole keyspace: keys, types, values,
    /// hash fields and expiries. Two engines with equal digests hold the same
    /// data (up to a 64-bit collision). O(n); meant for tests and for checking
    /// that a follower or a recovery reproduced a primary.
    pub fn digest(&self) -> u64 {
        self.inner.keyspace.digest()
    }

    // ----- expiry ------------------------------------------------------------

    /// One active-expiry pass: in every shard, deletes keys whose expiry has
    /// passed, nearest first, at most `active_expire_keys_per_shard` per shard
    /// (each a logged `Delete { reason: Expired }`). Returns how many were
    /// deleted. The background thread calls this every
    /// `active_expire_interval_ms`; tests with a [`ManualClock`](crate::ManualClock)
    /// call it directly.
    pub fn active_expire_cycle(&self) -> usize {
        services::expiry::active_expire_cycle(&self.inner)
    }

    /// Moves up to `background_rehash_buckets` buckets in every shard that
    /// is resizing (in steps of 64, releasing the lock between steps), so
    /// resizes finish even without writes; then frees bucket arrays retired
    /// by finished resizes, outside the shard locks.
    pub fn background_rehash(&self) {
        services::expiry::background_rehash(&self.inner)
    }

    // ----- snapshots ---------------------------------------------------------

    /// Takes a point-in-time snapshot and streams it to `out` while writers
    /// go on: no fork, the cut costs one brief lock of every shard, and extra
    /// memory is bounded by `SnapshotConfig::buffer_bytes` (when `out` is
    /// slower than the writers, the walk pauses and writers that add to the
    /// backlog wait, never holding a lock, at most
    /// `SnapshotConfig::writer_wait_ms`). A failing `out` ends the snapshot
    /// early with its error. One such snapshot runs at a time (another
    /// fails with `SnapshotError::InProgress`), beside at most one
    /// [`Engine::save`]. Returns `out` and what was written.
    ///
    /// ```
    /// use ringkv::{Config, Engine};
    /// let engine = Engine::new(Config::default())?;
    /// engine.hset("h", [("f", "v")])?;
    /// let (bytes, info) = engine.snapshot_to(Vec::new())?;
    /// let copy = Engine::new(Config::default())?;
    /// copy.load_snapshot(&bytes[..])?;
    /// assert_eq!(copy.digest(), engine.digest());
    /// assert_eq!(info.keys, 1);
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn snapshot_to<W: Write + Send>(&self, out: W) -> Result<(W, SnapshotInfo)> {
        services::snapshot::snapshot_to(&self.inner, out)
    }

    /// As [`Engine::snapshot_to`], holding only the keys `keep` accepts (a
    /// slot migration copies the keys of its slots this way). The cut and
    /// the walk are the same (the walk still visits every key, writing only
    /// the kept ones); the header's `keys` is 0, as the keys kept are not
    /// counted at the cut, and [`SnapshotInfo::items`] counts what was
    /// written. It takes the one stream slot ([`Engine::snapshot_to`]'s).
    ///
    /// ```
    /// use ringkv::{Config, Engine};
    /// let engine = Engine::new(Config::default())?;
    /// engine.set("keep:1", "a")?;
    /// engine.set("drop:1", "b")?;
    /// let (bytes, _) = engine.snapshot_filtered_to(Vec::new(), |k| k.starts_with(b"keep:"))?;
    /// let copy = Engine::new(Config::default())?;
    /// copy.load_snapshot(&bytes[..])?;
    /// assert_eq!(copy.dbsize(), 1);
    /// assert!(copy.get("keep:1")?.is_some());
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn snapshot_filtered_to<W: Write + Send>(
        &self,
        out: W,
        keep: impl Fn(&[u8]) -> bool + Send + Sync + 'static,
    ) -> Result<(W, SnapshotInfo)> {
        services::snapshot::snapshot_filtered_to(&self.inner, out, Arc::new(keep))
    }

    /// SAVE: writes a snapshot file into the data directory (temporary name,
    /// fsync, atomic rename, directory fsync, keeping the last
    /// `SnapshotConfig::keep`), then lets the ring drop the history it covers.
    pub fn save(&self) -> Result<SnapshotInfo> {
        services::snapshot::save(&self.inner)
    }

    /// BGSAVE: starts [`Engine::save`] on a background thread; returns false
    /// if a save is already running (a running [`Engine::snapshot_to`], such
    /// as a follower's full sync, does not stop it: they run side by side).
    pub fn bgsave(&self) -> Result<bool> {
        services::snapshot::bgsave(&self.inner)
    }

    /// Loads a snapshot into this engine (meant to be empty), without
    /// logging what it loads; returns the snapshot's header. A damaged
    /// stream fails with [`SnapshotError::Corrupt`](crate::snapshot::SnapshotError::Corrupt) naming the byte position.
    pub fn load_snapshot(&self, input: impl Read) -> Result<SnapshotHeader> {
        services::snapshot::load_snapshot(&self.inner, input)
    }

    /// Waits for a background save to finish, then drops this handle. A
    /// background save holds the engine (and its data directory's lock)
    /// until it is done: call this before reopening the directory.
    pub fn close(self) {
        services::snapshot::wait_for_bgsave(&self.inner)
    }

    // ----- replication -------------------------------------------------------

    /// This engine's role.
    pub fn role(&self) -> Role {
        services::replica::role(&self.inner)
    }

    /// Makes this engine a follower (writes fail with [`Error::ReadOnly`];
    /// only [`Engine::replica_replay_ring`] changes the keyspace) or a primary
    /// again. Needs a ring log. Prefer [`Engine::promote`] to turn a follower
    /// into a primary: it starts a new history. A follower whose full sync
    /// is not saved yet saves it first (as [`Engine::promote`] does), and
    /// stays a follower if that fails.
    pub fn set_role(&self, role: Role) -> Result<()> {
        services::replica::set_role(&self.inner, role)
    }

    /// The offset this engine's keyspace reflects: on a follower, the end of
    /// the last applied record; on a primary, the end of its log.
    pub fn applied_offset(&self) -> u64 {
        services::replica::applied_offset(&self.inner)
    }

    /// Read-after-write on a follower: waits until the keyspace reflects
    /// `offset` (as returned by [`Engine::last_write_offset`] on the
    /// primary); returns whether it does.
    ///
    /// ```
    /// use ringkv::{Config, Engine};
    /// let engine = Engine::builder().anonymous_log().build()?;
    /// engine.set("k", "v")?;
    /// let at = engine.last_write_offset().unwrap();
    /// assert!(engine.wait_applied(at, std::time::Duration::from_millis(10)));
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        services::replica::wait_applied(&self.inner, offset, timeout)
    }

    /// End offset, in this engine's log, of the last write made by the
    /// calling thread on this engine (`None` before any, or without a log).
    /// Pass it to a follower's [`Engine::wait_applied`] for read-after-write,
    /// or to the primary's `wait_for_followers`.
    pub fn last_write_offset(&self) -> Option<u64> {
        services::replica::last_write_offset(&self.inner)
    }

    /// The offset up to which this engine's state survives a crash of the
    /// machine, at most [`Engine::applied_offset`]: what its newest durable
    /// snapshot holds, or its ring has synced above that (with
    /// `durability = always` every write and every appended batch; with
    /// `everysec` once a second; with `none` at [`Engine::sync`]). 0
    /// without a data directory, and while a full sync's data has no
    /// durable snapshot yet. A follower acks this as its durable offset.
    pub fn durable_offset(&self) -> u64 {
        services::replica::durable_offset(&self.inner)
    }

    /// Installs (or removes) a gate every write must pass first.
    pub fn set_write_gate(&self, gate: Option<Arc<dyn WriteGate>>) {
        services::replica::set_write_gate(&self.inner, gate)
    }

    /// Removes the write gate only if the one installed now is `gate` (the
    /// same `Arc`), so an owner that stops cannot remove a gate installed
    /// after its own; returns whether it did.
    ///
    /// ```
    /// use std::sync::Arc;
    /// struct Open;
    /// impl ringkv::WriteGate for Open {
    ///     fn admit(&self) -> Result<(), String> { Ok(()) }
    /// }
    /// let engine = ringkv::Engine::new(ringkv::Config::default())?;
    /// let mine: Arc<dyn ringkv::WriteGate> = Arc::new(Open);
    /// let newer: Arc<dyn ringkv::WriteGate> = Arc::new(Open);
    /// engine.set_write_gate(Some(newer));
    /// assert!(!engine.clear_write_gate_if(&mine), "not mine: kept");
    /// assert!(engine.write_gate().is_some());
    /// # Ok::<(), ringkv::Error>(())
    /// ```
    pub fn clear_write_gate_if(&self, gate: &Arc<dyn WriteGate>) -> bool {
        services::replica::clear_write_gate_if(&self.inner, gate)
    }

    /// The gate installed now, if any (to wrap it in another: a leader
    /// lease's fence around the replication primary's follower gate).
    pub fn write_gate(&self) -> Option<Arc<dyn WriteGate>> {
        services::replica::write_gate(&self.inner)
    }

    /// True while a full sync is loading: the keyspace still serves the
    /// previous data, which is stale.
    pub fn is_stale(&self) -> bool {
        services::replica::is_stale(&self.inner)
    }

    /// Follower: appends a primary's raw stream bytes (whole records
    /// starting at `start`) to this engine's ring at the same offsets, after
    /// checking them; bytes this ring already holds must be identical
    /// ([`LogError::Divergent`](crate::log::LogError::Divergent) otherwise). With `durability = always` the
    /// bytes are synced before it returns. When the ring is full, starts a
    /// snapshot to release history and waits for it (bounded by
    /// `snapshot.log_full_wait_ms`). During a full sync nothing can release
    /// the ring's history before [`Engine::swap_in`]: bytes that do not fit
    /// are refused at once with [`LogError::Full`](crate::log::LogError::Full), whatever the ring's
    /// retention (hold them, swap in, then append them). Returns the ring's
    /// new end. Does not apply: see [`Engine::replica_replay_ring`].
    pub fn replica_append(&self, start: u64, bytes: &[u8]) -> Result<u64> {
        services::replica::replica_append(&self.inner, start, bytes)
    }

    /// Follower: applies the ring's records from the applied offset up to
    /// `upto` (at most the ring's end) to the keyspace; returns the new
    /// applied offset. The applied offset moves under the shard locks of
    /// each record, so a snapshot's cut always matches its offset. A record
    /// that does not decode or apply here ([`Error::BadRecord`],
    /// [`Error::RecordRejected`]: the primary's state and this one differ)
    /// stops the replay; the ring is then cut back to the applied offset
    /// (after saving a snapshot there, in a data directory), so the
    /// directory still opens with everything applied.
    pub fn replica_replay_ring(&self, upto: u64) -> Result<u64> {
        services::replica::replay_ring(&self.inner, upto)
    }

    /// Follower: applies records given as raw stream bytes (whole records
    /// starting at `start`, as just passed to [`Engine::replica_append`]),
    /// without reading them back from the ring. Each payload is copied out
    /// on its own, as [`RingLog::read`](crate::log::RingLog::read) does: a
    /// value kept in the keyspace must not pin the whole received buffer.
    /// Records below the applied offset are skipped; `start` beyond it is
    /// an error (apply from the ring with [`Engine::replica_replay_ring`] first).
    /// A record that does not replay is handled as in
    /// [`Engine::replica_replay_ring`]. Returns the new applied offset.
    pub fn replica_replay_stream(&self, start: u64, bytes: &[u8]) -> Result<u64> {
        services::replica::replay_stream(&self.inner, start, bytes)
    }

    /// Follower, full sync: starts this engine's ring over at `offset` (the
    /// primary's snapshot offset) with the primary's history, keeping the
    /// keyspace as it is (served, stale, until [`Engine::swap_in`]). In a data
    /// directory a marker file makes a crash before the swap restart empty
    /// (and full-sync again) instead of mixing histories; the directory's
    /// old snapshots are removed. Waits for a running save to finish.
    pub fn replica_begin_full_sync(
        &self,
        offset: u64,
        replid: &str,
        prev_replid: &str,
        switch_offset: u64,
    ) -> Result<()> {
        services::replica::replica_begin_full_sync(&self.inner, offset, replid, prev_replid, switch_offset)
    }

    /// Follower: adopts the primary's replication history (its replid,
    /// previous replid and switch offset) after a partial resync, so that
    /// this ring's header names the history its bytes belong to.
    pub fn replica_adopt_history(&self, replid: &str, prev_replid: &str, switch_offset: u64) -> Result<()> {
        services::replica::adopt_history(&self.inner, replid, prev_replid, switch_offset)
    }

    /// An empty engine with this engine's configuration and hashing, without
    /// a log or background thread: where a full sync loads the primary's
    /// snapshot while this engine keeps serving. Pass it to
    /// [`Engine::swap_in`] when it is complete.
    pub fn staging(&self) -> Result<Engine> {
        Engine::builder()
            .config(services::replica::staging_config(&self.inner))
            .build()
    }

    /// Follower, end of a full sync: applies this engine's ring from the
    /// snapshot's offset to its end into `staging` (loaded from the
    /// primary's snapshot at `snapshot_offset`), then swaps the two
    /// keyspaces in one step under every shard lock. Readers see the old
    /// data or the new, never a mix. `staging` ends up with the old data.
    /// In a data directory a snapshot of the new data is saved before it
    /// returns (clearing the full-sync mark): the full sync is complete on
    /// disk when this returns `Ok`. If that save fails, the new data is
    /// swapped in (no longer stale) but the error is returned and the mark
    /// stays: a crash restarts empty, [`Engine::durable_offset`] is 0, and
    /// [`Engine::promote`] saves before it takes writes.
    pub fn swap_in(&self, staging: &Engine, snapshot_offset: u64) -> Result<u64> {
        services::replica::swap_in(&self.inner, &staging.inner, snapshot_offset)
    }

    /// Turns this follower into a primary with a new replication id,
    /// keeping the previous id and the switch offset (its applied offset) in
    /// the ring's header: followers of the old primary that are at or below
    /// that offset continue with a partial resync. Stop the replication
    /// session first (`Follower::promote` does): bytes appended after the
    /// switch offset is taken would otherwise stay in the ring unapplied.
    /// A full sync whose data has no durable snapshot yet is saved first;
    /// if that fails, the engine stays a follower (no write is taken that a
    /// crash would wipe).
    pub fn promote(&self) -> Result<Promotion> {
        services::replica::promote(&self.inner)
    }

    // ----- former names ----------------------------------------------------

    /// Former name of [`Engine::replay`].
    #[deprecated(
        since = "0.1.0",
        note = "renamed to `replay`: `apply` now names only the keyspace's apply path"
    )]
    pub fn apply(&self, m: &Mutation) -> Result<()> {
        self.replay(m)
    }

    /// Former name of [`Engine::replica_replay_ring`].
    #[deprecated(since = "0.1.0", note = "renamed to `replica_replay_ring`")]
    pub fn replica_apply(&self, upto: u64) -> Result<u64> {
        self.replica_replay_ring(upto)
    }

    /// Former name of [`Engine::replica_replay_stream`].
    #[deprecated(since = "0.1.0", note = "renamed to `replica_replay_stream`")]
    pub fn replica_apply_stream(&self, start: u64, bytes: &[u8]) -> Result<u64> {
        self.replica_replay_stream(start, bytes)
    }
}

/// A hold of an engine's active expiry ([`Engine::hold_active_expiry`]),
/// released on drop.
#[derive(Debug)]
#[must_use = "the active expiry resumes when the hold is dropped"]
pub struct ExpiryHold {
    engine: Engine,
}

impl Drop for ExpiryHold {
    fn drop(&mut self) {
        self.engine.inner.replica.hold_expiry(false);
    }
}
