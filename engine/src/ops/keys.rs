//! Keyspace commands: DEL, EXISTS, TYPE, the expire family, TTL/PTTL,
//! PERSIST, RENAME/RENAMENX, DBSIZE, FLUSHALL. Checks and plans as in
//! `ops/strings.rs`.

use bytes::Bytes;

use super::check_key;
use crate::blob::Blob;
use crate::core::{Inner, Writer};
use crate::error::{Error, Result};
use crate::keyspace::Value;
use crate::mutation::{DeleteReason, Mutation};
use crate::stats::Op;

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

pub(crate) fn del<K: AsRef<[u8]>>(inner: &Inner, keys: impl IntoIterator<Item = K>) -> Result<u64> {
    let keys: Vec<K> = keys.into_iter().collect();
    let hashes: Vec<u64> = keys.iter().map(|k| inner.keyspace.hash(k.as_ref())).collect();
    if hashes.is_empty() {
        return Ok(0);
    }
    inner.write(&hashes, false, |w| {
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

pub(crate) fn exists<K: AsRef<[u8]>>(inner: &Inner, keys: impl IntoIterator<Item = K>) -> u64 {
    keys.into_iter()
        .filter(|k| inner.read(k.as_ref(), Op::Exists, |_| ()).is_some())
        .count() as u64
}

pub(crate) fn key_type(inner: &Inner, key: impl AsRef<[u8]>) -> Option<KeyType> {
    inner.read(key.as_ref(), Op::Type, |e| match e.value {
        Value::Str(_) => KeyType::String,
        Value::Hash(_) => KeyType::Hash,
    })
}

pub(crate) fn expire(inner: &Inner, key: impl AsRef<[u8]>, seconds: i64) -> Result<bool> {
    let ms = seconds.checked_mul(1000).ok_or(Error::InvalidExpire)?;
    pexpire(inner, key, ms)
}

pub(crate) fn pexpire(inner: &Inner, key: impl AsRef<[u8]>, millis: i64) -> Result<bool> {
    let now = inner.clock.now_ms() as i64;
    pexpire_at(inner, key, now.checked_add(millis).ok_or(Error::InvalidExpire)?)
}

pub(crate) fn expire_at(inner: &Inner, key: impl AsRef<[u8]>, unix_seconds: i64) -> Result<bool> {
    pexpire_at(inner, key, unix_seconds.checked_mul(1000).ok_or(Error::InvalidExpire)?)
}

pub(crate) fn pexpire_at(inner: &Inner, key: impl AsRef<[u8]>, unix_millis: i64) -> Result<bool> {
    let key = key.as_ref();
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::Expire);
        plan_expire_at(w, key, h, unix_millis)
    })
}

pub(crate) fn ttl(inner: &Inner, key: impl AsRef<[u8]>) -> Ttl {
    let now = inner.clock.now_ms();
    inner
        .read(key.as_ref(), Op::Ttl, |e| match e.expire() {
            None => Ttl::Persistent,
            Some(t) => Ttl::ExpiresIn(t.saturating_sub(now)),
        })
        .unwrap_or(Ttl::Missing)
}

pub(crate) fn persist(inner: &Inner, key: impl AsRef<[u8]>) -> Result<bool> {
    let key = key.as_ref();
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::Persist);
        plan_persist(w, key, h)
    })
}

/// RENAME (`nx` false) and RENAMENX.
pub(crate) fn rename(inner: &Inner, from: &[u8], to: &[u8], nx: bool) -> Result<bool> {
    check_key(inner, to)?;
    let (hf, ht) = (inner.keyspace.hash(from), inner.keyspace.hash(to));
    inner.write(&[hf, ht], false, |w| {
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

pub(crate) fn dbsize(inner: &Inner) -> u64 {
    inner.keyspace.iter().map(|s| s.read().table.len() as u64).sum()
}

pub(crate) fn flush(inner: &Inner) -> Result<()> {
    inner.write_all(|w| {
        w.inner.ops.count(Op::Flush);
        w.commit(Mutation::Flush).map(|_| ())
    })
}

/// When EXPIRE applies (Redis 7's NX, XX, GT, LT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExpireCondition {
    /// Always.
    #[default]
    Always,
    /// Only if the key has no expiry (NX).
    IfNone,
    /// Only if the key has an expiry (XX).
    IfSome,
    /// Only if the new expiry is later than the current one; a key without
    /// expiry counts as never expiring, so it never applies (GT).
    IfLater,
    /// Only if the new expiry is earlier than the current one; a key
    /// without expiry counts as never expiring, so it always applies (LT).
    IfEarlier,
    /// Only if the key has an expiry and the new one is earlier (LT with
    /// XX). GT with XX needs no variant: [`ExpireCondition::IfLater`]
    /// already requires an expiry.
    IfSomeAndEarlier,
}

impl ExpireCondition {
    /// Does an expiry at `new` apply to a key whose expiry is `current`?
    fn admits(self, current: Option<u64>, new: i64) -> bool {
        match (self, current) {
            (ExpireCondition::Always, _) => true,
            (ExpireCondition::IfNone, c) => c.is_none(),
            (ExpireCondition::IfSome, c) => c.is_some(),
            (ExpireCondition::IfLater, None) => false,
            (ExpireCondition::IfLater, Some(c)) => new > c as i64,
            (ExpireCondition::IfEarlier, None) => true,
            (ExpireCondition::IfEarlier | ExpireCondition::IfSomeAndEarlier, Some(c)) => new < c as i64,
            (ExpireCondition::IfSomeAndEarlier, None) => false,
        }
    }
}

pub(crate) fn plan_expire_at(w: &mut Writer<'_>, key: &[u8], h: u64, unix_millis: i64) -> Result<bool> {
    plan_expire_at_if(w, key, h, unix_millis, ExpireCondition::Always)
}

pub(crate) fn plan_expire_at_if(
    w: &mut Writer<'_>,
    key: &[u8],
    h: u64,
    unix_millis: i64,
    cond: ExpireCondition,
) -> Result<bool> {
    let Some(idx) = w.live(key, h)? else {
        return Ok(false);
    };
    if !cond.admits(w.entry(h, idx).expire(), unix_millis) {
        return Ok(false);
    }
    commit_expire_at(w, key, unix_millis)?;
    Ok(true)
}

/// Gives the live `key` the expiry `unix_millis`, or deletes it (a logged
/// expiry deletion) when that time is not in the future. EXPIRE and GETEX
/// share it.
pub(crate) fn commit_expire_at(w: &mut Writer<'_>, key: &[u8], unix_millis: i64) -> Result<()> {
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
    Ok(())
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

pub(crate) fn pexpire_at_if(
    inner: &Inner,
    key: impl AsRef<[u8]>,
    unix_millis: i64,
    cond: ExpireCondition,
) -> Result<bool> {
    let key = key.as_ref();
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::Expire);
        plan_expire_at_if(w, key, h, unix_millis, cond)
    })
}

