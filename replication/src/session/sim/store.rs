//! The fake engine under each simulated node: what the drivers ask of
//! `ringkv::Engine`, kept small enough to check every byte.
//!
//! - The keyspace is the bytes applied, from offset 0 (`data`): two
//!   keyspaces are equal when their bytes are, and a snapshot at offset X
//!   is the first X bytes. The bytes are real ring records
//!   (`ringkv::log::record`: headers with offset-covering checksums), so a
//!   follower's appends are checked with the engine's own
//!   [`validate_stream`] and the log cursor cuts real record boundaries.
//! - The ring holds `[oldest, end)`: on a live node a window over `data`
//!   of at most `capacity` bytes (older records are overwritten); during a
//!   full sync it restarted at the snapshot's offset and holds what was
//!   stored since (`full`), refusing with `LogError::Full` what would
//!   overwrite it, as `replica_append` does then.
//! - `append` follows `RingLog::append_stream` (a gap, bytes that differ
//!   from the ring's, bytes below `oldest`, overlap with identical bytes).
//! - What a process restart keeps is what a data directory keeps: the ring
//!   and its history, the keyspace they rebuild, and the `FULLSYNC` marker,
//!   under which recovery starts empty (a fresh ring with a history of its
//!   own); the staging keyspace of a full sync is lost.
//! - A promotion gives the ring a new history whose previous id is the old
//!   one and whose switch offset is the ring's end (`Engine::promote`).

use ringkv::log::record::{self, Header, HEADER_LEN};
use ringkv::log::{validate_stream, LogError};

use crate::protocol::{History, PrimaryView};
use crate::session::{Progress, ReplicaState, Served};

/// Magic of the fake snapshot stream: `magic, offset (u64), data, crc32c`.
const SNAP_MAGIC: &[u8; 8] = b"SIMSNAP\0";

/// A full sync in progress: the ring restarted at `offset`.
#[derive(Debug, Clone)]
pub(super) struct Full {
    pub(super) offset: u64,
    pub(super) stored: Vec<u8>,
    /// The snapshot, once loaded: the primary's first `offset` bytes.
    pub(super) loaded: Option<Vec<u8>>,
}

/// What refused an append.
#[derive(Debug)]
pub(super) enum AppendError {
    /// The ring is full during a full sync (the session holds the bytes).
    Full(LogError),
    /// Anything else `replica_append` would return.
    Engine(LogError),
}

#[derive(Debug, Clone)]
pub(super) struct Store {
    pub(super) data: Vec<u8>,
    pub(super) oldest: u64,
    pub(super) capacity: u64,
    pub(super) max_payload: usize,
    pub(super) history: History,
    pub(super) full: Option<Full>,
    /// Snapshot bytes received so far (the staging keyspace's input).
    pub(super) staging: Vec<u8>,
    /// The `FULLSYNC` marker of the data directory.
    pub(super) marker: bool,
}

/// The ring bytes of a record with this payload at `offset`.
pub(super) fn record_bytes(offset: u64, payload: &[u8]) -> Vec<u8> {
    let len = record::record_len(payload.len()) as usize;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&record::header(offset, payload));
    out.extend_from_slice(payload);
    out.resize(len, 0);
    out
}

/// Length of the record whose header starts `bytes`.
fn record_at(bytes: &[u8]) -> Option<u64> {
    let head: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    Some(record::record_len(Header::parse(head).len as usize))
}

impl Store {
    pub(super) fn new(capacity: u64, max_payload: usize, replid: String) -> Store {
        Store {
            data: Vec::new(),
            oldest: 0,
            capacity,
            max_payload,
            history: History {
                replid,
                prev_replid: String::new(),
                switch_offset: 0,
                epoch: 0,
            },
            full: None,
            staging: Vec::new(),
            marker: false,
        }
    }

    /// The ring's end.
    pub(super) fn end(&self) -> u64 {
        match &self.full {
            Some(f) => f.offset + f.stored.len() as u64,
            None => self.data.len() as u64,
        }
    }

    /// The keyspace's offset (the old data's during a full sync).
    pub(super) fn applied(&self) -> u64 {
        self.data.len() as u64
    }

    pub(super) fn stale(&self) -> bool {
        self.full.is_some()
    }

    pub(super) fn progress(&self) -> Progress {
        Progress {
            applied: self.applied(),
            durable: self.applied(),
        }
    }

    pub(super) fn replica_state(&self) -> ReplicaState {
        ReplicaState {
            applied: self.applied(),
            replid: self.history.replid.clone(),
            stale: self.stale(),
            max_record: self.max_payload,
            capacity: self.capacity,
        }
    }

