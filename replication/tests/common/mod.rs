//! Shared helpers for the replication tests: certificates, engines, waits.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use ringkv::{Config, Engine, LogConfig};
use ringkv_replication::tls::{DevCerts, TlsMaterial};
use ringkv_replication::{Follower, FollowerConfig, PrimaryConfig};

pub struct Certs {
    pub ca: DevCerts,
    pub server: TlsMaterial,
    pub client: TlsMaterial,
}

pub fn certs() -> Certs {
    let ca = DevCerts::new("test CA").expect("ca");
    let server = ca
        .material(&ca.server(&["localhost"]).expect("server"))
        .expect("material");
    let client = ca.material(&ca.client("follower").expect("client")).expect("material");
    Certs { ca, server, client }
}

pub fn config_with_ring(capacity: u64) -> Config {
    Config {
        log: LogConfig {
            capacity,
            ..LogConfig::default()
        },
        ..Config::default()
    }
}

/// An engine with an anonymous ring (overwrites old laps).
pub fn anonymous(capacity: u64) -> Engine {
    Engine::builder()
        .config(config_with_ring(capacity))
        .anonymous_log()
        .build()
        .expect("engine")
}

pub fn primary_config() -> PrimaryConfig {
    PrimaryConfig {
        ping_interval_ms: 50,
        ..PrimaryConfig::default()
    }
}

pub fn follower_config(primary: std::net::SocketAddr, name: &str) -> FollowerConfig {
    FollowerConfig {
        name: name.into(),
        min_backoff_ms: 20,
        max_backoff_ms: 200,
        ack_interval_ms: 20,
        ..FollowerConfig::new(primary)
    }
}

/// Polls `cond` every 10 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `follower` has applied everything `primary` logged and their digests match.
pub async fn converged(primary: &Engine, follower: &Engine, secs: u64) {
    let p = primary.clone();
    let f = follower.clone();
    eventually(secs, "follower digest equals primary digest", move || {
        let end = p.log().expect("log").published();
        f.applied_offset() >= end && f.digest() == p.digest()
    })
    .await;
}

/// Telemetry-style writes: hashes of metrics per host, counters, TTL'd sessions.
pub fn workload(engine: &Engine, round: u64, n: u64) {
    for i in 0..n {
        let host = (round * n + i) % 32;
        engine
            .hset(
                format!("telemetry:host-{host}"),
                [(format!("m{}", i % 16), format!("{}", (i * 7919) % 1000))],
            )
            .expect("hset");
        engine.incr(format!("counter:{}", i % 10)).expect("incr");
        if i % 4 == 0 {
            engine
                .set_with(
                    format!("session:{round}:{i}"),
                    "token-abcdef0123456789",
                    ringkv::SetOptions::new().ex(3600),
                )
                .expect("set");
        }
        if i % 50 == 0 {
            engine.hdrain(format!("telemetry:host-{host}"), 8).expect("hdrain");
        }
    }
}

/// Logs to the test output (`RUST_LOG` filters; warnings by default).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Starts a follower of `primary` into `engine` with the test settings.
pub async fn follow(engine: &Engine, primary: std::net::SocketAddr, name: &str, tls: &TlsMaterial) -> Follower {
    Follower::start(engine.clone(), follower_config(primary, name), tls.clone())
        .await
        .expect("follower starts")
}
