//! Cluster slot queries (CLUSTER COUNTKEYSINSLOT, CLUSTER GETKEYSINSLOT, and
//! a slot's keys page by page): argument checks over the keyspace's slot
//! index (`keyspace/slots.rs`), which exists only with `Config::cluster_slots`.
//!
//! Like DBSIZE (and Redis), a key that is logically expired but not yet
//! removed is still counted and listed.

use crate::blob::Blob;
use crate::core::Inner;
use crate::error::{Error, Result};
use crate::slot::SLOT_COUNT;

const INDEX_OFF: Error =
    Error::InvalidArgument("keys are not kept by slot: enable cluster_slots in the engine's config");

fn check_slot(slot: u16) -> Result<()> {
    if slot as usize >= SLOT_COUNT {
        return Err(Error::InvalidArgument("Invalid slot"));
    }
    Ok(())
}

pub(crate) fn count_keys_in_slot(inner: &Inner, slot: u16) -> Result<u64> {
    check_slot(slot)?;
    inner.keyspace.count_keys_in_slot(slot).ok_or(INDEX_OFF)
}

pub(crate) fn keys_in_slot(inner: &Inner, slot: u16, after: Option<&[u8]>, count: usize) -> Result<Vec<Blob>> {
    check_slot(slot)?;
    inner.keyspace.keys_in_slot(slot, after, count).ok_or(INDEX_OFF)
}
