//! The standalone server behind `ringkv-primary` and `ringkv-follower`:
//! RESP over TCP in front of an [`ringkv::Engine`] in a data directory,
//! replicating over QUIC with `ringkv-replication`.
//!
//! The server is a thin layer: it parses ([`crate::resp`]), dispatches
//! (`command.rs` holds the table: Redis names, arities, flags, key
//! positions), and encodes; every change of state is an engine operation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ringkv_examples::server::{NodeRole, Server, ServerConfig};
//! let mut config = ServerConfig::defaults(NodeRole::Primary);
//! config.port = 0; // any free port
//! let server = Server::start(config, NodeRole::Primary).await?;
//! println!("serving RESP on {}", server.local_addr());
//! server.shutdown(true).await;
//! # Ok(()) }
//! ```

pub mod acl;
pub mod cli;
mod client;
mod cluster;
mod cmd_cluster;
mod cmd_hashes;
mod cmd_keys;
mod cmd_migrate;
mod cmd_server;
mod cmd_strings;
mod command;
mod config;
mod conn;
mod failover;
mod fence;
mod handover;
mod info;
mod migrate_source;
mod migrate_target;
mod node;
mod settings;
pub mod tls;
mod txn;

use std::net::SocketAddr;
use std::sync::Arc;

pub use cluster::ClusterConfig;
pub use config::{CoordConfig, NodeRole, ServerConfig};
pub use node::Node;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The engine refused to open the data directory.
    #[error("opening the data directory: {0}")]
    Engine(#[from] ringkv::Error),
    /// Replication (TLS material, the QUIC endpoint).
    #[error("replication: {0}")]
    Replication(#[from] ringkv_replication::ReplError),
    /// The RESP listener.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration (file or flags).
    #[error("configuration: {0}")]
    Config(String),
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    node: Arc<Node>,
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    accept: tokio::task::JoinHandle<()>,
    tls_accept: Option<tokio::task::JoinHandle<()>>,
    /// Failover's task (`[coord] etcd`).
    coordinator: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Opens the data directory, starts replication for `role`, and
    /// listens for RESP clients. Needs a multi-thread tokio runtime.
    pub async fn start(config: ServerConfig, role: NodeRole) -> Result<Server, ServerError> {
        // Configuration errors first, before anything is opened or created.
        let users = acl::parse(&config.users, config.requirepass.as_deref()).map_err(ServerError::Config)?;
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| ServerError::Config(format!("creating {}: {e}", config.dir.display())))?;
        let tls = tls::load_or_generate(&config.tls_dir(role), role == NodeRole::Primary)?;
        let cluster = if config.cluster.enabled {
            Some(Arc::new(
                cluster::ClusterState::start(&config.cluster).map_err(ServerError::Config)?,
            ))
        } else {
            None
        };
        let mut engine_config = config.engine.clone();
        // Cluster mode counts and lists keys by slot.
        engine_config.cluster_slots |= cluster.is_some();
        let engine = ringkv::Engine::open(&config.dir, engine_config)?;
        let addr = format!("{}:{}", config.bind, config.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Listen {
                addr: addr.clone(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ServerError::Listen {
            addr: addr.clone(),
            source,
        })?;
        // With failover on, a shard that has a leader already is followed,
        // whatever the binary: a primary coming back rejoins as a follower.
        let mut role = role;
        let mut upstream = config.follower.primary;
        if let Some(l) = failover::current_leader(&config, local).await {
            tracing::info!(leader = %l.0, repl = %l.1, "the shard has a leader: following it");
            role = NodeRole::Follower;
            upstream = l.1;
        }
        let mut node = Node::new(engine, config, role, tls, users);
        node.cluster = cluster;
        let node = Arc::new(node);
        *node.resp_addr.lock() = Some(local);
        if node.config.coord.etcd.is_some() {
            // The epoch persisted beside the data: a restarted follower
            // still refuses a primary deposed before it stopped.
            let epoch = failover::load_epoch(&node.config.dir);
            node.epoch.store(epoch, std::sync::atomic::Ordering::Release);
        }
        match role {
            NodeRole::Primary => {
                if node.engine.role() != ringkv::Role::Primary {
                    node.engine.promote()?;
                }
                node.start_primary().await?;
            }
            NodeRole::Follower => {
                node.engine.set_role(ringkv::Role::Follower)?;
                node.start_follower(upstream).await?;
            }
        }
        tracing::info!(
            role = ?role,
            resp = %local,
            replication = %match role {
                NodeRole::Primary => node.config.replication.listen.to_string(),
                NodeRole::Follower => format!("following {upstream}"),
            },
            dir = %node.config.dir.display(),
            "ringkv server started"
        );
        let mut tls_addr = None;
        let mut tls_accept = None;
        if let Some(port) = node.config.tls_port {
            let acceptor =
                tokio_rustls::TlsAcceptor::from(tls::resp_server_config(&node.tls, node.config.tls_auth_clients)?);
            let addr = format!("{}:{port}", node.config.bind);
            let l = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: addr.clone(),
                    source,
                })?;
            let bound = l.local_addr().map_err(|source| ServerError::Listen { addr, source })?;
            tracing::info!(tls = %bound, "RESP over TLS listening");
            tls_addr = Some(bound);
            tls_accept = Some(tokio::spawn(accept_loop(Arc::clone(&node), l, Some(acceptor))));
        }
        let coordinator = failover::spawn(Arc::clone(&node), local).map_err(ServerError::Config)?;
        if let Some(cluster) = &node.cluster {
            tokio::spawn(cluster::poll_map(Arc::clone(cluster), Arc::clone(&node)));
        }
        let accept = tokio::spawn(accept_loop(Arc::clone(&node), listener, None));
        Ok(Server {
            coordinator,
            node,
            addr: local,
            tls_addr,
            accept,
            tls_accept,
        })
    }

    /// Where RESP clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where TLS clients connect, when `tls_port` is set.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The node's shared state (engine, role).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Waits until the server is asked to stop (SHUTDOWN).
    pub async fn stopped(&self) {
        loop {
            let notified = self.node.stop.notified();
            if self.node.stopping.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Stops accepting, lets connections finish their current batch, stops
    /// replication, and saves a snapshot if `save` (and the engine has
    /// changed since the last one).
    pub async fn shutdown(self, save: bool) {
        self.node.request_stop();
        self.accept.abort();
        let _ = self.accept.await;
        if let Some(t) = self.tls_accept {
            t.abort();
            let _ = t.await;
        }
        if let Some(t) = self.coordinator {
            // It gives the leader key up (bounded by its etcd timeouts).
            if tokio::time::timeout(std::time::Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("failover: the coordinator did not stop in time");
            }
        }
        self.node.stop_replication().await;
        if save {
            let engine = self.node.engine.clone();
            match tokio::task::spawn_blocking(move || engine.save()).await {
                Ok(Ok(info)) => tracing::info!(
                    offset = info.offset,
                    keys = info.keys,
                    "saved a snapshot before exiting"
                ),
                Ok(Err(e)) => tracing::error!(error = %e, "the snapshot before exiting failed"),
                Err(_) => tracing::error!("the snapshot before exiting panicked"),
            }
        }
        let engine = self.node.engine.clone();
        drop(self.node);
        engine.close();
    }
}

/// Accepts connections until the server stops; with `tls`, each one does
/// its TLS handshake (bounded) in its own task before it is served.
async fn accept_loop(node: Arc<Node>, listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let notified = node.stop.notified();
        if node.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(peer);
                    let node = Arc::clone(&node);
                    match tls.clone() {
                        None => {
                            tokio::spawn(conn::serve(node, stream, peer, local));
                        }
                        Some(acceptor) => {
                            tokio::spawn(async move {
                                // A handshake that stalls must not hold the task forever.
                                let handshake =
                                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream));
                                match handshake.await {
                                    Ok(Ok(tls)) => conn::serve(node, tls, peer, local).await,
                                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            _ = notified => return,
        }
    }
}
