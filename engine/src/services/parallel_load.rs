//! Loading a snapshot's items into an empty keyspace on several threads, by
//! shard: a full sync's load and the snapshot part of `Engine::open`.
//!
//! The calling thread reads each chunk, checks its checksum and decodes its
//! items (`SnapshotReader::next_chunk`), hashes every key once and routes
//! the item to the worker that owns the key's shard (worker `s % threads`
//! owns shard `s`, as in `parallel_apply.rs`). Each worker inserts what it
//! receives in arrival order, so the items of one key (a hash's head and
//! its field parts, spread over chunks) apply in stream order, as a
//! sequential load applies them; items of different shards commute. The
//! workers' queues are bounded ([`QUEUED_CHUNKS`] chunks each), so memory
//! stays at a few chunks per worker whatever the snapshot's size.
//!
//! A snapshot's items come in walk order, shard after shard, so at any
//! moment most items go to one worker: the gain is the decode on one
//! thread overlapped with the inserts on another, not several workers
//! inserting at once. With one thread everything runs on the calling
//! thread through the same insert code (the sequential reference).
//!
//! Errors: the first error (a corrupt chunk, or an item that does not
//! apply, such as a hash head for a key holding a string) stops the load;
//! the caller clears the partly loaded keyspace, as before.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use bytes::Bytes;

use crate::blob::Blob;
use crate::core::Inner;
use crate::error::{Error, Result, SnapshotError};
use crate::keyspace::apply::Applier;
use crate::keyspace::cow::SnapOutput;
use crate::keyspace::{encode_expire, HashValue, Shard, Value};
use crate::snapshot::format::{Item, SnapshotReader};

/// Chunks' worth of routed items a worker's queue holds before the reader waits.
const QUEUED_CHUNKS: usize = 8;

/// An item with its key's hash and shard, computed once by the reader.
struct Routed {
    shard: usize,
    hash: u64,
    item: Item,
}

fn load_error(e: impl std::fmt::Display) -> Error {
    Error::Snapshot(SnapshotError::Load(e.to_string()))
}

/// Loads every remaining chunk of `reader` into `inner` on `threads`
/// threads (1: on the calling thread alone).
pub(crate) fn load_chunks<R: Read>(inner: &Inner, reader: &mut SnapshotReader<R>, threads: usize) -> Result<()> {
    let threads = threads.clamp(1, inner.keyspace.shard_count().max(1));
    if threads == 1 {
        let mut behind = Vec::new();
        while let Some(items) = reader.next_chunk()? {
            for part in route(inner, items, 1) {
                insert(inner, part, &mut behind)?;
            }
        }
        return Ok(());
    }
    std::thread::scope(|s| {
        let mut senders: Vec<SyncSender<Vec<Routed>>> = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (tx, rx) = sync_channel::<Vec<Routed>>(QUEUED_CHUNKS);
            let started = std::thread::Builder::new()
                .name("ringkv-load".into())
                .spawn_scoped(s, move || work(inner, rx));
            match started {
                Ok(handle) => {
                    senders.push(tx);
                    workers.push(handle);
                }
                // Routing adapts to the workers that did start.
                Err(e) => tracing::warn!(error = %e, "could not start a snapshot load thread"),
            }
        }
        if senders.is_empty() {
            return load_chunks(inner, reader, 1);
        }
        let fed = feed(inner, reader, &senders);
        // Closing the queues ends the workers once they have drained them.
        drop(senders);
        let inserted = join(workers);
        // A worker's error explains a failed send (its queue closed): it
        // comes first; otherwise the reader's own error (a corrupt chunk).
        inserted.and(fed)
    })
}

