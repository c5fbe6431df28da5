//! The ring's protocol under the loom model checker: the real `RingLog`
//! (`ring.rs`) over loom's atomics (`memory.rs` switches them under
//! `--cfg loom`), on a 64-byte ring that two writers lap while a reader
//! copies from it, and with a reset racing an append. Loom runs every
//! interleaving of the threads up to a preemption bound, and lets each
//! `Relaxed`/`Acquire` load return any value the memory model allows (not
//! only the newest), so a missing fence shows up as a reader that accepts
//! bytes a lapping writer changed.
//!
//! Each model asserts what a reader may see: `Ok` with whole records whose
//! payloads are exactly what was appended at those offsets, or
//! [`LogError::Lagged`]; never a torn or stale record, never `Corrupt` (a
//! healthy ring that was only lapped is not damaged).
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p ringkv --lib log::loom_tests
//! ```
//!
//! Without `LOOM_MAX_PREEMPTIONS` the models use 2 (a few seconds each);
//! scripts/long-tests.sh runs them with 3.

use std::collections::BTreeMap;

use loom::sync::Arc;
use loom::thread;

use super::record;
use super::ring::{validate_stream, Retention, RingLog};
use crate::error::LogError;

/// Data bytes of the model's ring: a 24-byte record (8 bytes of payload)
/// laps a record after two and a bit records.
const CAPACITY: u64 = 64;
/// A record's payload: 8 bytes of one value.
const PAYLOAD: usize = 8;

fn payload(tag: u8) -> Vec<u8> {
    vec![tag; PAYLOAD]
}

/// Runs `f` under loom with the environment's bounds, at most 2
/// preemptions if it sets none (so the test command stays bounded), and
/// prints how many executions loom explored.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = runs.clone();
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    println!(
        "loom {name}: {} executions, preemption bound {:?}",
        runs.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound
    );
}

/// A ring with records at 0 and 24 (payloads 0xA0, 0xA1), `published` 48.
fn prefilled(retention: Retention) -> (Arc<RingLog>, BTreeMap<u64, Vec<u8>>) {
    let ring = RingLog::model(CAPACITY, retention).expect("model ring");
    let mut written = BTreeMap::new();
    for tag in [0xA0, 0xA1] {
        let at = ring.append(&payload(tag)).expect("prefill");
        written.insert(at, payload(tag));
    }
    assert_eq!(ring.published(), 48);
    (Arc::new(ring), written)
}

/// Checks a reader's result: whole records from `from`, contiguous, each
/// exactly what was appended at its offset; or `Lagged`.
fn check_read(result: Result<Vec<(u64, Vec<u8>)>, LogError>, from: u64, written: &BTreeMap<u64, Vec<u8>>) {
    match result {
        Ok(records) => {
            let mut at = from;
            for (offset, bytes) in records {
                assert_eq!(offset, at, "records are contiguous from {from}");
                let expected = written
                    .get(&offset)
                    .unwrap_or_else(|| panic!("no record was appended at {offset}"));
                assert_eq!(&bytes, expected, "the record at {offset} is not what was written there");
                at += record::record_len(bytes.len());
            }
        }
        Err(LogError::Lagged { .. }) => {}
        Err(e) => panic!("a reader of a lapped ring got {e}"),
    }
}

/// Two writers each append a record that laps the ring, a third thread
/// reads from `from` with `read` (`stream`: false) or `read_stream`.
fn lapping(name: &str, from: u64, stream: bool) {
    model(name, move || {
        let (ring, mut written) = prefilled(Retention::Overwrite);
        let writers: Vec<_> = [0xB0u8, 0xB1]
            .into_iter()
            .map(|tag| {
                let ring = ring.clone();
                thread::spawn(move || (ring.append(&payload(tag)).expect("append"), tag))
            })
            .collect();
        let reader = {
            let ring = ring.clone();
            thread::spawn(move || {
                if stream {
                    ring.read_stream(from, 1 << 10).map(|raw| {
                        let offsets =
                            validate_stream(raw.start, &raw.bytes, ring.max_payload()).expect("whole records");
                        offsets
                            .iter()
                            .map(|&at| {
                                let i = (at - raw.start) as usize + record::HEADER_LEN;
                                (at, raw.bytes[i..i + PAYLOAD].to_vec())
                            })
                            .collect()
                    })
                } else {
                    ring.read(from, 1 << 10)
                        .map(|batch| batch.records.into_iter().map(|(at, p)| (at, p.to_vec())).collect())
                }
            })
        };
        for w in writers {
            let (at, tag) = w.join().expect("writer");
            written.insert(at, payload(tag));
        }
        let read = reader.join().expect("reader");
        // The writers appended after the prefill, one after the other.
        assert_eq!(written.keys().copied().collect::<Vec<_>>(), vec![0, 24, 48, 72]);
        assert_eq!(ring.published(), 96);
        check_read(read, from, &written);
    });
}

