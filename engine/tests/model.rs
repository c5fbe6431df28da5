//! Model test: the engine against a plain `BTreeMap` model, over random
//! sequences of every operation (including batches, expiry with an injected
//! clock, renames across shards), and the replay property: an engine fed the
//! first engine's mutation stream ends with the same digest.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringkv::{
    BatchReply, Clock, Config, Engine, Error, ManualClock, MemorySink, ScanOptions, SetExpiry, SetOptions, Ttl,
    WriteBatch,
};

#[derive(Debug, Clone, PartialEq)]
enum MValue {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
}

#[derive(Debug, Clone, Default)]
struct Model {
    keys: BTreeMap<Vec<u8>, (MValue, Option<u64>)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Unit,
    Bool(bool),
    Int(i64),
    Count(usize),
    Value(Option<Vec<u8>>),
    Set(bool, Option<Vec<u8>>),
    Ttl(i64),
    Err(String),
}

fn err_kind(e: &Error) -> String {
    match e {
        Error::WrongType => "wrongtype",
        Error::NotAnInteger => "notint",
        Error::Overflow => "overflow",
        Error::InvalidExpire => "expire",
        Error::NoSuchKey => "nokey",
        Error::InvalidArgument(_) => "arg",
        Error::NotAFloat => "notfloat",
        Error::NotFinite => "notfinite",
        _ => "other",
    }
    .to_string()
}

fn parse(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    if s.starts_with('+') || (s.len() > 1 && (s.starts_with('0') || s.starts_with("-0"))) || s == "-0" {
        return None;
    }
    s.parse().ok()
}

impl Model {
    fn live(&mut self, key: &[u8], now: u64) -> Option<&mut (MValue, Option<u64>)> {
        if matches!(self.keys.get(key), Some((_, Some(t))) if *t <= now) {
            self.keys.remove(key);
        }
        self.keys.get_mut(key)
    }
}

#[derive(Debug, Clone)]
enum Cmd {
    Get(usize),
    Set(usize, Vec<u8>, u8, u8, bool, u64),
    Del(Vec<usize>),
    IncrBy(usize, i64),
    Append(usize, Vec<u8>),
    PExpire(usize, i64),
    Persist(usize),
    Ttl(usize),
    Rename(usize, usize),
    HSet(usize, Vec<(usize, Vec<u8>)>),
    HGet(usize, usize),
    HDel(usize, Vec<usize>),
    HIncrBy(usize, usize, i64),
    HDrain(usize, usize),
    GetDel(usize),
    SetRange(usize, usize, Vec<u8>),
    IncrByFloat(usize, f64),
    MSetNx(Vec<(usize, Vec<u8>)>),
    Copy(usize, usize, bool),
    /// PEXPIRE with a condition: 0 NX, 1 XX, 2 GT, 3 LT, 4 LT with XX.
    PExpireIf(usize, i64, u8),
    HSetNx(usize, usize, Vec<u8>),
    Flush,
    Advance(u64),
    ActiveExpire,
    Batch(Vec<Cmd>),
}

const KEYS: [&[u8]; 7] = [
    b"a",
    b"b",
    b"c",
    b"d",
    b"counter",
    b"a-key-longer-than-fourteen-bytes",
    b"\x00\xffbin",
];
const FIELDS: [&[u8]; 5] = [b"f1", b"f2", b"f3", b"field-longer-than-fourteen", b"\x00"];

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24),
        (-1000i64..1000).prop_map(|i| i.to_string().into_bytes()),
        Just(i64::MAX.to_string().into_bytes()),
    ]
}

fn delta() -> impl Strategy<Value = i64> {
    prop_oneof![-100i64..100, Just(i64::MAX), Just(i64::MIN + 1)]
}

