//! The seeded world: one primary and two or three followers, each node a
//! [`Store`] under the real sessions, driven the way `primary.rs` and
//! `follower.rs` drive them (`primary_end.rs`, `follower_end.rs`), over
//! [`Wire`]s, in simulated time; a workload of writes and faults drawn
//! from the seed; a coordinator that fails over as DESIGN.md's etcd one
//! would (the follower with the highest applied offset in the lost
//! primary's history, the others re-pointed, the old primary back as a
//! follower). The invariants are checked as it runs (`check.rs`).
//!
//! A run has three phases: faults and writes (`fault_ms`), writes alone
//! at a quarter of the rate (one second), then nothing until every
//! follower is live and has caught up (`quiet` bound), which ends the run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::{FollowerConfig, PrimaryConfig};
use crate::protocol::Codec;
use crate::session::{FollowerSession, PrimarySession};

use super::net::{End, Path, Wire};
use super::rng::Rng;
use super::store::Store;

pub(super) type NodeId = usize;

/// The idle timeout of every connection (QUIC keep-alives run below it).
pub(super) const IDLE: Duration = Duration::from_millis(600);
/// How long after the writes stop every follower must have caught up, at
/// least: [`World::quiet_bound`] adds the time full syncs of the whole
/// data over the slowest path take, one follower after the other (they
/// share the primary's one stream snapshot slot).
pub(super) const QUIET: Duration = Duration::from_secs(10);
/// Snapshot chunks handed to the sender (the walk's output granularity).
pub(super) const SNAPSHOT_CHUNK: usize = 1024;

/// What a seed draws before the run.
#[derive(Debug, Clone)]
pub(super) struct Params {
    pub(super) followers: usize,
    pub(super) codecs: Vec<Codec>,
    pub(super) window: usize,
    pub(super) follower_max_frame: usize,
    pub(super) primary_max_frame: usize,
    pub(super) batch_bytes: usize,
    /// A full sync rather than replaying more than this.
    pub(super) max_replay_bytes: Option<u64>,
    pub(super) capacities: Vec<u64>,
    pub(super) max_payloads: Vec<usize>,
    /// Largest payload written (every node's ring and frame limit takes it).
    pub(super) max_write: usize,
    pub(super) fault_ms: u64,
    pub(super) write_gap_ms: u64,
    pub(super) fault_gap_ms: u64,
    /// Whole-frame faults of a hostile transport are drawn too.
    pub(super) hostile: bool,
    pub(super) max_crashes: u32,
}

impl Params {
    pub(super) fn draw(rng: &mut Rng) -> Params {
        let followers = rng.range(2, 3) as usize;
        let codecs = match rng.below(4) {
            0 => vec![Codec::None],
            1 => vec![Codec::Lz4],
            2 => vec![Codec::Zstd],
            _ => vec![Codec::Lz4, Codec::Zstd],
        };
        let follower_max_frame = if rng.chance(500) {
            rng.range(crate::protocol::MIN_DATA_FRAME as u64, 4096) as usize
        } else {
            64 << 10
        };
        let primary_max_frame = if rng.chance(300) {
            rng.range(crate::protocol::MIN_DATA_FRAME as u64, 8192) as usize
        } else {
            64 << 20
        };
        let window = rng.range(follower_max_frame.min(primary_max_frame) as u64 + 64, 64 << 10) as usize;
        let mut capacities = Vec::new();
        let mut max_payloads = Vec::new();
        for _ in 0..=followers {
            // A small ring makes the primary's history leave its ring (full
            // syncs) and a full sync's log outgrow a follower's ring.
            let capacity = match rng.below(3) {
                0 => rng.range(2048, 8192) / 8 * 8,
                1 => rng.range(16 << 10, 64 << 10) / 8 * 8,
                _ => 1 << 20,
            };
            capacities.push(capacity);
            max_payloads.push(rng.range(1008, 4096.min(capacity - 16)) as usize);
        }
        let frame = follower_max_frame.min(primary_max_frame);
        let by_frame = frame - crate::protocol::LOG_FRAME_OVERHEAD - ringkv::log::record::HEADER_LEN - 8;
        let max_write = max_payloads.iter().copied().min().unwrap_or(1008).min(by_frame);
        let mut p = Params {
            followers,
            codecs,
            window,
            follower_max_frame,
            primary_max_frame,
            batch_bytes: rng.range(64, 8192) as usize,
            max_replay_bytes: None,
            capacities,
            max_payloads,
            max_write,
            fault_ms: rng.range(2500, 6000),
            write_gap_ms: rng.range(1, 8),
            fault_gap_ms: rng.range(40, 300),
            hostile: rng.chance(300),
            max_crashes: rng.range(0, 2) as u32,
        };
        // New parameters are drawn here, after the others, so that every
        // seed's earlier draws (and its run, from its own generator) stay
        // as they were and the regression seeds keep their worlds.
        p.max_replay_bytes = rng.chance(250).then(|| rng.range(2048, 65536));
        p
    }
}

