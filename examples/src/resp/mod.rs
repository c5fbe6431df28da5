//! The Redis protocol (RESP2 and RESP3) as ringkv's servers speak it.
//!
//! - [`RequestParser`]: a resumable parser of client requests (multibulk
//!   arrays of bulk strings, and inline commands as redis-cli and
//!   redis-benchmark's `PING_INLINE` send them). It keeps its place in a
//!   partial frame, so bytes already looked at are never scanned again, and
//!   it hands arguments out as [`bytes::Bytes`] slices of the read buffer.
//!   Limits and error texts are Redis' ([`Limits`], [`ProtocolError`]).
//! - [`ReplyWriter`]: replies encoded straight into a connection's output
//!   buffer, in RESP2 or RESP3 ([`Protocol`]); RESP3 types (maps, sets,
//!   doubles, booleans, verbatim strings, nulls) fall back to their RESP2
//!   forms the way Redis does.
//! - [`Frame`]: a decoded reply, for clients and tests (`Frame::parse`).
//! - [`BlockingClient`]: one blocking connection, for the server's own
//!   outgoing calls (a slot migration) and the `ringkv-cluster` tool.
//!
//! ```
//! use bytes::BytesMut;
//! use ringkv_examples::resp::{Limits, Protocol, ReplyWriter, RequestParser};
//!
//! let mut parser = RequestParser::new(Limits::default());
//! let mut input = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk"[..]);
//! assert!(parser.next(&mut input)?.is_none()); // a partial frame
//! input.extend_from_slice(b"\r\n");
//! let args = parser.next(&mut input)?.expect("a whole request");
//! assert_eq!(args, vec!["GET", "k"]);
//!
//! let mut out = BytesMut::new();
//! ReplyWriter::new(&mut out, Protocol::Resp2).bulk(b"v");
//! assert_eq!(&out[..], b"$1\r\nv\r\n");
//! # Ok::<(), ringkv_examples::resp::ProtocolError>(())
//! ```

mod client;
mod frame;
mod reply;
mod request;

pub use client::{BlockingClient, ClientError, DEFAULT_REPLY_LIMIT};
pub use frame::{Frame, FrameError};
pub use reply::{format_double, Protocol, ReplyWriter};
pub use request::{Limits, ProtocolError, RequestParser};
