//! Atomic write batches: several operations on several keys as one unit,
//! with reads that see one point in time and the batch's earlier writes
//! (what Redis' MULTI/EXEC needs).

use bytes::Bytes;

use super::check_key;
use super::{hashes, keys, strings};
use crate::blob::Blob;
use crate::core::{Inner, Writer};
use crate::error::{Error, Result};
use crate::keyspace::{KeyEntry, Value};
use crate::ops::keys::{KeyType, Ttl};
use crate::ops::strings::{SetOptions, SetOutcome};
use crate::stats::Op;

/// Operations to apply atomically with [`Engine::write_batch`](crate::Engine::write_batch).
///
/// The batch locks the shards of all its keys (in index order), runs the
/// operations in order, and either commits all of them as one
/// `Mutation::Batch` or, if any fails, none. Its reads (GET, EXISTS, TTL,
/// TYPE, HGET, HGETALL, HLEN, HEXISTS) run under the same locks: they see
/// the batch's earlier writes and nothing of anyone else's until the batch
/// ends. A batch of reads alone logs nothing.
///
/// ```
/// use ringkv::{BatchReply, Engine, WriteBatch};
/// let engine = Engine::builder().build()?;
/// engine.set("stock", "5")?;
/// let mut batch = WriteBatch::new();
/// batch.get("stock").incr_by("stock", -2).get("stock");
/// let replies = engine.write_batch(batch)?;
/// assert_eq!(replies[0], BatchReply::Value(Some("5".into())));
/// assert_eq!(replies[1], BatchReply::Int(3));
/// assert_eq!(replies[2], BatchReply::Value(Some("3".into())));
/// # Ok::<(), ringkv::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

/// The reply of one operation of a batch, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchReply {
    /// SET.
    Set(SetOutcome),
    /// DEL, EXPIRE, PERSIST: whether the key existed / the change applied.
    Bool(bool),
    /// INCRBY, HINCRBY: the new value.
    Int(i64),
    /// APPEND (new length), HSET (new fields), HDEL (removed fields), HLEN.
    Count(usize),
    /// GET, HGET: the value, if any.
    Value(Option<Blob>),
    /// TYPE: the key's type, if it exists.
    Type(Option<KeyType>),
    /// TTL.
    Ttl(Ttl),
    /// HGETALL: every field and value.
    Pairs(Vec<(Blob, Blob)>),
}

#[derive(Debug, Clone)]
pub(crate) enum BatchOp {
    Set { key: Bytes, value: Bytes, opts: SetOptions },
    Del { key: Bytes },
    IncrBy { key: Bytes, delta: i64 },
    Append { key: Bytes, value: Bytes },
    PExpire { key: Bytes, millis: i64 },
    PExpireAt { key: Bytes, unix_millis: i64 },
    Persist { key: Bytes },
    HSet { key: Bytes, fields: Vec<(Bytes, Bytes)> },
    HDel { key: Bytes, fields: Vec<Bytes> },
    HIncrBy { key: Bytes, field: Bytes, delta: i64 },
    Get { key: Bytes },
    Exists { key: Bytes },
    Ttl { key: Bytes },
    Type { key: Bytes },
    HGet { key: Bytes, field: Bytes },
    HGetAll { key: Bytes },
    HLen { key: Bytes },
    HExists { key: Bytes, field: Bytes },
}

fn b(x: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(x.as_ref())
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if the batch has no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// SET.
    pub fn set(&mut self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> &mut Self {
        self.set_with(key, value, SetOptions::new())
    }

    /// SET with options.
    pub fn set_with(&mut self, key: impl AsRef<[u8]>, value: impl Into<Bytes>, opts: SetOptions) -> &mut Self {
        self.ops.push(BatchOp::Set {
            key: b(key),
            value: value.into(),
            opts,
        });
        self
    }

    /// DEL of one key.
    pub fn del(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::Del { key: b(key) });
        self
    }

    /// INCRBY.
    pub fn incr_by(&mut self, key: impl AsRef<[u8]>, delta: i64) -> &mut Self {
        self.ops.push(BatchOp::IncrBy { key: b(key), delta });
        self
    }

    /// APPEND.
    pub fn append(&mut self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> &mut Self {
        self.ops.push(BatchOp::Append {
            key: b(key),
            value: value.into(),
        });
        self
    }

    /// PEXPIRE (relative to the time the batch runs).
    pub fn pexpire(&mut self, key: impl AsRef<[u8]>, millis: i64) -> &mut Self {
        self.ops.push(BatchOp::PExpire { key: b(key), millis });
        self
    }

    /// PEXPIREAT.
    pub fn pexpire_at(&mut self, key: impl AsRef<[u8]>, unix_millis: i64) -> &mut Self {
        self.ops.push(BatchOp::PExpireAt {
            key: b(key),
            unix_millis,
        });
        self
    }

    /// PERSIST.
    pub fn persist(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::Persist { key: b(key) });
        self
    }

    /// HSET.
    pub fn hset<F: AsRef<[u8]>, V: Into<Bytes>>(
        &mut self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = (F, V)>,
    ) -> &mut Self {
        let fields = fields.into_iter().map(|(f, v)| (b(f), v.into())).collect();
        self.ops.push(BatchOp::HSet { key: b(key), fields });
        self
    }

    /// HDEL.
    pub fn hdel<F: AsRef<[u8]>>(&mut self, key: impl AsRef<[u8]>, fields: impl IntoIterator<Item = F>) -> &mut Self {
        let fields = fields.into_iter().map(b).collect();
        self.ops.push(BatchOp::HDel { key: b(key), fields });
        self
    }

    /// HINCRBY.
    pub fn hincr_by(&mut self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>, delta: i64) -> &mut Self {
        self.ops.push(BatchOp::HIncrBy {
            key: b(key),
            field: b(field),
            delta,
        });
        self
    }

    /// GET (a hash is a WRONGTYPE error, failing the batch).
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::Get { key: b(key) });
        self
    }

    /// EXISTS of one key.
    pub fn exists(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::Exists { key: b(key) });
        self
    }

    /// TTL, at the time the batch runs.
    pub fn ttl(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::Ttl { key: b(key) });
        self
    }

    /// TYPE.
    pub fn key_type(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::Type { key: b(key) });
        self
    }

    /// HGET (a string is a WRONGTYPE error, failing the batch).
    pub fn hget(&mut self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::HGet {
            key: b(key),
            field: b(field),
        });
        self
    }

    /// HGETALL (O(fields), under the batch's locks).
    pub fn hgetall(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::HGetAll { key: b(key) });
        self
    }

    /// HLEN.
    pub fn hlen(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::HLen { key: b(key) });
        self
    }

    /// HEXISTS.
    pub fn hexists(&mut self, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::HExists {
            key: b(key),
            field: b(field),
        });
        self
    }

    pub(crate) fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
}

