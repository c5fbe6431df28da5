//! The panic boundary every exported function runs in: a failure's message
//! becomes the thread's last error, a panic becomes `RINGKV_PANIC`, and
//! nothing unwinds into C.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::last_error;
use crate::status::{ringkv_status, Fail};

/// Runs `f`; on failure records its message and returns its status.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Fail>) -> ringkv_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => ringkv_status::RINGKV_OK,
        Ok(Err(fail)) => {
            last_error::set(&fail.message);
            fail.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            last_error::set(&format!("ringkv panicked (a bug; please report it): {what}"));
            ringkv_status::RINGKV_PANIC
        }
    }
}

/// As [`guard`], but a failure leaves the last error alone (for
/// `ringkv_last_error` itself).
pub(crate) fn guard_quiet(f: impl FnOnce() -> Result<(), Fail>) -> ringkv_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => ringkv_status::RINGKV_OK,
        Ok(Err(fail)) => fail.status,
        Err(_) => ringkv_status::RINGKV_PANIC,
    }
}

/// Runs `f` for a function that returns nothing (the `*_free` calls): a
/// panic is swallowed and recorded.
pub(crate) fn guard_void(f: impl FnOnce()) {
    let _ = guard(|| {
        f();
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let s = guard(|| panic!("boom"));
        std::panic::set_hook(prev);
        assert_eq!(s, ringkv_status::RINGKV_PANIC);
        assert!(last_error::get_for_tests().contains("boom"));
        assert_eq!(
            guard(|| Err(Fail::invalid("nope"))),
            ringkv_status::RINGKV_INVALID_ARGUMENT
        );
        assert_eq!(last_error::get_for_tests(), "nope");
    }
}
