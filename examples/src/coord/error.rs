//! Why a call to etcd failed.

use std::net::SocketAddr;
use std::time::Duration;

/// An etcd call's failure. Every variant but [`EtcdError::Url`] can be
/// transient: callers that hold a lease treat any of them as "no renewal".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The endpoint is not `http://host:port`.
    #[error("bad etcd URL {url:?}: {why}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No TCP connection to etcd.
    #[error("connecting to etcd at {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed midway.
    #[error("etcd I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No complete answer within the call's timeout.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer was larger than the client's bound.
    #[error("etcd's answer is larger than {0} bytes")]
    TooLarge(usize),
    /// Not a valid HTTP/1.1 response.
    #[error("malformed HTTP response from etcd: {0}")]
    Http(&'static str),
    /// etcd (or its gateway) answered with an error.
    #[error("etcd error (HTTP {status}, code {code}): {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The gRPC code in the body (0 if none).
        code: i64,
        /// The message in the body.
        message: String,
    },
    /// The body is not the JSON the call expects.
    #[error("unexpected JSON from etcd: {0}")]
    Json(String),
}
