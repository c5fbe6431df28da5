//! A small driver for instruction-count profiles of recovery and of a
//! snapshot load (`valgrind --tool=callgrind`): prepares the input
//! outside the measured part, then runs one `Engine::open` replaying the
//! ring (`--what open`) or one `Engine::load_snapshot` of an in-memory
//! snapshot (`--what load`) inside `measured`, the only function
//! callgrind is told to collect (`--toggle-collect=*measured*`).
//!
//! ```sh
//! cargo build --release -p ringkv-benches --example profile_load
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/examples/profile_load --what open --records 50000 --value 1024 --keys 10000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//!
//! `--threads` is `Config::apply_threads` of the measured engine (1: the
//! sequential path, which is what an instruction profile reads best).

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use ringkv::{Config, Engine};
use ringkv_benches::{recovery_config, KeyFmt};

#[derive(Parser, Debug)]
struct Args {
    /// open (replay the ring) or load (a snapshot from memory).
    #[arg(long, default_value = "open")]
    what: String,
    /// SETs written (open), or keys in the snapshot (load).
    #[arg(long, default_value_t = 50_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value: usize,
    /// Distinct keys the SETs go to (open).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Apply threads of the measured engine.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[inline(never)]
fn measured_open(dir: &Path, config: Config) -> Engine {
    Engine::open(dir, config).expect("open")
}

#[inline(never)]
fn measured_load(engine: &Engine, snapshot: &[u8]) {
    engine.load_snapshot(snapshot).expect("load");
}

fn main() {
    let args = Args::parse();
    let value = Bytes::from(vec![b'v'; args.value]);
    let mut f = KeyFmt::new("key:");
    match args.what.as_str() {
        "open" => {
            let tmp = tempfile::tempdir().expect("tempdir");
            let capacity = ((args.records * (args.value as u64 + 64)) * 2)
                .next_power_of_two()
                .max(64 << 20);
            {
                let e = Engine::open(tmp.path(), recovery_config(1, capacity)).expect("create");
                for i in 0..args.records {
                    e.set(f.key(i % args.keys), value.clone()).expect("set");
                }
                e.close();
            }
            // Once outside the profile: the page cache and the ring's tail.
            warm_open(tmp.path(), recovery_config(1, capacity));
            let started = Instant::now();
            let e = black_box(measured_open(tmp.path(), recovery_config(args.threads, capacity)));
            eprintln!("open: {:?}, {} keys", started.elapsed(), e.dbsize());
            e.close();
        }
        "load" => {
            let source = Engine::new(recovery_config(1, 64 << 20)).expect("engine");
            for i in 0..args.records {
                source.set(f.key(i), value.clone()).expect("set");
            }
            let (snapshot, _) = source.snapshot_to(Vec::new()).expect("snapshot");
            drop(source);
            let e = Engine::new(recovery_config(args.threads, 64 << 20)).expect("engine");
            let started = Instant::now();
            measured_load(&e, &snapshot);
            eprintln!(
                "load: {:?}, {} keys, {} MB of snapshot",
                started.elapsed(),
                e.dbsize(),
                snapshot.len() >> 20
            );
        }
        other => panic!("--what open|load, not {other}"),
    }
}

fn warm_open(dir: &Path, config: Config) {
    Engine::open(dir, config).expect("warm open").close();
}
