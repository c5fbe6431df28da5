//! Replication settings (serde-deserializable).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::protocol::Codec;

/// A primary's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PrimaryConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Codecs offered to followers (the follower's first preference that is
    /// listed here wins).
    pub codecs: Vec<Codec>,
    /// Log bytes read per data frame (at least one record is sent; less
    /// when a follower's limits are smaller, see
    /// [`Limits`](crate::protocol::Limits)).
    pub batch_bytes: usize,
    /// Largest data frame sent (with each follower, the smaller of this
    /// and the follower's own `max_frame_bytes`; at least
    /// [`MIN_DATA_FRAME`](crate::protocol::MIN_DATA_FRAME)). A record that
    /// needs a larger frame stops that follower at the record, with the
    /// reason. Frames read from followers are control frames, limited to
    /// [`MAX_CONTROL_FRAME`](crate::protocol::MAX_CONTROL_FRAME).
    pub max_frame_bytes: usize,
    /// Most follower connections served at once, counting those that have
    /// not said hello yet. One more is closed as soon as its QUIC handshake
    /// completes, with close code 4 and the reason `too many followers (the
    /// limit is N)`, and counted in `rejected_connections`; it may retry
    /// once a slot is free. Default 64.
    pub max_followers: usize,
    /// Choose a full sync when a partial one would replay more than this
    /// many bytes (`None`: whatever the ring holds).
    pub max_replay_bytes: Option<u64>,
    /// QUIC stream window (bytes in flight per stream to a follower; size
    /// it for the link's bandwidth × RTT). What a follower may send the
    /// primary is limited to its control stream and 1 MiB windows.
    pub window_bytes: u64,
    /// Interval of pings to followers.
    pub ping_interval_ms: u64,
    /// A connection silent for this long is closed.
    pub idle_timeout_ms: u64,
    /// A follower that does not say hello within this time is dropped.
    pub handshake_timeout_ms: u64,
    /// A full sync whose follower takes no snapshot bytes for this long is
    /// aborted (writes touching keys not yet serialized wait for it).
    pub snapshot_send_timeout_ms: u64,
    /// Optional write gate (Redis' `min-replicas-to-write`).
    pub write_gate: Option<WriteGateConfig>,
    /// The failover epoch served in the history (0: no failover); see
    /// [`History::epoch`](crate::protocol::History::epoch). Changed while
    /// serving with `Primary::set_epoch`.
    pub epoch: u64,
}

impl Default for PrimaryConfig {
    fn default() -> Self {
        PrimaryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            codecs: vec![Codec::Zstd, Codec::Lz4],
            batch_bytes: 256 * 1024,
            max_frame_bytes: 64 << 20,
            max_followers: 64,
            max_replay_bytes: None,
            window_bytes: 16 << 20,
            ping_interval_ms: 1000,
            idle_timeout_ms: 10_000,
            handshake_timeout_ms: 5_000,
            snapshot_send_timeout_ms: 30_000,
            write_gate: None,
            epoch: 0,
        }
    }
}

/// What the write gate does when too few followers are within the budget.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GateMode {
    /// Refuse the write at once (`NOREPLICAS`).
    Refuse,
    /// Wait up to `max_delay_ms` for followers to catch up, then refuse.
    /// The wait blocks the writing thread: do not write from tasks running
    /// on the primary's own tokio runtime in this mode.
    Delay,
}

/// Refuse or delay writes while fewer than `min_followers` are connected
/// and within `max_lag_bytes` of the primary's log end, with an ack no
/// older than `max_ack_age_ms`. Honest about what it guarantees: it bounds
/// how far behind the followers were *before* a write, not that the write
/// itself reached them (use `wait_for_followers` for that).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct WriteGateConfig {
    /// Followers that must be within the budget.
    pub min_followers: usize,
    /// Lag budget in bytes.
    pub max_lag_bytes: u64,
    /// An ack older than this does not count.
    pub max_ack_age_ms: u64,
    /// Refuse or delay.
    pub mode: GateMode,
    /// Longest delay (`Delay` mode).
    pub max_delay_ms: u64,
}

impl Default for WriteGateConfig {
    fn default() -> Self {
        WriteGateConfig {
            min_followers: 1,
            max_lag_bytes: 1 << 20,
            max_ack_age_ms: 10_000,
            mode: GateMode::Refuse,
            max_delay_ms: 100,
        }
    }
}

/// A follower's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FollowerConfig {
    /// The primary's address.
    pub primary: SocketAddr,
    /// Name the primary's certificate must carry.
    pub server_name: String,
    /// This follower's name (in the primary's stats and logs).
    pub name: String,
    /// Codecs accepted, preferred first.
    pub codecs: Vec<Codec>,
    /// Largest data frame accepted (log and snapshot streams; control
    /// frames are limited to
    /// [`MAX_CONTROL_FRAME`](crate::protocol::MAX_CONTROL_FRAME)). Sent in
    /// `Hello` with the ring's record limit and capacity: the primary cuts
    /// its frames to fit, and a record that cannot fit (or that the ring
    /// refuses) halts the follower with the reason. At least
    /// [`MIN_DATA_FRAME`](crate::protocol::MIN_DATA_FRAME).
    pub max_frame_bytes: usize,
    /// QUIC stream window.
    pub window_bytes: u64,
    /// First reconnect delay; doubles up to `max_backoff_ms`, with jitter.
    pub min_backoff_ms: u64,
    /// Longest reconnect delay.
    pub max_backoff_ms: u64,
    /// A full sync requested again within this time after one completed is
    /// reported as a sync loop.
    pub sync_loop_window_ms: u64,
    /// A connection silent for this long is closed.
    pub idle_timeout_ms: u64,
    /// Interval of acks while idle (acks follow every applied batch).
    pub ack_interval_ms: u64,
    /// Full syncs that may fail in a row (begun, never swapped in) before
    /// the follower halts and says why (`ReplicaInfo::halted`,
    /// `last_error`) rather than start over forever. 0: no limit.
    pub max_full_sync_attempts: u32,
    /// An observer (a backup process): the primary serves it as any
    /// follower but never counts it for WAIT (`wait_for_followers`) or the
    /// write gate. Sent in `Hello`; a primary that predates the flag
    /// refuses the connection. Default false.
    pub observer: bool,
    /// The newest failover epoch this follower knows: a primary whose
    /// history has an older one is refused (a deposed primary), and each
    /// history adopted raises it. 0: any.
    pub min_epoch: u64,
}

impl FollowerConfig {
    /// Defaults for following `primary`.
    pub fn new(primary: SocketAddr) -> FollowerConfig {
        FollowerConfig {
            primary,
            ..FollowerConfig::default()
        }
    }
}

impl Default for FollowerConfig {
    fn default() -> Self {
        FollowerConfig {
            primary: SocketAddr::from(([127, 0, 0, 1], 7480)),
            server_name: "localhost".into(),
            name: "follower".into(),
            codecs: vec![Codec::Lz4, Codec::Zstd],
            max_frame_bytes: 64 << 20,
            window_bytes: 16 << 20,
            min_backoff_ms: 50,
            max_backoff_ms: 5_000,
            sync_loop_window_ms: 30_000,
            idle_timeout_ms: 10_000,
            ack_interval_ms: 200,
            max_full_sync_attempts: 10,
            observer: false,
            min_epoch: 0,
        }
    }
}