    /// What a primary serves.
    pub(super) fn served(&self) -> Served {
        Served {
            replid: self.history.replid.clone(),
            stale: self.stale(),
            published: self.end(),
            limit: self.end(),
            chained: false,
        }
    }

    pub(super) fn view(&self, max_replay_bytes: Option<u64>) -> PrimaryView {
        PrimaryView {
            history: self.history.clone(),
            oldest: self.oldest,
            published: self.end(),
            max_replay_bytes,
            unavailable: self.stale().then(|| "this node is itself in a full sync".to_string()),
        }
    }

    /// A primary's write: one record at the end.
    pub(super) fn write(&mut self, payload: &[u8]) -> u64 {
        let at = self.end();
        let rec = record_bytes(at, payload);
        self.data.extend_from_slice(&rec);
        self.trim();
        self.end()
    }

    /// Overwrites the oldest records until the ring holds at most its capacity.
    fn trim(&mut self) {
        if self.full.is_some() {
            return;
        }
        let end = self.data.len() as u64;
        while end - self.oldest > self.capacity {
            let Some(len) = record_at(&self.data[self.oldest as usize..]) else {
                break;
            };
            self.oldest += len;
        }
    }

    /// `LogView::read_stream`: whole records from `from`, at least one,
    /// while fewer than `max` bytes were read.
    pub(super) fn read_stream(&self, from: u64, max: usize) -> Result<Vec<u8>, LogError> {
        if from < self.oldest {
            return Err(LogError::Lagged { oldest: self.oldest });
        }
        let end = self.data.len() as u64;
        let mut to = from;
        while to < end && (to == from || ((to - from) as usize) < max) {
            match record_at(&self.data[to as usize..]) {
                Some(len) => to += len,
                None => break,
            }
        }
        Ok(self.data[from as usize..to as usize].to_vec())
    }

