//! What a backup directory holds, read from its names and the cheap,
//! checksummed parts of its files (snapshot headers, segment headers and
//! trailers), and which points it can restore.
//!
//! A point (an offset of one chain) is restorable when a snapshot of the
//! chain is at or before it and sealed, undamaged segments cover the log
//! from that snapshot to the point without a gap. A moment is restorable
//! when it falls between a restorable snapshot's time and the last time
//! mark of the segments that follow it; it resolves to the largest offset
//! the backup had received by then (see `restore` for what that means).
//! A file whose summary does not check is listed as damaged and never
//! used: the points that needed it are not restorable, and say why.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use ringkv::snapshot::format::HEADER_LEN as SNAPSHOT_HEADER_LEN;
use ringkv::snapshot::SnapshotHeader;

use super::error::BackupError;
use super::layout;
use super::segment::{self, SegmentSummary};
use super::target::{format_ms, Target};

/// A snapshot file of a chain.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    /// Its path.
    pub path: PathBuf,
    /// The offset in its name.
    pub offset: u64,
    /// Its header's creation time (unix ms), if the header checks.
    pub created_ms: u64,
    /// Its header's replid.
    pub replid: String,
    /// File size.
    pub bytes: u64,
    /// Why it cannot be used, if so.
    pub damage: Option<String>,
}

/// A sealed segment of a chain.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    /// Its path.
    pub path: PathBuf,
    /// Sequence number in the chain.
    pub seq: u64,
    /// First offset.
    pub start: u64,
    /// Offset after its last byte.
    pub end: u64,
    /// File size.
    pub bytes: u64,
    /// Header and trailer, if they check.
    pub summary: Option<SegmentSummary>,
    /// Why it cannot be used, if so.
    pub damage: Option<String>,
}

/// One continuous stretch of one history: a base snapshot and the log after it.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Chain id (its directory's number).
    pub id: u64,
    /// Its directory.
    pub dir: PathBuf,
    /// Snapshots by offset.
    pub snapshots: Vec<SnapshotFile>,
    /// Sealed segments by sequence number.
    pub segments: Vec<SegmentFile>,
    /// Segments still being written (or left by a crash).
    pub open: Vec<PathBuf>,
}

/// A range of restorable offsets, `[from, to]`, with the moments it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The snapshot the range starts at.
    pub from: u64,
    /// The end of the log covered after it.
    pub to: u64,
    /// The snapshot's time (unix ms).
    pub from_ms: u64,
    /// The last time mark in the range (unix ms).
    pub to_ms: u64,
}

/// A resolved restore point.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The chain.
    pub chain: u64,
    /// The snapshot to load.
    pub snapshot: SnapshotFile,
    /// The segments to replay, in order (those that reach past the snapshot).
    pub segments: Vec<SegmentFile>,
    /// Replay every record that ends at or before this offset.
    pub offset: u64,
}

fn read_snapshot(path: &Path, offset: u64) -> SnapshotFile {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut file = SnapshotFile {
        path: path.to_path_buf(),
        offset,
        created_ms: 0,
        replid: String::new(),
        bytes,
        damage: None,
    };
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    let header = File::open(path)
        .and_then(|mut f| f.read_exact(&mut h))
        .map_err(|e| format!("reading the header: {e}"))
        .and_then(|_| SnapshotHeader::decode(&h).map_err(|e| e.to_string()));
    match header {
        Ok(h) if h.offset == offset => {
            file.created_ms = h.created_ms;
            file.replid = h.replid;
        }
        Ok(h) => file.damage = Some(format!("its header says offset {}, its name {offset}", h.offset)),
        Err(e) => file.damage = Some(e),
    }
    file
}