/// Whether a node's process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proc {
    Up,
    Paused,
    Down,
}

/// A follower's link to its primary, as its driver's loop sees it.
#[derive(Debug)]
pub(super) enum Link {
    /// Waiting to connect (the backoff).
    Idle {
        at: Instant,
    },
    /// The primary does not answer yet; the attempt fails at `deadline`.
    Connecting {
        deadline: Instant,
    },
    Conn(u64),
    /// The session stopped for good (a violation in this world).
    Halted,
}

#[derive(Debug)]
pub(super) struct FollowerNode {
    pub(super) session: FollowerSession,
    pub(super) link: Link,
}

#[derive(Debug, Default)]
pub(super) struct PrimaryNode {
    /// The connection whose full sync holds the stream snapshot slot.
    pub(super) snapshot: Option<u64>,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a few nodes per world
pub(super) enum Role {
    Primary(PrimaryNode),
    Follower(FollowerNode),
    Off,
}

/// What justifies a full sync, per follower (no sync loop: each full sync
/// after the first needs one since the previous).
#[derive(Debug, Default, Clone)]
pub(super) struct Acct {
    pub(super) causes: u64,
    pub(super) full_syncs: u64,
    pub(super) quiet_full_syncs: u64,
    /// A full sync began and has not swapped in.
    pub(super) unfinished: bool,
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) name: String,
    pub(super) store: Store,
    pub(super) proc_: Proc,
    pub(super) role: Role,
    /// The primary it follows (or would, as a follower).
    pub(super) target: NodeId,
    pub(super) path: Path,
    pub(super) acct: Acct,
    /// The highest offset a `WAIT 1` returned for since this node last
    /// became primary: the follower promoted in its place must hold it.
    pub(super) wait_acked: u64,
    /// The highest offset a primary counted this follower acked at, since
    /// its data last restarted (a full sync, a wipe).
    pub(super) acked: u64,
    /// The highest `acked` it had when its data restarted.
    pub(super) acked_dropped: u64,
    /// A crashed follower whose restart is scheduled.
    pub(super) restarting: bool,
}

impl Node {
    /// Its data restarts (a full sync begins, a wipe): what it acked is
    /// no longer held here.
    pub(super) fn drop_acked(&mut self) {
        self.acked_dropped = self.acked_dropped.max(self.acked);
        self.acked = 0;
    }

    pub(super) fn running(&self) -> bool {
        self.proc_ == Proc::Up
    }
}

/// The follower's end of one connection (`follower_end.rs`).
pub(super) use super::follower_end::FEnd;
/// The primary's end of one connection (`primary_end.rs`).
pub(super) use super::primary_end::PEnd;

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) primary: NodeId,
    pub(super) follower: NodeId,
    pub(super) wire: Wire,
    pub(super) p: Option<PEnd>,
    pub(super) f: Option<FEnd>,
    /// The primary closes the connection then (after its last message).
    pub(super) close_at: Option<(Instant, u32, String)>,
}

/// Things that happen at a time.
#[derive(Debug, Clone)]
pub(super) enum Timer {
    Unpause(NodeId),
    /// A crashed follower's process starts again.
    Restart(NodeId),
    /// A crashed primary starts again as the primary.
    RestartPrimary(NodeId),
    /// The coordinator replaces the crashed primary.
    Failover(NodeId),
    Repoint {
        node: NodeId,
        to: NodeId,
    },
    /// The old primary comes back as a follower of whoever is primary.
    Rejoin(NodeId),
    Heal(NodeId),
    HonestAgain(NodeId),
}

/// Counts over a run (summed over seeds by the tests).
#[derive(Debug, Default, Clone)]
pub(super) struct Stats {
    pub(super) writes: u64,
    pub(super) bytes: u64,
    pub(super) connects: u64,
    pub(super) partial_syncs: u64,
    pub(super) full_syncs: u64,
    pub(super) swaps: u64,
    pub(super) ring_full_holds: u64,
    pub(super) lagged: u64,
    pub(super) snapshot_stalls: u64,
    pub(super) resets: u64,
    pub(super) partitions: u64,
    pub(super) pauses: u64,
    pub(super) restarts: u64,
    pub(super) crashes: u64,
    pub(super) primary_restarts: u64,
    pub(super) promotions: u64,
    pub(super) unsafe_failovers: u64,
    pub(super) unsafe_failovers_losing_acked: u64,
    pub(super) acked_lost_to_full_syncs: u64,
    pub(super) repoints: u64,
    pub(super) rejoins: u64,
    pub(super) hostile_faults: u64,
    pub(super) hostile_link_errors: u64,
    pub(super) wait_acked_checked: u64,
    pub(super) max_primary_conns: u64,
    pub(super) quiet_ms: u64,
    /// The share of its bound a world took to become quiescent (percent).
    pub(super) quiet_share: u64,
    pub(super) steps: u64,
}

