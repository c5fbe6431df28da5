//! Redis Cluster's key slots: CRC16 (XMODEM, as Redis' `crc16.c`) of the
//! key, or of its hashtag, modulo 16,384 (`keyHashSlot` in Redis' `cluster.c`).
//!
//! The hashtag rule: if the key holds a `{`, and a `}` follows it with at
//! least one byte between them, only the bytes between the first `{` and the
//! first `}` after it are hashed; otherwise the whole key is.

/// Number of slots of a Redis cluster.
pub const SLOT_COUNT: usize = 16_384;

/// The cluster slot of `key` (0..16,384).
///
/// ```
/// use ringkv::key_slot;
/// assert_eq!(key_slot(b"foo"), 12182);
/// // Keys that share a hashtag share a slot.
/// assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
/// // An empty hashtag does not count: the whole key is hashed.
/// assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
/// ```
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hashtag(key)) & (SLOT_COUNT as u16 - 1)
}

/// The part of `key` that is hashed: its non-empty `{hashtag}`, or all of it.
pub fn hashtag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
///
/// ```
/// assert_eq!(ringkv::crc16(b"123456789"), 0x31C3);
/// ```
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        let idx = ((crc >> 8) ^ u16::from(b)) as usize;
        (crc << 8) ^ CRC16_TABLE[idx]
    })
}

/// The byte-wise table of the polynomial 0x1021, built at compile time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_cluster_spec() {
        // The cluster specification's check value, and Redis' table entries.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(CRC16_TABLE[1], 0x1021);
        assert_eq!(CRC16_TABLE[255], 0x1ef0);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn hashtags_follow_the_redis_rules() {
        assert_eq!(hashtag(b"{user1000}.following"), b"user1000");
        assert_eq!(hashtag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashtag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashtag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hashtag(b"{}"), b"{}");
        assert_eq!(hashtag(b"{"), b"{");
        assert_eq!(hashtag(b"a}b{c"), b"a}b{c");
    }
}
