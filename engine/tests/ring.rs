//! The ring log on its own: appends and reads, wrap-around without padding,
//! refusal of oversized records and of overwriting kept history, and many
//! appenders and readers on a small ring with many laps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringkv::internals::RingLogWriter;
use ringkv::log::{record, LogConfig, LogError, RingLog, TailReader};

fn small(capacity: u64) -> LogConfig {
    LogConfig {
        capacity,
        ..LogConfig::default()
    }
}

#[test]
fn records_read_back_in_order_across_the_wrap() {
    let ring = RingLog::anonymous(small(64 * 1024)).expect("ring");
    let mut offsets = Vec::new();
    for i in 0..5000u32 {
        let payload: Vec<u8> = (0..(i % 97) as u8 + 1).map(|b| b ^ i as u8).collect();
        let at = ring.append(&payload).expect("append");
        offsets.push((at, payload));
    }
    // The last records are still in the ring and read back exactly.
    let start = offsets[4900].0;
    let batch = ring.read(start, usize::MAX).expect("read");
    assert_eq!(batch.records.len(), 100);
    for ((at, payload), (want_at, want)) in batch.records.iter().zip(&offsets[4900..]) {
        assert_eq!(at, want_at);
        assert_eq!(&payload[..], &want[..]);
    }
    assert_eq!(batch.next, ring.published());
    // Offsets depend only on record sizes, never on the capacity (no padding).
    let mut expect = 0;
    for (at, payload) in &offsets {
        assert_eq!(*at, expect);
        expect += record::record_len(payload.len());
    }
    // The first records were overwritten.
    assert!(matches!(ring.read(0, 10), Err(LogError::Lagged { oldest }) if oldest > 0));
}

#[test]
fn the_same_stream_has_the_same_offsets_in_rings_of_any_size() {
    let a = RingLog::anonymous(small(64 * 1024)).expect("ring");
    let b = RingLog::anonymous(small(1024 * 1024)).expect("ring");
    for i in 0..3000u32 {
        let payload = vec![i as u8; (i % 300) as usize];
        assert_eq!(a.append(&payload).expect("a"), b.append(&payload).expect("b"));
    }
    let from = a.oldest().next_multiple_of(8);
    // Find a boundary both can read: the last 10 records.
    let tail = b.read(0, usize::MAX).expect("read all");
    let (at, _) = tail.records[tail.records.len() - 10];
    assert!(at >= from);
    let mut ra = vec![0u8; (a.published() - at) as usize];
    let mut rb = vec![0u8; ra.len()];
    a.read_raw(at, &mut ra).expect("raw a");
    b.read_raw(at, &mut rb).expect("raw b");
    assert_eq!(ra, rb, "byte-identical stream at the same offsets");
}

#[test]
fn oversized_records_are_refused() {
    let ring = RingLog::anonymous(small(64 * 1024)).expect("ring");
    let max = ring.max_payload();
    assert_eq!(max, 64 * 1024 / 8 - 16);
    ring.append(&vec![1u8; max]).expect("at the limit");
    let err = ring.append(&vec![1u8; max + 1]).expect_err("over the limit");
    assert!(
        matches!(err, LogError::RecordTooLarge { len, .. } if len == max + 1),
        "{err}"
    );
    assert!(RingLog::anonymous(small(1000)).is_err(), "tiny rings are refused");
}

#[test]
fn a_ring_that_keeps_history_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ring.log");
    let ring = RingLog::create(&path, small(64 * 1024)).expect("create");
    let mut n = 0;
    let err = loop {
        match ring.append(&[7u8; 100]) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, LogError::Full { .. }), "{err}");
    assert_eq!(n, 64 * 1024 / 120);
    // Everything is still readable from 0.
    let all = ring.read(0, usize::MAX).expect("read");
    assert_eq!(all.records.len(), n);
    // Once history below an offset may go (a snapshot covers it), appends resume.
    ring.set_oldest(all.records[10].0).expect("set oldest");
    ring.append(&[8u8; 100]).expect("append after trimming");
}

