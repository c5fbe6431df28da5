//! Cluster mode in the server: the node's [`Routing`] (from its
//! [`SlotMapSource`]) and the check every request passes before it runs
//! (`conn.rs` calls [`redirect`] only when cluster mode is on, so a
//! standalone server pays one `None` test per command).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::client::Client;
use super::command::{lookup, Spec};
use super::handover::HandoverFence;
use super::migrate_source::SourceSessions;
use super::migrate_target::Importer;
use super::node::Node;
use crate::cluster::{
    EtcdSource, FileSource, MapError, Request, Route, Routing, SlotMap, SlotMapSource, SlotSet, StaticSource,
};

/// The `[cluster]` table of the server's config.
///
/// ```
/// let c: ringkv_examples::server::ClusterConfig = toml::from_str(r#"
///     enabled = true
///     node_id = "node-a"
///     map_file = "cluster-map.toml"
/// "#).unwrap();
/// assert!(c.enabled);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Serve the Redis Cluster protocol (`cluster-enabled yes`); turns on
    /// the engine's `cluster_slots`.
    pub enabled: bool,
    /// This node's id in the slot map.
    pub node_id: Option<String>,
    /// etcd holding the slot map (`http://host:port`, comma-separated),
    /// at `/ringkv/cluster/slotmap`; first of the three sources.
    pub etcd: Option<String>,
    /// The slot map file (TOML, or JSON if it ends in `.json`), read at
    /// start and by CLUSTER RELOAD.
    pub map_file: Option<std::path::PathBuf>,
    /// The slot map, inline (when there is no `map_file`).
    pub map: Option<SlotMap>,
}

impl ClusterConfig {
    /// The source of the slot map this config names.
    pub fn source(&self) -> Result<Box<dyn SlotMapSource>, String> {
        if let Some(urls) = &self.etcd {
            return Ok(Box::new(EtcdSource::new(urls).map_err(|e| e.to_string())?));
        }
        match (&self.map_file, &self.map) {
            (Some(path), _) => Ok(Box::new(FileSource(path.clone()))),
            (None, Some(map)) => Ok(Box::new(StaticSource(map.clone()))),
            (None, None) => Err("cluster mode needs cluster.etcd, cluster.map_file or cluster.map".into()),
        }
    }
}

/// A node's cluster state: where the map comes from and the routing built
/// from it (swapped whole when the map changes).
///
/// With failover on (`--etcd --shard`, the map's shard names being the
/// failover shards), the coordinator's tick passes every shard's leader
/// from etcd to [`ClusterState::follow_leaders`]: the leader stands as its
/// shard's primary in the routing (MOVED, ASK, CLUSTER SLOTS/SHARDS/NODES)
/// whatever the map names, so redirections follow a failover within a tick.
///
/// A slot migration's state lives here too: the fence of slots being
/// handed over (`handover.rs`), the streams this node serves as a source
/// (`migrate_source.rs`), and its import as a target (`migrate_target.rs`).
#[derive(Debug)]
pub(crate) struct ClusterState {
    source: Box<dyn SlotMapSource>,
    routing: RwLock<Arc<Routing>>,
    /// Shard name → its leader in etcd (id, RESP endpoint), last seen.
    leaders: RwLock<BTreeMap<String, (String, String)>>,
    /// Writes wait here while their slots are handed over.
    pub(crate) fence: HandoverFence,
    /// Streams of slots to targets.
    pub(crate) outgoing: SourceSessions,
    /// This shard's import of slots, the latest one.
    pub(crate) incoming: Mutex<Option<Arc<Importer>>>,
    /// Hand-overs done, and the last one's pause of writes.
    handovers: Mutex<(u64, Duration)>,
    /// Slots whose keys a hand-over's clean-up is deleting here: an import
    /// of any of them waits for it (it would delete what was imported).
    purging: Mutex<Vec<Arc<SlotSet>>>,
}

/// Keys deleted per step when a node clears the keys of slots.
const CLEAR_BATCH: usize = 256;

/// Deletes every key of `slots` this node holds, a batch per step (each
/// deletion logged, so followers drop them too); returns how many.
pub(crate) fn clear_slots(engine: &ringkv::Engine, slots: &SlotSet) -> Result<u64, String> {
    let mut removed = 0;
    for slot in slots.slots() {
        loop {
            let keys = engine
                .keys_in_slot(slot, None, CLEAR_BATCH)
                .map_err(|e| e.to_string())?;
            if keys.is_empty() {
                break;
            }
            removed += engine.del(&keys).map_err(|e| e.to_string())?;
        }
    }
    Ok(removed)
}

