//! Engine configuration (serde-deserializable, e.g. from TOML or JSON).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    /// Seed of the eviction sampler; `None` picks a random one.
    pub rng_seed: Option<u64>,
    /// The ring log, used when the engine has a data directory (or an
    /// anonymous log, see `EngineBuilder::anonymous_log`).
    pub log: crate::log::LogConfig,
    /// Snapshots (used with a data directory, or `Engine::snapshot_to`).
    pub snapshot: crate::snapshot::SnapshotConfig,
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
            rng_seed: None,
            log: crate::log::LogConfig::default(),
            snapshot: crate::snapshot::SnapshotConfig::default(),
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