#[test]
fn readers_wait_without_spinning_and_hooks_fire() {
    let ring = Arc::new(RingLog::anonymous(small(64 * 1024)).expect("ring"));
    let fired = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let fired = fired.clone();
        ring.on_publish(move || {
            fired.fetch_add(1, Ordering::Relaxed);
        });
    }
    let mut reader = TailReader::new(ring.clone(), 0);
    let empty = reader.next_batch(Duration::from_millis(20), 1024).expect("wait");
    assert!(empty.records.is_empty());
    let writer = {
        let ring = ring.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            ring.append(b"late").expect("append");
        })
    };
    let batch = reader.next_batch(Duration::from_secs(10), 1024).expect("wait");
    assert_eq!(&batch.records[0].1[..], b"late");
    writer.join().expect("writer");
    assert_eq!(fired.load(Ordering::Relaxed), 1);
}

/// Payload: writer id, sequence number, then bytes derived from both.
fn payload(writer: u8, seq: u32) -> Vec<u8> {
    let len = 8 + (seq as usize * 31 + writer as usize * 7) % 180;
    let mut p = vec![writer];
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend((5..len).map(|i| (i as u32 ^ seq).wrapping_mul(2654435761) as u8 ^ writer));
    p
}

#[test]
fn many_appenders_and_readers_on_a_lapping_ring_never_see_a_torn_record() {
    const WRITERS: u8 = 4;
    const PER_WRITER: u32 = 30_000;
    let ring = Arc::new(RingLog::anonymous(small(64 * 1024)).expect("ring"));
    let done = Arc::new(AtomicBool::new(false));
    let results = std::thread::scope(|s| {
        for w in 0..WRITERS {
            let ring = ring.clone();
            s.spawn(move || {
                for seq in 0..PER_WRITER {
                    ring.append(&payload(w, seq)).expect("append");
                }
            });
        }
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let ring = ring.clone();
                let done = done.clone();
                s.spawn(move || {
                    let mut reader = TailReader::new(ring.clone(), 0);
                    let mut last: HashMap<u8, u32> = HashMap::new();
                    let (mut seen, mut lagged) = (0u64, 0u64);
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        match reader.next_batch(Duration::from_millis(5), 16 * 1024) {
                            Ok(batch) => {
                                let mut expect_at = None;
                                for (at, p) in &batch.records {
                                    if let Some(e) = expect_at {
                                        assert_eq!(*at, e, "records are contiguous");
                                    }
                                    expect_at = Some(at + record::record_len(p.len()));
                                    let (w, seq) = (p[0], u32::from_le_bytes([p[1], p[2], p[3], p[4]]));
                                    assert_eq!(&p[..], &payload(w, seq)[..], "torn or stale record at {at}");
                                    if let Some(prev) = last.insert(w, seq) {
                                        assert!(seq > prev, "writer {w}: {seq} after {prev}");
                                    }
                                    seen += 1;
                                }
                                if finished && batch.records.is_empty() && reader.offset() == ring.published() {
                                    return (seen, lagged);
                                }
                            }
                            Err(LogError::Lagged { .. }) => {
                                lagged += 1;
                                reader = TailReader::new(ring.clone(), ring.published());
                            }
                            Err(e) => panic!("reader error: {e}"),
                        }
                    }
                })
            })
            .collect();
        // Writers end when the scope's spawned writers finish; then stop readers.
        while ring.published() < expected_end() {
            std::thread::sleep(Duration::from_millis(1));
        }
        done.store(true, Ordering::Release);
        readers
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .collect::<Vec<_>>()
    });
    for (seen, lagged) in results {
        assert!(seen > 0);
        println!("reader saw {seen} records, lagged {lagged} times");
    }
    assert!(ring.published() / ring.capacity() > 50, "the ring lapped many times");

    fn expected_end() -> u64 {
        (0..WRITERS)
            .flat_map(|w| (0..PER_WRITER).map(move |s| record::record_len(payload(w, s).len())))
            .sum()
    }
}

