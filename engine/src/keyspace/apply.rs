//! Applying a [`Mutation`] to locked shards: the one code path by which state
//! changes, whether the mutation was just planned by a live operation or is
//! replayed from a log or a primary.
//!
//! Applying never looks at the clock: a key that is logically expired is still
//! there until a `Delete { reason: Expired }` removes it, which is what makes
//! replay deterministic.

use bytes::{Bytes, BytesMut};

use super::{encode_expire, HashValue, Hashing, Locked, Shard, Value};
use crate::blob::Blob;
use crate::error::{Error, Result};
use crate::mutation::{DeleteReason, Mutation};

/// The inverse of one step of an applied mutation, kept while a batch runs so
/// that a batch that fails half-way (or whose mutation the sink refuses) can
/// be rolled back. Old values are moved here, never copied.
pub(crate) enum Undo {
    /// Make the key hold `prev` (value and encoded expiry), or nothing.
    Key { key: Bytes, prev: Option<(Value, u64)> },
    /// A rename `from` → `to` happened: move it back.
    Rename { from: Bytes, to: Bytes },
    /// Make the hash field hold `prev`, or nothing.
    Field {
        key: Bytes,
        field: Bytes,
        prev: Option<Blob>,
    },
    /// Restore the encoded expiry of the key.
    Expire { key: Bytes, prev: u64 },
}

/// Applies mutations to the shards in `locked`, which must hold every shard
/// the mutations touch.
pub(crate) struct Applier<'l, 'g> {
    pub(crate) locked: &'l mut Locked<'g>,
    pub(crate) hashing: &'l Hashing,
    /// LRU clock stamped on keys written.
    pub(crate) lru: u32,
}

impl Applier<'_, '_> {
    /// The shard of `key`, counted as changed (for `save` rules), and the key's hash.
    fn shard_and_hash(&mut self, key: &[u8]) -> (&mut Shard, u64) {
        let h = self.hashing.hash(key);
        let s = self.hashing.shard_of(h);
        let shard = self.locked.shard(s);
        shard.changes += 1;
        (shard, h)
    }

    /// The shard of a key with hash `h`, counted as changed (for `save` rules).
    fn shard_at(&mut self, h: u64) -> &mut Shard {
        let shard = self.locked.shard(self.hashing.shard_of(h));
        shard.changes += 1;
        shard
    }

    /// `Mutation::Set { key, value, expire_at }` from borrowed parts, `h`
    /// being `key`'s hash: the one code of a SET, replayed ([`Applier::apply`])
    /// or live (`Writer::commit_set`, which needs no owned mutation).
    pub(crate) fn apply_set(
        &mut self,
        key: &[u8],
        h: u64,
        value: Blob,
        expire_at: Option<u64>,
        undo: Option<&mut Vec<Undo>>,
    ) {
        let lru = self.lru;
        let shard = self.shard_at(h);
        let expire = encode_expire(expire_at);
        let new = Value::Str(value);
        match shard.find(h, key) {
            Some(idx) => {
                let old = shard.replace_value(idx, new);
                let old_expire = shard.set_expire(idx, expire);
                shard.entry(idx).lru.store(lru, std::sync::atomic::Ordering::Relaxed);
                push(undo, || Undo::Key {
                    key: Bytes::copy_from_slice(key),
                    prev: Some((old, old_expire)),
                });
            }
            None => {
                shard.insert(h, Blob::from(key), new, expire, lru);
                push(undo, || Undo::Key {
                    key: Bytes::copy_from_slice(key),
                    prev: None,
                });
            }
        }
    }

