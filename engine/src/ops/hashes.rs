//! Hash commands: HSET, HGET, HMGET, HDEL, HLEN, HEXISTS, HINCRBY, the O(n)
//! HGETALL/HKEYS/HVALS, and HDRAIN (atomically remove and return up to N
//! fields). Checks and plans as in `ops/strings.rs`.

use bytes::Bytes;

use super::{check_key, check_value};
use crate::blob::Blob;
use crate::codec::{format_f64, parse_f64, parse_i64};
use crate::core::{Inner, Writer};
use crate::error::{Error, Result};
use crate::keyspace::{HashValue, Value};
use crate::mutation::Mutation;
use crate::ops::strings::int_bytes;
use crate::stats::Op;

fn read_hash<R>(inner: &Inner, key: &[u8], op: Op, f: impl FnOnce(&HashValue) -> R) -> Result<Option<R>> {
    inner
        .read(key, op, |e| match &e.value {
            Value::Hash(hv) => Ok(f(hv)),
            Value::Str(_) => Err(Error::WrongType),
        })
        .transpose()
}

fn field_hash(inner: &Inner, field: &[u8]) -> u32 {
    inner.keyspace.hash(field) as u32
}

/// HSET's argument checks (the single command and a batch's HSET).
pub(crate) fn check_hset<F: AsRef<[u8]>>(inner: &Inner, key: &[u8], fields: &[(F, Bytes)]) -> Result<()> {
    check_key(inner, key)?;
    if fields.is_empty() {
        return Err(Error::InvalidArgument("wrong number of arguments for 'hset' command"));
    }
    for (f, v) in fields {
        check_key(inner, f.as_ref())?;
        check_value(inner, v.len())?;
    }
    Ok(())
}

/// HINCRBY's argument checks.
pub(crate) fn check_hincr(inner: &Inner, key: &[u8], field: &[u8]) -> Result<()> {
    check_key(inner, key)?;
    check_key(inner, field)
}

pub(crate) fn hset<F: AsRef<[u8]>, V: Into<Bytes>>(
    inner: &Inner,
    key: impl AsRef<[u8]>,
    fields: impl IntoIterator<Item = (F, V)>,
) -> Result<usize> {
    let key = key.as_ref();
    let mut fields = fields.into_iter();
    let Some((f0, v0)) = fields.next() else {
        return hset_pairs::<&[u8]>(inner, key, &[]);
    };
    match fields.next() {
        // One field (the common case): no list is allocated.
        None => hset_pairs(inner, key, &[(f0.as_ref(), v0.into())]),
        Some((f1, v1)) => {
            let mut pairs = vec![(f0, v0.into()), (f1, v1.into())];
            pairs.extend(fields.map(|(f, v)| (f, v.into())));
            hset_pairs(inner, key, &pairs)
        }
    }
}

fn hset_pairs<F: AsRef<[u8]>>(inner: &Inner, key: &[u8], pairs: &[(F, Bytes)]) -> Result<usize> {
    check_hset(inner, key, pairs)?;
    inner.ensure_memory()?;
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::HSet);
        plan_hset(w, key, h, pairs)
    })
}

pub(crate) fn hget(inner: &Inner, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> Result<Option<Blob>> {
    let field = field.as_ref();
    let fh = field_hash(inner, field);
    Ok(read_hash(inner, key.as_ref(), Op::HGet, |hv| hv.get(fh, field).cloned())?.flatten())
}

pub(crate) fn hmget<F: AsRef<[u8]>>(
    inner: &Inner,
    key: impl AsRef<[u8]>,
    fields: impl IntoIterator<Item = F>,
) -> Result<Vec<Option<Blob>>> {
    let fields: Vec<(F, u32)> = fields
        .into_iter()
        .map(|f| {
            let fh = field_hash(inner, f.as_ref());
            (f, fh)
        })
        .collect();
    let found = read_hash(inner, key.as_ref(), Op::HMGet, |hv| {
        fields.iter().map(|(f, fh)| hv.get(*fh, f.as_ref()).cloned()).collect()
    })?;
    Ok(found.unwrap_or_else(|| vec![None; fields.len()]))
}

pub(crate) fn hdel<F: AsRef<[u8]>>(
    inner: &Inner,
    key: impl AsRef<[u8]>,
    fields: impl IntoIterator<Item = F>,
) -> Result<usize> {
    let key = key.as_ref();
    let fields: Vec<Bytes> = fields.into_iter().map(|f| Bytes::copy_from_slice(f.as_ref())).collect();
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::HDel);
        plan_hdel(w, key, h, &fields)
    })
}