/// F16: `reset_to` is exclusive with appends. Two threads append while a
/// third resets the ring again and again: every append lands wholly in one
/// history (before a reset, or after it at the new offsets) or is refused
/// with `Resetting`; none is lost or published into the wrong history, no
/// reset waits forever, and what the ring holds at the end is exactly what
/// the appenders were told.
#[test]
fn appends_racing_resets_land_wholly_in_one_history_or_are_refused() {
    const WRITERS: u8 = 2;
    const PER_WRITER: u32 = 20_000;
    // Each history starts far beyond what the previous one can reach.
    let restart = |k: u64| (k + 1) << 32;
    let ring = Arc::new(RingLog::anonymous(small(64 * 1024)).expect("ring"));
    let writing = AtomicUsize::new(WRITERS as usize);
    let (appended, refused, resets) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (ring, writing) = (ring.clone(), &writing);
                s.spawn(move || {
                    let (mut ok, mut refused) = (Vec::new(), 0u64);
                    for seq in 0..PER_WRITER {
                        match ring.append(&payload(w, seq)) {
                            Ok(at) => ok.push((at, payload(w, seq))),
                            Err(LogError::Resetting) => refused += 1,
                            Err(e) => panic!("append: {e}"),
                        }
                    }
                    writing.fetch_sub(1, Ordering::AcqRel);
                    (ok, refused)
                })
            })
            .collect();
        // Resets as long as anyone appends (at least once).
        let resetter = {
            let (ring, writing) = (ring.clone(), &writing);
            s.spawn(move || {
                let mut k = 0;
                loop {
                    ring.reset_to(restart(k), &"r".repeat(40), "", 0).expect("reset");
                    k += 1;
                    if writing.load(Ordering::Acquire) == 0 {
                        return k;
                    }
                }
            })
        };
        let resets = resetter.join().expect("resetter");
        let mut appended = HashMap::new();
        let mut refused = 0;
        for w in writers {
            let (ok, r) = w.join().expect("writer");
            refused += r;
            for (at, p) in ok {
                assert!(appended.insert(at, p).is_none(), "two appends were given offset {at}");
            }
        }
        (appended, refused, resets)
    });
    // Each history's appends are contiguous from where it starts: no
    // reservation was lost across a reset, none landed in another history.
    let mut offsets: Vec<u64> = appended.keys().copied().collect();
    offsets.sort_unstable();
    let mut histories = 0;
    let mut expect = None;
    for &at in &offsets {
        let start = at >> 32 << 32;
        if expect.is_none_or(|e| at != e) {
            assert_eq!(at, start, "an append at {at} does not continue its history");
            histories += 1;
        }
        expect = Some(at + record::record_len(appended[&at].len()));
    }
    let last = restart(resets - 1);
    assert!(ring.oldest() >= last, "the last reset's history is the ring's");
    let newest: Vec<u64> = offsets.iter().copied().filter(|&at| at >= last).collect();
    assert_eq!(
        ring.published(),
        expect.filter(|_| !newest.is_empty()).unwrap_or(last),
        "the ring ends after the last history's last append"
    );
    // The ring holds exactly the last history's appends that still fit.
    let kept: Vec<u64> = newest.iter().copied().filter(|&at| at >= ring.oldest()).collect();
    let mut held = Vec::new();
    if let Some(&first) = kept.first() {
        let mut pos = first;
        while pos < ring.published() {
            let batch = ring.read(pos, 1 << 20).expect("read");
            for (at, p) in &batch.records {
                assert_eq!(appended.get(at).map(Vec::as_slice), Some(&p[..]), "record at {at}");
                held.push(*at);
            }
            pos = batch.next;
        }
    }
    assert_eq!(held, kept, "the ring's records are the last history's appends");
    println!(
        "{} appends in {histories} histories, {refused} refused during {resets} resets, {} records held",
        appended.len(),
        held.len()
    );
}

fn with_fraction(capacity: u64, max_record_fraction: u64) -> LogConfig {
    LogConfig {
        capacity,
        max_record_fraction,
        ..LogConfig::default()
    }
}

