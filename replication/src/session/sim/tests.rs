//! The seeded runs: `RINGKV_SIM_SEEDS` worlds (default 300) from
//! `RINGKV_SIM_FIRST_SEED` (default 0) on `RINGKV_SIM_THREADS` threads
//! (default 2), or the one world `RINGKV_SIM_SEED=<n>` with its whole
//! trace; and one test per seed that found a bug in the sessions.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::world::{Stats, World};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs one world; `Err` with what to print when an invariant broke (or
/// the sessions panicked).
fn run_seed(seed: u64) -> Result<World, String> {
    let mut trace_tail = Vec::new();
    let run = catch_unwind(AssertUnwindSafe(|| {
        let mut w = World::new(seed);
        w.run();
        w
    }));
    let w = match run {
        Ok(w) => w,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            trace_tail.push(format!("panicked: {what}"));
            return Err(report(seed, &format!("a panic: {what}"), &trace_tail));
        }
    };
    match &w.failure {
        None => Ok(w),
        Some(f) => Err(report(seed, f, &w.trace)),
    }
}

fn report(seed: u64, failure: &str, trace: &[String]) -> String {
    let tail = trace.len().saturating_sub(60);
    format!(
        "seed {seed}: {failure}\n  replay it with its trace: RINGKV_SIM_SEED={seed} cargo test -p ringkv-replication --lib \
         session::sim::tests::seeded_worlds_keep_every_invariant -- --nocapture\n  the last events:\n    {}",
        trace[tail..].join("\n    ")
    )
}

/// Runs `count` seeds from `first` on `threads` threads: the stats summed
/// over the passing seeds, and the failures by seed.
fn run_seeds(first: u64, count: u64, threads: u64) -> (Stats, Vec<(u64, String)>) {
    let threads = threads.clamp(1, 64);
    let results: Vec<(Stats, Vec<(u64, String)>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut stats = Stats::default();
                    let mut failures = Vec::new();
                    let mut seed = first + t;
                    while seed < first + count {
                        match run_seed(seed) {
                            Ok(w) => stats.add(&w.stats),
                            Err(e) => failures.push((seed, e)),
                        }
                        seed += threads;
                    }
                    (stats, failures)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Stats::default(), vec![(u64::MAX, "a worker panicked".into())]))
            })
            .collect()
    });
    let mut stats = Stats::default();
    let mut failures = Vec::new();
    for (s, f) in results {
        stats.add(&s);
        failures.extend(f);
    }
    failures.sort_by_key(|(seed, _)| *seed);
    (stats, failures)
}

fn summary(count: u64, s: &Stats) -> String {
    format!(
        "simulated {count} seeds: {} writes ({} bytes), {} connections, {} partial and {} full syncs ({} swapped in, \
         {} ring-full holds, {} offsets left the ring, {} snapshots given up), {} resets, {} partitions, {} pauses, \
         {} follower restarts, {} primary crashes ({} promotions with acked writes checked {} times, {} restarts, \
         {} failovers refused: a stale follower was the most advanced, {} of them where promoting the most \
         advanced one not stale would have lost writes a WAIT 1 returned for; {} promotions that lost acked \
         writes every follower holding them had dropped in a full sync), {} re-pointings, {} old primaries rejoined, \
         {} hostile frame faults ending {} links; at most {} sessions per primary, quiescent within {} ms (at most {}% of the bound); \
         {} steps",
        s.writes,
        s.bytes,
        s.connects,
        s.partial_syncs,
        s.full_syncs,
        s.swaps,
        s.ring_full_holds,
        s.lagged,
        s.snapshot_stalls,
        s.resets,
        s.partitions,
        s.pauses,
        s.restarts,
        s.crashes,
        s.promotions,
        s.wait_acked_checked,
        s.primary_restarts,
        s.unsafe_failovers,
        s.unsafe_failovers_losing_acked,
        s.acked_lost_to_full_syncs,
        s.repoints,
        s.rejoins,
        s.hostile_faults,
        s.hostile_link_errors,
        s.max_primary_conns,
        s.quiet_ms,
        s.quiet_share,
        s.steps
    )
}