pub(crate) fn hlen(inner: &Inner, key: impl AsRef<[u8]>) -> Result<usize> {
    Ok(read_hash(inner, key.as_ref(), Op::HLen, |hv| hv.len())?.unwrap_or(0))
}

pub(crate) fn hexists(inner: &Inner, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> Result<bool> {
    let field = field.as_ref();
    let fh = field_hash(inner, field);
    Ok(read_hash(inner, key.as_ref(), Op::HExists, |hv| hv.get(fh, field).is_some())?.unwrap_or(false))
}

pub(crate) fn hincr_by(inner: &Inner, key: impl AsRef<[u8]>, field: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
    let (key, field) = (key.as_ref(), field.as_ref());
    check_hincr(inner, key, field)?;
    inner.ensure_memory()?;
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::HIncrBy);
        plan_hincr(w, key, h, field, delta)
    })
}

pub(crate) fn hgetall(inner: &Inner, key: impl AsRef<[u8]>) -> Result<Vec<(Blob, Blob)>> {
    Ok(read_hash(inner, key.as_ref(), Op::HGetAll, |hv| {
        hv.table.iter().map(|e| (e.field.clone(), e.value.clone())).collect()
    })?
    .unwrap_or_default())
}

pub(crate) fn hkeys(inner: &Inner, key: impl AsRef<[u8]>) -> Result<Vec<Blob>> {
    Ok(read_hash(inner, key.as_ref(), Op::HKeys, |hv| {
        hv.table.iter().map(|e| e.field.clone()).collect()
    })?
    .unwrap_or_default())
}

pub(crate) fn hvals(inner: &Inner, key: impl AsRef<[u8]>) -> Result<Vec<Blob>> {
    Ok(read_hash(inner, key.as_ref(), Op::HVals, |hv| {
        hv.table.iter().map(|e| e.value.clone()).collect()
    })?
    .unwrap_or_default())
}