fn simple_cmd() -> impl Strategy<Value = Cmd> {
    let k = 0..KEYS.len();
    let f = 0..FIELDS.len();
    prop_oneof![
        k.clone().prop_map(Cmd::Get),
        (k.clone(), value(), 0u8..3, 0u8..6, any::<bool>(), 1u64..5000)
            .prop_map(|(k, v, c, e, g, t)| Cmd::Set(k, v, c, e, g, t)),
        proptest::collection::vec(k.clone(), 1..4).prop_map(Cmd::Del),
        (k.clone(), delta()).prop_map(|(k, d)| Cmd::IncrBy(k, d)),
        (k.clone(), value()).prop_map(|(k, v)| Cmd::Append(k, v)),
        (k.clone(), -100i64..5000).prop_map(|(k, t)| Cmd::PExpire(k, t)),
        k.clone().prop_map(Cmd::Persist),
        k.clone().prop_map(Cmd::Ttl),
        (k.clone(), k.clone()).prop_map(|(a, b)| Cmd::Rename(a, b)),
        (k.clone(), proptest::collection::vec((f.clone(), value()), 1..4)).prop_map(|(k, fs)| Cmd::HSet(k, fs)),
        (k.clone(), f.clone()).prop_map(|(k, f)| Cmd::HGet(k, f)),
        (k.clone(), proptest::collection::vec(f.clone(), 1..3)).prop_map(|(k, fs)| Cmd::HDel(k, fs)),
        (k.clone(), f.clone(), delta()).prop_map(|(k, f, d)| Cmd::HIncrBy(k, f, d)),
        (k.clone(), 1usize..4).prop_map(|(k, n)| Cmd::HDrain(k, n)),
        k.clone().prop_map(Cmd::GetDel),
        (k.clone(), 0usize..12, proptest::collection::vec(any::<u8>(), 0..6))
            .prop_map(|(k, o, v)| Cmd::SetRange(k, o, v)),
        (k.clone(), prop_oneof![Just(0.1f64), Just(-2.5), Just(1e3), Just(3.0)])
            .prop_map(|(k, d)| Cmd::IncrByFloat(k, d)),
        proptest::collection::vec((k.clone(), value()), 1..3).prop_map(Cmd::MSetNx),
        (k.clone(), k.clone(), any::<bool>()).prop_map(|(a, b, r)| Cmd::Copy(a, b, r)),
        (k.clone(), -100i64..5000, 0u8..5).prop_map(|(k, t, c)| Cmd::PExpireIf(k, t, c)),
        (k, f, value()).prop_map(|(k, f, v)| Cmd::HSetNx(k, f, v)),
        Just(Cmd::Flush),
        (0u64..3000).prop_map(Cmd::Advance),
        Just(Cmd::ActiveExpire),
    ]
}

fn batch_op() -> impl Strategy<Value = Cmd> {
    let k = 0..KEYS.len();
    let f = 0..FIELDS.len();
    prop_oneof![
        (k.clone(), value(), 0u8..3, 0u8..6, any::<bool>(), 1u64..5000)
            .prop_map(|(k, v, c, e, g, t)| Cmd::Set(k, v, c, e, g, t)),
        k.clone().prop_map(|k| Cmd::Del(vec![k])),
        (k.clone(), delta()).prop_map(|(k, d)| Cmd::IncrBy(k, d)),
        (k.clone(), value()).prop_map(|(k, v)| Cmd::Append(k, v)),
        (k.clone(), -100i64..5000).prop_map(|(k, t)| Cmd::PExpire(k, t)),
        k.clone().prop_map(Cmd::Persist),
        (k.clone(), proptest::collection::vec((f.clone(), value()), 1..3)).prop_map(|(k, fs)| Cmd::HSet(k, fs)),
        (k.clone(), proptest::collection::vec(f.clone(), 1..3)).prop_map(|(k, fs)| Cmd::HDel(k, fs)),
        (k.clone(), f.clone(), delta()).prop_map(|(k, f, d)| Cmd::HIncrBy(k, f, d)),
        // Reads inside a batch see the batch's earlier writes.
        k.clone().prop_map(Cmd::Get),
        k.clone().prop_map(Cmd::Ttl),
        (k, f).prop_map(|(k, f)| Cmd::HGet(k, f)),
    ]
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        9 => simple_cmd(),
        1 => proptest::collection::vec(batch_op(), 1..5).prop_map(Cmd::Batch),
    ]
}

