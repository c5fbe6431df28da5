//! Keyspace commands.

use bytes::Bytes;
use ringkv::{ExpireCondition, KeyType, ScanOptions};

use super::command::{engine_error, int_arg, is, CmdResult, Ctx, Next, SYNTAX};

pub(crate) fn del(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let n = cx.node.engine.del(&a[1..]).map_err(|e| engine_error(e, "del"))?;
    cx.out.int(n as i64);
    Ok(Next::Done)
}

pub(crate) fn exists(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    cx.out.int(cx.node.engine.exists(&a[1..]) as i64);
    Ok(Next::Done)
}

pub(crate) fn key_type(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let t = cx.node.engine.key_type(&a[1]);
    cx.out.simple(t.map_or("none", KeyType::as_str));
    Ok(Next::Done)
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key n [NX | XX | GT | LT].
pub(crate) fn expire(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let name = String::from_utf8_lossy(&a[0]).to_ascii_lowercase();
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for o in &a[3..] {
        if is(o, "NX") {
            nx = true;
        } else if is(o, "XX") {
            xx = true;
        } else if is(o, "GT") {
            gt = true;
        } else if is(o, "LT") {
            lt = true;
        } else {
            return Err(format!("ERR Unsupported option {}", String::from_utf8_lossy(o)));
        }
    }
    if nx && (xx || gt || lt) {
        return Err("ERR NX and XX, GT or LT options at the same time are not compatible".into());
    }
    if gt && lt {
        return Err("ERR GT and LT options at the same time are not compatible".into());
    }
    // As Redis: the options are checked before the time.
    let n = int_arg(&a[2])?;
    let cond = if nx {
        ExpireCondition::IfNone
    } else if gt {
        ExpireCondition::IfLater
    } else if lt && xx {
        ExpireCondition::IfSomeAndEarlier
    } else if lt {
        ExpireCondition::IfEarlier
    } else if xx {
        ExpireCondition::IfSome
    } else {
        ExpireCondition::Always
    };
    let e = &cx.node.engine;
    let set = if cond == ExpireCondition::Always {
        match name.as_str() {
            "expire" => e.expire(&a[1], n),
            "pexpire" => e.pexpire(&a[1], n),
            "expireat" => e.expire_at(&a[1], n),
            _ => e.pexpire_at(&a[1], n),
        }
    } else {
        let invalid = || format!("ERR invalid expire time in '{name}' command");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let at = match name.as_str() {
            "expire" => n.checked_mul(1000).and_then(|ms| ms.checked_add(now)),
            "pexpire" => n.checked_add(now),
            "expireat" => n.checked_mul(1000),
            _ => Some(n),
        }
        .ok_or_else(invalid)?;
        e.pexpire_at_if(&a[1], at, cond)
    }
    .map_err(|err| engine_error(err, &name))?;
    cx.out.int(i64::from(set));
    Ok(Next::Done)
}

/// EXPIRETIME / PEXPIRETIME: -2 missing, -1 no expiry, else the unix time.
pub(crate) fn expiretime(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let v = match cx.node.engine.expire_time(&a[1]) {
        None => -2,
        Some(None) => -1,
        Some(Some(ms)) if is(&a[0], "pexpiretime") => ms as i64,
        Some(Some(ms)) => (ms / 1000) as i64,
    };
    cx.out.int(v);
    Ok(Next::Done)
}

/// COPY source destination [DB 0] [REPLACE].
pub(crate) fn copy(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        if is(&a[i], "REPLACE") {
            replace = true;
            i += 1;
        } else if is(&a[i], "DB") && i + 1 < a.len() {
            if int_arg(&a[i + 1])? != 0 {
                return Err("ERR DB index is out of range".into());
            }
            i += 2;
        } else {
            return Err(SYNTAX.into());
        }
    }
    let r = cx
        .node
        .engine
        .copy(&a[1], &a[2], replace)
        .map_err(|e| engine_error(e, "copy"))?;
    cx.out.int(i64::from(r));
    Ok(Next::Done)
}

pub(crate) fn randomkey(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    let k = cx.node.engine.random_key();
    cx.out.opt_bulk(k.as_deref());
    Ok(Next::Done)
}

pub(crate) fn ttl(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let t = cx.node.engine.ttl(&a[1]);
    let v = if is(&a[0], "pttl") {
        t.as_redis_millis()
    } else {
        t.as_redis_seconds()
    };
    cx.out.int(v);
    Ok(Next::Done)
}

pub(crate) fn persist(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let r = cx.node.engine.persist(&a[1]).map_err(|e| engine_error(e, "persist"))?;
    cx.out.int(i64::from(r));
    Ok(Next::Done)
}

pub(crate) fn rename(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    if is(&a[0], "renamenx") {
        let r = cx
            .node
            .engine
            .rename_nx(&a[1], &a[2])
            .map_err(|e| engine_error(e, "renamenx"))?;
        cx.out.int(i64::from(r));
    } else {
        cx.node
            .engine
            .rename(&a[1], &a[2])
            .map_err(|e| engine_error(e, "rename"))?;
        cx.out.ok();
    }
    Ok(Next::Done)
}

/// `[MATCH p] [COUNT n] [TYPE t] [NOVALUES]` options of SCAN and HSCAN.
pub(crate) struct ScanArgs {
    pub(crate) opts: ScanOptions,
    pub(crate) novalues: bool,
    /// TYPE named a Redis type ringkv does not have: nothing can match.
    pub(crate) no_match: bool,
}

