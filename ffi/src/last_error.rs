//! The calling thread's last failure message (`ringkv_last_error`).

use std::cell::RefCell;
use std::os::raw::c_char;

use crate::args;
use crate::status::ringkv_status;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Remembers `message` as this thread's last failure. Never panics: in a
/// thread whose thread-locals are being destroyed (a call from a TLS
/// destructor) the message is dropped.
pub(crate) fn set(message: &str) {
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            e.clear();
            e.push_str(message);
        }
    });
}

/// Copies the calling thread's last failure message into `buf`: at most
/// `len - 1` bytes and a terminating NUL (nothing when `len` is 0), and
/// sets `*written` to the whole message's length in bytes (without the
/// NUL), so a length larger than `len - 1` means it was truncated. With
/// `buf` NULL and `len` 0 it only reports the length. A call that
/// succeeds does not clear the message; it is empty (`*written` 0) on a
/// thread that never failed.
///
/// ```c
/// char msg[256];
/// size_t n;
/// if (ringkv_set(engine, "k", 1, "v", 1) != RINGKV_OK) {
///     ringkv_last_error(msg, sizeof msg, &n);
///     fprintf(stderr, "set failed: %s\n", msg);
/// }
/// ```
#[no_mangle]
pub extern "C" fn ringkv_last_error(buf: *mut c_char, len: usize, written: *mut usize) -> ringkv_status {
    crate::boundary::guard_quiet(|| {
        // Both outputs are checked before either is written.
        let written = args::out(written, "written")?;
        let out = args::out_mut(buf.cast::<u8>(), len)?;
        let message = LAST_ERROR
            .try_with(|e| e.try_borrow().map(|e| e.clone()).unwrap_or_default())
            .unwrap_or_default();
        if let Some(out) = out {
            let n = message.len().min(len - 1);
            out[..n].copy_from_slice(&message.as_bytes()[..n]);
            out[n] = 0;
        }
        written.set(message.len());
        Ok(())
    })
}

/// The current message (tests).
#[cfg(test)]
pub(crate) fn get_for_tests() -> String {
    LAST_ERROR.with(|e| e.borrow().clone())
}
