//! String commands: GET, SET (NX/XX, EX/PX/EXAT/PXAT/KEEPTTL, GET),
//! INCRBY, APPEND, MGET, MSET. Each command checks its arguments, then
//! *plans* its mutation under the shard lock (`plan_*`, shared with
//! [`WriteBatch`](crate::WriteBatch)) and commits it through the [`Writer`].

use bytes::Bytes;
use parking_lot::RwLockReadGuard;

use super::keys::commit_expire_at;
use super::{check_key, check_value};
use crate::blob::Blob;
use crate::codec::{format_f64, parse_f64, parse_i64};
use crate::core::{Inner, Writer};
use crate::error::{Error, Result};
use crate::keyspace::{Shard, Value};
use crate::mutation::{DeleteReason, Mutation};
use crate::stats::Op;

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

/// Options of [`Engine::set_with`](crate::Engine::set_with) (Redis' SET flags).
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

/// What [`Engine::set_with`](crate::Engine::set_with) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// False when NX/XX prevented the write.
    pub applied: bool,
    /// The previous string value, when `get` was asked for.
    pub previous: Option<Blob>,
}

pub(crate) fn get(inner: &Inner, key: impl AsRef<[u8]>) -> Result<Option<Blob>> {
    inner
        .read(key.as_ref(), Op::Get, |e| match &e.value {
            Value::Str(b) => Ok(b.clone()),
            Value::Hash(_) => Err(Error::WrongType),
        })
        .transpose()
}

/// SET's argument checks (the single command and a batch's SET).
pub(crate) fn check_set(inner: &Inner, key: &[u8], value: &[u8], opts: SetOptions) -> Result<()> {
    check_key(inner, key)?;
    check_value(inner, value.len())?;
    if matches!(opts.expiry, SetExpiry::Seconds(0) | SetExpiry::Millis(0)) {
        return Err(Error::InvalidExpire);
    }
    Ok(())
}

pub(crate) fn set_with(
    inner: &Inner,
    key: impl AsRef<[u8]>,
    value: impl Into<Bytes>,
    opts: SetOptions,
) -> Result<SetOutcome> {
    let key = key.as_ref();
    let value = value.into();
    check_set(inner, key, &value, opts)?;
    inner.ensure_memory()?;
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::Set);
        plan_set(w, key, h, value, opts)
    })
}

pub(crate) fn incr_by(inner: &Inner, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
    let key = key.as_ref();
    check_key(inner, key)?;
    inner.ensure_memory()?;
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::IncrBy);
        plan_incr(w, key, h, delta)
    })
}

pub(crate) fn append(inner: &Inner, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<usize> {
    let key = key.as_ref();
    let value = value.into();
    check_key(inner, key)?;
    inner.ensure_memory()?;
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::Append);
        plan_append(w, key, h, value)
    })
}

/// Engines with at most this many shards read-lock MGET's shards through
/// an array on the stack (a bit set picks them in index order); more use a
/// sorted list.
const MGET_STACK_SHARDS: usize = 64;

/// MGET allocates its result and one list of the keys with their hashes
/// (two passes: lock the shards in index order, then look up), nothing per
/// key: a value is a [`Blob`] clone, a reference count at most.
pub(crate) fn mget<K: AsRef<[u8]>>(inner: &Inner, keys: impl IntoIterator<Item = K>) -> Vec<Option<Blob>> {
    let ks = &inner.keyspace;
    let keys: Vec<(K, u64)> = keys
        .into_iter()
        .map(|k| {
            let h = ks.hash(k.as_ref());
            (k, h)
        })
        .collect();
    inner.ops.count(Op::MGet);
    if ks.shard_count() <= MGET_STACK_SHARDS {
        let mut wanted = 0u64;
        for (_, h) in &keys {
            wanted |= 1 << ks.hashing().shard_of(*h);
        }
        let mut guards: [Option<RwLockReadGuard<'_, Shard>>; MGET_STACK_SHARDS] = std::array::from_fn(|_| None);
        while wanted != 0 {
            let s = wanted.trailing_zeros() as usize;
            guards[s] = Some(ks.shard(s).read());
            wanted &= wanted - 1;
        }
        mget_locked(inner, &keys, |s| guards[s].as_deref())
    } else {
        let mut shards: Vec<usize> = keys.iter().map(|(_, h)| ks.hashing().shard_of(*h)).collect();
        shards.sort_unstable();
        shards.dedup();
        let guards: Vec<_> = shards.iter().map(|&s| (s, ks.shard(s).read())).collect();
        mget_locked(inner, &keys, |s| {
            let i = guards.binary_search_by_key(&s, |(i, _)| *i).ok()?;
            Some(&*guards[i].1)
        })
    }
}

/// MGET's lookups, under the read locks `shard` gives by shard index.
fn mget_locked<'g, K: AsRef<[u8]>>(
    inner: &Inner,
    keys: &[(K, u64)],
    shard: impl Fn(usize) -> Option<&'g Shard>,
) -> Vec<Option<Blob>> {
    let mut now = None;
    keys.iter()
        .map(|(k, h)| {
            let g = shard(inner.keyspace.hashing().shard_of(*h))?;
            let e = g.entry(g.find(*h, k.as_ref())?);
            if e.expire_at != 0 && e.is_expired(*now.get_or_insert_with(|| inner.clock.now_ms())) {
                return None;
            }
            match &e.value {
                Value::Str(b) => Some(b.clone()),
                Value::Hash(_) => None,
            }
        })
        .collect()
}

