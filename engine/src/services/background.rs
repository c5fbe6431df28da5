//! The engine's background thread (`ringkv-expire`): every
//! `active_expire_interval_ms` it runs an active expiry cycle, a bounded
//! rehash step per shard, the growth preparation of growing shards, and
//! the `save` rules. It holds only a weak
//! reference, so it stops when the engine is dropped (or at once, when its
//! [`Background`] handle is).

use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam::channel::{self, RecvTimeoutError, Sender};

use super::{expiry, snapshot};
use crate::core::Inner;
use crate::error::{Error, Result};

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
                    expiry::active_expire_cycle(&inner);
                    expiry::background_rehash(&inner);
                    expiry::prepare_growth(&inner);
                    snapshot::check_save_rules(&inner);
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the background thread: {e}")))?;
        Ok(Background { _stop: stop })
    }
}
