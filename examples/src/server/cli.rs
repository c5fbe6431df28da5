//! The command line of `ringkv-primary` and `ringkv-follower`: clap flags
//! over an optional TOML file (a flag overrides the file, the file the
//! defaults), logs through `tracing-subscriber` (`RUST_LOG` filter), and
//! the process lifecycle: SIGTERM or SIGINT stops accepting, finishes what
//! is in flight, saves a snapshot (unless `--no-save-on-exit`), exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::{NodeRole, Server, ServerConfig, ServerError};

/// Flags shared by both binaries.
#[derive(Debug, Parser)]
#[command(version, about = "ringkv: a Redis-compatible server over the ringkv engine")]
pub struct Args {
    /// A TOML file: the fields of `ServerConfig` (bind, port, dir,
    /// requirepass, maxclients, timeout, ...), with `[engine]` for the
    /// engine's `Config`, `[replication]` for the primary's and
    /// `[follower]` for the follower's replication settings, `[coord]` for
    /// failover through etcd.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the RESP listener.
    #[arg(long)]
    pub bind: Option<String>,
    /// RESP port (0: any free port). Default 6379 (primary), 6380 (follower).
    #[arg(long)]
    pub port: Option<u16>,
    /// Data directory. Default ./ringkv-data (primary), ./ringkv-follower-data.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Where replication (QUIC) listens: always on a primary, on a follower
    /// once promoted. Default 127.0.0.1:7379 (primary), 127.0.0.1:7380.
    #[arg(long)]
    pub repl_listen: Option<SocketAddr>,
    /// Follower: the primary's replication (QUIC) address. Default 127.0.0.1:7379.
    #[arg(long)]
    pub primary: Option<SocketAddr>,
    /// Directory of the development TLS material (a primary generates it on
    /// first start). Default `<dir>/tls` on a primary, `./ringkv-data/tls` on a
    /// follower (beside its primary).
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// Also serve RESP over TLS on this port (the node's server certificate).
    #[arg(long)]
    pub tls_port: Option<u16>,
    /// TLS clients must present a certificate signed by the node's CA.
    #[arg(long)]
    pub tls_auth_clients: bool,
    /// Password of the default user (AUTH).
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Most clients at once.
    #[arg(long)]
    pub maxclients: Option<usize>,
    /// Close clients idle this many seconds (0: never).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Memory limit in bytes (0: none).
    #[arg(long)]
    pub maxmemory: Option<u64>,
    /// noeviction, allkeys-lru or volatile-ttl.
    #[arg(long)]
    pub maxmemory_policy: Option<String>,
    /// When writes reach the disk: none, everysec or always.
    #[arg(long)]
    pub durability: Option<String>,
    /// Do not save a snapshot when stopping.
    #[arg(long)]
    pub no_save_on_exit: bool,
    /// Failover through etcd: its client URL(s), `http://host:port[,...]`.
    #[arg(long)]
    pub etcd: Option<String>,
    /// Failover: the shard this node belongs to. Default `default`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Failover: this node's id in its shard. Default: its RESP address.
    #[arg(long)]
    pub node_id: Option<String>,
    /// Failover: promotion priority among followers as far along (higher first).
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i64>,
    /// Failover: a follower lagging more bytes than this is never promoted.
    #[arg(long)]
    pub max_lag: Option<u64>,
    /// Failover: the replication address published in etcd for followers
    /// to connect to, when not the bound one (a proxy in front of it).
    #[arg(long)]
    pub repl_advertise: Option<SocketAddr>,
    /// Serve the Redis Cluster protocol (needs a node id and a slot map).
    #[arg(long)]
    pub cluster_enabled: bool,
    /// Cluster mode: this node's id in the slot map.
    #[arg(long)]
    pub cluster_node_id: Option<String>,
    /// Cluster mode: the slot map file (TOML, or JSON if `.json`).
    #[arg(long)]
    pub cluster_map: Option<PathBuf>,
    /// Cluster mode: etcd holding the slot map (`http://host:port`).
    #[arg(long)]
    pub cluster_etcd: Option<String>,
}

/// Merges `over` into `base` (tables recursively, other values replaced).
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn enum_value<T: serde::de::DeserializeOwned>(name: &str, value: &str) -> Result<T, ServerError> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| ServerError::Config(format!("invalid {name}: {value}")))
}

