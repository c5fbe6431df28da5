//! Record format of the ring log, and the encoding of [`Mutation`]s.
//!
//! A record is 8-byte aligned in the logical stream and starts with a 16-byte
//! header, all little-endian:
//!
//! ```text
//! 0   u64  offset   the record's own logical offset; written last, with a
//!                   release store: a record is published when this word
//!                   equals its position
//! 8   u32  len      payload length in bytes
//! 12  u32  crc      crc32c over offset, len and payload
//! 16  payload       len bytes: kind (u8) then the body
//!     padding       zeros up to the next multiple of 8
//! ```
//!
//! Covering the offset with the checksum means a stale record left from the
//! previous lap of the ring (at `offset - capacity`) never validates. The
//! header word never straddles the end of the ring because records and the
//! capacity are multiples of 8; payloads may wrap around.
//!
//! Mutation payloads (kind [`KIND_MUTATION`], body format
//! [`MUTATION_FORMAT`]): a tag byte, then fields. Byte strings are a LEB128
//! length and the bytes; counts are LEB128; optional expiries are a flag byte
//! and a u64.
//!
//! ```text
//! 1 Set     key value expire?      5 Rename  from to
//! 2 Append  key suffix             6 HSet    key count (field value)*
//! 3 Delete  reason count key*      7 HDel    key count field*
//! 4 Expire  key expire?            8 Flush
//!                                  9 Batch   count mutation*   (not nested)
//! ```

use bytes::{Buf, Bytes};

use crate::codec::{put_bytes, put_expire, put_varint, Reader};
pub use crate::error::DecodeError;
use crate::mutation::{DeleteReason, Mutation};

/// Size of a record header.
pub const HEADER_LEN: usize = 16;
/// Records start at multiples of this.
pub const ALIGN: u64 = 8;
/// Record kind of an encoded [`Mutation`].
pub const KIND_MUTATION: u8 = 1;
/// Version of the mutation body encoding (stored in the ring's header).
pub const MUTATION_FORMAT: u32 = 1;

/// Total bytes a record with `payload_len` payload bytes takes in the stream.
pub fn record_len(payload_len: usize) -> u64 {
    (HEADER_LEN as u64 + payload_len as u64).next_multiple_of(ALIGN)
}

/// Checksum of a record: covers its offset, its length and its payload
/// (given in up to two pieces, for payloads that wrap around the ring).
pub fn checksum(offset: u64, payload: &[u8], rest: &[u8]) -> u32 {
    let mut head = [0u8; 12];
    head[..8].copy_from_slice(&offset.to_le_bytes());
    head[8..].copy_from_slice(&((payload.len() + rest.len()) as u32).to_le_bytes());
    let crc = crc32c::crc32c(&head);
    let crc = crc32c::crc32c_append(crc, payload);
    crc32c::crc32c_append(crc, rest)
}

/// The header of a record at `offset` with this payload.
pub fn header(offset: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&offset.to_le_bytes());
    h[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[12..].copy_from_slice(&checksum(offset, payload, &[]).to_le_bytes());
    h
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The offset the record claims to be at.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
    /// Stored checksum.
    pub crc: u32,
}

impl Header {
    /// Parses 16 header bytes.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        let word = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a[..r.len()].copy_from_slice(&b[r]);
            u64::from_le_bytes(a)
        };
        Header {
            offset: word(0..8),
            len: word(8..12) as u32,
            crc: word(12..16) as u32,
        }
    }
}

/// Appends the payload of a mutation record (kind byte and body) to `out`.
pub fn encode_mutation(m: &Mutation, out: &mut Vec<u8>) {
    out.push(KIND_MUTATION);
    encode_body(m, out);
}

/// The payload of `Mutation::Set { key, value, expire_at }`, encoded from
/// borrowed parts (the hot path of `core/writer.rs`; the same bytes as
/// [`encode_mutation`]).
pub(crate) fn encode_set(key: &[u8], value: &[u8], expire_at: Option<u64>, out: &mut Vec<u8>) {
    out.push(KIND_MUTATION);
    set_body(key, value, expire_at, out);
}

/// The payload of `Mutation::HSet { key, fields }`, encoded from borrowed
/// parts (the same bytes as [`encode_mutation`]).
pub(crate) fn encode_hset<F: AsRef<[u8]>>(key: &[u8], fields: &[(F, Bytes)], out: &mut Vec<u8>) {
    out.push(KIND_MUTATION);
    hset_body(key, fields, out);
}

