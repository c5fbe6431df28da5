//! Write batches: operations on several keys applied atomically (all or
//! none) as one logged mutation, with reads that see the batch's earlier
//! writes. A batch is used by one thread at a time.

use std::os::raw::c_char;

use bytes::Bytes;
use engine::{BatchReply, KeyType, WriteBatch};

use crate::args;
use crate::boundary::{guard, guard_void};
use crate::buf::{ringkv_buf, ringkv_reply, ringkv_reply_array};
use crate::engine_api::{engine, ringkv_engine};
use crate::handle::{self, Kind};
use crate::status::{ringkv_status, Fail};
use crate::strings::set_options;

/// A write batch being built. One thread at a time.
pub struct ringkv_batch {
    _private: [u8; 0],
}

/// What a `ringkv_reply` holds.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum ringkv_reply_kind {
    /// `integer`: INCRBY/HINCRBY's value; APPEND, HSET, HDEL, HLEN's count;
    /// 1 or 0 for DEL, EXPIRE, PERSIST, EXISTS, HEXISTS; PTTL in ms for TTL
    /// (-2 missing, -1 no expiry); a `ringkv_key_type` for TYPE.
    RINGKV_REPLY_INT = 0,
    /// `value`: GET or HGET (nil when missing).
    RINGKV_REPLY_VALUE = 1,
    /// SET: `integer` 1 if it applied (0 when NX/XX prevented it), `value`
    /// the previous value when `get` was asked for.
    RINGKV_REPLY_SET = 2,
}

fn batch<'a>(b: *mut ringkv_batch) -> Result<&'a mut WriteBatch, Fail> {
    handle::get_mut(b, Kind::Batch)
}

fn key<'a>(key: *const c_char, key_len: usize) -> Result<&'a [u8], Fail> {
    args::bytes(key, key_len, "key")
}

/// Adds an operation on one key: the shape of most `ringkv_batch_*` calls.
fn add_keyed(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    add: impl FnOnce(&mut WriteBatch, &[u8]),
) -> ringkv_status {
    guard(|| {
        let k = key(k, k_len)?;
        add(batch(b)?, k);
        Ok(())
    })
}

fn owned(value: *const c_char, value_len: usize) -> Result<Bytes, Fail> {
    Ok(Bytes::copy_from_slice(args::bytes(value, value_len, "value")?))
}

/// A new, empty batch. Free with `ringkv_batch_free`.
#[no_mangle]
pub extern "C" fn ringkv_batch_new(out: *mut *mut ringkv_batch) -> ringkv_status {
    guard(|| {
        args::out(out, "out")?.set(handle::new(Kind::Batch, WriteBatch::new()));
        Ok(())
    })
}

/// Frees a batch. NULL is a no-op; a freed handle is detected.
#[no_mangle]
pub extern "C" fn ringkv_batch_free(b: *mut ringkv_batch) {
    guard_void(|| handle::free(b, Kind::Batch));
}

/// The number of operations added.
#[no_mangle]
pub extern "C" fn ringkv_batch_len(b: *const ringkv_batch, out: *mut usize) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let b: &WriteBatch = handle::get(b, Kind::Batch)?;
        out.set(b.len());
        Ok(())
    })
}

/// Adds SET key value.
#[no_mangle]
pub extern "C" fn ringkv_batch_set(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    value: *const c_char,
    value_len: usize,
) -> ringkv_status {
    guard(|| {
        let (k, v) = (key(k, k_len)?, owned(value, value_len)?);
        batch(b)?.set(k, v);
        Ok(())
    })
}

/// Adds SET with options (as `ringkv_set_with`).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ringkv_batch_set_with(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    value: *const c_char,
    value_len: usize,
    condition: i32,
    expiry_kind: i32,
    expiry: u64,
    get: bool,
) -> ringkv_status {
    guard(|| {
        let opts = set_options(condition, expiry_kind, expiry, get)?;
        let (k, v) = (key(k, k_len)?, owned(value, value_len)?);
        batch(b)?.set_with(k, v, opts);
        Ok(())
    })
}