pub(crate) fn scan_args(a: &[Bytes], hash: bool) -> Result<ScanArgs, String> {
    let mut opts = ScanOptions::default();
    let mut novalues = false;
    let mut no_match = false;
    let mut i = 0;
    while i < a.len() {
        let value = a.get(i + 1);
        if is(&a[i], "MATCH") && value.is_some() {
            opts = opts.pattern(&a[i + 1]);
            i += 2;
        } else if is(&a[i], "COUNT") && value.is_some() {
            let n = int_arg(&a[i + 1])?;
            if n < 1 {
                return Err(SYNTAX.into());
            }
            opts = opts.count(n as usize);
            i += 2;
        } else if !hash && is(&a[i], "TYPE") && value.is_some() {
            let t = &a[i + 1];
            opts.key_type = if is(t, "string") {
                Some(KeyType::String)
            } else if is(t, "hash") {
                Some(KeyType::Hash)
            } else if ["list", "set", "zset", "stream"].iter().any(|n| is(t, n)) {
                // Types Redis knows and ringkv does not have: no key matches.
                no_match = true;
                None
            } else {
                return Err(format!("ERR unknown type name '{}'", String::from_utf8_lossy(t)));
            };
            i += 2;
        } else if hash && is(&a[i], "NOVALUES") {
            novalues = true;
            i += 1;
        } else {
            return Err(SYNTAX.into());
        }
    }
    Ok(ScanArgs {
        opts,
        novalues,
        no_match,
    })
}

/// A SCAN/HSCAN cursor argument.
pub(crate) fn cursor_arg(a: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(a)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| "ERR invalid cursor".to_string())
}

pub(crate) fn scan(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let cursor = cursor_arg(&a[1])?;
    let args = scan_args(&a[2..], false)?;
    let mut page = cx.node.engine.scan(cursor, &args.opts);
    if args.no_match {
        page.items.clear();
    }
    cx.out.array(2);
    cx.out.bulk(page.cursor.to_string().as_bytes());
    cx.out.array(page.items.len());
    for k in &page.items {
        cx.out.bulk(k);
    }
    Ok(Next::Done)
}

/// KEYS pattern: every key matching, O(n) in the keyspace (it scans in
/// bounded steps, holding no lock between them, so writers are not
/// stalled; as with SCAN, keys changed meanwhile may or may not appear).
pub(crate) fn keys(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let mut found: Vec<Bytes> = Vec::new();
    let opts = ScanOptions::default().pattern(&a[1]).count(1000);
    let mut seen = std::collections::HashSet::new();
    for k in cx.node.engine.scan_iter(opts) {
        let k = Bytes::copy_from_slice(&k);
        if seen.insert(k.clone()) {
            found.push(k);
        }
    }
    cx.out.array(found.len());
    for k in &found {
        cx.out.bulk(k);
    }
    Ok(Next::Done)
}

pub(crate) fn dbsize(cx: &mut Ctx<'_>, _a: &[Bytes]) -> CmdResult {
    cx.out.int(cx.node.engine.dbsize() as i64);
    Ok(Next::Done)
}

/// FLUSHALL / FLUSHDB [SYNC|ASYNC] (both run the same atomic flush).
pub(crate) fn flushall(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    match &a[1..] {
        [] => {}
        [o] if is(o, "SYNC") || is(o, "ASYNC") => {}
        _ => return Err(SYNTAX.into()),
    }
    cx.node.engine.flush().map_err(|e| engine_error(e, "flushall"))?;
    cx.out.ok();
    Ok(Next::Done)
}

/// OBJECT ENCODING | REFCOUNT | IDLETIME | FREQ | HELP. ringkv has one
/// representation per type; ENCODING answers what Redis would use for
/// the same value (int, embstr, raw; listpack or hashtable), so clients
/// and monitors that branch on it see familiar names.
pub(crate) fn object(cx: &mut Ctx<'_>, a: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&a[1]).to_ascii_lowercase();
    if sub == "help" && a.len() == 2 {
        let lines = [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "FREQ <key>",
            "IDLETIME <key>",
            "REFCOUNT <key>",
        ];
        cx.out.array(lines.len());
        for l in lines {
            cx.out.simple(l);
        }
        return Ok(Next::Done);
    }
    if a.len() != 3 {
        return Err(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try OBJECT HELP.",
            String::from_utf8_lossy(&a[1])
        ));
    }
    let engine = &cx.node.engine;
    let Some(t) = engine.key_type(&a[2]) else {
        cx.out.null();
        return Ok(Next::Done);
    };
    match sub.as_str() {
        "encoding" => {
            let enc = match t {
                KeyType::String => {
                    let v = engine.get(&a[2]).map_err(|e| engine_error(e, "object"))?.unwrap_or_default();
                    if v.len() <= 20 && ringkv::parse_i64(&v).is_some() {
                        "int"
                    } else if v.len() <= 44 {
                        "embstr"
                    } else {
                        "raw"
                    }
                }
                _ => {
                    let small = engine.hlen(&a[2]).map_err(|e| engine_error(e, "object"))? <= 128
                        && engine
                            .hgetall(&a[2])
                            .map_err(|e| engine_error(e, "object"))?
                            .iter()
                            .all(|(f, v)| f.len() <= 64 && v.len() <= 64);
                    if small {
                        "listpack"
                    } else {
                        "hashtable"
                    }
                }
            };
            cx.out.bulk(enc.as_bytes());
        }
        "refcount" => cx.out.int(1),
        // Access times are kept only under allkeys-lru; 0 otherwise.
        "idletime" => cx.out.int(0),
        "freq" => {
            return Err("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.".into())
        }
        _ => {
            return Err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try OBJECT HELP.",
                String::from_utf8_lossy(&a[1])
            ))
        }
    }
    Ok(Next::Done)
}
