//! What a shard keeps in etcd, under `/ringkv/shards/<shard>/`:
//!
//! - `leader`: the primary's [`LeaderRecord`] (JSON), bound to its lease.
//!   The key's create revision is the shard's **epoch**: a new leader
//!   creates a new key, so epochs only grow.
//! - `nodes/<id>`: every node's [`NodeRecord`] (JSON), bound to its lease,
//!   refreshed by the node a few times a second.

use serde::{Deserialize, Serialize};

use super::error::EtcdError;
use super::etcd::Etcd;

/// The prefix of shard `shard`'s keys.
pub fn shard_prefix(shard: &str) -> String {
    format!("/ringkv/shards/{shard}/")
}

/// The key of shard `shard`'s leader.
pub fn leader_key(shard: &str) -> String {
    format!("{}leader", shard_prefix(shard))
}

/// The prefix of shard `shard`'s node records.
pub fn nodes_prefix(shard: &str) -> String {
    format!("{}nodes/", shard_prefix(shard))
}

/// The key of node `id`'s record in shard `shard`.
pub fn node_key(shard: &str, id: &str) -> String {
    format!("{}{id}", nodes_prefix(shard))
}

/// The value of a shard's leader key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The primary's node id.
    pub id: String,
    /// Where its RESP clients connect (`host:port`).
    pub resp: String,
    /// Where its followers connect (QUIC, `host:port`).
    pub repl: String,
}

/// A node's published state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node id.
    pub id: String,
    /// `primary` or `follower`.
    pub role: String,
    /// RESP address.
    pub resp: String,
    /// Replication (QUIC) address it serves on once primary.
    pub repl: String,
    /// Log offset applied.
    pub applied: u64,
    /// Log offset durable on its disk.
    pub durable: u64,
    /// Promotion priority (higher first, after the applied offset).
    pub priority: i64,
    /// Whether it is in a full sync (its old state wiped: never promoted).
    pub in_full_sync: bool,
    /// Its lag behind its primary when last known, in bytes.
    pub lag: u64,
    /// The epoch of the history it holds (0: none yet).
    pub epoch: i64,
    /// It holds the shard's history: it serves it as the primary, or its
    /// follower completed a full or partial sync with its current primary.
    /// A node that never synced (an empty new node, one still connecting)
    /// is never elected. Absent in a record (an older node): false.
    #[serde(default)]
    pub synced: bool,
}

/// The current leader of a shard and its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// What the leader published.
    pub record: LeaderRecord,
    /// The leader key's create revision.
    pub epoch: i64,
}

/// The current leader of `shard`, if it has one: how clients find the
/// primary through etcd.
///
/// ```no_run
/// # fn demo() -> Result<(), ringkv_examples::coord::EtcdError> {
/// let etcd = ringkv_examples::coord::Etcd::new("http://127.0.0.1:2379")?;
/// if let Some(l) = ringkv_examples::coord::leader(&etcd, "s1")? {
///     println!("write to {} (epoch {})", l.record.resp, l.epoch);
/// }
/// # Ok(()) }
/// ```
pub fn leader(etcd: &Etcd, shard: &str) -> Result<Option<Leader>, EtcdError> {
    let Some(kv) = etcd.get(leader_key(shard).as_bytes())? else {
        return Ok(None);
    };
    let record = serde_json::from_slice(&kv.value).map_err(|e| EtcdError::Json(format!("the leader key: {e}")))?;
    Ok(Some(Leader {
        record,
        epoch: kv.create_revision,
    }))
}

/// Every node record of `shard` (records that do not parse are skipped).
pub fn nodes(etcd: &Etcd, shard: &str) -> Result<Vec<NodeRecord>, EtcdError> {
    let range = etcd.range_prefix(nodes_prefix(shard).as_bytes())?;
    Ok(range
        .kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}