    /// The bytes of the snapshot stream of a snapshot cut now.
    pub(super) fn snapshot(&self) -> (u64, Vec<u8>) {
        let at = self.data.len();
        let mut out = Vec::with_capacity(at + 20);
        out.extend_from_slice(SNAP_MAGIC);
        out.extend_from_slice(&(at as u64).to_le_bytes());
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&crc32c::crc32c(&self.data).to_le_bytes());
        (at as u64, out)
    }

    /// `BeginFullSync`: the ring restarts at `offset` in `history`, the
    /// keyspace stays (stale), the marker is written.
    pub(super) fn begin_full_sync(&mut self, offset: u64, history: History) {
        self.history = history;
        self.full = Some(Full {
            offset,
            stored: Vec::new(),
            loaded: None,
        });
        self.staging.clear();
        self.marker = true;
        self.oldest = offset;
    }

    /// The loader at the end of the snapshot stream: checks what was fed
    /// (the real loader checks the snapshot format's checksums).
    pub(super) fn load(&mut self) -> Result<(), String> {
        let staged = std::mem::take(&mut self.staging);
        let Some(full) = &mut self.full else {
            return Err("a snapshot without a full sync".into());
        };
        let n = staged.len();
        if n < 20 || &staged[..8] != SNAP_MAGIC {
            return Err("not a snapshot".into());
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&staged[8..16]);
        let offset = u64::from_le_bytes(word);
        let data = &staged[16..n - 4];
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&staged[n - 4..]);
        if data.len() as u64 != offset || crc32c::crc32c(data) != u32::from_le_bytes(crc) {
            return Err("snapshot checksum mismatch".into());
        }
        if offset != full.offset {
            return Err(format!("a snapshot at {offset} for a full sync at {}", full.offset));
        }
        full.loaded = Some(data.to_vec());
        Ok(())
    }

    /// The bytes the ring holds at `[from, from + len)`.
    fn ring_slice(&self, from: u64, len: usize) -> &[u8] {
        match &self.full {
            Some(f) => &f.stored[(from - f.offset) as usize..][..len],
            None => &self.data[from as usize..][..len],
        }
    }

    /// `replica_append` (and `replica_replay_stream` when `apply`): the
    /// checks of `RingLog::append_stream`, the full ring of a full sync.
    /// Returns the new bytes (those past the ring's end).
    pub(super) fn append(&mut self, start: u64, bytes: &[u8]) -> Result<usize, AppendError> {
        let offsets = validate_stream(start, bytes, self.max_payload).map_err(AppendError::Engine)?;
        let end = self.end();
        if start > end {
            return Err(AppendError::Engine(LogError::Gap { start, end }));
        }
        let overlap = ((end - start) as usize).min(bytes.len());
        if overlap > 0 {
            if start < self.oldest {
                return Err(AppendError::Engine(LogError::Lagged { oldest: self.oldest }));
            }
            let mine = self.ring_slice(start, overlap);
            if let Some(i) = mine.iter().zip(bytes).position(|(a, b)| a != b) {
                return Err(AppendError::Engine(LogError::Divergent {
                    offset: start + i as u64,
                }));
            }
            if overlap == bytes.len() {
                return Ok(0);
            }
            if !offsets.contains(&end) {
                return Err(AppendError::Engine(LogError::Divergent { offset: end }));
            }
        }
        let new = &bytes[overlap..];
        if let Some(f) = &mut self.full {
            let used = f.stored.len() as u64;
            if used + new.len() as u64 > self.capacity {
                return Err(AppendError::Full(LogError::Full {
                    needed: new.len() as u64,
                    free: self.capacity - used,
                }));
            }
            f.stored.extend_from_slice(new);
        } else {
            self.data.extend_from_slice(new);
            self.trim();
        }
        Ok(new.len())
    }

    /// `swap_in`: the loaded snapshot and the ring's records since become
    /// the keyspace; its save clears the marker.
    pub(super) fn swap_in(&mut self, offset: u64) -> Result<(), String> {
        let Some(full) = self.full.take_if(|f| f.offset == offset && f.loaded.is_some()) else {
            return Err(format!("no loaded full sync at {offset} to swap in"));
        };
        let mut data = full.loaded.unwrap_or_default();
        data.extend_from_slice(&full.stored);
        self.data = data;
        self.oldest = offset;
        self.marker = false;
        self.trim();
        Ok(())
    }

    /// A process restart in the data directory.
    pub(super) fn restart(&mut self, fresh_replid: String) {
        self.staging.clear();
        if self.marker {
            // Recovery wipes an interrupted full sync: a fresh ring.
            *self = Store::new(self.capacity, self.max_payload, fresh_replid);
        } else if let Some(f) = &mut self.full {
            f.loaded = None;
        }
    }

    /// `Engine::promote`: a new history continuing this ring.
    pub(super) fn promote(&mut self, replid: String) -> Result<(), String> {
        if self.stale() {
            return Err("cannot promote during a full sync (the data is stale)".into());
        }
        let old = std::mem::take(&mut self.history.replid);
        self.history = History {
            replid,
            prev_replid: old,
            switch_offset: self.end(),
            epoch: 0,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_follow_the_rings_rules() {
        let mut p = Store::new(1 << 20, 1000, "P".into());
        p.write(b"one");
        p.write(&[7; 100]);
        let all = p.read_stream(0, 1).expect("read");
        assert_eq!(all.len(), 24, "one record at least, the first");
        let mut f = Store::new(1 << 20, 1000, "P".into());
        assert_eq!(f.append(0, &all).expect("append"), 24);
        assert_eq!(f.append(0, &all).expect("same bytes again"), 0);
        let rest = p.read_stream(24, 1000).expect("read");
        assert!(matches!(f.append(48, &rest), Err(AppendError::Engine(_))));
        let mut bad = rest.clone();
        bad[20] ^= 1;
        assert!(matches!(f.append(24, &bad), Err(AppendError::Engine(_))));
        assert_eq!(f.append(24, &rest).expect("append"), rest.len());
        assert_eq!(f.data, p.data);
    }

    #[test]
    fn a_full_sync_stores_then_swaps_in_and_a_restart_under_the_marker_wipes() {
        let mut p = Store::new(1 << 20, 1000, "P".into());
        for i in 0..10u8 {
            p.write(&[i; 30]);
        }
        let (at, snap) = p.snapshot();
        p.write(b"after");
        let mut f = Store::new(64, 1000, "F".into());
        f.begin_full_sync(at, p.history.clone());
        let log = p.read_stream(at, 1000).expect("read");
        assert_eq!(f.append(at, &log).expect("stored"), log.len());
        assert!(matches!(
            f.append(f.end(), &record_bytes(f.end(), &[0; 60])),
            Err(AppendError::Full(_))
        ));
        let mut wiped = f.clone();
        wiped.restart("W".into());
        assert_eq!(
            (wiped.applied(), wiped.stale(), wiped.history.replid.as_str()),
            (0, false, "W")
        );
        f.staging = snap;
        f.load().expect("load");
        f.swap_in(at).expect("swap");
        assert_eq!(f.data, p.data);
        assert!(!f.stale() && !f.marker);
    }
}
