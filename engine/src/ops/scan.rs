//! Incremental cursor scans (SCAN, HSCAN) with Redis' guarantees.
//!
//! The keyspace cursor keeps the shard in its low bits and the table's
//! reverse-binary bucket cursor above them. Each call examines at most
//! 10 × COUNT buckets (at least one step), holds one shard's read lock at a
//! time, and releases it before returning. Every key present for the whole
//! iteration is returned at least once, whatever resizes happen between
//! calls; a key may be returned twice; keys added or removed meanwhile may
//! or may not be returned; the iteration ends.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::blob::Blob;
use std::sync::Arc;

use crate::core::Inner;
use crate::error::{Error, Result};
use crate::glob::glob_match;
use crate::keyspace::table::{Table, TableEntry};
use crate::keyspace::Value;
use crate::ops::keys::KeyType;
use crate::stats::Op;

/// Options of [`Engine::scan`](crate::Engine::scan) and [`Engine::hscan`](crate::Engine::hscan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    /// How many elements to aim for per call (Redis' COUNT; default 10).
    pub count: usize,
    /// Only elements whose key (or field) matches this glob (MATCH).
    pub pattern: Option<Bytes>,
    /// SCAN only: only keys of this type (TYPE).
    pub key_type: Option<KeyType>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            count: 10,
            pattern: None,
            key_type: None,
        }
    }
}

impl ScanOptions {
    /// COUNT.
    pub fn count(mut self, count: usize) -> Self {
        self.count = count;
        self
    }
    /// MATCH.
    pub fn pattern(mut self, pattern: impl AsRef<[u8]>) -> Self {
        self.pattern = Some(Bytes::copy_from_slice(pattern.as_ref()));
        self
    }
    /// TYPE.
    pub fn key_type(mut self, key_type: KeyType) -> Self {
        self.key_type = Some(key_type);
        self
    }

    fn budget(&self) -> usize {
        self.count.max(1).saturating_mul(10)
    }

    fn matches(&self, s: &[u8]) -> bool {
        self.pattern.as_ref().is_none_or(|p| glob_match(p, s))
    }
}

/// One page of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage<T> {
    /// Pass this to the next call; 0 when the iteration is complete.
    pub cursor: u64,
    /// The elements found (possibly none, even when the iteration goes on).
    pub items: Vec<T>,
    /// Buckets this call examined (at most 10 × COUNT).
    pub buckets_examined: usize,
}

/// Steps through `table` from `cursor` until `count` items, the bucket budget
/// or the end; returns (cursor, examined, finished).
fn scan_table<E: TableEntry>(
    table: &Table<E>,
    mut cursor: u64,
    opts: &ScanOptions,
    examined: &mut usize,
    found: &mut usize,
    mut take: impl FnMut(&E) -> bool,
) -> (u64, bool) {
    let budget = opts.budget();
    loop {
        if *found >= opts.count.max(1) {
            return (cursor, false);
        }
        let cost = table.scan_step_cost();
        if *examined > 0 && *examined + cost > budget {
            return (cursor, false);
        }
        let step = table.scan_step(cursor, |e| {
            if opts.matches(e.key()) && take(e) {
                *found += 1;
            }
        });
        *examined += step.buckets;
        cursor = step.cursor;
        if cursor == 0 {
            return (0, true);
        }
    }
}

