//! Transactions: WATCH's check at EXEC, and running an EXEC whose queued
//! commands are all batchable (the common writes, and the reads of
//! strings, hashes and keys) as one atomic engine write batch: its reads
//! see one point in time and its writes reach the log as one record.
//!
//! WATCH needs no bookkeeping on the write path: every change of state is
//! a record in the engine's ring log, so EXEC reads the log from the offset
//! where the first WATCH was taken and looks for a record that touches a
//! watched key (FLUSHALL touches all). For a batchable EXEC the engine does
//! that check under the batch's shard locks
//! (`Engine::write_batch_if_unchanged`), so the check and the writes are
//! one step; an EXEC that runs one by one checks first, then runs. Deletions by expiry and eviction are
//! records too; a watched key whose expiry time has passed by EXEC counts
//! as changed, as in Redis, even if no deletion was logged yet. A log
//! that has moved on past the WATCH offset (lapped) counts as a change.

use std::collections::HashSet;

use bytes::Bytes;
use ringkv::{BatchReply, Engine, KeyType, SetOptions, WriteBatch};

use super::cmd_strings::set_options;
use super::command::{int_arg, owned};
use crate::resp::ReplyWriter;

/// The keys a client watches.
#[derive(Debug, Clone, Default)]
pub(crate) struct Watch {
    /// The log offset when the first key was watched.
    pub(crate) from: u64,
    pub(crate) keys: HashSet<Bytes>,
    /// The earliest expiry (unix ms) of a watched key at WATCH time.
    pub(crate) first_expiry: Option<u64>,
}

impl Watch {
    /// Starts watching at the engine's current log end.
    pub(crate) fn start(engine: &Engine) -> Watch {
        Watch {
            from: engine.log().map_or(0, |l| l.published()),
            ..Watch::default()
        }
    }

    /// Adds `key`, remembering its expiry.
    pub(crate) fn add(&mut self, engine: &Engine, key: &Bytes) {
        if let Some(Some(at)) = engine.expire_time(key) {
            self.first_expiry = Some(self.first_expiry.map_or(at, |e| e.min(at)));
        }
        self.keys.insert(Bytes::copy_from_slice(key));
    }

    /// Has a watched key's expiry time passed?
    pub(crate) fn expired(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.first_expiry.is_some_and(|at| at <= now)
    }

    /// Has any watched key changed since WATCH? (For an EXEC that runs one
    /// by one: checked before the commands, not under their locks.)
    pub(crate) fn fired(&self, engine: &Engine) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        if self.expired() {
            return true;
        }
        let Some(log) = engine.log() else { return false };
        let keys: Vec<&Bytes> = self.keys.iter().collect();
        log.touched_since(&keys, self.from)
    }
}

/// How one queued command's batch replies become its RESP reply.
enum Shape {
    /// SET: +OK, or null when NX/XX prevented it, or the old value with GET.
    Set { get: bool },
    /// SETNX and friends: 1 or 0.
    Bool,
    /// INCR, HINCRBY, ...: the integer.
    Int,
    /// HSET, HDEL, APPEND, HLEN: the count.
    Count,
    /// DEL k1 k2 ..., EXISTS k1 k2 ...: how many of the per-key operations
    /// found their key.
    Sum(usize),
    /// MSET, HMSET: `n` operations, then +OK.
    Ok(usize),
    /// GET, HGET: the value or null.
    Value,
    /// STRLEN, HSTRLEN: the length of the value (0 if none).
    Len,
    /// HMGET: `n` values in an array.
    Values(usize),
    /// TTL (seconds) or PTTL (milliseconds).
    Ttl { millis: bool },
    /// TYPE.
    Type,
    /// HGETALL (a map), HKEYS or HVALS (arrays).
    Pairs(PairsPart),
}

/// Which part of HGETALL's pairs a command returns.
#[derive(Clone, Copy)]
enum PairsPart {
    Both,
    Fields,
    Values,
}

