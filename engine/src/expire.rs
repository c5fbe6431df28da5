//! Expiry: lazy deletion happens in [`Writer::live`](crate::engine) and on
//! reads; this module holds the active side, a bounded pass over each shard's
//! expiry index (so expired keys go promptly, without sampling luck), and the
//! named background thread that runs it together with background rehashing.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use crossbeam::channel::{self, RecvTimeoutError, Sender};

use crate::engine::{Engine, Inner};
use crate::error::{Error, Result};
use crate::keyspace::Locked;
use crate::mutation::{DeleteReason, Mutation};

/// The background thread; dropping this stops it.
pub(crate) struct Background {
    _stop: Sender<()>,
}

impl Background {
    pub(crate) fn start(inner: &Arc<Inner>) -> Result<Background> {
        let (stop, stopped) = channel::bounded::<()>(0);
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let interval = Duration::from_millis(inner.config.active_expire_interval_ms);
        std::thread::Builder::new()
            .name("ringkv-expire".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let Some(inner) = weak.upgrade() else { break };
                    let engine = Engine { inner };
                    engine.active_expire_cycle();
                    engine.background_rehash();
                    engine.check_save_rules();
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the background thread: {e}")))?;
        Ok(Background { _stop: stop })
    }
}

impl Engine {
    /// One active-expiry pass: in every shard, deletes keys whose expiry has
    /// passed, nearest first, at most `active_expire_keys_per_shard` per shard
    /// (each a logged `Delete { reason: Expired }`). Returns how many were
    /// deleted. The background thread calls this every
    /// `active_expire_interval_ms`; tests with a [`ManualClock`](crate::ManualClock)
    /// call it directly.
    pub fn active_expire_cycle(&self) -> usize {
        let inner = &self.inner;
        if inner.replica.is_follower() {
            // A follower's keys expire through its primary's logged deletions.
            return 0;
        }
        let now = inner.clock.now_ms();
        let budget = inner.config.active_expire_keys_per_shard;
        let mut total = 0;
        for s in 0..inner.shards.len() {
            let due = matches!(inner.shards[s].read().next_expiry(), Some((t, _)) if t <= now);
            if !due {
                continue;
            }
            let locked = Locked::One(s, inner.shards[s].write());
            let result = inner.run(locked, false, |w| {
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

    /// Moves up to `background_rehash_buckets` buckets in every shard that
    /// is resizing (in steps of 64, releasing the lock between steps), so
    /// resizes finish even without writes; then frees bucket arrays retired
    /// by finished resizes, outside the shard locks.
    pub fn background_rehash(&self) {
        const STEP: usize = 64;
        let budget = self.inner.config.background_rehash_buckets;
        for shard in self.inner.shards.iter() {
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
}