impl ClusterState {
    /// Loads the map and builds this node's routing.
    pub(crate) fn start(config: &ClusterConfig) -> Result<ClusterState, String> {
        let id = config.node_id.as_deref().ok_or("cluster mode needs cluster.node_id")?;
        let source = config.source()?;
        let routing = build(&*source, id, &BTreeMap::new()).map_err(|e| e.to_string())?;
        Ok(ClusterState {
            source,
            routing: RwLock::new(Arc::new(routing)),
            leaders: RwLock::new(BTreeMap::new()),
            fence: HandoverFence::default(),
            outgoing: SourceSessions::default(),
            incoming: Mutex::new(None),
            handovers: Mutex::new((0, Duration::ZERO)),
            purging: Mutex::new(Vec::new()),
        })
    }

    /// The map as its source holds it now (no leaders applied).
    pub(crate) fn load_map(&self) -> Result<SlotMap, MapError> {
        self.source.load()
    }

    /// Changes the map in its source ([`SlotMapSource::replace`]).
    pub(crate) fn replace_map(
        &self,
        change: &mut dyn FnMut(&SlotMap) -> Result<SlotMap, MapError>,
    ) -> Result<SlotMap, MapError> {
        self.source.replace(change)
    }

    /// Routes by `map` from now on (a hand-over's; see [`ClusterState::take`]).
    pub(crate) fn install(&self, map: SlotMap) -> Result<(), MapError> {
        self.take(map, false).map(|_| ())
    }

    /// Reads the map from its source and takes it if it changed (the map
    /// poller, every second); true if it did.
    pub(crate) fn poll(&self) -> Result<bool, MapError> {
        self.take(self.source.load()?, false)
    }

    /// A hand-over paused writes to its slots for `paused`.
    pub(crate) fn note_handover(&self, paused: Duration) {
        let mut h = self.handovers.lock();
        h.0 += 1;
        h.1 = paused;
    }

    /// Hand-overs done, and the last one's pause.
    pub(crate) fn handovers(&self) -> (u64, Duration) {
        *self.handovers.lock()
    }

    /// Deletes this node's keys of `slots` in the background (a
    /// hand-over's clean-up; logged, so followers drop them as well),
    /// registered before it starts so that an import of them waits for it.
    pub(crate) fn start_purge(self: &Arc<Self>, engine: ringkv::Engine, slots: Arc<SlotSet>) {
        self.purging.lock().push(Arc::clone(&slots));
        let cluster = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("ringkv-handover-purge".into())
            .spawn(move || {
                match clear_slots(&engine, &slots) {
                    Ok(removed) => {
                        tracing::info!(slots = %slots, removed, "hand-over clean-up: the moved keys are gone from the source")
                    }
                    Err(e) => tracing::warn!(slots = %slots, error = %e, "hand-over clean-up stopped"),
                }
                cluster.purging.lock().retain(|s| !Arc::ptr_eq(s, &slots));
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "hand-over clean-up not started");
            self.purging.lock().pop();
        }
    }

    /// Whether a clean-up is deleting keys of any of `slots` here.
    pub(crate) fn purging(&self, slots: &SlotSet) -> bool {
        self.purging.lock().iter().any(|s| s.overlaps(slots))
    }

    /// The current routing.
    pub(crate) fn routing(&self) -> Arc<Routing> {
        Arc::clone(&self.routing.read())
    }

    /// Reads the map again from its source (a new epoch from the tool).
    pub(crate) fn reload(&self) -> Result<(), MapError> {
        self.take(self.source.load()?, true).map(|_| ())
    }

    /// Routes by `map` (with the leaders seen applied) unless its epoch is
    /// older than the current map's: a map read before a hand-over never
    /// replaces the one the hand-over installed. A different map of the
    /// same epoch is taken only with `same_epoch` (CLUSTER RELOAD: an
    /// operator's edit). True if it changed.
    fn take(&self, mut map: SlotMap, same_epoch: bool) -> Result<bool, MapError> {
        // The leaders' lock, then the routing's (as `follow_leaders`), held
        // together: a leader seen meanwhile is not lost.
        let leaders = self.leaders.read();
        apply_leaders(&mut map, &leaders);
        let id = self.routing().my_id().to_string();
        let routing = Routing::new(map, &id)?;
        let mut current = self.routing.write();
        let (new, old) = (routing.map().epoch, current.map().epoch);
        if new < old || (new == old && !same_epoch) || routing.map() == current.map() {
            return Ok(false);
        }
        tracing::info!(epoch = routing.map().epoch, "cluster: the slot map changed");
        *current = Arc::new(routing);
        Ok(true)
    }

