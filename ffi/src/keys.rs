//! Key calls: DEL, EXISTS, TYPE, the EXPIRE family, TTL/PTTL,
//! PEXPIRETIME, PERSIST, RENAME(NX), COPY, RANDOMKEY, DBSIZE, FLUSHALL.

use std::os::raw::c_char;

use engine::{ExpireCondition, KeyType};

use crate::args;
use crate::boundary::guard;
use crate::buf::ringkv_buf;
use crate::engine_api::{engine, ringkv_engine};
use crate::status::ringkv_status;

/// DEL of `n` keys (one concatenation and their lengths): how many existed.
#[no_mangle]
pub extern "C" fn ringkv_del(
    e: *const ringkv_engine,
    keys: *const c_char,
    lens: *const usize,
    n: usize,
    deleted: *mut u64,
) -> ringkv_status {
    guard(|| {
        let out = args::out(deleted, "deleted")?;
        out.set(engine(e)?.del(args::list(keys, lens, n, "keys")?)?);
        Ok(())
    })
}

/// EXISTS of `n` keys: how many exist (a key named twice counts twice).
#[no_mangle]
pub extern "C" fn ringkv_exists(
    e: *const ringkv_engine,
    keys: *const c_char,
    lens: *const usize,
    n: usize,
    count: *mut u64,
) -> ringkv_status {
    guard(|| {
        let out = args::out(count, "count")?;
        out.set(engine(e)?.exists(args::list(keys, lens, n, "keys")?));
        Ok(())
    })
}

/// TYPE: a `ringkv_key_type` in `*out` (NONE when missing).
#[no_mangle]
pub extern "C" fn ringkv_type(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    out: *mut i32,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(match engine(e)?.key_type(args::bytes(key, key_len, "key")?) {
            None => 0,
            Some(KeyType::String) => 1,
            Some(_) => 2,
        });
        Ok(())
    })
}

/// The EXPIRE family's common shape: check, call, write `*applied`.
fn expire_with(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    applied: *mut bool,
    call: impl FnOnce(&engine::Engine, &[u8]) -> engine::Result<bool>,
) -> ringkv_status {
    guard(|| {
        let out = args::out(applied, "applied")?;
        out.set(call(engine(e)?, args::bytes(key, key_len, "key")?)?);
        Ok(())
    })
}

/// EXPIRE: the key expires in `seconds` (0 or less deletes it now);
/// `*applied` is false when the key does not exist.
#[no_mangle]
pub extern "C" fn ringkv_expire(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    seconds: i64,
    applied: *mut bool,
) -> ringkv_status {
    expire_with(e, key, key_len, applied, |en, k| en.expire(k, seconds))
}

/// PEXPIRE: as `ringkv_expire`, in milliseconds.
#[no_mangle]
pub extern "C" fn ringkv_pexpire(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    millis: i64,
    applied: *mut bool,
) -> ringkv_status {
    expire_with(e, key, key_len, applied, |en, k| en.pexpire(k, millis))
}

/// EXPIREAT: the key expires at unix time `unix_seconds`.
#[no_mangle]
pub extern "C" fn ringkv_expire_at(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    unix_seconds: i64,
    applied: *mut bool,
) -> ringkv_status {
    expire_with(e, key, key_len, applied, |en, k| en.expire_at(k, unix_seconds))
}

/// PEXPIREAT: the key expires at unix time `unix_millis`.
#[no_mangle]
pub extern "C" fn ringkv_pexpire_at(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    unix_millis: i64,
    applied: *mut bool,
) -> ringkv_status {
    expire_with(e, key, key_len, applied, |en, k| en.pexpire_at(k, unix_millis))
}

/// PEXPIREAT with a condition (`ringkv_expire_condition`: EXPIRE's NX, XX,
/// GT, LT); `*applied` is false when the key is missing or the condition
/// does not hold.
#[no_mangle]
pub extern "C" fn ringkv_pexpire_at_if(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    unix_millis: i64,
    condition: i32,
    applied: *mut bool,
) -> ringkv_status {
    guard(|| {
        let out = args::out(applied, "applied")?;
        let cond = match args::choice(condition, 5, "condition")? {
            0 => ExpireCondition::Always,
            1 => ExpireCondition::IfNone,
            2 => ExpireCondition::IfSome,
            3 => ExpireCondition::IfLater,
            _ => ExpireCondition::IfEarlier,
        };
        out.set(engine(e)?.pexpire_at_if(args::bytes(key, key_len, "key")?, unix_millis, cond)?);
        Ok(())
    })
}