fn set_opts(cond: u8, exp: u8, get: bool, t: u64, now: u64) -> SetOptions {
    let mut o = SetOptions::new();
    o = match cond {
        1 => o.nx(),
        2 => o.xx(),
        _ => o,
    };
    o = match exp {
        1 => o.keepttl(),
        2 => o.px(t),
        3 => o.pxat(now + t),
        4 => o.ex(t / 1000 + 1),
        5 => o.pxat(now.saturating_sub(t)),
        _ => o,
    };
    if get {
        o = o.get();
    }
    o
}

/// Applies one command to the model; `Err` replies leave the model unchanged.
fn model_apply(m: &mut Model, c: &Cmd, now: u64) -> Reply {
    let key = |i: &usize| KEYS[*i].to_vec();
    match c {
        Cmd::Get(k) => match m.live(&key(k), now) {
            None => Reply::Value(None),
            Some((MValue::Str(v), _)) => Reply::Value(Some(v.clone())),
            Some(_) => Reply::Err("wrongtype".into()),
        },
        Cmd::Set(k, v, cond, exp, get, t) => {
            let opts = set_opts(*cond, *exp, *get, *t, now);
            let cur = m.live(&key(k), now).cloned();
            let prev = match (&cur, get) {
                (Some((MValue::Str(s), _)), true) => Some(s.clone()),
                (Some(_), true) => return Reply::Err("wrongtype".into()),
                _ => None,
            };
            let applies = match cond {
                1 => cur.is_none(),
                2 => cur.is_some(),
                _ => true,
            };
            if applies {
                let expire = match opts.expiry {
                    SetExpiry::None => None,
                    SetExpiry::Keep => cur.and_then(|c| c.1),
                    SetExpiry::Millis(ms) => Some(now + ms),
                    SetExpiry::Seconds(s) => Some(now + s * 1000),
                    SetExpiry::AtMillis(t) => Some(t.max(1)),
                    _ => unreachable!(),
                };
                m.keys.insert(key(k), (MValue::Str(v.clone()), expire));
            }
            Reply::Set(applies, prev)
        }
        Cmd::Del(ks) => {
            let mut n = 0;
            for k in ks {
                if m.live(&key(k), now).is_some() {
                    m.keys.remove(&key(k));
                    n += 1;
                }
            }
            Reply::Int(n)
        }
        Cmd::IncrBy(k, d) => {
            let (cur, exp) = match m.live(&key(k), now) {
                None => (0, None),
                Some((MValue::Str(v), e)) => match parse(v) {
                    Some(i) => (i, *e),
                    None => return Reply::Err("notint".into()),
                },
                Some(_) => return Reply::Err("wrongtype".into()),
            };
            match cur.checked_add(*d) {
                None => Reply::Err("overflow".into()),
                Some(n) => {
                    m.keys.insert(key(k), (MValue::Str(n.to_string().into_bytes()), exp));
                    Reply::Int(n)
                }
            }
        }
        Cmd::Append(k, v) => match m.live(&key(k), now) {
            None => {
                m.keys.insert(key(k), (MValue::Str(v.clone()), None));
                Reply::Count(v.len())
            }
            Some((MValue::Str(s), _)) => {
                s.extend_from_slice(v);
                Reply::Count(s.len())
            }
            Some(_) => Reply::Err("wrongtype".into()),
        },
        Cmd::PExpire(k, ms) => match m.live(&key(k), now) {
            None => Reply::Bool(false),
            Some(e) => {
                let at = now as i64 + ms;
                if at <= now as i64 {
                    m.keys.remove(&key(k));
                } else {
                    e.1 = Some(at as u64);
                }
                Reply::Bool(true)
            }
        },
        Cmd::Persist(k) => match m.live(&key(k), now) {
            Some(e) if e.1.is_some() => {
                e.1 = None;
                Reply::Bool(true)
            }
            _ => Reply::Bool(false),
        },
        Cmd::Ttl(k) => Reply::Ttl(match m.live(&key(k), now) {
            None => -2,
            Some((_, None)) => -1,
            Some((_, Some(t))) => (*t - now) as i64,
        }),
        Cmd::Rename(a, b) => {
            if m.live(&key(a), now).is_none() {
                return Reply::Err("nokey".into());
            }
            m.live(&key(b), now);
            let v = m.keys.remove(&key(a)).expect("live");
            m.keys.insert(key(b), v);
            Reply::Unit
        }
        Cmd::HSet(k, fs) => {
            let h = match m.live(&key(k), now) {
                None => {
                    m.keys.insert(key(k), (MValue::Hash(BTreeMap::new()), None));
                    match m.keys.get_mut(&key(k)) {
                        Some((MValue::Hash(h), _)) => h,
                        _ => unreachable!(),
                    }
                }
                Some((MValue::Hash(h), _)) => h,
                Some(_) => return Reply::Err("wrongtype".into()),
            };
            let mut n = 0;
            for (f, v) in fs {
                n += usize::from(h.insert(FIELDS[*f].to_vec(), v.clone()).is_none());
            }
            Reply::Count(n)
        }
        Cmd::HGet(k, f) => match m.live(&key(k), now) {
            None => Reply::Value(None),
            Some((MValue::Hash(h), _)) => Reply::Value(h.get(FIELDS[*f]).cloned()),
            Some(_) => Reply::Err("wrongtype".into()),
        },
        Cmd::HDel(k, fs) => {
            let n = match m.live(&key(k), now) {
                None => 0,
                Some((MValue::Hash(h), _)) => fs.iter().filter(|f| h.remove(FIELDS[**f]).is_some()).count(),
                Some(_) => return Reply::Err("wrongtype".into()),
            };
            if matches!(m.keys.get(&key(k)), Some((MValue::Hash(h), _)) if h.is_empty()) {
                m.keys.remove(&key(k));
            }
            Reply::Count(n)
        }
        Cmd::HIncrBy(k, f, d) => {
            let cur = match m.live(&key(k), now) {
                None => 0,
                Some((MValue::Hash(h), _)) => match h.get(FIELDS[*f]) {
                    None => 0,
                    Some(v) => match parse(v) {
                        Some(i) => i,
                        None => return Reply::Err("notint".into()),
                    },
                },
                Some(_) => return Reply::Err("wrongtype".into()),
            };
            match cur.checked_add(*d) {
                None => Reply::Err("overflow".into()),
                Some(n) => {
                    model_apply(m, &Cmd::HSet(*k, vec![(*f, n.to_string().into_bytes())]), now);
                    Reply::Int(n)
                }
            }
        }
        Cmd::GetDel(k) => match m.live(&key(k), now) {
            None => Reply::Value(None),
            Some((MValue::Str(v), _)) => {
                let v = v.clone();
                m.keys.remove(&key(k));
                Reply::Value(Some(v))
            }
            Some(_) => Reply::Err("wrongtype".into()),
        },
        Cmd::SetRange(k, off, v) => match m.live(&key(k), now) {
            None if v.is_empty() => Reply::Count(0),
            None => {
                let mut s = vec![0u8; *off];
                s.extend_from_slice(v);
                let n = s.len();
                m.keys.insert(key(k), (MValue::Str(s), None));
                Reply::Count(n)
            }
            Some((MValue::Str(s), _)) => {
                if !v.is_empty() {
                    if s.len() < off + v.len() {
                        s.resize(off + v.len(), 0);
                    }
                    s[*off..off + v.len()].copy_from_slice(v);
                }
                Reply::Count(s.len())
            }
            Some(_) => Reply::Err("wrongtype".into()),
        },
        Cmd::IncrByFloat(k, d) => {
            let (cur, exp) = match m.live(&key(k), now) {
                None => (0.0, None),
                Some((MValue::Str(v), e)) => match std::str::from_utf8(v).ok().and_then(|s| s.parse::<f64>().ok()) {
                    Some(f)
                        if !f.is_nan()
                            && !v.is_empty()
                            && !v[0].is_ascii_whitespace()
                            && !v[v.len() - 1].is_ascii_whitespace() =>
                    {
                        (f, *e)
                    }
                    _ => return Reply::Err("notfloat".into()),
                },
                Some(_) => return Reply::Err("wrongtype".into()),
            };
            let new = cur + d;
            if !new.is_finite() {
                return Reply::Err("notfinite".into());
            }
            let text = ringkv::format_f64(new).into_bytes();
            m.keys.insert(key(k), (MValue::Str(text.clone()), exp));
            Reply::Value(Some(text))
        }
        Cmd::MSetNx(pairs) => {
            if pairs.iter().any(|(k, _)| m.live(&key(k), now).is_some()) {
                return Reply::Bool(false);
            }
            for (k, v) in pairs {
                m.keys.insert(key(k), (MValue::Str(v.clone()), None));
            }
            Reply::Bool(true)
        }
        Cmd::Copy(a, b, replace) => {
            if a == b {
                return Reply::Err("arg".into());
            }
            let Some(v) = m.live(&key(a), now).cloned() else {
                return Reply::Bool(false);
            };
            if m.live(&key(b), now).is_some() && !replace {
                return Reply::Bool(false);
            }
            m.keys.insert(key(b), v);
            Reply::Bool(true)
        }
        Cmd::PExpireIf(k, ms, cond) => match m.live(&key(k), now) {
            None => Reply::Bool(false),
            Some(e) => {
                let at = now as i64 + ms;
                let admits = match (cond, e.1) {
                    (0, c) => c.is_none(),
                    (1, c) => c.is_some(),
                    (2, None) => false,
                    (2, Some(c)) => at > c as i64,
                    (3, None) => true,
                    (_, None) => false,
                    (_, Some(c)) => at < c as i64,
                };
                if !admits {
                    return Reply::Bool(false);
                }
                if at <= now as i64 {
                    m.keys.remove(&key(k));
                } else {
                    e.1 = Some(at as u64);
                }
                Reply::Bool(true)
            }
        },
        Cmd::HSetNx(k, f, v) => {
            match m.live(&key(k), now) {
                Some((MValue::Hash(h), _)) if h.contains_key(FIELDS[*f]) => return Reply::Bool(false),
                Some((MValue::Str(_), _)) => return Reply::Err("wrongtype".into()),
                _ => {}
            }
            model_apply(m, &Cmd::HSet(*k, vec![(*f, v.clone())]), now);
            Reply::Bool(true)
        }
        // The engine picks which fields; `check_drain` compares them.
        Cmd::HDrain(..) | Cmd::Flush | Cmd::Advance(_) | Cmd::ActiveExpire | Cmd::Batch(_) => unreachable!(),
    }
}

