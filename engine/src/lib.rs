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

// L0 vocabulary: no imports from any other layer.
mod blob;
mod clock;
mod codec;
mod config;
mod error;
mod glob;
pub mod mutation;
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
pub use codec::parse_i64;
pub use config::{Config, Durability, EvictionPolicy, LogConfig, SaveRule, SnapshotConfig, MAX_SHARDS};
pub use core::{Promotion, Role, WriteGate};
pub use engine::Engine;
pub use error::{Error, Result, SinkError};
pub use glob::glob_match;
pub use log::{LogView, RingLog};
pub use mutation::{DeleteReason, MemorySink, Mutation, MutationSink, NullSink};
pub use ops::batch::{BatchReply, WriteBatch};
pub use ops::keys::{KeyType, Ttl};
pub use ops::scan;
pub use ops::scan::{HScanIter, ScanIter, ScanOptions, ScanPage};
pub use ops::strings::{SetCondition, SetExpiry, SetOptions, SetOutcome};
pub use stats::{LogStats, Op, SnapshotInfo, SnapshotStats, Stats};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
