//! One server process's shared state: the engine, its replication role
//! (the QUIC primary or follower handle), the clients connected, the
//! counters INFO reports, the SLOWLOG.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use ringkv::Engine;
use ringkv_replication::{Follower, Primary, ReplError};

use super::config::{NodeRole, ServerConfig};
use super::settings::RuntimeSettings;
use super::tls::NodeTls;

/// The replication handle a node holds.
pub(crate) enum Replication {
    /// Serving followers.
    Primary(Arc<Primary>),
    /// Following a primary.
    Follower(Arc<Follower>),
    /// Between roles (a promotion in progress) or shut down.
    None,
}

/// What CLIENT LIST shows of a connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientInfo {
    pub(crate) addr: String,
    pub(crate) laddr: String,
    pub(crate) name: String,
    pub(crate) lib_name: String,
    pub(crate) lib_ver: String,
    pub(crate) connected: Option<Instant>,
    pub(crate) last_cmd: String,
    pub(crate) last_active: Option<Instant>,
    pub(crate) resp: u8,
    pub(crate) multi: i64,
    pub(crate) kill: bool,
}

/// One SLOWLOG entry.
#[derive(Debug, Clone)]
pub(crate) struct SlowEntry {
    pub(crate) id: u64,
    pub(crate) at_unix: u64,
    pub(crate) micros: u64,
    pub(crate) args: Vec<Vec<u8>>,
    pub(crate) client: String,
    pub(crate) name: String,
}

/// Counters for INFO stats.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_received: AtomicU64,
    pub(crate) commands_processed: AtomicU64,
    pub(crate) rejected_connections: AtomicU64,
    pub(crate) net_input_bytes: AtomicU64,
    pub(crate) net_output_bytes: AtomicU64,
    pub(crate) keyspace_hits: AtomicU64,
    pub(crate) keyspace_misses: AtomicU64,
    pub(crate) error_replies: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) output_limit_disconnections: AtomicU64,
}