/// The queued commands as one atomic write batch, if every one of them is
/// an operation the engine batches (the common writes and the reads of
/// strings, hashes and keys); `None` sends EXEC down the one-by-one path.
/// A command whose arguments are wrong also answers `None`: the one-by-one
/// path gives it its own error reply, as Redis does inside EXEC.
fn plan(queued: &[Vec<Bytes>]) -> Option<(WriteBatch, Vec<Shape>)> {
    let mut b = WriteBatch::new();
    let mut shapes = Vec::new();
    for a in queued {
        let name = String::from_utf8_lossy(&a[0]).to_ascii_lowercase();
        let shape = match (name.as_str(), a.len()) {
            ("set", n) if n >= 3 => {
                let opts = set_options(&a[3..]).ok()?;
                b.set_with(&a[1], owned(&a[2]), opts);
                Shape::Set { get: opts.get }
            }
            ("setnx", 3) => {
                b.set_with(&a[1], owned(&a[2]), SetOptions::new().nx());
                Shape::Bool
            }
            ("getset", 3) => {
                b.set_with(&a[1], owned(&a[2]), SetOptions::new().get());
                Shape::Set { get: true }
            }
            ("setex" | "psetex", 4) => {
                let n = u64::try_from(int_arg(&a[2]).ok()?).ok().filter(|&n| n > 0)?;
                let opts = if name == "setex" {
                    SetOptions::new().ex(n)
                } else {
                    SetOptions::new().px(n)
                };
                b.set_with(&a[1], owned(&a[3]), opts);
                Shape::Set { get: false }
            }
            ("mset", n) if n >= 3 && n % 2 == 1 => {
                for p in a[1..].chunks(2) {
                    b.set(&p[0], owned(&p[1]));
                }
                Shape::Ok(n / 2)
            }
            ("del" | "unlink", n) if n >= 2 => {
                for k in &a[1..] {
                    b.del(k);
                }
                Shape::Sum(n - 1)
            }
            ("incr", 2) => {
                b.incr_by(&a[1], 1);
                Shape::Int
            }
            ("decr", 2) => {
                b.incr_by(&a[1], -1);
                Shape::Int
            }
            ("incrby", 3) => {
                b.incr_by(&a[1], int_arg(&a[2]).ok()?);
                Shape::Int
            }
            ("decrby", 3) => {
                b.incr_by(&a[1], int_arg(&a[2]).ok()?.checked_neg()?);
                Shape::Int
            }
            ("append", 3) => {
                b.append(&a[1], owned(&a[2]));
                Shape::Count
            }
            ("pexpire", 3) => {
                b.pexpire(&a[1], int_arg(&a[2]).ok()?);
                Shape::Bool
            }
            ("expire", 3) => {
                b.pexpire(&a[1], int_arg(&a[2]).ok()?.checked_mul(1000)?);
                Shape::Bool
            }
            ("pexpireat", 3) => {
                b.pexpire_at(&a[1], int_arg(&a[2]).ok()?);
                Shape::Bool
            }
            ("expireat", 3) => {
                b.pexpire_at(&a[1], int_arg(&a[2]).ok()?.checked_mul(1000)?);
                Shape::Bool
            }
            ("persist", 2) => {
                b.persist(&a[1]);
                Shape::Bool
            }
            ("hset" | "hmset", n) if n >= 4 && n.is_multiple_of(2) => {
                b.hset(&a[1], a[2..].chunks(2).map(|p| (p[0].clone(), owned(&p[1]))));
                if name == "hmset" {
                    Shape::Ok(1)
                } else {
                    Shape::Count
                }
            }
            ("hdel", n) if n >= 3 => {
                b.hdel(&a[1], a[2..].iter());
                Shape::Count
            }
            ("hincrby", 4) => {
                b.hincr_by(&a[1], &a[2], int_arg(&a[3]).ok()?);
                Shape::Int
            }
            // Reads: under the batch's locks, they see one point in time.
            ("get", 2) => {
                b.get(&a[1]);
                Shape::Value
            }
            ("strlen", 2) => {
                b.get(&a[1]);
                Shape::Len
            }
            ("exists", n) if n >= 2 => {
                for k in &a[1..] {
                    b.exists(k);
                }
                Shape::Sum(n - 1)
            }
            ("ttl" | "pttl", 2) => {
                b.ttl(&a[1]);
                Shape::Ttl { millis: name == "pttl" }
            }
            ("type", 2) => {
                b.key_type(&a[1]);
                Shape::Type
            }
            ("hget", 3) => {
                b.hget(&a[1], &a[2]);
                Shape::Value
            }
            ("hstrlen", 3) => {
                b.hget(&a[1], &a[2]);
                Shape::Len
            }
            ("hmget", n) if n >= 3 => {
                for f in &a[2..] {
                    b.hget(&a[1], f);
                }
                Shape::Values(n - 2)
            }
            ("hgetall" | "hkeys" | "hvals", 2) => {
                b.hgetall(&a[1]);
                Shape::Pairs(match name.as_str() {
                    "hgetall" => PairsPart::Both,
                    "hkeys" => PairsPart::Fields,
                    _ => PairsPart::Values,
                })
            }
            ("hlen", 2) => {
                b.hlen(&a[1]);
                Shape::Count
            }
            ("hexists", 3) => {
                b.hexists(&a[1], &a[2]);
                Shape::Bool
            }
            // Anything else (options, other commands) runs one by one.
            _ => return None,
        };
        shapes.push(shape);
    }
    Some((b, shapes))
}

