//! Transactions: WATCH's check at EXEC, and running an EXEC whose queued
//! commands are all batchable writes as one atomic engine write batch.
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
use ringkv::{BatchReply, Engine, WriteBatch};

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
        let end = log.published();
        let mut pos = self.from;
        while pos < end {
            let Ok(batch) = log.read(pos, 1 << 20) else {
                // The records since WATCH are gone: assume a change.
                return true;
            };
            for (_, payload) in batch.records {
                let Ok(m) = ringkv::log::record::decode_mutation(payload) else {
                    return true;
                };
                if m.touches_all_keys() {
                    return true;
                }
                let mut hit = false;
                m.for_each_key(&mut |k| hit |= self.keys.contains(k));
                if hit {
                    return true;
                }
            }
            if batch.next <= pos {
                return true;
            }
            pos = batch.next;
        }
        false
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
    /// HSET, HDEL, APPEND: the count.
    Count,
    /// DEL k1 k2 ...: how many of the per-key deletes found their key.
    Sum(usize),
}

/// The queued commands as one atomic write batch, if every one of them is
/// a write the engine batches; `None` sends EXEC down the one-by-one path.
fn plan(queued: &[Vec<Bytes>]) -> Option<(WriteBatch, Vec<Shape>)> {
    let mut b = WriteBatch::new();
    let mut shapes = Vec::new();
    for a in queued {
        let name = String::from_utf8_lossy(&a[0]).to_ascii_lowercase();
        let shape = match (name.as_str(), a.len()) {
            ("set", 3) => {
                b.set(&a[1], owned(&a[2]));
                Shape::Set { get: false }
            }
            ("setnx", 3) => {
                b.set_with(&a[1], owned(&a[2]), ringkv::SetOptions::new().nx());
                Shape::Bool
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
            ("hset", n) if n >= 4 && n.is_multiple_of(2) => {
                b.hset(&a[1], a[2..].chunks(2).map(|p| (p[0].clone(), owned(&p[1]))));
                Shape::Count
            }
            ("hdel", n) if n >= 3 => {
                b.hdel(&a[1], a[2..].iter());
                Shape::Count
            }
            ("hincrby", 4) => {
                b.hincr_by(&a[1], &a[2], int_arg(&a[3]).ok()?);
                Shape::Int
            }
            // Anything else (reads, options, other commands) runs one by one.
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
        }
    }
    Atomic::Done
}
