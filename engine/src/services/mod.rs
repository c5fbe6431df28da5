//! L5 services: the engine's work beyond single commands, as functions
//! over the core's [`Inner`](crate::core::Inner): active expiry and
//! background rehashing, taking and loading snapshots, opening and
//! recovering a data directory, the primitives replication drives, the
//! background thread, and statistics. Nothing here is called by a lower
//! layer except through a hook the builder installs.

pub(crate) mod background;
pub(crate) mod data_dir;
pub(crate) mod expiry;
pub(crate) mod parallel_apply;
pub(crate) mod parallel_load;
pub(crate) mod recovery;
pub(crate) mod replica;
pub(crate) mod snapshot;
pub(crate) mod stats;
