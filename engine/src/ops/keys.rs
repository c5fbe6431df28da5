//! Keyspace commands: DEL, EXISTS, TYPE, the expire family, TTL/PTTL,
//! PERSIST, RENAME/RENAMENX, DBSIZE, FLUSHALL. Checks and plans as in
//! `ops/strings.rs`.

use bytes::Bytes;

use super::check_key;
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
