//! A small blocking RESP2 client over TCP, for the server's own outgoing
//! connections (a slot migration's target pulling from its source) and the
//! `ringkv-cluster` tool: one request at a time, every read and write
//! bounded by a timeout, a reply bounded in size.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::frame::{Frame, FrameError};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, reading or writing failed (or timed out).
    #[error("{endpoint}: {source}")]
    Io {
        /// The server.
        endpoint: String,
        /// The error.
        source: std::io::Error,
    },
    /// The reply is not RESP.
    #[error("{endpoint}: bad reply: {source}")]
    Protocol {
        /// The server.
        endpoint: String,
        /// What is wrong with it.
        source: FrameError,
    },
    /// The reply would exceed the client's limit.
    #[error("{endpoint}: a reply over {limit} bytes")]
    TooLarge {
        /// The server.
        endpoint: String,
        /// The limit.
        limit: usize,
    },
    /// The server closed the connection.
    #[error("{endpoint}: connection closed")]
    Closed {
        /// The server.
        endpoint: String,
    },
}

/// One connection to a RESP server.
///
/// ```no_run
/// use std::time::Duration;
/// use ringkv_examples::resp::{BlockingClient, Frame};
/// let mut c = BlockingClient::connect("127.0.0.1:6379", Duration::from_secs(5))?;
/// assert_eq!(c.call(&[b"PING"])?, Frame::Simple("PONG".into()));
/// # Ok::<(), ringkv_examples::resp::ClientError>(())
/// ```
#[derive(Debug)]
pub struct BlockingClient {
    stream: TcpStream,
    endpoint: String,
    buf: Vec<u8>,
    limit: usize,
}

/// Bytes a reply may have unless [`BlockingClient::set_reply_limit`] says
/// otherwise.
pub const DEFAULT_REPLY_LIMIT: usize = 64 << 20;

impl BlockingClient {
    /// Connects to `endpoint` (`host:port`); `timeout` bounds the connect
    /// and then every read and write.
    pub fn connect(endpoint: &str, timeout: Duration) -> Result<BlockingClient, ClientError> {
        let io = |source| ClientError::Io {
            endpoint: endpoint.to_string(),
            source,
        };
        let addr = endpoint
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| io(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))?;
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let _ = stream.set_nodelay(true);
        Ok(BlockingClient {
            stream,
            endpoint: endpoint.to_string(),
            buf: Vec::new(),
            limit: DEFAULT_REPLY_LIMIT,
        })
    }

    /// The largest reply accepted, in bytes.
    pub fn set_reply_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The server's `host:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one command and reads its reply (an error reply is
    /// `Ok(Frame::Error)`: the caller decides).
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, ClientError> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        let endpoint = self.endpoint.clone();
        let io = |source| ClientError::Io {
            endpoint: endpoint.clone(),
            source,
        };
        self.stream.write_all(&req).map_err(io)?;
        loop {
            match Frame::parse(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(ClientError::Protocol {
                        endpoint: self.endpoint.clone(),
                        source,
                    })
                }
            }
            if self.buf.len() >= self.limit {
                return Err(ClientError::TooLarge {
                    endpoint: self.endpoint.clone(),
                    limit: self.limit,
                });
            }
            // Reads grow with the reply, so that a large one is parsed
            // again only a logarithmic number of times.
            let want = self.buf.len().max(64 << 10).min(self.limit - self.buf.len());
            let start = self.buf.len();
            self.buf.resize(start + want, 0);
            let n = match self.stream.read(&mut self.buf[start..]) {
                Ok(n) => n,
                // A signal (SIGSTOP/SIGCONT of this process) interrupts
                // the read: nothing was lost, read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    self.buf.truncate(start);
                    continue;
                }
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(io(e));
                }
            };
            self.buf.truncate(start + n);
            if n == 0 {
                return Err(ClientError::Closed {
                    endpoint: self.endpoint.clone(),
                });
            }
        }
    }
}
