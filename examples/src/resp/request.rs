//! The request parser: resumable, zero-copy, with Redis' limits.

use bytes::{Bytes, BytesMut};

/// Request limits, with Redis' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest inline command line (Redis: 64 KiB, `PROTO_INLINE_MAX_SIZE`).
    pub inline_max: usize,
    /// Largest bulk string (`proto-max-bulk-len`, 512 MB).
    pub bulk_max: usize,
    /// Most arguments in one request (Redis refuses counts above 2^31 - 1;
    /// ringkv also caps what it preallocates for them).
    pub multibulk_max: usize,
    /// Largest query buffer of one client (`client-query-buffer-limit`, 1 GB).
    pub query_buffer_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            inline_max: 64 * 1024,
            bulk_max: 512 * 1024 * 1024,
            multibulk_max: i32::MAX as usize,
            query_buffer_max: 1024 * 1024 * 1024,
        }
    }
}

/// A malformed request. Its text is what Redis answers (after `-ERR `);
/// the connection is closed after the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// `*` followed by something that is not a valid count.
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLength,
    /// An element of a multibulk request that is not a bulk string.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// `$` followed by something that is not a valid length.
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    /// A bulk string not followed by CRLF.
    #[error("Protocol error: bulk string not terminated by CRLF")]
    BulkTerminator,
    /// An inline line over the limit.
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    /// A multibulk count line over the limit.
    #[error("Protocol error: too big mbulk count string")]
    CountTooBig,
    /// A bulk length line over the limit.
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    /// Quotes that do not close in an inline command.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// The client's pending input passed `client-query-buffer-limit`.
    #[error("Protocol error: query buffer limit reached")]
    QueryBufferLimit,
}

/// Where the parser is inside the current request.
#[derive(Debug)]
enum State {
    /// Between requests.
    Start,
    /// Inside a multibulk request: `remaining` elements to go.
    Multibulk { args: Vec<Bytes>, remaining: usize },
    /// Inside a multibulk request, the header of a bulk of `len` bytes read.
    Bulk {
        args: Vec<Bytes>,
        remaining: usize,
        len: usize,
    },
}

/// A resumable parser of client requests. Feed it the connection's read
/// buffer with [`RequestParser::next`]; it consumes whole requests from the
/// front and keeps its place in a partial one.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    /// Bytes at the front of the buffer already searched for a line end.
    scanned: usize,
}

/// Header lines (`*N`, `$N`) are at most this long before Redis gives up.
const MAX_HEADER_LINE: usize = 64 * 1024;