impl BatchOp {
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            BatchOp::Set { key, .. }
            | BatchOp::Del { key }
            | BatchOp::IncrBy { key, .. }
            | BatchOp::Append { key, .. }
            | BatchOp::PExpire { key, .. }
            | BatchOp::PExpireAt { key, .. }
            | BatchOp::Persist { key }
            | BatchOp::HSet { key, .. }
            | BatchOp::HDel { key, .. }
            | BatchOp::HIncrBy { key, .. }
            | BatchOp::Get { key }
            | BatchOp::Exists { key }
            | BatchOp::Ttl { key }
            | BatchOp::Type { key }
            | BatchOp::HGet { key, .. }
            | BatchOp::HGetAll { key }
            | BatchOp::HLen { key }
            | BatchOp::HExists { key, .. } => key,
        }
    }

    /// Does this operation only read?
    fn is_read(&self) -> bool {
        matches!(
            self,
            BatchOp::Get { .. }
                | BatchOp::Exists { .. }
                | BatchOp::Ttl { .. }
                | BatchOp::Type { .. }
                | BatchOp::HGet { .. }
                | BatchOp::HGetAll { .. }
                | BatchOp::HLen { .. }
                | BatchOp::HExists { .. }
        )
    }

    /// Argument checks that need no state.
    pub(crate) fn check(&self, inner: &Inner) -> Result<()> {
        match self {
            BatchOp::Set { key, value, opts } => strings::check_set(inner, key, value, *opts),
            BatchOp::HSet { key, fields } => hashes::check_hset(inner, key, fields),
            BatchOp::HIncrBy { key, field, .. } => hashes::check_hincr(inner, key, field),
            other => check_key(inner, other.key()),
        }
    }

    pub(crate) fn run(self, w: &mut Writer<'_>, h: u64) -> Result<BatchReply> {
        Ok(match self {
            BatchOp::Set { key, value, opts } => BatchReply::Set(strings::plan_set(w, &key, h, value, opts)?),
            BatchOp::Del { key } => BatchReply::Bool(keys::plan_del(w, &key, h)?),
            BatchOp::IncrBy { key, delta } => BatchReply::Int(strings::plan_incr(w, &key, h, delta)?),
            BatchOp::Append { key, value } => BatchReply::Count(strings::plan_append(w, &key, h, value)?),
            BatchOp::PExpire { key, millis } => {
                let at = (w.now() as i64).checked_add(millis).ok_or(Error::InvalidExpire)?;
                BatchReply::Bool(keys::plan_expire_at(w, &key, h, at)?)
            }
            BatchOp::PExpireAt { key, unix_millis } => BatchReply::Bool(keys::plan_expire_at(w, &key, h, unix_millis)?),
            BatchOp::Persist { key } => BatchReply::Bool(keys::plan_persist(w, &key, h)?),
            BatchOp::HSet { key, fields } => BatchReply::Count(hashes::plan_hset(w, &key, h, &fields)?),
            BatchOp::HDel { key, fields } => BatchReply::Count(hashes::plan_hdel(w, &key, h, &fields)?),
            BatchOp::HIncrBy { key, field, delta } => BatchReply::Int(hashes::plan_hincr(w, &key, h, &field, delta)?),
            BatchOp::Get { key } => BatchReply::Value(
                read_locked(w, &key, h, |e, _| match &e.value {
                    Value::Str(v) => Ok(v.clone()),
                    Value::Hash(_) => Err(Error::WrongType),
                })?
                .transpose()?,
            ),
            BatchOp::Exists { key } => BatchReply::Bool(read_locked(w, &key, h, |_, _| ())?.is_some()),
            BatchOp::Ttl { key } => BatchReply::Ttl(
                match read_locked(w, &key, h, |e, now| e.expire().map(|at| at.saturating_sub(now)))? {
                    None => Ttl::Missing,
                    Some(None) => Ttl::Persistent,
                    Some(Some(ms)) => Ttl::ExpiresIn(ms),
                },
            ),
            BatchOp::Type { key } => BatchReply::Type(read_locked(w, &key, h, |e, _| match e.value {
                Value::Str(_) => KeyType::String,
                Value::Hash(_) => KeyType::Hash,
            })?),
            BatchOp::HGet { key, field } => {
                let fh = w.inner.keyspace.hashing().hash(&field) as u32;
                let v = read_hash_locked(w, &key, h, |hv| hv.get(fh, &field).cloned())?;
                BatchReply::Value(v.flatten())
            }
            BatchOp::HGetAll { key } => BatchReply::Pairs(
                read_hash_locked(w, &key, h, |hv| {
                    hv.table.iter().map(|e| (e.field.clone(), e.value.clone())).collect()
                })?
                .unwrap_or_default(),
            ),
            BatchOp::HLen { key } => BatchReply::Count(read_hash_locked(w, &key, h, |hv| hv.len())?.unwrap_or(0)),
            BatchOp::HExists { key, field } => {
                let fh = w.inner.keyspace.hashing().hash(&field) as u32;
                BatchReply::Bool(read_hash_locked(w, &key, h, |hv| hv.get(fh, &field).is_some())?.unwrap_or(false))
            }
        })
    }
}