impl Stats {
    pub(super) fn add(&mut self, o: &Stats) {
        macro_rules! sum {
            ($($f:ident),*) => { $(self.$f += o.$f;)* };
        }
        sum!(
            writes,
            bytes,
            connects,
            partial_syncs,
            full_syncs,
            swaps,
            ring_full_holds,
            lagged,
            snapshot_stalls,
            resets,
            partitions,
            pauses,
            restarts,
            crashes,
            primary_restarts,
            promotions,
            unsafe_failovers,
            unsafe_failovers_losing_acked,
            acked_lost_to_full_syncs,
            repoints,
            rejoins,
            hostile_faults,
            hostile_link_errors,
            wait_acked_checked,
            steps
        );
        self.max_primary_conns = self.max_primary_conns.max(o.max_primary_conns);
        self.quiet_ms = self.quiet_ms.max(o.quiet_ms);
        self.quiet_share = self.quiet_share.max(o.quiet_share);
    }
}

pub(super) struct World {
    pub(super) rng: Rng,
    pub(super) t0: Instant,
    pub(super) now: Instant,
    pub(super) params: Params,
    pub(super) nodes: Vec<Node>,
    pub(super) conns: BTreeMap<u64, Conn>,
    pub(super) next_conn: u64,
    pub(super) pconfig: PrimaryConfig,
    pub(super) fconfig: FollowerConfig,
    /// Who the coordinator says is primary (`None` while failing over).
    pub(super) primary: Option<NodeId>,
    pub(super) timers: Vec<(Instant, Timer)>,
    pub(super) next_write: Instant,
    pub(super) next_fault: Instant,
    pub(super) fault_end: Instant,
    pub(super) write_end: Instant,
    pub(super) crashes: u32,
    pub(super) replids: u64,
    pub(super) stats: Stats,
    pub(super) trace: Vec<String>,
    pub(super) failure: Option<String>,
}

impl World {
    pub(super) fn new(seed: u64) -> World {
        // The parameters and the run draw from generators of their own.
        let params = Params::draw(&mut Rng::new(seed));
        let rng = Rng::new(seed ^ 0xA076_1D64_78BD_642F);
        let t0 = Instant::now();
        let pconfig = PrimaryConfig {
            codecs: params.codecs.clone(),
            batch_bytes: params.batch_bytes,
            max_replay_bytes: params.max_replay_bytes,
            max_frame_bytes: params.primary_max_frame,
            ping_interval_ms: 50,
            handshake_timeout_ms: 400,
            snapshot_send_timeout_ms: 1000,
            window_bytes: params.window as u64,
            ..PrimaryConfig::default()
        };
        let fconfig = FollowerConfig {
            codecs: params.codecs.clone(),
            max_frame_bytes: params.follower_max_frame,
            window_bytes: params.window as u64,
            min_backoff_ms: 5,
            max_backoff_ms: 300,
            sync_loop_window_ms: 2000,
            idle_timeout_ms: IDLE.as_millis() as u64,
            ack_interval_ms: 20,
            // Halting after failed full syncs is a scripted test's; here
            // every halt is a violation.
            max_full_sync_attempts: 0,
            ..FollowerConfig::default()
        };
        let fault_end = t0 + Duration::from_millis(params.fault_ms);
        let mut w = World {
            rng,
            t0,
            now: t0,
            params,
            nodes: Vec::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            pconfig,
            fconfig,
            primary: Some(0),
            timers: Vec::new(),
            next_write: t0,
            next_fault: t0 + Duration::from_millis(100),
            fault_end,
            write_end: fault_end + Duration::from_secs(1),
            crashes: 0,
            replids: 0,
            stats: Stats::default(),
            trace: Vec::new(),
            failure: None,
        };
        for i in 0..=w.params.followers {
            let replid = w.fresh_replid();
            let store = Store::new(w.params.capacities[i], w.params.max_payloads[i], replid);
            let path = w.draw_path();
            w.nodes.push(Node {
                name: format!("n{i}"),
                store,
                proc_: Proc::Up,
                role: Role::Off,
                target: 0,
                path,
                acct: Acct {
                    causes: 1,
                    ..Acct::default()
                },
                wait_acked: 0,
                acked: 0,
                acked_dropped: 0,
                restarting: false,
            });
        }
        w.nodes[0].role = Role::Primary(PrimaryNode::default());
        for i in 1..=w.params.followers {
            w.start_follower(i, 0);
        }
        let p = w.params.clone();
        w.note(format!(
            "world: {} followers, codecs {:?}, window {}, frames {}/{}, batch {}, max replay {:?}, capacities {:?}, \
             max payloads {:?}, \
             writes up to {} every ~{} ms, faults every ~{} ms for {} ms{}, up to {} primary crashes",
            p.followers,
            p.codecs,
            p.window,
            p.follower_max_frame,
            p.primary_max_frame,
            p.batch_bytes,
            p.max_replay_bytes,
            p.capacities,
            p.max_payloads,
            p.max_write,
            p.write_gap_ms,
            p.fault_gap_ms,
            p.fault_ms,
            if p.hostile { ", hostile transport" } else { "" },
            p.max_crashes
        ));
        w
    }

