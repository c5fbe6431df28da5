//! The mutation stream: every change of state as one deterministic value.
//!
//! Every operation that changes the keyspace produces exactly one
//! [`Mutation`], handed to the engine's [`MutationSink`] while the shard locks
//! of every key it touches are still held, so that for each key the order of
//! the stream equals the order in which changes were applied. Mutations are
//! deterministic: relative TTLs are made absolute, counters carry their
//! result, expiry and eviction are explicit deletions, a batch is one
//! mutation. Feeding a stream to [`Engine::replay`](crate::Engine::replay) on
//! an engine that started from the same state reproduces the same state; this
//! is how recovery and followers rebuild it.
//!
//! This module depends on nothing else in the crate.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// An error of a [`MutationSink`], boxed so that each sink (the ring log, a
/// channel, a test double) keeps its own error type.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why keys were deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeleteReason {
    /// A client asked (DEL, or an expire time in the past).
    User,
    /// The key's expire time passed (lazy or active expiry).
    Expired,
    /// Evicted to stay under `maxmemory`.
    Evicted,
}

/// One deterministic change of state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mutation {
    /// The key now holds this string, whatever it held before, with this
    /// absolute expiry (unix ms) or none.
    Set {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
        /// Absolute expiry in unix milliseconds.
        expire_at: Option<u64>,
    },
    /// Appends to the string at key (creating it, without expiry, if missing).
    Append {
        /// The key.
        key: Bytes,
        /// The bytes appended.
        suffix: Bytes,
    },
    /// Removes these keys.
    Delete {
        /// The keys; all existed when the mutation was produced.
        keys: Vec<Bytes>,
        /// Why.
        reason: DeleteReason,
    },
    /// Sets (`Some`) or removes (`None`) the absolute expiry of an existing key.
    Expire {
        /// The key.
        key: Bytes,
        /// Absolute expiry in unix milliseconds, or none (PERSIST).
        expire_at: Option<u64>,
    },
    /// Moves the value and expiry of `from` to `to`, replacing what `to` held.
    Rename {
        /// Source key (exists).
        from: Bytes,
        /// Destination key.
        to: Bytes,
    },
    /// Sets fields of the hash at key (creating it without expiry if missing).
    HSet {
        /// The key.
        key: Bytes,
        /// Field and value pairs, applied in order.
        fields: Vec<(Bytes, Bytes)>,
    },
    /// Removes fields of the hash at key; a hash left empty is removed.
    HDel {
        /// The key.
        key: Bytes,
        /// The fields.
        fields: Vec<Bytes>,
    },
    /// Removes every key.
    Flush,
    /// Several mutations applied as one atomic unit, in order.
    Batch(Vec<Mutation>),
}

impl Mutation {
    /// Calls `f` with every key the mutation touches (in order, possibly
    /// repeated). [`Mutation::Flush`] touches every key and reports none.
    pub fn for_each_key<'a>(&'a self, f: &mut impl FnMut(&'a [u8])) {
        match self {
            Mutation::Set { key, .. }
            | Mutation::Append { key, .. }
            | Mutation::Expire { key, .. }
            | Mutation::HSet { key, .. }
            | Mutation::HDel { key, .. } => f(key),
            Mutation::Delete { keys, .. } => keys.iter().for_each(|k| f(k)),
            Mutation::Rename { from, to } => {
                f(from);
                f(to);
            }
            Mutation::Flush => {}
            Mutation::Batch(ms) => ms.iter().for_each(|m| m.for_each_key(f)),
        }
    }

    /// True if the mutation (or one inside a batch) is a [`Mutation::Flush`].
    pub fn touches_all_keys(&self) -> bool {
        match self {
            Mutation::Flush => true,
            Mutation::Batch(ms) => ms.iter().any(Mutation::touches_all_keys),
            _ => false,
        }
    }
}

/// Receives every mutation, in apply order per key.
///
/// `record` is called while the shard locks of the keys the mutation touches
/// are held: it must be quick and must never call back into the engine. If it
/// returns an error the operation fails with [`Error::Sink`](crate::Error::Sink)
/// and nothing is applied (the ring log uses this to refuse writes when full).
///
/// ```
/// use ringkv::{Engine, MemorySink, Mutation};
/// let sink = MemorySink::new();
/// let engine = Engine::builder().sink(sink.clone()).build()?;
/// engine.set("k", "v")?;
/// assert!(matches!(&sink.take()[..], [Mutation::Set { .. }]));
/// # Ok::<(), ringkv::Error>(())
/// ```
pub trait MutationSink: Send + Sync + 'static {
    /// Records one mutation. A sink with offsets (the ring log) returns the
    /// offset just past the mutation's record.
    fn record(&self, mutation: &Mutation) -> Result<Option<u64>, SinkError>;

    /// Called after the write's shard locks are released, with the offset
    /// `record` returned: the place to wait for durability (group commit)
    /// without holding up other writers of the same shards.
    fn flush_to(&self, end: u64) -> Result<(), SinkError> {
        let _ = end;
        Ok(())
    }
}

/// A sink that drops everything (an engine without a log).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl MutationSink for NullSink {
    fn record(&self, _: &Mutation) -> Result<Option<u64>, SinkError> {
        Ok(None)
    }
}

/// A sink that keeps mutations in memory, for tests and examples; clones share
/// the same list.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    inner: Arc<Mutex<MemorySinkState>>,
}

#[derive(Debug, Default)]
struct MemorySinkState {
    mutations: Vec<Mutation>,
    fail_next: usize,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// Removes and returns what was recorded so far.
    pub fn take(&self) -> Vec<Mutation> {
        std::mem::take(&mut self.inner.lock().mutations)
    }

    /// Number of mutations recorded and not yet taken.
    pub fn len(&self) -> usize {
        self.inner.lock().mutations.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the next `n` calls to `record` fail (to test that a refused
    /// write leaves the engine unchanged).
    pub fn fail_next(&self, n: usize) {
        self.inner.lock().fail_next = n;
    }
}

impl MutationSink for MemorySink {
    fn record(&self, mutation: &Mutation) -> Result<Option<u64>, SinkError> {
        let mut state = self.inner.lock();
        if state.fail_next > 0 {
            state.fail_next -= 1;
            return Err("MemorySink told to fail".into());
        }
        state.mutations.push(mutation.clone());
        Ok(None)
    }
}

impl<S: MutationSink + ?Sized> MutationSink for Arc<S> {
    fn record(&self, mutation: &Mutation) -> Result<Option<u64>, SinkError> {
        (**self).record(mutation)
    }

    fn flush_to(&self, end: u64) -> Result<(), SinkError> {
        (**self).flush_to(end)
    }
}
