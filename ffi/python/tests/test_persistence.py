import os
import time

import pytest

from ringkv import Engine


def _fill(e):
    e.set("plain", "v")
    e.set(b"bin\x00key", b"\x00\x01\x02")
    e.set("ttl", "v", ex=3600)
    e.set("gone", "v", px=1)
    e.hset("h", {f"f{i}": f"v{i}" for i in range(200)})
    e.incr_by("counter", 77)


def _check(e):
    assert e.get("plain") == b"v"
    assert e.get(b"bin\x00key") == b"\x00\x01\x02"
    assert 3500 < e.ttl("ttl") <= 3600
    assert e.get("gone") is None
    assert e.hgetall("h") == {f"f{i}".encode(): f"v{i}".encode() for i in range(200)}
    assert e.get("counter") == b"77"


def test_reopen_keeps_data_from_the_log(data_dir, small_config):
    with Engine.open(data_dir, small_config) as e:
        _fill(e)
        time.sleep(0.01)
        e.sync()
    with Engine.open(data_dir, small_config) as e:
        _check(e)
        assert e.dbsize() == 5


def test_reopen_after_save(data_dir, small_config):
    with Engine.open(data_dir, small_config) as e:
        _fill(e)
        time.sleep(0.01)
        e.save()
        e.set("after", "snapshot")  # in the log after the snapshot
    assert any(os.scandir(data_dir))
    with Engine.open(data_dir, small_config) as e:
        _check(e)
        assert e.get("after") == b"snapshot"
    # and once more (recovery from a recovered directory)
    with Engine.open(data_dir, small_config) as e:
        _check(e)


def _wait_bgsave(e, completed_before):
    deadline = time.time() + 20
    while time.time() < deadline:  # bounded wait for the background save
        snap = e.stats()["snapshot"]
        if snap["completed"] > completed_before and not snap["in_progress"]:
            return snap
        time.sleep(0.01)
    raise AssertionError("bgsave did not complete within 20 s")


def test_bgsave(data_dir, small_config):
    with Engine.open(data_dir, small_config) as e:
        _fill(e)
        before = e.stats()["snapshot"]["completed"]
        assert e.bgsave() is True
        snap = _wait_bgsave(e, before)
        assert snap["last"]["keys"] >= 5
        assert snap["last_error"] is None
        e.set("after", "bgsave")
    # Closing waits for the background save, so the reopen is not Busy.
    with Engine.open(data_dir, small_config) as e:
        _check(e)
        assert e.get("after") == b"bgsave"


def test_reopen_right_after_bgsave_and_close(data_dir, small_config):
    for i in range(20):
        e = Engine.open(data_dir, small_config)
        e.hset("h", {f"f{j}": "v" * 100 for j in range(2000)})
        e.set("i", str(i))
        e.bgsave()
        e.close()
        with Engine.open(data_dir, small_config) as again:
            assert again.get("i") == str(i).encode()


def test_stats(data_dir, small_config):
    with Engine.open(data_dir, small_config) as e:
        e.set("a", "1")
        e.get("a")
        e.get("a")
        e.hset("h", {"f": "v"})
        s = e.stats()
        assert s["keys"] == 2
        assert s["commands"]["get"] == 2
        assert s["commands"]["set"] == 1
        assert s["commands"]["hset"] == 1
        assert s["shards"] == 4
        assert s["log"]["capacity"] == 8 << 20
        assert "snapshot" in s


def test_memory_engine_has_no_log(engine):
    engine.set("a", "1")
    assert engine.stats()["log"] is None
    assert engine.last_write_offset() is None


def test_offsets_with_anonymous_log():
    with Engine.open(anonymous_log=True) as e:
        assert e.role() == "primary"
        e.set("a", "1")
        first = e.last_write_offset()
        assert isinstance(first, int) and first > 0
        e.hset("h", {"f": "v"})
        second = e.last_write_offset()
        assert second > first
        assert e.applied_offset() >= second
        assert e.wait_applied(second, 1000) is True
        assert e.stats()["log"] is not None


def test_wait_applied_times_out(data_dir, small_config):
    with Engine.open(data_dir, small_config) as e:
        e.set("a", "1")
        far = e.last_write_offset() + 10**9
        t0 = time.monotonic()
        assert e.wait_applied(far, 200) is False
        assert time.monotonic() - t0 < 5


def test_last_write_offset_is_per_thread(data_dir, small_config):
    import threading

    with Engine.open(data_dir, small_config) as e:
        e.set("a", "1")
        mine = e.last_write_offset()
        seen = []
        t = threading.Thread(target=lambda: seen.append(e.last_write_offset()))
        t.start()
        t.join(10)
        assert seen == [None]
        assert e.last_write_offset() == mine