fn engine_apply(e: &Engine, c: &Cmd, now: u64) -> Reply {
    let key = |i: &usize| KEYS[*i];
    let r: Result<Reply, Error> = (|| {
        Ok(match c {
            Cmd::Get(k) => Reply::Value(e.get(key(k))?.map(Vec::from)),
            Cmd::Set(k, v, cond, exp, get, t) => {
                let out = e.set_with(key(k), v.clone(), set_opts(*cond, *exp, *get, *t, now))?;
                Reply::Set(out.applied, out.previous.map(Vec::from))
            }
            Cmd::Del(ks) => Reply::Int(e.del(ks.iter().map(key))? as i64),
            Cmd::IncrBy(k, d) => Reply::Int(e.incr_by(key(k), *d)?),
            Cmd::Append(k, v) => Reply::Count(e.append(key(k), v.clone())?),
            Cmd::PExpire(k, ms) => Reply::Bool(e.pexpire(key(k), *ms)?),
            Cmd::Persist(k) => Reply::Bool(e.persist(key(k))?),
            Cmd::Ttl(k) => Reply::Ttl(e.ttl(key(k)).as_redis_millis()),
            Cmd::Rename(a, b) => {
                e.rename(key(a), key(b))?;
                Reply::Unit
            }
            Cmd::HSet(k, fs) => Reply::Count(e.hset(key(k), fs.iter().map(|(f, v)| (FIELDS[*f], v.clone())))?),
            Cmd::HGet(k, f) => Reply::Value(e.hget(key(k), FIELDS[*f])?.map(Vec::from)),
            Cmd::HDel(k, fs) => Reply::Count(e.hdel(key(k), fs.iter().map(|f| FIELDS[*f]))?),
            Cmd::HIncrBy(k, f, d) => Reply::Int(e.hincr_by(key(k), FIELDS[*f], *d)?),
            Cmd::GetDel(k) => Reply::Value(e.getdel(key(k))?.map(Vec::from)),
            Cmd::SetRange(k, o, v) => Reply::Count(e.setrange(key(k), *o, v)?),
            Cmd::IncrByFloat(k, d) => Reply::Value(Some(e.incr_by_float(key(k), *d)?.to_vec())),
            Cmd::MSetNx(pairs) => Reply::Bool(e.msetnx(pairs.iter().map(|(k, v)| (key(k), v.clone())))?),
            Cmd::Copy(a, b, r) => Reply::Bool(e.copy(key(a), key(b), *r)?),
            Cmd::PExpireIf(k, ms, c) => {
                let cond = match c {
                    0 => ringkv::ExpireCondition::IfNone,
                    1 => ringkv::ExpireCondition::IfSome,
                    2 => ringkv::ExpireCondition::IfLater,
                    3 => ringkv::ExpireCondition::IfEarlier,
                    _ => ringkv::ExpireCondition::IfSomeAndEarlier,
                };
                Reply::Bool(e.pexpire_at_if(key(k), now as i64 + ms, cond)?)
            }
            Cmd::HSetNx(k, f, v) => Reply::Bool(e.hsetnx(key(k), FIELDS[*f], v.clone())?),
            _ => unreachable!(),
        })
    })();
    r.unwrap_or_else(|e| Reply::Err(err_kind(&e)))
}