pub(crate) fn mset<K: AsRef<[u8]>, V: Into<Bytes>>(
    inner: &Inner,
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Result<()> {
    let (sets, hashes) = plain_sets(inner, pairs, "wrong number of arguments for 'mset' command")?;
    inner.ensure_memory()?;
    inner.write(&hashes, false, |w| {
        w.inner.ops.count(Op::MSet);
        w.commit(Mutation::Batch(sets)).map(|_| ())
    })
}

pub(crate) fn plan_set(w: &mut Writer<'_>, key: &[u8], h: u64, value: Bytes, opts: SetOptions) -> Result<SetOutcome> {
    if opts == SetOptions::default() {
        // A plain SET depends on nothing the key holds (not even whether it
        // expired: it replaces it either way), so it skips the lookup.
        w.commit_set(key, h, Blob::from(value), None)?;
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
    w.commit_set(key, h, Blob::from(value), expire_at)?;
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
    w.commit_set(key, h, int_blob(new), expire)?;
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
    check_value(w.inner, new_len)?;
    w.commit(Mutation::Append {
        key: Bytes::copy_from_slice(key),
        suffix: value,
    })?;
    Ok(new_len)
}

pub(crate) fn int_bytes(v: i64) -> Bytes {
    Bytes::from(v.to_string())
}

/// The decimal string of `v` as a [`Blob`], without allocating (at most 20
/// bytes: inline or, for the longest, one buffer).
pub(crate) fn int_blob(v: i64) -> Blob {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    Blob::copy_from_slice(&buf[at..])
}

/// What GETEX does to the key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GetExpiry {
    /// Leave it (plain GETEX key).
    #[default]
    Keep,
    /// Remove it (PERSIST).
    Persist,
    /// Expire after this many seconds (EX).
    Seconds(u64),
    /// Expire after this many milliseconds (PX).
    Millis(u64),
    /// Expire at this unix time in seconds (EXAT).
    AtSeconds(u64),
    /// Expire at this unix time in milliseconds (PXAT).
    AtMillis(u64),
}

/// The string at `key`, or a WRONGTYPE error.
fn live_string(w: &mut Writer<'_>, key: &[u8], h: u64) -> Result<Option<(Blob, Option<u64>)>> {
    let Some(idx) = w.live(key, h)? else { return Ok(None) };
    let e = w.entry(h, idx);
    match &e.value {
        Value::Str(b) => Ok(Some((b.clone(), e.expire()))),
        Value::Hash(_) => Err(Error::WrongType),
    }
}

pub(crate) fn getdel(inner: &Inner, key: impl AsRef<[u8]>) -> Result<Option<Blob>> {
    let key = key.as_ref();
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::GetDel);
        let Some((value, _)) = live_string(w, key, h)? else {
            return Ok(None);
        };
        w.commit(Mutation::Delete {
            keys: vec![Bytes::copy_from_slice(key)],
            reason: DeleteReason::User,
        })?;
        Ok(Some(value))
    })
}

pub(crate) fn getex(inner: &Inner, key: impl AsRef<[u8]>, expiry: GetExpiry) -> Result<Option<Blob>> {
    let key = key.as_ref();
    if matches!(expiry, GetExpiry::Seconds(0) | GetExpiry::Millis(0)) {
        return Err(Error::InvalidExpire);
    }
    if expiry == GetExpiry::Keep {
        return get(inner, key);
    }
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::GetEx);
        let Some((value, current)) = live_string(w, key, h)? else {
            return Ok(None);
        };
        let key = Bytes::copy_from_slice(key);
        let at = match expiry {
            GetExpiry::Keep => return Ok(Some(value)),
            GetExpiry::Persist => {
                if current.is_some() {
                    w.commit(Mutation::Expire { key, expire_at: None })?;
                }
                return Ok(Some(value));
            }
            GetExpiry::Seconds(s) => relative(w.now(), s.checked_mul(1000))?,
            GetExpiry::Millis(ms) => relative(w.now(), Some(ms))?,
            GetExpiry::AtSeconds(s) => s.checked_mul(1000).ok_or(Error::InvalidExpire)?,
            GetExpiry::AtMillis(ms) => ms,
        };
        let at = i64::try_from(at).map_err(|_| Error::InvalidExpire)?;
        commit_expire_at(w, &key, at)?;
        Ok(Some(value))
    })
}

