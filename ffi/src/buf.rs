//! Memory the library hands out: `ringkv_buf` (one value), arrays of them,
//! and batch replies, each with its free function. A buf's `ptr` is NULL
//! for nil (a missing key or field); an empty value has a non-NULL `ptr`
//! and `len` 0.

use crate::boundary;

/// A byte string owned by the library. `ptr` NULL means nil. Free with
/// `ringkv_buf_free` (which sets it back to nil, so freeing the same struct
/// twice is safe; freeing a copy of it as well is not).
#[repr(C)]
#[derive(Debug)]
pub struct ringkv_buf {
    /// The bytes, or NULL for nil.
    pub ptr: *mut u8,
    /// How many bytes.
    pub len: usize,
}

/// An array of `ringkv_buf` owned by the library (pairs are flattened:
/// field, value, field, value). Free with `ringkv_buf_array_free`.
#[repr(C)]
#[derive(Debug)]
pub struct ringkv_buf_array {
    /// The items, or NULL when `len` is 0.
    pub ptr: *mut ringkv_buf,
    /// How many items.
    pub len: usize,
}

/// One reply of a write batch (see `ringkv_reply_kind`).
#[repr(C)]
#[derive(Debug)]
pub struct ringkv_reply {
    /// A `ringkv_reply_kind`.
    pub kind: i32,
    /// The integer of an INT reply; 1 or 0 (applied) for a SET reply.
    pub integer: i64,
    /// The value of a VALUE reply, or the previous value of a SET with
    /// `get` (nil otherwise).
    pub value: ringkv_buf,
}

/// The replies of a write batch, in its order. Free with
/// `ringkv_reply_array_free`.
#[repr(C)]
#[derive(Debug)]
pub struct ringkv_reply_array {
    /// The replies, or NULL when `len` is 0.
    pub ptr: *mut ringkv_reply,
    /// How many replies.
    pub len: usize,
}

impl ringkv_buf {
    /// Nil.
    pub(crate) fn nil() -> ringkv_buf {
        ringkv_buf {
            ptr: std::ptr::null_mut(),
            len: 0,
        }
    }

    /// A copy of `bytes`, owned by the caller until freed.
    pub(crate) fn copy(bytes: &[u8]) -> ringkv_buf {
        let boxed: Box<[u8]> = bytes.into();
        let len = boxed.len();
        ringkv_buf {
            ptr: Box::into_raw(boxed).cast::<u8>(),
            len,
        }
    }

    /// A copy, or nil.
    pub(crate) fn opt(bytes: Option<&[u8]>) -> ringkv_buf {
        bytes.map_or_else(ringkv_buf::nil, ringkv_buf::copy)
    }

    /// Frees the bytes and makes it nil.
    fn release(&mut self) {
        if self.ptr.is_null() {
            return;
        }
        // SAFETY: a non-NULL `ptr` with `len` was made by `copy` from a
        // `Box<[u8]>` of exactly `len` bytes (the header says only the
        // library's own bufs may be freed), and is set to NULL right after,
        // so it is released once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
        *self = ringkv_buf::nil();
    }
}

impl ringkv_buf_array {
    /// An array owning `items`.
    pub(crate) fn from_vec(items: Vec<ringkv_buf>) -> ringkv_buf_array {
        if items.is_empty() {
            return ringkv_buf_array {
                ptr: std::ptr::null_mut(),
                len: 0,
            };
        }
        let boxed = items.into_boxed_slice();
        let len = boxed.len();
        ringkv_buf_array {
            ptr: Box::into_raw(boxed).cast::<ringkv_buf>(),
            len,
        }
    }

    /// Copies of `items`.
    pub(crate) fn of<B: AsRef<[u8]>>(items: impl IntoIterator<Item = B>) -> ringkv_buf_array {
        ringkv_buf_array::from_vec(items.into_iter().map(|b| ringkv_buf::copy(b.as_ref())).collect())
    }

