
import pytest

import ringkv
from ringkv import (
    Busy,
    ConfigError,
    Engine,
    InvalidArgument,
    NotAnInteger,
    RingkvError,
    WrongType,
)
from ringkv import errors


def test_hierarchy_and_status_codes():
    expected = {
        "InvalidArgument": 1,
        "WrongType": 2,
        "NotAnInteger": 3,
        "NotAFloat": 4,
        "Overflow": 5,
        "InvalidExpire": 6,
        "NoSuchKey": 7,
        "OutOfMemory": 8,
        "ReadOnly": 9,
        "NoReplicas": 10,
        "Busy": 11,
        "RingkvIOError": 12,
        "Corrupt": 13,
        "ConfigError": 14,
        "ReplicationError": 15,
        "RingkvTimeout": 16,
        "Panic": 17,
        "Internal": 18,
    }
    for name, status in expected.items():
        cls = getattr(ringkv, name)
        assert issubclass(cls, RingkvError) and issubclass(cls, Exception)
        assert cls.status == status
        e = errors.error_for_status(status, "msg")
        assert type(e) is cls and e.status == status and str(e) == "msg"
    unknown = errors.error_for_status(99, "")
    assert type(unknown) is RingkvError and unknown.status == 99


def test_wrongtype_message(engine):
    engine.hset("h", {"f": "v"})
    with pytest.raises(WrongType) as ei:
        engine.incr("h")
    assert str(ei.value) == "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert ei.value.status == 2


def test_not_an_integer_message(engine):
    engine.set("k", "12a")
    with pytest.raises(NotAnInteger) as ei:
        engine.incr_by("k", 1)
    assert str(ei.value) == "ERR value is not an integer or out of range"


def test_closed_engine():
    e = Engine.open()
    e.set("k", "v")
    e.close()
    assert e.closed
    e.close()  # idempotent: frees once
    for call in (
        lambda: e.get("k"),
        lambda: e.set("k", "v"),
        lambda: e.hset("h", {"f": "v"}),
        lambda: e.hdrain("h", 1),
        lambda: e.dbsize(),
        lambda: e.scan(),
        lambda: e.batch().set("a", "b").execute(),
        lambda: e.stats(),
    ):
        with pytest.raises(InvalidArgument) as ei:
            call()
        assert "closed" in str(ei.value)


def test_context_manager_closes():
    with Engine.open() as e:
        e.set("k", "v")
        assert e.get("k") == b"v"
    assert e.closed
    with pytest.raises(InvalidArgument):
        e.get("k")


def test_freed_handle_is_detected_by_the_library():
    """A handle freed behind the wrapper's back is refused by the library."""
    e = Engine.open()
    h = e._h
    ringkv._lib.lib.ringkv_engine_free(h)
    with pytest.raises(InvalidArgument) as ei:
        ringkv._lib.check(ringkv._lib.lib.ringkv_dbsize(h, ringkv._lib.ctypes.byref(ringkv._lib.c_uint64())))
    assert "freed" in str(ei.value)
    e._h = None  # already freed


def test_null_handle_is_invalid_argument():
    from ctypes import byref, c_uint64

    with pytest.raises(InvalidArgument) as ei:
        ringkv._lib.check(ringkv._lib.lib.ringkv_dbsize(None, byref(c_uint64())))
    assert "NULL" in str(ei.value)


def test_wrong_ctypes_arguments_fail_in_python(engine):
    import ctypes

    lib = ringkv._lib.lib
    with pytest.raises(ctypes.ArgumentError):
        lib.ringkv_get(engine._h, "not bytes", 3, None)  # str is not const char *
    with pytest.raises(TypeError):
        lib.ringkv_dbsize(engine._h)  # missing argument
    b = ringkv.Batch()
    with pytest.raises(ctypes.ArgumentError):
        lib.ringkv_dbsize(b._h, ctypes.byref(ctypes.c_uint64()))  # a batch is not an engine
    b.close()


def test_bad_config():
    with pytest.raises(ConfigError) as ei:
        Engine.open(config={"no_such_option": 1})
    assert "no_such_option" in str(ei.value)
    with pytest.raises(ConfigError):
        Engine.open(config={"shards": 3})
    with pytest.raises(ConfigError):
        Engine.open(config="{not json")


def test_config_applies(engine):
    with Engine.open(config={"maxmemory": 1 << 20, "maxmemory_policy": "allkeys-lru"}) as e:
        assert e.stats()["maxmemory"] == 1 << 20


def test_out_of_memory():
    with Engine.open(config={"maxmemory": 200_000}) as e:
        with pytest.raises(ringkv.OutOfMemory) as ei:
            for i in range(100_000):
                e.set(f"k{i}", b"x" * 100)
        assert "OOM" in str(ei.value)


def test_value_too_large_is_invalid_argument():
    with Engine.open(config={"max_value_len": 10, "max_key_len": 4}) as e:
        with pytest.raises(InvalidArgument) as ei:
            e.set("k", b"x" * 11)
        assert "exceeds" in str(ei.value)
        with pytest.raises(InvalidArgument):
            e.set("kkkkk", b"x")


def test_data_dir_locked(data_dir, small_config):
    with Engine.open(data_dir, small_config):
        with pytest.raises(Busy) as ei:
            Engine.open(data_dir, small_config)
        assert "locked" in str(ei.value)


def test_save_without_dir(engine):
    with pytest.raises(RingkvError):
        engine.save()


def test_errors_are_per_thread(engine):
    """The message belongs to the failing thread (ringkv_last_error is thread-local)."""
    import threading

    engine.set("s", "abc")
    engine.hset("h", {"f": "v"})
    results = {}

    def fail(name, call):
        try:
            for _ in range(200):
                try:
                    call()
                except RingkvError as e:
                    results.setdefault(name, set()).add(str(e))
        except BaseException as e:  # pragma: no cover
            results[name] = e

    t1 = threading.Thread(target=fail, args=("int", lambda: engine.incr("s")))
    t2 = threading.Thread(target=fail, args=("type", lambda: engine.get("h")))
    t1.start(), t2.start()
    t1.join(30), t2.join(30)
    assert results["int"] == {"ERR value is not an integer or out of range"}
    assert results["type"] == {"WRONGTYPE Operation against a key holding the wrong kind of value"}