/// Adds DEL of one key (reply: 1 if it existed).
#[no_mangle]
pub extern "C" fn ringkv_batch_del(b: *mut ringkv_batch, k: *const c_char, k_len: usize) -> ringkv_status {
    add_keyed(b, k, k_len, |w, k| {
        w.del(k);
    })
}

/// Adds INCRBY.
#[no_mangle]
pub extern "C" fn ringkv_batch_incr_by(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    delta: i64,
) -> ringkv_status {
    add_keyed(b, k, k_len, |w, k| {
        w.incr_by(k, delta);
    })
}

/// Adds APPEND.
#[no_mangle]
pub extern "C" fn ringkv_batch_append(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    value: *const c_char,
    value_len: usize,
) -> ringkv_status {
    guard(|| {
        let (k, v) = (key(k, k_len)?, owned(value, value_len)?);
        batch(b)?.append(k, v);
        Ok(())
    })
}

/// Adds PEXPIRE (relative to when the batch runs).
#[no_mangle]
pub extern "C" fn ringkv_batch_pexpire(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    millis: i64,
) -> ringkv_status {
    add_keyed(b, k, k_len, |w, k| {
        w.pexpire(k, millis);
    })
}

/// Adds PEXPIREAT.
#[no_mangle]
pub extern "C" fn ringkv_batch_pexpire_at(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    unix_millis: i64,
) -> ringkv_status {
    add_keyed(b, k, k_len, |w, k| {
        w.pexpire_at(k, unix_millis);
    })
}

/// Adds PERSIST.
#[no_mangle]
pub extern "C" fn ringkv_batch_persist(b: *mut ringkv_batch, k: *const c_char, k_len: usize) -> ringkv_status {
    add_keyed(b, k, k_len, |w, k| {
        w.persist(k);
    })
}

/// Adds HSET of `n / 2` pairs (as `ringkv_hset`).
#[no_mangle]
pub extern "C" fn ringkv_batch_hset(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    pairs: *const c_char,
    lens: *const usize,
    n: usize,
) -> ringkv_status {
    guard(|| {
        let k = key(k, k_len)?;
        let pairs = args::pairs(pairs, lens, n, "pairs")?;
        if pairs.is_empty() {
            return Err(Fail::invalid("HSET needs at least one field"));
        }
        batch(b)?.hset(k, pairs.into_iter().map(|(f, v)| (f, Bytes::copy_from_slice(v))));
        Ok(())
    })
}

/// Adds HDEL of `n` fields.
#[no_mangle]
pub extern "C" fn ringkv_batch_hdel(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    fields: *const c_char,
    lens: *const usize,
    n: usize,
) -> ringkv_status {
    guard(|| {
        let k = key(k, k_len)?;
        let fields = args::list(fields, lens, n, "fields")?;
        batch(b)?.hdel(k, fields);
        Ok(())
    })
}

/// Adds HINCRBY.
#[no_mangle]
pub extern "C" fn ringkv_batch_hincr_by(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    field: *const c_char,
    field_len: usize,
    delta: i64,
) -> ringkv_status {
    guard(|| {
        let (k, f) = (key(k, k_len)?, args::bytes(field, field_len, "field")?);
        batch(b)?.hincr_by(k, f, delta);
        Ok(())
    })
}

/// Adds GET (reply VALUE; a hash fails the whole batch with WRONG_TYPE).
#[no_mangle]
pub extern "C" fn ringkv_batch_get(b: *mut ringkv_batch, k: *const c_char, k_len: usize) -> ringkv_status {
    add_keyed(b, k, k_len, |w, k| {
        w.get(k);
    })
}

/// Adds HGET (reply VALUE).
#[no_mangle]
pub extern "C" fn ringkv_batch_hget(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    field: *const c_char,
    field_len: usize,
) -> ringkv_status {
    guard(|| {
        let (k, f) = (key(k, k_len)?, args::bytes(field, field_len, "field")?);
        batch(b)?.hget(k, f);
        Ok(())
    })
}

/// Adds EXISTS of one key (reply INT 1 or 0).
#[no_mangle]
pub extern "C" fn ringkv_batch_exists(b: *mut ringkv_batch, k: *const c_char, k_len: usize) -> ringkv_status {
    add_keyed(b, k, k_len, |w, k| {
        w.exists(k);
    })
}