impl RequestParser {
    /// A parser with these limits.
    pub fn new(limits: Limits) -> RequestParser {
        RequestParser {
            limits,
            state: State::Start,
            scanned: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// True between requests (nothing of a partial request consumed).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Start) && self.scanned == 0
    }

    /// The next whole request at the front of `buf` (consumed), `None` if
    /// `buf` ends inside one (what was parsed of it is kept), or a protocol
    /// error. An empty inline line is skipped, as Redis does. Arguments
    /// share `buf`'s memory.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            match std::mem::replace(&mut self.state, State::Start) {
                State::Start => {
                    let Some(&first) = buf.first() else { return Ok(None) };
                    if first != b'*' {
                        match self.inline(buf)? {
                            Some(args) if args.is_empty() => continue,
                            other => return Ok(other),
                        }
                    }
                    let Some(line) = self.line(buf, ProtocolError::CountTooBig)? else {
                        return Ok(None);
                    };
                    let n = parse_len(&line[1..]).ok_or(ProtocolError::MultibulkLength)?;
                    if n < 0 {
                        // `*-1` and `*0` are empty requests: skipped.
                        continue;
                    }
                    let n = n as usize;
                    if n > self.limits.multibulk_max {
                        return Err(ProtocolError::MultibulkLength);
                    }
                    if n == 0 {
                        continue;
                    }
                    // Never preallocate from an untrusted count.
                    let args = Vec::with_capacity(n.min(1024));
                    self.state = State::Multibulk { args, remaining: n };
                }
                State::Multibulk { args, remaining } => {
                    let Some(&first) = buf.first() else {
                        self.state = State::Multibulk { args, remaining };
                        return Ok(None);
                    };
                    if first != b'$' {
                        return Err(ProtocolError::ExpectedBulk(first as char));
                    }
                    let Some(line) = self.line(buf, ProtocolError::BulkCountTooBig)? else {
                        self.state = State::Multibulk { args, remaining };
                        return Ok(None);
                    };
                    let len = parse_len(&line[1..]).ok_or(ProtocolError::BulkLength)?;
                    if len < 0 || len as usize > self.limits.bulk_max {
                        return Err(ProtocolError::BulkLength);
                    }
                    self.state = State::Bulk {
                        args,
                        remaining,
                        len: len as usize,
                    };
                }
                State::Bulk {
                    mut args,
                    remaining,
                    len,
                } => {
                    if buf.len() < len + 2 {
                        self.check_query_buffer(buf)?;
                        self.state = State::Bulk { args, remaining, len };
                        return Ok(None);
                    }
                    if &buf[len..len + 2] != b"\r\n" {
                        return Err(ProtocolError::BulkTerminator);
                    }
                    let arg = buf.split_to(len).freeze();
                    let _ = buf.split_to(2);
                    args.push(arg);
                    if remaining == 1 {
                        return Ok(Some(args));
                    }
                    self.state = State::Multibulk {
                        args,
                        remaining: remaining - 1,
                    };
                }
            }
        }
    }

    fn check_query_buffer(&self, buf: &BytesMut) -> Result<(), ProtocolError> {
        if buf.len() > self.limits.query_buffer_max {
            return Err(ProtocolError::QueryBufferLimit);
        }
        Ok(())
    }

    /// The line at the front of `buf` without its line end (consumed), or
    /// `None` if it is not complete yet. Resumes its search where the last
    /// call stopped.
    fn line(&mut self, buf: &mut BytesMut, too_long: ProtocolError) -> Result<Option<Bytes>, ProtocolError> {
        match memchr(b'\n', &buf[self.scanned..]) {
            Some(i) => {
                let end = self.scanned + i;
                self.scanned = 0;
                let mut line = buf.split_to(end + 1);
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                Ok(Some(line.freeze()))
            }
            None => {
                self.scanned = buf.len();
                if buf.len() > MAX_HEADER_LINE {
                    return Err(too_long);
                }
                Ok(None)
            }
        }
    }

    /// An inline command: one line, split on spaces with Redis' quoting.
    fn inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        match memchr(b'\n', &buf[self.scanned..]) {
            None => {
                self.scanned = buf.len();
                if buf.len() > self.limits.inline_max {
                    return Err(ProtocolError::InlineTooBig);
                }
                Ok(None)
            }
            Some(i) => {
                let end = self.scanned + i;
                self.scanned = 0;
                if end > self.limits.inline_max {
                    return Err(ProtocolError::InlineTooBig);
                }
                let line = buf.split_to(end + 1);
                let line = &line[..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                split_inline(line).map(Some)
            }
        }
    }
}

