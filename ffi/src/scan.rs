//! SCAN and HSCAN cursors: each call returns the next page (about COUNT
//! elements, O(COUNT) work, no lock held between calls), with Redis'
//! guarantee that an element present for the whole iteration is returned
//! at least once. A cursor keeps its engine alive and is used by one
//! thread at a time.

use std::os::raw::c_char;

use bytes::Bytes;
use engine::{Engine, KeyType, ScanOptions};

use crate::args;
use crate::boundary::{guard, guard_void};
use crate::buf::ringkv_buf_array;
use crate::engine_api::{engine, ringkv_engine};
use crate::handle::{self, Kind};
use crate::status::ringkv_status;

/// A SCAN over an engine's keys. One thread at a time.
pub struct ringkv_scan_cursor {
    _private: [u8; 0],
}

/// An HSCAN over one hash's fields. One thread at a time.
pub struct ringkv_hscan_cursor {
    _private: [u8; 0],
}

struct ScanState {
    engine: Engine,
    cursor: u64,
    done: bool,
    opts: ScanOptions,
}

struct HScanState {
    engine: Engine,
    key: Bytes,
    cursor: u64,
    done: bool,
    novalues: bool,
    opts: ScanOptions,
}

/// MATCH and COUNT from the C arguments (COUNT 0 is Redis' default 10).
fn options(pattern: *const c_char, pattern_len: usize, count: usize) -> Result<ScanOptions, crate::status::Fail> {
    let mut opts = ScanOptions::default();
    if count > 0 {
        opts = opts.count(count);
    }
    if pattern_len > 0 {
        opts = opts.pattern(args::bytes(pattern, pattern_len, "pattern")?);
    }
    Ok(opts)
}

/// Starts a SCAN: `pattern` (NULL or length 0: every key) is a Redis glob,
/// `count` the elements to aim for per page (0: 10), `type_filter` a
/// `ringkv_key_type` (NONE: any). Free with `ringkv_scan_cursor_free`.
///
/// ```c
/// ringkv_scan_cursor *c;
/// ringkv_buf_array keys;
/// bool done = false;
/// ringkv_scan_cursor_new(e, "session:*", 9, 100, RINGKV_TYPE_NONE, &c);
/// while (!done && ringkv_scan_cursor_next(c, &keys, &done) == RINGKV_OK) {
///     /* keys.ptr[0 .. keys.len) */
///     ringkv_buf_array_free(&keys);
/// }
/// ringkv_scan_cursor_free(c);
/// ```
#[no_mangle]
pub extern "C" fn ringkv_scan_cursor_new(
    e: *const ringkv_engine,
    pattern: *const c_char,
    pattern_len: usize,
    count: usize,
    type_filter: i32,
    out: *mut *mut ringkv_scan_cursor,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let mut opts = options(pattern, pattern_len, count)?;
        match args::choice(type_filter, 3, "type filter")? {
            1 => opts = opts.key_type(KeyType::String),
            2 => opts = opts.key_type(KeyType::Hash),
            _ => {}
        }
        let state = ScanState {
            engine: engine(e)?.clone(),
            cursor: 0,
            done: false,
            opts,
        };
        out.set(handle::new(Kind::ScanCursor, state));
        Ok(())
    })
}

/// The next page of keys in `*keys` (possibly empty while the iteration
/// goes on); `*done` becomes true with the last page. Calling it again
/// after the end gives an empty page.
#[no_mangle]
pub extern "C" fn ringkv_scan_cursor_next(
    c: *mut ringkv_scan_cursor,
    keys: *mut ringkv_buf_array,
    done: *mut bool,
) -> ringkv_status {
    guard(|| {
        let keys = args::out(keys, "keys")?;
        let done = args::out(done, "done")?;
        let s: &mut ScanState = handle::get_mut(c, Kind::ScanCursor)?;
        if s.done {
            keys.set(ringkv_buf_array::from_vec(Vec::new()));
            done.set(true);
            return Ok(());
        }
        let page = s.engine.scan(s.cursor, &s.opts);
        s.cursor = page.cursor;
        s.done = page.cursor == 0;
        keys.set(ringkv_buf_array::of(page.items));
        done.set(s.done);
        Ok(())
    })
}

/// Frees a scan cursor. NULL is a no-op; a freed handle is detected.
#[no_mangle]
pub extern "C" fn ringkv_scan_cursor_free(c: *mut ringkv_scan_cursor) {
    guard_void(|| handle::free(c, Kind::ScanCursor));
}

/// Starts an HSCAN of `key`: `pattern` and `count` as for SCAN; with
/// `novalues` the pages hold fields only, else flattened field/value pairs.
/// A string key is `RINGKV_WRONG_TYPE` at the first page.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ringkv_hscan_cursor_new(
    e: *const ringkv_engine,
    key: *const c_char,
    key_len: usize,
    pattern: *const c_char,
    pattern_len: usize,
    count: usize,
    novalues: bool,
    out: *mut *mut ringkv_hscan_cursor,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let state = HScanState {
            key: Bytes::copy_from_slice(args::bytes(key, key_len, "key")?),
            opts: options(pattern, pattern_len, count)?,
            engine: engine(e)?.clone(),
            cursor: 0,
            done: false,
            novalues,
        };
        out.set(handle::new(Kind::HScanCursor, state));
        Ok(())
    })
}

/// The next page of the hash in `*items`; `*done` becomes true with the
/// last page.
#[no_mangle]
pub extern "C" fn ringkv_hscan_cursor_next(
    c: *mut ringkv_hscan_cursor,
    items: *mut ringkv_buf_array,
    done: *mut bool,
) -> ringkv_status {
    guard(|| {
        let items = args::out(items, "items")?;
        let done = args::out(done, "done")?;
        let s: &mut HScanState = handle::get_mut(c, Kind::HScanCursor)?;
        if s.done {
            items.set(ringkv_buf_array::from_vec(Vec::new()));
            done.set(true);
            return Ok(());
        }
        let page = s.engine.hscan(&s.key, s.cursor, &s.opts)?;
        s.cursor = page.cursor;
        s.done = page.cursor == 0;
        items.set(if s.novalues {
            ringkv_buf_array::of(page.items.into_iter().map(|(f, _)| f))
        } else {
            ringkv_buf_array::of_pairs(page.items)
        });
        done.set(s.done);
        Ok(())
    })
}

/// Frees a hash-scan cursor. NULL is a no-op; a freed handle is detected.
#[no_mangle]
pub extern "C" fn ringkv_hscan_cursor_free(c: *mut ringkv_hscan_cursor) {
    guard_void(|| handle::free(c, Kind::HScanCursor));
}