/// SETRANGE: overwrites the string from `offset` (zero-padded past its
/// end, created if missing); returns the new length. An empty `value`
/// changes nothing (and creates nothing).
pub(crate) fn setrange(inner: &Inner, key: impl AsRef<[u8]>, offset: usize, value: impl AsRef<[u8]>) -> Result<usize> {
    let (key, value) = (key.as_ref(), value.as_ref());
    check_key(inner, key)?;
    let end = offset.checked_add(value.len()).ok_or(Error::ValueTooLarge {
        len: usize::MAX,
        max: inner.config.max_value_len,
    })?;
    if !value.is_empty() {
        check_value(inner, end)?;
        inner.ensure_memory()?;
    }
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::SetRange);
        let current = live_string(w, key, h)?;
        if value.is_empty() {
            return Ok(current.map_or(0, |(v, _)| v.len()));
        }
        let (mut new, expire_at) = current.map_or((Vec::new(), None), |(v, e)| (v.to_vec(), e));
        if new.len() < end {
            new.resize(end, 0);
        }
        new[offset..end].copy_from_slice(value);
        let len = new.len();
        w.commit(Mutation::Set {
            key: Bytes::copy_from_slice(key),
            value: Bytes::from(new),
            expire_at,
        })?;
        Ok(len)
    })
}

/// INCRBYFLOAT: adds `delta` to the float at `key` (0 if missing), keeping
/// its expiry; returns the new value as it is stored (see
/// [`format_f64`](crate::format_f64)).
pub(crate) fn incr_by_float(inner: &Inner, key: impl AsRef<[u8]>, delta: f64) -> Result<Bytes> {
    let key = key.as_ref();
    check_key(inner, key)?;
    if !delta.is_finite() {
        return Err(Error::NotFinite);
    }
    inner.ensure_memory()?;
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::IncrByFloat);
        let (current, expire_at) = match live_string(w, key, h)? {
            None => (0.0, None),
            Some((v, e)) => (parse_f64(&v).ok_or(Error::NotAFloat)?, e),
        };
        let new = current + delta;
        if !new.is_finite() {
            return Err(Error::NotFinite);
        }
        let text = Bytes::from(format_f64(new));
        w.commit(Mutation::Set {
            key: Bytes::copy_from_slice(key),
            value: text.clone(),
            expire_at,
        })?;
        Ok(text)
    })
}

/// MSETNX: sets every pair only if none of the keys exists (one mutation).
pub(crate) fn msetnx<K: AsRef<[u8]>, V: Into<Bytes>>(
    inner: &Inner,
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Result<bool> {
    let (sets, hashes) = plain_sets(inner, pairs, "wrong number of arguments for 'msetnx' command")?;
    inner.ensure_memory()?;
    inner.write(&hashes, false, |w| {
        w.inner.ops.count(Op::MSetNx);
        for (m, &h) in sets.iter().zip(&hashes) {
            if let Mutation::Set { key, .. } = m {
                if w.live(key, h)?.is_some() {
                    return Ok(false);
                }
            }
        }
        w.commit(Mutation::Batch(sets))?;
        Ok(true)
    })
}

/// MSET's and MSETNX's checks and plan: one `Set` without expiry per pair,
/// with each key's hash; `empty` is the error for no pairs.
fn plain_sets<K: AsRef<[u8]>, V: Into<Bytes>>(
    inner: &Inner,
    pairs: impl IntoIterator<Item = (K, V)>,
    empty: &'static str,
) -> Result<(Vec<Mutation>, Vec<u64>)> {
    let mut sets = Vec::new();
    let mut hashes = Vec::new();
    for (k, v) in pairs {
        let (k, v) = (k.as_ref(), v.into());
        check_key(inner, k)?;
        check_value(inner, v.len())?;
        hashes.push(inner.keyspace.hash(k));
        sets.push(Mutation::Set {
            key: Bytes::copy_from_slice(k),
            value: v,
            expire_at: None,
        });
    }
    if sets.is_empty() {
        return Err(Error::InvalidArgument(empty));
    }
    Ok((sets, hashes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_blob_is_the_decimal_string() {
        for v in [0, 1, -1, 9, 10, -10, 12_345, i64::MAX, i64::MIN, i64::MIN + 1] {
            assert_eq!(int_blob(v), v.to_string().as_str(), "{v}");
        }
    }
}
