//! Replication handles: a primary (QUIC listener serving an engine's ring
//! log) and a follower (an engine tailing a remote primary by offset),
//! with mutual TLS from PEM files. Each handle owns a small runtime of its
//! own threads; calls block the caller. Both handles may be used from
//! several threads at once (a follower's promotion takes its handle's lock,
//! so a state query beside it waits or sees it promoted), except the
//! `*_free` calls.

use std::net::SocketAddr;
use std::os::raw::c_char;
use std::path::PathBuf;
use std::time::Duration;

use replication::blocking::{Follower, Primary};
use replication::tls::{DevCerts, TlsConfig, TlsMaterial};
use replication::{FollowerConfig, PrimaryConfig};

use crate::args;
use crate::boundary::{guard, guard_void};
use crate::buf::ringkv_buf;
use crate::engine_api::{engine, ringkv_engine};
use crate::handle::{self, Kind};
use crate::status::{ringkv_status, Fail};

/// A replication listener serving an engine's log to followers.
pub struct ringkv_primary {
    _private: [u8; 0],
}

/// An engine following a remote primary.
pub struct ringkv_follower {
    _private: [u8; 0],
}

/// A follower handle: the running follower until promoted. The lock makes
/// promotion (which ends the follower) exclusive with state queries from
/// other threads.
struct FollowerState {
    follower: parking_lot::Mutex<Option<Follower>>,
}

fn tls(cert: *const c_char, key: *const c_char, ca: *const c_char) -> Result<TlsMaterial, Fail> {
    let path = |p, what| args::c_str_required(p, what).map(PathBuf::from);
    let config = TlsConfig {
        cert: path(cert, "cert")?,
        key: path(key, "key")?,
        ca: path(ca, "ca")?,
        pinned: Vec::new(),
    };
    Ok(TlsMaterial::load(&config)?)
}

fn addr(s: *const c_char, what: &str) -> Result<SocketAddr, Fail> {
    let s = args::c_str_required(s, what)?;
    s.parse()
        .map_err(|_| Fail::invalid(format!("{what} {s:?} is not an address like 127.0.0.1:7379")))
}

fn json(value: &impl serde::Serialize) -> Result<ringkv_buf, Fail> {
    serde_json::to_vec(value)
        .map(|v| ringkv_buf::copy(&v))
        .map_err(|e| Fail {
            status: ringkv_status::RINGKV_INTERNAL,
            message: format!("stats do not serialize: {e}"),
        })
}

/// Writes development TLS material into `dir` (made if missing): `ca.pem`,
/// `server.pem`/`server.key` (for "localhost" and 127.0.0.1) and
/// `client.pem`/`client.key`, all signed by a new CA. For tests and
/// demos; production uses its own certificates.
#[no_mangle]
pub extern "C" fn ringkv_dev_certs(dir: *const c_char) -> ringkv_status {
    guard(|| {
        let dir = PathBuf::from(args::c_str_required(dir, "dir")?);
        let ca = DevCerts::new("ringkv development CA")?;
        ca.write(&dir, "server", &ca.server(&["localhost", "127.0.0.1"])?)?;
        ca.write(&dir, "client", &ca.client("ringkv-follower")?)?;
        Ok(())
    })
}

/// Serves `e`'s ring log to followers on `listen` ("127.0.0.1:0" picks a
/// free port; see `ringkv_primary_port`), with this node's certificate,
/// key and the CA that signs followers' certificates (PEM paths). The
/// engine needs a log: a data directory, or `RINGKV_OPEN_ANONYMOUS_LOG`.
#[no_mangle]
pub extern "C" fn ringkv_primary_start(
    e: *const ringkv_engine,
    listen: *const c_char,
    cert: *const c_char,
    key: *const c_char,
    ca: *const c_char,
    out: *mut *mut ringkv_primary,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let engine = engine(e)?.clone();
        let config = PrimaryConfig {
            listen: addr(listen, "listen")?,
            ..PrimaryConfig::default()
        };
        let primary = Primary::start(engine, config, tls(cert, key, ca)?)?;
        out.set(handle::new(Kind::Primary, primary));
        Ok(())
    })
}

/// The port the primary listens on.
#[no_mangle]
pub extern "C" fn ringkv_primary_port(p: *const ringkv_primary, port: *mut u16) -> ringkv_status {
    guard(|| {
        let out = args::out(port, "port")?;
        let p: &Primary = handle::get(p, Kind::Primary)?;
        out.set(p.local_addr().port());
        Ok(())
    })
}