    fn draw_path(&mut self) -> Path {
        Path {
            latency: Duration::from_millis(self.rng.range(1, 40)),
            jitter_ms: self.rng.range(0, 15),
            rate: self.rng.pick(&[60, 200, 1000, 5000]),
            partitioned_until: None,
            hostile: 0,
        }
    }

    pub(super) fn fresh_replid(&mut self) -> String {
        self.replids += 1;
        format!("h{}-{}", self.replids, self.rng.next_u64() % 10_000)
    }

    pub(super) fn ms(&self) -> u64 {
        self.now.saturating_duration_since(self.t0).as_millis() as u64
    }

    /// Adds a line to the trace.
    pub(super) fn note(&mut self, what: String) {
        let line = format!("{:>6} ms  {what}", self.ms());
        self.trace.push(line);
    }

    /// Records a violated invariant (the first one ends the run).
    pub(super) fn violate(&mut self, what: String) {
        self.note(format!("VIOLATION: {what}"));
        if self.failure.is_none() {
            self.failure = Some(what);
        }
    }

    pub(super) fn in_faults(&self) -> bool {
        self.now < self.fault_end
    }

    pub(super) fn at(&mut self, after_ms: u64, timer: Timer) {
        let t = self.now + Duration::from_millis(after_ms);
        self.timers.push((t, timer));
    }

    /// Makes `n` a follower of `to` with a fresh session (a start, a
    /// restart, a re-pointing).
    pub(super) fn start_follower(&mut self, n: NodeId, to: NodeId) {
        let mut config = self.fconfig.clone();
        config.name = self.nodes[n].name.clone();
        let session = FollowerSession::new(config, self.now, self.rng.next_u64());
        let node = &mut self.nodes[n];
        node.target = to;
        node.role = Role::Follower(FollowerNode {
            session,
            link: Link::Idle { at: self.now },
        });
    }

    /// Ends `n`'s follower session (a re-pointing, a promotion): the
    /// driver's `stop`.
    pub(super) fn stop_follower(&mut self, n: NodeId) {
        let now = self.now;
        if let Role::Follower(f) = &mut self.nodes[n].role {
            let _ = f.session.handle_link_end(now, crate::session::LinkEnd::Stopped);
            if let Link::Conn(cid) = f.link {
                let path = self.nodes[n].path.clone();
                if let Some(c) = self.conns.get_mut(&cid) {
                    c.wire.close(End::Follower, 0, "follower stopping", now, &path);
                    c.f = None;
                }
            }
        }
        self.nodes[n].role = Role::Off;
    }

    /// A process dies: its connections' ends go with it.
    fn crash(&mut self, n: NodeId) {
        let now = self.now;
        for c in self.conns.values_mut() {
            if c.primary == n {
                c.wire.crash(End::Primary, now);
                c.p = None;
                c.close_at = None;
            }
            if c.follower == n {
                c.wire.crash(End::Follower, now);
                c.f = None;
            }
        }
        let node = &mut self.nodes[n];
        node.proc_ = Proc::Down;
        node.role = Role::Off;
    }

    /// A process starts again after a crash: connections it had get a
    /// stateless reset from its endpoint.
    fn restarted(&mut self, n: NodeId) {
        let now = self.now;
        for c in self.conns.values_mut() {
            let path = &self.nodes[c.follower].path;
            if c.primary == n {
                c.wire.reset_by_restart(End::Primary, now, path);
            }
            if c.follower == n {
                c.wire.reset_by_restart(End::Follower, now, path);
            }
        }
        let replid = self.fresh_replid();
        let node = &mut self.nodes[n];
        node.proc_ = Proc::Up;
        let wiped = node.store.marker;
        node.store.restart(replid);
        if wiped {
            node.drop_acked();
            let name = node.name.clone();
            self.note(format!("{name}: restarted under a FULLSYNC marker: wiped"));
        }
    }

