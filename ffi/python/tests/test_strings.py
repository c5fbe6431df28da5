import time

import pytest

from ringkv import (
    InvalidArgument,
    InvalidExpire,
    NotAFloat,
    NotAnInteger,
    Overflow,
    WrongType,
)


def test_get_set_roundtrip(engine):
    assert engine.get("missing") is None
    assert engine.set("k", "v") is True
    assert engine.get("k") == b"v"
    assert engine.get(b"k") == b"v"
    assert engine.set(b"k", b"w") is True
    assert engine.get("k") == b"w"


def test_empty_value_is_not_nil(engine):
    engine.set("empty", b"")
    assert engine.get("empty") == b""
    assert engine.exists("empty") == 1


def test_str_is_utf8(engine):
    engine.set("clé", "värde ✓")
    assert engine.get("clé".encode()) == "värde ✓".encode("utf-8")


def test_values_accept_bytes_like_and_numbers(engine):
    engine.set("ba", bytearray(b"xy"))
    engine.set("mv", memoryview(b"zz"))
    engine.set("i", 42)
    engine.set("f", 1.5)
    assert engine.mget(["ba", "mv", "i", "f"]) == [b"xy", b"zz", b"42", b"1.5"]
    with pytest.raises(TypeError):
        engine.set("k", None)
    with pytest.raises(TypeError):
        engine.set(None, "v")
    with pytest.raises(TypeError):
        engine.set("k", True)


def test_binary_with_nul_bytes(engine):
    key = b"\x00k\x00ey\x00"
    value = bytes(range(256)) * 4 + b"\x00\x00"
    engine.set(key, value)
    assert engine.get(key) == value
    assert engine.get(b"\x00k\x00ey") is None  # prefix is another key
    assert engine.append(key, b"\x00tail") == len(value) + 5
    assert engine.get(key) == value + b"\x00tail"
    engine.hset(b"h\x00", {b"f\x00": b"\x00v\x00"})
    assert engine.hget(b"h\x00", b"f\x00") == b"\x00v\x00"
    assert engine.hgetall(b"h\x00") == {b"f\x00": b"\x00v\x00"}
    assert engine.mget([key, b"\x00"]) == [value + b"\x00tail", None]


def test_large_value(engine):
    big = b"\xff" * (3 << 20)
    engine.set("big", big)
    assert engine.get("big") == big


def test_set_nx_xx(engine):
    assert engine.set("k", "1", nx=True) is True
    assert engine.set("k", "2", nx=True) is False
    assert engine.get("k") == b"1"
    assert engine.set("k", "3", xx=True) is True
    assert engine.get("k") == b"3"
    assert engine.set("absent", "x", xx=True) is False
    assert engine.get("absent") is None
    with pytest.raises(InvalidArgument):
        engine.set("k", "v", nx=True, xx=True)


def test_set_get_option(engine):
    assert engine.set("k", "new", get=True) is None
    assert engine.set("k", "newer", get=True) == b"new"
    assert engine.get("k") == b"newer"
    # NX that does not apply still returns the old value
    assert engine.set("k", "x", nx=True, get=True) == b"newer"
    assert engine.get("k") == b"newer"


def test_set_get_on_hash_is_wrongtype(engine):
    engine.hset("h", {"f": "v"})
    with pytest.raises(WrongType):
        engine.set("h", "v", get=True)
    assert engine.type("h") == "hash"


