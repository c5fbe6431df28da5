//! The slot map of a cluster: which shard serves which slot ranges, each
//! shard's primary and replicas, and the ranges being migrated. It is data
//! (serde: TOML or JSON, the same in a config file and in etcd), checked
//! once by [`SlotMap::validate`], then turned into a [`Routing`] table for
//! one node, which decides each request (`route.rs`).

use serde::{Deserialize, Serialize};

use ringkv::SLOT_COUNT;

/// Why a slot map is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// A range is reversed or past slot 16,383.
    #[error("slot range {start}-{end} is not within 0-16383 or is reversed")]
    BadRange {
        /// First slot.
        start: u16,
        /// Last slot.
        end: u16,
    },
    /// Two shards claim a slot.
    #[error("slot {slot} is assigned to both {first} and {second}")]
    Overlap {
        /// The slot.
        slot: u16,
        /// One shard.
        first: String,
        /// The other.
        second: String,
    },
    /// Two nodes or shards share a name.
    #[error("{0} appears twice in the slot map")]
    Duplicate(String),
    /// A migration names a shard the map does not have.
    #[error("migration names unknown shard {0}")]
    UnknownShard(String),
    /// A migration to its own source, or one over slots another migration
    /// already moves.
    #[error("bad migration: {0}")]
    BadMigration(String),
    /// A migration moves slots its source does not own.
    #[error("migration of {start}-{end} from {from}: {from} does not own them")]
    NotOwner {
        /// First slot.
        start: u16,
        /// Last slot.
        end: u16,
        /// The source shard.
        from: String,
    },
    /// This node's id is not in the map.
    #[error("node id {0} is not in the slot map")]
    UnknownNode(String),
    /// The text does not parse.
    #[error("slot map does not parse: {0}")]
    Parse(String),
    /// The map's source (etcd) cannot be read or written.
    #[error("slot map source: {0}")]
    Unavailable(String),
}

/// One node's address as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddr {
    /// The node id (Redis uses 40 hex characters; any unique string without
    /// spaces works for the clients tested).
    pub id: String,
    /// Host or IP clients connect to.
    pub host: String,
    /// RESP port.
    pub port: u16,
}

impl NodeAddr {
    /// `host:port`, as MOVED and ASK name it.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// An inclusive range of slots, written `[start, end]`.
pub type SlotRange = [u16; 2];

/// One shard: its slot ranges, its primary and its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardMap {
    /// The shard's name (unique).
    pub name: String,
    /// Slot ranges the shard owns.
    #[serde(default)]
    pub slots: Vec<SlotRange>,
    /// The node taking writes.
    pub primary: NodeAddr,
    /// Followers of the primary.
    #[serde(default)]
    pub replicas: Vec<NodeAddr>,
}

/// A slot range moving from one shard to another: the source still owns it
/// and answers ASK for keys it no longer holds; the target serves a
/// request for it only after ASKING.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// The slots moving.
    pub slots: SlotRange,
    /// The shard that owns them.
    pub from: String,
    /// The shard they move to.
    pub to: String,
}

/// The whole cluster's slot map.
///
/// ```
/// use ringkv_examples::cluster::SlotMap;
/// let map = SlotMap::from_toml(r#"
///     epoch = 1
///     [[shards]]
///     name = "a"
///     slots = [[0, 8191]]
///     primary = { id = "node-a", host = "127.0.0.1", port = 7000 }
///     [[shards]]
///     name = "b"
///     slots = [[8192, 16383]]
///     primary = { id = "node-b", host = "127.0.0.1", port = 7001 }
/// "#)?;
/// assert_eq!(map.owner_of(ringkv::key_slot(b"foo")).map(|s| &s.name[..]), Some("b"));
/// assert_eq!(map.assigned_slots(), 16384);
/// # Ok::<(), ringkv_examples::cluster::MapError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlotMap {
    /// Raised by every change of the map (CLUSTER INFO's epochs).
    pub epoch: u64,
    /// The shards.
    pub shards: Vec<ShardMap>,
    /// Ranges being migrated.
    pub migrations: Vec<Migration>,
}

impl SlotMap {
    /// Parses and validates a TOML slot map.
    pub fn from_toml(text: &str) -> Result<SlotMap, MapError> {
        let map: SlotMap = toml::from_str(text).map_err(|e| MapError::Parse(e.to_string()))?;
        map.validate()?;
        Ok(map)
    }

    /// Parses and validates a JSON slot map (how etcd holds it).
    pub fn from_json(text: &[u8]) -> Result<SlotMap, MapError> {
        let map: SlotMap = serde_json::from_slice(text).map_err(|e| MapError::Parse(e.to_string()))?;
        map.validate()?;
        Ok(map)
    }

