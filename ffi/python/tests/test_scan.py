import gc

import pytest

from ringkv import InvalidArgument, WrongType
from ringkv import _lib


def test_scan_all_keys(engine):
    keys = {f"user:{i}".encode() for i in range(1000)}
    engine.mset({k: b"v" for k in keys})
    engine.hset("hash:1", {"f": "v"})
    got = list(engine.scan(count=100))
    assert set(got) == keys | {b"hash:1"}


def test_scan_match_and_type(engine):
    engine.mset({f"a:{i}": "v" for i in range(50)})
    engine.mset({f"b:{i}": "v" for i in range(50)})
    for i in range(20):
        engine.hset(f"a:h{i}", {"f": "v"})
    assert set(engine.scan(match="b:*")) == {f"b:{i}".encode() for i in range(50)}
    assert set(engine.scan(match="a:*", type="hash")) == {f"a:h{i}".encode() for i in range(20)}
    assert len(set(engine.scan(match="a:*", type="string"))) == 50
    assert list(engine.scan(match="nothing*")) == []
    with pytest.raises(InvalidArgument):
        engine.scan(type="list")


def test_scan_empty_engine(engine):
    assert list(engine.scan()) == []


def test_scan_cursor_freed_when_done_closed_or_collected(engine, monkeypatch):
    import ringkv.engine as eng

    freed = []
    real = _lib.lib.ringkv_scan_cursor_free
    real_h = _lib.lib.ringkv_hscan_cursor_free

    def counting(c):
        freed.append("scan")
        real(c)

    def counting_h(c):
        freed.append("hscan")
        real_h(c)

    monkeypatch.setattr(eng.lib, "ringkv_scan_cursor_free", counting, raising=True)
    monkeypatch.setattr(eng.lib, "ringkv_hscan_cursor_free", counting_h, raising=True)
    engine.mset({f"k{i}": "v" for i in range(100)})
    engine.hset("h", {f"f{i}": "v" for i in range(100)})

    list(engine.scan())  # finished
    assert freed == ["scan"]
    it = engine.scan(count=5)
    next(it)
    it.close()  # closed early
    assert freed == ["scan", "scan"]
    it.close()  # idempotent
    assert freed == ["scan", "scan"]
    with pytest.raises(StopIteration):
        next(it)
    it = engine.hscan("h", count=5)
    next(it)
    del it
    gc.collect()  # collected
    assert freed == ["scan", "scan", "hscan"]
    with engine.scan() as it:
        next(it)
    assert freed == ["scan", "scan", "hscan", "scan"]


def test_hscan_pairs_and_novalues(engine):
    data = {f"f{i}".encode(): f"v{i}".encode() for i in range(300)}
    engine.hset("h", data)
    assert dict(engine.hscan("h", count=50)) == data
    assert set(engine.hscan("h", novalues=True)) == set(data)
    assert dict(engine.hscan("h", match="f1*")) == {k: v for k, v in data.items() if k.startswith(b"f1")}
    assert list(engine.hscan("missing")) == []


def test_hscan_on_string_is_wrongtype(engine):
    engine.set("s", "v")
    with pytest.raises(WrongType):
        list(engine.hscan("s"))


def test_scan_after_engine_close_raises(engine):
    engine.mset({f"k{i}": "v" for i in range(100)})
    it = engine.scan(count=5)
    next(it)
    engine.close()
    with pytest.raises(InvalidArgument):
        next(it)
