//! String calls: GET, SET (with options), INCRBY, INCRBYFLOAT, APPEND,
//! GETDEL, GETEX, SETRANGE, MGET, MSET, MSETNX.

use std::os::raw::c_char;

use engine::{GetExpiry, SetOptions};

use crate::args;
use crate::boundary::guard;
use crate::buf::{ringkv_buf, ringkv_buf_array};
use crate::engine_api::{engine, ringkv_engine};
use crate::status::{ringkv_status, Fail};

/// An expiry number must fit a signed 64-bit time, as Redis requires
/// ("invalid expire time"), whatever its kind.
fn check_expiry(expiry_kind: i32, expiry: u64) -> Result<(), Fail> {
    if (3..=6).contains(&expiry_kind) && i64::try_from(expiry).is_err() {
        return Err(engine::Error::InvalidExpire.into());
    }
    Ok(())
}

/// SET's options from the C arguments (`ringkv_set_condition`,
/// `ringkv_expiry` and its number, GET).
pub(crate) fn set_options(condition: i32, expiry_kind: i32, expiry: u64, get: bool) -> Result<SetOptions, Fail> {
    check_expiry(expiry_kind, expiry)?;
    let mut o = match args::choice(condition, 3, "condition")? {
        1 => SetOptions::new().nx(),
        2 => SetOptions::new().xx(),
        _ => SetOptions::new(),
    };
    o = match args::choice(expiry_kind, 7, "expiry kind")? {
        0 => o,
        1 => o.keepttl(),
        2 => return Err(Fail::invalid("RINGKV_EXPIRY_PERSIST is for ringkv_getex")),
        3 => o.ex(expiry),
        4 => o.px(expiry),
        5 => o.exat(expiry),
        _ => o.pxat(expiry),
    };
    if get {
        o = o.get();
    }
    Ok(o)
}

/// GET: the value, or nil (`out->ptr` NULL) when the key is missing.
/// A hash is `RINGKV_WRONG_TYPE`. Free `*out` with `ringkv_buf_free`.
///
/// ```c
/// ringkv_buf v = {0};  /* stays nil if the call fails */
/// if (ringkv_get(e, "session:42", 10, &v) == RINGKV_OK && v.ptr) {
///     fwrite(v.ptr, 1, v.len, stdout);
/// }
/// ringkv_buf_free(&v);
/// ```
#[no_mangle]
pub extern "C" fn ringkv_get(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    out: *mut ringkv_buf,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let v = engine(e)?.get(args::bytes(key, key_len, "key")?)?;
        out.set(ringkv_buf::opt(v.as_deref()));
        Ok(())
    })
}

/// SET key value (no expiry; a previous expiry is cleared).
#[no_mangle]
pub extern "C" fn ringkv_set(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
) -> ringkv_status {
    guard(|| {
        let v = args::bytes(value, value_len, "value")?;
        engine(e)?.set(args::bytes(key, key_len, "key")?, bytes::Bytes::copy_from_slice(v))?;
        Ok(())
    })
}

/// SET with options: `condition` a `ringkv_set_condition`, `expiry_kind` a
/// `ringkv_expiry` (not PERSIST) with its number in `expiry`, `get` to
/// return the previous value in `*previous` (nil if none; `previous` may
/// be NULL when `get` is false). `*applied` is false when NX/XX prevented
/// the write.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ringkv_set_with(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
    condition: i32,
    expiry_kind: i32,
    expiry: u64,
    get: bool,
    applied: *mut bool,
    previous: *mut ringkv_buf,
) -> ringkv_status {
    guard(|| {
        let applied = args::out(applied, "applied")?;
        let previous = if get {
            Some(args::out(previous, "previous")?)
        } else {
            args::out_opt(previous, "previous")?
        };
        let opts = set_options(condition, expiry_kind, expiry, get)?;
        let v = bytes::Bytes::copy_from_slice(args::bytes(value, value_len, "value")?);
        let outcome = engine(e)?.set_with(args::bytes(key, key_len, "key")?, v, opts)?;
        applied.set(outcome.applied);
        if let Some(p) = previous {
            p.set(ringkv_buf::opt(outcome.previous.as_deref()));
        }
        Ok(())
    })
}

/// INCRBY (DECRBY with a negative `delta`): the new value in `*out`.
#[no_mangle]
pub extern "C" fn ringkv_incr_by(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    delta: i64,
    out: *mut i64,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(engine(e)?.incr_by(args::bytes(key, key_len, "key")?, delta)?);
        Ok(())
    })
}