/// The shared state of one server process.
pub struct Node {
    pub(crate) engine: Engine,
    pub(crate) config: ServerConfig,
    /// What `CONFIG SET` changes while running.
    pub(crate) settings: RuntimeSettings,
    pub(crate) role: Mutex<NodeRole>,
    pub(crate) replication: Mutex<Replication>,
    pub(crate) tls: NodeTls,
    pub(crate) counters: Counters,
    /// Every connected client; each entry is locked only by its own
    /// connection (per command) and by CLIENT LIST/KILL and INFO.
    pub(crate) clients: Mutex<BTreeMap<u64, Arc<Mutex<ClientInfo>>>>,
    pub(crate) slowlog: Mutex<VecDeque<SlowEntry>>,
    pub(crate) slowlog_next: AtomicU64,
    pub(crate) next_client_id: AtomicU64,
    /// The ACL users; `default` carries `requirepass`.
    pub(crate) users: Mutex<BTreeMap<String, super::acl::User>>,
    pub(crate) started: Instant,
    pub(crate) run_id: String,
    /// Set when the server stops accepting and finishes.
    pub(crate) stopping: AtomicBool,
    pub(crate) stop: tokio::sync::Notify,
    /// Unix seconds of the last successful save.
    pub(crate) last_save: AtomicU64,
    /// The address the RESP listener bound.
    pub(crate) resp_addr: Mutex<Option<std::net::SocketAddr>>,
    /// The primary this node follows now (REPLICAOF and failover re-point it).
    pub(crate) upstream: Mutex<Option<std::net::SocketAddr>>,
    /// Failover's leader-lease fence (always open without failover).
    pub(crate) fence: Arc<super::fence::Fence>,
    /// Failover: until when this node's record is surely live in etcd (its
    /// lease renewed and the record put on it), so that it can be elected.
    /// As a follower it is counted by its primary's WAIT and write gate
    /// only until then (`Follower::set_counted_until`). Always open
    /// without failover.
    pub(crate) registration: super::fence::Fence,
    /// Failover's epoch: the leader key revision this node leads or follows.
    pub(crate) epoch: std::sync::atomic::AtomicI64,
    /// Cluster mode's slot map and routing (`None`: standalone).
    pub(crate) cluster: Option<Arc<super::cluster::ClusterState>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("role", &*self.role.lock())
            .field("dir", &self.config.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Node {
    pub(crate) fn new(
        engine: Engine,
        config: ServerConfig,
        role: NodeRole,
        tls: NodeTls,
        users: BTreeMap<String, super::acl::User>,
    ) -> Node {
        Node {
            users: Mutex::new(users),
            fence: Arc::new(super::fence::Fence::new(config.coord.etcd.is_some())),
            registration: super::fence::Fence::new(config.coord.etcd.is_some()),
            upstream: Mutex::new(None),
            epoch: std::sync::atomic::AtomicI64::new(0),
            engine,
            settings: RuntimeSettings::new(&config),
            config,
            role: Mutex::new(role),
            replication: Mutex::new(Replication::None),
            tls,
            counters: Counters::default(),
            clients: Mutex::new(BTreeMap::new()),
            slowlog: Mutex::new(VecDeque::new()),
            slowlog_next: AtomicU64::new(0),
            next_client_id: AtomicU64::new(1),
            started: Instant::now(),
            run_id: ringkv::log::new_replid(),
            stopping: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
            last_save: AtomicU64::new(unix_secs()),
            resp_addr: Mutex::new(None),
            cluster: None,
        }
    }

    /// The engine behind the server.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The node's current role.
    pub fn role(&self) -> NodeRole {
        *self.role.lock()
    }

    pub(crate) fn primary(&self) -> Option<Arc<Primary>> {
        match &*self.replication.lock() {
            Replication::Primary(p) => Some(Arc::clone(p)),
            _ => None,
        }
    }

    pub(crate) fn follower(&self) -> Option<Arc<Follower>> {
        match &*self.replication.lock() {
            Replication::Follower(f) => Some(Arc::clone(f)),
            _ => None,
        }
    }

    /// Starts serving replication on the configured address.
    pub(crate) async fn start_primary(&self) -> Result<(), ReplError> {
        let mut config = self.config.replication.clone();
        config.epoch = self.epoch();
        let primary = Primary::start(self.engine.clone(), config, self.tls.server.clone()).await?;
        tracing::info!(addr = %primary.local_addr(), "replication (QUIC) listening");
        *self.replication.lock() = Replication::Primary(Arc::new(primary));
        *self.upstream.lock() = None;
        self.fence.install(&self.engine);
        Ok(())
    }

    /// Starts following `primary`.
    pub(crate) async fn start_follower(&self, primary: std::net::SocketAddr) -> Result<(), ReplError> {
        let mut config = self.config.follower.clone();
        config.primary = primary;
        config.min_epoch = self.epoch();
        let follower = Follower::start(self.engine.clone(), config, self.tls.client.clone()).await?;
        // Failover: counted by the primary only while registered in etcd.
        follower.set_counted_until(self.registration.deadline());
        *self.replication.lock() = Replication::Follower(Arc::new(follower));
        *self.upstream.lock() = Some(primary);
        *self.role.lock() = NodeRole::Follower;
        Ok(())
    }

    /// Stops the replication handle held now (both roles).
    pub(crate) async fn stop_replication(&self) {
        let old = std::mem::replace(&mut *self.replication.lock(), Replication::None);
        match old {
            Replication::Primary(p) => {
                // A WAIT may hold another handle: close through the shared
                // one first, so the endpoint stops serving this history now
                // whoever still holds it (its late drop then only repeats
                // the close, which leaves a newer gate alone).
                p.close();
                if let Ok(p) = Arc::try_unwrap(p) {
                    p.shutdown().await;
                }
                if self.fence.enabled() {
                    // The fence's gate wrapped this primary's: both go.
                    self.engine.set_write_gate(None);
                    self.fence.reset();
                }
            }
            Replication::Follower(f) => {
                if let Ok(f) = Arc::try_unwrap(f) {
                    f.stop().await;
                }
            }
            Replication::None => {}
        }
    }

    /// Failover's epoch (0 without it): served as a primary, the oldest
    /// accepted as a follower.
    pub(crate) fn epoch(&self) -> u64 {
        u64::try_from(self.epoch.load(Ordering::Acquire)).unwrap_or(0)
    }

    /// Failover is on and this node does not hold its shard's leader
    /// lease now: writes are refused (READONLY).
    pub(crate) fn fenced(&self) -> bool {
        !self.fence.is_open()
    }

    /// REPLICAOF NO ONE: promotes a follower (keeping the offsets), then
    /// serves replication on the configured address.
    pub(crate) async fn promote(&self) -> Result<(), String> {
        let old = std::mem::replace(&mut *self.replication.lock(), Replication::None);
        match old {
            Replication::Follower(f) => {
                let f = Arc::try_unwrap(f).map_err(|f| {
                    *self.replication.lock() = Replication::Follower(f);
                    "the follower is busy; try again".to_string()
                })?;
                f.promote().await.map_err(|e| e.to_string())?;
            }
            Replication::Primary(p) => {
                *self.replication.lock() = Replication::Primary(p);
                return Ok(());
            }
            Replication::None => {
                if self.engine.role() == ringkv::Role::Follower {
                    self.engine.promote().map_err(|e| e.to_string())?;
                }
            }
        }
        *self.role.lock() = NodeRole::Primary;
        self.start_primary().await.map_err(|e| e.to_string())
    }

    /// REPLICAOF host port: (re)follows that primary's replication port.
    pub(crate) async fn follow(&self, primary: std::net::SocketAddr) -> Result<(), String> {
        self.stop_replication().await;
        if self.engine.role() == ringkv::Role::Primary {
            self.engine
                .set_role(ringkv::Role::Follower)
                .map_err(|e| e.to_string())?;
        }
        self.start_follower(primary).await.map_err(|e| e.to_string())
    }

    /// WAIT: how many followers acked `offset` within `timeout`.
    pub(crate) async fn wait_for_followers(&self, offset: u64, n: usize, timeout: Duration) -> usize {
        match self.primary() {
            Some(p) => p.wait_for_followers(offset, n, timeout).await,
            None => 0,
        }
    }

    /// Whether a new connection must authenticate (the default user has a
    /// password).
    pub(crate) fn needs_auth(&self) -> bool {
        self.users.lock().get("default").is_none_or(|u| !u.nopass)
    }

    /// Checks `password` for `user`.
    pub(crate) fn authenticate(&self, user: &[u8], password: &[u8]) -> bool {
        let users = self.users.lock();
        std::str::from_utf8(user)
            .ok()
            .and_then(|u| users.get(u))
            .is_some_and(|u| u.accepts(password))
    }

    /// CONFIG SET requirepass: the default user's password.
    pub(crate) fn set_requirepass(&self, password: &str) {
        let mut users = self.users.lock();
        if let Some(d) = users.get_mut("default") {
            d.passwords = (!password.is_empty())
                .then(|| password.to_string())
                .into_iter()
                .collect();
            d.nopass = password.is_empty();
        }
    }

    /// Records a command in the SLOWLOG if it took long enough.
    pub(crate) fn slowlog_push(&self, micros: u64, args: &[bytes::Bytes], client: &ClientInfo) {
        if micros < self.settings.slowlog_log_slower_than() {
            return;
        }
        let entry = SlowEntry {
            id: self.slowlog_next.fetch_add(1, Ordering::Relaxed),
            at_unix: unix_secs(),
            micros,
            // Redis keeps at most 32 arguments of at most 128 bytes.
            args: args.iter().take(32).map(|a| a[..a.len().min(128)].to_vec()).collect(),
            client: client.addr.clone(),
            name: client.name.clone(),
        };
        let mut log = self.slowlog.lock();
        log.push_front(entry);
        log.truncate(self.settings.slowlog_max_len());
    }

    /// Asks the server to stop (SHUTDOWN, a signal).
    pub(crate) fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
    }
}