/// A decimal length as Redis' `string2ll` reads it (an optional `-`, digits,
/// no leading `+` or spaces, at most 18 digits here).
fn parse_len(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
    Some(if neg { -v } else { v })
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Splits an inline command line like Redis' `sdssplitargs`: spaces
/// separate arguments; "double quotes" take `\n \r \t \b \a \\ \" \xHH`
/// escapes; 'single quotes' take `\'`; a closing quote must be followed by
/// a space or the end.
pub(crate) fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == n {
            return Ok(args);
        }
        let mut cur = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                if i == n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 3 < n && line[i + 1] == b'x' && is_hex(line[i + 2]) && is_hex(line[i + 3]) {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
                i += 1;
            } else if in_single {
                if i == n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    cur.push(b'\'');
                    i += 1;
                } else if c == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
                i += 1;
            } else {
                if i == n {
                    break;
                }
                match line[i] {
                    c if c.is_ascii_whitespace() => break,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    c => cur.push(c),
                }
                i += 1;
            }
        }
        args.push(Bytes::from(cur));
    }
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn parse_all(chunks: &[&[u8]]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            while let Some(req) = p.next(&mut buf)? {
                out.push(req);
            }
        }
        Ok(out)
    }

    proptest! {
        /// Encode, then parse split at every point: the same arguments.
        #[test]
        fn multibulk_round_trips_at_every_split(args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..6)) {
            let wire = encode(&args);
            for split in 0..=wire.len() {
                let got = parse_all(&[&wire[..split], &wire[split..]]).expect("valid");
                prop_assert_eq!(got.len(), 1);
                let got: Vec<Vec<u8>> = got[0].iter().map(|b| b.to_vec()).collect();
                prop_assert_eq!(&got, &args);
            }
        }

        /// Pipelined requests fed one byte at a time come out whole, in order.
        #[test]
        fn pipelines_byte_by_byte(reqs in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..4), 1..5)) {
            let wire: Vec<u8> = reqs.iter().flat_map(|r| encode(r)).collect();
            let chunks: Vec<&[u8]> = wire.chunks(1).collect();
            let got = parse_all(&chunks).expect("valid");
            let got: Vec<Vec<Vec<u8>>> = got.iter().map(|r| r.iter().map(|b| b.to_vec()).collect()).collect();
            prop_assert_eq!(got, reqs);
        }

        /// Arbitrary bytes never panic; they parse or fail with a protocol error.
        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..200), split in 0usize..200) {
            let split = split.min(data.len());
            let _ = parse_all(&[&data[..split], &data[split..]]);
        }
    }

    #[test]
    fn inline_commands_split_like_redis() {
        let got = parse_all(&[b"SET k \"a b\\x41\\n\" 'it\\'s'\r\nPING\n"]).expect("valid");
        assert_eq!(got[0], vec![&b"SET"[..], b"k", b"a bA\n", b"it's"]);
        assert_eq!(got[1], vec![&b"PING"[..]]);
        assert_eq!(
            parse_all(&[b"\r\n\r\nPING\r\n"]).expect("valid").len(),
            1,
            "empty lines are skipped"
        );
        assert_eq!(parse_all(&[b"SET \"k\r\n"]), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(parse_all(&[b"SET \"k\"x\r\n"]), Err(ProtocolError::UnbalancedQuotes));
    }

    #[test]
    fn malformed_frames_give_redis_errors() {
        assert_eq!(parse_all(&[b"*x\r\n"]), Err(ProtocolError::MultibulkLength));
        assert_eq!(parse_all(&[b"*1\r\n:1\r\n"]), Err(ProtocolError::ExpectedBulk(':')));
        assert_eq!(parse_all(&[b"*1\r\n$-1\r\n"]), Err(ProtocolError::BulkLength));
        assert_eq!(parse_all(&[b"*1\r\n$999999999999\r\n"]), Err(ProtocolError::BulkLength));
        assert_eq!(parse_all(&[b"*1\r\n$1\r\nab\r\n"]), Err(ProtocolError::BulkTerminator));
        assert_eq!(
            parse_all(&[&vec![b'a'; 70 * 1024][..]]),
            Err(ProtocolError::InlineTooBig)
        );
        let mut long = b"*".to_vec();
        long.extend(vec![b'1'; 70 * 1024]);
        assert_eq!(parse_all(&[&long[..]]), Err(ProtocolError::CountTooBig));
        assert_eq!(
            ProtocolError::BulkLength.to_string(),
            "Protocol error: invalid bulk length"
        );
    }

    #[test]
    fn a_huge_count_allocates_nothing_up_front() {
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(&b"*2000000000\r\n"[..]);
        assert_eq!(p.next(&mut buf), Ok(None));
        assert!(!p.is_idle());
    }

    #[test]
    fn arguments_share_the_read_buffer() {
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::with_capacity(1024);
        buf.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n");
        let start = buf.as_ptr() as usize;
        let args = p.next(&mut buf).expect("valid").expect("whole");
        let at = args[1].as_ptr() as usize;
        assert!(
            at >= start && at < start + 1024,
            "the argument is a slice of the read buffer"
        );
    }

    #[test]
    fn the_query_buffer_limit_holds() {
        let limits = Limits {
            query_buffer_max: 100,
            ..Limits::default()
        };
        let mut p = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*1\r\n$1000\r\n"[..]);
        buf.extend_from_slice(&[b'x'; 200]);
        assert_eq!(p.next(&mut buf), Err(ProtocolError::QueryBufferLimit));
    }
}
