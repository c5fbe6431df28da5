//! Importing another engine's mutations as this engine's own writes (a
//! slot migration's target, `Engine::import`): unlike
//! [`Engine::replay`](crate::Engine::replay), which rebuilds a follower's
//! state without logging, an import is a write like any other: refused on a
//! follower or by the write gate, logged, replicated, durable as the log's
//! durability says. It is applied with undo records and logged only once
//! it fits the current state, so a mutation that does not fit (an HSET on
//! a string) fails with [`Error::Apply`] and changes nothing.

use crate::core::Inner;
use crate::error::{Error, Result};
use crate::mutation::Mutation;

pub(crate) fn import(inner: &Inner, m: &Mutation) -> Result<()> {
    if m.touches_all_keys() {
        return Err(Error::InvalidArgument("a flush of every key cannot be imported"));
    }
    let mut hashes = Vec::new();
    let mut too_long = None;
    m.for_each_key(&mut |k| {
        if k.len() > inner.config.max_key_len {
            too_long = Some(k.len());
        }
        hashes.push(inner.keyspace.hash(k));
    });
    if let Some(len) = too_long {
        return Err(Error::KeyTooLarge {
            len,
            max: inner.config.max_key_len,
        });
    }
    if hashes.is_empty() {
        return Ok(());
    }
    // One batch, applied (with undo) before it reaches the log as one
    // record: a mutation alone is a batch of one, a batch's parts are its
    // parts (a batch inside a batch is not a record the log can hold).
    inner.write(&hashes, true, |w| match m {
        Mutation::Batch(parts) => parts.iter().try_for_each(|p| w.commit(p.clone()).map(|_| ())),
        m => w.commit(m.clone()).map(|_| ()),
    })
}
