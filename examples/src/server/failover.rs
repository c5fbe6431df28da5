//! Failover through etcd, per shard (`[coord]`, `--etcd URL --shard NAME`):
//! one task per node that, every `tick_ms`,
//!
//! 1. holds a lease of `lease_ttl_secs` (granted, then renewed; the
//!    instant each renewal was *sent* plus the TTL minus the margin is how
//!    long the node may take writes: [`Fence`](super::fence::Fence));
//! 2. publishes its [`NodeRecord`] (applied and durable offsets, lag,
//!    priority, "in a full sync", epoch, the replication address:
//!    `advertise_repl` or the bound one) bound to that lease; as a
//!    follower it is counted by its primary's WAIT and write gate only
//!    until that renewal's deadline (sent + TTL - margin, as the fence):
//!    past it the follower withholds its acks
//!    (`Follower::set_counted_until`) until its record is put again, so a
//!    follower cut off from etcd, which may no longer be a candidate, is
//!    never what a `WAIT 1` relied on;
//! 3. reads the shard's leader key and acts on it:
//!    - it is ours: open the fence until the renewal's deadline;
//!    - someone else's: follow it (re-point the follower: a partial
//!      resync, the history keeps the offsets), adopting its epoch — never
//!      one older than ours;
//!    - none: an election. Among the records in etcd (each bound to its
//!      node's live lease) of the newest epoch, nodes that hold the
//!      shard's history (`synced`: serving it, or synced with their
//!      primary at least once since they last re-pointed), not in a full
//!      sync and within `max_lag_bytes`, the one with
//!      the highest applied offset (then priority, then a node started as
//!      `ringkv-primary`, then the smallest id) takes the key
//!      with a transaction on `create_revision == 0`, and promotes itself
//!      (REPLICAOF NO ONE's path). The key's create revision is the new
//!      epoch, persisted in `<dir>/coord-epoch`.
//!
//! A node that loses the key (its lease expired while it was paused, or
//! etcd was unreachable) has its fence closed already by then; it steps
//! down and follows the new leader, and the bytes it had beyond the new
//! primary's switch offset are reported as lost (`ringkv_lost_bytes` in
//! INFO, and a log line).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coord::{leader_key, node_key, Compare, Etcd, EtcdError, LeaderRecord, LeaseId, NodeRecord, Op};

use super::config::{CoordConfig, NodeRole};
use super::node::Node;

/// The epoch file in the data directory.
const EPOCH_FILE: &str = "coord-epoch";

