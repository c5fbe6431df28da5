//! What replication reports. Field names follow Redis' `INFO replication`
//! where one exists.

use serde::{Deserialize, Serialize};

use crate::protocol::Codec;

/// A follower's state as its primary sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowerState {
    /// Connected, not yet answered.
    Handshake,
    /// Receiving a snapshot (and the log beside it).
    FullSync,
    /// Streaming the log.
    Online,
}

/// One connected follower, as its primary sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerLink {
    /// Connection number on this primary.
    pub id: u64,
    /// Name the follower gave.
    pub name: String,
    /// Its client certificate's fingerprint (SHA-256 prefix).
    pub identity: String,
    /// Its address.
    pub addr: String,
    /// State.
    pub state: FollowerState,
    /// Offset it acknowledged as applied (readable there).
    pub applied: u64,
    /// Offset it acknowledged as durable.
    pub durable: u64,
    /// Offset sent so far.
    pub sent: u64,
    /// Bytes of log it has not applied.
    pub lag_bytes: u64,
    /// How long ago this primary had the first byte the follower has not
    /// applied (0 when caught up).
    pub lag_ms: u64,
    /// Milliseconds since its last ack.
    pub last_ack_ms: u64,
    /// Codec in use.
    pub codec: Codec,
    /// Log bytes before compression.
    pub bytes_raw: u64,
    /// Log bytes sent.
    pub bytes_wire: u64,
    /// Snapshot bytes of its full sync, if it had one (before compression).
    pub snapshot_bytes: u64,
    /// Snapshot bytes sent.
    pub snapshot_wire: u64,
}

/// A primary's replication stats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryStats {
    /// Followers connected (any state).
    pub connected_slaves: usize,
    /// End of the log.
    pub master_repl_offset: u64,
    /// Current replication id.
    pub master_replid: String,
    /// Previous replication id.
    pub master_replid2: String,
    /// Offset where the previous id's history ends.
    pub second_repl_offset: u64,
    /// Oldest offset a follower can continue from.
    pub repl_backlog_first_byte_offset: u64,
    /// Ring capacity.
    pub repl_backlog_size: u64,
    /// Full syncs served.
    pub sync_full: u64,
    /// Partial resyncs accepted.
    pub sync_partial_ok: u64,
    /// Partial resyncs refused (a full sync was needed instead).
    pub sync_partial_err: u64,
    /// Handshakes refused.
    pub rejected_connections: u64,
    /// Connections closed for malformed frames.
    pub protocol_errors: u64,
    /// Followers told to resync because they left the ring.
    pub resyncs_lagged: u64,
    /// Snapshot bytes streamed for full syncs, before compression.
    pub snapshot_bytes_sent: u64,
    /// Snapshot bytes streamed for full syncs, on the wire.
    pub snapshot_wire_sent: u64,
    /// Each follower.
    pub followers: Vec<FollowerLink>,
}

/// Whether a follower's link to its primary is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    /// Connected and streaming.
    Up,
    /// Not connected.
    Down,
}

/// A follower's replication stats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Link state.
    pub master_link_status: LinkStatus,
    /// The primary's address.
    pub master_host: String,
    /// Milliseconds since the last frame from the primary.
    pub master_last_io_ms: u64,
    /// A full sync is loading (`stale` is then true too).
    pub master_sync_in_progress: bool,
    /// The keyspace serves data older than the primary's history (a full
    /// sync is loading beside it).
    pub stale: bool,
    /// Offset applied.
    pub slave_repl_offset: u64,
    /// Offset durable in this follower's ring.
    pub durable_offset: u64,
    /// The primary's log end, as of its last ping.
    pub master_repl_offset: u64,
    /// Bytes behind the primary (as of its last ping).
    pub lag_bytes: u64,
    /// Full syncs completed.
    pub full_syncs: u64,
    /// Partial resyncs (continuations) accepted.
    pub partial_syncs: u64,
    /// Connections made.
    pub connects: u64,
    /// Full syncs requested again within `sync_loop_window_ms` of the last one.
    pub sync_loops: u64,
    /// Why the last sync loop happened.
    pub last_sync_loop_cause: Option<String>,
    /// Why the last full sync was needed.
    pub last_full_sync_reason: Option<String>,
    /// Bytes of this follower's history the primary did not have when it
    /// last joined (writes lost in a failover), summed.
    pub lost_bytes: u64,
    /// Log bytes received before decompression.
    pub bytes_raw: u64,
    /// Log and snapshot bytes received on the wire.
    pub bytes_wire: u64,
    /// Full syncs that began and ended before their swap (a link lost, the
    /// primary's resync, a load that failed), summed.
    pub failed_full_syncs: u64,
    /// Full syncs during which the ring filled: the log stream waited for
    /// the swap (the ring is smaller than the log written during the
    /// transfer; see `FollowerSession::handle_ring_full`).
    pub full_sync_log_pauses: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Stopped for good: a divergent stream, a record of the primary's that
    /// does not apply here, or `max_full_sync_attempts` failed full syncs in
    /// a row (`last_error` says which). Needs an operator.
    pub halted: bool,
}

impl ReplicaInfo {
    #[cfg_attr(not(feature = "quic"), allow(dead_code))]
    pub(crate) fn new(host: String) -> ReplicaInfo {
        ReplicaInfo {
            master_link_status: LinkStatus::Down,
            master_host: host,
            master_last_io_ms: 0,
            master_sync_in_progress: false,
            stale: false,
            slave_repl_offset: 0,
            durable_offset: 0,
            master_repl_offset: 0,
            lag_bytes: 0,
            full_syncs: 0,
            partial_syncs: 0,
            connects: 0,
            sync_loops: 0,
            last_sync_loop_cause: None,
            last_full_sync_reason: None,
            lost_bytes: 0,
            bytes_raw: 0,
            bytes_wire: 0,
            failed_full_syncs: 0,
            full_sync_log_pauses: 0,
            last_error: None,
            halted: false,
        }
    }
}
