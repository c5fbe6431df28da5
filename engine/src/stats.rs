//! Engine statistics.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use serde::{Deserialize, Serialize};

macro_rules! ops {
    ($($variant:ident => $name:literal,)*) => {
        /// Operations counted in [`Stats::commands`], named as Redis' INFO commandstats names them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Op { $($variant,)* }

        pub(crate) const OP_COUNT: usize = [$($name,)*].len();

        impl Op {
            /// Every operation.
            pub const ALL: [Op; OP_COUNT] = [$(Op::$variant,)*];

            /// The Redis command name.
            pub fn name(self) -> &'static str {
                match self { $(Op::$variant => $name,)* }
            }
        }
    };
}

ops! {
    Get => "get",
    Set => "set",
    Del => "del",
    Exists => "exists",
    IncrBy => "incrby",
    Append => "append",
    MGet => "mget",
    MSet => "mset",
    Type => "type",
    Expire => "expire",
    Ttl => "ttl",
    Persist => "persist",
    Rename => "rename",
    Flush => "flushall",
    HSet => "hset",
    HGet => "hget",
    HMGet => "hmget",
    HDel => "hdel",
    HLen => "hlen",
    HExists => "hexists",
    HIncrBy => "hincrby",
    HGetAll => "hgetall",
    HKeys => "hkeys",
    HVals => "hvals",
    HDrain => "hdrain",
    GetDel => "getdel",
    GetEx => "getex",
    SetRange => "setrange",
    IncrByFloat => "incrbyfloat",
    MSetNx => "msetnx",
    Copy => "copy",
    RandomKey => "randomkey",
    HSetNx => "hsetnx",
    HIncrByFloat => "hincrbyfloat",
    HRandField => "hrandfield",
    Scan => "scan",
    HScan => "hscan",
    Batch => "exec",
}

/// A snapshot of the engine's counters; serializable (JSON, INFO-like output).
///
/// ```
/// let engine = ringkv::Engine::new(ringkv::Config::default())?;
/// engine.set("k", "v")?;
/// let stats = engine.stats();
/// assert_eq!(stats.keys, 1);
/// assert_eq!(stats.commands["set"], 1);
/// println!("{}", serde_json::to_string(&stats).unwrap());
/// # Ok::<(), ringkv::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Keys, including logically expired keys not yet removed (like DBSIZE).
    pub keys: u64,
    /// Keys with an expiry.
    pub keys_with_expiry: u64,
    /// Accounted memory in bytes (tables, keys, values, expiry index).
    pub used_memory: u64,
    /// The configured limit (0: none).
    pub maxmemory: u64,
    /// Keys removed because their expiry passed.
    pub expired_keys: u64,
    /// Keys evicted to stay under `maxmemory`.
    pub evicted_keys: u64,
    /// Shards whose table is being resized.
    pub rehashing_shards: u64,
    /// Number of shards.
    pub shards: u64,
    /// Calls per operation (Redis names).
    pub commands: BTreeMap<String, u64>,
    /// The ring log, when the engine has one.
    pub log: Option<LogStats>,
    /// Snapshots.
    pub snapshot: SnapshotStats,
}

/// Ring log figures in [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogStats {
    /// Data bytes of the ring.
    pub capacity: u64,
    /// Oldest offset kept (Redis: `repl_backlog_first_byte_offset`).
    pub oldest_offset: u64,
    /// End of the stream (Redis: `master_repl_offset`).
    pub offset: u64,
    /// Offset up to which the log is known durable.
    pub synced_offset: u64,
    /// The durability mode.
    pub durability: crate::config::Durability,
    /// Replication id of the stream.
    pub replid: String,
    /// Records replayed when the data directory was opened.
    pub recovered_records: u64,
    /// Bytes of records replayed when the data directory was opened.
    pub recovered_bytes: u64,
    /// Bytes of torn tail cut when the data directory was opened.
    pub torn_bytes: u64,
}

/// What opening a data directory replayed.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecoveryStats {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

/// One thread's counts for one engine. Only that thread writes them, so an
/// increment is a plain load and store: no contended read-modify-write on
/// the read path (a shared counter made two readers of one shard bounce a
/// cache line on every GET).
struct ThreadOps([AtomicU64; OP_COUNT]);

type Registry = Mutex<Vec<Arc<ThreadOps>>>;

/// A thread's entry for one engine: its id, its registry (to notice the
/// engine is gone), this thread's counters.
type LocalEntry = (u64, Weak<Registry>, Arc<ThreadOps>);

thread_local! {
    /// (engine id, its registry, this thread's counters for it).
    static LOCAL_OPS: RefCell<Vec<LocalEntry>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ENGINE_ID: AtomicU64 = AtomicU64::new(1);

/// Per-operation counters of one engine, kept per thread and summed on read.
pub(crate) struct OpCounters {
    id: u64,
    registry: Arc<Registry>,
}

impl OpCounters {
    pub(crate) fn new() -> OpCounters {
        OpCounters {
            id: NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed),
            registry: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Counts one call of `op` on the calling thread.
    pub(crate) fn count(&self, op: Op) {
        LOCAL_OPS.with(|local| {
            let mut local = local.borrow_mut();
            if let Some((_, _, ops)) = local.iter().find(|(id, _, _)| *id == self.id) {
                let c = &ops.0[op as usize];
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                return;
            }
            // First call of this thread on this engine; forget counters of
            // engines that are gone.
            local.retain(|(_, registry, _)| registry.strong_count() > 0);
            let ops = Arc::new(ThreadOps(std::array::from_fn(|_| AtomicU64::new(0))));
            ops.0[op as usize].store(1, Ordering::Relaxed);
            self.registry.lock().push(ops.clone());
            local.push((self.id, Arc::downgrade(&self.registry), ops));
        });
    }

    /// Totals over every thread.
    pub(crate) fn totals(&self) -> [u64; OP_COUNT] {
        let mut totals = [0u64; OP_COUNT];
        for ops in self.registry.lock().iter() {
            for (t, c) in totals.iter_mut().zip(&ops.0) {
                *t += c.load(Ordering::Relaxed);
            }
        }
        totals
    }
}

/// What a snapshot did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Log offset of the cut.
    pub offset: u64,
    /// Keys at the cut.
    pub keys: u64,
    /// Items written (strings, hash heads, hash field chunks).
    pub items: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Time all shards were locked to take the cut, microseconds.
    pub start_pause_us: u64,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// Time writers waited (with no lock held) for the output to take its
    /// backlog down, milliseconds: the back-pressure of a slow output.
    pub writer_wait_ms: u64,
    /// Writes that waited so (each at most `snapshot.writer_wait_ms`).
    #[serde(default)]
    pub writer_waits: u64,
    /// Time the walk paused (between steps, no lock held) for the output,
    /// milliseconds.
    #[serde(default)]
    pub walk_wait_ms: u64,
    /// Largest amount of serialized data waiting for the output, bytes.
    pub peak_buffer_bytes: u64,
    /// Creation time, unix ms.
    pub created_ms: u64,
}

/// Snapshot figures in [`Stats`](crate::Stats).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotStats {
    /// A snapshot is running.
    pub in_progress: bool,
    /// Snapshots completed since start.
    pub completed: u64,
    /// The last completed snapshot.
    pub last: Option<SnapshotInfo>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}
