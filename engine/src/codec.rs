//! The varint and length-prefixed encodings the log records and snapshot
//! chunks share (LEB128 integers in their one canonical form, byte strings
//! with a varint length, optional expiries), and the checked [`Reader`]
//! that decodes them without ever sizing an allocation from an unchecked
//! length.

use bytes::{Buf, BufMut, Bytes};

use crate::error::DecodeError;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub(crate) fn put_expire(out: &mut Vec<u8>, e: Option<u64>) {
    match e {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.put_u64_le(t);
        }
    }
}

/// Reads the encodings of this module from a buffer, checking every length
/// against the bytes that remain.
pub(crate) struct Reader {
    pub(crate) buf: Bytes,
}

impl Reader {
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        if self.buf.remaining() < 1 {
            return Err(DecodeError::Truncated(what));
        }
        Ok(self.buf.get_u8())
    }

    /// A LEB128 integer in its one canonical encoding (no redundant zero
    /// bytes, no bits beyond 64), so every stream decodes and re-encodes to
    /// the same bytes.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            if shift == 63 && b > 1 {
                return Err(DecodeError::Length(what));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(DecodeError::Length(what));
                }
                return Ok(v);
            }
        }
        Err(DecodeError::Length(what))
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.varint(what)?;
        if len > self.buf.remaining() as u64 {
            return Err(DecodeError::Truncated(what));
        }
        Ok(self.buf.split_to(len as usize))
    }

    /// A count of items that each take at least `min_item` bytes.
    pub(crate) fn count(&mut self, what: &'static str, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.varint(what)?;
        if n.saturating_mul(min_item as u64) > self.buf.remaining() as u64 {
            return Err(DecodeError::Length(what));
        }
        Ok(n as usize)
    }

    pub(crate) fn expire(&mut self) -> Result<Option<u64>, DecodeError> {
        match self.u8("expire flag")? {
            0 => Ok(None),
            1 => {
                if self.buf.remaining() < 8 {
                    return Err(DecodeError::Truncated("expire"));
                }
                Ok(Some(self.buf.get_u64_le()))
            }
            value => Err(DecodeError::Unknown {
                what: "expire flag",
                value,
            }),
        }
    }
}

/// Strict base-10 i64 parsing, as Redis' string2ll: no sign but '-', no
/// leading zeros or spaces, no "-0". This is what INCR accepts as an
/// integer; servers use it to read integer arguments the same way.
///
/// ```
/// assert_eq!(ringkv::parse_i64(b"-42"), Some(-42));
/// assert_eq!(ringkv::parse_i64(b"042"), None);
/// assert_eq!(ringkv::parse_i64(b"9223372036854775808"), None);
/// ```
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || neg) {
        return None;
    }
    let mut v: i64 = 0;
    for d in digits {
        let d = i64::from(d - b'0');
        v = if neg {
            v.checked_mul(10)?.checked_sub(d)?
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(v)
}

/// A float as INCRBYFLOAT reads it: a finite decimal (exponents allowed),
/// no surrounding spaces, not NaN.
///
/// ```
/// assert_eq!(ringkv::parse_f64(b"10.5"), Some(10.5));
/// assert_eq!(ringkv::parse_f64(b"5.0e3"), Some(5000.0));
/// assert_eq!(ringkv::parse_f64(b" 1"), None);
/// assert_eq!(ringkv::parse_f64(b"nan"), None);
/// ```
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(s).ok()?;
    if s.is_empty() || s.len() > 5000 || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// A float as INCRBYFLOAT writes its result: the shortest decimal that
/// reads back the same, never with an exponent (Redis' "human" form), so
/// `10.5 + 0.1` is `10.6` and `3.0` is `3`.
pub fn format_f64(v: f64) -> String {
    let s = format!("{v}");
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}
