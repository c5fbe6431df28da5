//! A minimal blocking HTTP/1.1 client for etcd's v3 JSON gateway: one
//! request per connection (`Connection: close`), a deadline on the whole
//! exchange, a bound on the response size, `Content-Length` and `chunked`
//! bodies. Nothing in a response can make it panic or allocate beyond the
//! bound.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::error::EtcdError;

/// One HTTP response: its status and (de-chunked) body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Sends `method path` with `body` to `addr` and reads the response, all
/// within `timeout`; a response beyond `max` bytes is refused.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
    max: usize,
) -> Result<Response, EtcdError> {
    let deadline = Instant::now() + timeout;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|source| EtcdError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    head.extend_from_slice(body);
    stream.set_write_timeout(Some(remaining(deadline, timeout)?))?;
    stream.write_all(&head).map_err(|e| io_or_timeout(e, timeout))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(r) = parse(&buf)? {
            return Ok(r);
        }
        stream.set_read_timeout(Some(remaining(deadline, timeout)?))?;
        let n = stream.read(&mut chunk).map_err(|e| io_or_timeout(e, timeout))?;
        if n == 0 {
            // The server closed: a body delimited by the close is complete.
            return parse_at_eof(&buf);
        }
        if buf.len() + n > max {
            return Err(EtcdError::TooLarge(max));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn remaining(deadline: Instant, timeout: Duration) -> Result<Duration, EtcdError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(EtcdError::Timeout(timeout));
    }
    Ok(left)
}

fn io_or_timeout(e: std::io::Error, timeout: Duration) -> EtcdError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => EtcdError::Timeout(timeout),
        _ => EtcdError::Io(e),
    }
}

/// How the body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// The status line and headers, once complete: (status, framing, where the
/// body starts).
fn head(buf: &[u8]) -> Result<Option<(u16, Framing, usize)>, EtcdError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| EtcdError::Http("headers are not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or(EtcdError::Http("no status line"))?;
    let mut parts = status_line.split(' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(EtcdError::Http("not an HTTP/1.x response"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(EtcdError::Http("no status code"))?;
    let mut framing = Framing::UntilClose;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(EtcdError::Http("a header without a colon"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value.parse().map_err(|_| EtcdError::Http("a bad Content-Length"))?;
            framing = Framing::Length(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            framing = Framing::Chunked;
        }
    }
    Ok(Some((status, framing, end + 4)))
}

/// The response if `buf` holds all of it.
fn parse(buf: &[u8]) -> Result<Option<Response>, EtcdError> {
    let Some((status, framing, start)) = head(buf)? else {
        return Ok(None);
    };
    let body = &buf[start..];
    Ok(match framing {
        Framing::Length(n) => (body.len() >= n).then(|| Response {
            status,
            body: body[..n].to_vec(),
        }),
        Framing::Chunked => dechunk(body)?.map(|body| Response { status, body }),
        Framing::UntilClose => None,
    })
}

fn parse_at_eof(buf: &[u8]) -> Result<Response, EtcdError> {
    if let Some(r) = parse(buf)? {
        return Ok(r);
    }
    match head(buf)? {
        Some((status, Framing::UntilClose, start)) => Ok(Response {
            status,
            body: buf[start..].to_vec(),
        }),
        _ => Err(EtcdError::Http("the connection closed before the response ended")),
    }
}

/// A chunked body's bytes once its last (empty) chunk has arrived.
fn dechunk(mut body: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(body, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&body[..eol]).map_err(|_| EtcdError::Http("a bad chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| EtcdError::Http("a bad chunk size"))?;
        let rest = &body[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        // `size` is bounded by what arrived (itself bounded by `max`).
        let Some(end) = size.checked_add(2).filter(|&e| e <= rest.len()) else {
            return Ok(None);
        };
        if &rest[size..end] != b"\r\n" {
            return Err(EtcdError::Http("a chunk not followed by CRLF"));
        }
        out.extend_from_slice(&rest[..size]);
        body = &rest[end..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_and_chunked_bodies() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            .expect("valid")
            .expect("complete");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}")
            .expect("valid")
            .is_none());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse(chunked).expect("valid").expect("complete");
        assert_eq!(r.body, b"abcde");
        assert!(parse(&chunked[..chunked.len() - 7]).expect("valid").is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
            b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // A huge declared chunk that has not arrived is incomplete, not an allocation.
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\nab").expect("valid");
        assert!(r.is_none());
    }
}
