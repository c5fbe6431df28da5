import pytest

from ringkv import InvalidArgument, NotAFloat, NotAnInteger, Overflow, WrongType


def test_hset_hget_hlen(engine):
    assert engine.hset("h", {"a": "1", "b": "2"}) == 2
    assert engine.hset("h", {"b": "3", "c": "4"}) == 1  # b updated, c added
    assert engine.hset("h", [("d", "5")]) == 1
    assert engine.hset("h", "e", "6") == 1
    assert engine.hget("h", "b") == b"3"
    assert engine.hget("h", "zz") is None
    assert engine.hget("missing", "a") is None
    assert engine.hlen("h") == 5
    assert engine.hlen("missing") == 0
    assert engine.type("h") == "hash"
    with pytest.raises(TypeError):
        engine.hset("h", "f", None)


def test_hsetnx_hexists(engine):
    assert engine.hsetnx("h", "f", "1") is True
    assert engine.hsetnx("h", "f", "2") is False
    assert engine.hget("h", "f") == b"1"
    assert engine.hexists("h", "f") is True
    assert engine.hexists("h", "g") is False
    assert engine.hexists("missing", "f") is False


def test_hmget_hdel(engine):
    engine.hset("h", {"a": "1", "b": "2", "c": "3"})
    assert engine.hmget("h", ["a", "x", "c"]) == [b"1", None, b"3"]
    assert engine.hmget("missing", ["a", "b"]) == [None, None]
    assert engine.hdel("h", "a", "x") == 1
    assert engine.hdel("h", "b", "c") == 2
    assert engine.exists("h") == 0  # an emptied hash is gone
    assert engine.hdel("h", "a") == 0


def test_hincr_by(engine):
    assert engine.hincr_by("h", "n", 5) == 5
    assert engine.hincr_by("h", "n", -7) == -2
    assert engine.hget("h", "n") == b"-2"
    engine.hset("h", {"s": "abc", "max": str((1 << 63) - 1)})
    with pytest.raises(NotAnInteger):
        engine.hincr_by("h", "s", 1)
    with pytest.raises(Overflow):
        engine.hincr_by("h", "max", 1)


def test_hincr_by_float(engine):
    assert engine.hincr_by_float("h", "f", 2.5) == 2.5
    assert engine.hincr_by_float("h", "f", -1.25) == 1.25
    assert engine.hget("h", "f") == b"1.25"
    engine.hset("h", {"s": "abc"})
    with pytest.raises(NotAFloat):
        engine.hincr_by_float("h", "s", 1.0)


def test_hgetall_hkeys_hvals(engine):
    data = {f"f{i}".encode(): f"v{i}".encode() for i in range(100)}
    engine.hset("h", data)
    assert engine.hgetall("h") == data
    assert sorted(engine.hkeys("h")) == sorted(data)
    assert sorted(engine.hvals("h")) == sorted(data.values())
    assert engine.hgetall("missing") == {}
    assert engine.hkeys("missing") == []
    assert engine.hvals("missing") == []


def test_hdrain(engine):
    data = {f"f{i}".encode(): f"v{i}".encode() for i in range(1200)}
    engine.hset("h", data)
    seen = {}
    first = engine.hdrain("h", 500)
    assert len(first) == 500
    seen.update(first)
    assert engine.hlen("h") == 700
    seen.update(engine.hdrain("h", 500))
    last = engine.hdrain("h", 500)
    assert len(last) == 200
    seen.update(last)
    assert seen == data
    assert engine.exists("h") == 0
    assert engine.hdrain("h", 500) == {}


def test_drain_iterator(engine):
    data = {f"f{i}".encode(): b"x" * (i % 7) for i in range(1234)}
    engine.hset("h", data)
    pages = list(engine.drain("h", batch=500))
    assert [len(p) for p in pages] == [500, 500, 234]
    merged = {}
    for p in pages:
        assert not (merged.keys() & p.keys())
        merged.update(p)
    assert merged == data
    assert list(engine.drain("h")) == []
    with pytest.raises(InvalidArgument):
        next(engine.drain("h", batch=0))


def test_hrandfield(engine):
    assert engine.hrandfield("missing") is None
    assert engine.hrandfield("missing", 3) == []
    data = {b"a": b"1", b"b": b"2", b"c": b"3"}
    engine.hset("h", data)
    assert engine.hrandfield("h") in data
    got = engine.hrandfield("h", 2)
    assert len(got) == 2 and len(set(got)) == 2 and set(got) <= set(data)
    assert sorted(engine.hrandfield("h", 10)) == sorted(data)  # at most the hash
    rep = engine.hrandfield("h", -7)
    assert len(rep) == 7 and set(rep) <= set(data)  # negative: may repeat
    pairs = engine.hrandfield("h", 3, withvalues=True)
    assert sorted(pairs) == sorted(data.items())
    assert engine.hrandfield("h", 0) == []


def test_hash_ops_on_string_are_wrongtype(engine):
    engine.set("s", "v")
    for call in (
        lambda: engine.hset("s", {"f": "v"}),
        lambda: engine.hget("s", "f"),
        lambda: engine.hmget("s", ["f"]),
        lambda: engine.hdel("s", "f"),
        lambda: engine.hlen("s"),
        lambda: engine.hexists("s", "f"),
        lambda: engine.hincr_by("s", "f", 1),
        lambda: engine.hgetall("s"),
        lambda: engine.hkeys("s"),
        lambda: engine.hvals("s"),
        lambda: engine.hdrain("s", 10),
        lambda: engine.hrandfield("s", 1),
    ):
        with pytest.raises(WrongType) as ei:
            call()
        assert "WRONGTYPE" in str(ei.value)
    assert engine.get("s") == b"v"


def test_hset_of_one_field_counts_new_fields_only(engine):
    assert engine.hset("one", "f", "1") == 1
    assert engine.hset("one", "f", "2") == 0
    assert engine.hset("one", b"\x00bin", b"\x00v") == 1
    assert engine.hgetall("one") == {b"f": b"2", b"\x00bin": b"\x00v"}