/// Adds TTL (reply INT: milliseconds, -2 missing, -1 no expiry).
#[no_mangle]
pub extern "C" fn ringkv_batch_ttl(b: *mut ringkv_batch, k: *const c_char, k_len: usize) -> ringkv_status {
    add_keyed(b, k, k_len, |w, k| {
        w.ttl(k);
    })
}

/// Adds TYPE (reply INT: a `ringkv_key_type`).
#[no_mangle]
pub extern "C" fn ringkv_batch_type(b: *mut ringkv_batch, k: *const c_char, k_len: usize) -> ringkv_status {
    add_keyed(b, k, k_len, |w, k| {
        w.key_type(k);
    })
}

/// Adds HEXISTS (reply INT 1 or 0).
#[no_mangle]
pub extern "C" fn ringkv_batch_hexists(
    b: *mut ringkv_batch,
    k: *const c_char,
    k_len: usize,
    field: *const c_char,
    field_len: usize,
) -> ringkv_status {
    guard(|| {
        let (k, f) = (key(k, k_len)?, args::bytes(field, field_len, "field")?);
        batch(b)?.hexists(k, f);
        Ok(())
    })
}

/// Adds HLEN (reply INT).
#[no_mangle]
pub extern "C" fn ringkv_batch_hlen(b: *mut ringkv_batch, k: *const c_char, k_len: usize) -> ringkv_status {
    add_keyed(b, k, k_len, |w, k| {
        w.hlen(k);
    })
}

fn reply(r: BatchReply) -> ringkv_reply {
    let int = |integer: i64| ringkv_reply {
        kind: ringkv_reply_kind::RINGKV_REPLY_INT as i32,
        integer,
        value: ringkv_buf::nil(),
    };
    match r {
        BatchReply::Set(o) => ringkv_reply {
            kind: ringkv_reply_kind::RINGKV_REPLY_SET as i32,
            integer: i64::from(o.applied),
            value: ringkv_buf::opt(o.previous.as_deref()),
        },
        BatchReply::Bool(b) => int(i64::from(b)),
        BatchReply::Int(i) => int(i),
        BatchReply::Count(n) => int(i64::try_from(n).unwrap_or(i64::MAX)),
        BatchReply::Ttl(t) => int(t.as_redis_millis()),
        BatchReply::Type(t) => int(match t {
            None => 0,
            Some(KeyType::String) => 1,
            Some(_) => 2,
        }),
        BatchReply::Value(v) => ringkv_reply {
            kind: ringkv_reply_kind::RINGKV_REPLY_VALUE as i32,
            integer: 0,
            value: ringkv_buf::opt(v.as_deref()),
        },
        // HGETALL's pairs: the C batch cannot add it, so they never come back.
        _ => int(0),
    }
}

/// Runs the batch atomically and empties it (it can be reused): every
/// operation or none applies, as one logged mutation; on success
/// `*replies` holds one reply per operation, in order (free it with
/// `ringkv_reply_array_free`). On failure nothing applied, `*replies` is
/// untouched, and the batch is emptied too.
///
/// ```c
/// ringkv_batch *b;
/// ringkv_reply_array r;
/// ringkv_batch_new(&b);
/// ringkv_batch_incr_by(b, "stock", 5, -2);
/// ringkv_batch_get(b, "stock", 5);
/// if (ringkv_write_batch(e, b, &r) == RINGKV_OK) {
///     /* r.ptr[0].integer: the new stock; r.ptr[1].value: it as text */
///     ringkv_reply_array_free(&r);
/// }
/// ringkv_batch_free(b);
/// ```
#[no_mangle]
pub extern "C" fn ringkv_write_batch(
    e: *const ringkv_engine,
    b: *mut ringkv_batch,
    replies: *mut ringkv_reply_array,
) -> ringkv_status {
    guard(|| {
        let out = args::out(replies, "replies")?;
        let engine = engine(e)?;
        let ops = std::mem::take(batch(b)?);
        let got = engine.write_batch(ops)?;
        out.set(ringkv_reply_array::from_vec(got.into_iter().map(reply).collect()));
        Ok(())
    })
}
