//! Hash calls: HSET, HSETNX, HGET, HMGET, HDEL, HLEN, HEXISTS, HINCRBY,
//! HINCRBYFLOAT, the O(n) HGETALL/HKEYS/HVALS, HDRAIN and HRANDFIELD.
//! Pair results are flattened (field, value, field, value, ...).

use std::os::raw::c_char;

use bytes::Bytes;

use crate::args;
use crate::boundary::guard;
use crate::buf::{ringkv_buf, ringkv_buf_array};
use crate::engine_api::{engine, ringkv_engine};
use crate::status::ringkv_status;

/// HSET of `n / 2` field/value pairs (one concatenation and the lengths;
/// `n` even and at least 2): the number of fields added in `*added`.
#[no_mangle]
pub extern "C" fn ringkv_hset(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    pairs: *const c_char,
    lens: *const usize,
    n: usize,
    added: *mut usize,
) -> ringkv_status {
    guard(|| {
        let out = args::out(added, "added")?;
        let pairs = args::pairs(pairs, lens, n, "pairs")?;
        if pairs.is_empty() {
            return Err(crate::status::Fail::invalid("HSET needs at least one field"));
        }
        let fields = pairs.into_iter().map(|(f, v)| (f, Bytes::copy_from_slice(v)));
        out.set(engine(e)?.hset(args::bytes(key, key_len, "key")?, fields)?);
        Ok(())
    })
}

/// HSET of one field (no lengths array to build): `*added` is 1 if the
/// field is new, 0 if it was overwritten.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ringkv_hset_field(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    field: *const c_char,
    field_len: usize,
    value: *const c_char,
    value_len: usize,
    added: *mut usize,
) -> ringkv_status {
    guard(|| {
        let out = args::out(added, "added")?;
        let f = args::bytes(field, field_len, "field")?;
        let v = Bytes::copy_from_slice(args::bytes(value, value_len, "value")?);
        out.set(engine(e)?.hset(args::bytes(key, key_len, "key")?, [(f, v)])?);
        Ok(())
    })
}

/// HSETNX: sets the field only if it does not exist; `*applied` says whether.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ringkv_hsetnx(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    field: *const c_char,
    field_len: usize,
    value: *const c_char,
    value_len: usize,
    applied: *mut bool,
) -> ringkv_status {
    guard(|| {
        let out = args::out(applied, "applied")?;
        let v = Bytes::copy_from_slice(args::bytes(value, value_len, "value")?);
        out.set(engine(e)?.hsetnx(
            args::bytes(key, key_len, "key")?,
            args::bytes(field, field_len, "field")?,
            v,
        )?);
        Ok(())
    })
}

/// HGET: the field's value, or nil.
#[no_mangle]
pub extern "C" fn ringkv_hget(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    field: *const c_char,
    field_len: usize,
    out: *mut ringkv_buf,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let v = engine(e)?.hget(
            args::bytes(key, key_len, "key")?,
            args::bytes(field, field_len, "field")?,
        )?;
        out.set(ringkv_buf::opt(v.as_deref()));
        Ok(())
    })
}

/// HMGET of `n` fields: `n` items in `*out`, nil for a missing field.
#[no_mangle]
pub extern "C" fn ringkv_hmget(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    fields: *const c_char,
    lens: *const usize,
    n: usize,
    out: *mut ringkv_buf_array,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let fields = args::list(fields, lens, n, "fields")?;
        let values = engine(e)?.hmget(args::bytes(key, key_len, "key")?, fields)?;
        out.set(ringkv_buf_array::from_vec(
            values.iter().map(|v| ringkv_buf::opt(v.as_deref())).collect(),
        ));
        Ok(())
    })
}

/// HDEL of `n` fields: how many existed in `*removed`.
#[no_mangle]
pub extern "C" fn ringkv_hdel(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    fields: *const c_char,
    lens: *const usize,
    n: usize,
    removed: *mut usize,
) -> ringkv_status {
    guard(|| {
        let out = args::out(removed, "removed")?;
        let fields = args::list(fields, lens, n, "fields")?;
        out.set(engine(e)?.hdel(args::bytes(key, key_len, "key")?, fields)?);
        Ok(())
    })
}

