import datetime
import time

import pytest

from ringkv import InvalidArgument, InvalidExpire, NoSuchKey


def test_delete_exists(engine):
    engine.mset({"a": "1", "b": "2", "c": "3"})
    engine.hset("h", {"f": "v"})
    assert engine.exists("a") == 1
    assert engine.exists("a", "b", "missing", "a") == 3
    assert engine.exists("h") == 1
    assert engine.delete("a", "missing") == 1
    assert engine.delete("a") == 0
    assert engine.delete("b", "c", "h") == 3
    assert engine.dbsize() == 0


def test_type(engine):
    engine.set("s", "v")
    engine.hset("h", {"f": "v"})
    assert engine.type("s") == "string"
    assert engine.type("h") == "hash"
    assert engine.type("none") == "none"


def test_expire_family(engine):
    engine.set("k", "v")
    assert engine.ttl("k") == -1
    assert engine.pttl("k") == -1
    assert engine.pexpire_time("k") == -1
    assert engine.ttl("missing") == -2
    assert engine.pttl("missing") == -2
    assert engine.pexpire_time("missing") == -2
    assert engine.expire("missing", 10) is False
    assert engine.expire("k", 100) is True
    assert 99 <= engine.ttl("k") <= 100
    assert engine.pexpire("k", 20_000) is True
    assert 19_000 < engine.pttl("k") <= 20_000
    at_s = int(time.time()) + 500
    assert engine.expire_at("k", at_s) is True
    assert engine.pexpire_time("k") == at_s * 1000
    assert engine.expire_time("k") == at_s
    at_ms = int(time.time() * 1000) + 700_000
    assert engine.pexpire_at("k", at_ms) is True
    assert engine.pexpire_time("k") == at_ms
    assert engine.persist("k") is True
    assert engine.persist("k") is False
    assert engine.ttl("k") == -1


def test_expire_accepts_timedelta_and_datetime(engine):
    engine.set("k", "v")
    assert engine.expire("k", datetime.timedelta(seconds=50))
    assert 49 <= engine.ttl("k") <= 50
    assert engine.pexpire("k", datetime.timedelta(milliseconds=30_000))
    assert 29_000 < engine.pttl("k") <= 30_000
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=90)
    assert engine.expire_at("k", when)
    assert 88 <= engine.ttl("k") <= 90


def test_expire_in_the_past_deletes(engine):
    engine.set("k", "v")
    assert engine.expire("k", -1) is True
    assert engine.get("k") is None
    engine.set("k2", "v")
    assert engine.pexpire_at("k2", 1000) is True
    assert engine.exists("k2") == 0


def test_expire_conditions(engine):
    engine.set("k", "v")
    # XX: only with a TTL; NX: only without
    assert engine.expire("k", 100, "XX") is False
    assert engine.ttl("k") == -1
    assert engine.expire("k", 100, "NX") is True
    assert engine.expire("k", 200, "NX") is False
    assert 99 <= engine.ttl("k") <= 100
    assert engine.expire("k", 200, "xx") is True
    assert 199 <= engine.ttl("k") <= 200
    # GT / LT
    assert engine.expire("k", 50, "GT") is False
    assert engine.expire("k", 300, "GT") is True
    assert 299 <= engine.ttl("k") <= 300
    assert engine.pexpire("k", 400_000, "LT") is False
    assert engine.pexpire("k", 10_000, "LT") is True
    assert engine.pttl("k") <= 10_000
    at = int(time.time() * 1000) + 5_000
    assert engine.pexpire_at("k", at, "LT") is True
    assert engine.pexpire_time("k") == at
    assert engine.expire_at("k", int(time.time()) + 3600, "GT") is True
    # no TTL counts as infinite: GT never applies, LT does
    engine.set("p", "v")
    assert engine.expire("p", 100, "GT") is False
    assert engine.expire("p", 100, "LT") is True
    with pytest.raises(InvalidArgument):
        engine.expire("k", 10, "SOMETIMES")


def test_invalid_expire(engine):
    engine.set("k", "v")
    with pytest.raises(InvalidExpire) as ei:
        engine.expire("k", (1 << 62))
    assert "invalid expire" in str(ei.value)
    assert engine.ttl("k") == -1


def test_rename(engine):
    engine.set("a", "1")
    engine.expire("a", 100)
    engine.rename("a", "b")
    assert engine.get("a") is None
    assert engine.get("b") == b"1"
    assert engine.ttl("b") > 90
    with pytest.raises(NoSuchKey) as ei:
        engine.rename("a", "c")
    assert "no such key" in str(ei.value)
    engine.set("c", "3")
    assert engine.rename_nx("b", "c") is False
    assert engine.rename_nx("b", "d") is True
    assert engine.mget(["b", "c", "d"]) == [None, b"3", b"1"]
    with pytest.raises(NoSuchKey):
        engine.rename_nx("missing", "e")


def test_copy(engine):
    engine.set("src", "v")
    engine.hset("hsrc", {"f": "1", "g": "2"})
    assert engine.copy("src", "dst") is True
    assert engine.get("dst") == b"v"
    engine.set("src", "v2")
    assert engine.copy("src", "dst") is False
    assert engine.get("dst") == b"v"
    assert engine.copy("src", "dst", replace=True) is True
    assert engine.get("dst") == b"v2"
    assert engine.copy("hsrc", "hdst") is True
    assert engine.hgetall("hdst") == {b"f": b"1", b"g": b"2"}
    assert engine.copy("missing", "x") is False


def test_random_key_dbsize_flush(engine):
    assert engine.random_key() is None
    assert engine.dbsize() == 0
    engine.mset({"a": "1", "b": "2"})
    engine.hset("h", {"f": "v"})
    assert engine.dbsize() == 3
    for _ in range(20):
        assert engine.random_key() in (b"a", b"b", b"h")
    engine.flush()
    assert engine.dbsize() == 0
    assert engine.get("a") is None


def test_empty_key_lists(engine):
    engine.set("a", "1")
    assert engine.mget([]) == []
    assert engine.exists() == 0
    assert engine.delete() == 0


def test_copy_onto_itself_is_invalid(engine):
    engine.set("k", "v")
    with pytest.raises(InvalidArgument) as ei:
        engine.copy("k", "k")
    assert "same" in str(ei.value)
