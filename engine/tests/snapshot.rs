//! Snapshots: exact point-in-time images while writers of every kind run,
//! loading, files in a data directory with recovery from snapshot plus log
//! (also after the ring wrapped many times, and with a damaged newest
//! snapshot), and damaged streams.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringkv::snapshot::{SnapshotError, SnapshotReader};
use ringkv::{Config, Engine, Error, LogConfig, SetOptions, SnapshotConfig, WriteBatch};

fn config(capacity: u64, buffer_bytes: usize) -> Config {
    Config {
        shards: 8,
        active_expire: false,
        log: LogConfig {
            capacity,
            ..LogConfig::default()
        },
        snapshot: SnapshotConfig {
            buffer_bytes,
            ..SnapshotConfig::default()
        },
        ..Config::default()
    }
}

const FAR: u64 = 4_000_000_000_000;

/// One random write of any kind (absolute expiries only, so that replaying
/// the log does not depend on the clock).
fn random_op(e: &Engine, r: u64) {
    let k = r % 2000;
    let _ = match (r >> 16) % 14 {
        0 => e.set(format!("s{k}"), format!("v{r}")).map(|_| ()),
        1 => e.del([format!("s{k}")]).map(|_| ()),
        2 => e.incr_by(format!("n{}", k % 50), 1).map(|_| ()),
        3 => e.append(format!("s{k}"), "+").map(|_| ()),
        4 => e.pexpire_at(format!("s{k}"), (FAR + r % 1_000_000) as i64).map(|_| ()),
        5 => e.persist(format!("s{k}")).map(|_| ()),
        6 => e.rename(format!("s{k}"), format!("s{}", (k + 7) % 2000)),
        7 => e
            .hset(format!("h{}", k % 20), [(format!("f{}", r % 5000), format!("{r}"))])
            .map(|_| ()),
        8 => e.hdel(format!("h{}", k % 20), [format!("f{}", r % 5000)]).map(|_| ()),
        9 => e.hincr_by("big", format!("f{}", r % 30_000), 1).map(|_| ()),
        10 => e.hdrain(format!("h{}", k % 20), 3).map(|_| ()),
        11 => e.hset("big", [(format!("new{r}"), "x")]).map(|_| ()),
        12 => e.del([format!("h{}", k % 20)]).map(|_| ()),
        _ => {
            let mut b = WriteBatch::new();
            b.set(format!("s{k}"), "b")
                .hset(format!("h{}", k % 20), [("bf", "1")])
                .incr_by("n0", 1);
            e.write_batch(b).map(|_| ())
        }
    };
}

fn preload(e: &Engine) {
    for i in 0..2000u64 {
        e.set(format!("s{i}"), format!("value-{i}-{}", "x".repeat((i % 50) as usize)))
            .expect("set");
        if i % 3 == 0 {
            e.set_with(format!("t{i}"), "tok", SetOptions::new().pxat(FAR + i))
                .expect("set");
        }
    }
    for h in 0..20 {
        e.hset(format!("h{h}"), (0..500).map(|f| (format!("f{f}"), format!("{h}:{f}"))))
            .expect("hset");
    }
    // A large hash: the walk and the writers both go through its chunks.
    for chunk in 0..30 {
        e.hset("big", (0..1000).map(|f| (format!("f{}", chunk * 1000 + f), "0")))
            .expect("hset");
    }
    e.set("huge", vec![b'z'; 1 << 20]).expect("set");
}

/// Replays the engine's log from `offset` into `target`.
fn replay(from: &Engine, target: &Engine, offset: u64) {
    let log = from.log().expect("log").clone();
    let mut reader = log.tail(offset);
    while reader.offset() < log.published() {
        for (_, m) in reader.next_mutations(Duration::ZERO, 1 << 20).expect("read the log") {
            target.replay(&m).expect("replay");
        }
    }
}

