//! The engine handle: open, free, the library's version, and the enums the
//! calls take as integers.

use std::os::raw::c_char;

use engine::{Config, Engine};

use crate::args;
use crate::boundary::{guard, guard_void};
use crate::handle::{self, Kind};
use crate::status::{ringkv_status, Fail};

/// An engine: in memory, or on a data directory. Safe to use from several
/// threads at once (every call taking a `const ringkv_engine *`), but not
/// while `ringkv_engine_free` runs.
pub struct ringkv_engine {
    _private: [u8; 0],
}

/// Flags of `ringkv_engine_open`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum ringkv_open_flags {
    /// Nothing special.
    RINGKV_OPEN_DEFAULT = 0,
    /// An in-memory engine with an in-memory ring log: it can serve
    /// followers (`ringkv_primary_start`) and report write offsets.
    RINGKV_OPEN_ANONYMOUS_LOG = 1,
}

/// Key types: `ringkv_type`'s answer and the scan type filter.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum ringkv_key_type {
    /// The key does not exist (as a filter: any type).
    RINGKV_TYPE_NONE = 0,
    /// A string.
    RINGKV_TYPE_STRING = 1,
    /// A hash.
    RINGKV_TYPE_HASH = 2,
}

/// SET's condition.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum ringkv_set_condition {
    /// Write in any case.
    RINGKV_SET_ALWAYS = 0,
    /// Only if the key does not exist (NX).
    RINGKV_SET_NX = 1,
    /// Only if the key exists (XX).
    RINGKV_SET_XX = 2,
}

/// Expiry options of `ringkv_set_with` and `ringkv_getex`; the number goes
/// in the call's `expiry` argument.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum ringkv_expiry {
    /// SET: no expiry (a previous one is cleared). GETEX: leave it.
    RINGKV_EXPIRY_NONE = 0,
    /// SET: keep the key's expiry (KEEPTTL). GETEX: leave it.
    RINGKV_EXPIRY_KEEP = 1,
    /// GETEX only: remove the expiry (PERSIST).
    RINGKV_EXPIRY_PERSIST = 2,
    /// Expire after `expiry` seconds (EX).
    RINGKV_EXPIRY_SECONDS = 3,
    /// Expire after `expiry` milliseconds (PX).
    RINGKV_EXPIRY_MILLIS = 4,
    /// Expire at unix time `expiry` in seconds (EXAT).
    RINGKV_EXPIRY_AT_SECONDS = 5,
    /// Expire at unix time `expiry` in milliseconds (PXAT).
    RINGKV_EXPIRY_AT_MILLIS = 6,
}

/// Conditions of `ringkv_pexpire_at_if` (EXPIRE's NX, XX, GT, LT).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum ringkv_expire_condition {
    /// Always.
    RINGKV_EXPIRE_ALWAYS = 0,
    /// Only if the key has no expiry.
    RINGKV_EXPIRE_NX = 1,
    /// Only if the key has an expiry.
    RINGKV_EXPIRE_XX = 2,
    /// Only if the new expiry is later (no expiry counts as infinite).
    RINGKV_EXPIRE_GT = 3,
    /// Only if the new expiry is earlier (no expiry counts as infinite).
    RINGKV_EXPIRE_LT = 4,
}

/// The library's version, a static NUL-terminated string such as "0.1.0".
#[no_mangle]
pub extern "C" fn ringkv_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Opens an engine. `dir` NULL: in memory; else the data directory (made if
/// missing; recovered from its snapshot and ring log if not). `config_json`
/// NULL or empty: defaults; else the engine's `Config` as JSON, for example
/// `{"maxmemory": 1048576, "maxmemory_policy": "allkeys-lru",
/// "log": {"durability": "everysec"}}`. `flags`: `ringkv_open_flags`. Both
/// strings are NUL-terminated UTF-8.
///
/// ```c
/// ringkv_engine *e;
/// if (ringkv_engine_open("./data", NULL, RINGKV_OPEN_DEFAULT, &e) != RINGKV_OK) { ... }
/// ringkv_set(e, "k", 1, "v", 1);
/// ringkv_engine_free(e);
/// ```
#[no_mangle]
pub extern "C" fn ringkv_engine_open(
    dir: *const c_char,
    config_json: *const c_char,
    flags: u32,
    out: *mut *mut ringkv_engine,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let dir = args::c_str(dir, "dir")?;
        let config: Config = match args::c_str(config_json, "config_json")? {
            None | Some("") => Config::default(),
            Some(json) => serde_json::from_str(json).map_err(|e| Fail {
                status: ringkv_status::RINGKV_CONFIG,
                message: format!("invalid configuration JSON: {e}"),
            })?,
        };
        if flags > 1 {
            return Err(Fail::invalid(format!("unknown open flags {flags:#x}")));
        }
        let anonymous_log = flags & ringkv_open_flags::RINGKV_OPEN_ANONYMOUS_LOG as u32 != 0;
        let engine = match dir {
            Some(_) if anonymous_log => {
                return Err(Fail::invalid(
                    "RINGKV_OPEN_ANONYMOUS_LOG is for in-memory engines (dir NULL)",
                ))
            }
            Some(d) => Engine::open(d, config)?,
            None if anonymous_log => Engine::builder().config(config).anonymous_log().build()?,
            None => Engine::new(config)?,
        };
        out.set(handle::new(Kind::Engine, engine));
        Ok(())
    })
}

/// Frees an engine handle: waits for a background save running at that
/// moment to finish, then stops the engine's threads and closes its files,
/// so the data directory can be opened again right away (a save rule that
/// fires in that instant can hold the directory a little longer: a reopen
/// answering `RINGKV_BUSY` may be retried). It does not save a snapshot:
/// call `ringkv_save` first for that. Cursors, primaries and followers made
/// from it keep the engine (and its directory's lock) alive until they are
/// freed too. NULL is a no-op; a freed handle is detected.
#[no_mangle]
pub extern "C" fn ringkv_engine_free(engine: *mut ringkv_engine) {
    guard_void(|| {
        if let Some(object) = handle::take(engine, Kind::Engine) {
            if let Ok(engine) = object.downcast::<Engine>() {
                engine.close();
            }
        }
    });
}

/// The engine behind a handle.
pub(crate) fn engine<'a>(e: *const ringkv_engine) -> Result<&'a Engine, Fail> {
    handle::get(e, Kind::Engine)
}
