//! Redis Cluster mode: the slot map (`map.rs`: slot ranges → shard →
//! primary and replicas, and the ranges being migrated), where a node gets
//! it (`source.rs`), and the routing decision of every request (`route.rs`:
//! MOVED, ASK, CROSSSLOT, TRYAGAIN, CLUSTERDOWN), changes to a map
//! (`edit.rs`), and the `ringkv-cluster` tool (`tool.rs`). Apart from the
//! tool, sans-IO: the server (`server/cluster.rs`) asks these types and
//! writes the replies.
//!
//! Slots are the engine's ([`ringkv::key_slot`]: CRC16 of the key or its
//! `{hashtag}`, 16,384 of them).

mod edit;
mod map;
mod migrate;
mod route;
mod source;
pub mod tool;

pub use map::{MapError, Migration, NodeAddr, ShardMap, SlotMap, SlotRange};
pub use migrate::{filter_mutation, parse_range, range_text, snapshot_item, MigrateError, PullItem, SlotSet};
pub use route::{Request, Route, Routing};
pub use source::{
    lock_map_file, read_map_file, write_map_file, EtcdSource, FileSource, SlotMapSource, StaticSource, ETCD_MAP_KEY,
};