#[test]
fn a_snapshot_taken_under_concurrent_writes_is_exactly_the_cut() {
    for round in 0..4u64 {
        let live = Engine::builder()
            .config(config(256 << 20, 256 << 10))
            .anonymous_log()
            .build()
            .expect("engine");
        preload(&live);
        let stop = Arc::new(AtomicBool::new(false));
        let (bytes, info) = std::thread::scope(|s| {
            for t in 0..2u64 {
                let (live, stop) = (live.clone(), stop.clone());
                s.spawn(move || {
                    let mut r = 0x9e37_79b9_7f4a_7c15u64 ^ (round * 131 + t);
                    while !stop.load(Ordering::Relaxed) {
                        r ^= r << 13;
                        r ^= r >> 7;
                        r ^= r << 17;
                        random_op(&live, r);
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(20));
            let out = live.snapshot_to(Vec::new()).expect("snapshot");
            std::thread::sleep(Duration::from_millis(20));
            stop.store(true, Ordering::Relaxed);
            out
        });
        let copy = Engine::new(config(1 << 20, 1 << 20)).expect("copy");
        let header = copy.load_snapshot(&bytes[..]).expect("load");
        assert_eq!(header.offset, info.offset);
        replay(&live, &copy, info.offset);
        assert_eq!(
            copy.digest(),
            live.digest(),
            "round {round}: snapshot + log from its offset != live state"
        );
        assert!(info.start_pause_us < 1_000_000, "{info:?}");
        println!("round {round}: {info:?}");
    }
}

#[test]
fn snapshots_of_edge_cases_round_trip() {
    let empty = Engine::new(config(1 << 20, 1 << 20)).expect("engine");
    let (bytes, info) = empty.snapshot_to(Vec::new()).expect("snapshot");
    assert_eq!((info.keys, info.items), (0, 0));
    let copy = Engine::new(config(1 << 20, 1 << 20)).expect("copy");
    copy.load_snapshot(&bytes[..]).expect("load");
    assert_eq!(copy.dbsize(), 0);

    let e = Engine::new(config(1 << 20, 1 << 20)).expect("engine");
    e.set("huge", vec![7u8; 8 << 20]).expect("set");
    e.hset(
        "wide",
        (0..1_000_000).map(|i| (format!("field:{i:08}"), format!("{i}"))),
    )
    .expect("hset");
    e.set_with("ttl", "v", SetOptions::new().pxat(FAR)).expect("set");
    e.hset("hashttl", [("a", "b")]).expect("hset");
    e.pexpire_at("hashttl", FAR as i64).expect("expire");
    let (bytes, info) = e.snapshot_to(Vec::new()).expect("snapshot");
    assert_eq!(info.keys, 4);
    let copy = Engine::new(config(1 << 20, 1 << 20)).expect("copy");
    copy.load_snapshot(&bytes[..]).expect("load");
    assert_eq!(copy.digest(), e.digest());
    assert_eq!(copy.hlen("wide").expect("hlen"), 1_000_000);
}

#[test]
fn damaged_snapshot_streams_fail_with_the_position() {
    let e = Engine::new(config(1 << 20, 1 << 20)).expect("engine");
    for i in 0..5000 {
        e.set(format!("k{i}"), format!("v{i}")).expect("set");
    }
    let (bytes, _) = e.snapshot_to(Vec::new()).expect("snapshot");
    let mut seed = 12345u64;
    for _ in 0..200 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut damaged = bytes.clone();
        if seed.is_multiple_of(3) {
            damaged.truncate((seed >> 8) as usize % bytes.len());
        } else {
            let at = (seed >> 8) as usize % bytes.len();
            damaged[at] ^= 1 + (seed >> 40) as u8 % 255;
        }
        let copy = Engine::new(config(1 << 20, 1 << 20)).expect("copy");
        match copy.load_snapshot(&damaged[..]) {
            Err(Error::Snapshot(SnapshotError::Corrupt { position, .. })) => assert!(position <= bytes.len() as u64),
            Err(Error::Snapshot(SnapshotError::UnsupportedFormat { .. })) => {}
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => assert_eq!(copy.digest(), e.digest(), "a damaged stream loaded different data"),
        }
    }
    // A newer format is refused clearly.
    let mut newer = bytes.clone();
    newer[8] = 9;
    assert!(matches!(
        SnapshotReader::new(&newer[..]),
        Err(SnapshotError::UnsupportedFormat { found: 9, .. })
    ));
}

#[test]
fn a_data_directory_recovers_from_snapshots_after_the_ring_wrapped_many_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(256 << 10, 1 << 20);
    let digest = {
        let e = Engine::open(dir.path(), cfg.clone()).expect("open");
        for i in 0..60_000u64 {
            e.set(format!("k{}", i % 3000), format!("value-{i}"))
                .expect("writes wait for snapshots instead of failing");
            if i % 7 == 0 {
                e.hset(format!("h{}", i % 10), [(format!("f{}", i % 700), format!("{i}"))])
                    .expect("hset");
            }
        }
        let stats = e.stats();
        let log = stats.log.expect("log");
        assert!(
            log.offset > 10 * log.capacity,
            "the ring wrapped {} times",
            log.offset / log.capacity
        );
        assert!(stats.snapshot.completed > 3, "{:?}", stats.snapshot);
        let digest = e.digest();
        e.close();
        digest
    };
    let e = Engine::open(dir.path(), cfg.clone()).expect("reopen");
    assert_eq!(e.digest(), digest);
    drop(e);

    // Damage the newest snapshot: the previous one and the log still recover everything.
    let mut snaps: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rkvs"))
        .collect();
    snaps.sort();
    assert_eq!(snaps.len(), 2, "keeps the last two snapshots");
    let newest = snaps.last().expect("snapshot");
    let mut bytes = std::fs::read(newest).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(newest, &bytes).expect("write");
    let e = Engine::open(dir.path(), cfg).expect("reopen with a damaged newest snapshot");
    assert_eq!(e.digest(), digest);
}

#[test]
fn save_needs_a_data_directory_and_one_snapshot_runs_at_a_time() {
    let e = Engine::new(config(1 << 20, 1 << 20)).expect("engine");
    assert!(matches!(e.save(), Err(Error::Config(_))));
    assert!(matches!(e.bgsave(), Err(Error::Config(_))));
    let dir = tempfile::tempdir().expect("tempdir");
    let e = Engine::open(dir.path(), config(1 << 20, 1 << 20)).expect("open");
    e.set("k", "v").expect("set");
    let info = e.save().expect("save");
    assert_eq!(info.keys, 1);
    assert_eq!(e.stats().snapshot.completed, 1);
    assert_eq!(e.stats().snapshot.last.expect("last").offset, info.offset);
}

#[test]
fn save_rules_start_snapshots_on_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ringkv::ManualClock::new(1_700_000_000_000);
    let mut cfg = config(1 << 20, 1 << 20);
    cfg.active_expire = true;
    cfg.active_expire_interval_ms = 1;
    cfg.snapshot.save = vec![ringkv::snapshot::SaveRule {
        seconds: 10,
        changes: 5,
    }];
    let e = Engine::builder()
        .config(cfg)
        .clock(clock.clone())
        .data_dir(dir.path())
        .build()
        .expect("open");
    for i in 0..5 {
        e.set(format!("k{i}"), "v").expect("set");
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(e.stats().snapshot.completed, 0, "10 s have not passed");
    clock.advance(10_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while e.stats().snapshot.completed == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(e.stats().snapshot.completed, 1);
    // No change since: no new snapshot, however long.
    clock.advance(100_000);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(e.stats().snapshot.completed, 1);
    e.close();
}

#[test]
fn concurrent_saves_never_mix_their_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A ring large enough that no automatic snapshot competes with these.
    let e = Engine::open(dir.path(), config(64 << 20, 1 << 20)).expect("open");
    for i in 0..20_000 {
        e.set(format!("k{i}"), "value").expect("set");
    }
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| e.save())).collect();
        handles.into_iter().map(|h| h.join().expect("save thread")).collect()
    });
    assert!(results.iter().any(|r| r.is_ok()));
    for r in &results {
        if let Err(err) = r {
            assert!(matches!(err, Error::Snapshot(SnapshotError::InProgress)), "{err}");
        }
    }
    let digest = e.digest();
    e.close();
    let e = Engine::open(dir.path(), config(64 << 20, 1 << 20)).expect("reopen");
    assert_eq!(e.digest(), digest);
}

