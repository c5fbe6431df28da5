//! Engine statistics.

use std::collections::BTreeMap;

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
    pub durability: crate::log::Durability,
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
