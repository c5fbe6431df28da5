//! Where one request goes: the decision of Redis' `getNodeByQuery`
//! (`cluster.c`) over a [`Routing`] table, as a plain function of the
//! request's keys and the client's flags, tested without a network.
//!
//! In order: keys of different slots are CROSSSLOT; a slot nobody owns is
//! CLUSTERDOWN; a slot this shard owns is served, except that a slot being
//! migrated away sends a request for a key it no longer holds to the target
//! with ASK, and that a replica serves only reads from READONLY clients
//! (everything else is MOVED to its primary); a slot being imported is
//! served to a client that sent ASKING (TRYAGAIN if a multi-key request
//! finds only some of its keys); any other slot is MOVED to its owner.

use ringkv::{key_slot, SLOT_COUNT};

use super::map::{MapError, SlotMap};

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node serves it.
    Local,
    /// `-MOVED slot host:port`: the slot lives elsewhere.
    Moved {
        /// The slot.
        slot: u16,
        /// The owner's primary (or this replica's primary).
        endpoint: String,
    },
    /// `-ASK slot host:port`: the slot is moving; try this key there once.
    Ask {
        /// The slot.
        slot: u16,
        /// The target shard's primary.
        endpoint: String,
    },
    /// Keys of several slots in one request.
    CrossSlot,
    /// A multi-key request during a slot's migration found only some keys.
    TryAgain,
    /// No shard owns the slot.
    Down,
}

impl Route {
    /// The error reply (without `-`), Redis' exact text; `None` for `Local`.
    pub fn error(&self) -> Option<String> {
        Some(match self {
            Route::Local => return None,
            Route::Moved { slot, endpoint } => format!("MOVED {slot} {endpoint}"),
            Route::Ask { slot, endpoint } => format!("ASK {slot} {endpoint}"),
            Route::CrossSlot => "CROSSSLOT Keys in request don't hash to the same slot".into(),
            Route::TryAgain => "TRYAGAIN Multiple keys request during rehashing of slot".into(),
            Route::Down => "CLUSTERDOWN Hash slot not served".into(),
        })
    }
}

/// What the client and command bring to the decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request {
    /// The command may write.
    pub write: bool,
    /// The client sent ASKING just before.
    pub asking: bool,
    /// The client sent READONLY (reads from replicas).
    pub readonly: bool,
}

/// One node's view of a [`SlotMap`]: slot → shard, and its own place.
#[derive(Debug, Clone)]
pub struct Routing {
    map: SlotMap,
    owner: Vec<Option<usize>>,
    /// Target shard of each slot migrating away from this node's shard.
    migrating_to: Vec<Option<usize>>,
    /// Slots migrating into this node's shard.
    importing: Vec<bool>,
    my_shard: usize,
    my_id: String,
}

impl Routing {
    /// The routing of node `my_id` in `map` (validated here).
    pub fn new(map: SlotMap, my_id: &str) -> Result<Routing, MapError> {
        map.validate()?;
        let (my_shard, _) = map
            .find_node(my_id)
            .ok_or_else(|| MapError::UnknownNode(my_id.to_string()))?;
        let owner = map.owners()?;
        let mut migrating_to = vec![None; SLOT_COUNT];
        let mut importing = vec![false; SLOT_COUNT];
        let index = |name: &str| map.shards.iter().position(|s| s.name == name);
        for m in &map.migrations {
            let (Some(from), Some(to)) = (index(&m.from), index(&m.to)) else {
                continue; // validate() refused this already
            };
            for slot in m.slots[0]..=m.slots[1] {
                if from == my_shard {
                    migrating_to[slot as usize] = Some(to);
                }
                if to == my_shard {
                    importing[slot as usize] = true;
                }
            }
        }
        Ok(Routing {
            map,
            owner,
            migrating_to,
            importing,
            my_shard,
            my_id: my_id.to_string(),
        })
    }

    /// The map this routing was built from.
    pub fn map(&self) -> &SlotMap {
        &self.map
    }

    /// This node's id.
    pub fn my_id(&self) -> &str {
        &self.my_id
    }