    /// The names of the map's shards.
    pub(crate) fn shard_names(&self) -> Vec<String> {
        self.routing().map().shards.iter().map(|s| s.name.clone()).collect()
    }

    /// Takes the shards' current leaders (shard, leader id, RESP endpoint;
    /// a shard without a leader now keeps the last one seen) and rebuilds
    /// the routing if one changed.
    pub(crate) fn follow_leaders(&self, found: Vec<(String, String, String)>) -> Result<(), MapError> {
        let mut leaders = self.leaders.write();
        let mut changed = false;
        for (shard, id, endpoint) in found {
            let new = (id, endpoint);
            if leaders.get(&shard) != Some(&new) {
                tracing::info!(%shard, leader = %new.0, endpoint = %new.1, "cluster: the shard's primary is its leader in etcd");
                leaders.insert(shard, new);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        // Under the routing's lock: a map taken meanwhile is not undone.
        let mut current = self.routing.write();
        let mut map = current.map().clone();
        apply_leaders(&mut map, &leaders);
        *current = Arc::new(Routing::new(map, current.my_id())?);
        Ok(())
    }
}

fn build(
    source: &dyn SlotMapSource,
    id: &str,
    leaders: &BTreeMap<String, (String, String)>,
) -> Result<Routing, MapError> {
    let mut map = source.load()?;
    apply_leaders(&mut map, leaders);
    Routing::new(map, id)
}

fn apply_leaders(map: &mut SlotMap, leaders: &BTreeMap<String, (String, String)>) {
    for (shard, (id, endpoint)) in leaders {
        map.set_primary(shard, id, endpoint);
    }
}

/// How often a node reads its slot map's source for changes.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Reads the slot map's source every [`POLL_EVERY`] and takes a changed
/// map (a hand-over, a `ringkv-cluster` change), until the server stops:
/// nodes follow the map without a CLUSTER RELOAD, within a second.
pub(crate) async fn poll_map(cluster: Arc<ClusterState>, node: Arc<Node>) {
    let mut failing = false;
    loop {
        let stopped = node.stop.notified();
        if node.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = stopped => return,
        }
        let c = Arc::clone(&cluster);
        match tokio::task::spawn_blocking(move || c.poll()).await {
            Ok(Ok(_)) => failing = false,
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cluster: reading the slot map failed; the last one stays in use");
            }
            _ => {}
        }
    }
}

/// The one slot a write's keys are in (EXEC: its queued commands' keys),
/// as the hand-over fence sees it; `None` for a write without keys (or of
/// several slots, which the redirection refuses anyway): it waits while any
/// slots are being handed over.
pub(crate) fn write_slot(spec: &Spec, args: &[Bytes], client: &Client) -> Option<u16> {
    let mut keys: Vec<&Bytes> = spec.keys(args);
    if spec.name == "exec" {
        for queued in client.multi.iter().flatten() {
            if let Some(s) = lookup(&queued[0]) {
                keys.extend(s.keys(queued));
            }
        }
    }
    Routing::common_slot(keys).ok().flatten()
}

/// The redirection error (without `-`) for `args` on this node, or `None`
/// to run it. EXEC is decided over the keys of every queued command.
/// Clears the client's one-shot ASKING flag (except for ASKING itself).
pub(crate) fn redirect(
    cluster: &ClusterState,
    node: &Node,
    client: &mut Client,
    spec: &Spec,
    args: &[Bytes],
) -> Option<String> {
    let req = Request {
        write: spec.is_write(),
        asking: client.asking,
        readonly: client.readonly,
    };
    // One-shot, as Redis' resetClient: kept by ASKING itself, by MULTI and
    // by the commands queued after it (so `ASKING MULTI ... EXEC` works on
    // an importing node), cleared by anything else, EXEC and DISCARD
    // included.
    let in_multi = client.multi.is_some() && !matches!(spec.name, "exec" | "discard");
    if !matches!(spec.name, "asking" | "multi") && !in_multi {
        client.asking = false;
    }
    let mut keys: Vec<&Bytes> = spec.keys(args);
    let mut write = req.write;
    if spec.name == "exec" {
        for queued in client.multi.iter().flatten() {
            if let Some(s) = lookup(&queued[0]) {
                keys.extend(s.keys(queued));
                write |= s.is_write();
            }
        }
    }
    if keys.is_empty() {
        return None;
    }
    let replica = node.engine.role() == ringkv::Role::Follower;
    let route = cluster.routing().route(&keys, Request { write, ..req }, replica, |k| {
        node.engine.exists([k]) > 0
    });
    match route {
        Route::Local => None,
        other => other.error(),
    }
}
