//! Atomic write batches: several operations on several keys as one unit.

use bytes::Bytes;

use super::check_key;
use super::{hashes, keys, strings};
use crate::core::{Inner, Writer};
use crate::error::{Error, Result};
use crate::log::record::decode_mutation;
use crate::log::RingLog;
use crate::ops::strings::{SetOptions, SetOutcome};
use crate::stats::Op;

/// Operations to apply atomically with [`Engine::write_batch`](crate::Engine::write_batch).
///
/// The batch locks the shards of all its keys (in index order), runs the
/// operations in order, and either commits all of them as one
/// `Mutation::Batch` or, if any fails, none.
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
    /// APPEND (new length), HSET (new fields), HDEL (removed fields).
    Count(usize),
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
            | BatchOp::HIncrBy { key, .. } => key,
        }
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
            BatchOp::HSet { key, fields } => BatchReply::Count(hashes::plan_hset(w, &key, h, fields)?),
            BatchOp::HDel { key, fields } => BatchReply::Count(hashes::plan_hdel(w, &key, h, &fields)?),
            BatchOp::HIncrBy { key, field, delta } => BatchReply::Int(hashes::plan_hincr(w, &key, h, &field, delta)?),
        })
    }
}

pub(crate) fn write_batch(inner: &Inner, batch: WriteBatch) -> Result<Vec<BatchReply>> {
    let ops = batch.into_ops();
    for op in &ops {
        op.check(inner)?;
    }
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    inner.ensure_memory()?;
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
    inner.ensure_memory()?;
    let mut hashes: Vec<u64> = ops.iter().map(|op| inner.keyspace.hash(op.key())).collect();
    let ops_len = hashes.len();
    hashes.extend(watched.iter().map(|k| inner.keyspace.hash(k.as_ref())));
    if hashes.is_empty() {
        return Ok(Some(Vec::new()));
    }
    inner.write(&hashes, true, |w| {
        if logged_since(log, watched, since) {
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

/// Did a record from `since` on touch one of `keys` (or every key)?
fn logged_since<K: AsRef<[u8]>>(log: &RingLog, keys: &[K], since: u64) -> bool {
    let end = log.published();
    let mut pos = since;
    while pos < end {
        let Ok(batch) = log.read(pos, 1 << 20) else { return true };
        for (_, payload) in batch.records {
            let Ok(m) = decode_mutation(payload) else { return true };
            if m.touches_all_keys() {
                return true;
            }
            let mut hit = false;
            m.for_each_key(&mut |k| hit |= keys.iter().any(|w| w.as_ref() == k));
            if hit {
                return true;
            }
        }
        if batch.next <= pos {
            return true;
        }
        pos = batch.next;
    }
    false
}