    /// Flattened copies of `pairs`: field, value, field, value.
    pub(crate) fn of_pairs<A: AsRef<[u8]>, B: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (A, B)>,
    ) -> ringkv_buf_array {
        let mut items = Vec::new();
        for (a, b) in pairs {
            items.push(ringkv_buf::copy(a.as_ref()));
            items.push(ringkv_buf::copy(b.as_ref()));
        }
        ringkv_buf_array::from_vec(items)
    }

    fn release(&mut self) {
        if self.ptr.is_null() {
            return;
        }
        // SAFETY: a non-NULL `ptr` with `len` was made by `from_vec` from a
        // boxed slice of exactly `len` bufs, and is set to NULL right after.
        let mut items = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) };
        for item in items.iter_mut() {
            item.release();
        }
        drop(items);
        self.ptr = std::ptr::null_mut();
        self.len = 0;
    }
}

impl ringkv_reply_array {
    /// An array owning `replies`.
    pub(crate) fn from_vec(replies: Vec<ringkv_reply>) -> ringkv_reply_array {
        if replies.is_empty() {
            return ringkv_reply_array {
                ptr: std::ptr::null_mut(),
                len: 0,
            };
        }
        let boxed = replies.into_boxed_slice();
        let len = boxed.len();
        ringkv_reply_array {
            ptr: Box::into_raw(boxed).cast::<ringkv_reply>(),
            len,
        }
    }
}

/// A mutable reference to the caller's struct, if the pointer is usable.
fn caller_struct<'a, T>(ptr: *mut T) -> Option<&'a mut T> {
    if ptr.is_null() || !ptr.is_aligned() {
        return None;
    }
    // SAFETY: non-NULL and aligned (checked); by the header's contract it
    // points to a struct the library filled in, not used elsewhere during
    // the call.
    Some(unsafe { &mut *ptr })
}

/// Frees a value returned by the library and sets it to nil (`ptr` NULL,
/// `len` 0), so freeing it again does nothing. NULL, or a nil buf, is a
/// no-op. Only pass bufs the library filled in.
#[no_mangle]
pub extern "C" fn ringkv_buf_free(buf: *mut ringkv_buf) {
    boundary::guard_void(|| {
        if let Some(b) = caller_struct(buf) {
            b.release();
        }
    });
}

/// Frees an array returned by the library (every item and the array) and
/// sets it to empty. NULL, or an empty array, is a no-op.
#[no_mangle]
pub extern "C" fn ringkv_buf_array_free(array: *mut ringkv_buf_array) {
    boundary::guard_void(|| {
        if let Some(a) = caller_struct(array) {
            a.release();
        }
    });
}

/// Frees the replies of `ringkv_write_batch` and sets the array to empty.
/// NULL, or an empty array, is a no-op.
#[no_mangle]
pub extern "C" fn ringkv_reply_array_free(array: *mut ringkv_reply_array) {
    boundary::guard_void(|| {
        let Some(a) = caller_struct(array) else { return };
        if a.ptr.is_null() {
            return;
        }
        // SAFETY: a non-NULL `ptr` with `len` was made by `from_vec` from a
        // boxed slice of exactly `len` replies, and is set to NULL below.
        let mut replies = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(a.ptr, a.len)) };
        for r in replies.iter_mut() {
            r.value.release();
        }
        drop(replies);
        a.ptr = std::ptr::null_mut();
        a.len = 0;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bufs_distinguish_nil_from_empty_and_free_once() {
        let mut nil = ringkv_buf::opt(None);
        assert!(nil.ptr.is_null());
        let mut empty = ringkv_buf::copy(b"");
        assert!(!empty.ptr.is_null() && empty.len == 0);
        let mut v = ringkv_buf::copy(b"value");
        ringkv_buf_free(&mut v);
        assert!(v.ptr.is_null());
        ringkv_buf_free(&mut v);
        ringkv_buf_free(&mut empty);
        ringkv_buf_free(&mut nil);
        ringkv_buf_free(std::ptr::null_mut());
        let mut a = ringkv_buf_array::of_pairs([("f", "1"), ("g", "2")]);
        assert_eq!(a.len, 4);
        ringkv_buf_array_free(&mut a);
        assert!(a.ptr.is_null());
        ringkv_buf_array_free(&mut a);
    }
}