/// Waits at most `timeout_ms` until `n` followers acked applying `offset`
/// (Redis' WAIT); `*acked` is how many did.
#[no_mangle]
pub extern "C" fn ringkv_primary_wait_for_followers(
    p: *const ringkv_primary,
    offset: u64,
    n: usize,
    timeout_ms: u64,
    acked: *mut usize,
) -> ringkv_status {
    guard(|| {
        let out = args::out(acked, "acked")?;
        let p: &Primary = handle::get(p, Kind::Primary)?;
        out.set(p.wait_for_followers(offset, n, Duration::from_millis(timeout_ms)));
        Ok(())
    })
}

/// The primary's replication statistics as JSON (followers, their acked
/// offsets and lag). Free with `ringkv_buf_free`.
#[no_mangle]
pub extern "C" fn ringkv_primary_stats_json(p: *const ringkv_primary, out: *mut ringkv_buf) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let p: &Primary = handle::get(p, Kind::Primary)?;
        out.set(json(&p.stats())?);
        Ok(())
    })
}

/// Stops serving (closes every follower connection) and frees the handle.
/// The engine stays usable. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ringkv_primary_free(p: *mut ringkv_primary) {
    guard_void(|| handle::free(p, Kind::Primary));
}

/// Makes `e` a follower of the primary at `primary_addr`
/// ("127.0.0.1:7379"), whose certificate must name `server_name`
/// ("localhost" with `ringkv_dev_certs`); `cert`/`key` are this follower's
/// client certificate, `ca` the CA that signs the primary's. Returns once
/// it is following (connecting goes on in the background; see
/// `ringkv_follower_state_json`). The engine handle stays usable for reads;
/// its writes answer `RINGKV_READ_ONLY`. The engine needs a log (a data
/// directory, or `RINGKV_OPEN_ANONYMOUS_LOG`).
#[no_mangle]
pub extern "C" fn ringkv_follower_start(
    e: *const ringkv_engine,
    primary_addr: *const c_char,
    server_name: *const c_char,
    cert: *const c_char,
    key: *const c_char,
    ca: *const c_char,
    out: *mut *mut ringkv_follower,
) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let engine = engine(e)?.clone();
        let config = FollowerConfig {
            server_name: args::c_str_required(server_name, "server_name")?.to_string(),
            ..FollowerConfig::new(addr(primary_addr, "primary_addr")?)
        };
        let follower = Follower::start(engine, config, tls(cert, key, ca)?)?;
        out.set(handle::new(
            Kind::Follower,
            FollowerState {
                follower: parking_lot::Mutex::new(Some(follower)),
            },
        ));
        Ok(())
    })
}

/// The follower's state as JSON: `master_link_status`,
/// `slave_repl_offset` (applied), `durable_offset`, `lag_bytes`,
/// `full_syncs`, `partial_syncs`, ... (the fields of Redis' INFO
/// replication). Free with `ringkv_buf_free`.
#[no_mangle]
pub extern "C" fn ringkv_follower_state_json(f: *const ringkv_follower, out: *mut ringkv_buf) -> ringkv_status {
    guard(|| {
        let out = args::out(out, "out")?;
        let f: &FollowerState = handle::get(f, Kind::Follower)?;
        let guard = f.follower.lock();
        let follower = guard
            .as_ref()
            .ok_or_else(|| Fail::invalid("the follower was promoted"))?;
        out.set(json(&follower.info())?);
        Ok(())
    })
}

/// Stops following and makes the engine a primary, keeping its offsets
/// (followers of the old primary can continue from it with a partial
/// resync). The handle is then spent: free it. Safe beside other threads'
/// calls on the handle (they wait, then answer that it was promoted). If
/// the promotion itself fails, replication has already stopped: the engine
/// stays a read-only follower; free the handle and start a new follower.
#[no_mangle]
pub extern "C" fn ringkv_follower_promote(f: *mut ringkv_follower) -> ringkv_status {
    guard(|| {
        let f: &FollowerState = handle::get(f.cast_const(), Kind::Follower)?;
        let mut guard = f.follower.lock();
        let follower = guard
            .take()
            .ok_or_else(|| Fail::invalid("the follower was already promoted"))?;
        follower.promote()?;
        Ok(())
    })
}

/// Stops following (the engine stays a read-only follower, at the offset
/// it reached) and frees the handle. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ringkv_follower_free(f: *mut ringkv_follower) {
    guard_void(|| handle::free(f, Kind::Follower));
}
