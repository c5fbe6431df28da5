//! String commands.

use bytes::Bytes;
use ringkv::{GetExpiry, SetExpiry, SetOptions};

use super::command::{engine_error, int_arg, is, owned, wrong_arity, CmdResult, Ctx, Next, SYNTAX};

pub(crate) fn get(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let v = cx.node.engine.get(&a[1]).map_err(|e| engine_error(e, "get"))?;
    cx.hit(v.is_some());
    cx.out.opt_bulk(v.as_deref());
    Ok(Next::Done)
}

/// Parses SET's options after `key value`.
fn set_options(a: &[Bytes]) -> Result<SetOptions, String> {
    let mut opts = SetOptions::new();
    let mut cond = false;
    let mut expiry = false;
    let mut i = 0;
    while i < a.len() {
        let o = &a[i];
        let timed = |unit: fn(u64) -> SetExpiry, i: &mut usize| -> Result<SetExpiry, String> {
            let v = a.get(*i + 1).ok_or_else(|| SYNTAX.to_string())?;
            *i += 1;
            let n = int_arg(v)?;
            if n <= 0 {
                return Err("ERR invalid expire time in 'set' command".into());
            }
            Ok(unit(n as u64))
        };
        if is(o, "NX") && !cond {
            opts = opts.nx();
            cond = true;
        } else if is(o, "XX") && !cond {
            opts = opts.xx();
            cond = true;
        } else if is(o, "GET") {
            opts = opts.get();
        } else if is(o, "KEEPTTL") && !expiry {
            opts.expiry = SetExpiry::Keep;
            expiry = true;
        } else if is(o, "EX") && !expiry {
            opts.expiry = timed(SetExpiry::Seconds, &mut i)?;
            expiry = true;
        } else if is(o, "PX") && !expiry {
            opts.expiry = timed(SetExpiry::Millis, &mut i)?;
            expiry = true;
        } else if is(o, "EXAT") && !expiry {
            opts.expiry = timed(SetExpiry::AtSeconds, &mut i)?;
            expiry = true;
        } else if is(o, "PXAT") && !expiry {
            opts.expiry = timed(SetExpiry::AtMillis, &mut i)?;
            expiry = true;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    Ok(opts)
}

pub(crate) fn set(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let opts = set_options(&a[3..])?;
    let outcome = cx
        .node
        .engine
        .set_with(&a[1], owned(&a[2]), opts)
        .map_err(|e| engine_error(e, "set"))?;
    if opts.get {
        cx.out.opt_bulk(outcome.previous.as_deref());
    } else if outcome.applied {
        cx.out.ok();
    } else {
        cx.out.null();
    }
    Ok(Next::Done)
}

pub(crate) fn setnx(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let outcome = cx
        .node
        .engine
        .set_with(&a[1], owned(&a[2]), SetOptions::new().nx())
        .map_err(|e| engine_error(e, "setnx"))?;
    cx.out.int(i64::from(outcome.applied));
    Ok(Next::Done)
}

fn set_expiring(cx: &mut Ctx<'_>, a: &[Bytes], name: &str, expiry: fn(u64) -> SetExpiry) -> CmdResult {
    let n = int_arg(&a[2])?;
    if n <= 0 {
        return Err(format!("ERR invalid expire time in '{name}' command"));
    }
    let opts = SetOptions {
        expiry: expiry(n as u64),
        ..SetOptions::new()
    };
    cx.node
        .engine
        .set_with(&a[1], owned(&a[3]), opts)
        .map_err(|e| engine_error(e, name))?;
    cx.out.ok();
    Ok(Next::Done)
}

pub(crate) fn setex(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    set_expiring(cx, a, "setex", SetExpiry::Seconds)
}

pub(crate) fn psetex(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    set_expiring(cx, a, "psetex", SetExpiry::Millis)
}

pub(crate) fn getset(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let outcome = cx
        .node
        .engine
        .set_with(&a[1], owned(&a[2]), SetOptions::new().get())
        .map_err(|e| engine_error(e, "getset"))?;
    cx.out.opt_bulk(outcome.previous.as_deref());
    Ok(Next::Done)
}

pub(crate) fn mget(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let values = cx.node.engine.mget(&a[1..]);
    cx.out.array(values.len());
    for v in &values {
        cx.out.opt_bulk(v.as_deref());
    }
    Ok(Next::Done)
}

pub(crate) fn mset(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    if a.len().is_multiple_of(2) {
        return Err(wrong_arity("mset"));
    }
    let pairs = a[1..].chunks(2).map(|p| (p[0].clone(), owned(&p[1])));
    cx.node.engine.mset(pairs).map_err(|e| engine_error(e, "mset"))?;
    cx.out.ok();
    Ok(Next::Done)
}

fn incr_by(cx: &mut Ctx<'_>, key: &[u8], delta: i64, name: &str) -> CmdResult {
    let v = cx.node.engine.incr_by(key, delta).map_err(|e| engine_error(e, name))?;
    cx.out.int(v);
    Ok(Next::Done)
}

pub(crate) fn incr(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    incr_by(cx, &a[1], 1, "incr")
}

pub(crate) fn decr(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    incr_by(cx, &a[1], -1, "decr")
}

pub(crate) fn incrby(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let d = int_arg(&a[2])?;
    incr_by(cx, &a[1], d, "incrby")
}

pub(crate) fn decrby(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let d = int_arg(&a[2])?;
    let d = d
        .checked_neg()
        .ok_or_else(|| "ERR decrement would overflow".to_string())?;
    incr_by(cx, &a[1], d, "decrby")
}

pub(crate) fn append(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let n = cx
        .node
        .engine
        .append(&a[1], owned(&a[2]))
        .map_err(|e| engine_error(e, "append"))?;
    cx.out.int(n as i64);
    Ok(Next::Done)
}

pub(crate) fn strlen(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let v = cx.node.engine.get(&a[1]).map_err(|e| engine_error(e, "strlen"))?;
    cx.out.int(v.map_or(0, |v| v.len() as i64));
    Ok(Next::Done)
}

pub(crate) fn getdel(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let v = cx.node.engine.getdel(&a[1]).map_err(|e| engine_error(e, "getdel"))?;
    cx.out.opt_bulk(v.as_deref());
    Ok(Next::Done)
}

/// GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST].
pub(crate) fn getex(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let expiry = match &a[2..] {
        [] => GetExpiry::Keep,
        [o] if is(o, "PERSIST") => GetExpiry::Persist,
        [o, v] if ["EX", "PX", "EXAT", "PXAT"].iter().any(|n| is(o, n)) => {
            let n = int_arg(v)?;
            if n <= 0 {
                return Err("ERR invalid expire time in 'getex' command".into());
            }
            let n = n as u64;
            if is(o, "EX") {
                GetExpiry::Seconds(n)
            } else if is(o, "PX") {
                GetExpiry::Millis(n)
            } else if is(o, "EXAT") {
                GetExpiry::AtSeconds(n)
            } else {
                GetExpiry::AtMillis(n)
            }
        }
        _ => return Err(SYNTAX.into()),
    };
    let v = cx
        .node
        .engine
        .getex(&a[1], expiry)
        .map_err(|e| engine_error(e, "getex"))?;
    cx.out.opt_bulk(v.as_deref());
    Ok(Next::Done)
}

/// GETRANGE key start end (inclusive, negative counts from the end),
/// clamped as Redis clamps it.
pub(crate) fn getrange(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let (start, end) = (int_arg(&a[2])?, int_arg(&a[3])?);
    let v = cx.node.engine.get(&a[1]).map_err(|e| engine_error(e, "getrange"))?;
    let v = v.as_deref().unwrap_or(&[]);
    let len = v.len() as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        cx.out.bulk(b"");
        return Ok(Next::Done);
    }
    let start = if start < 0 { (len + start).max(0) } else { start };
    let end = if end < 0 { (len + end).max(0) } else { end.min(len - 1) };
    if start > end || start >= len {
        cx.out.bulk(b"");
    } else {
        cx.out.bulk(&v[start as usize..=end as usize]);
    }
    Ok(Next::Done)
}

pub(crate) fn setrange(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let offset = int_arg(&a[2])?;
    if offset < 0 {
        return Err("ERR offset is out of range".into());
    }
    let n = cx
        .node
        .engine
        .setrange(&a[1], offset as usize, &a[3])
        .map_err(|e| engine_error(e, "setrange"))?;
    cx.out.int(n as i64);
    Ok(Next::Done)
}

pub(crate) fn incrbyfloat(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let d = ringkv::parse_f64(&a[2]).ok_or_else(|| "ERR value is not a valid float".to_string())?;
    let v = cx
        .node
        .engine
        .incr_by_float(&a[1], d)
        .map_err(|e| engine_error(e, "incrbyfloat"))?;
    cx.out.bulk(&v);
    Ok(Next::Done)
}

pub(crate) fn msetnx(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    if a.len().is_multiple_of(2) {
        return Err(wrong_arity("msetnx"));
    }
    let pairs = a[1..].chunks(2).map(|p| (p[0].clone(), owned(&p[1])));
    let set = cx.node.engine.msetnx(pairs).map_err(|e| engine_error(e, "msetnx"))?;
    cx.out.int(i64::from(set));
    Ok(Next::Done)
}
