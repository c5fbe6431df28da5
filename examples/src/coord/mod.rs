//! etcd as the coordinator of failover (and of the cluster's slot map).
//!
//! - [`Etcd`] (`etcd.rs`): a blocking client of etcd's v3 JSON gateway
//!   over HTTP/1.1 (`http.rs`): range, put, delete, transactions, leases.
//! - `shard.rs`: the keys a shard keeps (`/ringkv/shards/<shard>/leader`,
//!   `.../nodes/<id>`) and [`leader`], how clients find a shard's primary.
//! - [`LocalEtcd`] (`local.rs`): a single-node etcd on loopback for tests
//!   and demos.
//!
//! ```no_run
//! # fn demo() -> Result<(), ringkv_examples::coord::EtcdError> {
//! let etcd = ringkv_examples::coord::Etcd::new("http://127.0.0.1:2379")?;
//! etcd.put(b"/ringkv/hello", b"world", None)?;
//! let kv = etcd.get(b"/ringkv/hello")?.expect("just written");
//! assert_eq!(kv.value, b"world");
//! # Ok(()) }
//! ```

mod error;
mod etcd;
mod http;
mod local;
mod shard;

pub use error::EtcdError;
pub use etcd::{
    Compare, CompareOp, Etcd, KeyValue, Lease, LeaseId, Op, OpResult, Range, Target, TxnResult, DEFAULT_MAX_RESPONSE,
    DEFAULT_TIMEOUT,
};
pub use local::{etcd_installed, LocalEtcd, LocalEtcdError};
pub use shard::{leader, leader_key, node_key, nodes, nodes_prefix, shard_prefix, Leader, LeaderRecord, NodeRecord};
