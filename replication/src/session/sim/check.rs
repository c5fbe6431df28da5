//! The invariants, checked while a world runs and when it is quiescent:
//!
//! 1. **Same bytes at the same offsets.** A follower that continues at
//!    offset X holds its primary's first X bytes; every range it applies
//!    equals the primary's at the same offsets; after a swap its keyspace
//!    is the primary's prefix; it acks only what it applied; at
//!    quiescence it equals its primary. Over a hostile transport too: the
//!    session hands the engine no frame at a wrong offset (`follower_end`).
//! 2. **No write acknowledged by WAIT is lost.** The highest offset a
//!    primary's session counted as acked (`PrimarySession::acked`, what
//!    `wait_for_followers` counts) is tracked per primary; the follower
//!    promoted in its place holds those bytes, unless every follower that
//!    acked them dropped them since in a full sync of its own (counted
//!    and traced: see `check_promotion`).
//! 3. **No sync loop.** Every full sync after a completed one needs a
//!    cause since the previous one (a fault on its link or node, a primary
//!    change, a re-pointing, its offset leaving the primary's ring, a
//!    snapshot given up, a hostile transport); and every follower catches
//!    up within a bound once faults and writes stop
//!    ([`World::quiet_bound`]: 10 s plus two full syncs per follower of
//!    the whole data over the slowest path).
//! 4. **Bounded memory.** What is queued in each stream stays within its
//!    window (plus the frames a hostile transport duplicates or holds
//!    back), a primary session holds at most one log frame and one
//!    snapshot chunk beyond it, a follower's ring during a full sync holds
//!    at most its capacity and the session holds at most one frame more;
//!    the error a link ends with (kept as `last_error`, logged) is a few
//!    KiB at most, whatever the peer sent.
//! 5. **Honest transports end links only the ways QUIC can**: a reset, a
//!    timeout, an orderly close or resync; never a protocol error, an
//!    engine error or a halt.

use crate::protocol::LEN_PREFIX;
use crate::session::{FollowerPhase, LinkEnd};
use crate::ReplError;

use super::net::Lane;
use super::world::{Link, NodeId, Proc, Role, World, SNAPSHOT_CHUNK};

/// The longest error text a link may end with: reasons the peer sends
/// are within a control frame's strings (4 KiB), and an error names its
/// frame, never the frame's bytes.
const MAX_ERROR_TEXT: usize = 4096 + 512;

/// Index of the first byte where `a` and `b` differ within their common
/// length, or where the shorter ends.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

impl World {
    pub(super) fn check_continue(&mut self, f: NodeId, p: NodeId, offset: u64) {
        let (fd, pd) = (&self.nodes[f].store.data, &self.nodes[p].store.data);
        let x = offset as usize;
        if fd.len() < x || pd.len() < x || fd[..x] != pd[..x] {
            let at = first_difference(&fd[..x.min(fd.len())], &pd[..x.min(pd.len())]);
            self.violate(format!(
                "silent divergence: {} continued from {} at {offset}, but their bytes differ from {at}",
                self.nodes[f].name, self.nodes[p].name
            ));
        }
    }

    pub(super) fn check_applied(&mut self, f: NodeId, p: NodeId, from: u64, len: usize) {
        let (from, to) = (from as usize, from as usize + len);
        let (fd, pd) = (&self.nodes[f].store.data, &self.nodes[p].store.data);
        if pd.len() < to || fd.len() < to || fd[from..to] != pd[from..to] {
            self.violate(format!(
                "{} applied [{from}, {to}) which differs from {}'s bytes there",
                self.nodes[f].name, self.nodes[p].name
            ));
        }
    }

    pub(super) fn check_swap(&mut self, f: NodeId, p: NodeId) {
        let (fd, pd) = (&self.nodes[f].store.data, &self.nodes[p].store.data);
        if pd.len() < fd.len() || fd[..] != pd[..fd.len()] {
            let at = first_difference(fd, pd);
            self.violate(format!(
                "{}'s full sync swapped in {} bytes that differ from {}'s from offset {at}",
                self.nodes[f].name,
                fd.len(),
                self.nodes[p].name
            ));
        }
    }