    /// Every follower's full-sync accounting gets a cause (a primary change).
    fn cause_all(&mut self) {
        for node in &mut self.nodes {
            node.acct.causes += 1;
        }
    }

    fn followers(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].role, Role::Follower(_)))
            .collect()
    }

    // ----- the workload -----------------------------------------------------

    fn write(&mut self) {
        let Some(p) = self.primary else { return };
        if !self.nodes[p].running() || !matches!(self.nodes[p].role, Role::Primary(_)) {
            return;
        }
        let max = self.params.max_write as u64;
        let len = match self.rng.below(20) {
            0 => self.rng.range(300.min(max), max),
            1..=5 => self.rng.range(48, 300.min(max)),
            _ => self.rng.range(1, 48),
        } as usize;
        let payload = self.rng.bytes(len);
        self.nodes[p].store.write(&payload);
        self.stats.writes += 1;
        self.stats.bytes += len as u64;
    }

    fn fault(&mut self) {
        let n = self.nodes.len() as u64;
        let kind = self.rng.below(if self.params.hostile { 8 } else { 7 });
        match kind {
            0 => {
                // A reset at any byte of a follower's connection.
                let live: Vec<u64> = self.conns.keys().copied().collect();
                if live.is_empty() {
                    return;
                }
                let cid = self.rng.pick(&live);
                if let Some(c) = self.conns.get_mut(&cid) {
                    let f = c.follower;
                    let path = self.nodes[f].path.clone();
                    c.wire.reset(self.now, &path, &mut self.rng);
                    self.nodes[f].acct.causes += 1;
                    self.stats.resets += 1;
                    let name = self.nodes[f].name.clone();
                    self.note(format!("fault: connection {cid} of {name} reset"));
                }
            }
            1 => {
                let f = self.rng.range(0, n - 1) as usize;
                let ms = self.rng.range(50, 1500);
                self.nodes[f].path.partitioned_until = Some(self.now + Duration::from_millis(ms));
                self.nodes[f].acct.causes += 1;
                self.stats.partitions += 1;
                let name = self.nodes[f].name.clone();
                self.note(format!("fault: {name}'s path partitioned for {ms} ms"));
                self.at(ms, Timer::Heal(f));
            }
            2 => {
                let v = self.rng.range(0, n - 1) as usize;
                if self.nodes[v].proc_ != Proc::Up {
                    return;
                }
                let ms = self.rng.range(20, 1500);
                self.nodes[v].proc_ = Proc::Paused;
                self.cause_all();
                self.stats.pauses += 1;
                let name = self.nodes[v].name.clone();
                self.note(format!("fault: {name} paused for {ms} ms"));
                self.at(ms, Timer::Unpause(v));
            }
            3 => {
                let fs = self.followers();
                if fs.is_empty() {
                    return;
                }
                let f = self.rng.pick(&fs);
                if self.nodes[f].proc_ != Proc::Up {
                    return;
                }
                let ms = self.rng.range(5, 400);
                self.crash(f);
                self.nodes[f].restarting = true;
                self.nodes[f].acct.causes += 1;
                self.stats.restarts += 1;
                let name = self.nodes[f].name.clone();
                self.note(format!("fault: {name} (a follower) killed, restarts in {ms} ms"));
                self.at(ms, Timer::Restart(f));
            }
            4 => {
                let Some(p) = self.primary else { return };
                if self.crashes >= self.params.max_crashes || self.nodes[p].proc_ != Proc::Up {
                    return;
                }
                self.crashes += 1;
                self.crash(p);
                self.cause_all();
                self.stats.crashes += 1;
                self.primary = None;
                let name = self.nodes[p].name.clone();
                if self.rng.chance(350) {
                    let ms = self.rng.range(20, 400);
                    self.note(format!("fault: {name} (the primary) killed, restarts in {ms} ms"));
                    self.at(ms, Timer::RestartPrimary(p));
                } else {
                    let ms = self.rng.range(30, 600);
                    self.note(format!("fault: {name} (the primary) killed, failover in {ms} ms"));
                    self.at(ms, Timer::Failover(p));
                }
            }
            5 => {
                let f = self.rng.range(0, n - 1) as usize;
                let rate = self.rng.pick(&[60, 200, 1000, 5000]);
                self.nodes[f].path.rate = rate;
                self.nodes[f].path.latency = Duration::from_millis(self.rng.range(1, 60));
            }
            6 => {
                // Quiet: nothing this time.
            }
            _ => {
                let f = self.rng.range(0, n - 1) as usize;
                let per_mille = self.rng.range(20, 200);
                let ms = self.rng.range(100, 1500);
                self.nodes[f].path.hostile = per_mille;
                let name = self.nodes[f].name.clone();
                self.note(format!(
                    "fault: {name}'s transport drops, duplicates and reorders {per_mille}‰ of frames for {ms} ms"
                ));
                self.at(ms, Timer::HonestAgain(f));
            }
        }
    }

    /// The coordinator replaces the crashed primary `old`: the follower
    /// with the highest applied offset in `old`'s history, if none more
    /// advanced is stale (a stale follower cannot be promoted, and it may
    /// hold acknowledged writes no one else has: then the old primary is
    /// restarted instead).
    fn failover(&mut self, old: NodeId) {
        if (0..self.nodes.len()).any(|i| i != old && (self.nodes[i].proc_ == Proc::Paused || self.nodes[i].restarting))
        {
            // Wait until every follower can answer (a restarting or paused
            // one may be the most advanced; an old primary waiting to
            // rejoin is in an older history).
            self.at(20, Timer::Failover(old));
            return;
        }
        let lineage = self.nodes[old].store.history.replid.clone();
        let candidates: Vec<NodeId> = self
            .followers()
            .into_iter()
            .filter(|&f| self.nodes[f].store.history.replid == lineage)
            .collect();
        let best = candidates
            .iter()
            .copied()
            .max_by_key(|&f| (self.nodes[f].store.applied(), std::cmp::Reverse(f)));
        let safe = best.filter(|&b| !self.nodes[b].store.stale());
        let Some(new) = safe else {
            self.stats.unsafe_failovers += 1;
            // Would promoting the most advanced follower that is not stale
            // have lost writes a WAIT 1 returned for?
            let fallback = candidates
                .iter()
                .copied()
                .filter(|&f| !self.nodes[f].store.stale())
                .max_by_key(|&f| (self.nodes[f].store.applied(), std::cmp::Reverse(f)));
            let w = self.nodes[old].wait_acked;
            if fallback.is_none_or(|f| self.nodes[f].store.applied() < w) {
                self.stats.unsafe_failovers_losing_acked += 1;
            }
            let why = match best {
                Some(b) => format!("the most advanced follower, {}, is in a full sync", self.nodes[b].name),
                None => "no follower is in its history".to_string(),
            };
            let name = self.nodes[old].name.clone();
            self.note(format!("coordinator: no safe failover ({why}): restarting {name}"));
            self.at(0, Timer::RestartPrimary(old));
            return;
        };
        self.stop_follower(new);
        let replid = self.fresh_replid();
        if let Err(e) = self.nodes[new].store.promote(replid) {
            self.violate(format!("promotion of {} failed: {e}", self.nodes[new].name));
            return;
        }
        self.nodes[new].role = Role::Primary(PrimaryNode::default());
        // What it counts as acked starts over: writes acked under the old
        // primary had one copy besides it, the new primary's own (losing
        // it too is a second failure, which WAIT 1 does not cover); its
        // followers' acks count from now.
        self.nodes[new].wait_acked = 0;
        self.primary = Some(new);
        self.cause_all();
        self.stats.promotions += 1;
        let (nn, on) = (self.nodes[new].name.clone(), self.nodes[old].name.clone());
        let h = self.nodes[new].store.history.clone();
        self.note(format!(
            "coordinator: {nn} promoted at {} (history {}, previous {}), replacing {on}",
            h.switch_offset, h.replid, h.prev_replid
        ));
        self.check_promotion(old, new);
        for node in &mut self.nodes {
            node.acked = 0;
            node.acked_dropped = 0;
        }
        self.repoint_all(new, Some(old), false);
        let ms = self.rng.range(100, 1500);
        self.at(ms, Timer::Rejoin(old));
    }

    /// The coordinator points followers at `to` (all of them after a
    /// promotion, `strays` only: those following another node): running
    /// ones are re-pointed after a while, down ones follow it when they
    /// restart. `except`: the old primary, which rejoins on its own.
    fn repoint_all(&mut self, to: NodeId, except: Option<NodeId>, strays: bool) {
        for i in 0..self.nodes.len() {
            if i == to || Some(i) == except || (strays && self.nodes[i].target == to) {
                continue;
            }
            match self.nodes[i].role {
                Role::Follower(_) => {
                    let ms = self.rng.range(0, 300);
                    self.at(ms, Timer::Repoint { node: i, to });
                }
                Role::Off => self.nodes[i].target = to,
                Role::Primary(_) => {}
            }
        }
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Unpause(n) => {
                if self.nodes[n].proc_ == Proc::Paused {
                    self.nodes[n].proc_ = Proc::Up;
                }
            }
            Timer::Restart(n) => {
                self.nodes[n].restarting = false;
                self.restarted(n);
                let to = self.primary.unwrap_or(self.nodes[n].target);
                self.start_follower(n, to);
                let name = self.nodes[n].name.clone();
                self.note(format!("{name}: restarted as a follower of {}", self.nodes[to].name));
            }
            Timer::RestartPrimary(n) => {
                self.restarted(n);
                self.nodes[n].role = Role::Primary(PrimaryNode::default());
                self.primary = Some(n);
                self.cause_all();
                self.stats.primary_restarts += 1;
                let name = self.nodes[n].name.clone();
                self.note(format!("{name}: restarted as the primary"));
                // Followers a failover pointed elsewhere come back to it.
                self.repoint_all(n, None, true);
            }
            Timer::Failover(old) => self.failover(old),
            Timer::Repoint { node, to } => {
                if self.nodes[node].proc_ == Proc::Paused {
                    self.at(50, Timer::Repoint { node, to });
                    return;
                }
                if self.primary != Some(to) {
                    // Overtaken by another failover (which re-points again).
                    return;
                }
                self.nodes[node].target = to;
                if matches!(self.nodes[node].role, Role::Follower(_)) {
                    self.stop_follower(node);
                    self.start_follower(node, to);
                    self.nodes[node].acct.causes += 1;
                    self.stats.repoints += 1;
                    let (a, b) = (self.nodes[node].name.clone(), self.nodes[to].name.clone());
                    self.note(format!("coordinator: {a} re-pointed to {b}"));
                }
            }
            Timer::Rejoin(n) => {
                let Some(p) = self.primary else {
                    self.at(50, Timer::Rejoin(n));
                    return;
                };
                self.restarted(n);
                self.start_follower(n, p);
                self.nodes[n].wait_acked = 0;
                self.nodes[n].acct.causes += 1;
                self.stats.rejoins += 1;
                let (a, b) = (self.nodes[n].name.clone(), self.nodes[p].name.clone());
                self.note(format!("{a}: the old primary rejoins as a follower of {b}"));
            }
            Timer::Heal(n) => {
                if self.nodes[n].path.partitioned_until.is_some_and(|t| t <= self.now) {
                    self.nodes[n].path.partitioned_until = None;
                }
            }
            Timer::HonestAgain(n) => self.nodes[n].path.hostile = 0,
        }
    }

    /// The end of the fault phase: every fault heals.
    fn end_faults(&mut self) {
        for node in &mut self.nodes {
            node.path.partitioned_until = None;
            node.path.hostile = 0;
        }
        let paused: Vec<NodeId> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].proc_ == Proc::Paused)
            .collect();
        for n in paused {
            self.nodes[n].proc_ = Proc::Up;
        }
        self.note("faults stop".into());
    }

    // ----- the run ------------------------------------------------------------

    /// Runs to quiescence or to the first violation.
    pub(super) fn run(&mut self) {
        let mut faults_on = true;
        loop {
            self.stats.steps += 1;
            if faults_on && !self.in_faults() {
                faults_on = false;
                self.end_faults();
            }
            self.tick_wires();
            // Timers, then the workload, then every node until nothing moves.
            let due: Vec<Timer> = {
                let now = self.now;
                let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers)
                    .into_iter()
                    .partition(|(t, _)| *t <= now);
                self.timers = later;
                due.into_iter().map(|(_, t)| t).collect()
            };
            for t in due {
                self.fire(t);
            }
            while self.now < self.write_end && self.next_write <= self.now {
                self.write();
                let gap = self.rng.range(0, 2 * self.params.write_gap_ms);
                let gap = if self.in_faults() { gap } else { gap * 4 };
                self.next_write += Duration::from_millis(gap.max(1));
            }
            while self.in_faults() && self.next_fault <= self.now {
                self.fault();
                self.next_fault += Duration::from_millis(self.rng.range(1, 2 * self.params.fault_gap_ms));
            }
            for _ in 0..64 {
                let mut moved = false;
                for n in 0..self.nodes.len() {
                    if !self.nodes[n].running() {
                        continue;
                    }
                    moved |= match self.nodes[n].role {
                        Role::Primary(_) => self.step_primary(n),
                        Role::Follower(_) => self.step_follower(n),
                        Role::Off => false,
                    };
                }
                self.track_acks();
                self.check_bounds();
                if !moved || self.failure.is_some() {
                    break;
                }
            }
            let stats = &mut self.stats;
            self.conns.retain(|_, c| {
                let keep = c.p.is_some() || c.f.is_some() || c.close_at.is_some();
                if !keep {
                    stats.hostile_faults += c.wire.hostile_faults;
                }
                keep
            });
            if self.failure.is_some() {
                return;
            }
            if self.now >= self.write_end && self.timers.is_empty() && self.converged() {
                let quiet = self.now.saturating_duration_since(self.write_end);
                self.stats.quiet_ms = quiet.as_millis() as u64;
                self.stats.quiet_share = (100 * quiet.as_millis() / self.quiet_bound().as_millis().max(1)) as u64;
                self.note("quiescent: every follower caught up".into());
                self.check_final();
                return;
            }
            let bound = self.quiet_bound();
            if self.now > self.write_end + bound {
                let states = self.describe();
                self.violate(format!(
                    "no quiescence {} ms after the faults and writes stopped: {states}",
                    bound.as_millis()
                ));
                return;
            }
            self.advance();
        }
    }

    /// The time every follower has to catch up once writes stop:
    /// [`QUIET`], plus a full sync of the largest data over the slowest
    /// path (its rate, or a window per round trip) for each follower in
    /// turn, twice over (one may be cut by the last fault, or fall off
    /// the primary's ring).
    pub(super) fn quiet_bound(&self) -> Duration {
        let data = self.nodes.iter().map(|n| n.store.data.len() as u64).max().unwrap_or(0);
        // A stream moves at most a window per round trip.
        let window = self.params.window as u64;
        let rate = self
            .nodes
            .iter()
            .map(|n| {
                let rtt = 2 * n.path.latency.as_millis() as u64 + n.path.jitter_ms;
                n.path.rate.min(window / rtt.max(1))
            })
            .min()
            .unwrap_or(1)
            .max(1);
        let per_sync = data / rate;
        QUIET + Duration::from_millis(2 * self.params.followers as u64 * per_sync)
    }

    fn tick_wires(&mut self) {
        let now = self.now;
        for c in self.conns.values_mut() {
            let running = [self.nodes[c.primary].running(), self.nodes[c.follower].running()];
            let path = &self.nodes[c.follower].path;
            c.wire.tick(now, path, running, &mut self.rng);
            if let Some((at, code, reason)) = c.close_at.clone() {
                if at <= now {
                    c.wire.close(End::Primary, code, &reason, now, path);
                    c.close_at = None;
                }
            }
        }
    }

    /// Moves the clock to the next event (at least 1 ms, at most 10 ms).
    fn advance(&mut self) {
        let now = self.now;
        let mut next = now + Duration::from_millis(10);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        consider(Some(self.next_write).filter(|_| now < self.write_end));
        consider(Some(self.next_fault).filter(|_| now < self.fault_end));
        consider(Some(self.fault_end).filter(|t| *t > now));
        for (t, _) in &self.timers {
            consider(Some(*t));
        }
        for c in self.conns.values() {
            consider(c.wire.next_event(now));
            consider(c.close_at.as_ref().map(|(t, _, _)| *t));
            consider(c.p.as_ref().and_then(|p| p.session.poll_timeout()));
            consider(c.f.as_ref().and_then(|f| f.deadline()));
        }
        for node in &self.nodes {
            if let Role::Follower(f) = &node.role {
                consider(f.session.poll_timeout());
                consider(match f.link {
                    Link::Idle { at } => Some(at),
                    Link::Connecting { deadline } => Some(deadline),
                    _ => None,
                });
            }
            consider(node.path.partitioned_until);
        }
        self.now = next.max(now + Duration::from_millis(1));
    }

    /// A one-line state of every node.
    pub(super) fn describe(&self) -> String {
        let mut out = Vec::new();
        for node in &self.nodes {
            let role = match &node.role {
                Role::Primary(_) => "primary".to_string(),
                Role::Follower(f) => format!(
                    "follower of {} {:?} {:?}",
                    self.nodes[node.target].name,
                    f.session.phase(),
                    f.link
                ),
                Role::Off => "off".to_string(),
            };
            out.push(format!(
                "{} {:?} {role}, end {}, applied {}, stale {}, history {}",
                node.name,
                node.proc_,
                node.store.end(),
                node.store.applied(),
                node.store.stale(),
                node.store.history.replid
            ));
        }
        out.join("; ")
    }

    /// Creates the connection `n` opens to `to` (reachable).
    pub(super) fn connect(&mut self, n: NodeId, to: NodeId) -> u64 {
        let cid = self.next_conn;
        self.next_conn += 1;
        let wire = Wire::new(self.now, self.params.window, IDLE, &mut self.rng);
        let session = PrimarySession::new(cid, &self.pconfig, self.now);
        self.conns.insert(
            cid,
            Conn {
                id: cid,
                primary: to,
                follower: n,
                wire,
                p: Some(PEnd::new(session)),
                f: None,
                close_at: None,
            },
        );
        self.stats.connects += 1;
        let live = self.conns.values().filter(|c| c.primary == to && c.p.is_some()).count() as u64;
        self.stats.max_primary_conns = self.stats.max_primary_conns.max(live);
        cid
    }
}