/// Every invariant of `check.rs` holds in every seeded world, and the
/// seeds together exercise every fault and every recovery path.
#[test]
fn seeded_worlds_keep_every_invariant() {
    if let Some(seed) = env_u64("RINGKV_SIM_SEED") {
        let mut w = World::new(seed);
        let run = catch_unwind(AssertUnwindSafe(|| w.run()));
        eprintln!("{}", w.trace.join("\n"));
        assert!(run.is_ok(), "seed {seed} panicked (the trace is above)");
        if let Some(f) = &w.failure {
            panic!("seed {seed}: {f}");
        }
        eprintln!("{}", summary(1, &w.stats));
        return;
    }
    let first = env_u64("RINGKV_SIM_FIRST_SEED").unwrap_or(0);
    let count = env_u64("RINGKV_SIM_SEEDS").unwrap_or(300);
    let threads = env_u64("RINGKV_SIM_THREADS").unwrap_or(2);
    let started = std::time::Instant::now();
    let (stats, failures) = run_seeds(first, count, threads);
    let line = summary(count, &stats);
    eprintln!(
        "{line}; seeds {first}..{} in {:.1} s, {} failed",
        first + count,
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    if let Some((_, first_failure)) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|(s, _)| *s).take(20).collect();
        panic!(
            "{} of {count} seeds broke an invariant (the first ones: {seeds:?}); the first:\n{first_failure}",
            failures.len()
        );
    }
    assert_eq!(stats.writes > 0, count > 0);
    if count >= 100 {
        // The seeds reach every fault and every way back from it.
        for (what, n) in [
            ("partial syncs", stats.partial_syncs),
            ("full syncs", stats.full_syncs),
            ("swaps", stats.swaps),
            ("ring-full holds", stats.ring_full_holds),
            ("offsets that left the ring", stats.lagged),
            ("resets", stats.resets),
            ("partitions", stats.partitions),
            ("pauses", stats.pauses),
            ("follower restarts", stats.restarts),
            ("primary crashes", stats.crashes),
            ("promotions", stats.promotions),
            ("primary restarts", stats.primary_restarts),
            ("re-pointings", stats.repoints),
            ("rejoins", stats.rejoins),
            ("hostile faults", stats.hostile_faults),
            ("links ended by a hostile transport", stats.hostile_link_errors),
        ] {
            assert!(n > 0, "no {what} in {count} seeds: {line}");
        }
    }
}

/// The same seed makes the same world, event for event.
#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 11] {
        let a = run_seed(seed).map(|w| w.trace);
        let b = run_seed(seed).map(|w| w.trace);
        assert_eq!(a, b, "seed {seed}");
    }
}

// The regression seeds below failed on the code before their fix. A seed
// names a world only as long as the world is made the same way: new
// parameters are drawn at the end of `Params::draw`, and the run draws
// from a generator of its own; a change to how the world runs may need the
// seeds found again (undo the fix, run the default seeds, take a failing
// one).

/// Found by this simulation: over a hostile transport a log frame was
/// lost, and the follower session handed the next one to the engine at
/// offset 4296 while its ring ended at 4128 (the engine refused the gap;
/// nothing in the session checked it). The session now ends the link with
/// a peer error before decompressing the frame, and the follower resumes
/// by offset.
#[test]
fn seed_10_a_log_frame_past_a_lost_one_ends_the_link_before_the_engine() {
    let w = run_seed(10).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        w.trace
            .iter()
            .any(|l| l.contains("a log frame at offset 4296 where the stream is at 4128")),
        "the frame past the gap is refused by the session"
    );
    assert!(w.stats.hostile_link_errors > 0 && w.stats.hostile_faults > 0);
}

/// The same finding for a repeated frame: the engine saw offset 52008
/// with its ring at 52072 (identical bytes it would have ignored; after a
/// compressed frame, bytes decoded with the wrong history).
#[test]
fn seed_38_a_repeated_log_frame_ends_the_link_before_the_engine() {
    let w = run_seed(38).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        w.trace
            .iter()
            .any(|l| l.contains("a log frame at offset 52008 where the stream is at 52072")),
        "the repeated frame is refused by the session"
    );
}

/// Found by this simulation: over a hostile transport the first frame of
/// a log stream was a log frame (its `Stream` frame lost), and the
/// follower's link ended with an error of 6749 bytes: the session wrote
/// the whole frame into it with `{:?}` (a data frame may hold megabytes,
/// kept as `last_error` and logged). Errors now name a frame by its kind
/// and numbers (`Message::summary`).
#[test]
fn seed_102_an_error_about_a_frame_names_it_without_its_bytes() {
    let w = run_seed(102).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        w.trace
            .iter()
            .any(|l| l.contains("a data stream must start with Stream, got Log frame at 9784 (2408 bytes)")),
        "the error names the frame"
    );
}
