import pytest

from ringkv import Batch, InvalidArgument, NotAnInteger, WrongType


def test_fluent_batch(engine):
    engine.set("old", "o")
    replies = (
        engine.batch()
        .set("a", "1")
        .set("old", "n", get=True)
        .set("a", "x", nx=True)
        .incr_by("n", 5)
        .incr("n")
        .decr_by("n", 2)
        .append("a", "23")
        .get("a")
        .get("missing")
        .execute()
    )
    assert replies == [True, b"o", False, 5, 6, 4, 3, b"123", None]
    assert engine.get("a") == b"123"
    assert engine.get("n") == b"4"


def test_batch_hash_and_ttl_ops(engine):
    b = engine.batch()
    b.hset("h", {"f": "1", "g": "2"})
    b.hincr_by("h", "f", 10)
    b.hdel("h", "g", "zz")
    b.hget("h", "f")
    b.hlen("h")
    b.exists("h")
    b.exists("nope")
    b.set("t", "v", ex=100)
    b.pttl("t")
    b.persist("t")
    b.pttl("t")
    b.pexpire("t", 50_000)
    b.pexpire_at("missing", 10**13)
    b.pttl("missing")
    b.delete("t")
    b.delete("t")
    assert len(b) == 16
    r = engine.write_batch(b)
    assert r[:7] == [2, 11, 1, b"11", 1, 1, 0]
    assert r[7] is True
    assert 99_000 <= r[8] <= 100_000
    assert r[9:] == [True, -1, True, False, -2, 1, 0]
    assert len(b) == 0
    b.close()


def test_batch_context_manager_runs_on_exit(engine):
    with engine.batch() as b:
        b.set("k", "v").hset("h", "f", "v").get("k")
    assert b.results == [True, 1, b"v"]
    assert engine.get("k") == b"v"
    with pytest.raises(InvalidArgument):
        len(b)  # freed on exit


def test_batch_context_manager_discards_on_exception(engine):
    with pytest.raises(RuntimeError):
        with engine.batch() as b:
            b.set("k", "v")
            raise RuntimeError("boom")
    assert engine.get("k") is None


def test_batch_is_atomic(engine):
    engine.set("text", "abc")
    b = engine.batch().set("a", "1").incr("text").set("c", "3")
    with pytest.raises(NotAnInteger):
        b.execute()
    assert engine.mget(["a", "c"]) == [None, None]  # none applied
    assert len(b) == 0  # emptied, reusable
    assert b.set("a", "2").execute() == [True]
    engine.hset("h", {"f": "v"})
    with pytest.raises(WrongType):
        engine.batch().set("x", "1").get("h").execute()
    assert engine.get("x") is None


def test_standalone_batch_and_reuse(engine):
    b = Batch()
    with pytest.raises(InvalidArgument):
        b.execute()  # no engine bound
    b.set("a", "1")
    assert engine.write_batch(b) == [True]
    b.incr("a").incr("a")
    assert engine.write_batch(b) == [2, 3]
    assert engine.write_batch(b) == []  # empty batch
    b.close()
    b.close()
    with pytest.raises(InvalidArgument):
        b.set("x", "y")


def test_batch_binary(engine):
    key, val = b"k\x00\x01", b"\x00\xff\x00"
    assert engine.batch().set(key, val).get(key).execute() == [True, val]


def test_batch_type_and_hexists_see_earlier_writes(engine):
    engine.set("s", "x")
    b = engine.batch()
    b.hset("h", {"f": "1"}).type("h").hexists("h", "f").hexists("h", "g").type("s").type("nope")
    assert engine.write_batch(b) == [1, "hash", True, False, "string", "none"]