#[test]
fn a_reader_never_accepts_a_record_a_lapping_writer_changed() {
    lapping("read from 0", 0, false);
}

#[test]
fn a_reader_from_the_second_record_never_accepts_a_lapped_one() {
    lapping("read from 24", 24, false);
}

#[test]
fn raw_stream_reads_never_return_bytes_a_lapping_writer_changed() {
    lapping("read_stream from 0", 0, true);
}

/// A ring that keeps history: `set_oldest` lets a writer overwrite the
/// first record while a reader copies it; the reader sees the new `oldest`
/// whenever its copy saw the writer's bytes.
#[test]
fn raising_oldest_lets_a_writer_overwrite_only_what_readers_then_refuse() {
    model("set_oldest", || {
        let (ring, mut written) = prefilled(Retention::KeepHistory);
        let trim = {
            let ring = ring.clone();
            thread::spawn(move || ring.set_oldest(24).expect("set_oldest"))
        };
        let writer = {
            let ring = ring.clone();
            thread::spawn(move || ring.append(&payload(0xB0)))
        };
        let reader = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.read(0, 1 << 10)
                    .map(|batch| batch.records.into_iter().map(|(at, p)| (at, p.to_vec())).collect())
            })
        };
        trim.join().expect("trim");
        let appended = writer.join().expect("writer");
        let read = reader.join().expect("reader");
        match appended {
            Ok(at) => {
                assert_eq!(at, 48);
                written.insert(at, payload(0xB0));
            }
            // Before the trim, the record would overwrite kept history.
            Err(LogError::Full { .. }) => {}
            Err(e) => panic!("append: {e}"),
        }
        check_read(read, 0, &written);
    });
}

/// `reset_to` racing an append and a reader: the append lands wholly
/// before the reset (and is wiped with the old history) or wholly after it
/// (the first record of the new one), or is refused with `Resetting`;
/// never lost in between, and the reader sees whole old records or
/// `Lagged`.
#[test]
fn a_reset_is_exclusive_with_appends() {
    const RESTART: u64 = 200;
    model("reset", || {
        let (ring, mut written) = prefilled(Retention::Overwrite);
        let reset = {
            let ring = ring.clone();
            thread::spawn(move || ring.reset_to(RESTART, &"r".repeat(40), "", 0))
        };
        let writer = {
            let ring = ring.clone();
            thread::spawn(move || ring.append(&payload(0xB0)))
        };
        let reader = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.read(0, 1 << 10)
                    .map(|batch| batch.records.into_iter().map(|(at, p)| (at, p.to_vec())).collect())
            })
        };
        reset.join().expect("reset thread").expect("reset");
        let appended = writer.join().expect("writer");
        let read = reader.join().expect("reader");
        let after = ring.read(RESTART, 1 << 10).expect("read the new history");
        match appended {
            Ok(48) => {
                // Before the reset: part of the old history, wiped with it.
                written.insert(48, payload(0xB0));
                assert_eq!(ring.published(), RESTART);
                assert!(after.records.is_empty());
            }
            Ok(RESTART) => {
                assert_eq!(ring.published(), RESTART + 24);
                let records: Vec<_> = after.records.iter().map(|(at, p)| (*at, p.to_vec())).collect();
                assert_eq!(records, vec![(RESTART, payload(0xB0))]);
            }
            Err(LogError::Resetting) => {
                assert_eq!(ring.published(), RESTART);
                assert!(after.records.is_empty());
            }
            other => panic!("an append racing a reset returned {other:?}"),
        }
        assert_eq!(ring.oldest(), RESTART);
        check_read(read, 0, &written);
    });
}