fn set_body(key: &[u8], value: &[u8], expire_at: Option<u64>, out: &mut Vec<u8>) {
    out.push(1);
    put_bytes(out, key);
    put_bytes(out, value);
    put_expire(out, expire_at);
}

fn hset_body<F: AsRef<[u8]>>(key: &[u8], fields: &[(F, Bytes)], out: &mut Vec<u8>) {
    out.push(6);
    put_bytes(out, key);
    put_varint(out, fields.len() as u64);
    for (f, v) in fields {
        put_bytes(out, f.as_ref());
        put_bytes(out, v);
    }
}

fn encode_body(m: &Mutation, out: &mut Vec<u8>) {
    match m {
        Mutation::Set { key, value, expire_at } => set_body(key, value, *expire_at, out),
        Mutation::Append { key, suffix } => {
            out.push(2);
            put_bytes(out, key);
            put_bytes(out, suffix);
        }
        Mutation::Delete { keys, reason } => {
            out.push(3);
            out.push(match reason {
                DeleteReason::User => 0,
                DeleteReason::Expired => 1,
                DeleteReason::Evicted => 2,
            });
            put_varint(out, keys.len() as u64);
            keys.iter().for_each(|k| put_bytes(out, k));
        }
        Mutation::Expire { key, expire_at } => {
            out.push(4);
            put_bytes(out, key);
            put_expire(out, *expire_at);
        }
        Mutation::Rename { from, to } => {
            out.push(5);
            put_bytes(out, from);
            put_bytes(out, to);
        }
        Mutation::HSet { key, fields } => hset_body(key, fields, out),
        Mutation::HDel { key, fields } => {
            out.push(7);
            put_bytes(out, key);
            put_varint(out, fields.len() as u64);
            fields.iter().for_each(|f| put_bytes(out, f));
        }
        Mutation::Flush => out.push(8),
        Mutation::Batch(ms) => {
            out.push(9);
            put_varint(out, ms.len() as u64);
            ms.iter().for_each(|m| encode_body(m, out));
        }
    }
}

fn read_mutation(r: &mut Reader, in_batch: bool) -> Result<Mutation, DecodeError> {
    Ok(match r.u8("mutation tag")? {
        1 => Mutation::Set {
            key: r.bytes("key")?,
            value: r.bytes("value")?,
            expire_at: r.expire()?,
        },
        2 => Mutation::Append {
            key: r.bytes("key")?,
            suffix: r.bytes("suffix")?,
        },
        3 => {
            let reason = match r.u8("delete reason")? {
                0 => DeleteReason::User,
                1 => DeleteReason::Expired,
                2 => DeleteReason::Evicted,
                value => {
                    return Err(DecodeError::Unknown {
                        what: "delete reason",
                        value,
                    })
                }
            };
            let n = r.count("key count", 1)?;
            let keys = (0..n).map(|_| r.bytes("key")).collect::<Result<_, _>>()?;
            Mutation::Delete { keys, reason }
        }
        4 => Mutation::Expire {
            key: r.bytes("key")?,
            expire_at: r.expire()?,
        },
        5 => Mutation::Rename {
            from: r.bytes("from")?,
            to: r.bytes("to")?,
        },
        6 => {
            let key = r.bytes("key")?;
            let n = r.count("field count", 2)?;
            let fields = (0..n)
                .map(|_| Ok((r.bytes("field")?, r.bytes("value")?)))
                .collect::<Result<_, DecodeError>>()?;
            Mutation::HSet { key, fields }
        }
        7 => {
            let key = r.bytes("key")?;
            let n = r.count("field count", 1)?;
            let fields = (0..n).map(|_| r.bytes("field")).collect::<Result<_, _>>()?;
            Mutation::HDel { key, fields }
        }
        8 => Mutation::Flush,
        9 => {
            if in_batch {
                return Err(DecodeError::NestedBatch);
            }
            let n = r.count("batch length", 1)?;
            let ms = (0..n).map(|_| read_mutation(r, true)).collect::<Result<_, _>>()?;
            Mutation::Batch(ms)
        }
        value => {
            return Err(DecodeError::Unknown {
                what: "mutation tag",
                value,
            })
        }
    })
}