def test_set_expiry_options(engine):
    now_ms = int(time.time() * 1000)
    engine.set("ex", "v", ex=100)
    assert 99 <= engine.ttl("ex") <= 100
    engine.set("px", "v", px=50_000)
    assert 49_000 <= engine.pttl("px") <= 50_000
    engine.set("exat", "v", exat=now_ms // 1000 + 200)
    assert 198 <= engine.ttl("exat") <= 200
    engine.set("pxat", "v", pxat=now_ms + 300_000)
    assert engine.pexpire_time("pxat") == now_ms + 300_000
    # a plain SET clears the TTL, KEEPTTL keeps it
    engine.set("ex", "v2")
    assert engine.ttl("ex") == -1
    engine.set("px", "v2", keepttl=True)
    assert engine.pttl("px") > 40_000
    assert engine.get("px") == b"v2"
    with pytest.raises(InvalidArgument):
        engine.set("k", "v", ex=1, px=1000)
    with pytest.raises(InvalidArgument):
        engine.set("k", "v", ex=1, keepttl=True)


def test_set_invalid_expire(engine):
    with pytest.raises(InvalidExpire):
        engine.set("k", "v", ex=0)
    with pytest.raises(InvalidExpire):
        engine.set("k", "v", px=-5)
    with pytest.raises(InvalidExpire):
        engine.set("k", "v", ex=(1 << 63) - 1)  # overflows as milliseconds
    with pytest.raises(InvalidExpire):
        engine.set("k", "v", pxat=1 << 63)  # not a long long
    assert engine.get("k") is None


def test_empty_mset_and_hset_are_invalid(engine):
    with pytest.raises(InvalidArgument) as ei:
        engine.mset({})
    assert "wrong number of arguments" in str(ei.value)
    with pytest.raises(InvalidArgument):
        engine.hset("h", {})
    with pytest.raises(InvalidArgument):
        engine.hdrain("h", 0)
    assert engine.dbsize() == 0


def test_incr_decr(engine):
    assert engine.incr("n") == 1
    assert engine.incr_by("n", 41) == 42
    assert engine.decr("n") == 41
    assert engine.decr_by("n", 50) == -9
    assert engine.get("n") == b"-9"
    engine.set("s", "10")
    assert engine.incr_by("s", -3) == 7


def test_incr_errors(engine):
    engine.set("text", "abc")
    with pytest.raises(NotAnInteger) as ei:
        engine.incr("text")
    assert "not an integer" in str(ei.value)
    assert ei.value.status == 3
    engine.set("max", str((1 << 63) - 1))
    with pytest.raises(Overflow) as ei:
        engine.incr("max")
    assert "overflow" in str(ei.value)
    assert engine.get("max") == str((1 << 63) - 1).encode()
    engine.hset("h", {"f": "1"})
    with pytest.raises(WrongType):
        engine.incr("h")
    with pytest.raises(TypeError):
        engine.incr_by("n", 1.5)
    with pytest.raises(InvalidArgument):
        engine.incr_by("n", 1 << 63)


def test_incr_by_float(engine):
    assert engine.incr_by_float("f", 1.5) == 1.5
    assert engine.incr_by_float("f", 0.25) == 1.75
    assert engine.get("f") == b"1.75"
    engine.set("g", "10")
    assert engine.incr_by_float("g", -0.5) == 9.5
    engine.set("bad", "x1")
    with pytest.raises(NotAFloat) as ei:
        engine.incr_by_float("bad", 1.0)
    assert "float" in str(ei.value)
    with pytest.raises(NotAFloat):
        engine.incr_by_float("f", float("inf"))


def test_append_setrange(engine):
    assert engine.append("a", "hello") == 5
    assert engine.append("a", " world") == 11
    assert engine.get("a") == b"hello world"
    assert engine.setrange("a", 6, "WORLD") == 11
    assert engine.get("a") == b"hello WORLD"
    assert engine.setrange("pad", 3, "x") == 4
    assert engine.get("pad") == b"\x00\x00\x00x"
    with pytest.raises(InvalidArgument):
        engine.setrange("a", -1, "x")


def test_getdel_getex(engine):
    engine.set("k", "v")
    assert engine.getdel("k") == b"v"
    assert engine.get("k") is None
    assert engine.getdel("k") is None
    engine.set("t", "v")
    assert engine.getex("t") == b"v"
    assert engine.ttl("t") == -1
    assert engine.getex("t", ex=100) == b"v"
    assert 99 <= engine.ttl("t") <= 100
    assert engine.getex("t", px=5000) == b"v"
    assert 4000 < engine.pttl("t") <= 5000
    assert engine.getex("t") == b"v"  # keeps the TTL
    assert engine.pttl("t") > 4000
    assert engine.getex("t", persist=True) == b"v"
    assert engine.ttl("t") == -1
    at = int(time.time() * 1000) + 60_000
    assert engine.getex("t", pxat=at) == b"v"
    assert engine.pexpire_time("t") == at
    assert engine.getex("t", exat=at // 1000 + 10) == b"v"
    assert engine.pexpire_time("t") == (at // 1000 + 10) * 1000
    assert engine.getex("missing", ex=10) is None
    with pytest.raises(InvalidArgument):
        engine.getex("t", ex=10, persist=True)


def test_mget_mset_msetnx(engine):
    engine.mset({"a": "1", "b": "2"})
    engine.mset([("c", "3"), (b"d", b"4")])
    assert engine.mget(["a", "b", "x", "c", "d"]) == [b"1", b"2", None, b"3", b"4"]
    assert engine.msetnx({"x": "9", "y": "8"}) is True
    assert engine.msetnx({"y": "0", "z": "0"}) is False
    assert engine.get("z") is None
    assert engine.get("y") == b"8"
    engine.hset("h", {"f": "v"})
    assert engine.mget(["h", "a"]) == [None, b"1"]  # MGET: a hash reads as nil


def test_set_plain_on_hash_replaces_it(engine):
    engine.hset("h", {"f": "v"})
    engine.set("h", "s")
    assert engine.type("h") == "string"
    assert engine.get("h") == b"s"


def test_get_on_hash_is_wrongtype(engine):
    engine.hset("h", {"f": "v"})
    with pytest.raises(WrongType) as ei:
        engine.get("h")
    assert str(ei.value).startswith("WRONGTYPE")
    assert ei.value.status == 2
    with pytest.raises(WrongType):
        engine.append("h", "x")
