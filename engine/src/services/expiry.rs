//! Active expiry and background rehashing. Lazy deletion happens in the
//! core (`Writer::live` and the read path); this is the active side, a
//! bounded pass over each shard's expiry index (so expired keys go
//! promptly, without sampling luck), and the bounded rehash steps and the
//! growth preparation (memory a growing table will take, faulted in with
//! no lock held) the background thread (`background.rs`) runs beside it.

use bytes::Bytes;

use crate::core::Inner;
use crate::keyspace::table::Prepared;
use crate::mutation::{DeleteReason, Mutation};

pub(crate) fn active_expire_cycle(inner: &Inner) -> usize {
    if !inner.replica.logs_own_deletions() {
        // A follower's keys expire through its primary's logged deletions
        // (and a fenced primary's through its successor's).
        return 0;
    }
    if inner.replica.expiry_held() {
        // A slot migration's target: keys it imports expire when their
        // source's deletions arrive, never earlier by its own clock.
        return 0;
    }
    let now = inner.clock.now_ms();
    let budget = inner.config.active_expire_keys_per_shard;
    let mut total = 0;
    for s in 0..inner.keyspace.shard_count() {
        let due = matches!(inner.keyspace.shard(s).read().next_expiry(), Some((t, _)) if t <= now);
        if !due {
            continue;
        }
        let locked = inner.keyspace.lock_one(s);
        let result = inner.run_locked(locked, false, |w| {
            let mut n = 0;
            while n < budget {
                let shard = w.locked.shard(s);
                let Some((t, slot)) = shard.next_expiry() else {
                    break;
                };
                if t > now {
                    break;
                }
                let key = Bytes::copy_from_slice(&shard.entry(slot).key);
                w.commit(Mutation::Delete {
                    keys: vec![key],
                    reason: DeleteReason::Expired,
                })?;
                n += 1;
            }
            Ok(n)
        });
        match result {
            Ok(n) => total += n,
            Err(e) => {
                tracing::warn!(error = %e, shard = s, "active expiry stopped: the deletion could not be logged");
                break;
            }
        }
    }
    if total > 0 {
        tracing::trace!(expired = total, "active expiry cycle");
    }
    total
}

pub(crate) fn background_rehash(inner: &Inner) {
    const STEP: usize = 64;
    let budget = inner.config.background_rehash_buckets;
    for shard in inner.keyspace.iter() {
        let mut moved = 0;
        while moved < budget && shard.read().table.is_rehashing() {
            let mut guard = shard.write();
            let more = guard.table.rehash_step(STEP);
            let garbage = guard.take_retired();
            drop(guard);
            drop(garbage);
            moved += STEP;
            if !more {
                break;
            }
        }
        let garbage = shard.write().take_retired();
        drop(garbage);
    }
}

/// Prepares the memory each growing shard's table will take soon (full-size
/// slab chunks, its next bucket array) with no lock held, so that the
/// inserts do not pay its first-touch page faults (`keyspace/table.rs`).
pub(crate) fn prepare_growth(inner: &Inner) {
    for shard in inner.keyspace.iter() {
        let needs = shard.read().table.growth_needs();
        if needs.is_empty() {
            continue;
        }
        let prepared = Prepared::make(needs);
        let unused = {
            let mut guard = shard.write();
            let unused = guard.table.add_prepared(prepared);
            inner.memory.publish(&mut guard, false);
            unused
        };
        // Freed (if anything was not taken) with no lock held.
        drop(unused);
    }
}