    /// `Mutation::HSet { key, fields }` from borrowed parts, `h` being
    /// `key`'s hash (as [`Applier::apply_set`]). Returns the fields created.
    pub(crate) fn apply_hset<F: AsRef<[u8]>>(
        &mut self,
        key: &[u8],
        h: u64,
        fields: &[(F, Bytes)],
        undo: Option<&mut Vec<Undo>>,
    ) -> Result<usize> {
        if fields.is_empty() {
            return Ok(0);
        }
        let hashing = self.hashing;
        let lru = self.lru;
        let shard = self.shard_at(h);
        match shard.find(h, key) {
            None => {
                let mut hash = HashValue::new();
                let mut created = 0;
                for (f, v) in fields {
                    let f = f.as_ref();
                    if hash.set(hashing.hash(f) as u32, f, Blob::from(v)).is_none() {
                        created += 1;
                    }
                }
                shard.insert(h, Blob::from(key), Value::Hash(Box::new(hash)), 0, lru);
                push(undo, || Undo::Key {
                    key: Bytes::copy_from_slice(key),
                    prev: None,
                });
                Ok(created)
            }
            Some(idx) => {
                let mut undo = undo;
                shard.entry(idx).lru.store(lru, std::sync::atomic::Ordering::Relaxed);
                shard
                    .with_hash(idx, |hash| {
                        let mut created = 0;
                        for (f, v) in fields {
                            let f = f.as_ref();
                            let prev = hash.set(hashing.hash(f) as u32, f, Blob::from(v));
                            created += usize::from(prev.is_none());
                            if let Some(u) = undo.as_deref_mut() {
                                u.push(Undo::Field {
                                    key: Bytes::copy_from_slice(key),
                                    field: Bytes::copy_from_slice(f),
                                    prev,
                                });
                            }
                        }
                        created
                    })
                    .ok_or(Error::Apply("HSET on a key that holds a string"))
            }
        }
    }

    /// Applies `m`. Returns how many keys or fields it created or removed
    /// (HSET: new fields, HDEL: removed fields, DEL: removed keys; 0 otherwise).
    /// With `undo`, records how to roll back each step. A failing `Batch` is
    /// rolled back before the error is returned; a failing single mutation
    /// has changed nothing.
    pub(crate) fn apply(&mut self, m: &Mutation, undo: Option<&mut Vec<Undo>>) -> Result<usize> {
        match m {
            Mutation::Batch(ms) => match undo {
                Some(undo) => {
                    for m in ms {
                        self.apply(m, Some(undo))?;
                    }
                    Ok(0)
                }
                None => {
                    let mut local = Vec::new();
                    for m in ms {
                        if let Err(e) = self.apply(m, Some(&mut local)) {
                            self.rollback(local);
                            return Err(e);
                        }
                    }
                    Ok(0)
                }
            },
            _ => self.apply_one(m, undo),
        }
    }

