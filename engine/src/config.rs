//! Engine configuration (serde-deserializable, e.g. from TOML or JSON).

use serde::{Deserialize, Serialize};

use crate::error::{Error, LogError, Result};

/// What to do when memory use reaches [`Config::maxmemory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    /// Refuse writes that may add memory with [`Error::OutOfMemory`].
    #[default]
    Noeviction,
    /// Evict the least recently used key among a random sample (Redis' approximation).
    AllkeysLru,
    /// Evict the key with the nearest expiry among keys that have one.
    VolatileTtl,
}

/// Engine configuration. Every field has a default; `Config::default()` is a
/// sensible engine for the machine it runs on.
///
/// ```
/// let config: ringkv::Config =
///     serde_json::from_str(r#"{"maxmemory": 1048576, "maxmemory_policy": "allkeys-lru"}"#).unwrap();
/// assert_eq!(config.maxmemory, 1 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Number of shards, a power of two; 0 picks 4 × cores rounded up.
    pub shards: usize,
    /// Longest key or hash field in bytes.
    pub max_key_len: usize,
    /// Longest string value or hash field value in bytes (Redis: 512 MB).
    pub max_value_len: usize,
    /// Memory limit in bytes for the accounted data; 0 means no limit.
    pub maxmemory: u64,
    /// What happens at the limit.
    pub maxmemory_policy: EvictionPolicy,
    /// Keys sampled per eviction (Redis' `maxmemory-samples`).
    pub maxmemory_samples: usize,
    /// Run active expiry and background rehash on a named thread.
    pub active_expire: bool,
    /// Milliseconds between background cycles (Redis' `hz` 10 is 100 ms).
    pub active_expire_interval_ms: u64,
    /// Most keys one background cycle expires per shard.
    pub active_expire_keys_per_shard: usize,
    /// Buckets one background cycle rehashes per shard.
    pub background_rehash_buckets: usize,
    /// Seed of the key hasher; `None` picks a random one (recommended: it
    /// protects against hash flooding).
    pub hash_seed: Option<u64>,
    /// Threads that apply a follower's stream, recovery's ring replay and
    /// a snapshot load, by shard (`services/parallel_apply.rs`,
    /// `services/parallel_load.rs`); 0 picks the
    /// machine's cores (at most 8), 1 applies on the calling thread alone
    /// (the sequential path).
    pub apply_threads: usize,
    /// Seed of the eviction sampler; `None` picks a random one.
    pub rng_seed: Option<u64>,
    /// Keep keys by Redis Cluster slot (`keyspace/slots.rs`): what
    /// [`Engine::count_keys_in_slot`](crate::Engine::count_keys_in_slot) and
    /// [`Engine::keys_in_slot`](crate::Engine::keys_in_slot) need. Off by
    /// default: it costs an index entry per key (about 40 bytes).
    pub cluster_slots: bool,
    /// The ring log, used when the engine has a data directory (or an
    /// anonymous log, see `EngineBuilder::anonymous_log`).
    pub log: LogConfig,
    /// Snapshots (used with a data directory, or `Engine::snapshot_to`).
    pub snapshot: SnapshotConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: 0,
            max_key_len: 64 * 1024,
            max_value_len: 512 * 1024 * 1024,
            maxmemory: 0,
            maxmemory_policy: EvictionPolicy::Noeviction,
            maxmemory_samples: 5,
            active_expire: true,
            active_expire_interval_ms: 100,
            active_expire_keys_per_shard: 200,
            background_rehash_buckets: 1000,
            hash_seed: None,
            apply_threads: 0,
            rng_seed: None,
            cluster_slots: false,
            log: LogConfig::default(),
            snapshot: SnapshotConfig::default(),
        }
    }
}

/// Most shards an engine may have (the scan cursor keeps the shard in its low bits).
pub const MAX_SHARDS: usize = 1 << 16;

impl Config {
    /// Checks the values and resolves `shards = 0`; returns the shard count.
    pub(crate) fn validate(&self) -> Result<usize> {
        let shards = if self.shards == 0 {
            let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
            (cores * 4).next_power_of_two().clamp(4, 1024)
        } else {
            self.shards
        };
        if !shards.is_power_of_two() || shards > MAX_SHARDS {
            return Err(Error::Config(format!(
                "shards must be a power of two between 1 and {MAX_SHARDS}, not {shards}"
            )));
        }
        if self.max_key_len == 0 || self.max_key_len > u32::MAX as usize {
            return Err(Error::Config("max_key_len must be between 1 and 2^32 - 1".into()));
        }
        if self.max_value_len > u32::MAX as usize {
            return Err(Error::Config("max_value_len must be below 2^32".into()));
        }
        if self.maxmemory_samples == 0 {
            return Err(Error::Config("maxmemory_samples must be at least 1".into()));
        }
        if !(self.snapshot.auto_share > 0.0 && self.snapshot.auto_share < 1.0) {
            return Err(Error::Config("snapshot.auto_share must be between 0 and 1".into()));
        }
        if self.active_expire && self.active_expire_interval_ms == 0 {
            return Err(Error::Config("active_expire_interval_ms must be at least 1".into()));
        }
        Ok(shards)
    }
}

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Page cache only: survives a crash of the process (the kernel owns the
    /// mapped pages), not of the machine.
    #[default]
    None,
    /// msync once a second on a background thread.
    Everysec,
    /// Group commit: a write returns only after its record is msynced;
    /// concurrent writers share syncs.
    ///
    /// If that msync fails, the write has already been applied: it is
    /// visible to reads and its record is in the ring, but the call returns
    /// the I/O error (the write is not acknowledged as durable), and the
    /// log is poisoned: every later write fails with that error until the
    /// engine is reopened. Whether the unacknowledged write survives the
    /// reopen depends on what reached the disk; no acknowledged write is
    /// lost either way.
    Always,
}