/// HLEN: the number of fields (0 for a missing key).
#[no_mangle]
pub extern "C" fn ringkv_hlen(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    out: *mut usize,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(engine(e)?.hlen(args::bytes(key, key_len, "key")?)?);
        Ok(())
    })
}

/// HEXISTS.
#[no_mangle]
pub extern "C" fn ringkv_hexists(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    field: *const c_char,
    field_len: usize,
    out: *mut bool,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(engine(e)?.hexists(
            args::bytes(key, key_len, "key")?,
            args::bytes(field, field_len, "field")?,
        )?);
        Ok(())
    })
}

/// HINCRBY: the field's new value in `*out`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ringkv_hincr_by(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    field: *const c_char,
    field_len: usize,
    delta: i64,
    out: *mut i64,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(engine(e)?.hincr_by(
            args::bytes(key, key_len, "key")?,
            args::bytes(field, field_len, "field")?,
            delta,
        )?);
        Ok(())
    })
}

/// HINCRBYFLOAT: the field's new value as Redis prints it.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ringkv_hincr_by_float(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    field: *const c_char,
    field_len: usize,
    delta: f64,
    out: *mut ringkv_buf,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let v = engine(e)?.hincr_by_float(
            args::bytes(key, key_len, "key")?,
            args::bytes(field, field_len, "field")?,
            delta,
        )?;
        out.set(ringkv_buf::copy(&v));
        Ok(())
    })
}

/// HGETALL: every field and value, flattened. O(fields) under the key's
/// shard lock: prefer HSCAN or HDRAIN for big hashes.
#[no_mangle]
pub extern "C" fn ringkv_hgetall(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    out: *mut ringkv_buf_array,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(ringkv_buf_array::of_pairs(
            engine(e)?.hgetall(args::bytes(key, key_len, "key")?)?,
        ));
        Ok(())
    })
}

/// HKEYS: every field. O(fields).
#[no_mangle]
pub extern "C" fn ringkv_hkeys(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    out: *mut ringkv_buf_array,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(ringkv_buf_array::of(
            engine(e)?.hkeys(args::bytes(key, key_len, "key")?)?,
        ));
        Ok(())
    })
}

/// HVALS: every value. O(fields).
#[no_mangle]
pub extern "C" fn ringkv_hvals(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    out: *mut ringkv_buf_array,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(ringkv_buf_array::of(
            engine(e)?.hvals(args::bytes(key, key_len, "key")?)?,
        ));
        Ok(())
    })
}

/// HDRAIN: atomically removes and returns up to `count` fields (flattened
/// pairs): the safe form of "read a batch, then delete it", since no field
/// written meanwhile can be lost. An empty array means the hash is gone.
///
/// ```c
/// ringkv_buf_array batch;
/// do {
///     if (ringkv_hdrain(e, "telemetry:host-1", 16, 500, &batch) != RINGKV_OK) break;
///     for (size_t i = 0; i < batch.len; i += 2) { /* batch.ptr[i] field, [i+1] value */ }
///     size_t got = batch.len;
///     ringkv_buf_array_free(&batch);
///     if (got == 0) break;
/// } while (1);
/// ```
#[no_mangle]
pub extern "C" fn ringkv_hdrain(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    count: usize,
    out: *mut ringkv_buf_array,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(ringkv_buf_array::of_pairs(
            engine(e)?.hdrain(args::bytes(key, key_len, "key")?, count)?,
        ));
        Ok(())
    })
}

/// HRANDFIELD key count, with values (flattened pairs), as Redis: a
/// positive `count` gives distinct fields (at most the hash's), a negative
/// one `-count` fields that may repeat, capped at 2^20 (1,048,576) so that
/// one call's reply stays bounded.
#[no_mangle]
pub extern "C" fn ringkv_hrandfield(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    count: i64,
    out: *mut ringkv_buf_array,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(ringkv_buf_array::of_pairs(
            engine(e)?.hrandfield(args::bytes(key, key_len, "key")?, count)?,
        ));
        Ok(())
    })
}