impl Chain {
    fn load(id: u64, dir: &Path) -> Result<Chain, BackupError> {
        let mut chain = Chain {
            id,
            dir: dir.to_path_buf(),
            snapshots: Vec::new(),
            segments: Vec::new(),
            open: Vec::new(),
        };
        for (name, path) in layout::list(dir)? {
            if let Some(offset) = layout::parse_snapshot_name(&name) {
                chain.snapshots.push(read_snapshot(&path, offset));
            } else if let Some((seq, start, end)) = layout::parse_segment_name(&name) {
                let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let (summary, damage) = match segment::read_summary(&path) {
                    Ok(s) if (s.start, s.end) == (start, end) => (Some(s), None),
                    Ok(s) => (
                        None,
                        Some(format!(
                            "it holds [{}, {}), its name says [{start}, {end})",
                            s.start, s.end
                        )),
                    ),
                    Err(e) => (None, Some(e.to_string())),
                };
                chain.segments.push(SegmentFile {
                    path,
                    seq,
                    start,
                    end,
                    bytes,
                    summary,
                    damage,
                });
            } else if layout::parse_open_segment_name(&name).is_some() {
                chain.open.push(path);
            }
        }
        chain.snapshots.sort_by_key(|s| s.offset);
        chain.segments.sort_by_key(|s| s.seq);
        Ok(chain)
    }

    /// Bytes of its files.
    pub fn bytes(&self) -> u64 {
        self.snapshots.iter().map(|s| s.bytes).sum::<u64>() + self.segments.iter().map(|s| s.bytes).sum::<u64>()
    }

    /// The end of the log that undamaged segments cover without a gap
    /// from `from` (`from` itself when none does).
    pub fn covered_from(&self, from: u64) -> u64 {
        let mut cover = from;
        for s in &self.segments {
            if s.end <= cover {
                continue;
            }
            if s.start > cover || s.damage.is_some() {
                break;
            }
            cover = s.end;
        }
        cover
    }

    /// The first damaged segment that stops the coverage from `from`, if any.
    fn damage_after(&self, from: u64) -> Option<&SegmentFile> {
        let cover = self.covered_from(from);
        self.segments
            .iter()
            .find(|s| s.damage.is_some() && s.start <= cover && s.end > cover)
    }

    fn marks(&self, from: u64, to: u64) -> impl Iterator<Item = segment::Mark> + '_ {
        self.segments
            .iter()
            .filter_map(|s| s.summary.as_ref())
            .flat_map(|s| s.marks.iter().copied())
            .filter(move |m| (from..=to).contains(&m.offset))
    }

    /// The restorable ranges: one per undamaged snapshot (later snapshots
    /// inside an earlier range are folded into it).
    pub fn ranges(&self) -> Vec<Range> {
        let mut out: Vec<Range> = Vec::new();
        for snap in self.snapshots.iter().filter(|s| s.damage.is_none()) {
            let to = self.covered_from(snap.offset);
            let to_ms = self
                .marks(snap.offset, to)
                .map(|m| m.time_ms)
                .max()
                .unwrap_or(snap.created_ms)
                .max(snap.created_ms);
            match out.last_mut() {
                Some(last) if snap.offset <= last.to => {
                    last.to = last.to.max(to);
                    last.to_ms = last.to_ms.max(to_ms);
                }
                _ => out.push(Range {
                    from: snap.offset,
                    to,
                    from_ms: snap.created_ms,
                    to_ms,
                }),
            }
        }
        out
    }

    /// The plan for offset `at`: the newest undamaged snapshot at or
    /// before it whose segments reach it.
    fn plan_offset(&self, at: u64) -> Option<Plan> {
        let snap = self
            .snapshots
            .iter()
            .rev()
            .filter(|s| s.damage.is_none() && s.offset <= at)
            .find(|s| self.covered_from(s.offset) >= at)?;
        let segments = self
            .segments
            .iter()
            .filter(|s| s.end > snap.offset && s.start < at)
            .cloned()
            .collect();
        Some(Plan {
            chain: self.id,
            snapshot: snap.clone(),
            segments,
            offset: at,
        })
    }

    /// The largest offset the backup had by `time_ms`, within a range.
    fn offset_at_time(&self, time_ms: u64) -> Option<u64> {
        let range = self
            .ranges()
            .into_iter()
            .rev()
            .find(|r| r.from_ms <= time_ms && time_ms <= r.to_ms)?;
        let snapshots = self
            .snapshots
            .iter()
            .filter(|s| s.damage.is_none() && (range.from..=range.to).contains(&s.offset))
            .map(|s| segment::Mark {
                offset: s.offset,
                time_ms: s.created_ms,
            });
        self.marks(range.from, range.to)
            .chain(snapshots)
            .filter(|m| m.time_ms <= time_ms)
            .map(|m| m.offset)
            .max()
    }
}

