//! Moving slots between shards, the parts without IO: the set of slots a
//! migration moves ([`SlotSet`]), which of the source's mutations concern
//! them ([`filter_mutation`]), and the items of the stream the target pulls
//! from the source ([`PullItem`], one bulk string each in a
//! `CLUSTER MIGRATE-PULL` reply).
//!
//! The stream is the source's filtered snapshot of those slots (as
//! mutations: a string is a SET, a hash its HSETs then its expiry), then its
//! ring log from the snapshot's offset, filtered to them, with positions:
//! `Position(p)` says every record of the source's log before `p` that
//! concerns the slots has been sent. The hand-over waits for the target to
//! have applied up to a position past the source's last write to them
//! (`server/migrate_source.rs`).

use bytes::Bytes;
use ringkv::log::record::{decode_mutation, encode_mutation};
use ringkv::snapshot::format::Item;
use ringkv::{key_slot, Mutation, SLOT_COUNT};

use super::map::SlotRange;

/// Why a migration stream's item or argument is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrateError {
    /// An item of a pull reply does not decode.
    #[error("bad migration item: {0}")]
    BadItem(String),
    /// A slot range argument does not parse.
    #[error("{0:?} is not a slot range START-END or a slot (0-16383)")]
    BadRange(String),
    /// A mutation touches keys both inside and outside the moving slots
    /// (impossible in cluster mode, where such commands are CROSSSLOT).
    #[error("a mutation moves data across the migration's slots: {0}")]
    CrossSlot(String),
}

/// A set of slots, as a bitmap (2 KiB).
///
/// ```
/// use ringkv_examples::cluster::SlotSet;
/// let set = SlotSet::parse(&["0-99", "5000"])?;
/// assert!(set.contains(99) && set.contains(5000) && !set.contains(100));
/// let one = SlotSet::from_ranges(&[[ringkv::key_slot(b"user:1"); 2]])?;
/// assert!(one.contains_key(b"{user:1}session"), "a hashtag's slot");
/// # Ok::<(), ringkv_examples::cluster::MigrateError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SlotSet {
    bits: Box<[u64; SLOT_COUNT / 64]>,
}

impl std::fmt::Debug for SlotSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotSet({})", self)
    }
}

impl std::fmt::Display for SlotSet {
    /// The ranges, `0-99,5000`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.ranges().iter().map(|r| range_text(*r)).collect();
        write!(f, "{}", parts.join(","))
    }
}

/// `START-END`, or `SLOT` for a range of one.
pub fn range_text([a, b]: SlotRange) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

impl SlotSet {
    /// No slot.
    pub fn new() -> SlotSet {
        SlotSet {
            bits: Box::new([0; SLOT_COUNT / 64]),
        }
    }

    /// The slots of `ranges` (each within 0-16383 and not reversed).
    pub fn from_ranges(ranges: &[SlotRange]) -> Result<SlotSet, MigrateError> {
        let mut set = SlotSet::new();
        for &[a, b] in ranges {
            if a > b || usize::from(b) >= SLOT_COUNT {
                return Err(MigrateError::BadRange(format!("{a}-{b}")));
            }
            for slot in a..=b {
                set.bits[usize::from(slot) / 64] |= 1 << (slot % 64);
            }
        }
        Ok(set)
    }

    /// Parses `START-END` or `SLOT` arguments.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<SlotSet, MigrateError> {
        let ranges = args
            .iter()
            .map(|a| parse_range(a.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        SlotSet::from_ranges(&ranges)
    }

    /// Whether `slot` is in the set.
    #[inline]
    pub fn contains(&self, slot: u16) -> bool {
        usize::from(slot) < SLOT_COUNT && self.bits[usize::from(slot) / 64] & (1 << (slot % 64)) != 0
    }

    /// Whether `key`'s slot is in the set.
    #[inline]
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.contains(key_slot(key))
    }

    /// The set as sorted, disjoint, non-adjacent ranges.
    pub fn ranges(&self) -> Vec<SlotRange> {
        let mut out: Vec<SlotRange> = Vec::new();
        for slot in 0..SLOT_COUNT as u16 {
            if !self.contains(slot) {
                continue;
            }
            match out.last_mut() {
                Some(last) if last[1] + 1 == slot => last[1] = slot,
                _ => out.push([slot, slot]),
            }
        }
        out
    }

