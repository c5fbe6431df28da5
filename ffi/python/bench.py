#!/usr/bin/env python3
"""Per-call throughput and latency of ringkv through libringkv (in-memory
engine, ctypes) beside redis-py talking to redis-server on loopback.

    python ffi/python/bench.py [--port PORT] [--n N]

Without --port a redis-server is started on a free port
(``--save '' --appendonly no``) and stopped at the end.  N (default
$BENCH_N or 100000) calls of GET, SET and HSET; N/500 calls of HDRAIN 500
(Redis has no HDRAIN: its equivalent is an atomic Lua script,
HRANDFIELD count WITHVALUES + HDEL).  The hash is refilled between drains,
outside the timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ringkv  # noqa: E402

VALUE = b"v" * 16
DRAIN = 500
HDRAIN_LUA = """
local r = redis.call('HRANDFIELD', KEYS[1], ARGV[1], 'WITHVALUES')
for i = 1, #r, 2 do redis.call('HDEL', KEYS[1], r[i]) end
return r
"""


def measure(n: int, call: Callable[[int], object], before: Optional[Callable[[int], object]] = None) -> Tuple[float, List[int]]:
    """Runs call(i) n times; returns (calls/s, per-call ns).  before(i), if
    given, runs untimed ahead of each call."""
    pc = time.perf_counter_ns
    lat = [0] * n
    total = 0
    if before is None:
        t_start = pc()
        for i in range(n):
            t0 = pc()
            call(i)
            lat[i] = pc() - t0
        total = pc() - t_start
    else:
        for i in range(n):
            before(i)
            t0 = pc()
            call(i)
            d = pc() - t0
            lat[i] = d
            total += d
    return n / (total / 1e9), lat


def pct(lat: List[int], p: float) -> float:
    s = sorted(lat)
    return s[min(len(s) - 1, int(len(s) * p))] / 1000.0


def bench_ringkv(n: int) -> Dict[str, Tuple[float, List[int]]]:
    out = {}
    with ringkv.Engine.open() as e:
        keys = [f"key:{i}".encode() for i in range(n)]
        out["SET"] = measure(n, lambda i: e.set(keys[i], VALUE))
        out["GET"] = measure(n, lambda i: e.get(keys[i]))
        fields = [f"f{i}".encode() for i in range(n)]
        hkeys = [f"hash:{i % 1000}".encode() for i in range(n)]
        out["HSET"] = measure(n, lambda i: e.hset(hkeys[i], {fields[i]: VALUE}))
        fill = {f"m{j}".encode(): VALUE for j in range(DRAIN)}
        out[f"HDRAIN {DRAIN}"] = measure(
            max(1, n // DRAIN),
            lambda i: e.hdrain(b"telemetry:host", DRAIN),
            before=lambda i: e.hset(b"telemetry:host", fill),
        )
        assert e.hlen(b"telemetry:host") == 0
    return out


def bench_redis(n: int, port: int) -> Dict[str, Tuple[float, List[int]]]:
    import redis  # type: ignore

    r = redis.Redis(host="127.0.0.1", port=port)
    r.flushall()
    out = {}
    keys = [f"key:{i}".encode() for i in range(n)]
    out["SET"] = measure(n, lambda i: r.set(keys[i], VALUE))
    out["GET"] = measure(n, lambda i: r.get(keys[i]))
    fields = [f"f{i}".encode() for i in range(n)]
    hkeys = [f"hash:{i % 1000}".encode() for i in range(n)]
    out["HSET"] = measure(n, lambda i: r.hset(hkeys[i], mapping={fields[i]: VALUE}))
    drain = r.register_script(HDRAIN_LUA)
    fill = {f"m{j}".encode(): VALUE for j in range(DRAIN)}
    out[f"HDRAIN {DRAIN}"] = measure(
        max(1, n // DRAIN),
        lambda i: drain(keys=[b"telemetry:host"], args=[DRAIN]),
        before=lambda i: r.hset(b"telemetry:host", mapping=fill),
    )
    assert r.hlen(b"telemetry:host") == 0
    r.flushall()
    r.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis() -> Tuple[subprocess.Popen, int]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found (pass --port of a running one)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not answer PING within 10 s")


def stop_redis(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, help="port of a running redis-server on 127.0.0.1")
    ap.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", "100000")))
    args = ap.parse_args()
    n = args.n

    print(f"ringkv {ringkv.version()} via {ringkv.library_path}")
    if "/debug/" in ringkv.library_path:
        print("note: a debug build of libringkv (cargo build --release -p ringkv-ffi for release numbers)")
    print(f"python {platform.python_version()}, N={n}, value {len(VALUE)} B, HDRAIN calls N/{DRAIN}={max(1, n // DRAIN)}")
    ours = bench_ringkv(n)

    theirs: Optional[Dict[str, Tuple[float, List[int]]]] = None
    proc = None
    try:
        import redis  # type: ignore  # noqa: F401

        port = args.port
        if port is None:
            proc, port = start_redis()
        info = redis.Redis(host="127.0.0.1", port=port).info("server")
        print(f"redis-py {redis.__version__} -> redis-server {info.get('redis_version', '?')} on 127.0.0.1:{port} (TCP loopback)")
        theirs = bench_redis(n, port)
    except ImportError:
        print("redis-py is not installed: ringkv only")
    finally:
        if proc is not None:
            stop_redis(proc)

    head = f"{'op':<11} {'ringkv calls/s':>15} {'redis calls/s':>14} {'ratio':>7}   {'ringkv p50/p99 us':>18} {'redis p50/p99 us':>17}"
    print()
    print(head)
    print("-" * len(head))
    for op in ("GET", "SET", "HSET", f"HDRAIN {DRAIN}"):
        ops, lat = ours[op]
        ours_lat = f"{pct(lat, 0.50):.1f}/{pct(lat, 0.99):.1f}"
        if theirs is not None:
            rops, rlat = theirs[op]
            ratio = f"{ops / rops:.1f}x"
            their_lat = f"{pct(rlat, 0.50):.1f}/{pct(rlat, 0.99):.1f}"
            rcol = f"{rops:,.0f}"
        else:
            ratio, their_lat, rcol = "-", "-", "-"
        print(f"{op:<11} {ops:>15,.0f} {rcol:>14} {ratio:>7}   {ours_lat:>18} {their_lat:>17}")
    print("\nratio = ringkv calls/s / redis calls/s (same Python process, one thread, one call at a time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