fn batch_reply(r: &BatchReply) -> Reply {
    match r {
        BatchReply::Set(o) => Reply::Set(o.applied, o.previous.clone().map(Vec::from)),
        BatchReply::Bool(b) => Reply::Bool(*b),
        BatchReply::Int(i) => Reply::Int(*i),
        BatchReply::Count(n) => Reply::Count(*n),
        BatchReply::Value(v) => Reply::Value(v.clone().map(Vec::from)),
        BatchReply::Ttl(t) => Reply::Ttl(t.as_redis_millis()),
        other => panic!("unexpected batch reply {other:?}"),
    }
}

fn to_batch(ops: &[Cmd], now: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    for op in ops {
        match op {
            Cmd::Set(k, v, cond, exp, get, t) => b.set_with(KEYS[*k], v.clone(), set_opts(*cond, *exp, *get, *t, now)),
            Cmd::Del(ks) => b.del(KEYS[ks[0]]),
            Cmd::IncrBy(k, d) => b.incr_by(KEYS[*k], *d),
            Cmd::Append(k, v) => b.append(KEYS[*k], v.clone()),
            Cmd::PExpire(k, ms) => b.pexpire(KEYS[*k], *ms),
            Cmd::Persist(k) => b.persist(KEYS[*k]),
            Cmd::HSet(k, fs) => b.hset(KEYS[*k], fs.iter().map(|(f, v)| (FIELDS[*f], v.clone()))),
            Cmd::HDel(k, fs) => b.hdel(KEYS[*k], fs.iter().map(|f| FIELDS[*f])),
            Cmd::HIncrBy(k, f, d) => b.hincr_by(KEYS[*k], FIELDS[*f], *d),
            Cmd::Get(k) => b.get(KEYS[*k]),
            Cmd::Ttl(k) => b.ttl(KEYS[*k]),
            Cmd::HGet(k, f) => b.hget(KEYS[*k], FIELDS[*f]),
            other => unreachable!("{other:?} is not a batch op"),
        };
    }
    b
}

