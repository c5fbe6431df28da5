//! The engine's background thread (`ringkv-expire`): every
//! `active_expire_interval_ms` it runs an active expiry cycle, a bounded
//! rehash step per shard, the growth preparation of growing shards, and
//! the `save` rules. It holds only a weak
//! reference between cycles, and the last [`crate::Engine`] handle owns its
//! [`Background`] handle: dropping that stops the thread and waits for the
//! cycle in progress, so the engine's state (and its data directory's
//! lock) is gone when the last handle's drop returns, not a cycle later.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam::channel::{self, RecvTimeoutError, Sender};

use super::{expiry, snapshot};
use crate::core::Inner;
use crate::error::{Error, Result};

/// The background thread; dropping this stops it and waits for it.
pub(crate) struct Background {
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        // Disconnects the channel: the loop ends after the cycle in
        // progress (bounded work), dropping its strong reference.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // Never join from the thread itself (it cannot own its handle
            // today, but a join there would never return).
            if thread.thread().id() != std::thread::current().id() && thread.join().is_err() {
                tracing::error!("the background thread panicked");
            }
        }
    }
}

impl Background {
    pub(crate) fn start(inner: &Arc<Inner>) -> Result<Background> {
        let (stop, stopped) = channel::bounded::<()>(0);
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let interval = Duration::from_millis(inner.config.active_expire_interval_ms);
        let thread = std::thread::Builder::new()
            .name("ringkv-expire".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let Some(inner) = weak.upgrade() else { break };
                    expiry::active_expire_cycle(&inner);
                    expiry::background_rehash(&inner);
                    expiry::prepare_growth(&inner);
                    snapshot::check_save_rules(&inner);
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the background thread: {e}")))?;
        Ok(Background {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}
