//! The leader lease's fence: a node with failover on takes writes only
//! until a deadline that the coordinator (`failover.rs`) moves forward on
//! each successful lease renewal: the monotonic instant the renewal was
//! *sent*, plus the lease's TTL, minus a margin. etcd starts the lease's
//! new TTL when it *receives* the renewal, later than that, so the fence
//! closes before the lease can expire whatever the wall clocks do (only
//! the two monotonic clocks' rates matter, which the margin covers).
//!
//! The fence is checked twice: by the connection before a write command
//! (answering `READONLY`, which Sentinel-aware clients take as "the
//! primary moved: look it up again and retry"), and as the engine's write
//! gate (wrapping the replication primary's own gate, if any), so a write
//! that passed the first check when the deadline passed is still refused.
//! The gate asks the fence again after the wrapped gate returns (it may
//! have waited for followers), and the engine asks the gate again after a
//! wait for log room, so no wait between the check and the log outlasts
//! the margin unnoticed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Why the engine's gate refused a write (mapped to `READONLY`).
pub(crate) const FENCED: &str = "fenced: this node does not hold its shard's leader lease";

/// Until when this node may take writes.
#[derive(Debug)]
pub(crate) struct Fence {
    /// Failover is on (without it the fence is always open).
    enabled: bool,
    base: Instant,
    /// Nanoseconds after `base` when the fence closes (0: closed).
    until_ns: AtomicU64,
    /// The gate is installed on the engine (once per primary handle).
    installed: AtomicBool,
}

impl Fence {
    pub(crate) fn new(enabled: bool) -> Fence {
        Fence {
            enabled,
            base: Instant::now(),
            until_ns: AtomicU64::new(0),
            installed: AtomicBool::new(false),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Opens the fence until `until` (never beyond a later deadline set
    /// meanwhile: renewals race only with `close`).
    pub(crate) fn open_until(&self, until: Instant) {
        let ns = until.saturating_duration_since(self.base).as_nanos();
        self.until_ns
            .store(u64::try_from(ns).unwrap_or(u64::MAX).max(1), Ordering::Release);
    }

    /// Closes it now.
    pub(crate) fn close(&self) {
        self.until_ns.store(0, Ordering::Release);
    }

    /// When it closes: `None` without failover (never), a past instant
    /// while closed (also for a deadline too far to represent: closed is
    /// the safe side).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if !self.enabled {
            return None;
        }
        let until = self.until_ns.load(Ordering::Acquire);
        Some(
            self.base
                .checked_add(std::time::Duration::from_nanos(until))
                .unwrap_or(self.base),
        )
    }

    /// Whether a write may go on now.
    pub(crate) fn is_open(&self) -> bool {
        if !self.enabled {
            return true;
        }
        let until = self.until_ns.load(Ordering::Acquire);
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        now < until
    }

    /// Installs the fence as `engine`'s write gate, around the gate there
    /// now (the replication primary's). Called after each start of a
    /// primary handle; `reset` when that handle stops.
    pub(crate) fn install(self: &Arc<Self>, engine: &ringkv::Engine) {
        if !self.enabled || self.installed.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = engine.write_gate();
        engine.set_write_gate(Some(Arc::new(FenceGate {
            fence: Arc::clone(self),
            inner,
        })));
    }

    /// The primary handle stopped (its gate with it).
    pub(crate) fn reset(&self) {
        self.installed.store(false, Ordering::Release);
    }
}

struct FenceGate {
    fence: Arc<Fence>,
    inner: Option<Arc<dyn ringkv::WriteGate>>,
}

impl ringkv::WriteGate for FenceGate {
    fn admit(&self) -> Result<(), String> {
        if !self.fence.is_open() {
            return Err(FENCED.to_string());
        }
        if let Some(g) = &self.inner {
            g.admit()?;
            // The inner gate may have waited (a `Delay` write gate, up to
            // its `max_delay_ms`): the fence may have closed meanwhile.
            if !self.fence.is_open() {
                return Err(FENCED.to_string());
            }
        }
        Ok(())
    }

    /// A closed fence: no expiry or eviction deletions either (a deposed
    /// primary must not extend its history); never blocks.
    fn admits_internal(&self) -> bool {
        self.fence.is_open() && self.inner.as_ref().is_none_or(|g| g.admits_internal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_fence_closes_at_its_deadline() {
        let f = Fence::new(true);
        assert!(!f.is_open(), "closed until a lease is held");
        f.open_until(Instant::now() + Duration::from_secs(60));
        assert!(f.is_open());
        f.close();
        assert!(!f.is_open());
        f.open_until(Instant::now() - Duration::from_millis(1));
        assert!(!f.is_open(), "a deadline in the past is closed");
        assert!(Fence::new(false).is_open(), "without failover there is no fence");
        assert_eq!(Fence::new(false).deadline(), None);
        let at = Instant::now() + Duration::from_secs(5);
        f.open_until(at);
        let d = f.deadline().expect("a deadline");
        assert!(
            d <= at && at - d < Duration::from_micros(1),
            "the deadline set: {d:?} vs {at:?}"
        );
        f.close();
        assert!(
            f.deadline().is_some_and(|d| d <= Instant::now()),
            "closed: a past deadline"
        );
    }

    #[test]
    fn the_engine_refuses_writes_behind_a_closed_fence() {
        let engine = ringkv::Engine::new(ringkv::Config::default()).expect("engine");
        let f = Arc::new(Fence::new(true));
        f.install(&engine);
        let e = engine.set("k", "v").expect_err("fenced");
        assert!(matches!(e, ringkv::Error::NoReplicas(ref r) if r == FENCED), "{e}");
        f.open_until(Instant::now() + Duration::from_secs(60));
        engine.set("k", "v").expect("open");
        f.close();
        assert!(engine.set("k", "w").is_err());
        assert!(engine.get(b"k").expect("get").is_some_and(|v| v == "v"));
    }

    /// An inner gate during whose wait the fence closes.
    struct ClosesTheFence(Arc<Fence>);

    impl ringkv::WriteGate for ClosesTheFence {
        fn admit(&self) -> Result<(), String> {
            self.0.close();
            Ok(())
        }
    }

    #[test]
    fn the_fence_is_asked_again_after_the_inner_gate() {
        let engine = ringkv::Engine::new(ringkv::Config::default()).expect("engine");
        let f = Arc::new(Fence::new(true));
        engine.set_write_gate(Some(Arc::new(ClosesTheFence(Arc::clone(&f)))));
        f.install(&engine);
        f.open_until(Instant::now() + Duration::from_secs(60));
        let e = engine.set("k", "v").expect_err("fenced during the inner gate's wait");
        assert!(matches!(e, ringkv::Error::NoReplicas(ref r) if r == FENCED), "{e}");
        assert!(engine.get(b"k").expect("get").is_none());
    }
}