/// Everything in a backup directory.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The backup directory.
    pub dir: PathBuf,
    /// Chains by id.
    pub chains: Vec<Chain>,
}

impl Catalog {
    /// Reads `dir` (an empty catalog if it does not exist).
    pub fn load(dir: &Path) -> Result<Catalog, BackupError> {
        let mut chains = Vec::new();
        for (name, path) in layout::list(dir)? {
            if let Some(id) = layout::parse_chain_dir(&name) {
                if path.is_dir() {
                    chains.push(Chain::load(id, &path)?);
                }
            }
        }
        chains.sort_by_key(|c| c.id);
        Ok(Catalog {
            dir: dir.to_path_buf(),
            chains,
        })
    }

    /// Bytes of every chain.
    pub fn bytes(&self) -> u64 {
        self.chains.iter().map(Chain::bytes).sum()
    }

    /// Resolves a target, in `chain` if given (else the newest chain that
    /// holds it), or says why it is not restorable.
    pub fn plan(&self, target: Target, chain: Option<u64>) -> Result<Plan, BackupError> {
        let chains: Vec<&Chain> = match chain {
            Some(id) => vec![self
                .chains
                .iter()
                .find(|c| c.id == id)
                .ok_or_else(|| BackupError::OutOfRange(format!("no chain {id} in {}", self.dir.display())))?],
            None => self.chains.iter().rev().collect(),
        };
        for c in &chains {
            let at = match target {
                Target::Offset(o) => Some(o),
                Target::Time(t) => c.offset_at_time(t),
            };
            if let Some(plan) = at.and_then(|at| c.plan_offset(at)) {
                return Ok(plan);
            }
        }
        let mut why = format!("{target} is outside what {} holds", self.dir.display());
        let mut any = false;
        for c in &chains {
            for r in c.ranges() {
                any = true;
                why.push_str(&format!(
                    "; chain {} restores offsets {}..={} ({} .. {})",
                    c.id,
                    r.from,
                    r.to,
                    format_ms(r.from_ms),
                    format_ms(r.to_ms)
                ));
            }
            for s in &c.snapshots {
                if let Some(d) = &s.damage {
                    why.push_str(&format!("; damaged, not used: {}: {d}", s.path.display()));
                }
            }
            if let Some(first) = c.snapshots.iter().find(|s| s.damage.is_none()) {
                if let Some(s) = c.damage_after(first.offset) {
                    why.push_str(&format!(
                        "; damaged, not used: {}: {}",
                        s.path.display(),
                        s.damage.as_deref().unwrap_or("")
                    ));
                }
            }
        }
        if !any {
            why.push_str(": no restorable point (no sealed snapshot yet)");
        }
        Err(BackupError::OutOfRange(why))
    }

    /// What `ringkv-restore --list` prints.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if self.chains.is_empty() {
            out.push_str(&format!("{}: no chains yet\n", self.dir.display()));
        }
        for c in &self.chains {
            let replid = c
                .segments
                .iter()
                .rev()
                .find_map(|s| s.summary.as_ref().map(|s| s.history.replid.clone()))
                .or_else(|| c.snapshots.first().map(|s| s.replid.clone()))
                .unwrap_or_default();
            out.push_str(&format!(
                "chain {}  history {replid}  {} snapshots, {} segments, {} bytes\n",
                c.id,
                c.snapshots.len(),
                c.segments.len(),
                c.bytes()
            ));
            for r in c.ranges() {
                out.push_str(&format!(
                    "  restorable: offsets {}..={}  times {} .. {}\n",
                    r.from,
                    r.to,
                    format_ms(r.from_ms),
                    format_ms(r.to_ms)
                ));
            }
            for s in &c.snapshots {
                match &s.damage {
                    None => out.push_str(&format!(
                        "  snapshot at {} ({}, {} bytes)\n",
                        s.offset,
                        format_ms(s.created_ms),
                        s.bytes
                    )),
                    Some(d) => out.push_str(&format!("  DAMAGED {}: {d}\n", s.path.display())),
                }
            }
            for s in c.segments.iter().filter(|s| s.damage.is_some()) {
                out.push_str(&format!(
                    "  DAMAGED {}: {}\n",
                    s.path.display(),
                    s.damage.as_deref().unwrap_or("")
                ));
            }
        }
        out
    }
}