impl Args {
    /// The configuration: defaults for `role`, then the file, then the flags.
    pub fn resolve(&self, role: NodeRole) -> Result<ServerConfig, ServerError> {
        let defaults = ServerConfig::defaults(role);
        let mut config = match &self.config {
            None => defaults,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ServerError::Config(format!("reading {}: {e}", path.display())))?;
                let file: toml::Value =
                    toml::from_str(&text).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
                let mut merged =
                    toml::Value::try_from(&defaults).map_err(|e| ServerError::Config(format!("the defaults: {e}")))?;
                merge(&mut merged, file);
                merged
                    .try_into()
                    .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?
            }
        };
        if let Some(v) = &self.bind {
            config.bind = v.clone();
        }
        if let Some(v) = self.port {
            config.port = v;
        }
        if let Some(v) = &self.dir {
            config.dir = v.clone();
        }
        if let Some(v) = self.repl_listen {
            config.replication.listen = v;
        }
        if let Some(v) = self.primary {
            config.follower.primary = v;
        }
        if let Some(v) = &self.tls_dir {
            config.tls_dir = Some(v.clone());
        }
        if let Some(v) = self.tls_port {
            config.tls_port = Some(v);
        }
        if self.tls_auth_clients {
            config.tls_auth_clients = true;
        }
        if let Some(v) = &self.requirepass {
            config.requirepass = Some(v.clone());
        }
        if let Some(v) = self.maxclients {
            config.maxclients = v;
        }
        if let Some(v) = self.timeout {
            config.timeout = v;
        }
        if let Some(v) = self.maxmemory {
            config.engine.maxmemory = v;
        }
        if let Some(v) = &self.maxmemory_policy {
            config.engine.maxmemory_policy = enum_value("maxmemory-policy", v)?;
        }
        if let Some(v) = &self.durability {
            config.engine.log.durability = enum_value("durability", v)?;
        }
        if self.no_save_on_exit {
            config.save_on_shutdown = false;
        }
        if let Some(v) = &self.etcd {
            config.coord.etcd = Some(v.clone());
        }
        if let Some(v) = &self.shard {
            config.coord.shard = v.clone();
        }
        if let Some(v) = &self.node_id {
            config.coord.node_id = Some(v.clone());
        }
        if let Some(v) = self.priority {
            config.coord.priority = v;
        }
        if let Some(v) = self.max_lag {
            config.coord.max_lag_bytes = v;
        }
        if let Some(v) = self.repl_advertise {
            config.coord.advertise_repl = Some(v);
        }
        if self.cluster_enabled {
            config.cluster.enabled = true;
        }
        if let Some(v) = &self.cluster_node_id {
            config.cluster.node_id = Some(v.clone());
        }
        if let Some(v) = &self.cluster_map {
            config.cluster.map_file = Some(v.clone());
        }
        if let Some(v) = &self.cluster_etcd {
            config.cluster.etcd = Some(v.clone());
        }
        Ok(config)
    }
}

/// Runs a server of this role until SIGTERM, SIGINT or SHUTDOWN; the
/// process's exit code.
pub fn run(role: NodeRole) -> i32 {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match args.resolve(role) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringkv: {e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringkv: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let save = config.save_on_shutdown;
        let server = match Server::start(config, role).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ringkv: {e}");
                return 1;
            }
        };
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ringkv: cannot handle SIGTERM: {e}");
                return 1;
            }
        };
        let save = tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); save }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); save }
            // SHUTDOWN saved already (unless NOSAVE).
            _ = server.stopped() => false,
        };
        server.shutdown(save).await;
        tracing::info!("stopped");
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_settings_from_the_file_and_the_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "[coord]\netcd = \"http://127.0.0.1:2379\"\nshard = \"s9\"\npriority = 3\nlease_ttl_secs = 5\n",
        )
        .expect("write");
        let path = file.display().to_string();
        let args = Args::try_parse_from([
            "ringkv-follower",
            "--config",
            &path,
            "--node-id",
            "n7",
            "--max-lag",
            "4096",
        ])
        .expect("flags");
        let c = args.resolve(NodeRole::Follower).expect("config").coord;
        assert_eq!(c.etcd.as_deref(), Some("http://127.0.0.1:2379"));
        assert_eq!((c.shard.as_str(), c.priority, c.lease_ttl_secs), ("s9", 3, 5));
        assert_eq!((c.node_id.as_deref(), c.max_lag_bytes), (Some("n7"), 4096));
        // A flag overrides the file; without either, failover is off.
        let args = Args::try_parse_from([
            "ringkv-follower",
            "--config",
            &path,
            "--shard",
            "s1",
            "--priority",
            "-1",
        ])
        .expect("flags");
        let c = args.resolve(NodeRole::Follower).expect("config").coord;
        assert_eq!((c.shard.as_str(), c.priority), ("s1", -1));
        let off = Args::try_parse_from(["ringkv-primary"]).expect("flags");
        assert_eq!(off.resolve(NodeRole::Primary).expect("config").coord.etcd, None);
        // An unknown key in [coord] is an error, not ignored.
        std::fs::write(&file, "[coord]\netcd_url = \"x\"\n").expect("write");
        let args = Args::try_parse_from(["ringkv-primary", "--config", &path]).expect("flags");
        assert!(args.resolve(NodeRole::Primary).is_err());
    }
}
