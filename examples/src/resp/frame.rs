//! Decoded replies ([`Frame`]), for clients and tests, with an encoder
//! that goes through [`ReplyWriter`] so both sides share one encoding.

use bytes::BytesMut;

use super::reply::{Protocol, ReplyWriter};

/// One reply, as a RESP3 client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+text`.
    Simple(String),
    /// `-CODE text`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$n` bytes.
    Bulk(Vec<u8>),
    /// `_`, `$-1` or `*-1`.
    Null,
    /// `*n` elements.
    Array(Vec<Frame>),
    /// `%n` pairs.
    Map(Vec<(Frame, Frame)>),
    /// `~n` elements.
    Set(Vec<Frame>),
    /// `,x` (kept as its text, so `nan` and `inf` compare).
    Double(String),
    /// `#t` / `#f`.
    Bool(bool),
    /// `=n fmt:text`.
    Verbatim(String, Vec<u8>),
}

/// Why bytes are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a RESP reply: {0}")]
pub struct FrameError(pub &'static str);

impl Frame {
    /// Encodes the frame in `proto` (RESP3 types fall back in RESP2).
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        let mut w = ReplyWriter::new(out, proto);
        self.write(&mut w);
    }

    fn write(&self, w: &mut ReplyWriter<'_>) {
        match self {
            Frame::Simple(s) => w.simple(s),
            Frame::Error(s) => w.error(s),
            Frame::Int(i) => w.int(*i),
            Frame::Bulk(b) => w.bulk(b),
            Frame::Null => w.null(),
            Frame::Array(items) => {
                w.array(items.len());
                items.iter().for_each(|f| f.write(w));
            }
            Frame::Map(pairs) => {
                w.map(pairs.len());
                for (k, v) in pairs {
                    k.write(w);
                    v.write(w);
                }
            }
            Frame::Set(items) => {
                w.set(items.len());
                items.iter().for_each(|f| f.write(w));
            }
            Frame::Double(s) => match s.parse::<f64>() {
                Ok(v) => w.double(v),
                Err(_) => w.simple(s),
            },
            Frame::Bool(b) => w.boolean(*b),
            Frame::Verbatim(f, t) => w.verbatim(f, t),
        }
    }

    /// Parses one reply from the front of `input`: `Ok(Some((frame, used)))`,
    /// `Ok(None)` if `input` ends inside it, or an error. Nesting is capped
    /// at 64 levels and counts are checked against the input before any
    /// allocation.
    pub fn parse(input: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        parse_at(input, 0, 0)
    }

    /// The bulk or simple string's bytes, if it is one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Bulk(b) => Some(b),
            Frame::Simple(s) => Some(s.as_bytes()),
            Frame::Verbatim(_, t) => Some(t),
            _ => None,
        }
    }
}

fn line(input: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = input.get(at..)?;
    let i = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..i], at + i + 2))
}

fn int(s: &[u8]) -> Result<i64, FrameError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(FrameError("bad integer"))
}

fn text(s: &[u8]) -> Result<String, FrameError> {
    String::from_utf8(s.to_vec()).map_err(|_| FrameError("text is not UTF-8"))
}

fn parse_at(input: &[u8], at: usize, depth: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    if depth > 64 {
        return Err(FrameError("nested too deep"));
    }
    let Some(&kind) = input.get(at) else { return Ok(None) };
    let Some((body, next)) = line(input, at + 1) else {
        return Ok(None);
    };
    let aggregate = |n: i64, per: usize| -> Result<Option<(Vec<Frame>, usize)>, FrameError> {
        let n = usize::try_from(n).map_err(|_| FrameError("negative count"))?;
        let count = n.checked_mul(per).ok_or(FrameError("count too large"))?;
        if count > input.len() - next {
            // Every element takes at least one byte: it cannot be complete
            // yet, and the count must not size an allocation.
            return Ok(None);
        }
        // Grown as elements parse: a large count in few bytes allocates
        // nothing up front.
        let mut items = Vec::with_capacity(count.min(1024));
        let mut pos = next;
        for _ in 0..count {
            match parse_at(input, pos, depth + 1)? {
                Some((f, p)) => {
                    items.push(f);
                    pos = p;
                }
                None => return Ok(None),
            }
        }
        Ok(Some((items, pos)))
    };
    let frame = match kind {
        b'+' => (Frame::Simple(text(body)?), next),
        b'-' => (Frame::Error(text(body)?), next),
        b':' => (Frame::Int(int(body)?), next),
        b'_' => (Frame::Null, next),
        b'#' => match body {
            b"t" => (Frame::Bool(true), next),
            b"f" => (Frame::Bool(false), next),
            _ => return Err(FrameError("bad boolean")),
        },
        b',' => (Frame::Double(text(body)?), next),
        b'$' | b'=' => {
            let n = int(body)?;
            if n < 0 {
                if kind == b'$' && n == -1 {
                    return Ok(Some((Frame::Null, next)));
                }
                return Err(FrameError("bad length"));
            }
            let n = n as usize;
            let Some(end) = next.checked_add(n) else {
                return Err(FrameError("bad length"));
            };
            if input.len() < end + 2 {
                return Ok(None);
            }
            if &input[end..end + 2] != b"\r\n" {
                return Err(FrameError("bulk not terminated"));
            }
            let data = input[next..end].to_vec();
            if kind == b'=' {
                if data.len() < 4 || data[3] != b':' {
                    return Err(FrameError("bad verbatim string"));
                }
                (Frame::Verbatim(text(&data[..3])?, data[4..].to_vec()), end + 2)
            } else {
                (Frame::Bulk(data), end + 2)
            }
        }
        b'*' | b'~' | b'%' => {
            let n = int(body)?;
            if n == -1 && kind == b'*' {
                return Ok(Some((Frame::Null, next)));
            }
            let per = if kind == b'%' { 2 } else { 1 };
            let Some((items, pos)) = aggregate(n, per)? else {
                return Ok(None);
            };
            let f = match kind {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                _ => {
                    let mut it = items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Frame::Map(pairs)
                }
            };
            (f, pos)
        }
        _ => return Err(FrameError("unknown type byte")),
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame() -> impl Strategy<Value = Frame> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 ]{0,12}".prop_map(Frame::Simple),
            "ERR [a-z ]{0,12}".prop_map(Frame::Error),
            any::<i64>().prop_map(Frame::Int),
            prop::collection::vec(any::<u8>(), 0..24).prop_map(Frame::Bulk),
            Just(Frame::Null),
            any::<bool>().prop_map(Frame::Bool),
            prop_oneof![Just(1.5f64), Just(-0.25), Just(3.0), Just(1e20), Just(f64::INFINITY)]
                .prop_map(|v| Frame::Double(crate::resp::format_double(v))),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(|t| Frame::Verbatim("txt".into(), t)),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Frame::Array),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Frame::Set),
                prop::collection::vec((inner.clone(), inner), 0..3).prop_map(Frame::Map),
            ]
        })
    }

    proptest! {
        /// RESP3: encode, then parse every prefix: incomplete until whole,
        /// then the same frame.
        #[test]
        fn resp3_frames_round_trip_at_every_split(f in frame()) {
            let mut out = BytesMut::new();
            f.encode(Protocol::Resp3, &mut out);
            for cut in 0..out.len() {
                prop_assert_eq!(Frame::parse(&out[..cut]), Ok(None));
            }
            prop_assert_eq!(Frame::parse(&out), Ok(Some((f, out.len()))));
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Frame::parse(&data);
        }
    }
}