/// Loaded values must not keep their snapshot chunk alive: each decoded
/// byte string longer than the inline size is its own allocation.
#[test]
fn decoded_values_do_not_share_their_chunk() {
    let e = Engine::new(Config::default()).expect("engine");
    for i in 0..200 {
        e.set(format!("key:{i:04}"), vec![b'v'; 100]).expect("set");
    }
    e.hset("h", [("field-longer-than-fourteen", vec![b'f'; 100])])
        .expect("hset");
    let (bytes, _) = e.snapshot_to(Vec::new()).expect("snapshot");
    let mut reader = SnapshotReader::new(&bytes[..]).expect("reader");
    let mut checked = 0;
    while let Some(items) = reader.next_chunk().expect("chunk") {
        for item in &items {
            match item {
                ringkv::snapshot::Item::String { value, .. } => {
                    assert!(value.is_unique(), "a value shares its chunk");
                    checked += 1;
                }
                ringkv::snapshot::Item::HashFields { fields, .. } => {
                    for (f, v) in fields {
                        assert!(f.is_unique() && v.is_unique(), "a field shares its chunk");
                        checked += 1;
                    }
                }
                ringkv::snapshot::Item::HashHead { .. } => {}
            }
        }
    }
    assert_eq!(checked, 201);
}

/// Counts the bytes this thread asks the allocator for while a closure
/// runs (other test threads are not counted). `unsafe` is what a global
/// allocator takes; it only forwards to the system allocator.
#[allow(unsafe_code)]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
        static BYTES: Cell<usize> = const { Cell::new(0) };
    }

    fn note(n: usize) {
        let _ = ON.try_with(|on| {
            if on.get() {
                let _ = BYTES.try_with(|b| b.set(b.get().saturating_add(n)));
            }
        });
    }

    // SAFETY: every call is forwarded unchanged to `System`.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Runs `f`; returns its result and the bytes allocated (or grown to)
    /// on this thread meanwhile.
    pub fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
        BYTES.with(|b| b.set(0));
        ON.with(|on| on.set(true));
        let out = f();
        ON.with(|on| on.set(false));
        (out, BYTES.with(Cell::get))
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// A snapshot stream by hand: the header, then `body` (chunks and footer
/// as the caller builds them).
fn hand_built(body: &[u8]) -> Vec<u8> {
    let header = ringkv::snapshot::SnapshotHeader {
        offset: 0,
        created_ms: 0,
        keys: 0,
        replid: "hostile".into(),
    };
    let mut s = header.encode().to_vec();
    s.extend_from_slice(body);
    s
}