pub(crate) fn scan(inner: &Inner, cursor: u64, opts: &ScanOptions) -> ScanPage<Blob> {
    let shards = inner.keyspace.shard_count();
    let bits = shards.trailing_zeros();
    let mut shard = (cursor & (shards as u64 - 1)) as usize;
    let mut table_cursor = cursor >> bits;
    let mut items = Vec::new();
    let (mut examined, mut found) = (0, 0);
    let now = inner.clock.now_ms();
    inner.ops.count(Op::Scan);
    loop {
        let guard = inner.keyspace.shard(shard).read();
        let (next, finished) = scan_table(&guard.table, table_cursor, opts, &mut examined, &mut found, |e| {
            let type_ok = matches!(
                (opts.key_type, &e.value),
                (None, _) | (Some(KeyType::String), Value::Str(_)) | (Some(KeyType::Hash), Value::Hash(_))
            );
            let keep = type_ok && !e.is_expired(now);
            if keep {
                items.push(e.key.clone());
            }
            keep
        });
        drop(guard);
        if !finished {
            return ScanPage {
                cursor: (next << bits) | shard as u64,
                items,
                buckets_examined: examined,
            };
        }
        shard += 1;
        table_cursor = 0;
        if shard == shards {
            return ScanPage {
                cursor: 0,
                items,
                buckets_examined: examined,
            };
        }
        if examined >= opts.budget() || found >= opts.count.max(1) {
            return ScanPage {
                cursor: shard as u64,
                items,
                buckets_examined: examined,
            };
        }
    }
}

pub(crate) fn hscan(
    inner: &Inner,
    key: impl AsRef<[u8]>,
    cursor: u64,
    opts: &ScanOptions,
) -> Result<ScanPage<(Blob, Blob)>> {
    let page = inner.read(key.as_ref(), Op::HScan, |e| match &e.value {
        Value::Hash(hv) => {
            let mut items = Vec::new();
            let (mut examined, mut found) = (0, 0);
            let (cursor, _) = scan_table(&hv.table, cursor, opts, &mut examined, &mut found, |f| {
                items.push((f.field.clone(), f.value.clone()));
                true
            });
            Ok(ScanPage {
                cursor,
                items,
                buckets_examined: examined,
            })
        }
        Value::Str(_) => Err(Error::WrongType),
    });
    page.unwrap_or(Ok(ScanPage {
        cursor: 0,
        items: Vec::new(),
        buckets_examined: 0,
    }))
}

pub(crate) fn scan_iter(inner: &Arc<Inner>, opts: ScanOptions) -> ScanIter {
    ScanIter {
        inner: Arc::clone(inner),
        opts,
        cursor: 0,
        buffer: VecDeque::new(),
        done: false,
    }
}

pub(crate) fn hscan_iter(inner: &Arc<Inner>, key: impl AsRef<[u8]>, opts: ScanOptions) -> HScanIter {
    HScanIter {
        inner: Arc::clone(inner),
        key: Bytes::copy_from_slice(key.as_ref()),
        opts,
        cursor: 0,
        buffer: VecDeque::new(),
        done: false,
    }
}

/// Iterator returned by [`Engine::scan_iter`](crate::Engine::scan_iter).
#[derive(Debug)]
pub struct ScanIter {
    inner: Arc<Inner>,
    opts: ScanOptions,
    cursor: u64,
    buffer: VecDeque<Blob>,
    done: bool,
}

impl Iterator for ScanIter {
    type Item = Blob;
    fn next(&mut self) -> Option<Blob> {
        loop {
            if let Some(k) = self.buffer.pop_front() {
                return Some(k);
            }
            if self.done {
                return None;
            }
            let page = scan(&self.inner, self.cursor, &self.opts);
            self.cursor = page.cursor;
            self.done = page.cursor == 0;
            self.buffer.extend(page.items);
        }
    }
}

/// Iterator returned by [`Engine::hscan_iter`](crate::Engine::hscan_iter).
#[derive(Debug)]
pub struct HScanIter {
    inner: Arc<Inner>,
    key: Bytes,
    opts: ScanOptions,
    cursor: u64,
    buffer: VecDeque<(Blob, Blob)>,
    done: bool,
}

impl Iterator for HScanIter {
    type Item = Result<(Blob, Blob)>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(f) = self.buffer.pop_front() {
                return Some(Ok(f));
            }
            if self.done {
                return None;
            }
            match hscan(&self.inner, &self.key, self.cursor, &self.opts) {
                Ok(page) => {
                    self.cursor = page.cursor;
                    self.done = page.cursor == 0;
                    self.buffer.extend(page.items);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
