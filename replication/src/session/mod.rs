//! The replication sessions without I/O, in the manner of quinn-proto
//! under quinn: plain state machines that take events and return actions.
//!
//! - [`PrimarySession`] is one follower's connection as its primary sees
//!   it: the handshake and its outcome ([`crate::protocol::decide`]), the
//!   follower's state (handshake, full sync, online), acks (none beyond
//!   the offset sent to that follower: a protocol violation), pings, the
//!   history check that tells a follower to resync, refusals with their
//!   reasons (`Incompatible` for a follower that cannot take a record).
//!   [`LogCursor`] is the log stream's side of it (which bytes go next, in
//!   frames within the follower's [`crate::protocol::Limits`], when the
//!   served history changed), [`SnapshotSender`] the snapshot stream's
//!   framing and [`SnapshotStall`] its stall timeout.
//! - [`FollowerSession`] is a follower's link to its primary across
//!   reconnections: the `Hello` it sends, how it reads `Continue`,
//!   `FullSync`, `Reject`, `Incompatible`, `Resync` and `Ping`, when it
//!   acks, sync-loop detection, a ring that fills during a full sync (the
//!   log waits for the swap), halting for good (divergence, a record that
//!   does not apply, too many failed full syncs, a record beyond its
//!   limits), and the reconnect backoff.
//!   [`SnapshotIntake`] checks and decodes the snapshot stream.
//!
//! Events are method calls named `handle_*` (a frame received, a timer
//! fired, progress the engine made); what the session wants done comes
//! back as actions ([`PrimaryAction`], [`FollowerAction`]): frames to send,
//! streams to open, engine calls to make, the connection to close. The
//! sessions never read the clock: every event that needs the time takes a
//! `now: Instant` (and the primary's pings a wall-clock `time_ms`), and
//! each session says when it next wants to be woken (`poll_timeout`). They
//! never touch an [`ringkv::Engine`] either: what they need to know of it
//! is passed in with the event ([`Served`], [`ReplicaState`],
//! [`Progress`], [`crate::protocol::PrimaryView`]), and what they want of
//! it is an action the driver carries out (on a blocking thread where
//! today's drivers do so) before reporting the result as the next event.
//! That keeps the engine's API (which is changing) in the drivers, and the
//! sessions testable with no engine, no network and simulated time.
//!
//! The async drivers (`primary.rs`, `follower.rs`, with the `quic`
//! feature) own the quinn streams, the tokio timers and tasks and the
//! engine, and only move frames and results between them and the sessions.
//! Two pieces stay in the drivers because they are flow control, not
//! protocol: waiting for the log to grow (the publish signal), and the
//! per-stream reader tasks (reading a frame is not cancellation-safe, so a
//! task per stream feeds a two-slot channel).

mod follower;
mod primary;

pub use follower::{
    DataStream, FollowerAction, FollowerPhase, FollowerSession, LinkEnd, Progress, ReplicaState, SnapshotIntake,
    SnapshotStep,
};
pub use primary::{
    CloseCode, LinkProgress, LogCursor, LogEnd, LogStep, PrimaryAction, PrimaryCounter, PrimaryPhase, PrimarySession,
    Served, SnapshotSender, SnapshotStall, HISTORY_CHANGED,
};

#[cfg(test)]
mod sim;
