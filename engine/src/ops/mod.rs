//! L4 ops: each command's argument checks and its *plan* (read the state
//! under the shard lock, decide the mutation), written once and used by
//! both the single command and [`WriteBatch`](crate::WriteBatch). Adding a
//! command touches one file here, one arm in `batch.rs` if it may be
//! batched, and one method in the facade (`engine.rs`).

pub(crate) mod batch;
pub(crate) mod hashes;
pub(crate) mod import;
pub(crate) mod keys;
pub mod scan;
pub(crate) mod slots;
pub(crate) mod strings;

use crate::core::Inner;
use crate::error::{Error, Result};

/// Keys and hash fields are at most `max_key_len` bytes.
pub(crate) fn check_key(inner: &Inner, key: &[u8]) -> Result<()> {
    if key.len() > inner.config.max_key_len {
        return Err(Error::KeyTooLarge {
            len: key.len(),
            max: inner.config.max_key_len,
        });
    }
    Ok(())
}

/// Values are at most `max_value_len` bytes.
pub(crate) fn check_value(inner: &Inner, len: usize) -> Result<()> {
    if len > inner.config.max_value_len {
        return Err(Error::ValueTooLarge {
            len,
            max: inner.config.max_value_len,
        });
    }
    Ok(())
}