    /// A full sync begins on `n`: it needs a cause since the previous one.
    pub(super) fn count_full_sync(&mut self, n: NodeId) {
        let quiet = !self.in_faults();
        let acct = &mut self.nodes[n].acct;
        acct.full_syncs += 1;
        if quiet {
            acct.quiet_full_syncs += 1;
        }
        // A full sync after one that never swapped in retries it (the
        // link ended under it); one after a completed full sync needs a
        // cause since.
        let retry = acct.unfinished;
        acct.unfinished = true;
        if acct.causes == 0 && !retry {
            let k = acct.full_syncs;
            let name = self.nodes[n].name.clone();
            self.violate(format!(
                "sync loop: {name}'s full sync #{k} began with nothing since the previous one to justify it"
            ));
        }
        self.nodes[n].acct.causes = 0;
    }

    /// How a follower's link ended: over an honest transport, only as QUIC
    /// can end it.
    pub(super) fn check_link_end(&mut self, n: NodeId, hostile: bool, end: &LinkEnd) {
        let ok = match end {
            LinkEnd::Stopped | LinkEnd::Reconnect(_) => true,
            LinkEnd::Failed(ReplError::Connection(_) | ReplError::Timeout(_)) => true,
            // A halt is never right here: no record is beyond a limit and
            // no primary diverges from the history it serves.
            LinkEnd::Failed(ReplError::Divergent(_) | ReplError::Incompatible(_)) => false,
            LinkEnd::Failed(_) => hostile,
        };
        if !ok {
            let name = self.nodes[n].name.clone();
            let how = if hostile { "a hostile" } else { "an honest" };
            self.violate(format!("{name}'s link over {how} transport ended with {end:?}"));
        }
        // What a link's end says is kept (`last_error`) and logged: it must
        // not grow with what the peer sent.
        let said = match end {
            LinkEnd::Failed(e) => e.to_string().len(),
            LinkEnd::Reconnect(r) => r.len(),
            LinkEnd::Stopped => 0,
        };
        if said > MAX_ERROR_TEXT {
            let name = self.nodes[n].name.clone();
            self.violate(format!(
                "memory bound: {name}'s link ended with an error of {said} bytes (more than {MAX_ERROR_TEXT}), \
                 which it keeps as last_error and logs"
            ));
        }
    }

    /// Bytes the session holds while the ring is full: one frame at most.
    pub(super) fn check_held(&mut self, n: NodeId, len: usize) {
        if len > self.fconfig.max_frame_bytes {
            let name = self.nodes[n].name.clone();
            self.violate(format!("{name}'s session holds {len} bytes, more than a frame"));
        }
    }

    /// The follower promoted in `old`'s place holds every write a `WAIT 1`
    /// returned for, unless every follower that acked the missing ones has
    /// dropped them since in a full sync of its own (the ring restarts at
    /// the snapshot's offset, a crash before the swap wipes the
    /// directory): then the loss is counted, not hidden.
    pub(super) fn check_promotion(&mut self, old: NodeId, new: NodeId) {
        let w = self.nodes[old].wait_acked as usize;
        self.stats.wait_acked_checked += 1;
        let holds = |n: NodeId| {
            let (od, nd) = (&self.nodes[old].store.data, &self.nodes[n].store.data);
            nd.len() >= w && od.len() >= w && nd[..w] == od[..w]
        };
        if holds(new) {
            return;
        }
        let (od, nd) = (&self.nodes[old].store.data, &self.nodes[new].store.data);
        let at = first_difference(&nd[..w.min(nd.len())], &od[..w.min(od.len())]);
        let promotable_holder = (0..self.nodes.len()).find(|&f| {
            f != old
                && f != new
                && matches!(self.nodes[f].role, Role::Follower(_))
                && !self.nodes[f].store.stale()
                && holds(f)
        });
        let dropped = self.nodes.iter().map(|n| n.acked_dropped).max().unwrap_or(0);
        let (on, nn) = (self.nodes[old].name.clone(), self.nodes[new].name.clone());
        match promotable_holder {
            None if dropped as usize > at => {
                self.stats.acked_lost_to_full_syncs += 1;
                self.note(format!(
                    "acknowledged writes lost: {on} acked up to {w} (WAIT 1); {nn} holds them up to {at}; the \
                     followers that acked the rest dropped them in a full sync since"
                ));
            }
            holder => self.violate(format!(
                "acknowledged writes lost: {on} acked up to {w} (WAIT 1), {nn} was promoted holding {} bytes, equal up \
                 to {at}{}",
                nd.len(),
                holder.map(|h| format!(", while {} held them", self.nodes[h].name)).unwrap_or_default()
            )),
        }
    }