/// Decodes a record payload (kind byte and body) into a mutation. The
/// mutation's byte strings share `payload`'s buffer (no copies).
pub fn decode_mutation(payload: Bytes) -> Result<Mutation, DecodeError> {
    let mut r = Reader { buf: payload };
    match r.u8("record kind")? {
        KIND_MUTATION => {}
        value => {
            return Err(DecodeError::Unknown {
                what: "record kind",
                value,
            })
        }
    }
    let m = read_mutation(&mut r, false)?;
    if r.buf.has_remaining() {
        return Err(DecodeError::Trailing(r.buf.remaining()));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
    }

    fn leaf() -> impl Strategy<Value = Mutation> {
        let reason = prop_oneof![
            Just(DeleteReason::User),
            Just(DeleteReason::Expired),
            Just(DeleteReason::Evicted)
        ];
        prop_oneof![
            (bytes(), bytes(), proptest::option::of(any::<u64>()))
                .prop_map(|(key, value, expire_at)| { Mutation::Set { key, value, expire_at } }),
            (bytes(), bytes()).prop_map(|(key, suffix)| Mutation::Append { key, suffix }),
            (proptest::collection::vec(bytes(), 0..4), reason)
                .prop_map(|(keys, reason)| Mutation::Delete { keys, reason }),
            (bytes(), proptest::option::of(any::<u64>()))
                .prop_map(|(key, expire_at)| Mutation::Expire { key, expire_at }),
            (bytes(), bytes()).prop_map(|(from, to)| Mutation::Rename { from, to }),
            (bytes(), proptest::collection::vec((bytes(), bytes()), 0..4))
                .prop_map(|(key, fields)| Mutation::HSet { key, fields }),
            (bytes(), proptest::collection::vec(bytes(), 0..4))
                .prop_map(|(key, fields)| Mutation::HDel { key, fields }),
            Just(Mutation::Flush),
        ]
    }

    pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            4 => leaf(),
            1 => proptest::collection::vec(leaf(), 0..5).prop_map(Mutation::Batch),
        ]
    }

    proptest! {
        #[test]
        fn every_mutation_round_trips(m in mutation()) {
            let mut buf = Vec::new();
            encode_mutation(&m, &mut buf);
            prop_assert_eq!(decode_mutation(Bytes::from(buf.clone())).expect("decodes"), m);
            // Every strict prefix is an error, never a panic or another mutation.
            for cut in 0..buf.len() {
                prop_assert!(decode_mutation(Bytes::copy_from_slice(&buf[..cut])).is_err());
            }
        }

        #[test]
        fn borrowed_encodings_equal_the_owned_ones(m in leaf()) {
            let mut owned = Vec::new();
            encode_mutation(&m, &mut owned);
            let mut borrowed = Vec::new();
            match &m {
                Mutation::Set { key, value, expire_at } => encode_set(key, value, *expire_at, &mut borrowed),
                Mutation::HSet { key, fields } => {
                    let fields: Vec<(&[u8], Bytes)> = fields.iter().map(|(f, v)| (&f[..], v.clone())).collect();
                    encode_hset(key, &fields, &mut borrowed);
                }
                _ => borrowed = owned.clone(),
            }
            prop_assert_eq!(borrowed, owned);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_mutation(Bytes::from(data));
        }
    }

    #[test]
    fn checksum_covers_offset() {
        let payload = b"\x01\x08";
        assert_ne!(checksum(0, payload, &[]), checksum(1 << 20, payload, &[]));
        assert_eq!(checksum(8, b"ab", b"cd"), checksum(8, b"abcd", &[]));
        let h = Header::parse(&header(64, payload));
        assert_eq!((h.offset, h.len, h.crc), (64, 2, checksum(64, payload, &[])));
        assert_eq!(record_len(0), 16);
        assert_eq!(record_len(1), 24);
        assert_eq!(record_len(8), 24);
    }

    #[test]
    fn nested_batches_and_huge_counts_are_refused() {
        let nested = [KIND_MUTATION, 9, 1, 9, 0];
        assert_eq!(
            decode_mutation(Bytes::copy_from_slice(&nested)),
            Err(DecodeError::NestedBatch)
        );
        let huge = [KIND_MUTATION, 3, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            decode_mutation(Bytes::copy_from_slice(&huge)),
            Err(DecodeError::Length(_))
        ));
        let padded_zero = [KIND_MUTATION, 3, 0, 0x80, 0x00];
        assert!(matches!(
            decode_mutation(Bytes::copy_from_slice(&padded_zero)),
            Err(DecodeError::Length(_))
        ));
    }
}