/// TTL in seconds as Redis answers it: -2 missing, -1 no expiry.
#[no_mangle]
pub extern "C" fn ringkv_ttl(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    seconds: *mut i64,
) -> ringkv_status {
    guard(|| {
        let out = args::out(seconds, "seconds")?;
        out.set(engine(e)?.ttl(args::bytes(key, key_len, "key")?).as_redis_seconds());
        Ok(())
    })
}

/// PTTL in milliseconds: -2 missing, -1 no expiry.
#[no_mangle]
pub extern "C" fn ringkv_pttl(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    millis: *mut i64,
) -> ringkv_status {
    guard(|| {
        let out = args::out(millis, "millis")?;
        out.set(engine(e)?.ttl(args::bytes(key, key_len, "key")?).as_redis_millis());
        Ok(())
    })
}

/// PEXPIRETIME: the unix time in milliseconds at which the key expires;
/// -2 missing, -1 no expiry.
#[no_mangle]
pub extern "C" fn ringkv_pexpire_time(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    unix_millis: *mut i64,
) -> ringkv_status {
    guard(|| {
        let out = args::out(unix_millis, "unix_millis")?;
        out.set(match engine(e)?.expire_time(args::bytes(key, key_len, "key")?) {
            None => -2,
            Some(None) => -1,
            Some(Some(at)) => i64::try_from(at).unwrap_or(i64::MAX),
        });
        Ok(())
    })
}

/// PERSIST: removes the expiry; `*applied` is false when there was none or
/// the key is missing.
#[no_mangle]
pub extern "C" fn ringkv_persist(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    applied: *mut bool,
) -> ringkv_status {
    guard(|| {
        let out = args::out(applied, "applied")?;
        out.set(engine(e)?.persist(args::bytes(key, key_len, "key")?)?);
        Ok(())
    })
}

/// RENAME (atomic, across shards); a missing `from` is `RINGKV_NO_SUCH_KEY`.
#[no_mangle]
pub extern "C" fn ringkv_rename(
    e: *const ringkv_engine,
    from: *const c_char,
    from_len: usize,
    to: *const c_char,
    to_len: usize,
) -> ringkv_status {
    guard(|| {
        engine(e)?.rename(args::bytes(from, from_len, "from")?, args::bytes(to, to_len, "to")?)?;
        Ok(())
    })
}

/// RENAMENX: renames only if `to` does not exist; `*applied` says whether.
#[no_mangle]
pub extern "C" fn ringkv_rename_nx(
    e: *const ringkv_engine,
    from: *const c_char,
    from_len: usize,
    to: *const c_char,
    to_len: usize,
    applied: *mut bool,
) -> ringkv_status {
    guard(|| {
        let out = args::out(applied, "applied")?;
        out.set(engine(e)?.rename_nx(args::bytes(from, from_len, "from")?, args::bytes(to, to_len, "to")?)?);
        Ok(())
    })
}

/// COPY `src` to `dst` (value and expiry); with `replace` false an
/// existing `dst` is left alone. `*copied` says whether it copied.
#[no_mangle]
pub extern "C" fn ringkv_copy(
    e: *const ringkv_engine,
    src: *const c_char,
    src_len: usize,
    dst: *const c_char,
    dst_len: usize,
    replace: bool,
    copied: *mut bool,
) -> ringkv_status {
    guard(|| {
        let out = args::out(copied, "copied")?;
        out.set(engine(e)?.copy(
            args::bytes(src, src_len, "src")?,
            args::bytes(dst, dst_len, "dst")?,
            replace,
        )?);
        Ok(())
    })
}

/// RANDOMKEY: a key, or nil when the engine is empty.
#[no_mangle]
pub extern "C" fn ringkv_random_key(e: *const ringkv_engine, out: *mut ringkv_buf) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(ringkv_buf::opt(engine(e)?.random_key().as_deref()));
        Ok(())
    })
}

/// DBSIZE: the number of keys.
#[no_mangle]
pub extern "C" fn ringkv_dbsize(e: *const ringkv_engine, out: *mut u64) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(engine(e)?.dbsize());
        Ok(())
    })
}

/// FLUSHALL: deletes every key (one logged mutation).
#[no_mangle]
pub extern "C" fn ringkv_flush(e: *const ringkv_engine) -> ringkv_status {
    guard(|| {
        engine(e)?.flush()?;
        Ok(())
    })
}
