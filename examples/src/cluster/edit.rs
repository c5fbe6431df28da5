//! Changes to a slot map, as the `ringkv-cluster` tool makes them: a new
//! map with the slots split evenly, a shard added, a slot range assigned
//! to another shard. Each returns a new, validated map with the epoch
//! raised; none talks to a node.

use ringkv::SLOT_COUNT;

use super::map::{MapError, NodeAddr, ShardMap, SlotMap, SlotRange};

impl SlotMap {
    /// A map of one shard per primary (`shard-0`, `shard-1`, ...), the
    /// 16,384 slots split into contiguous, nearly equal ranges.
    ///
    /// ```
    /// use ringkv_examples::cluster::{NodeAddr, SlotMap};
    /// let node = |id: &str, port| NodeAddr { id: id.into(), host: "127.0.0.1".into(), port };
    /// let map = SlotMap::even(vec![node("a", 7000), node("b", 7001), node("c", 7002)])?;
    /// assert_eq!(map.shards[0].slots, [[0, 5460]]);
    /// assert_eq!(map.shards[2].slots, [[10922, 16383]]);
    /// # Ok::<(), ringkv_examples::cluster::MapError>(())
    /// ```
    pub fn even(primaries: Vec<NodeAddr>) -> Result<SlotMap, MapError> {
        let n = primaries.len().max(1);
        let shards = primaries
            .into_iter()
            .enumerate()
            .map(|(i, primary)| {
                let start = i * SLOT_COUNT / n;
                let end = (i + 1) * SLOT_COUNT / n - 1;
                ShardMap {
                    name: format!("shard-{i}"),
                    slots: vec![[start as u16, end as u16]],
                    primary,
                    replicas: Vec::new(),
                }
            })
            .collect();
        let map = SlotMap {
            epoch: 1,
            shards,
            migrations: Vec::new(),
        };
        map.validate()?;
        Ok(map)
    }

    /// This map with `shard` added (it may own no slots yet).
    pub fn with_shard(&self, shard: ShardMap) -> Result<SlotMap, MapError> {
        let mut map = self.clone();
        map.shards.push(shard);
        map.epoch += 1;
        map.validate()?;
        Ok(map)
    }

    /// This map with every slot of `range` owned by shard `to` (taken from
    /// whichever shards owned them; unowned slots are assigned too), and
    /// any migration of those slots dropped.
    pub fn with_slots_assigned(&self, range: SlotRange, to: &str) -> Result<SlotMap, MapError> {
        let [start, end] = range;
        if start > end || usize::from(end) >= SLOT_COUNT {
            return Err(MapError::BadRange { start, end });
        }
        if self.shard(to).is_none() {
            return Err(MapError::UnknownShard(to.to_string()));
        }
        let mut map = self.clone();
        for shard in &mut map.shards {
            let mut kept = Vec::new();
            for &[a, b] in &shard.slots {
                if b < start || a > end {
                    kept.push([a, b]);
                    continue;
                }
                if a < start {
                    kept.push([a, start - 1]);
                }
                if b > end {
                    kept.push([end + 1, b]);
                }
            }
            if shard.name == to {
                kept.push(range);
            }
            kept.sort_unstable();
            shard.slots = merge_adjacent(kept);
        }
        map.migrations.retain(|m| m.slots[1] < start || m.slots[0] > end);
        map.epoch += 1;
        map.validate()?;
        Ok(map)
    }
}

/// Joins sorted ranges that touch (`[0, 9]` and `[10, 20]` → `[0, 20]`).
fn merge_adjacent(ranges: Vec<SlotRange>) -> Vec<SlotRange> {
    let mut out: Vec<SlotRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if u32::from(last[1]) + 1 == u32::from(r[0]) => last[1] = r[1],
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, port: u16) -> NodeAddr {
        NodeAddr {
            id: id.into(),
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn assigning_splits_and_merges_ranges() {
        let map = SlotMap::even(vec![node("a", 1), node("b", 2)]).expect("map");
        assert_eq!(map.shards[0].slots, [[0, 8191]]);
        let moved = map.with_slots_assigned([100, 200], "shard-1").expect("assign");
        assert_eq!(moved.shards[0].slots, [[0, 99], [201, 8191]]);
        assert_eq!(moved.shards[1].slots, [[100, 200], [8192, 16383]]);
        assert_eq!(moved.epoch, map.epoch + 1);
        assert_eq!(moved.assigned_slots(), SLOT_COUNT);
        // Moving the tail of shard a next to b's range merges them.
        let moved = map.with_slots_assigned([8000, 8191], "shard-1").expect("assign");
        assert_eq!(moved.shards[1].slots, [[8000, 16383]]);
        let back = moved.with_slots_assigned([8000, 8191], "shard-0").expect("assign");
        assert_eq!(back.shards, map.shards);
        assert!(map.with_slots_assigned([5, 4], "shard-0").is_err());
        assert!(map.with_slots_assigned([0, 1], "nobody").is_err());
    }

    #[test]
    fn added_shards_start_empty_and_must_be_unique() {
        let map = SlotMap::even(vec![node("a", 1)]).expect("map");
        let empty = ShardMap {
            name: "new".into(),
            slots: vec![],
            primary: node("n", 3),
            replicas: vec![],
        };
        let grown = map.with_shard(empty.clone()).expect("add");
        assert_eq!(grown.shards.len(), 2);
        assert!(matches!(grown.with_shard(empty), Err(MapError::Duplicate(_))));
    }
}