/// One chunk with a correct checksum.
fn chunk(payload: &[u8]) -> Vec<u8> {
    let mut c = (payload.len() as u32).to_le_bytes().to_vec();
    c.extend_from_slice(&ringkv::snapshot::format::checksum(payload).to_le_bytes());
    c.extend_from_slice(payload);
    c
}

/// Reads every chunk of `stream`; returns the first error and the bytes
/// allocated on the way (engine loading included).
fn decode_counting(stream: &[u8]) -> (SnapshotError, usize) {
    let (result, bytes) = counting::allocated_by(|| -> Result<(), SnapshotError> {
        let mut reader = SnapshotReader::new(stream)?;
        while reader.next_chunk()?.is_some() {}
        Ok(())
    });
    let err = result.expect_err("a hostile stream must not decode");
    // Loading it into an engine fails the same way.
    let e = Engine::new(config(1 << 20, 1 << 20)).expect("engine");
    match e.load_snapshot(stream) {
        Err(Error::Snapshot(SnapshotError::Corrupt { .. })) => {}
        other => panic!("load of a hostile stream: {other:?}"),
    }
    (err, bytes)
}

/// A chunk length field far beyond the bytes that follow is refused as
/// truncated, without allocating what it announces (the payload buffer
/// grows with the bytes actually read).
#[test]
fn a_huge_chunk_length_fails_without_allocating_it() {
    for len in [(1u32 << 30) - 1, 1 << 30, 256 << 20, 100_000] {
        let mut body = len.to_le_bytes().to_vec();
        body.extend_from_slice(&[0u8; 4]); // checksum
        body.extend_from_slice(&[1, 1, b'k', 1, b'v', 0]); // the start of an item
        let stream = hand_built(&body);
        let started = std::time::Instant::now();
        let (err, bytes) = decode_counting(&stream);
        match &err {
            SnapshotError::Corrupt { position, reason } => {
                assert!(reason.contains("truncated"), "{reason}");
                assert!(*position >= 88 && *position <= stream.len() as u64, "{err}");
            }
            other => panic!("length {len}: expected Corrupt, got {other:?}"),
        }
        assert!(
            bytes <= 64 << 10,
            "length {len}: {bytes} bytes allocated for a {}-byte stream",
            stream.len()
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
    // Above the largest chunk a reader accepts: refused before reading on.
    let mut body = u32::MAX.to_le_bytes().to_vec();
    body.extend_from_slice(&[0u8; 4]);
    let (err, bytes) = decode_counting(&hand_built(&body));
    assert!(
        matches!(&err, SnapshotError::Corrupt { position: 88, reason } if reason.contains("implausible")),
        "{err}"
    );
    assert!(bytes <= 4 << 10, "{bytes} bytes allocated");
}

/// A hash-fields item announcing as many fields as the chunk could hold
/// (two bytes each), followed by garbage: refused, and the field vector is
/// not sized from the count (each field takes 64 bytes in memory, 32 times
/// its smallest encoding).
#[test]
fn a_huge_field_count_fails_without_allocating_for_it() {
    let size = 64 << 10;
    let mut payload = vec![3u8, 1, b'h'];
    // LEB128 of the count, then a non-canonical length as the first field.
    let count = (size - payload.len() - 3) / 2;
    let mut n = count;
    while n >= 0x80 {
        payload.push((n as u8) | 0x80);
        n >>= 7;
    }
    payload.push(n as u8);
    payload.extend_from_slice(&[0x80, 0x00]);
    payload.resize(size, 0);
    let mut body = chunk(&payload);
    body.extend_from_slice(&[0u8; 32]);
    let stream = hand_built(&body);
    let (err, bytes) = decode_counting(&stream);
    assert!(
        matches!(&err, SnapshotError::Corrupt { position: 88, reason } if reason.contains("field")),
        "{err}"
    );
    assert!(
        bytes <= 8 * stream.len(),
        "{bytes} bytes allocated for a {}-byte stream ({count} fields announced)",
        stream.len()
    );
    // A count beyond what the chunk can hold at all is refused outright.
    let mut payload = vec![3u8, 1, b'h', 0xff, 0xff, 0xff, 0xff, 0x0f];
    payload.resize(4096, 0);
    let (err, bytes) = decode_counting(&hand_built(&chunk(&payload)));
    assert!(
        matches!(&err, SnapshotError::Corrupt { position: 88, reason } if reason.contains("field count")),
        "{err}"
    );
    assert!(bytes <= 64 << 10, "{bytes} bytes allocated");
}

/// A snapshot output that blocks every write until it is opened: a follower
/// whose link has stalled, or a disk that hangs.
struct Gated {
    gate: Arc<Gate>,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    /// The snapshot wrote (tried to write) its first byte: the cut is behind it.
    entered: AtomicBool,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().expect("gate") = true;
        self.opened.notify_all();
    }

    fn is_open(&self) -> bool {
        *self.open.lock().expect("gate")
    }

    /// Waits (bounded) until the snapshot has made its cut and blocked on the output.
    fn wait_entered(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !self.entered.load(Ordering::Acquire) {
            assert!(std::time::Instant::now() < deadline, "the snapshot never wrote");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl std::io::Write for Gated {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.gate.entered.store(true, Ordering::Release);
        let mut open = self.gate.open.lock().expect("gate");
        while !*open {
            open = self.gate.opened.wait(open).expect("gate");
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Replays the records of `from`'s log that start in `start..end` into `target`.
fn replay_range(from: &Engine, target: &Engine, start: u64, end: u64) {
    let log = from.log().expect("log").clone();
    let mut reader = log.tail(start);
    while reader.offset() < end {
        for (at, m) in reader.next_mutations(Duration::ZERO, 1 << 20).expect("read the log") {
            if at < end {
                target.replay(&m).expect("replay");
            }
        }
    }
}

/// A snapshot whose output blocks (a follower whose link stalled) must not
/// hold any shard locked: writes and FLUSHALL return while it is blocked.
#[test]
fn writes_and_flushall_do_not_wait_for_a_blocked_snapshot_output() {
    let live = Engine::builder()
        .config(config(256 << 20, 1 << 20))
        .anonymous_log()
        .build()
        .expect("engine");
    preload(&live);
    // Several times what the output may buffer, in entries smaller than it.
    live.del(["huge"]).expect("del");
    for i in 0..4000 {
        live.set(format!("pad{i}"), vec![b'p'; 1024]).expect("set");
    }
    let gate = Arc::new(Gate::default());
    let out = Gated {
        gate: gate.clone(),
        bytes: Vec::new(),
    };
    let snapshot = {
        let live = live.clone();
        std::thread::spawn(move || live.snapshot_to(out))
    };
    gate.wait_entered();
    // Give the walk time to fill every buffer the output would take.
    std::thread::sleep(Duration::from_millis(300));
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            gate.open();
        })
    };
    let mut slowest = Duration::ZERO;
    let mut timed = |what: &str, f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        f();
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "{what} took {took:?}: it waited for the snapshot's blocked output"
        );
        slowest = slowest.max(took);
    };
    // Keys of every shard, all older than the cut: each is serialized first.
    for k in (0..2000).step_by(10) {
        timed("SET", &mut || {
            live.set(format!("s{k}"), "after the cut").expect("set");
        });
    }
    for h in 0..20 {
        timed("HSET", &mut || {
            live.hset(format!("h{h}"), [("f1", "after")]).expect("hset");
        });
    }
    timed("HINCRBY", &mut || {
        live.hincr_by("big", "f7", 1).expect("hincrby");
    });
    timed("FLUSHALL", &mut || live.flush().expect("flushall"));
    timed("SET after FLUSHALL", &mut || {
        live.set("new", "v").expect("set");
    });
    assert!(
        !gate.is_open(),
        "the writes ran while the output was blocked (slowest {slowest:?})"
    );
    opener.join().expect("opener");
    let (out, info) = snapshot.join().expect("snapshot thread").expect("snapshot");
    // The image is exactly the state at the cut: an engine fed the same
    // writes up to the cut's offset has the same digest.
    let copy = Engine::new(config(1 << 20, 1 << 20)).expect("copy");
    let header = copy.load_snapshot(&out.bytes[..]).expect("load");
    assert_eq!(header.offset, info.offset);
    let at_cut = Engine::new(config(1 << 20, 1 << 20)).expect("reference");
    replay_range(&live, &at_cut, live.log().expect("log").oldest(), info.offset);
    assert_eq!(copy.digest(), at_cut.digest(), "the image is not the state at the cut");
    assert_eq!(copy.dbsize(), at_cut.dbsize());
    replay(&live, &copy, info.offset);
    assert_eq!(
        copy.digest(),
        live.digest(),
        "snapshot + log from its offset != live state"
    );
    println!("slowest write {slowest:?}; {info:?}");
}

#[test]
fn a_snapshot_under_writes_and_flushall_is_exactly_the_cut() {
    for round in 0..3u64 {
        let live = Engine::builder()
            .config(config(256 << 20, 128 << 10))
            .anonymous_log()
            .build()
            .expect("engine");
        preload(&live);
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Gate::default());
        let (out, info) = std::thread::scope(|s| {
            for t in 0..2u64 {
                let (live, stop) = (live.clone(), stop.clone());
                s.spawn(move || {
                    let mut r = 0x2545_f491_4f6c_dd1du64 ^ (round * 977 + t);
                    while !stop.load(Ordering::Relaxed) {
                        r ^= r << 13;
                        r ^= r >> 7;
                        r ^= r << 17;
                        random_op(&live, r);
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(10));
            let snapshot = {
                let (live, gate) = (live.clone(), gate.clone());
                s.spawn(move || {
                    live.snapshot_to(Gated {
                        gate,
                        bytes: Vec::new(),
                    })
                })
            };
            // FLUSHALL while the walk is paused on the blocked output, new
            // keys, writes, and another FLUSHALL.
            gate.wait_entered();
            std::thread::sleep(Duration::from_millis(20 * round));
            live.flush().expect("flushall");
            preload(&live);
            std::thread::sleep(Duration::from_millis(20));
            live.flush().expect("flushall");
            std::thread::sleep(Duration::from_millis(20));
            gate.open();
            let out = snapshot.join().expect("snapshot thread").expect("snapshot");
            stop.store(true, Ordering::Relaxed);
            out
        });
        let copy = Engine::new(config(1 << 20, 1 << 20)).expect("copy");
        copy.load_snapshot(&out.bytes[..]).expect("load");
        let at_cut = Engine::new(config(1 << 20, 1 << 20)).expect("reference");
        replay_range(&live, &at_cut, live.log().expect("log").oldest(), info.offset);
        assert_eq!(
            copy.digest(),
            at_cut.digest(),
            "round {round}: the image is not the state at the cut"
        );
        assert!(info.keys > 2000, "{info:?}");
        replay(&live, &copy, info.offset);
        assert_eq!(
            copy.digest(),
            live.digest(),
            "round {round}: snapshot + log != live state"
        );
        println!("round {round}: {info:?}");
    }
}

/// A long full sync (a stream snapshot) must not keep a data directory
/// from being saved: the ring would fill and writes fail with `LogFull`.
#[test]
fn a_save_succeeds_and_writes_continue_while_a_slow_stream_snapshot_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(256 << 10, 1 << 20);
    let e = Engine::open(dir.path(), cfg.clone()).expect("open");
    for i in 0..500u64 {
        e.set(format!("old{i}"), format!("value-{i}")).expect("set");
    }
    let at_cut = e.digest();
    // A follower's full sync whose link is stalled.
    let gate = Arc::new(Gate::default());
    let out = Gated {
        gate: gate.clone(),
        bytes: Vec::new(),
    };
    let stream = {
        let e = e.clone();
        std::thread::spawn(move || e.snapshot_to(out))
    };
    gate.wait_entered();
    std::thread::sleep(Duration::from_millis(200));
    // Ten times the ring: only snapshots taken meanwhile make room.
    let capacity = e.stats().log.expect("log").capacity;
    let end = e.stats().log.expect("log").offset + 10 * capacity;
    let mut i = 0u64;
    while e.stats().log.expect("log").offset < end {
        if let Err(err) = e.set(format!("k{}", i % 50), vec![b'n'; 2048]) {
            panic!("write {i} failed while a stream snapshot ran: {err}");
        }
        i += 1;
    }
    // The last writes may have started a background save (the ring filled
    // up); SAVE waits for that one, not for the stalled stream: a stream
    // that kept the save slot would fail every try.
    let mut tries = 0;
    let saved = loop {
        match e.save() {
            Err(Error::Snapshot(SnapshotError::InProgress)) if tries < 2_000 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other,
        }
    };
    assert!(
        !gate.is_open() && !stream.is_finished(),
        "the stream snapshot still runs"
    );
    let saved = saved.expect("SAVE while a stream snapshot runs");
    assert!(saved.offset > 0);
    gate.open();
    let (out, _) = stream.join().expect("stream thread").expect("stream snapshot");
    let copy = Engine::new(config(1 << 20, 1 << 20)).expect("copy");
    copy.load_snapshot(&out.bytes[..]).expect("load");
    assert_eq!(copy.digest(), at_cut, "the stream is the state at its cut");
    let digest = e.digest();
    e.close();
    let e = Engine::open(dir.path(), cfg).expect("reopen");
    assert_eq!(e.digest(), digest);
}

#[test]
fn a_save_beside_a_stream_snapshot_each_is_exactly_its_cut() {
    for round in 0..3u64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = Engine::open(dir.path(), config(64 << 20, 128 << 10)).expect("open");
        preload(&live);
        live.del(["huge"]).expect("del");
        // Most of it stays unwalked by the stream while the save walks it all.
        for i in 0..4000 {
            live.set(format!("pad{i}"), vec![b'p'; 1024]).expect("set");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Gate::default());
        let (stream, saved) = std::thread::scope(|s| {
            for t in 0..2u64 {
                let (live, stop) = (live.clone(), stop.clone());
                s.spawn(move || {
                    let mut r = 0x6a09_e667_f3bc_c908u64 ^ (round * 7919 + t);
                    while !stop.load(Ordering::Relaxed) {
                        r ^= r << 13;
                        r ^= r >> 7;
                        r ^= r << 17;
                        random_op(&live, r);
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(10));
            let stream = {
                let (live, gate) = (live.clone(), gate.clone());
                s.spawn(move || {
                    live.snapshot_to(Gated {
                        gate,
                        bytes: Vec::new(),
                    })
                })
            };
            gate.wait_entered();
            if round > 0 {
                // FLUSHALL while both snapshots run (the stream's walk is
                // paused on its output, the save's is not).
                let (live, stop) = (live.clone(), stop.clone());
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(2 * round));
                        live.flush().expect("flushall");
                        preload(&live);
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(10));
            let saved = live.save().expect("save beside the stream");
            assert!(!stream.is_finished(), "the stream waits for its output");
            std::thread::sleep(Duration::from_millis(10));
            gate.open();
            let stream = stream.join().expect("stream thread").expect("stream snapshot");
            stop.store(true, Ordering::Relaxed);
            (stream, saved)
        });
        let (out, info) = stream;
        assert!(info.offset < saved.offset, "the save's cut is the later one");
        // The save's walk did not fill the stalled stream's backlog.
        assert!(info.peak_buffer_bytes < 1 << 20, "{info:?}");
        let oldest = live.log().expect("log").oldest();
        for (what, bytes, offset) in [
            ("stream", out.bytes, info.offset),
            (
                "save",
                std::fs::read(dir.path().join(format!("snapshot-{:020}.rkvs", saved.offset))).expect("the save's file"),
                saved.offset,
            ),
        ] {
            let copy = Engine::new(config(1 << 20, 1 << 20)).expect("copy");
            copy.load_snapshot(&bytes[..]).expect("load");
            let at_cut = Engine::new(config(1 << 20, 1 << 20)).expect("reference");
            replay_range(&live, &at_cut, oldest, offset);
            assert_eq!(
                copy.digest(),
                at_cut.digest(),
                "round {round}: the {what} is not the state at its cut"
            );
            replay(&live, &copy, offset);
            assert_eq!(
                copy.digest(),
                live.digest(),
                "round {round}: {what} + log != live state"
            );
        }
        println!("round {round}: stream {info:?}, save {saved:?}");
        live.close();
    }
}

/// An output that fails after a few writes (a follower that went away).
struct Failing(usize);

impl std::io::Write for Failing {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone"));
        }
        self.0 -= 1;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_snapshot_whose_output_fails_ends_and_frees_its_slot() {
    let e = Engine::new(config(1 << 20, 128 << 10)).expect("engine");
    preload(&e);
    for i in 0..4000 {
        e.set(format!("pad{i}"), vec![b'p'; 1024]).expect("set");
    }
    match e.snapshot_to(Failing(3)) {
        Err(Error::Snapshot(SnapshotError::Io { source, .. })) => {
            assert_eq!(source.kind(), std::io::ErrorKind::BrokenPipe)
        }
        other => panic!("expected the output's error, got {:?}", other.map(|(_, info)| info)),
    }
    assert!(!e.stats().snapshot.in_progress);
    // Nothing of it is left in the shards: writes serialize nowhere, and the
    // next snapshot starts at once and is whole.
    e.set("s1", "after").expect("set");
    let (bytes, _) = e.snapshot_to(Vec::new()).expect("the next snapshot");
    let copy = Engine::new(config(1 << 20, 1 << 20)).expect("copy");
    copy.load_snapshot(&bytes[..]).expect("load");
    assert_eq!(copy.digest(), e.digest());
}