    /// Checks ranges, overlaps, unique names and ids, and migrations.
    pub fn validate(&self) -> Result<(), MapError> {
        let mut names = std::collections::BTreeSet::new();
        for shard in &self.shards {
            for node in std::iter::once(&shard.primary).chain(&shard.replicas) {
                if !names.insert(format!("node {}", node.id)) {
                    return Err(MapError::Duplicate(format!("node {}", node.id)));
                }
            }
            if !names.insert(format!("shard {}", shard.name)) {
                return Err(MapError::Duplicate(format!("shard {}", shard.name)));
            }
        }
        self.owners()?;
        let mut migrating = vec![false; SLOT_COUNT];
        for m in &self.migrations {
            let [start, end] = m.slots;
            check_range(m.slots)?;
            for name in [&m.from, &m.to] {
                if !self.shards.iter().any(|s| &s.name == name) {
                    return Err(MapError::UnknownShard(name.clone()));
                }
            }
            if m.from == m.to {
                return Err(MapError::BadMigration(format!(
                    "{start}-{end} from {} to itself",
                    m.from
                )));
            }
            for slot in start..=end {
                if std::mem::replace(&mut migrating[slot as usize], true) {
                    return Err(MapError::BadMigration(format!("slot {slot} is in two migrations")));
                }
            }
            let owns = |slot: u16| self.owner_of(slot).is_some_and(|s| s.name == m.from);
            if !(start..=end).all(owns) {
                return Err(MapError::NotOwner {
                    start,
                    end,
                    from: m.from.clone(),
                });
            }
        }
        Ok(())
    }

    /// The owning shard's index of every slot (`None`: unassigned).
    pub(crate) fn owners(&self) -> Result<Vec<Option<usize>>, MapError> {
        let mut owner: Vec<Option<usize>> = vec![None; SLOT_COUNT];
        for (i, shard) in self.shards.iter().enumerate() {
            for &range in &shard.slots {
                check_range(range)?;
                for slot in range[0]..=range[1] {
                    if let Some(first) = owner[slot as usize] {
                        return Err(MapError::Overlap {
                            slot,
                            first: self.shards[first].name.clone(),
                            second: shard.name.clone(),
                        });
                    }
                    owner[slot as usize] = Some(i);
                }
            }
        }
        Ok(owner)
    }

    /// The shard that owns `slot`.
    pub fn owner_of(&self, slot: u16) -> Option<&ShardMap> {
        self.shards
            .iter()
            .find(|s| s.slots.iter().any(|r| (r[0]..=r[1]).contains(&slot)))
    }

    /// How many slots some shard owns.
    pub fn assigned_slots(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| &s.slots)
            .map(|r| usize::from(r[1]) - usize::from(r[0]) + 1)
            .sum()
    }

    /// The shard `id` belongs to, and whether it is that shard's primary.
    pub fn find_node(&self, id: &str) -> Option<(usize, bool)> {
        self.shards.iter().enumerate().find_map(|(i, s)| {
            if s.primary.id == id {
                Some((i, true))
            } else {
                s.replicas.iter().any(|r| r.id == id).then_some((i, false))
            }
        })
    }

    /// The shard named `name`.
    pub fn shard(&self, name: &str) -> Option<&ShardMap> {
        self.shards.iter().find(|s| s.name == name)
    }

    /// Makes the node at `endpoint` (`host:port`; or named `id`) shard
    /// `shard`'s primary, as after a failover: a listed replica trades
    /// places with the primary, an unlisted node becomes the primary and the
    /// old one a replica. True if the map changed.
    ///
    /// ```
    /// use ringkv_examples::cluster::SlotMap;
    /// let mut map = SlotMap::from_toml(r#"
    ///     [[shards]]
    ///     name = "a"
    ///     slots = [[0, 16383]]
    ///     primary = { id = "a1", host = "127.0.0.1", port = 7000 }
    ///     replicas = [{ id = "a2", host = "127.0.0.1", port = 7100 }]
    /// "#)?;
    /// assert!(map.set_primary("a", "a2", "127.0.0.1:7100"));
    /// assert_eq!(map.shards[0].primary.id, "a2");
    /// assert_eq!(map.shards[0].replicas[0].id, "a1");
    /// assert!(!map.set_primary("a", "a2", "127.0.0.1:7100"), "already");
    /// assert!(map.set_primary("a", "a3", "127.0.0.1:7200"));
    /// assert_eq!(map.shards[0].primary.endpoint(), "127.0.0.1:7200");
    /// assert_eq!(map.shards[0].replicas.len(), 2);
    /// # Ok::<(), ringkv_examples::cluster::MapError>(())
    /// ```
    pub fn set_primary(&mut self, shard: &str, id: &str, endpoint: &str) -> bool {
        let Some(s) = self.shards.iter_mut().find(|s| s.name == shard) else {
            return false;
        };
        if s.primary.endpoint() == endpoint {
            return false;
        }
        let new = match s.replicas.iter().position(|r| r.endpoint() == endpoint || r.id == id) {
            Some(i) => s.replicas.remove(i),
            None => {
                let Some((host, port)) = endpoint.rsplit_once(':') else {
                    return false;
                };
                let Ok(port) = port.parse() else {
                    return false;
                };
                NodeAddr {
                    id: id.to_string(),
                    host: host.to_string(),
                    port,
                }
            }
        };
        let old = std::mem::replace(&mut s.primary, new);
        if old.id != s.primary.id {
            s.replicas.insert(0, old);
        }
        true
    }
}

fn check_range([start, end]: SlotRange) -> Result<(), MapError> {
    if start > end || usize::from(end) >= SLOT_COUNT {
        return Err(MapError::BadRange { start, end });
    }
    Ok(())
}