    /// Index (in the map) of the shard owning `slot`.
    pub fn owner_of(&self, slot: u16) -> Option<usize> {
        self.owner.get(usize::from(slot)).copied().flatten()
    }

    /// Index (in the map) of this node's shard.
    pub fn my_shard(&self) -> usize {
        self.my_shard
    }

    /// The one slot of `keys`, `Err(CrossSlot)` if they differ, `Ok(None)`
    /// without keys.
    pub fn common_slot<K: AsRef<[u8]>>(keys: impl IntoIterator<Item = K>) -> Result<Option<u16>, Route> {
        let mut slot = None;
        for k in keys {
            let s = key_slot(k.as_ref());
            match slot {
                None => slot = Some(s),
                Some(prev) if prev != s => return Err(Route::CrossSlot),
                Some(_) => {}
            }
        }
        Ok(slot)
    }

    /// Decides a request for `keys` (all of them, several commands' for
    /// EXEC) by a node whose engine is a replica when `replica`;
    /// `present(key)` says whether this node holds a key (asked only for a
    /// slot being migrated).
    pub fn route<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        req: Request,
        replica: bool,
        present: impl Fn(&[u8]) -> bool,
    ) -> Route {
        let slot = match Self::common_slot(keys) {
            Err(cross) => return cross,
            Ok(None) => return Route::Local,
            Ok(Some(s)) => s,
        };
        let Some(owner) = self.owner[slot as usize] else {
            return Route::Down;
        };
        let missing = || keys.iter().filter(|k| !present(k.as_ref())).count();
        if owner == self.my_shard {
            if replica {
                if req.readonly && !req.write {
                    return Route::Local;
                }
                return self.moved(slot, owner);
            }
            if let Some(to) = self.migrating_to[slot as usize] {
                let missing = missing();
                // As Redis' getNodeByQuery: some keys here and some gone
                // is TRYAGAIN (the request would see a half-moved slot);
                // none here is ASK.
                if missing > 0 && missing < keys.len() {
                    return Route::TryAgain;
                }
                if missing > 0 {
                    return Route::Ask {
                        slot,
                        endpoint: self.map.shards[to].primary.endpoint(),
                    };
                }
            }
            return Route::Local;
        }
        if self.importing[slot as usize] && req.asking && !replica {
            // Redis' `multiple_keys`: two different keys (one key named
            // twice, as SET then GET of it in one EXEC, is not).
            let multiple = keys.iter().any(|k| k.as_ref() != keys[0].as_ref());
            if multiple && missing() > 0 {
                return Route::TryAgain;
            }
            return Route::Local;
        }
        self.moved(slot, owner)
    }

    fn moved(&self, slot: u16, shard: usize) -> Route {
        Route::Moved {
            slot,
            endpoint: self.map.shards[shard].primary.endpoint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::map::{Migration, NodeAddr, ShardMap};

    fn node(id: &str, port: u16) -> NodeAddr {
        NodeAddr {
            id: id.into(),
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn two_shards() -> SlotMap {
        SlotMap {
            epoch: 1,
            shards: vec![
                ShardMap {
                    name: "a".into(),
                    slots: vec![[0, 8191]],
                    primary: node("a1", 7000),
                    replicas: vec![node("a2", 7100)],
                },
                ShardMap {
                    name: "b".into(),
                    slots: vec![[8192, 16383]],
                    primary: node("b1", 7001),
                    replicas: vec![],
                },
            ],
            migrations: vec![],
        }
    }

    const W: Request = Request {
        write: true,
        asking: false,
        readonly: false,
    };
    const R: Request = Request {
        write: false,
        asking: false,
        readonly: false,
    };

    #[test]
    fn keys_go_to_their_owner() {
        let r = Routing::new(two_shards(), "a1").expect("routing");
        // "foo" is slot 12182 (shard b), "bar" 5061 (shard a).
        assert_eq!(r.route(&["bar"], W, false, |_| true), Route::Local);
        assert_eq!(
            r.route(&["foo"], W, false, |_| true).error().expect("an error"),
            "MOVED 12182 127.0.0.1:7001"
        );
        assert_eq!(r.route(&["foo", "bar"], R, false, |_| true), Route::CrossSlot);
        assert_eq!(r.route(&["{bar}1", "{bar}2"], R, false, |_| true), Route::Local);
        assert_eq!(r.route::<&str>(&[], W, false, |_| true), Route::Local);
    }

    #[test]
    fn replicas_serve_reads_only_after_readonly() {
        let r = Routing::new(two_shards(), "a2").expect("routing");
        let moved = Route::Moved {
            slot: 5061,
            endpoint: "127.0.0.1:7000".into(),
        };
        assert_eq!(r.route(&["bar"], R, true, |_| true), moved);
        let ro = Request { readonly: true, ..R };
        assert_eq!(r.route(&["bar"], ro, true, |_| true), Route::Local);
        let ro_write = Request { readonly: true, ..W };
        assert_eq!(r.route(&["bar"], ro_write, true, |_| true), moved);
    }

    #[test]
    fn migrating_slots_ask_for_missing_keys() {
        let mut map = two_shards();
        map.migrations.push(Migration {
            slots: [5061, 5061],
            from: "a".into(),
            to: "b".into(),
        });
        let source = Routing::new(map.clone(), "a1").expect("routing");
        assert_eq!(source.route(&["bar"], W, false, |_| true), Route::Local);
        assert_eq!(
            source.route(&["bar"], W, false, |_| false).error().expect("an error"),
            "ASK 5061 127.0.0.1:7001"
        );
        let target = Routing::new(map, "b1").expect("routing");
        assert_eq!(
            target.route(&["bar"], W, false, |_| false),
            Route::Moved {
                slot: 5061,
                endpoint: "127.0.0.1:7000".into()
            }
        );
        // Some keys still here and some moved: TRYAGAIN, as Redis.
        assert_eq!(
            source.route(&["{bar}x", "bar"], W, false, |k| k == b"bar"),
            Route::TryAgain
        );
        assert_eq!(
            source
                .route(&["{bar}x", "bar"], W, false, |_| false)
                .error()
                .expect("an error"),
            "ASK 5061 127.0.0.1:7001"
        );
        let asking = Request { asking: true, ..W };
        assert_eq!(target.route(&["bar"], asking, false, |_| false), Route::Local);
        assert_eq!(
            target.route(&["{bar}x", "bar"], asking, false, |k| k == b"bar"),
            Route::TryAgain
        );
        // One key named twice is not "multiple keys".
        assert_eq!(target.route(&["bar", "bar"], asking, false, |_| false), Route::Local);
    }

    #[test]
    fn migrations_to_themselves_or_overlapping_are_refused() {
        let mut map = two_shards();
        let to_self = Migration {
            slots: [10, 20],
            from: "a".into(),
            to: "a".into(),
        };
        map.migrations.push(to_self);
        assert!(matches!(map.validate(), Err(MapError::BadMigration(m)) if m.contains("itself")));
        map.migrations[0].to = "b".into();
        assert!(map.validate().is_ok());
        map.migrations.push(Migration {
            slots: [20, 30],
            from: "a".into(),
            to: "b".into(),
        });
        assert!(matches!(map.validate(), Err(MapError::BadMigration(m)) if m.contains("slot 20")));
    }

    #[test]
    fn unassigned_slots_are_down_and_bad_maps_refused() {
        let mut map = two_shards();
        map.shards[1].slots = vec![[8192, 10000]];
        let r = Routing::new(map.clone(), "a1").expect("routing");
        assert_eq!(r.route(&["foo"], R, false, |_| true), Route::Down);
        map.shards[1].slots = vec![[8000, 10000]];
        assert!(matches!(
            Routing::new(map.clone(), "a1"),
            Err(MapError::Overlap { slot: 8000, .. })
        ));
        map.shards[1].slots = vec![[9000, 16384]];
        assert!(matches!(map.validate(), Err(MapError::BadRange { .. })));
        assert!(matches!(
            Routing::new(two_shards(), "nobody"),
            Err(MapError::UnknownNode(_))
        ));
    }
}
