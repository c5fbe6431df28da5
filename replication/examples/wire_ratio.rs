//! zstd on the replication bench's telemetry stream, side by side in one
//! run: protocol version 2's framing (each frame a fresh zstd frame with the
//! stream's last 256 KiB as a prefix dictionary, reloaded per frame) against
//! version 3's [`Compressor`] (one zstd stream, flushed per frame), for
//! frames of 4 KiB, 32 KiB and 256 KiB (the primary's `batch_bytes`).
//! Bytes are exact; MB/s is this machine's and noisy.
//!
//! `cargo run --release -p ringkv-replication --example wire_ratio [-- RECORDS]`

use std::time::Instant;

use ringkv::log::record::{encode_mutation, header, record_len};
use ringkv::{Bytes, Mutation};
use ringkv_replication::compress::Compressor;
use ringkv_replication::protocol::Codec;

/// `n` telemetry HSETs as ring records (as in `--bench replication`).
fn stream(n: u64) -> Vec<u8> {
    let (mut out, mut payload) = (Vec::new(), Vec::new());
    for i in 0..n {
        payload.clear();
        let m = Mutation::HSet {
            key: Bytes::from(format!("telemetry:host-{}", i % 1000)),
            fields: vec![(
                Bytes::from(format!("m{}", i % 16)),
                Bytes::from(format!("{{\"v\":{},\"t\":{}}}", (i * 7919) % 10_000, 1_700_000_000 + i)),
            )],
        };
        encode_mutation(&m, &mut payload);
        let offset = out.len() as u64;
        out.extend_from_slice(&header(offset, &payload));
        out.extend_from_slice(&payload);
        out.resize((offset + record_len(payload.len())) as usize, 0);
    }
    out
}

/// Version 2: a fresh context per frame, the last 256 KiB as its prefix.
fn version_2(data: &[u8], batch: usize) -> usize {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut wire = 0;
    for (i, raw) in data.chunks(batch).enumerate() {
        let pos = i * batch;
        let prefix = &data[pos.saturating_sub(256 * 1024)..pos];
        let mut cctx = CCtx::create();
        cctx.set_parameter(CParameter::CompressionLevel(3)).expect("level");
        if !prefix.is_empty() {
            cctx.ref_prefix(prefix).expect("prefix");
        }
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
        cctx.compress2(&mut out, raw).expect("compress");
        wire += out.len().min(raw.len());
    }
    wire
}

/// Version 3: the crate's compressor.
fn version_3(data: &[u8], batch: usize) -> usize {
    let mut c = Compressor::new(Codec::Zstd);
    for raw in data.chunks(batch) {
        let _ = c.compress(raw);
    }
    c.bytes_wire as usize
}

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let data = stream(n);
    println!("{n} telemetry records, {} bytes of ring stream\n", data.len());
    println!("| frame | v2: ratio | v2: MB/s | v3: ratio | v3: MB/s | v3/v2 speed |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for batch in [4096usize, 32 * 1024, 256 * 1024] {
        // A B A B: each timed twice, the faster kept.
        let mut best = [f64::MAX; 2];
        let mut wire = [0usize; 2];
        for _ in 0..2 {
            for (v, f) in [version_2 as fn(&[u8], usize) -> usize, version_3].iter().enumerate() {
                let t = Instant::now();
                wire[v] = f(&data, batch);
                best[v] = best[v].min(t.elapsed().as_secs_f64());
            }
        }
        let len = data.len() as f64;
        println!(
            "| {batch} | {:.4} ({:.2}×) | {:.0} | {:.4} ({:.2}×) | {:.0} | {:.1}× |",
            wire[0] as f64 / len,
            len / wire[0] as f64,
            len / best[0] / 1e6,
            wire[1] as f64 / len,
            len / wire[1] as f64,
            len / best[1] / 1e6,
            best[0] / best[1]
        );
    }
}