/// Reads the live entry of `key` under the batch's locks (an expired one
/// is deleted first, as every write does); `f` gets the entry and the
/// batch's clock.
fn read_locked<R>(w: &mut Writer<'_>, key: &[u8], h: u64, f: impl FnOnce(&KeyEntry, u64) -> R) -> Result<Option<R>> {
    let Some(idx) = w.live(key, h)? else {
        return Ok(None);
    };
    let now = w.now();
    Ok(Some(f(w.entry(h, idx), now)))
}

/// [`read_locked`] of a hash; a string is [`Error::WrongType`].
fn read_hash_locked<R>(
    w: &mut Writer<'_>,
    key: &[u8],
    h: u64,
    f: impl FnOnce(&crate::keyspace::HashValue) -> R,
) -> Result<Option<R>> {
    read_locked(w, key, h, |e, _| match &e.value {
        Value::Hash(hv) => Ok(f(hv)),
        Value::Str(_) => Err(Error::WrongType),
    })?
    .transpose()
}

pub(crate) fn write_batch(inner: &Inner, batch: WriteBatch) -> Result<Vec<BatchReply>> {
    let ops = batch.into_ops();
    for op in &ops {
        op.check(inner)?;
    }
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    if !ops.iter().all(BatchOp::is_read) {
        inner.ensure_memory()?;
    }
    let hashes: Vec<u64> = ops.iter().map(|op| inner.keyspace.hash(op.key())).collect();
    inner.write(&hashes, true, |w| {
        w.inner.ops.count(Op::Batch);
        ops.into_iter().zip(&hashes).map(|(op, &h)| op.run(w, h)).collect()
    })
}

/// As [`write_batch`], but only if no mutation touching one of `watched`
/// (or touching every key: FLUSHALL) was logged from `since` on; `None`
/// (nothing applied) otherwise. Redis' WATCH + EXEC: the check runs under
/// the write locks of the batch's keys and the watched keys, and every
/// write of a key publishes its record before releasing that key's shard
/// lock, so nothing can change a watched key between the check and the
/// batch. A log that no longer holds `since` counts as a change.
pub(crate) fn write_batch_if_unchanged<K: AsRef<[u8]>>(
    inner: &Inner,
    batch: WriteBatch,
    watched: &[K],
    since: u64,
) -> Result<Option<Vec<BatchReply>>> {
    let ops = batch.into_ops();
    for op in &ops {
        op.check(inner)?;
    }
    let log = inner.sink.require_log()?;
    if !ops.iter().all(BatchOp::is_read) {
        inner.ensure_memory()?;
    }
    let mut hashes: Vec<u64> = ops.iter().map(|op| inner.keyspace.hash(op.key())).collect();
    let ops_len = hashes.len();
    hashes.extend(watched.iter().map(|k| inner.keyspace.hash(k.as_ref())));
    if hashes.is_empty() {
        return Ok(Some(Vec::new()));
    }
    inner.write(&hashes, true, |w| {
        if crate::log::view::touched_since(log, watched, since) {
            return Ok(None);
        }
        w.inner.ops.count(Op::Batch);
        let replies = ops
            .into_iter()
            .zip(&hashes[..ops_len])
            .map(|(op, &h)| op.run(w, h))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(replies))
    })
}