/// Runs `f` with a subscriber that keeps the log lines; returns them too.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&lines.0.lock().expect("lines")).into_owned();
    (out, text)
}

/// F4: a ring file validates its records by its own limit, whatever the
/// configuration says when it is reopened.
#[test]
fn reopening_with_another_record_limit_keeps_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ring.log");
    let capacity = 256 * 1024;
    let mut written = Vec::new();
    {
        let ring = RingLog::create(&path, with_fraction(capacity, 2)).expect("create");
        assert_eq!(ring.max_payload(), 128 * 1024 - 16);
        for (i, len) in [10usize, 100_000, 20, 60_000, 30].into_iter().enumerate() {
            let payload = vec![i as u8 + 1; len];
            written.push((ring.append(&payload).expect("append"), payload));
        }
    }
    for fraction in [8, 2, 64] {
        let (ring, said) = logged(|| RingLog::open(&path, with_fraction(capacity, fraction)));
        let ring = ring.expect("open");
        assert_eq!(
            said.contains("the file's limit is used"),
            fraction != 2,
            "fraction {fraction}: {said}"
        );
        assert_eq!(ring.torn_bytes(), 0, "fraction {fraction}");
        let all = ring.read(0, usize::MAX).expect("read");
        assert_eq!(all.records.len(), written.len(), "fraction {fraction}");
        assert_eq!(
            ring.max_payload(),
            128 * 1024 - 16,
            "the file's limit, not the configured 1/{fraction}"
        );
        for ((at, p), (want_at, want)) in all.records.iter().zip(&written) {
            assert_eq!((at, &p[..]), (want_at, &want[..]));
        }
    }
}

