"""Production-like workloads: telemetry ingest and drain, session tokens."""

import random
import threading
import time
from collections import Counter

from ringkv import Engine

HOSTS = 40
METRICS_PER_HOST = 2500  # 100,000 fields in all
PRODUCERS = 4
DRAINERS = 2


def test_telemetry_ingest_and_drain(engine):
    """Many hosts HSET metrics into telemetry:<host>; drainers running at the
    same time take batches of 500 with HDRAIN; every field is consumed
    exactly once, with its value."""
    hosts = [f"host-{i:03d}" for i in range(HOSTS)]
    producing = threading.Event()
    producing.set()
    consumed = []  # (host, field, value) from all drainers
    consumed_lock = threading.Lock()
    pages = Counter()
    errors = []

    def producer(idx):
        try:
            rnd = random.Random(idx)
            mine = hosts[idx::PRODUCERS]
            for m in range(0, METRICS_PER_HOST, 10):
                for host in mine:
                    fields = {
                        f"m{j}".encode(): f"{host}:{j}:{rnd.random():.6f}".encode()
                        for j in range(m, m + 10)
                    }
                    engine.hset(f"telemetry:{host}", fields)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    def drainer():
        try:
            while True:
                done = not producing.is_set()
                got_any = False
                for key in list(engine.scan(match="telemetry:*", count=100, type="hash")):
                    host = key.decode().split(":", 1)[1]
                    for page in engine.drain(key, batch=500):
                        assert 0 < len(page) <= 500
                        got_any = True
                        with consumed_lock:
                            pages[len(page)] += 1
                            consumed.extend((host, f, v) for f, v in page.items())
                if done and not got_any:
                    return
                if not got_any:
                    time.sleep(0.001)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    producers = [threading.Thread(target=producer, args=(i,)) for i in range(PRODUCERS)]
    drainers = [threading.Thread(target=drainer) for _ in range(DRAINERS)]
    for t in drainers + producers:
        t.start()
    for t in producers:
        t.join(120)
        assert not t.is_alive()
    producing.clear()
    for t in drainers:
        t.join(120)
        assert not t.is_alive()
    assert not errors, errors

    # every field exactly once
    seen = Counter((h, f) for h, f, _ in consumed)
    assert len(seen) == HOSTS * METRICS_PER_HOST
    assert max(seen.values()) == 1
    for host, field, value in consumed:
        j = int(field[1:])
        assert value.startswith(f"{host}:{j}:".encode())
    assert engine.dbsize() == 0
    assert list(engine.scan(match="telemetry:*")) == []
    assert engine.stats()["commands"]["hdrain"] >= sum(pages.values())


def test_telemetry_drain_batches_of_500(engine):
    """One host with 1,234 metrics drains as 500 + 500 + 234."""
    engine.hset("telemetry:web-1", {f"m{i}": str(i) for i in range(1234)})
    sizes = [len(p) for p in engine.drain("telemetry:web-1", batch=500)]
    assert sizes == [500, 500, 234]
    assert engine.exists("telemetry:web-1") == 0


def test_session_tokens_expire(engine):
    """Sessions: SET NX with a TTL, refresh with GETEX, logout with GETDEL,
    expiry by time."""
    tokens = {f"session:{i:04d}".encode(): f"user-{i}".encode() for i in range(200)}
    for k, v in tokens.items():
        assert engine.set(k, v, nx=True, ex=3600) is True
    assert engine.set(b"session:0000", b"intruder", nx=True, ex=3600) is False
    assert engine.get(b"session:0000") == b"user-0"
    for k in list(tokens)[:10]:
        assert 3590 <= engine.ttl(k) <= 3600

    # short-lived tokens disappear
    for i in range(50):
        engine.set(f"session:short:{i}", "u", px=150)
    assert engine.exists(*[f"session:short:{i}" for i in range(50)]) == 50
    time.sleep(0.4)
    assert engine.exists(*[f"session:short:{i}" for i in range(50)]) == 0
    assert engine.get("session:short:0") is None
    assert engine.ttl("session:short:0") == -2

    # refresh extends, logout removes
    assert engine.getex(b"session:0001", ex=7200) == b"user-1"
    assert 7190 <= engine.ttl(b"session:0001") <= 7200
    assert engine.getdel(b"session:0002") == b"user-2"
    assert engine.get(b"session:0002") is None
    # KEEPTTL on a token rotation keeps the expiry
    engine.set(b"session:0003", b"user-3b", keepttl=True)
    assert engine.ttl(b"session:0003") > 3500
    # the active expiry cycle removes expired keys from dbsize as well
    deadline = time.time() + 10
    while engine.dbsize() != 199 and time.time() < deadline:
        time.sleep(0.05)
    assert engine.dbsize() == 199
    assert set(engine.scan(match="session:*")) == set(tokens) - {b"session:0002"}


def test_session_tokens_survive_reopen(data_dir, small_config):
    with Engine.open(data_dir, small_config) as e:
        e.set("session:a", "u1", ex=3600)
        e.set("session:b", "u2", px=100)
    time.sleep(0.25)
    with Engine.open(data_dir, small_config) as e:
        assert e.get("session:a") == b"u1"
        assert 3500 < e.ttl("session:a") <= 3600
        assert e.get("session:b") is None