/// EXPIRETIME / PEXPIRETIME: `None` if the key is missing, `Some(None)`
/// if it has no expiry, else its absolute expiry in unix milliseconds.
pub(crate) fn expire_time(inner: &Inner, key: impl AsRef<[u8]>) -> Option<Option<u64>> {
    inner.read(key.as_ref(), Op::Ttl, |e| e.expire())
}

/// COPY: `dst` gets a copy of `src`'s value and expiry (one batch
/// mutation); false if `src` is missing, or `dst` exists and not `replace`.
pub(crate) fn copy(inner: &Inner, src: impl AsRef<[u8]>, dst: impl AsRef<[u8]>, replace: bool) -> Result<bool> {
    let (src, dst) = (src.as_ref(), dst.as_ref());
    check_key(inner, dst)?;
    if src == dst {
        return Err(Error::InvalidArgument("source and destination objects are the same"));
    }
    inner.ensure_memory()?;
    let (hs, hd) = (inner.keyspace.hash(src), inner.keyspace.hash(dst));
    inner.write(&[hs, hd], false, |w| {
        w.inner.ops.count(Op::Copy);
        let Some(idx) = w.live(src, hs)? else {
            return Ok(false);
        };
        let e = w.entry(hs, idx);
        let expire_at = e.expire();
        let dst_key = Bytes::copy_from_slice(dst);
        let value = match &e.value {
            Value::Str(b) => Mutation::Set {
                key: dst_key.clone(),
                value: Bytes::copy_from_slice(b),
                expire_at,
            },
            Value::Hash(hv) => Mutation::HSet {
                key: dst_key.clone(),
                fields: hv
                    .table
                    .iter()
                    .map(|f| (Bytes::copy_from_slice(&f.field), Bytes::copy_from_slice(&f.value)))
                    .collect(),
            },
        };
        let is_hash = matches!(value, Mutation::HSet { .. });
        let dst_exists = w.live(dst, hd)?.is_some();
        if dst_exists && !replace {
            return Ok(false);
        }
        let mut ms = Vec::new();
        if dst_exists {
            ms.push(Mutation::Delete {
                keys: vec![dst_key.clone()],
                reason: DeleteReason::User,
            });
        }
        ms.push(value);
        if is_hash && expire_at.is_some() {
            ms.push(Mutation::Expire {
                key: dst_key,
                expire_at,
            });
        }
        w.commit(Mutation::Batch(ms))?;
        Ok(true)
    })
}

/// RANDOMKEY: a key picked at random (live: an expired pick is skipped),
/// or `None` when the keyspace is empty. Not uniform across shards of
/// different sizes.
pub(crate) fn random_key(inner: &Inner) -> Option<Blob> {
    inner.ops.count(Op::RandomKey);
    let shards = inner.keyspace.shard_count();
    let now = inner.clock.now_ms();
    for _ in 0..(shards * 4).max(16) {
        let s = (inner.memory.random() % shards as u64) as usize;
        let shard = inner.keyspace.shard(s).read();
        let len = shard.table.len();
        if len == 0 {
            continue;
        }
        let e = shard.entry((inner.memory.random() % len as u64) as usize);
        if e.expire_at == 0 || !e.is_expired(now) {
            return Some(e.key.clone());
        }
    }
    // Sampling missed: the first live key in shard order.
    inner.keyspace.iter().find_map(|shard| {
        let shard = shard.read();
        let found = shard
            .table
            .iter()
            .find(|e| e.expire_at == 0 || !e.is_expired(now))
            .map(|e| e.key.clone());
        found
    })
}
