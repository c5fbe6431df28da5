//! A small driver for instruction-count profiles of the hot path
//! (`valgrind --tool=callgrind`): preloads a store, then runs `--ops`
//! operations of one kind inside `measured`, the only function callgrind
//! is told to collect (`--toggle-collect=*measured*`).
//!
//! ```sh
//! cargo build --release -p ringkv-benches --example profile_ops
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/examples/profile_ops --store ring --op get --keys 100000 --ops 200000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//!
//! Stores: `ring` (no log), `ring-log` (anonymous log), `dash` (DashMap
//! with ahash, as in `--bench ops`).

use std::hint::black_box;

use ahash::RandomState;
use bytes::Bytes;
use clap::Parser;
use dashmap::DashMap;
use ringkv::{Config, Engine};
use ringkv_benches::{KeyFmt, Rng};

#[derive(Parser, Debug)]
struct Args {
    /// ring, ring-log or dash.
    #[arg(long, default_value = "ring")]
    store: String,
    /// get, set, hset, hget, incr, mget.
    #[arg(long, default_value = "get")]
    op: String,
    /// Preloaded keys (hashes: a tenth, of 10 fields).
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Measured operations.
    #[arg(long, default_value_t = 200_000)]
    ops: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    value: usize,
    /// Keep keys by cluster slot (`Config::cluster_slots`).
    #[arg(long)]
    cluster_slots: bool,
}

enum Store {
    Ring(Engine),
    Dash(
        DashMap<Bytes, Bytes, RandomState>,
        DashMap<Bytes, hashbrown::HashMap<Bytes, Bytes>, RandomState>,
    ),
}

fn main() {
    let args = Args::parse();
    let mut f = KeyFmt::new("key:");
    let keys: Vec<Bytes> = (0..args.keys as u64)
        .map(|i| Bytes::copy_from_slice(f.key(i)))
        .collect();
    let mut f = KeyFmt::new("hash:");
    let hashes: Vec<Bytes> = (0..(args.keys / 10).max(1) as u64)
        .map(|i| Bytes::copy_from_slice(f.key(i)))
        .collect();
    let mut f = KeyFmt::new("field:");
    let fields: Vec<Bytes> = (0..10u64).map(|i| Bytes::copy_from_slice(f.key(i))).collect();
    let value = Bytes::from(vec![b'v'; args.value]);
    let counter = Bytes::from_static(b"0");
    let store = match args.store.as_str() {
        "dash" => {
            let s = DashMap::with_hasher(RandomState::new());
            let h = DashMap::with_hasher(RandomState::new());
            for k in &keys {
                s.insert(
                    k.clone(),
                    if args.op == "incr" {
                        counter.clone()
                    } else {
                        value.clone()
                    },
                );
            }
            for k in &hashes {
                let mut m = hashbrown::HashMap::new();
                for f in &fields {
                    m.insert(f.clone(), value.clone());
                }
                h.insert(k.clone(), m);
            }
            Store::Dash(s, h)
        }
        name => {
            let config = Config {
                active_expire: false,
                cluster_slots: args.cluster_slots,
                ..Config::default()
            };
            let b = Engine::builder().config(config);
            let b = if name == "ring-log" { b.anonymous_log() } else { b };
            let e = b.build().expect("engine");
            for k in &keys {
                e.set(
                    k,
                    if args.op == "incr" {
                        counter.clone()
                    } else {
                        value.clone()
                    },
                )
                .expect("set");
            }
            for k in &hashes {
                e.hset(k, fields.iter().map(|f| (f.clone(), value.clone())))
                    .expect("hset");
            }
            Store::Ring(e)
        }
    };
    let sum = measured(&store, &args, &keys, &hashes, &fields, &value);
    println!("{} {} x{}: {sum}", args.store, args.op, args.ops);
}

#[inline(never)]
fn measured(store: &Store, args: &Args, keys: &[Bytes], hashes: &[Bytes], fields: &[Bytes], value: &Bytes) -> u64 {
    let mut rng = Rng::new(7);
    let mut sum = 0u64;
    for _ in 0..args.ops {
        let k = &keys[rng.below(keys.len())];
        match (store, args.op.as_str()) {
            (Store::Ring(e), "get") => sum += e.get(k).expect("get").map_or(0, |v| v.len()) as u64,
            (Store::Ring(e), "set") => e.set(k, value.clone()).expect("set"),
            (Store::Ring(e), "incr") => sum += e.incr_by(k, 1).expect("incr") as u64,
            (Store::Ring(e), "mget") => {
                let k2 = &keys[rng.below(keys.len())];
                sum += e.mget([k, k2]).iter().flatten().count() as u64;
            }
            (Store::Ring(e), "hset") => {
                let h = &hashes[rng.below(hashes.len())];
                let f = &fields[rng.below(fields.len())];
                sum += e.hset(h, [(f, value.clone())]).expect("hset") as u64;
            }
            (Store::Ring(e), "hget") => {
                let h = &hashes[rng.below(hashes.len())];
                let f = &fields[rng.below(fields.len())];
                sum += e.hget(h, f).expect("hget").map_or(0, |v| v.len()) as u64;
            }
            (Store::Dash(s, _), "get") => sum += s.get(k).map(|v| v.clone()).map_or(0, |v| v.len()) as u64,
            (Store::Dash(s, _), "set") => {
                if let Some(mut v) = s.get_mut(k) {
                    *v = value.clone();
                }
            }
            (Store::Dash(s, _), "incr") => {
                if let Some(mut v) = s.get_mut(k) {
                    let n: i64 = std::str::from_utf8(&v).ok().and_then(|t| t.parse().ok()).unwrap_or(0) + 1;
                    *v = Bytes::from(n.to_string());
                    sum += n as u64;
                }
            }
            (Store::Dash(_, h), "hset") => {
                let hk = &hashes[rng.below(hashes.len())];
                let f = &fields[rng.below(fields.len())];
                if let Some(mut m) = h.get_mut(hk) {
                    if let Some(v) = m.get_mut(f) {
                        *v = value.clone();
                    }
                }
            }
            (Store::Dash(_, h), "hget") => {
                let hk = &hashes[rng.below(hashes.len())];
                let f = &fields[rng.below(fields.len())];
                sum += h.get(hk).and_then(|m| m.get(f).cloned()).map_or(0, |v| v.len()) as u64;
            }
            (_, op) => panic!("unknown op {op}"),
        }
    }
    black_box(sum)
}