    fn apply_one(&mut self, m: &Mutation, undo: Option<&mut Vec<Undo>>) -> Result<usize> {
        let lru = self.lru;
        match m {
            Mutation::Set { key, value, expire_at } => {
                let h = self.hashing.hash(key);
                self.apply_set(key, h, Blob::from(value), *expire_at, undo);
                Ok(0)
            }
            Mutation::Append { key, suffix } => {
                let (shard, h) = self.shard_and_hash(key);
                match shard.find(h, key) {
                    Some(idx) => {
                        let Value::Str(old) = &shard.entry(idx).value else {
                            return Err(Error::Apply("APPEND to a key that holds a hash"));
                        };
                        let mut joined = BytesMut::with_capacity(old.len() + suffix.len());
                        joined.extend_from_slice(old);
                        joined.extend_from_slice(suffix);
                        let old = shard.replace_value(idx, Value::Str(Blob::from(joined.freeze())));
                        let expire = shard.entry(idx).expire_at;
                        push(undo, || Undo::Key {
                            key: key.clone(),
                            prev: Some((old, expire)),
                        });
                    }
                    None => {
                        shard.insert(h, Blob::from(&key[..]), Value::Str(Blob::from(suffix)), 0, lru);
                        push(undo, || Undo::Key {
                            key: key.clone(),
                            prev: None,
                        });
                    }
                }
                Ok(0)
            }
            Mutation::Delete { keys, reason } => {
                let mut undo = undo;
                let mut removed = 0;
                for key in keys {
                    let (shard, h) = self.shard_and_hash(key);
                    if let Some(idx) = shard.find(h, key) {
                        let entry = shard.remove(idx);
                        match reason {
                            DeleteReason::Expired => shard.expired += 1,
                            DeleteReason::Evicted => shard.evicted += 1,
                            DeleteReason::User => {}
                        }
                        removed += 1;
                        if let Some(u) = undo.as_deref_mut() {
                            u.push(Undo::Key {
                                key: key.clone(),
                                prev: Some((entry.value, entry.expire_at)),
                            });
                        }
                    }
                }
                Ok(removed)
            }
            Mutation::Expire { key, expire_at } => {
                let (shard, h) = self.shard_and_hash(key);
                let idx = shard.find(h, key).ok_or(Error::Apply("EXPIRE of a missing key"))?;
                let prev = shard.set_expire(idx, encode_expire(*expire_at));
                push(undo, || Undo::Expire { key: key.clone(), prev });
                Ok(0)
            }
            Mutation::Rename { from, to } => {
                let (shard, h) = self.shard_and_hash(from);
                let idx = shard.find(h, from).ok_or(Error::Apply("RENAME of a missing key"))?;
                if from == to {
                    return Ok(0);
                }
                let mut undo = undo;
                let entry = shard.remove(idx);
                let lru = entry.lru.load(std::sync::atomic::Ordering::Relaxed);
                let (shard, h) = self.shard_and_hash(to);
                if let Some(old) = shard.find(h, to) {
                    let old = shard.remove(old);
                    if let Some(u) = undo.as_deref_mut() {
                        u.push(Undo::Key {
                            key: to.clone(),
                            prev: Some((old.value, old.expire_at)),
                        });
                    }
                }
                shard.insert(h, Blob::from(&to[..]), entry.value, entry.expire_at, lru);
                push(undo, || Undo::Rename {
                    from: from.clone(),
                    to: to.clone(),
                });
                Ok(0)
            }
            Mutation::HSet { key, fields } => {
                let h = self.hashing.hash(key);
                self.apply_hset(key, h, fields, undo)
            }
            Mutation::HDel { key, fields } => {
                let hashing = self.hashing;
                let (shard, h) = self.shard_and_hash(key);
                let Some(idx) = shard.find(h, key) else {
                    return Ok(0);
                };
                let mut undo = undo;
                let removed = shard
                    .with_hash(idx, |hash| {
                        let mut removed = 0;
                        for f in fields {
                            if let Some(v) = hash.remove(hashing.hash(f) as u32, f) {
                                removed += 1;
                                if let Some(u) = undo.as_deref_mut() {
                                    u.push(Undo::Field {
                                        key: key.clone(),
                                        field: f.clone(),
                                        prev: Some(v),
                                    });
                                }
                            }
                        }
                        removed
                    })
                    .ok_or(Error::Apply("HDEL on a key that holds a string"))?;
                let now_empty = matches!(&shard.entry(idx).value, Value::Hash(hv) if hv.len() == 0);
                if now_empty {
                    let entry = shard.remove(idx);
                    push(undo, || Undo::Key {
                        key: key.clone(),
                        prev: Some((entry.value, entry.expire_at)),
                    });
                }
                Ok(removed)
            }
            Mutation::Flush => {
                if undo.is_some() {
                    return Err(Error::Apply("FLUSH inside a batch"));
                }
                self.locked.for_each(|_, shard| shard.clear());
                Ok(0)
            }
            Mutation::Batch(_) => self.apply(m, undo),
        }
    }

    /// Undoes recorded steps, newest first.
    pub(crate) fn rollback(&mut self, undo: Vec<Undo>) {
        let lru = self.lru;
        for step in undo.into_iter().rev() {
            match step {
                Undo::Key { key, prev } => {
                    let (shard, h) = self.shard_and_hash(&key);
                    if let Some(idx) = shard.find(h, &key) {
                        shard.remove(idx);
                    }
                    if let Some((value, expire)) = prev {
                        shard.insert(h, Blob::from(&key[..]), value, expire, lru);
                    }
                }
                Undo::Rename { from, to } => {
                    let (shard, h) = self.shard_and_hash(&to);
                    if let Some(idx) = shard.find(h, &to) {
                        let entry = shard.remove(idx);
                        let (shard, h) = self.shard_and_hash(&from);
                        shard.insert(h, Blob::from(&from[..]), entry.value, entry.expire_at, lru);
                    }
                }
                Undo::Field { key, field, prev } => {
                    let fh = self.hashing.hash(&field) as u32;
                    let (shard, h) = self.shard_and_hash(&key);
                    if let Some(idx) = shard.find(h, &key) {
                        shard.with_hash(idx, |hash| match prev {
                            Some(v) => {
                                hash.set(fh, &field, v);
                            }
                            None => {
                                hash.remove(fh, &field);
                            }
                        });
                    }
                }
                Undo::Expire { key, prev } => {
                    let (shard, h) = self.shard_and_hash(&key);
                    if let Some(idx) = shard.find(h, &key) {
                        shard.set_expire(idx, prev);
                    }
                }
            }
        }
    }
}

fn push(undo: Option<&mut Vec<Undo>>, step: impl FnOnce() -> Undo) {
    if let Some(u) = undo {
        u.push(step());
    }
}