/// What [`exec_atomic`] did.
pub(crate) enum Atomic {
    /// Ran as one batch; EXEC's replies are written.
    Done,
    /// A watched key changed: nothing ran, nothing written.
    Aborted,
    /// Not all batchable, or the batch failed (nothing applied): run the
    /// commands one by one.
    OneByOne,
}

/// Runs `queued` as one atomic write batch, with the WATCH check under the
/// batch's own shard locks (so nothing can change a watched key between
/// the check and the writes), and writes EXEC's array of replies.
pub(crate) fn exec_atomic(
    engine: &Engine,
    queued: &[Vec<Bytes>],
    watch: Option<&Watch>,
    out: &mut ReplyWriter<'_>,
) -> Atomic {
    let Some((batch, shapes)) = plan(queued) else {
        return Atomic::OneByOne;
    };
    let result = match watch {
        Some(w) => {
            let keys: Vec<&Bytes> = w.keys.iter().collect();
            engine.write_batch_if_unchanged(batch, &keys, w.from)
        }
        None => engine.write_batch(batch).map(Some),
    };
    let replies = match result {
        Ok(Some(r)) => r,
        Ok(None) => return Atomic::Aborted,
        Err(_) => return Atomic::OneByOne,
    };
    out.array(shapes.len());
    let mut it = replies.into_iter();
    for shape in shapes {
        write_reply(shape, &mut it, out);
    }
    Atomic::Done
}

/// Writes one queued command's reply from its batch replies.
fn write_reply(shape: Shape, it: &mut impl Iterator<Item = BatchReply>, out: &mut ReplyWriter<'_>) {
    match shape {
        Shape::Set { get } => match it.next() {
            Some(BatchReply::Set(o)) if get => out.opt_bulk(o.previous.as_deref()),
            Some(BatchReply::Set(o)) if o.applied => out.ok(),
            _ => out.null(),
        },
        Shape::Bool => match it.next() {
            Some(BatchReply::Bool(v)) => out.int(i64::from(v)),
            Some(BatchReply::Set(o)) => out.int(i64::from(o.applied)),
            _ => out.int(0),
        },
        Shape::Int => match it.next() {
            Some(BatchReply::Int(v)) => out.int(v),
            _ => out.int(0),
        },
        Shape::Count => match it.next() {
            Some(BatchReply::Count(n)) => out.int(n as i64),
            _ => out.int(0),
        },
        Shape::Sum(n) => {
            let found = (0..n)
                .filter(|_| matches!(it.next(), Some(BatchReply::Bool(true))))
                .count();
            out.int(found as i64);
        }
        Shape::Ok(n) => {
            it.take(n).for_each(drop);
            out.ok();
        }
        Shape::Value => match it.next() {
            Some(BatchReply::Value(v)) => out.opt_bulk(v.as_deref()),
            _ => out.null(),
        },
        Shape::Len => match it.next() {
            Some(BatchReply::Value(Some(v))) => out.int(v.len() as i64),
            _ => out.int(0),
        },
        Shape::Values(n) => {
            out.array(n);
            for _ in 0..n {
                match it.next() {
                    Some(BatchReply::Value(v)) => out.opt_bulk(v.as_deref()),
                    _ => out.null(),
                }
            }
        }
        Shape::Ttl { millis } => match it.next() {
            Some(BatchReply::Ttl(t)) if millis => out.int(t.as_redis_millis()),
            Some(BatchReply::Ttl(t)) => out.int(t.as_redis_seconds()),
            _ => out.int(-2),
        },
        Shape::Type => match it.next() {
            Some(BatchReply::Type(t)) => out.simple(t.map_or("none", KeyType::as_str)),
            _ => out.simple("none"),
        },
        Shape::Pairs(part) => {
            let pairs = match it.next() {
                Some(BatchReply::Pairs(p)) => p,
                _ => Vec::new(),
            };
            match part {
                PairsPart::Both => out.map(pairs.len()),
                PairsPart::Fields | PairsPart::Values => out.array(pairs.len()),
            }
            for (f, v) in &pairs {
                match part {
                    PairsPart::Both => {
                        out.bulk(f);
                        out.bulk(v);
                    }
                    PairsPart::Fields => out.bulk(f),
                    PairsPart::Values => out.bulk(v),
                }
            }
        }
    }
}