/// F5: limits that leave no room for a record are configuration errors,
/// not an underflowing `max_payload`.
#[test]
fn record_limits_below_a_sane_minimum_are_refused() {
    for fraction in [0, 1, 4097, 5000, 64 * 1024, u64::MAX] {
        let err = RingLog::anonymous(with_fraction(64 * 1024, fraction)).expect_err("refused");
        assert!(matches!(err, LogError::Config(_)), "fraction {fraction}: {err}");
    }
    // capacity / 64 = 1 KiB is the smallest record limit accepted.
    let ring = RingLog::anonymous(with_fraction(64 * 1024, 64)).expect("1 KiB records");
    assert_eq!(ring.max_payload(), 1024 - 16);
    ring.append(&[1u8; 1024 - 16]).expect("at the limit");
    assert!(matches!(
        ring.append(&[1u8; 1024 - 15]),
        Err(LogError::RecordTooLarge { len: 1009, max: 1008 })
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ring.log");
    let err = RingLog::create(&path, with_fraction(64 * 1024, 5000)).expect_err("refused");
    assert!(matches!(err, LogError::Config(_)), "{err}");
    assert!(!path.exists());
}

/// A header slot as `log/mod.rs` documents it (ring format 2), checksummed.
struct Slot {
    format: u32,
    seq: u64,
    capacity: u64,
    switch_offset: u64,
    oldest: u64,
    synced: u64,
    max_record_fraction: u64,
}

impl Slot {
    fn new(capacity: u64) -> Slot {
        Slot {
            format: 2,
            seq: 1,
            capacity,
            switch_offset: 0,
            oldest: 0,
            synced: 0,
            max_record_fraction: 8,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; 148];
        b[0..8].copy_from_slice(b"RKVRING\0");
        b[8..12].copy_from_slice(&self.format.to_le_bytes());
        b[12..16].copy_from_slice(&record::MUTATION_FORMAT.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        b[32..72].copy_from_slice(&[b'a'; 40]);
        b[112..120].copy_from_slice(&self.switch_offset.to_le_bytes());
        b[120..128].copy_from_slice(&self.oldest.to_le_bytes());
        b[128..136].copy_from_slice(&self.synced.to_le_bytes());
        b[136..144].copy_from_slice(&self.max_record_fraction.to_le_bytes());
        let crc = crc32c::crc32c(&b[..144]);
        b[144..148].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Writes `slot` as the only valid header slot of the ring file at `path`
/// (the other one is zeroed) and sets the file's length to `file_len`.
fn write_header(path: &std::path::Path, slot: &Slot, file_len: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("open");
    file.set_len(file_len).expect("set_len");
    let mut page = vec![0u8; 4096];
    page[..148].copy_from_slice(&slot.encode());
    file.write_all_at(&page, 0).expect("write header");
}

#[test]
fn a_version_1_ring_file_is_refused_by_its_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ring.log");
    drop(RingLog::create(&path, small(64 * 1024)).expect("create"));
    // Version 1: no record fraction, checksum of bytes 0..136 at 136.
    let mut v1 = Slot::new(64 * 1024).encode();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    v1[136..148].fill(0);
    let crc = crc32c::crc32c(&v1[..136]);
    v1[136..140].copy_from_slice(&crc.to_le_bytes());
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
        let mut page = vec![0u8; 4096];
        page[..148].copy_from_slice(&v1);
        file.write_all_at(&page, 0).expect("write");
    }
    let err = RingLog::open(&path, small(64 * 1024)).expect_err("refused");
    assert!(
        matches!(err, LogError::UnsupportedFormat { found: 1, supported: 2 }),
        "{err}"
    );
    // The current layout, as documented, opens.
    write_header(&path, &Slot::new(64 * 1024), 4096 + 64 * 1024);
    let ring = RingLog::open(&path, small(64 * 1024)).expect("a documented format-2 header opens");
    assert_eq!(ring.header().max_record_fraction, 8);
    assert_eq!(ring.header().replid, "a".repeat(40));
}

/// F13: a hostile or corrupt header (a valid checksum over impossible
/// values) is a clean [`LogError::BadHeader`]: never a panic, an overflow
/// or a huge allocation.
#[test]
fn impossible_header_fields_are_bad_headers() {
    let cap = 64 * 1024;
    let len = 4096 + cap;
    let with = |f: &dyn Fn(&mut Slot)| {
        let mut s = Slot::new(cap);
        f(&mut s);
        s
    };
    let cases: Vec<(&str, Slot, u64)> = vec![
        ("capacity u64::MAX", with(&|s| s.capacity = u64::MAX), len),
        (
            "capacity + header page overflows",
            with(&|s| s.capacity = u64::MAX - 4095),
            len,
        ),
        ("capacity not a multiple of 8", with(&|s| s.capacity = cap + 4), len + 4),
        ("capacity below 64 KiB", with(&|s| s.capacity = 4096), 8192),
        ("capacity not the file's", with(&|s| s.capacity = 2 * cap), len),
        ("oldest near u64::MAX", with(&|s| s.oldest = u64::MAX - 7), len),
        (
            "oldest beyond the largest offset",
            with(&|s| s.oldest = 1 << 63 | 8),
            len,
        ),
        ("oldest misaligned", with(&|s| s.oldest = 3), len),
        ("synced u64::MAX", with(&|s| s.synced = u64::MAX), len),
        ("synced beyond oldest + capacity", with(&|s| s.synced = cap + 8), len),
        ("switch offset u64::MAX", with(&|s| s.switch_offset = u64::MAX), len),
        ("sequence u64::MAX", with(&|s| s.seq = u64::MAX), len),
        ("record fraction 0", with(&|s| s.max_record_fraction = 0), len),
        ("record fraction 1", with(&|s| s.max_record_fraction = 1), len),
        ("record fraction 5000", with(&|s| s.max_record_fraction = 5000), len),
        (
            "record fraction u64::MAX",
            with(&|s| s.max_record_fraction = u64::MAX),
            len,
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wrong = Vec::new();
    for (i, (what, slot, file_len)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("ring{i}.log"));
        drop(RingLog::create(&path, small(cap)).expect("create"));
        write_header(&path, slot, *file_len);
        let opened = std::panic::catch_unwind(|| {
            let ring = RingLog::open(&path, small(cap))?;
            // Whatever opened must also survive its next header write and append.
            ring.set_history(&"b".repeat(40), "", 0)?;
            ring.append(b"after")?;
            Ok::<_, LogError>(ring)
        });
        match opened {
            Ok(Err(LogError::BadHeader(msg))) => println!("{what}: {msg}"),
            Ok(Err(e)) => wrong.push(format!("{what}: wrong error {e:?}")),
            Ok(Ok(ring)) => wrong.push(format!("{what}: opened ({ring:?})")),
            Err(_) => wrong.push(format!("{what}: panicked")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The limits of a sane header are still accepted (1 KiB records).
    let path = dir.path().join("sane.log");
    drop(RingLog::create(&path, small(cap)).expect("create"));
    write_header(&path, &with(&|s| s.max_record_fraction = 64), len);
    assert_eq!(RingLog::open(&path, small(cap)).expect("open").max_payload(), 1024 - 16);
}

/// F13: offsets near `u64::MAX` from callers (a full sync's offset, a raw
/// read) are refused cleanly, and the ring goes on working.
#[test]
fn offsets_near_u64_max_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ring.log");
    let ring = RingLog::create(&path, small(64 * 1024)).expect("create");
    ring.append(b"one").expect("append");
    for offset in [u64::MAX - 7, (1 << 63) + 8] {
        let err = ring.reset_to(offset, &"c".repeat(40), "", 0).expect_err("refused");
        assert!(
            matches!(err, LogError::OutOfBounds { offset: o, .. } if o == offset),
            "{err}"
        );
    }
    assert_eq!((ring.oldest(), ring.published()), (0, 24), "nothing moved");
    let mut buf = [0u8; 16];
    let err = ring.read_raw(u64::MAX - 7, &mut buf).expect_err("refused");
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    assert!(ring.read(u64::MAX - 7, 100).is_err());
    assert!(ring.read_stream(u64::MAX - 7, 100).is_err());
    let err = ring.append_stream(u64::MAX - 7, &[0u8; 24]).expect_err("refused");
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    ring.append(b"two").expect("still appends");
    drop(ring);
    let ring = RingLog::open(&path, small(64 * 1024)).expect("reopen");
    assert_eq!(ring.read(0, usize::MAX).expect("read").records.len(), 2);
    // The largest offset itself is a valid reset point; the stream then ends there.
    let top = 1u64 << 63;
    ring.reset_to(top, &"d".repeat(40), "", 0)
        .expect("reset to the largest offset");
    let err = ring.append(b"x").expect_err("no room past the largest offset");
    assert!(matches!(err, LogError::OutOfBounds { .. }), "{err}");
    drop(ring);
    let ring = RingLog::open(&path, small(64 * 1024)).expect("reopen at the top");
    assert_eq!((ring.oldest(), ring.published()), (top, top));
}

/// The ring_open fuzz target's forged headers: every field at each kind of
/// value the fuzzer can pick, one at a time and all at once. Opening may
/// refuse; nothing may panic.
#[test]
fn the_fuzz_harness_forges_headers_without_panicking() {
    use ringkv::internals::{fuzz_open_ring_bytes, FuzzHeader};
    const FIELDS: usize = 9;
    for tag in 1u8..4 {
        for raw in [0u64, 8, 3, 65_536, u64::MAX, 1 << 63] {
            for field in 0..=FIELDS {
                // Mode byte (forge the header), then the fields; `field ==
                // FIELDS` forges all of them.
                let mut input = vec![1u8];
                for i in 0..FIELDS {
                    let t = if i == field || field == FIELDS { tag } else { 0 };
                    input.push(t);
                    input.extend_from_slice(&raw.to_le_bytes());
                }
                input.push(3); // both slots
                input.extend_from_slice(&[0xA5; 64]);
                let (parsed, region) = FuzzHeader::parse(&input[1..]);
                assert_eq!(region.len(), 64, "{parsed:?}");
                fuzz_open_ring_bytes(&input);
            }
        }
    }
    // The data-region mode, and inputs too short for any field.
    for input in [&[][..], &[0u8][..], &[0, 1, 2, 3][..], &[1u8][..], &[1, 2][..]] {
        fuzz_open_ring_bytes(input);
    }
}