/// Ring log configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Bytes of the data region: a multiple of 8, at least 64 KiB and at
    /// most [`MAX_LOG_CAPACITY`].
    pub capacity: u64,
    /// When writes reach the disk.
    pub durability: Durability,
    /// A record larger than `capacity / max_record_fraction` is refused
    /// (a 3 MB value must not make a follower loop, Redis #11666). At least
    /// 2, and small enough that `capacity / max_record_fraction` is at least
    /// [`MIN_RECORD_LIMIT`] bytes. A ring file keeps the value it was
    /// created with: reopening it with another one uses the file's.
    pub max_record_fraction: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            capacity: 256 * 1024 * 1024,
            durability: Durability::None,
            max_record_fraction: 8,
        }
    }
}

/// Smallest data region of a ring log.
pub const MIN_LOG_CAPACITY: u64 = 64 * 1024;
/// Largest data region of a ring log (256 TiB): keeps every offset
/// computation far from overflowing.
pub const MAX_LOG_CAPACITY: u64 = 1 << 48;
/// Smallest record limit, `capacity / max_record_fraction`, in bytes
/// (a record header and a useful payload).
pub const MIN_RECORD_LIMIT: u64 = 1024;

impl LogConfig {
    pub(crate) fn validate(&self) -> Result<(), LogError> {
        check_log_limits(self.capacity, self.max_record_fraction).map_err(LogError::Config)
    }
}

/// Checks a ring's capacity and record fraction (from a configuration, or
/// from a ring file's header); says what is wrong.
pub(crate) fn check_log_limits(capacity: u64, max_record_fraction: u64) -> Result<(), String> {
    if !(MIN_LOG_CAPACITY..=MAX_LOG_CAPACITY).contains(&capacity) || !capacity.is_multiple_of(8) {
        return Err(format!(
            "capacity must be a multiple of 8 between 64 KiB and 256 TiB, not {capacity}"
        ));
    }
    if max_record_fraction < 2 {
        return Err(format!(
            "max_record_fraction must be at least 2, not {max_record_fraction}"
        ));
    }
    let limit = capacity / max_record_fraction;
    if limit < MIN_RECORD_LIMIT {
        return Err(format!(
            "max_record_fraction {max_record_fraction} leaves records of {limit} bytes in a ring of {capacity}: \
             capacity / max_record_fraction must be at least {MIN_RECORD_LIMIT}"
        ));
    }
    Ok(())
}

/// Snapshot settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Bytes of serialized data that may wait for the output (disk or a
    /// follower's connection): the bound on a snapshot's extra memory, with
    /// one 64 KiB buffer per shard. The walk pauses while half of it waits;
    /// a write that leaves more than all of it waiting waits (after
    /// releasing its locks, up to `writer_wait_ms`) for the output to catch
    /// up. Nothing waits for the output while holding a shard lock.
    pub buffer_bytes: usize,
    /// Longest time a write waits for a slow snapshot output to take its
    /// backlog back under `buffer_bytes`, with its locks released; then it
    /// returns anyway (the output's own timeout, such as a follower's
    /// `snapshot_send_timeout_ms`, ends a stalled snapshot).
    pub writer_wait_ms: u64,
    /// Snapshot files kept in the data directory.
    pub keep: usize,
    /// Start a snapshot when history not covered by one exceeds this share
    /// of the ring (so the ring never has to overwrite what recovery needs).
    pub auto_share: f64,
    /// How long a write waits for a snapshot to free ring space before it
    /// fails with `LogFull`.
    pub log_full_wait_ms: u64,
    /// Periodic snapshots, like Redis' `save <seconds> <changes>`: a
    /// background save starts when, for some rule, at least `seconds` have
    /// passed since the last snapshot and at least `changes` mutations were
    /// applied since. Checked by the background thread (`active_expire`).
    pub save: Vec<SaveRule>,
}

/// One `save <seconds> <changes>` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveRule {
    /// Seconds since the last snapshot.
    pub seconds: u64,
    /// Mutations since the last snapshot.
    pub changes: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            buffer_bytes: 8 << 20,
            writer_wait_ms: 100,
            keep: 2,
            auto_share: 0.5,
            log_full_wait_ms: 2000,
            // Redis' defaults.
            save: vec![
                SaveRule {
                    seconds: 3600,
                    changes: 1,
                },
                SaveRule {
                    seconds: 300,
                    changes: 100,
                },
                SaveRule {
                    seconds: 60,
                    changes: 10_000,
                },
            ],
        }
    }
}