/// The reader's side: chunk after chunk, routed to the workers' queues.
fn feed<R: Read>(inner: &Inner, reader: &mut SnapshotReader<R>, senders: &[SyncSender<Vec<Routed>>]) -> Result<()> {
    while let Some(items) = reader.next_chunk()? {
        for (w, part) in route(inner, items, senders.len()).into_iter().enumerate() {
            if !part.is_empty() && senders[w].send(part).is_err() {
                // The worker stopped on an error, which `join` reports.
                return Ok(());
            }
        }
    }
    Ok(())
}

fn join(workers: Vec<std::thread::ScopedJoinHandle<'_, Result<()>>>) -> Result<()> {
    let mut outcome = Ok(());
    for handle in workers {
        match handle.join() {
            Ok(r) => outcome = outcome.and(r),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    outcome
}

/// Splits a chunk's items into one list per worker, keeping their order.
fn route(inner: &Inner, items: Vec<Item>, workers: usize) -> Vec<Vec<Routed>> {
    let hashing = inner.keyspace.hashing();
    let mut parts: Vec<Vec<Routed>> = (0..workers).map(|_| Vec::new()).collect();
    for item in items {
        let key = match &item {
            Item::String { key, .. } | Item::HashHead { key, .. } | Item::HashFields { key, .. } => key,
        };
        let hash = hashing.hash(key);
        let shard = hashing.shard_of(hash);
        parts[shard % workers].push(Routed { shard, hash, item });
    }
    parts
}

/// A worker: inserts what its queue brings until it closes or an item fails.
fn work(inner: &Inner, rx: Receiver<Vec<Routed>>) -> Result<()> {
    let mut behind = Vec::new();
    for part in rx {
        insert(inner, part, &mut behind)?;
    }
    Ok(())
}

/// Inserts routed items in order, locking each shard once per run of its
/// items (at most a chunk's); then, as a live write does, publishes the
/// shard's memory and waits (bounded, no lock held) for a running
/// snapshot's backlog.
fn insert(inner: &Inner, items: Vec<Routed>, behind: &mut Vec<Arc<SnapOutput>>) -> Result<()> {
    let mut items = items.into_iter().peekable();
    while let Some(first) = items.next() {
        let s = first.shard;
        let mut locked = inner.keyspace.lock_one(s);
        let mut applier = Applier {
            locked: &mut locked,
            hashing: inner.keyspace.hashing(),
            lru: inner.lru_now(),
        };
        let mut r = insert_item(&mut applier, first);
        while r.is_ok() {
            match items.next_if(|n| n.shard == s) {
                Some(next) => r = insert_item(&mut applier, next),
                None => break,
            }
        }
        inner.release_applied(locked, behind);
        r?;
    }
    Ok(())
}

/// One item into its (locked) shard: a string and a hash's fields through
/// the apply path of SET and HSET, a hash head directly (it is not a mutation).
fn insert_item(applier: &mut Applier<'_, '_>, routed: Routed) -> Result<()> {
    let Routed { shard, hash, item } = routed;
    let inserted = match item {
        Item::String { key, value, expire_at } => {
            applier.apply_set(&key, hash, Blob::from(value), expire_at, None);
            Ok(())
        }
        Item::HashFields { key, fields } => applier.apply_hset(&key, hash, &fields, None).map(|_| ()),
        Item::HashHead { key, expire_at } => load_hash_head(applier.locked.shard(shard), hash, &key, expire_at),
    };
    inserted.map_err(load_error)
}

/// Makes `key` a hash (empty if new) with this expiry.
fn load_hash_head(shard: &mut Shard, h: u64, key: &Bytes, expire_at: Option<u64>) -> Result<()> {
    match shard.find(h, key) {
        None => {
            shard.insert(
                h,
                Blob::copy_from_slice(key),
                Value::Hash(Box::new(HashValue::new())),
                encode_expire(expire_at),
                0,
            );
        }
        Some(idx) => {
            if !matches!(shard.entry(idx).value, Value::Hash(_)) {
                return Err(Error::Apply("hash head for a key that holds a string"));
            }
            shard.set_expire(idx, encode_expire(expire_at));
        }
    }
    Ok(())
}
