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

pub mod batch;
mod blob;
mod clock;
mod config;
mod engine;
mod error;
mod expire;
mod glob;
mod keyspace;
pub mod log;
mod memory;
pub mod mutation;
mod recovery;
pub mod replica;
pub mod scan;
pub mod snapshot;
mod stats;

pub use batch::{BatchReply, WriteBatch};
pub use blob::{Blob, INLINE_CAPACITY};
pub use bytes::Bytes;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, EvictionPolicy, MAX_SHARDS};
pub use engine::{Engine, EngineBuilder, KeyType, SetCondition, SetExpiry, SetOptions, SetOutcome, Ttl};
pub use error::{Error, Result, SinkError};
pub use glob::glob_match;
pub use log::{Durability, LogConfig, RingLog};
pub use mutation::{DeleteReason, MemorySink, Mutation, MutationSink, NullSink};
pub use replica::{Promotion, Role, WriteGate};
pub use scan::{HScanIter, ScanIter, ScanOptions, ScanPage};
pub use snapshot::{SnapshotConfig, SnapshotInfo, SnapshotStats};
pub use stats::{LogStats, Op, Stats};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