/// INCRBYFLOAT: the new value as Redis prints it (`10.5` + `0.1` is
/// `10.6`), in `*out`.
#[no_mangle]
pub extern "C" fn ringkv_incr_by_float(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    delta: f64,
    out: *mut ringkv_buf,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let v = engine(e)?.incr_by_float(args::bytes(key, key_len, "key")?, delta)?;
        out.set(ringkv_buf::copy(&v));
        Ok(())
    })
}

/// APPEND: the new length in `*new_len`.
#[no_mangle]
pub extern "C" fn ringkv_append(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
    new_len: *mut usize,
) -> ringkv_status {
    guard(|| {
        let out = args::out(new_len, "new_len")?;
        let v = bytes::Bytes::copy_from_slice(args::bytes(value, value_len, "value")?);
        out.set(engine(e)?.append(args::bytes(key, key_len, "key")?, v)?);
        Ok(())
    })
}

/// GETDEL: the value (or nil), and the key is gone.
#[no_mangle]
pub extern "C" fn ringkv_getdel(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    out: *mut ringkv_buf,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let v = engine(e)?.getdel(args::bytes(key, key_len, "key")?)?;
        out.set(ringkv_buf::opt(v.as_deref()));
        Ok(())
    })
}

/// GETEX: the value (or nil), changing its expiry: `expiry_kind` a
/// `ringkv_expiry` (NONE and KEEP leave it, PERSIST removes it) with its
/// number in `expiry`.
#[no_mangle]
pub extern "C" fn ringkv_getex(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    expiry_kind: i32,
    expiry: u64,
    out: *mut ringkv_buf,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        check_expiry(expiry_kind, expiry)?;
        let how = match args::choice(expiry_kind, 7, "expiry kind")? {
            0 | 1 => GetExpiry::Keep,
            2 => GetExpiry::Persist,
            3 => GetExpiry::Seconds(expiry),
            4 => GetExpiry::Millis(expiry),
            5 => GetExpiry::AtSeconds(expiry),
            _ => GetExpiry::AtMillis(expiry),
        };
        let v = engine(e)?.getex(args::bytes(key, key_len, "key")?, how)?;
        out.set(ringkv_buf::opt(v.as_deref()));
        Ok(())
    })
}

/// SETRANGE: overwrites from `offset` (zero-padding a shorter value); the
/// new length in `*new_len`.
#[no_mangle]
pub extern "C" fn ringkv_setrange(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    offset: usize,
    value: *const c_char,
    value_len: usize,
    new_len: *mut usize,
) -> ringkv_status {
    guard(|| {
        let out = args::out(new_len, "new_len")?;
        let v = args::bytes(value, value_len, "value")?;
        out.set(engine(e)?.setrange(args::bytes(key, key_len, "key")?, offset, v)?);
        Ok(())
    })
}

/// MGET of `n` keys (one concatenation `keys` and their lengths `lens`):
/// `*out` has `n` items, nil for a missing key or a hash.
#[no_mangle]
pub extern "C" fn ringkv_mget(
    e: *const ringkv_engine,
    keys: *const c_char,
    lens: *const usize,
    n: usize,
    out: *mut ringkv_buf_array,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let keys = args::list(keys, lens, n, "keys")?;
        let values = engine(e)?.mget(keys);
        out.set(ringkv_buf_array::from_vec(
            values.iter().map(|v| ringkv_buf::opt(v.as_deref())).collect(),
        ));
        Ok(())
    })
}

/// MSET of `n / 2` pairs (key, value, key, value, ... in one concatenation
/// with their lengths; `n` even), atomically.
#[no_mangle]
pub extern "C" fn ringkv_mset(
    e: *const ringkv_engine,
    pairs: *const c_char,
    lens: *const usize,
    n: usize,
) -> ringkv_status {
    guard(|| {
        let pairs = args::pairs(pairs, lens, n, "pairs")?;
        engine(e)?.mset(pairs.into_iter().map(|(k, v)| (k, bytes::Bytes::copy_from_slice(v))))?;
        Ok(())
    })
}

/// MSETNX: sets every pair only if none of the keys exists; `*applied`
/// says whether it did.
#[no_mangle]
pub extern "C" fn ringkv_msetnx(
    e: *const ringkv_engine,
    pairs: *const c_char,
    lens: *const usize,
    n: usize,
    applied: *mut bool,
) -> ringkv_status {
    guard(|| {
        let out = args::out(applied, "applied")?;
        let pairs = args::pairs(pairs, lens, n, "pairs")?;
        out.set(engine(e)?.msetnx(pairs.into_iter().map(|(k, v)| (k, bytes::Bytes::copy_from_slice(v))))?);
        Ok(())
    })
}
