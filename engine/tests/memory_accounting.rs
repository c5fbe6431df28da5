//! The memory accounting stays within 10% of the process's real memory
//! growth (resident set), for small keys, large values, hashes and keys with
//! expiry. One test in its own binary, so nothing else allocates meanwhile.

use ringkv::{Config, Engine, SetOptions};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("rss field")
        .parse()
        .expect("number");
    pages * 4096
}

fn check(name: &str, e: &Engine, f: impl FnOnce(&Engine)) {
    let (rss0, acc0) = (rss_bytes(), e.used_memory());
    f(e);
    let (rss1, acc1) = (rss_bytes(), e.used_memory());
    let real = rss1.saturating_sub(rss0) as f64;
    let accounted = acc1.saturating_sub(acc0) as f64;
    let ratio = accounted / real;
    println!("{name}: real {real} B, accounted {accounted} B, ratio {ratio:.3}");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{name}: accounted {accounted} vs real {real} (ratio {ratio:.3})"
    );
}

#[test]
fn accounting_is_within_ten_percent_of_real_growth() {
    if !std::path::Path::new("/proc/self/statm").exists() {
        eprintln!("no /proc/self/statm: skipped");
        return;
    }
    let e = Engine::new(Config {
        shards: 8,
        active_expire: false,
        ..Config::default()
    })
    .expect("engine");
    check("small strings", &e, |e| {
        for i in 0..400_000u32 {
            e.set(format!("key:{i:08}"), format!("val:{i:08}")).expect("set");
        }
    });
    check("100-byte values", &e, |e| {
        for i in 0..100_000u32 {
            e.set(format!("big:{i:08}"), vec![b'v'; 100]).expect("set");
        }
    });
    check("hashes", &e, |e| {
        for h in 0..2_000u32 {
            e.hset(
                format!("telemetry:{h}"),
                (0..100).map(|f| (format!("metric-{f}"), format!("{}", f * h))),
            )
            .expect("hset");
        }
    });
    check("keys with expiry", &e, |e| {
        for i in 0..200_000u32 {
            e.set_with(format!("session:{i:08}"), "token", SetOptions::new().ex(3600))
                .expect("set");
        }
    });
}