    /// The slots, in order.
    pub fn slots(&self) -> impl Iterator<Item = u16> + '_ {
        (0..SLOT_COUNT as u16).filter(|&s| self.contains(s))
    }

    /// No slot in the set.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    /// Any slot in both sets.
    pub fn overlaps(&self, other: &SlotSet) -> bool {
        self.bits.iter().zip(other.bits.iter()).any(|(a, b)| a & b != 0)
    }
}

impl Default for SlotSet {
    fn default() -> SlotSet {
        SlotSet::new()
    }
}

/// `START-END` or `SLOT`.
pub fn parse_range(s: &str) -> Result<SlotRange, MigrateError> {
    let bad = || MigrateError::BadRange(s.to_string());
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let range = [
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ];
    if range[0] > range[1] || usize::from(range[1]) >= SLOT_COUNT {
        return Err(bad());
    }
    Ok(range)
}

/// The part of a source's mutation that concerns `slots`, or `None`.
/// [`Mutation::Flush`] is kept whole (the target removes its keys of the
/// slots); a deletion of several keys keeps those of the slots; a batch
/// keeps its parts that concern them. A rename between a slot of the set
/// and one outside is [`MigrateError::CrossSlot`].
///
/// ```
/// use ringkv::{DeleteReason, Mutation};
/// use ringkv_examples::cluster::{filter_mutation, SlotSet};
/// let slots = SlotSet::from_ranges(&[[ringkv::key_slot(b"a"); 2]])?;
/// let del = Mutation::Delete { keys: vec!["a".into(), "b".into()], reason: DeleteReason::Expired };
/// let kept = filter_mutation(del, &slots)?;
/// assert_eq!(kept, Some(Mutation::Delete { keys: vec!["a".into()], reason: DeleteReason::Expired }));
/// # Ok::<(), ringkv_examples::cluster::MigrateError>(())
/// ```
pub fn filter_mutation(m: Mutation, slots: &SlotSet) -> Result<Option<Mutation>, MigrateError> {
    Ok(match m {
        Mutation::Set { ref key, .. }
        | Mutation::Append { ref key, .. }
        | Mutation::Expire { ref key, .. }
        | Mutation::HSet { ref key, .. }
        | Mutation::HDel { ref key, .. } => slots.contains_key(key).then_some(m),
        Mutation::Delete { keys, reason } => {
            let keys: Vec<Bytes> = keys.into_iter().filter(|k| slots.contains_key(k)).collect();
            (!keys.is_empty()).then_some(Mutation::Delete { keys, reason })
        }
        Mutation::Rename { from, to } => match (slots.contains_key(&from), slots.contains_key(&to)) {
            (true, true) => Some(Mutation::Rename { from, to }),
            (false, false) => None,
            _ => {
                return Err(MigrateError::CrossSlot(format!(
                    "RENAME {} {}",
                    String::from_utf8_lossy(&from),
                    String::from_utf8_lossy(&to)
                )))
            }
        },
        Mutation::Flush => Some(Mutation::Flush),
        Mutation::Batch(parts) => {
            let mut kept = Vec::new();
            for part in parts {
                if let Some(p) = filter_mutation(part, slots)? {
                    kept.push(p);
                }
            }
            match kept.len() {
                0 => None,
                1 => kept.pop(),
                _ => Some(Mutation::Batch(kept)),
            }
        }
        // Mutation is non_exhaustive: a kind this code does not know
        // cannot be judged, so it is not moved silently.
        other => return Err(MigrateError::CrossSlot(format!("unknown mutation {other:?}"))),
    })
}

/// One snapshot item as the mutation that recreates it on the target: a
/// string is a SET (with its expiry), hash fields an HSET. A hash's head
/// only carries its expiry, which must come after its fields: it is
/// returned as `Err(expiry)` for the caller to send once the snapshot's
/// items are all sent (`None`: no expiry, nothing to send).
pub fn snapshot_item(item: Item) -> Result<Mutation, Option<(Bytes, u64)>> {
    match item {
        Item::String { key, value, expire_at } => Ok(Mutation::Set { key, value, expire_at }),
        Item::HashFields { key, fields } => Ok(Mutation::HSet { key, fields }),
        Item::HashHead { key, expire_at } => Err(expire_at.map(|at| (key, at))),
    }
}

