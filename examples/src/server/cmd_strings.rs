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

/// Parses SET's options after `key value` as Redis 7.0 does: an option may
/// repeat (the last expiry given wins) but not conflict (NX with XX, two
/// kinds of expiry); the options are checked first (a syntax error
/// anywhere wins), then the expiry's value.
pub(crate) fn set_options(a: &[Bytes]) -> Result<SetOptions, String> {
    #[derive(PartialEq, Clone, Copy)]
    enum Cond {
        Any,
        Nx,
        Xx,
    }
    let mut opts = SetOptions::new();
    let mut cond = Cond::Any;
    // The expiry option's name (its kind) and its argument.
    let mut kind: Option<&str> = None;
    let mut timed: Option<&Bytes> = None;
    let mut i = 0;
    while i < a.len() {
        let o = &a[i];
        let next = a.get(i + 1);
        let free = |k: &str| kind.is_none_or(|have| have == k);
        if is(o, "NX") && cond != Cond::Xx {
            cond = Cond::Nx;
        } else if is(o, "XX") && cond != Cond::Nx {
            cond = Cond::Xx;
        } else if is(o, "GET") {
            opts = opts.get();
        } else if is(o, "KEEPTTL") && free("keepttl") {
            kind = Some("keepttl");
        } else if let Some(k) = ["ex", "px", "exat", "pxat"]
            .into_iter()
            .find(|k| is(o, k) && free(k) && next.is_some())
        {
            kind = Some(k);
            timed = next;
            i += 1;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    match cond {
        Cond::Nx => opts = opts.nx(),
        Cond::Xx => opts = opts.xx(),
        Cond::Any => {}
    }
    if kind == Some("keepttl") {
        opts.expiry = SetExpiry::Keep;
    }
    if let (Some(k), Some(v)) = (kind, timed) {
        let n = int_arg(v)?;
        if n <= 0 {
            return Err("ERR invalid expire time in 'set' command".into());
        }
        let n = n as u64;
        opts.expiry = match k {
            "ex" => SetExpiry::Seconds(n),
            "px" => SetExpiry::Millis(n),
            "exat" => SetExpiry::AtSeconds(n),
            _ => SetExpiry::AtMillis(n),
        };
        check_expiry(opts.expiry, "set")?;
    }
    Ok(opts)
}

/// Redis refuses an expiry whose absolute time in milliseconds does not
/// fit an i64 before it looks at the key (the engine checks it only when
/// it writes, so NX/XX or a wrong type would otherwise answer first).
fn check_expiry(expiry: SetExpiry, name: &str) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let ms = |n: u64| i64::try_from(n).ok();
    let at = match expiry {
        SetExpiry::Seconds(s) => ms(s).and_then(|s| s.checked_mul(1000)).and_then(|t| t.checked_add(now)),
        SetExpiry::Millis(m) => ms(m).and_then(|m| m.checked_add(now)),
        SetExpiry::AtSeconds(s) => ms(s).and_then(|s| s.checked_mul(1000)),
        _ => Some(0),
    };
    match at {
        Some(_) => Ok(()),
        None => Err(format!("ERR invalid expire time in '{name}' command")),
    }
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
    check_expiry(opts.expiry, name)?;
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
    // As Redis 7.0: the options first (they may repeat, not conflict), then
    // the key (nil if missing, WRONGTYPE), then the expiry's value.
    let mut kind: Option<&str> = None;
    let mut timed: Option<&Bytes> = None;
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        let next = a.get(i + 1);
        let free = |k: &str| kind.is_none_or(|have| have == k);
        if is(o, "PERSIST") && free("persist") {
            kind = Some("persist");
        } else if let Some(k) = ["ex", "px", "exat", "pxat"]
            .into_iter()
            .find(|k| is(o, k) && free(k) && next.is_some())
        {
            kind = Some(k);
            timed = next;
            i += 1;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    if kind.is_some_and(|k| k != "persist") {
        let current = cx.node.engine.get(&a[1]).map_err(|e| engine_error(e, "getex"))?;
        if current.is_none() {
            cx.out.null();
            return Ok(Next::Done);
        }
    }
    let expiry = match (kind, timed) {
        (None, _) => GetExpiry::Keep,
        (Some("persist"), _) => GetExpiry::Persist,
        (Some(k), Some(v)) => {
            let n = int_arg(v)?;
            if n <= 0 {
                return Err("ERR invalid expire time in 'getex' command".into());
            }
            let n = n as u64;
            let (check, expiry) = match k {
                "ex" => (SetExpiry::Seconds(n), GetExpiry::Seconds(n)),
                "px" => (SetExpiry::Millis(n), GetExpiry::Millis(n)),
                "exat" => (SetExpiry::AtSeconds(n), GetExpiry::AtSeconds(n)),
                _ => (SetExpiry::AtMillis(n), GetExpiry::AtMillis(n)),
            };
            check_expiry(check, "getex")?;
            expiry
        }
        (Some(_), None) => return Err(SYNTAX.into()),
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
    let d = ringkv::parse_f64(&a[2]).filter(|d| d.is_finite());
    let Some(d) = d else {
        // Redis checks the key's type, then its value, then the increment
        // (an infinite one is refused as the sum it would produce).
        let current = cx.node.engine.get(&a[1]).map_err(|e| engine_error(e, "incrbyfloat"))?;
        let bad_value = current.is_some_and(|v| ringkv::parse_f64(&v).is_none());
        return Err(match ringkv::parse_f64(&a[2]) {
            Some(_) if !bad_value => "ERR increment would produce NaN or Infinity".into(),
            _ => "ERR value is not a valid float".into(),
        });
    };
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