/// The last epoch this node followed or led (0: none).
pub(crate) fn load_epoch(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join(EPOCH_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn store_epoch(dir: &Path, epoch: i64) -> std::io::Result<()> {
    let tmp: PathBuf = dir.join(format!("{EPOCH_FILE}.tmp"));
    std::fs::write(&tmp, format!("{epoch}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(EPOCH_FILE))?;
    // The rename itself is durable only once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

/// Runs `f` on the blocking pool (etcd calls block, with their timeout).
async fn blocking<T: Send + 'static>(
    etcd: &Etcd,
    f: impl FnOnce(&Etcd) -> Result<T, EtcdError> + Send + 'static,
) -> Result<T, EtcdError> {
    let etcd = etcd.clone();
    match tokio::task::spawn_blocking(move || f(&etcd)).await {
        Ok(r) => r,
        Err(_) => Err(EtcdError::Http("the etcd call's task failed")),
    }
}

/// The election's order: newest epoch, highest applied offset, highest
/// priority, smallest id; ineligible records are left out.
pub(crate) fn choose(records: &[NodeRecord], max_lag: u64) -> Option<&NodeRecord> {
    let newest = records.iter().map(|r| r.epoch).max()?;
    records
        .iter()
        .filter(|r| r.epoch == newest && r.synced && !r.in_full_sync && r.lag <= max_lag)
        .max_by(|a, b| {
            (a.applied, a.priority, a.role == "primary")
                .cmp(&(b.applied, b.priority, b.role == "primary"))
                .then_with(|| b.id.cmp(&a.id))
        })
}

/// Until when a renewal sent at `sent` lets us write: the TTL etcd
/// answered, never more than the one we asked for (a larger answer would
/// widen the fence beyond what we configured), minus the margin. `None`
/// (treated as a lost lease) if the instant cannot be represented.
fn fence_deadline(sent: Instant, answered_ttl: i64, asked_ttl: u64, margin: Duration) -> Option<Instant> {
    let ttl = u64::try_from(answered_ttl).unwrap_or(0).min(asked_ttl);
    sent.checked_add(Duration::from_secs(ttl).saturating_sub(margin))
}

struct Coordinator {
    node: Arc<Node>,
    etcd: Etcd,
    cfg: CoordConfig,
    id: String,
    resp: SocketAddr,
    /// Our lease and until when it covers us (sent + TTL - margin).
    lease: Option<(LeaseId, Instant)>,
    /// We hold the leader key created at this revision.
    leading: Option<i64>,
    /// The leader we follow (its id and replication address).
    following: Option<(String, SocketAddr)>,
    epoch: i64,
    /// Consecutive ticks that saw no leader (an election waits for two,
    /// so every record reflects offsets after the old primary stopped).
    leaderless: u32,
}

/// The shard's leader at start-up (its id and replication address) when
/// failover is on and the leader is another node; `None` otherwise (and
/// when etcd cannot be read: the coordinator sorts it out once it can).
pub(crate) async fn current_leader(config: &super::ServerConfig, resp: SocketAddr) -> Option<(String, SocketAddr)> {
    let url = config.coord.etcd.clone()?;
    let shard = config.coord.shard.clone();
    let me = config.coord.node_id.clone().unwrap_or_else(|| resp.to_string());
    let etcd = Etcd::new(&url).ok()?;
    match blocking(&etcd, move |e| crate::coord::leader(e, &shard)).await {
        Ok(Some(l)) if l.record.id != me => Some((l.record.id, l.record.repl.parse().ok()?)),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "failover: cannot read the shard's leader at start");
            None
        }
    }
}

/// Starts the coordinator when `[coord] etcd` is set.
pub(crate) fn spawn(node: Arc<Node>, resp: SocketAddr) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let cfg = node.config.coord.clone();
    let Some(url) = cfg.etcd.clone() else {
        return Ok(None);
    };
    if cfg.lease_ttl_secs < 2 {
        return Err("coord.lease_ttl_secs must be at least 2 (etcd's minimum TTL)".into());
    }
    if cfg.fence_margin_ms + 2 * cfg.tick_ms >= cfg.lease_ttl_secs * 1000 {
        return Err("coord.fence_margin_ms plus two ticks must be shorter than the lease".into());
    }
    let etcd = Etcd::new(&url)
        .map_err(|e| e.to_string())?
        .with_timeout(Duration::from_millis((cfg.lease_ttl_secs * 1000 / 3).max(cfg.tick_ms)));
    let id = cfg.node_id.clone().unwrap_or_else(|| resp.to_string());
    let epoch = node.epoch.load(std::sync::atomic::Ordering::Acquire);
    let c = Coordinator {
        node,
        etcd,
        cfg,
        id,
        resp,
        lease: None,
        leading: None,
        following: None,
        epoch,
        leaderless: 0,
    };
    let fence = Arc::clone(&c.node.fence);
    Ok(Some(tokio::spawn(supervise(fence, c.run()))))
}

/// Runs the coordinator's loop and fails safe if it ends any other way
/// than a requested stop (a panic): nothing renews the lease or moves the
/// fence any more, so the fence is closed for good (writes refused; the
/// other nodes elect once the lease lapses) and the failure is logged.
async fn supervise(fence: Arc<super::fence::Fence>, run: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Err(e) = tokio::spawn(run).await {
        fence.close();
        tracing::error!(
            error = %e,
            "failover: the coordinator failed; the fence stays closed (writes refused) until a restart"
        );
    }
}

impl Coordinator {
    async fn run(mut self) {
        tracing::info!(shard = %self.cfg.shard, id = %self.id, epoch = self.epoch, "failover through etcd");
        let tick = Duration::from_millis(self.cfg.tick_ms);
        loop {
            let started = Instant::now();
            if self.node.stopping.load(std::sync::atomic::Ordering::Acquire) {
                self.leave().await;
                return;
            }
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "failover: etcd call failed");
            }
            self.follow_cluster_leaders().await;
            let notified = self.node.stop.notified();
            tokio::select! {
                _ = tokio::time::sleep(tick.saturating_sub(started.elapsed())) => {}
                _ = notified => {}
            }
        }
    }

    /// In cluster mode: every shard's leader in etcd stands as its primary
    /// in the routing (read once a tick: the tick is the cache).
    async fn follow_cluster_leaders(&self) {
        let Some(cluster) = self.node.cluster.as_ref() else {
            return;
        };
        let names = cluster.shard_names();
        let found = blocking(&self.etcd, move |e| {
            let mut found = Vec::with_capacity(names.len());
            for shard in names {
                if let Some(l) = crate::coord::leader(e, &shard)? {
                    found.push((shard, l.record.id, l.record.resp));
                }
            }
            Ok(found)
        })
        .await;
        match found.map(|f| cluster.follow_leaders(f)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cluster: the leaders do not fit the slot map"),
            Err(e) => tracing::debug!(error = %e, "cluster: cannot read the shards' leaders"),
        }
    }

    /// Shutting down: close the fence, give the key up (the followers
    /// elect at once instead of waiting for the lease), revoke the lease.
    async fn leave(&mut self) {
        self.node.fence.close();
        if let Some((lease, _)) = self.lease.take() {
            let key = leader_key(&self.cfg.shard);
            if let Some(epoch) = self.leading.take() {
                let _ = blocking(&self.etcd, move |e| {
                    e.txn(
                        &[Compare::create_revision(key.as_bytes(), epoch)],
                        &[Op::delete(key.as_bytes())],
                        &[],
                    )
                })
                .await;
            }
            let _ = blocking(&self.etcd, move |e| e.lease_revoke(lease)).await;
        }
    }

    /// Grants or renews the lease; false if we hold none now.
    async fn renew(&mut self) -> Result<bool, EtcdError> {
        let ttl = self.cfg.lease_ttl_secs;
        let margin = Duration::from_millis(self.cfg.fence_margin_ms);
        let sent = Instant::now();
        let granted = match self.lease {
            None => {
                let l = blocking(&self.etcd, move |e| e.lease_grant(ttl as i64)).await?;
                Some((l.id, l.ttl))
            }
            Some((id, _)) => blocking(&self.etcd, move |e| e.lease_keepalive(id))
                .await?
                .map(|t| (id, t)),
        };
        match granted.and_then(|(id, ttl)| Some((id, fence_deadline(sent, ttl, self.cfg.lease_ttl_secs, margin)?))) {
            Some((id, until)) => {
                self.lease = Some((id, until));
                Ok(true)
            }
            None => {
                tracing::warn!("failover: our lease expired");
                self.lease = None;
                // Our record went with the lease: not counted from now on.
                self.registered_until(Instant::now());
                self.step_down("the lease expired");
                Ok(false)
            }
        }
    }

    fn step_down(&mut self, why: &str) {
        self.node.fence.close();
        if let Some(epoch) = self.leading.take() {
            tracing::warn!(epoch, why, "failover: no longer the shard's leader; writes refused");
        }
    }

    /// Where followers reach this node's replication: the advertised
    /// address if configured, else the one bound (or to bind, once primary).
    fn repl_addr(&self) -> SocketAddr {
        self.cfg.advertise_repl.unwrap_or_else(|| {
            self.node
                .primary()
                .map_or(self.node.config.replication.listen, |p| p.local_addr())
        })
    }

    /// Our record is live in etcd until `until` (the lease renewal's
    /// deadline): as a follower we count for the primary's WAIT and write
    /// gate until then, and no longer (a follower cut off from etcd may
    /// have lost its record, so it may not be elected: a write only it
    /// acknowledged could be lost in a failover).
    fn registered_until(&self, until: Instant) {
        self.node.registration.open_until(until);
        if let Some(f) = self.node.follower() {
            f.set_counted_until(Some(until));
        }
    }

    fn record(&self) -> NodeRecord {
        let engine = &self.node.engine;
        let (in_full_sync, lag, synced) = match self.node.follower() {
            Some(f) => {
                let i = f.info();
                let synced = i.full_syncs + i.partial_syncs > 0;
                (i.master_sync_in_progress || i.stale, i.lag_bytes, synced)
            }
            // Serving the history, or neither role (between two handles,
            // or a follower that failed to start): not a candidate.
            None => (engine.is_stale(), 0, self.node.primary().is_some()),
        };
        NodeRecord {
            id: self.id.clone(),
            role: match self.node.role() {
                NodeRole::Primary => "primary".into(),
                NodeRole::Follower => "follower".into(),
            },
            resp: self.resp.to_string(),
            repl: self.repl_addr().to_string(),
            applied: engine.applied_offset(),
            durable: engine.durable_offset(),
            priority: self.cfg.priority,
            in_full_sync: in_full_sync || engine.is_stale(),
            lag,
            epoch: self.epoch,
            synced,
        }
    }

    async fn step(&mut self) -> Result<(), EtcdError> {
        if !self.renew().await? {
            return Ok(());
        }
        let Some((lease, valid_until)) = self.lease else {
            return Ok(());
        };
        let me = self.record();
        let value = serde_json::to_vec(&me).map_err(|e| EtcdError::Json(e.to_string()))?;
        let key = node_key(&self.cfg.shard, &self.id);
        blocking(&self.etcd, move |e| e.put(key.as_bytes(), &value, Some(lease))).await?;
        self.registered_until(valid_until);
        let shard = self.cfg.shard.clone();
        let leader = blocking(&self.etcd, move |e| crate::coord::leader(e, &shard)).await?;
        match leader {
            Some(l) if Some(l.epoch) == self.leading && l.record.id == self.id => {
                // Still ours: writes until the renewal's deadline.
                self.node.fence.open_until(valid_until);
            }
            Some(l) if l.record.id != self.id => {
                self.leaderless = 0;
                self.step_down("another node holds the key");
                self.follow(l.record, l.epoch).await;
            }
            Some(_) => {
                // Our id with another epoch: a previous life's key, bound
                // to a lease that expires; wait for it.
                self.step_down("the key is from a previous run");
            }
            None => {
                self.step_down("no leader key");
                self.leaderless += 1;
                if self.leaderless >= 2 {
                    self.elect(lease, valid_until).await?;
                }
            }
        }
        Ok(())
    }

    async fn follow(&mut self, leader: LeaderRecord, epoch: i64) {
        if epoch < self.epoch {
            tracing::error!(
                epoch,
                ours = self.epoch,
                "failover: the leader key's epoch is older than ours; not following it"
            );
            return;
        }
        let Ok(addr) = leader.repl.parse::<SocketAddr>() else {
            return;
        };
        if addr.port() == 0 {
            return;
        }
        // Already following it (since start-up, or an earlier tick).
        if *self.node.upstream.lock() == Some(addr) && self.node.follower().is_some() {
            self.following = Some((leader.id, addr));
            self.set_epoch(epoch);
            return;
        }
        // The follower refuses primaries older than this epoch from now on.
        self.set_epoch(epoch);
        let was_primary = self.node.role() == NodeRole::Primary;
        tracing::info!(leader = %leader.id, %addr, epoch, was_primary, "failover: following the shard's leader");
        if let Err(e) = self.node.follow(addr).await {
            tracing::warn!(error = %e, "failover: cannot follow the leader");
            return;
        }
        self.following = Some((leader.id, addr));
    }

    fn set_epoch(&mut self, epoch: i64) {
        self.node.epoch.store(epoch, std::sync::atomic::Ordering::Release);
        if epoch != self.epoch {
            self.epoch = epoch;
            if let Err(e) = store_epoch(&self.node.config.dir, epoch) {
                tracing::error!(error = %e, "failover: cannot persist the epoch");
            }
        }
    }

    async fn elect(&mut self, lease: LeaseId, valid_until: Instant) -> Result<(), EtcdError> {
        let shard = self.cfg.shard.clone();
        let mut records = blocking(&self.etcd, move |e| crate::coord::nodes(e, &shard)).await?;
        let me = self.record();
        records.retain(|r| r.id != me.id);
        records.push(me.clone());
        let Some(best) = choose(&records, self.cfg.max_lag_bytes) else {
            return Ok(());
        };
        if best.id != self.id {
            return Ok(());
        }
        let record = LeaderRecord {
            id: self.id.clone(),
            resp: self.resp.to_string(),
            repl: me.repl.clone(),
        };
        let value = serde_json::to_vec(&record).map_err(|e| EtcdError::Json(e.to_string()))?;
        let key = leader_key(&self.cfg.shard);
        let txn = blocking(&self.etcd, move |e| {
            e.txn(
                &[Compare::create_revision(key.as_bytes(), 0)],
                &[Op::put(key.as_bytes(), &value, Some(lease))],
                &[],
            )
        })
        .await?;
        if !txn.succeeded {
            return Ok(());
        }
        let epoch = txn.revision;
        tracing::info!(epoch, applied = me.applied, "failover: took the shard's leader key");
        if let Some(cluster) = &self.node.cluster {
            // The newest slot map before taking writes: a hand-over that
            // moved slots away from this shard within the last poll must
            // not be undone by a stale map.
            let cluster = Arc::clone(cluster);
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || cluster.poll()).await {
                tracing::warn!(error = %e, "failover: reading the slot map before promotion failed; the poller goes on");
            }
        }
        self.set_epoch(epoch);
        let promoted = if let Some(p) = self.node.primary() {
            // Started as the primary: followers get the epoch from now on.
            p.set_epoch(u64::try_from(epoch).unwrap_or(0));
            Ok(())
        } else {
            self.node.promote().await
        };
        if let Err(e) = promoted {
            tracing::error!(error = %e, "failover: promotion failed; giving the key up");
            let key = leader_key(&self.cfg.shard);
            blocking(&self.etcd, move |e| {
                e.txn(
                    &[Compare::create_revision(key.as_bytes(), epoch)],
                    &[Op::delete(key.as_bytes())],
                    &[],
                )
            })
            .await?;
            return Ok(());
        }
        self.following = None;
        self.leaderless = 0;
        self.leading = Some(epoch);
        // The replication address bound may differ from the configured one
        // (port 0): publish the real one (or the advertised one), keeping
        // the key's epoch.
        if self.node.primary().is_some() {
            let actual = self.repl_addr().to_string();
            if actual != record.repl {
                let value = serde_json::to_vec(&LeaderRecord { repl: actual, ..record })
                    .map_err(|e| EtcdError::Json(e.to_string()))?;
                let key = leader_key(&self.cfg.shard);
                blocking(&self.etcd, move |e| {
                    e.txn(
                        &[Compare::create_revision(key.as_bytes(), epoch)],
                        &[Op::put(key.as_bytes(), &value, Some(lease))],
                        &[],
                    )
                })
                .await?;
            }
        }
        self.node.fence.open_until(valid_until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, applied: u64, priority: i64, epoch: i64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            role: "follower".into(),
            resp: String::new(),
            repl: String::new(),
            applied,
            durable: applied,
            priority,
            in_full_sync: false,
            lag: 0,
            epoch,
            synced: true,
        }
    }

    #[test]
    fn the_election_order() {
        assert!(choose(&[], 0).is_none());
        let rs = [rec("a", 10, 0, 5), rec("b", 20, 0, 5), rec("c", 20, 1, 5)];
        assert_eq!(choose(&rs, 0).map(|r| r.id.as_str()), Some("c"));
        let rs = [rec("b", 20, 0, 5), rec("a", 20, 0, 5)];
        assert_eq!(choose(&rs, 0).map(|r| r.id.as_str()), Some("a"), "then the smaller id");
        // An older epoch never wins, whatever its offset (a deposed primary
        // with writes nobody else has).
        let rs = [rec("old", 1000, 9, 3), rec("new", 10, 0, 5)];
        assert_eq!(choose(&rs, 0).map(|r| r.id.as_str()), Some("new"));
    }

    #[test]
    fn never_a_stale_or_lagging_follower() {
        let mut syncing = rec("s", 1_000_000, 9, 5);
        syncing.in_full_sync = true;
        let mut lagging = rec("l", 900_000, 9, 5);
        lagging.lag = 10_000;
        let rs = [syncing.clone(), lagging.clone(), rec("ok", 5, 0, 5)];
        assert_eq!(choose(&rs, 1000).map(|r| r.id.as_str()), Some("ok"));
        // Nobody eligible: no election (rather than a stale primary).
        assert!(choose(&[syncing, lagging], 1000).is_none());
    }

    #[test]
    fn a_hostile_ttl_neither_panics_nor_widens_the_fence() {
        let now = Instant::now();
        let margin = Duration::from_millis(750);
        let until = fence_deadline(now, i64::MAX, 3, margin).expect("capped at the asked TTL");
        assert_eq!(until, now + Duration::from_millis(2250));
        let shorter = fence_deadline(now, 2, 3, margin).expect("a shorter answer is kept");
        assert_eq!(shorter, now + Duration::from_millis(1250));
        assert_eq!(
            fence_deadline(now, -5, 3, margin),
            Some(now),
            "a negative TTL: closed at once"
        );
        assert_eq!(
            fence_deadline(now, i64::MAX, u64::MAX, margin),
            None,
            "unrepresentable: no lease"
        );
    }

    #[tokio::test]
    async fn a_failed_coordinator_leaves_the_fence_closed() {
        let fence = Arc::new(super::super::fence::Fence::new(true));
        fence.open_until(Instant::now() + Duration::from_secs(60));
        let f = Arc::clone(&fence);
        supervise(fence.clone(), async move {
            assert!(f.is_open());
            panic!("coordinator bug");
        })
        .await;
        assert!(!fence.is_open(), "a dead coordinator must not leave writes admitted");
    }

    #[test]
    fn never_a_node_that_never_synced() {
        // Issue 14 finding 2: an empty new node (applied 0, lag 0 because
        // it never heard from a primary, not in a full sync) beside a
        // follower in a full sync: nobody is eligible, rather than the
        // empty node.
        let mut empty = rec("empty", 0, 9, 5);
        empty.synced = false;
        let mut syncing = rec("s", 1_000_000, 0, 5);
        syncing.in_full_sync = true;
        assert!(choose(&[empty.clone(), syncing], 1000).is_none());
        // Even the highest offset and priority does not make it eligible.
        let mut copied = rec("copied", 1 << 40, 9, 5);
        copied.synced = false;
        let rs = [copied, empty, rec("ok", 10, 0, 5)];
        assert_eq!(choose(&rs, 1000).map(|r| r.id.as_str()), Some("ok"));
        // A record without the field (an older node) is not synced.
        let old = serde_json::json!({
            "id": "o", "role": "follower", "resp": "", "repl": "", "applied": 1,
            "durable": 1, "priority": 0, "in_full_sync": false, "lag": 0, "epoch": 5
        });
        let old: NodeRecord = serde_json::from_value(old).expect("record");
        assert!(!old.synced);
    }

    #[test]
    fn the_epoch_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_epoch(dir.path()), 0);
        store_epoch(dir.path(), 42).expect("store");
        assert_eq!(load_epoch(dir.path()), 42);
    }
}
