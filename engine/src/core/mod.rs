//! L3 core: the engine's shared state ([`Inner`]) split into sub-states
//! that each own their invariants, and the commit protocol every write
//! goes through ([`Writer`], in `writer.rs`).
//!
//! `Inner` knows nothing above it: commands (L4 `ops/`) plan mutations
//! through a `Writer`; services (L5 `services/`) are functions over
//! `&Inner`. What a lower layer needs from a higher one (starting a
//! background save when the log fills) is a hook the builder installs
//! ([`Hooks`]), so no module calls up.

mod memory;
mod reader;
mod replica_state;
mod snapshot_state;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keyspace::Keyspace;
use crate::log::RingLog;
use crate::mutation::MutationSink;
use crate::stats::{OpCounters, RecoveryStats};

pub(crate) use memory::MemoryState;
pub(crate) use replica_state::{last_write_end, EngineId, ReplicaState};
pub use replica_state::{Promotion, Role, WriteGate};
pub(crate) use snapshot_state::{SnapshotKind, SnapshotState};
pub(crate) use writer::Writer;

/// Everything one engine shares between its handles and threads.
pub(crate) struct Inner {
    /// Process-unique identity (for the thread's last write offset).
    pub(crate) id: EngineId,
    /// The shards and their hashing.
    pub(crate) keyspace: Keyspace,
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    /// Where committed mutations go: the ring log, a user sink, or nothing.
    pub(crate) sink: SinkState,
    /// Accounted memory and eviction sampling.
    pub(crate) memory: MemoryState,
    /// Running snapshots (one save, one stream), the newest durable one, save-rule state.
    pub(crate) snapshot: SnapshotState,
    /// Role, applied offset, full sync flag, write gate.
    pub(crate) replica: ReplicaState,
    /// Calls per operation.
    pub(crate) ops: OpCounters,
    /// What opening the data directory replayed.
    pub(crate) recovered: Mutex<RecoveryStats>,
    /// The data directory, when the engine persists.
    pub(crate) data_dir: Option<PathBuf>,
    /// Upward needs, installed by the builder.
    pub(crate) hooks: Hooks,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("shards", &self.keyspace.shard_count())
            .finish_non_exhaustive()
    }
}

/// The engine's mutation sink and, when it has one, its ring log (which is
/// then the sink).
pub(crate) struct SinkState {
    sink: Arc<dyn MutationSink>,
    log: Option<Arc<RingLog>>,
    /// The sink is a user's (neither the ring log nor the `NullSink`): only
    /// then must a hot-path write build an owned `Mutation` for it.
    user: bool,
}

impl SinkState {
    /// The ring log is the sink when there is one; `user` says the sink is
    /// neither the log nor a `NullSink`.
    pub(crate) fn new(sink: Arc<dyn MutationSink>, log: Option<Arc<RingLog>>, user: bool) -> SinkState {
        let user = user && log.is_none();
        SinkState { sink, log, user }
    }

    /// True when mutations go to a user's sink (which takes owned `Mutation`s).
    #[inline]
    pub(crate) fn is_user(&self) -> bool {
        self.user
    }

    #[inline]
    pub(crate) fn sink(&self) -> &dyn MutationSink {
        &*self.sink
    }

    #[inline]
    pub(crate) fn log(&self) -> Option<&Arc<RingLog>> {
        self.log.as_ref()
    }

    /// The ring log, or the error replication and snapshot streams give
    /// without one.
    pub(crate) fn require_log(&self) -> Result<&Arc<RingLog>> {
        self.log
            .as_ref()
            .ok_or_else(|| Error::Config("replication needs a ring log (a data directory or anonymous_log)".into()))
    }
}

/// What lower layers need from higher ones, installed once by the builder.
#[derive(Default)]
pub(crate) struct Hooks {
    /// Starts a background save (the log is filling up).
    start_save: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Hooks {
    pub(crate) fn set_start_save(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.start_save.set(Box::new(f));
    }

    /// Asks for a background save; does nothing before the hook is set.
    pub(crate) fn start_save(&self) {
        if let Some(f) = self.start_save.get() {
            f();
        }
    }
}

impl Inner {
    /// Assembles the state; the builder then recovers, installs hooks and
    /// starts threads.
    pub(crate) fn new(
        keyspace: Keyspace,
        memory: MemoryState,
        clock: Arc<dyn Clock>,
        sink: SinkState,
        data_dir: Option<PathBuf>,
        config: Config,
    ) -> Inner {
        let now = clock.now_ms();
        Inner {
            id: EngineId::next(),
            keyspace,
            clock,
            sink,
            memory,
            snapshot: SnapshotState::new(now),
            replica: ReplicaState::new(),
            ops: OpCounters::new(),
            recovered: Mutex::new(RecoveryStats::default()),
            data_dir,
            hooks: Hooks::default(),
            config,
        }
    }

    /// The ring log, if the engine has one.
    #[inline]
    pub(crate) fn log(&self) -> Option<&Arc<RingLog>> {
        self.sink.log()
    }

    /// Empties every shard without logging (a failed snapshot load).
    pub(crate) fn clear_unlogged(&self) {
        for shard in self.keyspace.iter() {
            shard.write().clear();
        }
    }
}