/// One item of a `CLUSTER MIGRATE-PULL` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullItem {
    /// A mutation to apply; `offset` is where the source's log has it (0
    /// for the snapshot's items).
    Mutation {
        /// The record's offset in the source's log.
        offset: u64,
        /// What to apply.
        mutation: Mutation,
    },
    /// Everything of the source's log before this offset that concerns the
    /// slots has been sent.
    Position(u64),
    /// The source has handed the slots over (the slot map in its source
    /// says so, at this epoch): the target owns them now.
    Committed {
        /// The slot map's epoch after the change.
        epoch: u64,
    },
    /// The source gave up the stream (its log lapped it, an error).
    Failed(String),
}

const TAG_MUTATION: u8 = b'M';
const TAG_POSITION: u8 = b'P';
const TAG_COMMITTED: u8 = b'C';
const TAG_FAILED: u8 = b'E';

impl PullItem {
    /// The item's bytes: a tag, then a little-endian u64 (offset,
    /// position or epoch) and, for a mutation, its log record payload;
    /// for a failure, the text.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            PullItem::Mutation { offset, mutation } => {
                out.push(TAG_MUTATION);
                out.extend_from_slice(&offset.to_le_bytes());
                encode_mutation(mutation, &mut out);
            }
            PullItem::Position(p) => {
                out.push(TAG_POSITION);
                out.extend_from_slice(&p.to_le_bytes());
            }
            PullItem::Committed { epoch } => {
                out.push(TAG_COMMITTED);
                out.extend_from_slice(&epoch.to_le_bytes());
            }
            PullItem::Failed(why) => {
                out.push(TAG_FAILED);
                out.extend_from_slice(why.as_bytes());
            }
        }
        out
    }

    /// Decodes [`PullItem::encode`]'s bytes; anything else is
    /// [`MigrateError::BadItem`], never a panic.
    ///
    /// ```
    /// use ringkv_examples::cluster::PullItem;
    /// let item = PullItem::Position(4096);
    /// assert_eq!(PullItem::decode(item.encode().into())?, item);
    /// assert!(PullItem::decode(b"P12".to_vec().into()).is_err());
    /// # Ok::<(), ringkv_examples::cluster::MigrateError>(())
    /// ```
    pub fn decode(bytes: Bytes) -> Result<PullItem, MigrateError> {
        let bad = |why: &str| MigrateError::BadItem(why.to_string());
        let tag = *bytes.first().ok_or_else(|| bad("empty item"))?;
        if tag == TAG_FAILED {
            return Ok(PullItem::Failed(String::from_utf8_lossy(&bytes[1..]).into_owned()));
        }
        let word: [u8; 8] = bytes
            .get(1..9)
            .and_then(|w| w.try_into().ok())
            .ok_or_else(|| bad("item shorter than its tag and u64"))?;
        let value = u64::from_le_bytes(word);
        match tag {
            TAG_MUTATION => {
                let mutation = decode_mutation(bytes.slice(9..)).map_err(|e| bad(&e.to_string()))?;
                Ok(PullItem::Mutation {
                    offset: value,
                    mutation,
                })
            }
            TAG_POSITION | TAG_COMMITTED if bytes.len() != 9 => Err(bad("trailing bytes after the u64")),
            TAG_POSITION => Ok(PullItem::Position(value)),
            TAG_COMMITTED => Ok(PullItem::Committed { epoch: value }),
            other => Err(bad(&format!("unknown tag {other:#04x}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::DeleteReason;

    fn set(key: &str) -> Mutation {
        Mutation::Set {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: "v".into(),
            expire_at: Some(7),
        }
    }

    #[test]
    fn slot_sets_parse_and_print_their_ranges() {
        let set = SlotSet::parse(&["10-20", "21", "100", "16383"]).expect("parses");
        assert_eq!(set.ranges(), vec![[10, 21], [100, 100], [16383, 16383]]);
        assert_eq!(set.to_string(), "10-21,100,16383");
        assert_eq!(set.slots().count(), 14);
        for bad in ["20-10", "16384", "x", "1-", "-1"] {
            assert!(SlotSet::parse(&[bad]).is_err(), "{bad}");
        }
        assert!(SlotSet::new().is_empty());
        assert!(set.overlaps(&SlotSet::parse(&["21-30"]).expect("parses")));
        assert!(!set.overlaps(&SlotSet::parse(&["22-30"]).expect("parses")));
    }

    #[test]
    fn mutations_are_kept_only_for_the_moving_slots() {
        let a = "{a}x";
        let slots = SlotSet::from_ranges(&[[key_slot(a.as_bytes()); 2]]).expect("range");
        assert_eq!(filter_mutation(set(a), &slots), Ok(Some(set(a))));
        assert_eq!(filter_mutation(set("b"), &slots), Ok(None));
        let batch = Mutation::Batch(vec![set("b"), set(a), set("c")]);
        assert_eq!(
            filter_mutation(batch, &slots),
            Ok(Some(set(a))),
            "one part left: unwrapped"
        );
        let batch = Mutation::Batch(vec![set(a), set("{a}y")]);
        assert_eq!(filter_mutation(batch.clone(), &slots), Ok(Some(batch)));
        let del = Mutation::Delete {
            keys: vec!["b".into(), "{a}z".into()],
            reason: DeleteReason::User,
        };
        assert_eq!(
            filter_mutation(del, &slots),
            Ok(Some(Mutation::Delete {
                keys: vec!["{a}z".into()],
                reason: DeleteReason::User
            }))
        );
        let rename = |from: &str, to: &str| Mutation::Rename {
            from: Bytes::copy_from_slice(from.as_bytes()),
            to: Bytes::copy_from_slice(to.as_bytes()),
        };
        assert_eq!(filter_mutation(rename(a, "{a}2"), &slots), Ok(Some(rename(a, "{a}2"))));
        assert_eq!(filter_mutation(rename("b", "c"), &slots), Ok(None));
        assert!(matches!(
            filter_mutation(rename(a, "b"), &slots),
            Err(MigrateError::CrossSlot(_))
        ));
        assert_eq!(filter_mutation(Mutation::Flush, &slots), Ok(Some(Mutation::Flush)));
    }

    #[test]
    fn pull_items_round_trip_and_garbage_is_refused() {
        let items = [
            PullItem::Mutation {
                offset: 77,
                mutation: set("k"),
            },
            PullItem::Mutation {
                offset: 0,
                mutation: Mutation::HSet {
                    key: "h".into(),
                    fields: vec![("f".into(), "v".into())],
                },
            },
            PullItem::Position(u64::MAX),
            PullItem::Committed { epoch: 9 },
            PullItem::Failed("lapped".into()),
        ];
        for item in items {
            let bytes = item.encode();
            assert_eq!(PullItem::decode(bytes.clone().into()), Ok(item.clone()));
            // Every strict prefix of a fixed-size item is refused.
            if !matches!(item, PullItem::Failed(_)) {
                for cut in 0..bytes.len() {
                    assert!(
                        PullItem::decode(bytes[..cut].to_vec().into()).is_err(),
                        "{item:?} cut at {cut}"
                    );
                }
            }
        }
        assert!(PullItem::decode(b"Z12345678".to_vec().into()).is_err());
        assert!(PullItem::decode(b"P123456789".to_vec().into()).is_err());
    }

    #[test]
    fn snapshot_items_become_mutations_and_hash_expiries_wait() {
        let s = Item::String {
            key: "k".into(),
            value: "v".into(),
            expire_at: Some(7),
        };
        assert_eq!(snapshot_item(s), Ok(set("k")));
        let head = Item::HashHead {
            key: "h".into(),
            expire_at: Some(9),
        };
        assert_eq!(snapshot_item(head), Err(Some(("h".into(), 9))));
        let head = Item::HashHead {
            key: "h".into(),
            expire_at: None,
        };
        assert_eq!(snapshot_item(head), Err(None));
    }
}
