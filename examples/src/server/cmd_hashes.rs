//! Hash commands, and HDRAIN (atomically remove and return up to N fields).

use bytes::Bytes;

use super::cmd_keys::{cursor_arg, scan_args};
use super::command::{engine_error, int_arg, owned, wrong_arity, CmdResult, Ctx, Next};

pub(crate) fn hset(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let name = if super::command::is(&a[0], "hmset") {
        "hmset"
    } else {
        "hset"
    };
    if !a.len().is_multiple_of(2) {
        return Err(wrong_arity(name));
    }
    let pairs = a[2..].chunks(2).map(|p| (p[0].clone(), owned(&p[1])));
    let added = cx.node.engine.hset(&a[1], pairs).map_err(|e| engine_error(e, name))?;
    if name == "hmset" {
        cx.out.ok();
    } else {
        cx.out.int(added as i64);
    }
    Ok(Next::Done)
}

pub(crate) fn hget(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let v = cx.node.engine.hget(&a[1], &a[2]).map_err(|e| engine_error(e, "hget"))?;
    cx.hit(v.is_some());
    cx.out.opt_bulk(v.as_deref());
    Ok(Next::Done)
}

pub(crate) fn hmget(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let vs = cx
        .node
        .engine
        .hmget(&a[1], &a[2..])
        .map_err(|e| engine_error(e, "hmget"))?;
    cx.out.array(vs.len());
    for v in &vs {
        cx.out.opt_bulk(v.as_deref());
    }
    Ok(Next::Done)
}

pub(crate) fn hdel(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let n = cx
        .node
        .engine
        .hdel(&a[1], &a[2..])
        .map_err(|e| engine_error(e, "hdel"))?;
    cx.out.int(n as i64);
    Ok(Next::Done)
}

pub(crate) fn hlen(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let n = cx.node.engine.hlen(&a[1]).map_err(|e| engine_error(e, "hlen"))?;
    cx.out.int(n as i64);
    Ok(Next::Done)
}

pub(crate) fn hexists(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let r = cx
        .node
        .engine
        .hexists(&a[1], &a[2])
        .map_err(|e| engine_error(e, "hexists"))?;
    cx.out.int(i64::from(r));
    Ok(Next::Done)
}

pub(crate) fn hstrlen(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let v = cx
        .node
        .engine
        .hget(&a[1], &a[2])
        .map_err(|e| engine_error(e, "hstrlen"))?;
    cx.out.int(v.map_or(0, |v| v.len() as i64));
    Ok(Next::Done)
}

pub(crate) fn hincrby(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let d = int_arg(&a[3])?;
    let v = cx.node.engine.hincr_by(&a[1], &a[2], d).map_err(|e| match e {
        // Redis names the hash in this one.
        ringkv::Error::NotAnInteger => "ERR hash value is not an integer".to_string(),
        other => engine_error(other, "hincrby"),
    })?;
    cx.out.int(v);
    Ok(Next::Done)
}

pub(crate) fn hgetall(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let all = cx.node.engine.hgetall(&a[1]).map_err(|e| engine_error(e, "hgetall"))?;
    cx.out.map(all.len());
    for (f, v) in &all {
        cx.out.bulk(f);
        cx.out.bulk(v);
    }
    Ok(Next::Done)
}

pub(crate) fn hkeys(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let ks = cx.node.engine.hkeys(&a[1]).map_err(|e| engine_error(e, "hkeys"))?;
    cx.out.array(ks.len());
    for k in &ks {
        cx.out.bulk(k);
    }
    Ok(Next::Done)
}

pub(crate) fn hvals(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let vs = cx.node.engine.hvals(&a[1]).map_err(|e| engine_error(e, "hvals"))?;
    cx.out.array(vs.len());
    for v in &vs {
        cx.out.bulk(v);
    }
    Ok(Next::Done)
}

pub(crate) fn hscan(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let cursor = cursor_arg(&a[2])?;
    let args = scan_args(&a[3..], true)?;
    let page = cx
        .node
        .engine
        .hscan(&a[1], cursor, &args.opts)
        .map_err(|e| engine_error(e, "hscan"))?;
    cx.out.array(2);
    cx.out.bulk(page.cursor.to_string().as_bytes());
    let per = if args.novalues { 1 } else { 2 };
    cx.out.array(page.items.len() * per);
    for (f, v) in &page.items {
        cx.out.bulk(f);
        if !args.novalues {
            cx.out.bulk(v);
        }
    }
    Ok(Next::Done)
}

/// HDRAIN key count: removes and returns up to `count` fields, atomically
/// (the safe form of "HSCAN a batch, then HDEL it"). A map of the fields
/// taken (an array of field, value pairs in RESP2).
pub(crate) fn hdrain(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let n = int_arg(&a[2])?;
    if n < 1 {
        return Err("ERR count must be positive".into());
    }
    let taken = cx
        .node
        .engine
        .hdrain(&a[1], n as usize)
        .map_err(|e| engine_error(e, "hdrain"))?;
    cx.out.map(taken.len());
    for (f, v) in &taken {
        cx.out.bulk(f);
        cx.out.bulk(v);
    }
    Ok(Next::Done)
}

pub(crate) fn hsetnx(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let r = cx
        .node
        .engine
        .hsetnx(&a[1], &a[2], owned(&a[3]))
        .map_err(|e| engine_error(e, "hsetnx"))?;
    cx.out.int(i64::from(r));
    Ok(Next::Done)
}

pub(crate) fn hincrbyfloat(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let d = ringkv::parse_f64(&a[3]).ok_or_else(|| "ERR value is not a valid float".to_string())?;
    // Redis refuses an infinite increment itself, before the sum.
    if !d.is_finite() {
        return Err("ERR value is NaN or Infinity".into());
    }
    let v = cx.node.engine.hincr_by_float(&a[1], &a[2], d).map_err(|e| match e {
        ringkv::Error::NotAFloat => "ERR hash value is not a float".to_string(),
        other => engine_error(other, "hincrbyfloat"),
    })?;
    cx.out.bulk(&v);
    Ok(Next::Done)
}

/// HRANDFIELD key [count [WITHVALUES]].
pub(crate) fn hrandfield(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let (count, with_values) = match &a[2..] {
        [] => (None, false),
        [c] => (Some(int_arg(c)?), false),
        [c, w] if super::command::is(w, "WITHVALUES") => (Some(int_arg(c)?), true),
        _ => return Err(super::command::SYNTAX.into()),
    };
    let picked = cx
        .node
        .engine
        .hrandfield(&a[1], count.unwrap_or(1))
        .map_err(|e| engine_error(e, "hrandfield"))?;
    match count {
        None => cx.out.opt_bulk(picked.first().map(|(f, _)| &f[..])),
        Some(_) if with_values && cx.out.protocol() == crate::resp::Protocol::Resp3 => {
            cx.out.array(picked.len());
            for (f, v) in &picked {
                cx.out.array(2);
                cx.out.bulk(f);
                cx.out.bulk(v);
            }
        }
        Some(_) => {
            cx.out.array(picked.len() * if with_values { 2 } else { 1 });
            for (f, v) in &picked {
                cx.out.bulk(f);
                if with_values {
                    cx.out.bulk(v);
                }
            }
        }
    }
    Ok(Next::Done)
}
