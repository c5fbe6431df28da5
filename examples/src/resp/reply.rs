//! Replies, encoded straight into a connection's output buffer.

use bytes::{BufMut, BytesMut};

/// The protocol a connection speaks: RESP2 until `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2 (the default).
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// Writes replies into `out` in the connection's protocol. RESP3 types
/// fall back to their RESP2 forms as Redis' `addReply*` functions do: a map
/// becomes a flat array, a set an array, a double a bulk string, a boolean
/// an integer, a verbatim string a bulk string, null `$-1` (or `*-1` for a
/// null array).
#[derive(Debug)]
pub struct ReplyWriter<'a> {
    out: &'a mut BytesMut,
    proto: Protocol,
}

impl<'a> ReplyWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut BytesMut, proto: Protocol) -> ReplyWriter<'a> {
        ReplyWriter { out, proto }
    }

    /// The protocol replies are written in.
    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    /// Switches the protocol for the replies that follow (HELLO).
    pub fn set_protocol(&mut self, proto: Protocol) {
        self.proto = proto;
    }

    /// Bytes written so far into the output buffer (all replies pending).
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    fn line(&mut self, prefix: u8, body: &[u8]) {
        self.out.put_u8(prefix);
        self.out.put_slice(body);
        self.out.put_slice(b"\r\n");
    }

    fn header(&mut self, prefix: u8, n: i64) {
        let mut b = itoa::Buffer::new();
        self.line(prefix, b.format(n).as_bytes());
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.out.put_slice(b"+OK\r\n");
    }

    /// A simple string (no CR or LF in it).
    pub fn simple(&mut self, s: &str) {
        self.line(b'+', s.as_bytes());
    }

    /// An error: `msg` starts with its code (`ERR`, `WRONGTYPE`, ...).
    /// CR and LF in it become spaces, as Redis does.
    pub fn error(&mut self, msg: &str) {
        self.out.put_u8(b'-');
        for b in msg.bytes() {
            self.out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.out.put_slice(b"\r\n");
    }

    /// An integer.
    pub fn int(&mut self, v: i64) {
        self.header(b':', v);
    }

    /// A bulk string.
    pub fn bulk(&mut self, b: &[u8]) {
        self.header(b'$', b.len() as i64);
        self.out.put_slice(b);
        self.out.put_slice(b"\r\n");
    }

    /// A bulk string, or null.
    pub fn opt_bulk(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bulk(b),
            None => self.null(),
        }
    }

    /// Null: `_` in RESP3, `$-1` in RESP2.
    pub fn null(&mut self) {
        match self.proto {
            Protocol::Resp3 => self.out.put_slice(b"_\r\n"),
            Protocol::Resp2 => self.out.put_slice(b"$-1\r\n"),
        }
    }

    /// A null array: `_` in RESP3, `*-1` in RESP2 (EXEC after a WATCH fired).
    pub fn null_array(&mut self) {
        match self.proto {
            Protocol::Resp3 => self.out.put_slice(b"_\r\n"),
            Protocol::Resp2 => self.out.put_slice(b"*-1\r\n"),
        }
    }

    /// The header of an array of `n` elements (written next).
    pub fn array(&mut self, n: usize) {
        self.header(b'*', n as i64);
    }

    /// The header of a map of `n` pairs (RESP2: an array of `2n`).
    pub fn map(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp3 => self.header(b'%', n as i64),
            Protocol::Resp2 => self.header(b'*', 2 * n as i64),
        }
    }

    /// The header of a set of `n` elements (RESP2: an array).
    pub fn set(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp3 => self.header(b'~', n as i64),
            Protocol::Resp2 => self.header(b'*', n as i64),
        }
    }

    /// A double (RESP2: a bulk string), formatted as Redis does.
    pub fn double(&mut self, v: f64) {
        let s = format_double(v);
        match self.proto {
            Protocol::Resp3 => self.line(b',', s.as_bytes()),
            Protocol::Resp2 => self.bulk(s.as_bytes()),
        }
    }

    /// A boolean (RESP2: the integer 1 or 0).
    pub fn boolean(&mut self, v: bool) {
        match self.proto {
            Protocol::Resp3 => self.out.put_slice(if v { b"#t\r\n" } else { b"#f\r\n" }),
            Protocol::Resp2 => self.int(i64::from(v)),
        }
    }

    /// A verbatim string with a three-letter format (`txt`); RESP2: a bulk string.
    pub fn verbatim(&mut self, format: &str, text: &[u8]) {
        match self.proto {
            Protocol::Resp3 => {
                self.header(b'=', (text.len() + 4) as i64);
                self.out.put_slice(format.as_bytes());
                self.out.put_u8(b':');
                self.out.put_slice(text);
                self.out.put_slice(b"\r\n");
            }
            Protocol::Resp2 => self.bulk(text),
        }
    }
}

/// A double as Redis prints it: integers without a fraction, others with
/// up to 17 significant digits and no trailing zeros (`%.17g`, the
/// shortest form that reads back the same); `inf`, `-inf`, `nan`.
pub fn format_double(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's shortest round-trip form; switch to exponent notation where
    // `%.17g` would (exponent < -4 or >= 17).
    let exp = if v == 0.0 { 0 } else { v.abs().log10().floor() as i32 };
    if (-4..17).contains(&exp) {
        let s = format!("{v}");
        if s == "-0" {
            return "-0".into();
        }
        s
    } else {
        let s = format!("{v:e}");
        // Rust writes `1e20`; C's %g writes `1e+20`.
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
            None => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(proto: Protocol, f: impl FnOnce(&mut ReplyWriter<'_>)) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(&mut ReplyWriter::new(&mut out, proto));
        out.to_vec()
    }

    #[test]
    fn resp3_types_fall_back_in_resp2() {
        assert_eq!(w(Protocol::Resp2, |r| r.map(2)), b"*4\r\n");
        assert_eq!(w(Protocol::Resp3, |r| r.map(2)), b"%2\r\n");
        assert_eq!(w(Protocol::Resp2, |r| r.null()), b"$-1\r\n");
        assert_eq!(w(Protocol::Resp3, |r| r.null()), b"_\r\n");
        assert_eq!(w(Protocol::Resp2, |r| r.null_array()), b"*-1\r\n");
        assert_eq!(w(Protocol::Resp2, |r| r.double(10.6)), b"$4\r\n10.6\r\n");
        assert_eq!(w(Protocol::Resp3, |r| r.double(10.6)), b",10.6\r\n");
        assert_eq!(w(Protocol::Resp2, |r| r.boolean(true)), b":1\r\n");
        assert_eq!(w(Protocol::Resp3, |r| r.verbatim("txt", b"hi")), b"=6\r\ntxt:hi\r\n");
        assert_eq!(w(Protocol::Resp2, |r| r.error("ERR a\r\nb")), b"-ERR a  b\r\n");
    }

    #[test]
    fn doubles_print_like_redis() {
        assert_eq!(format_double(10.5 + 0.1), "10.6");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(-0.0), "-0");
        assert_eq!(format_double(5.0e3), "5000");
        assert_eq!(format_double(1e20), "1e+20");
        assert_eq!(format_double(1.5e-7), "1.5e-07");
        assert_eq!(format_double(f64::INFINITY), "inf");
    }
}
