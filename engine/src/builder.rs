//! L6: [`EngineBuilder`] wires an engine together: it validates the
//! configuration, opens (and recovers) the data directory or an anonymous
//! ring, assembles the core's sub-states, installs the hooks lower layers
//! call up through, and starts the background threads.

use std::sync::{Arc, Weak};

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Durability};
use crate::core::{Inner, MemoryState, SinkState};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::keyspace::Keyspace;
use crate::log::{Retention, RingLog};
use crate::mutation::{MutationSink, NullSink};
use crate::services;

/// Builds an [`Engine`] with a custom clock or mutation sink.
///
/// ```
/// use ringkv::{Config, Engine, ManualClock, MemorySink};
/// let clock = ManualClock::new(1_700_000_000_000);
/// let engine = Engine::builder()
///     .config(Config { shards: 4, ..Config::default() })
///     .clock(clock.clone())
///     .sink(MemorySink::new())
///     .build()?;
/// # Ok::<(), ringkv::Error>(())
/// ```
#[must_use]
pub struct EngineBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    sink: Option<Arc<dyn MutationSink>>,
    data_dir: Option<std::path::PathBuf>,
    anonymous_log: bool,
}

impl EngineBuilder {
    /// Uses this configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    /// Uses this clock (tests use [`ManualClock`](crate::ManualClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Hands every mutation to this sink (instead of a ring log).
    pub fn sink(mut self, sink: impl MutationSink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Persists to this directory: the ring log `ring.log` (created on first
    /// use) is the write-ahead log, replayed on open; a `LOCK` file keeps a
    /// second process out.
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Keeps a ring log in anonymous memory, without persistence (a stream
    /// for followers; old laps are overwritten).
    pub fn anonymous_log(mut self) -> Self {
        self.anonymous_log = true;
        self
    }
    /// Validates the configuration and starts the engine (and its background
    /// thread, if `active_expire` is on).
    pub fn build(self) -> Result<Engine> {
        let shards = self.config.validate()?;
        let (log, lock) = match (&self.data_dir, self.anonymous_log, &self.sink) {
            (Some(_), _, Some(_)) | (_, true, Some(_)) => {
                return Err(Error::Config(
                    "a ring log is the engine's sink: do not set another one".into(),
                ))
            }
            (Some(dir), _, None) => {
                let (ring, lock) = services::recovery::open_dir(dir, &self.config.log)?;
                (Some(ring), Some(lock))
            }
            (None, true, None) => (
                Some(Arc::new(RingLog::anonymous_with(
                    self.config.log.clone(),
                    Retention::Overwrite,
                )?)),
                None,
            ),
            (None, false, _) => (None, None),
        };
        let user_sink = self.sink.is_some();
        let sink: Arc<dyn MutationSink> = match (&log, self.sink) {
            (Some(ring), _) => ring.clone(),
            (None, Some(sink)) => sink,
            (None, None) => Arc::new(NullSink),
        };
        let seed = self.config.hash_seed.unwrap_or_else(random_seed);
        let rng = self.config.rng_seed.unwrap_or_else(random_seed);
        let inner = Arc::new(Inner::new(
            Keyspace::new(shards, seed, self.config.cluster_slots),
            MemoryState::new(self.config.maxmemory, self.config.maxmemory_policy, shards, rng),
            self.clock,
            SinkState::new(sink, log, user_sink),
            self.data_dir,
            self.config,
        ));
        // The directory's lock lives as long as its ring, not only as long
        // as the engine: a `LogView` (or the sync thread) that outlives the
        // engine keeps the directory locked until it lets go of the ring.
        if let (Some(lock), Some(ring)) = (lock, inner.log()) {
            ring.hold(Box::new(lock));
        }
        // A write that finds the log filling up starts a background save.
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        inner.hooks.set_start_save(move || {
            if let Some(inner) = weak.upgrade() {
                let _ = services::snapshot::bgsave(&inner);
            }
        });
        if let (Some(ring), Some(dir)) = (inner.log(), &inner.data_dir) {
            services::recovery::restore(&inner, ring, dir)?;
            if ring.durability() == Durability::Everysec {
                crate::log::start_everysec(ring).map_err(|e| Error::Io {
                    context: "starting the log sync thread".into(),
                    source: e,
                })?;
            }
        }
        let background = if inner.config.active_expire {
            Some(services::background::Background::start(&inner)?)
        } else {
            None
        };
        tracing::debug!(shards, "ringkv engine started");
        Ok(Engine::from_inner(inner, background))
    }

    fn new() -> EngineBuilder {
        EngineBuilder {
            config: Config::default(),
            clock: Arc::new(SystemClock),
            sink: None,
            data_dir: None,
            anonymous_log: false,
        }
    }
}

impl Engine {
    /// A builder (custom clock, mutation sink, data directory). It lives
    /// here, beside what it builds, so that the facade and the builder do
    /// not import each other.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }
}

fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}