    /// The offsets a `WAIT 1` would return for now, per primary.
    pub(super) fn track_acks(&mut self) {
        let mut acked = Vec::new();
        for c in self.conns.values() {
            if let Some(pe) = &c.p {
                if let Some(link) = pe.session.link() {
                    if pe.session.acked(link.applied) {
                        acked.push((c.primary, c.follower, link.applied));
                    }
                }
            }
        }
        for (p, f, at) in acked {
            self.nodes[p].wait_acked = self.nodes[p].wait_acked.max(at);
            // An ack still in flight when the follower dropped its data
            // (a wipe) is not a copy it holds.
            if self.nodes[f].store.applied() >= at {
                self.nodes[f].acked = self.nodes[f].acked.max(at);
            }
        }
    }

    pub(super) fn check_bounds(&mut self) {
        let frame = self.params.follower_max_frame.min(self.params.primary_max_frame) + LEN_PREFIX;
        let window = self.params.window;
        let mut over = None;
        for c in self.conns.values() {
            for lane in Lane::ALL {
                let q = c.wire.queued(lane);
                let bound = if lane.is_data() { window + 3 * frame } else { window };
                if q > bound {
                    over = Some(format!("conn {}: {q} bytes queued on {lane:?}, above {bound}", c.id));
                }
            }
            if let Some(pe) = &c.p {
                let held = pe.pending_bytes();
                let bound = 2 * SNAPSHOT_CHUNK + 4 * frame;
                if held > bound {
                    over = Some(format!(
                        "conn {}: the primary's end holds {held} bytes, above {bound}",
                        c.id
                    ));
                }
            }
        }
        let largest = self.nodes.iter().map(|n| n.store.data.len()).max().unwrap_or(0);
        // A hostile transport may duplicate snapshot frames before the
        // stream's announced length exposes it.
        let hostile: u64 = self.conns.values().map(|c| c.wire.hostile_faults).sum();
        let staged_bound = largest + 20 + hostile as usize * frame;
        for node in &self.nodes {
            if let Some(full) = &node.store.full {
                if full.stored.len() as u64 > node.store.capacity {
                    over = Some(format!(
                        "{}: {} bytes stored in a ring of {}",
                        node.name,
                        full.stored.len(),
                        node.store.capacity
                    ));
                }
            }
            if node.store.staging.len() > staged_bound {
                over = Some(format!(
                    "{}: {} snapshot bytes staged",
                    node.name,
                    node.store.staging.len()
                ));
            }
        }
        let per_primary = 32 * self.nodes.len();
        for p in 0..self.nodes.len() {
            let live = self.conns.values().filter(|c| c.primary == p && c.p.is_some()).count();
            if live > per_primary {
                over = Some(format!("{}: {live} primary sessions alive", self.nodes[p].name));
            }
        }
        if let Some(what) = over {
            self.violate(format!("memory bound: {what}"));
        }
    }

    /// Every node runs, one is primary, every other follows it live with
    /// its bytes, and its primary counts it acked at its end.
    pub(super) fn converged(&self) -> bool {
        let Some(p) = self.primary else { return false };
        if !matches!(self.nodes[p].role, Role::Primary(_)) {
            return false;
        }
        let end = self.nodes[p].store.end();
        (0..self.nodes.len()).all(|f| {
            let node = &self.nodes[f];
            if node.proc_ != Proc::Up {
                return false;
            }
            if f == p {
                return true;
            }
            let Role::Follower(fl) = &node.role else { return false };
            let Link::Conn(cid) = fl.link else { return false };
            fl.session.phase() == FollowerPhase::Live
                && node.target == p
                && node.store.end() == end
                && node.store.applied() == end
                && self
                    .conns
                    .get(&cid)
                    .and_then(|c| c.p.as_ref())
                    .is_some_and(|pe| pe.session.acked(end))
        })
    }

    pub(super) fn check_final(&mut self) {
        let Some(p) = self.primary else { return };
        for f in 0..self.nodes.len() {
            if f == p {
                continue;
            }
            if self.nodes[f].store.data != self.nodes[p].store.data {
                let at = first_difference(&self.nodes[f].store.data, &self.nodes[p].store.data);
                self.violate(format!(
                    "at quiescence {} differs from the primary {} from offset {at}",
                    self.nodes[f].name, self.nodes[p].name
                ));
            }
            let quiet = self.nodes[f].acct.quiet_full_syncs;
            if quiet > 2 {
                self.violate(format!(
                    "{} needed {quiet} full syncs after the faults stopped",
                    self.nodes[f].name
                ));
            }
        }
    }
}
