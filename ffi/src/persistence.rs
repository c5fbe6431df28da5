//! Persistence, statistics and read-after-write: SAVE, BGSAVE, log sync,
//! stats as JSON, the calling thread's last write offset and the bounded
//! wait for an applied offset.

use std::time::Duration;

use engine::Role;

use crate::args;
use crate::boundary::guard;
use crate::buf::ringkv_buf;
use crate::engine_api::{engine, ringkv_engine};
use crate::status::{ringkv_status, Fail};

/// The engine's statistics as a JSON object (keys, memory, ring log,
/// snapshots, command counters; the fields of the Rust `Stats`), not
/// NUL-terminated. Free with `ringkv_buf_free`.
#[no_mangle]
pub extern "C" fn ringkv_stats_json(e: *const ringkv_engine, out: *mut ringkv_buf) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let json = serde_json::to_vec(&engine(e)?.stats()).map_err(|e| Fail {
            status: ringkv_status::RINGKV_INTERNAL,
            message: format!("stats do not serialize: {e}"),
        })?;
        out.set(ringkv_buf::copy(&json));
        Ok(())
    })
}

/// SAVE: writes a snapshot into the data directory and returns when it is
/// durable. An in-memory engine has nowhere to save (`RINGKV_CONFIG`);
/// another snapshot running is `RINGKV_BUSY`.
#[no_mangle]
pub extern "C" fn ringkv_save(e: *const ringkv_engine) -> ringkv_status {
    guard(|| {
        engine(e)?.save()?;
        Ok(())
    })
}

/// BGSAVE: starts a snapshot on a background thread; `*started` is false
/// when one is already running.
#[no_mangle]
pub extern "C" fn ringkv_bgsave(e: *const ringkv_engine, started: *mut bool) -> ringkv_status {
    guard(|| {
        let out = args::out(started, "started")?;
        out.set(engine(e)?.bgsave()?);
        Ok(())
    })
}

/// Flushes the ring log to disk (fsync) whatever the durability setting.
#[no_mangle]
pub extern "C" fn ringkv_sync(e: *const ringkv_engine) -> ringkv_status {
    guard(|| {
        engine(e)?.sync()?;
        Ok(())
    })
}

/// The log offset just after the calling thread's last write to this
/// engine; `*has` is false (and `*offset` 0) before any write or without a
/// log. Give it to a follower's `ringkv_wait_applied` for read-after-write,
/// or to `ringkv_primary_wait_for_followers`.
#[no_mangle]
pub extern "C" fn ringkv_last_write_offset(e: *const ringkv_engine, offset: *mut u64, has: *mut bool) -> ringkv_status {
    guard(|| {
        let offset = args::out(offset, "offset")?;
        let has = args::out(has, "has")?;
        let last = engine(e)?.last_write_offset();
        offset.set(last.unwrap_or(0));
        has.set(last.is_some());
        Ok(())
    })
}

/// The offset below which every record is applied to the keyspace.
#[no_mangle]
pub extern "C" fn ringkv_applied_offset(e: *const ringkv_engine, offset: *mut u64) -> ringkv_status {
    guard(|| {
        let out = args::out(offset, "offset")?;
        out.set(engine(e)?.applied_offset());
        Ok(())
    })
}

/// Waits at most `timeout_ms` until the engine (a follower, typically) has
/// applied `offset`; `*reached` says whether it has. Read-after-write:
/// write on the primary, take `ringkv_last_write_offset`, wait here on the
/// follower, then read.
#[no_mangle]
pub extern "C" fn ringkv_wait_applied(
    e: *const ringkv_engine,
    offset: u64,
    timeout_ms: u64,
    reached: *mut bool,
) -> ringkv_status {
    guard(|| {
        let out = args::out(reached, "reached")?;
        out.set(engine(e)?.wait_applied(offset, Duration::from_millis(timeout_ms)));
        Ok(())
    })
}

/// The engine's role: 0 primary, 1 follower.
#[no_mangle]
pub extern "C" fn ringkv_role(e: *const ringkv_engine, out: *mut i32) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        out.set(match engine(e)?.role() {
            Role::Primary => 0,
            _ => 1,
        });
        Ok(())
    })
}
