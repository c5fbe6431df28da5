//! ringkv's standalone servers, as a library: [`resp`] is the Redis
//! protocol codec, [`server`] the connections, commands and INFO behind
//! `ringkv-primary` and `ringkv-follower` (whose binaries only parse flags
//! and call [`server::cli::run`]), [`backup`] the continuous backup and
//! point-in-time restore behind `ringkv-backup` and `ringkv-restore`,
//! [`cluster`] the Redis Cluster slot map and routing, [`coord`] the etcd
//! client and shard records behind failover.

#[cfg(feature = "server")]
pub mod backup;
#[cfg(feature = "server")]
pub mod cluster;
#[cfg(feature = "server")]
pub mod coord;
pub mod resp;
#[cfg(feature = "server")]
pub mod server;
