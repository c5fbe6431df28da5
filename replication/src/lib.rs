//! ringkv replication over QUIC.
//!
//! A [`Primary`] serves its engine's ring log to followers; a [`Follower`]
//! keeps a byte-identical ring (same offsets) and an identical keyspace.
//! Followers are only offsets into the primary's ring: nothing is buffered
//! per follower, and one that falls off the ring is resynced with a
//! snapshot streamed beside the log. See [`protocol`] for the wire format,
//! [`session`] for the sans-IO session state machines the QUIC drivers
//! run, and ARCHITECTURE.md at the repository root for the map.
//!
//! ```no_run
//! use ringkv::{Config, Engine};
//! use ringkv_replication::{blocking, tls::DevCerts, FollowerConfig, PrimaryConfig};
//!
//! let ca = DevCerts::new("dev CA")?;
//! let server = ca.material(&ca.server(&["localhost"])?)?;
//! let client = ca.material(&ca.client("follower-1")?)?;
//!
//! let primary_engine = Engine::builder().anonymous_log().build()?;
//! let primary = blocking::Primary::start(primary_engine.clone(), PrimaryConfig::default(), server)?;
//!
//! let follower_engine = Engine::builder().anonymous_log().build()?;
//! let follower = blocking::Follower::start(
//!     follower_engine.clone(),
//!     FollowerConfig::new(primary.local_addr()),
//!     client,
//! )?;
//! primary_engine.set("k", "v")?;
//! let at = primary_engine.last_write_offset().expect("logged");
//! assert!(follower_engine.wait_applied(at, std::time::Duration::from_secs(5)));
//! assert_eq!(follower_engine.get("k")?.expect("replicated"), "v");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "quic")]
pub mod blocking;
pub mod compress;
mod config;
#[cfg(feature = "quic")]
mod follower;
#[cfg(feature = "quic")]
mod io;
#[cfg(feature = "quic")]
mod primary;
pub mod protocol;
pub mod session;
mod stats;
#[cfg(feature = "quic")]
pub mod tls;

pub use config::{FollowerConfig, GateMode, PrimaryConfig, WriteGateConfig};
#[cfg(feature = "quic")]
pub use follower::Follower;
#[cfg(feature = "quic")]
pub use primary::Primary;
pub use stats::{FollowerLink, FollowerState, LinkStatus, PrimaryStats, ReplicaInfo};

/// Replication errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplError {
    /// The engine refused an operation.
    #[error(transparent)]
    Engine(#[from] ringkv::Error),
    /// TLS material or configuration.
    #[error("TLS: {0}")]
    Tls(String),
    /// A malformed frame from the peer.
    #[error("protocol: {0}")]
    Protocol(#[from] protocol::ProtocolError),
    /// Compressed data that does not decompress.
    #[error(transparent)]
    Compress(#[from] compress::CompressError),
    /// QUIC connection failures.
    #[error("connection: {0}")]
    Connection(String),
    /// The peer refused or misbehaved.
    #[error("peer: {0}")]
    Peer(String),
    /// The bytes received contradict this follower's ring.
    #[error("divergent stream: {0}")]
    Divergent(String),
    /// The primary's stream holds what this follower cannot take (a
    /// record or frame beyond its limits, named with the offset): it halts.
    #[error("incompatible with the primary: {0}")]
    Incompatible(String),
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// Timed out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// I/O.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(feature = "quic")]
impl From<quinn::ConnectionError> for ReplError {
    fn from(e: quinn::ConnectionError) -> Self {
        match e {
            // The primary's refusal for good, however the follower learns it.
            quinn::ConnectionError::ApplicationClosed(c) if c.error_code == io::code::INCOMPATIBLE.into() => {
                ReplError::Incompatible(String::from_utf8_lossy(&c.reason).into_owned())
            }
            other => ReplError::Connection(other.to_string()),
        }
    }
}

// A lost connection is reported with its cause (quinn's stream errors say
// only "connection lost"): the peer's close reason, such as a primary
// refusing one follower too many, reaches the logs and `last_error`.

#[cfg(feature = "quic")]
impl From<quinn::WriteError> for ReplError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => c.into(),
            other => ReplError::Connection(other.to_string()),
        }
    }
}

#[cfg(feature = "quic")]
impl From<quinn::ReadError> for ReplError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => c.into(),
            other => ReplError::Connection(other.to_string()),
        }
    }
}

#[cfg(feature = "quic")]
impl From<quinn::ReadExactError> for ReplError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::ReadError(r) => r.into(),
            other => ReplError::Connection(other.to_string()),
        }
    }
}

#[cfg(feature = "quic")]
impl From<quinn::ConnectError> for ReplError {
    fn from(e: quinn::ConnectError) -> Self {
        ReplError::Connection(e.to_string())
    }
}

#[cfg(feature = "quic")]
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