fn check_state(e: &Engine, m: &mut Model, now: u64) {
    m.keys.retain(|_, (_, t)| t.is_none_or(|t| t > now));
    for key in KEYS {
        match m.keys.get(key) {
            None => assert_eq!(e.key_type(key), None, "key {key:?} should be missing"),
            Some((MValue::Str(v), t)) => {
                assert_eq!(e.get(key).expect("string").map(Vec::from), Some(v.clone()));
                let ttl = e.ttl(key);
                assert_eq!(ttl, t.map_or(Ttl::Persistent, |t| Ttl::ExpiresIn(t - now)));
            }
            Some((MValue::Hash(h), _)) => {
                let got: BTreeMap<Vec<u8>, Vec<u8>> = e
                    .hgetall(key)
                    .expect("hash")
                    .into_iter()
                    .map(|(f, v)| (f.into(), v.into()))
                    .collect();
                assert_eq!(&got, h);
                assert_eq!(e.hlen(key).expect("hash"), h.len());
            }
        }
    }
    let mut scanned: Vec<Vec<u8>> = e.scan_iter(ScanOptions::default().count(3)).map(Vec::from).collect();
    scanned.sort();
    scanned.dedup();
    let live: Vec<Vec<u8>> = m.keys.keys().cloned().collect();
    assert_eq!(scanned, live);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model_and_replay_matches_engine(cmds in proptest::collection::vec(cmd(), 1..60)) {
        let clock = ManualClock::new(1_000_000);
        let sink = MemorySink::new();
        let config = Config { shards: 4, active_expire: false, hash_seed: Some(7), ..Config::default() };
        let engine = Engine::builder().config(config.clone()).clock(clock.clone()).sink(sink.clone()).build().expect("engine");
        let mut model = Model::default();
        for c in &cmds {
            let now = clock.now_ms();
            match c {
                Cmd::Advance(ms) => clock.advance(*ms),
                Cmd::ActiveExpire => {
                    engine.active_expire_cycle();
                }
                Cmd::Flush => {
                    engine.flush().expect("flush");
                    model.keys.clear();
                }
                Cmd::HDrain(k, n) => {
                    let key = KEYS[*k];
                    let got = engine.hdrain(key, *n);
                    match model.live(key, now) {
                        None => prop_assert!(got.expect("missing key drains nothing").is_empty()),
                        Some((MValue::Str(_), _)) => prop_assert!(matches!(got, Err(Error::WrongType))),
                        Some((MValue::Hash(h), _)) => {
                            let got = got.expect("drain");
                            prop_assert_eq!(got.len(), (*n).min(h.len()));
                            for (f, v) in got {
                                prop_assert_eq!(h.remove(&f[..]), Some(v.to_vec()), "drained a field that was not there");
                            }
                            if h.is_empty() {
                                model.keys.remove(key);
                            }
                        }
                    }
                }
                Cmd::Batch(ops) => {
                    let mut trial = model.clone();
                    let mut expect = Vec::new();
                    let mut failed = None;
                    for op in ops {
                        match model_apply(&mut trial, op, now) {
                            Reply::Err(e) => { failed = Some(e); break; }
                            // A batch's DEL names one key and answers whether it existed.
                            Reply::Int(n) if matches!(op, Cmd::Del(_)) => expect.push(Reply::Bool(n > 0)),
                            r => expect.push(r),
                        }
                    }
                    let got = engine.write_batch(to_batch(ops, now));
                    match failed {
                        Some(kind) => prop_assert_eq!(got.map_err(|e| err_kind(&e)).err(), Some(kind)),
                        None => {
                            let got: Vec<Reply> = got.expect("batch").iter().map(batch_reply).collect();
                            prop_assert_eq!(got, expect);
                            model = trial;
                        }
                    }
                }
                c => {
                    let want = model_apply(&mut model, c, now);
                    let got = engine_apply(&engine, c, now);
                    prop_assert_eq!(got, want, "command {:?}", c);
                }
            }
        }
        check_state(&engine, &mut model, clock.now_ms());

        // Replay: a second engine fed the mutation stream holds the same data.
        let replica = Engine::builder().config(config).clock(ManualClock::new(0)).build().expect("replica");
        for m in sink.take() {
            replica.replay(&m).expect("replay");
        }
        prop_assert_eq!(replica.digest(), engine.digest());
        prop_assert_eq!(replica.dbsize(), engine.dbsize());
    }
}