pub(crate) fn hdrain(inner: &Inner, key: impl AsRef<[u8]>, count: usize) -> Result<Vec<(Blob, Blob)>> {
    if count == 0 {
        return Err(Error::InvalidArgument("count must be positive"));
    }
    let key = key.as_ref();
    let h = inner.keyspace.hash(key);
    inner.write(&[h], false, |w| {
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

pub(crate) fn plan_hset<F: AsRef<[u8]>>(
    w: &mut Writer<'_>,
    key: &[u8],
    h: u64,
    fields: &[(F, Bytes)],
) -> Result<usize> {
    if let Some(idx) = w.live(key, h)? {
        if !matches!(w.entry(h, idx).value, Value::Hash(_)) {
            return Err(Error::WrongType);
        }
    }
    w.commit_hset(key, h, fields)
}

pub(crate) fn plan_hincr(w: &mut Writer<'_>, key: &[u8], h: u64, field: &[u8], delta: i64) -> Result<i64> {
    let fh = w.inner.keyspace.hashing().hash(field) as u32;
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

pub(crate) fn plan_hdel(w: &mut Writer<'_>, key: &[u8], h: u64, fields: &[Bytes]) -> Result<usize> {
    let Some(idx) = w.live(key, h)? else {
        return Ok(0);
    };
    let hashing = w.inner.keyspace.hashing();
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

/// The hash at `key` for a write: `None` if missing, WRONGTYPE if a string.
fn live_hash<'w>(w: &'w mut Writer<'_>, key: &[u8], h: u64) -> Result<Option<&'w HashValue>> {
    let Some(idx) = w.live(key, h)? else { return Ok(None) };
    match &w.entry(h, idx).value {
        Value::Hash(hv) => Ok(Some(hv)),
        Value::Str(_) => Err(Error::WrongType),
    }
}

/// HSETNX: sets the field only if it is absent; true if set.
pub(crate) fn hsetnx(
    inner: &Inner,
    key: impl AsRef<[u8]>,
    field: impl AsRef<[u8]>,
    value: impl Into<Bytes>,
) -> Result<bool> {
    let (key, field, value) = (key.as_ref(), field.as_ref(), value.into());
    let pair = [(Bytes::copy_from_slice(field), value)];
    check_hset(inner, key, &pair)?;
    inner.ensure_memory()?;
    let h = inner.keyspace.hash(key);
    let fh = inner.keyspace.hash(field) as u32;
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::HSetNx);
        if live_hash(w, key, h)?.is_some_and(|hv| hv.get(fh, field).is_some()) {
            return Ok(false);
        }
        w.commit(Mutation::HSet {
            key: Bytes::copy_from_slice(key),
            fields: pair.to_vec(),
        })?;
        Ok(true)
    })
}

/// HINCRBYFLOAT: adds `delta` to the float in a hash field (0 if missing);
/// returns the new value as stored.
pub(crate) fn hincr_by_float(
    inner: &Inner,
    key: impl AsRef<[u8]>,
    field: impl AsRef<[u8]>,
    delta: f64,
) -> Result<Bytes> {
    let (key, field) = (key.as_ref(), field.as_ref());
    check_hincr(inner, key, field)?;
    if !delta.is_finite() {
        return Err(Error::NotFinite);
    }
    inner.ensure_memory()?;
    let h = inner.keyspace.hash(key);
    let fh = inner.keyspace.hash(field) as u32;
    inner.write(&[h], false, |w| {
        w.inner.ops.count(Op::HIncrByFloat);
        let current = match live_hash(w, key, h)?.and_then(|hv| hv.get(fh, field)) {
            Some(v) => parse_f64(v).ok_or(Error::NotAFloat)?,
            None => 0.0,
        };
        let new = current + delta;
        if !new.is_finite() {
            return Err(Error::NotFinite);
        }
        let text = Bytes::from(format_f64(new));
        w.commit(Mutation::HSet {
            key: Bytes::copy_from_slice(key),
            fields: vec![(Bytes::copy_from_slice(field), text.clone())],
        })?;
        Ok(text)
    })
}

/// HRANDFIELD: with `count > 0` up to `count` distinct fields, with
/// `count < 0` exactly `-count` fields that may repeat (Redis' rules);
/// fields with their values. O(|count|); empty for a missing key.
pub(crate) fn hrandfield(inner: &Inner, key: impl AsRef<[u8]>, count: i64) -> Result<Vec<(Blob, Blob)>> {
    let picked = read_hash(inner, key.as_ref(), Op::HRandField, |hv| {
        let len = hv.len();
        let mut out = Vec::new();
        if len == 0 || count == 0 {
            return out;
        }
        let last = hv.table.last_index().unwrap_or(0);
        let at = |i: usize| {
            let e = hv.table.at(last - i);
            (e.field.clone(), e.value.clone())
        };
        if count < 0 {
            let n = count.unsigned_abs().min(1 << 20) as usize;
            out.reserve(n);
            for _ in 0..n {
                out.push(at((inner.memory.random() % len as u64) as usize));
            }
        } else if count as u64 >= len as u64 {
            out.extend((0..len).map(at));
        } else {
            // Distinct picks: a random start and stride over the dense slab.
            let n = count as usize;
            let start = (inner.memory.random() % len as u64) as usize;
            out.extend((0..n).map(|i| at((start + i) % len)));
        }
        out
    })?;
    Ok(picked.unwrap_or_default())
}
