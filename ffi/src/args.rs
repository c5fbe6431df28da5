//! Reading what the caller passes: byte strings, lists of them, C strings,
//! integers standing for enums, and out-parameters (checked before the
//! call does anything, written after it succeeded).
//!
//! Every pointer here comes from C. The header's contract is that a
//! non-NULL pointer with a length points to that many readable bytes (or
//! writable, for outputs) for the duration of the call; NULL is checked
//! here, so a NULL pointer with a non-zero length is an error, never a read.

use std::os::raw::c_char;
use std::ptr::NonNull;

use crate::status::Fail;

/// The byte string `(ptr, len)`. `ptr` may be NULL only when `len` is 0.
pub(crate) fn bytes<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Fail::invalid(format!("{what} is NULL with length {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Fail::invalid(format!("{what} length {len} is out of range")));
    }
    // SAFETY: `ptr` is non-NULL and, by the header's contract, points to
    // `len` readable bytes that stay valid and unchanged during the call;
    // `len` fits `isize` (checked above), as `from_raw_parts` requires. u8
    // has alignment 1.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// A list of `n` byte strings passed as one concatenation `joined` and the
/// array `lens` of their lengths.
pub(crate) fn list<'a>(joined: *const c_char, lens: *const usize, n: usize, what: &str) -> Result<Vec<&'a [u8]>, Fail> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if lens.is_null() {
        return Err(Fail::invalid(format!("the lengths of {what} are NULL with {n} items")));
    }
    if !lens.is_aligned() || n > isize::MAX as usize / std::mem::size_of::<usize>() {
        return Err(Fail::invalid(format!(
            "the lengths of {what} are misaligned or too many"
        )));
    }
    // SAFETY: `lens` is non-NULL and aligned (checked), and by the header's
    // contract points to `n` readable `size_t`s; `n * size_of::<usize>()`
    // fits `isize` (checked).
    let lens = unsafe { std::slice::from_raw_parts(lens, n) };
    let total = lens
        .iter()
        .try_fold(0usize, |acc, &l| acc.checked_add(l))
        .ok_or_else(|| Fail::invalid(format!("the lengths of {what} overflow")))?;
    let mut rest = bytes(joined, total, what)?;
    let mut items = Vec::with_capacity(n);
    for &l in lens {
        let (item, tail) = rest.split_at(l);
        items.push(item);
        rest = tail;
    }
    Ok(items)
}

/// A field and its value (or a key and its value).
pub(crate) type Pair<'a> = (&'a [u8], &'a [u8]);

/// [`list`] read as pairs (field, value, field, value, ...): `n` counts
/// strings and must be even.
pub(crate) fn pairs<'a>(
    joined: *const c_char,
    lens: *const usize,
    n: usize,
    what: &str,
) -> Result<Vec<Pair<'a>>, Fail> {
    if !n.is_multiple_of(2) {
        return Err(Fail::invalid(format!(
            "{what} needs an even number of strings, got {n}"
        )));
    }
    let items = list(joined, lens, n, what)?;
    Ok(items.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// A NUL-terminated UTF-8 string, or `None` for NULL.
pub(crate) fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>, Fail> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: `ptr` is non-NULL and, by the header's contract, points to a
    // NUL-terminated string valid for the duration of the call.
    let s = unsafe { std::ffi::CStr::from_ptr(ptr) };
    s.to_str()
        .map(Some)
        .map_err(|_| Fail::invalid(format!("{what} is not UTF-8")))
}

/// [`c_str`] that must not be NULL.
pub(crate) fn c_str_required<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Fail> {
    c_str(ptr, what)?.ok_or_else(|| Fail::invalid(format!("{what} is NULL")))
}

/// An integer standing for one of `N` enum values `0..N`.
pub(crate) fn choice(v: i32, n: i32, what: &str) -> Result<i32, Fail> {
    if (0..n).contains(&v) {
        Ok(v)
    } else {
        Err(Fail::invalid(format!("{what} {v} is out of range 0..{}", n - 1)))
    }
}

/// An out-parameter checked before the call runs; written with
/// [`Out::set`] only once it succeeded.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// Writes the result (without reading or dropping what was there: the
    /// caller's memory may be uninitialized).
    pub(crate) fn set(self, value: T) {
        // SAFETY: the pointer is non-NULL and aligned (checked in `out`)
        // and, by the header's contract, points to writable memory for a
        // `T`; `write` does not read or drop the old contents.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// Checks an out-parameter: not NULL, aligned.
pub(crate) fn out<T>(ptr: *mut T, what: &str) -> Result<Out<T>, Fail> {
    match NonNull::new(ptr) {
        Some(p) if ptr.is_aligned() => Ok(Out(p)),
        Some(_) => Err(Fail::invalid(format!("out-parameter {what} is misaligned"))),
        None => Err(Fail::invalid(format!("out-parameter {what} is NULL"))),
    }
}

/// An optional out-parameter: NULL means "not wanted".
pub(crate) fn out_opt<T>(ptr: *mut T, what: &str) -> Result<Option<Out<T>>, Fail> {
    if ptr.is_null() {
        Ok(None)
    } else {
        out(ptr, what).map(Some)
    }
}

/// A writable byte buffer `(ptr, len)`; `None` when `len` is 0.
pub(crate) fn out_mut<'a>(ptr: *mut u8, len: usize) -> Result<Option<&'a mut [u8]>, Fail> {
    if len == 0 {
        return Ok(None);
    }
    if ptr.is_null() {
        return Err(Fail::invalid(format!("buffer is NULL with length {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Fail::invalid("buffer length is out of range"));
    }
    // SAFETY: `ptr` is non-NULL and, by the header's contract, points to
    // `len` writable bytes not aliased during the call; `len` fits isize.
    Ok(Some(unsafe { std::slice::from_raw_parts_mut(ptr, len) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_by_their_lengths_and_reject_bad_ones() {
        let joined = b"abcde";
        let lens = [2usize, 0, 3];
        let got = list(joined.as_ptr().cast(), lens.as_ptr(), 3, "keys").expect("list");
        assert_eq!(got, vec![&b"ab"[..], b"", b"cde"]);
        assert!(list(std::ptr::null(), lens.as_ptr(), 3, "keys").is_err());
        assert!(list(joined.as_ptr().cast(), std::ptr::null(), 3, "keys").is_err());
        let huge = [usize::MAX, 2];
        assert!(list(joined.as_ptr().cast(), huge.as_ptr(), 2, "keys").is_err());
        assert!(pairs(joined.as_ptr().cast(), lens.as_ptr(), 3, "pairs").is_err());
        assert_eq!(
            list(std::ptr::null(), std::ptr::null(), 0, "keys").expect("empty"),
            Vec::<&[u8]>::new()
        );
        assert!(bytes(std::ptr::null(), 1, "key").is_err());
        assert_eq!(bytes(std::ptr::null(), 0, "key").expect("empty"), b"");
        assert!(choice(3, 3, "condition").is_err());
        assert!(choice(-1, 3, "condition").is_err());
        assert!(out::<u64>(std::ptr::null_mut(), "x").is_err());
    }
}
