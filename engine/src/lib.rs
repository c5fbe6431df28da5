//! # ringkv
//!
//! An embedded, in-process key-value engine with a Redis-like data model
//! (strings with integer operations, hashes, per-key expiry), built to use
//! every core and to never stall: the keyspace is split into shards behind
//! read-write locks, every call does bounded work (incremental rehash, cursor
//! scans, hash drains), and every change of state is one deterministic
//! [`Mutation`] handed to a [`MutationSink`] — the stream a ring log and
//! followers are built on.
//!
//! ```
//! use ringkv::{Config, Engine, ScanOptions, SetOptions};
//!
//! let engine = Engine::new(Config::default())?;
//!
//! // Strings, counters and TTLs, named as Redis users know them.
//! engine.set_with("session:42", "token-abc", SetOptions::new().ex(3600))?;
//! assert_eq!(engine.incr_by("requests", 3)?, 3);
//!
//! // Telemetry into hashes, drained in bounded, atomic batches.
//! engine.hset("telemetry:host-1", [("cpu", "0.71"), ("mem", "2048")])?;
//! let batch = engine.hdrain("telemetry:host-1", 100)?;
//! assert_eq!(batch.len(), 2);
//!
//! // Incremental scans never hold a lock for long.
//! let keys: Vec<_> = engine.scan_iter(ScanOptions::default().pattern("session:*")).collect();
//! assert_eq!(keys.len(), 1);
//! # Ok::<(), ringkv::Error>(())
//! ```
//!
//! The module docs say how it holds together: [`mutation`] for the stream's
//! contract, [`scan`] for the cursor guarantees; the README for the table,
//! the write path, expiry and memory accounting.
//!
//! ARCHITECTURE.md at the repository root is the map of the layers below;
//! `engine/tests/layers.rs` checks that every module imports only from its
//! own layer or lower ones.

// L0 vocabulary: no imports from any other layer. `failpoints` comes first:
// its `fail_point!` macro is used by name (textual scope) in the modules after it.
#[macro_use]
mod failpoints;
mod blob;
mod clock;
mod codec;
mod config;
mod error;
mod glob;
pub mod mutation;
mod slot;
mod stats;
// L1 formats: the ring log and the snapshot stream, usable without an engine.
pub mod log;
pub mod snapshot;
// L2 keyspace: shards, tables, locking, the one apply path, copy-on-write hooks.
mod keyspace;
// L3 core: the engine's state and the commit protocol.
mod core;
// L4 ops: each command's checks and plan.
mod ops;
// L5 services: expiry, snapshots, recovery, replication primitives, threads.
mod services;
// L6 facade.
mod builder;
mod engine;
#[cfg(feature = "internals")]
pub mod internals;

pub use blob::{Blob, INLINE_CAPACITY};
pub use builder::EngineBuilder;
pub use bytes::Bytes;
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{format_f64, parse_f64, parse_i64};
pub use config::{Config, Durability, EvictionPolicy, LogConfig, SaveRule, SnapshotConfig, MAX_SHARDS};
pub use core::{Promotion, Role, WriteGate};
pub use engine::{Engine, ExpiryHold};
pub use error::{Error, Result, SinkError};
pub use glob::glob_match;
pub use log::{LogView, RingLog};
pub use mutation::{DeleteReason, MemorySink, Mutation, MutationSink, NullSink};
pub use ops::batch::{BatchReply, WriteBatch};
pub use ops::keys::{ExpireCondition, KeyType, Ttl};
pub use ops::scan;
pub use ops::scan::{HScanIter, ScanIter, ScanOptions, ScanPage};
pub use ops::strings::{GetExpiry, SetCondition, SetExpiry, SetOptions, SetOutcome};
pub use slot::{crc16, hashtag, key_slot, SLOT_COUNT};
pub use stats::{LogStats, Op, SnapshotInfo, SnapshotStats, Stats};

/// Former module path of [`WriteBatch`] and [`BatchReply`].
pub mod batch {
    pub use crate::ops::batch::{BatchReply, WriteBatch};
}

pub mod replica {
    //! The engine's side of replication: roles, the applied offset, and the
    //! primitives the `ringkv-replication` crate drives (appending a primary's
    //! raw stream bytes at the same offsets, replaying them, starting over for
    //! a full sync, swapping in a keyspace loaded beside the live one,
    //! promotion). The primitives are methods of [`Engine`](crate::Engine).
    //!
    //! A follower's keyspace changes only through its primary's stream
    //! ([`Engine::replica_replay_stream`](crate::Engine::replica_replay_stream),
    //! [`Engine::replica_replay_ring`](crate::Engine::replica_replay_ring),
    //! [`Engine::swap_in`](crate::Engine::swap_in)):
    //! writes through the public API fail with [`Error::ReadOnly`](crate::Error::ReadOnly), keys found
    //! expired are reported missing but not deleted (the primary's logged
    //! deletion does that), and no active expiry or eviction runs. So the
    //! follower's state is always the primary's state at some offset of the
    //! same stream, and its ring is byte-identical to the primary's.
    //!
    //! In a data directory: appended bytes are synced as the ring's
    //! durability says, and [`Engine::durable_offset`](crate::Engine::durable_offset) is what a follower acks
    //! as durable; a full sync is complete when [`Engine::swap_in`](crate::Engine::swap_in) has saved
    //! the new data (until then a crash restarts empty, and promotion saves
    //! first); a record that does not replay is cut from the ring, so the
    //! directory always reopens with what was applied.
    //!
    //! Without a network (what the replication crate does over QUIC):
    //!
    //! ```
    //! use ringkv::{Engine, Role};
    //! let primary = Engine::builder().anonymous_log().build()?;
    //! let follower = Engine::builder().anonymous_log().build()?;
    //! follower.set_role(Role::Follower)?;
    //! // Adopt the primary's history from offset 0 (an empty full sync).
    //! let replid = primary.log().unwrap().replid();
    //! follower.replica_begin_full_sync(0, &replid, "", 0)?;
    //! follower.swap_in(&follower.staging()?, 0)?;
    //!
    //! primary.hset("telemetry:host-1", [("cpu", "0.93")])?;
    //! let batch = primary.log().unwrap().read_stream(follower.applied_offset(), 1 << 20)?;
    //! follower.replica_append(batch.start, &batch.bytes)?;
    //! follower.replica_replay_stream(batch.start, &batch.bytes)?;
    //! assert_eq!(follower.digest(), primary.digest());
    //! assert!(follower.set("k", "v").is_err()); // READONLY
    //!
    //! let promotion = follower.promote()?;
    //! assert_eq!(promotion.prev_replid, replid);
    //! follower.set("k", "v")?;
    //! # Ok::<(), Box<dyn std::error::Error>>(())
    //! ```

    pub use crate::core::{Promotion, Role, WriteGate};
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
