//! [`Blob`]: the byte string the engine stores and returns.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use std::sync::Arc;

use bytes::Bytes;

/// Longest byte string kept inline (without a heap allocation).
pub const INLINE_CAPACITY: usize = 14;

/// A binary-safe byte string, 16 bytes wide.
///
/// Strings of up to [`INLINE_CAPACITY`] bytes (most keys, counters, flags,
/// hash fields) are stored inline; longer ones are a [`Bytes`] behind an
/// `Arc`. Reading a value therefore never copies more than 14 bytes under a
/// shard lock, never copies a large value at all, and never allocates:
/// cloning a long `Blob` only bumps a reference count (a `Box<Bytes>` would
/// allocate a new box for every GET of a long value).
///
/// This is the one deviation from "values are `bytes::Bytes`" in the design:
/// a `Bytes` is 32 bytes plus a heap allocation per value, which alone would
/// exceed the per-key memory aim (≤ 48 bytes beyond key and value).
///
/// ```
/// use ringkv::Blob;
/// let b = Blob::from("hello");
/// assert_eq!(&b[..], b"hello");
/// assert_eq!(b, "hello");
/// assert_eq!(b.into_bytes(), bytes::Bytes::from_static(b"hello"));
/// ```
#[derive(Clone)]
pub struct Blob(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE_CAPACITY] },
    Heap(Arc<Bytes>),
}

impl Blob {
    /// The empty string.
    pub const fn empty() -> Blob {
        Blob(Repr::Inline {
            len: 0,
            buf: [0; INLINE_CAPACITY],
        })
    }

    /// Copies `data` (inline when short, into a new buffer otherwise).
    pub fn copy_from_slice(data: &[u8]) -> Blob {
        if data.len() <= INLINE_CAPACITY {
            let mut buf = [0; INLINE_CAPACITY];
            buf[..data.len()].copy_from_slice(data);
            Blob(Repr::Inline {
                len: data.len() as u8,
                buf,
            })
        } else {
            Blob(Repr::Heap(Arc::new(Bytes::copy_from_slice(data))))
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..*len as usize],
            Repr::Heap(b) => b,
        }
    }

    /// Converts into [`Bytes`] (copies only an inline string; a long one
    /// shares its buffer).
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Inline { len, buf } => Bytes::copy_from_slice(&buf[..len as usize]),
            Repr::Heap(b) => Arc::try_unwrap(b).unwrap_or_else(|shared| Bytes::clone(&shared)),
        }
    }

    /// Heap bytes this string owns, as counted by the memory accounting:
    /// the `Arc` block holding the `Bytes` header and its buffer, with
    /// allocator overhead. A buffer that is also shared outside the engine
    /// (a user's sink keeping the mutation) has a 24-byte count block more,
    /// not counted: the hot path builds no mutation to share it with, so a
    /// stored value normally owns its buffer alone.
    pub(crate) fn heap_size(&self) -> usize {
        self.copied_heap_size()
    }

    /// Heap bytes of a string made by [`Blob::copy_from_slice`] and never
    /// shared (keys and hash fields): the `Arc` block holding the `Bytes`
    /// header (two counters and the header) and the buffer.
    pub(crate) fn copied_heap_size(&self) -> usize {
        match &self.0 {
            Repr::Inline { .. } => 0,
            Repr::Heap(b) => {
                alloc_size(2 * std::mem::size_of::<usize>() + std::mem::size_of::<Bytes>()) + alloc_size(b.len())
            }
        }
    }
}

impl Default for Blob {
    fn default() -> Self {
        Blob::empty()
    }
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for Blob {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Bytes> for Blob {
    fn from(b: Bytes) -> Blob {
        if b.len() <= INLINE_CAPACITY {
            Blob::copy_from_slice(&b)
        } else {
            Blob(Repr::Heap(Arc::new(b)))
        }
    }
}

impl From<&Bytes> for Blob {
    fn from(b: &Bytes) -> Blob {
        Blob::from(b.clone())
    }
}

impl From<&[u8]> for Blob {
    fn from(b: &[u8]) -> Blob {
        Blob::copy_from_slice(b)
    }
}

impl From<&str> for Blob {
    fn from(s: &str) -> Blob {
        Blob::copy_from_slice(s.as_bytes())
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Blob {
        Blob::from(Bytes::from(v))
    }
}

impl From<Blob> for Bytes {
    fn from(b: Blob) -> Bytes {
        b.into_bytes()
    }
}

impl From<Blob> for Vec<u8> {
    fn from(b: Blob) -> Vec<u8> {
        b.as_slice().to_vec()
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Blob) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for Blob {}

impl PartialOrd for Blob {
    fn partial_cmp(&self, other: &Blob) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Blob {
    fn cmp(&self, other: &Blob) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl Hash for Blob {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl PartialEq<[u8]> for Blob {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}
impl PartialEq<&[u8]> for Blob {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}
impl<const N: usize> PartialEq<&[u8; N]> for Blob {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_slice() == &other[..]
    }
}
impl PartialEq<&str> for Blob {
    fn eq(&self, other: &&str) -> bool {
        self.as_slice() == other.as_bytes()
    }
}
impl PartialEq<Vec<u8>> for Blob {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == &other[..]
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.as_slice().escape_ascii())
    }
}

/// Bytes the allocator really takes for an allocation of `n` bytes: glibc
/// malloc adds an 8-byte header, rounds to 16 and never hands out less than
/// 32 (jemalloc and mimalloc size classes land close to this).
pub(crate) fn alloc_size(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Blob>(), 16);
    }

    #[test]
    fn inline_and_heap_round_trip() {
        for len in [0, 1, 13, 14, 15, 100] {
            let data: Vec<u8> = (0..len as u8).collect();
            let b = Blob::from(&data[..]);
            assert_eq!(b.as_slice(), &data[..]);
            assert_eq!(b.heap_size() > 0, len > INLINE_CAPACITY);
            assert_eq!(b.clone().into_bytes(), Bytes::from(data.clone()));
        }
    }
}
