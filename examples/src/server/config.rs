//! Server configuration: clap flags over an optional TOML file, whose
//! `[engine]` table is the engine's [`ringkv::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use ringkv_replication::{FollowerConfig, PrimaryConfig};

use super::cluster::ClusterConfig;
use crate::resp::Limits;

/// Which process this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// `ringkv-primary`: takes writes, serves replication.
    Primary,
    /// `ringkv-follower`: follows a primary, read-only until promoted.
    Follower,
}

/// Everything a server needs; the defaults are the no-argument ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the RESP listener.
    pub bind: String,
    /// RESP port (0: any free port).
    pub port: u16,
    /// Data directory (created on first start).
    pub dir: PathBuf,
    /// Directory of the development TLS material (CA, server and client
    /// certificates); a primary generates it on first start.
    pub tls_dir: Option<PathBuf>,
    /// A second RESP listener speaking TLS (rustls) on this port, with
    /// the node's server certificate (0: any free port; `None`: no TLS).
    pub tls_port: Option<u16>,
    /// TLS clients must present a certificate from the node's CA
    /// (`tls-auth-clients yes`).
    pub tls_auth_clients: bool,
    /// The password of the `default` user (`requirepass`); `None`: no AUTH.
    pub requirepass: Option<String>,
    /// ACL-style users, one Redis ACL line each: `user NAME on >password
    /// ~* +@all` (also `off`, `nopass`, `allkeys`, `allcommands`). Users
    /// get every command and key: rules that restrict them are refused at
    /// start, not ignored.
    pub users: Vec<String>,
    /// Most clients connected at once (`maxclients`).
    pub maxclients: usize,
    /// Close a client idle this many seconds (0: never), like `timeout`.
    pub timeout: u64,
    /// Pending output per client beyond which it is disconnected (bytes).
    pub client_output_limit: usize,
    /// Commands slower than this go to the SLOWLOG (microseconds).
    pub slowlog_log_slower_than: u64,
    /// Entries the SLOWLOG keeps.
    pub slowlog_max_len: usize,
    /// Request limits (inline line, bulk length, query buffer).
    pub limits: Limits,
    /// Save a snapshot on SIGTERM/SIGINT and on SHUTDOWN (unless NOSAVE).
    pub save_on_shutdown: bool,
    /// The engine's configuration.
    pub engine: ringkv::Config,
    /// Replication as a primary (`listen` is where QUIC listens: the
    /// primary always, a follower once promoted).
    pub replication: PrimaryConfig,
    /// Replication as a follower (`primary` is the primary's QUIC address).
    pub follower: FollowerConfig,
    /// Failover through etcd (`[coord]`; off unless `etcd` is set).
    pub coord: CoordConfig,
    /// Cluster mode (`[cluster]`: enabled, node id, the slot map).
    pub cluster: ClusterConfig,
}

/// Failover through etcd: the shard's leader lease, fencing, promotion
/// (`server/failover.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordConfig {
    /// etcd's client URL(s), `http://host:port[,...]`; `None`: no failover.
    pub etcd: Option<String>,
    /// The shard this node belongs to.
    pub shard: String,
    /// This node's id in the shard (default: its RESP address).
    pub node_id: Option<String>,
    /// Promotion priority: among followers with the same applied offset,
    /// the higher is promoted.
    pub priority: i64,
    /// A follower whose last known lag exceeds this many bytes is never
    /// promoted.
    pub max_lag_bytes: u64,
    /// The leader lease's time to live in seconds (etcd's minimum is 2).
    pub lease_ttl_secs: u64,
    /// The primary stops taking writes this long before its lease can have
    /// expired, counted from when the last successful renewal was sent.
    pub fence_margin_ms: u64,
    /// How often the lease is renewed and the node record published.
    pub tick_ms: u64,
    /// The replication (QUIC) address published in etcd (the leader key
    /// and the node record), where followers connect, when it is not the
    /// bound one (a proxy or NAT in front of it; the partition tests put a
    /// fault-injecting proxy there). `None`: the bound address.
    pub advertise_repl: Option<SocketAddr>,
}

impl Default for CoordConfig {
    fn default() -> Self {
        CoordConfig {
            etcd: None,
            shard: "default".into(),
            node_id: None,
            priority: 0,
            max_lag_bytes: 16 << 20,
            lease_ttl_secs: 3,
            fence_margin_ms: 750,
            tick_ms: 200,
            advertise_repl: None,
        }
    }
}

impl ServerConfig {
    /// The defaults of `ringkv-primary` or `ringkv-follower`.
    pub fn defaults(role: NodeRole) -> ServerConfig {
        let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        ServerConfig {
            bind: "127.0.0.1".into(),
            port: match role {
                NodeRole::Primary => 6379,
                NodeRole::Follower => 6380,
            },
            dir: match role {
                NodeRole::Primary => "ringkv-data".into(),
                NodeRole::Follower => "ringkv-follower-data".into(),
            },
            tls_dir: None,
            tls_port: None,
            tls_auth_clients: false,
            requirepass: None,
            users: Vec::new(),
            maxclients: 10_000,
            timeout: 0,
            client_output_limit: 256 << 20,
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            limits: Limits::default(),
            save_on_shutdown: true,
            engine: ringkv::Config::default(),
            replication: PrimaryConfig {
                listen: match role {
                    NodeRole::Primary => local(7379),
                    NodeRole::Follower => local(7380),
                },
                ..PrimaryConfig::default()
            },
            follower: FollowerConfig::new(local(7379)),
            coord: CoordConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }

    /// The TLS directory: `tls_dir`, or `<primary's data dir>/tls` (a
    /// follower started beside its primary shares the development CA).
    pub fn tls_dir(&self, role: NodeRole) -> PathBuf {
        match (&self.tls_dir, role) {
            (Some(d), _) => d.clone(),
            (None, NodeRole::Primary) => self.dir.join("tls"),
            (None, NodeRole::Follower) => PathBuf::from("ringkv-data").join("tls"),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::defaults(NodeRole::Primary)
    }
}
