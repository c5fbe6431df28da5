"""The ringkv engine through libringkv's C API.

    from ringkv import Engine
    with Engine.open() as e:              # in-memory; Engine.open("/data") persists
        e.set("k", "v", ex=60)
        e.get("k")                        # b'v'

Keys, fields and values may be ``bytes``, ``str`` (encoded UTF-8),
``bytearray``/``memoryview``, or (values only) ``int``/``float`` (their
decimal text).  Values come back as ``bytes``; a missing key or field is
``None``.  Failures raise :class:`ringkv.RingkvError` subclasses.

An :class:`Engine` may be used from several threads at once (each call
releases the GIL), but not while it is being closed.  Scan iterators and
batches belong to one thread at a time.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import json
import threading
import time
import weakref
from collections import deque
from ctypes import byref, c_bool, c_int32, c_int64, c_size_t, c_uint64
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from . import _lib
from ._lib import Buf, BufArray, ReplyArray, lib, raise_status
from .errors import InvalidArgument, InvalidExpire

__all__ = ["Engine", "Batch", "ScanIterator", "KeyLike", "ValueLike"]

KeyLike = Union[bytes, str, bytearray, memoryview]
ValueLike = Union[bytes, str, bytearray, memoryview, int, float]

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_MISSING: Any = object()
_U64_MAX = (1 << 64) - 1

_TYPE_NAMES = {_lib.TYPE_NONE: "none", _lib.TYPE_STRING: "string", _lib.TYPE_HASH: "hash"}
_TYPE_FILTERS = {None: _lib.TYPE_NONE, "string": _lib.TYPE_STRING, "hash": _lib.TYPE_HASH}
_EXPIRE_CONDITIONS = {
    None: _lib.EXPIRE_ALWAYS,
    "NX": _lib.EXPIRE_NX,
    "XX": _lib.EXPIRE_XX,
    "GT": _lib.EXPIRE_GT,
    "LT": _lib.EXPIRE_LT,
}

# Bound C functions (attribute lookups off the hot path).
_get = lib.ringkv_get
_set = lib.ringkv_set
_set_with = lib.ringkv_set_with
_incr_by = lib.ringkv_incr_by
_hset = lib.ringkv_hset
_hget = lib.ringkv_hget
_hdrain = lib.ringkv_hdrain
_buf_free = lib.ringkv_buf_free
_buf_array_free = lib.ringkv_buf_array_free
_reply_array_free = lib.ringkv_reply_array_free
_buf_value = _lib.buf_value
_array_values = _lib.array_values


# ---- argument conversion ----


def _b(x: Any) -> bytes:
    """A key, field or value as bytes."""
    t = type(x)
    if t is bytes:
        return x
    if t is str:
        return x.encode("utf-8")
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, bool):
        raise TypeError("ringkv: a bool is not a key or value (use b'0'/b'1')")
    if isinstance(x, int):
        return str(x).encode("ascii")
    if isinstance(x, float):
        return repr(x).encode("ascii")
    raise TypeError(f"ringkv: expected bytes or str, not {type(x).__name__}")


def _join(items: Iterable[Any]) -> Tuple[bytes, Any, int]:
    """A list of byte strings as (concatenation, size_t[n] lengths, n)."""
    bs = [x if type(x) is bytes else _b(x) for x in items]
    n = len(bs)
    return b"".join(bs), (c_size_t * n)(*map(len, bs)), n


def _pairs(mapping: Any) -> List[Any]:
    """field, value, field, value... from a mapping or an iterable of pairs."""
    if isinstance(mapping, dict) and len(mapping) == 1:
        for f, v in mapping.items():
            return [f, v]
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    flat: List[Any] = []
    add = flat.extend
    for f, v in items:
        add((f, v))
    return flat


def _to_pairs(items: List[Optional[bytes]]) -> List[Tuple[bytes, bytes]]:
    it = iter(items)
    return list(zip(it, it))  # type: ignore[arg-type]


def _to_dict(items: List[Optional[bytes]]) -> Dict[bytes, bytes]:
    it = iter(items)
    return dict(zip(it, it))  # type: ignore[arg-type]


def _int(x: Any, what: str, lo: int = _I64_MIN, hi: int = _I64_MAX) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"ringkv: {what} must be an int, not {type(x).__name__}")
    if not lo <= x <= hi:
        raise InvalidArgument(f"ringkv: {what} {x} is out of range")
    return x


def _seconds(x: Any, what: str) -> int:
    if isinstance(x, _dt.timedelta):
        return int(x.total_seconds())
    return _int(x, what)


def _millis(x: Any, what: str) -> int:
    if isinstance(x, _dt.timedelta):
        return x // _dt.timedelta(milliseconds=1)
    return _int(x, what)


def _unix_seconds(x: Any, what: str) -> int:
    if isinstance(x, _dt.datetime):
        return int(x.timestamp())
    return _int(x, what)


def _unix_millis(x: Any, what: str) -> int:
    if isinstance(x, _dt.datetime):
        return int(x.timestamp() * 1000)
    return _int(x, what)


def _expire_condition(condition: Optional[str]) -> int:
    key = condition.upper() if isinstance(condition, str) else condition
    try:
        return _EXPIRE_CONDITIONS[key]
    except (KeyError, TypeError):
        raise InvalidArgument(
            f"ringkv: expire condition must be None, 'NX', 'XX', 'GT' or 'LT', not {condition!r}"
        ) from None


def _set_expiry(ex: Any, px: Any, exat: Any, pxat: Any, keepttl: bool) -> Tuple[int, int]:
    """(expiry_kind, expiry) of SET options; at most one may be given."""
    given = [
        (kind, v)
        for kind, v in (
            (_lib.EXPIRY_SECONDS, ex),
            (_lib.EXPIRY_MILLIS, px),
            (_lib.EXPIRY_AT_SECONDS, exat),
            (_lib.EXPIRY_AT_MILLIS, pxat),
        )
        if v is not None
    ]
    if len(given) + bool(keepttl) > 1:
        raise InvalidArgument("ringkv: at most one of ex, px, exat, pxat, keepttl")
    if keepttl:
        return _lib.EXPIRY_KEEP, 0
    if not given:
        return _lib.EXPIRY_NONE, 0
    kind, v = given[0]
    name, conv = _EXPIRY_ARGS[kind]
    if isinstance(v, (_dt.timedelta, _dt.datetime)):
        v = conv(v, name)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"ringkv: {name} must be an int, not {type(v).__name__}")
    if not 0 <= v <= _I64_MAX:  # Redis: a long long
        raise InvalidExpire("ERR invalid expire time")
    n = v
    return kind, n


_EXPIRY_ARGS = {
    _lib.EXPIRY_SECONDS: ("ex", _seconds),
    _lib.EXPIRY_MILLIS: ("px", _millis),
    _lib.EXPIRY_AT_SECONDS: ("exat", _unix_seconds),
    _lib.EXPIRY_AT_MILLIS: ("pxat", _unix_millis),
}


def _set_condition(nx: bool, xx: bool) -> int:
    if nx and xx:
        raise InvalidArgument("ringkv: nx and xx exclude each other")
    return _lib.SET_NX if nx else _lib.SET_XX if xx else _lib.SET_ALWAYS


def _closed(what: str = "engine") -> None:
    raise InvalidArgument(f"ringkv: the {what} is closed")


def _path(p: Any) -> bytes:
    import os

    return os.fsencode(p)


# ---- scans ----


class ScanIterator:
    """An iterator over a SCAN or HSCAN cursor of the library.

    The cursor handle is freed when the iteration completes, on
    :meth:`close`, on leaving a ``with`` block, or when the iterator is
    garbage-collected.  One thread at a time.
    """

    def __init__(
        self,
        engine: "Engine",
        handle: Any,
        next_fn: Callable[..., int],
        free_fn: Callable[[Any], None],
        convert: Callable[[List[Optional[bytes]]], List[Any]],
    ) -> None:
        self._engine = engine
        self._c = handle
        self._next = next_fn
        self._free = free_fn
        self._convert = convert
        self._page: Deque[Any] = deque()
        self._engine_gone = False
        engine._children.add(self)

    def __iter__(self) -> "ScanIterator":
        return self

    def __next__(self) -> Any:
        page = self._page
        while not page:
            c = self._c
            if c is None:
                if self._engine_gone:
                    _closed()
                raise StopIteration
            arr = BufArray()
            done = c_bool(False)
            try:
                st = self._next(c, byref(arr), byref(done))
                if st:
                    raise_status(st)
                items = _array_values(arr)
            finally:
                _buf_array_free(byref(arr))
            page.extend(self._convert(items))
            if done.value:
                self._release()  # free the cursor now; the last page stays buffered
        return page.popleft()

    def _release(self) -> None:
        c, self._c = self._c, None
        if c is not None:
            self._free(c)

    def close(self) -> None:
        """Ends the iteration and frees the cursor (idempotent)."""
        self._page.clear()
        self._release()

    def _engine_closing(self) -> None:
        if self._c is not None:
            self._engine_gone = True
        self.close()

    def __enter__(self) -> "ScanIterator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:
            pass


# ---- batches ----


def _reply_int(r: Any) -> int:
    return r.integer


def _reply_bool(r: Any) -> bool:
    return bool(r.integer)


def _reply_value(r: Any) -> Optional[bytes]:
    return _buf_value(r.value)


def _reply_set(r: Any) -> bool:
    return bool(r.integer)


def _reply_set_get(r: Any) -> Optional[bytes]:
    return _buf_value(r.value)


def _reply_generic(r: Any) -> Any:
    if r.kind == _lib.REPLY_VALUE:
        return _buf_value(r.value)
    if r.kind == _lib.REPLY_SET:
        return (bool(r.integer), _buf_value(r.value))
    return r.integer


class Batch:
    """Operations run atomically (all or none) by :meth:`Engine.write_batch`.

    Fluent::

        e.batch().set("a", "1").incr_by("n", 5).get("a").execute()  # [True, 5, b'1']

    or as a context manager (pending operations run when the block ends
    without an exception; their results are in ``.results``)::

        with e.batch() as b:
            b.hset("h", {"f": "v"}).hlen("h")
        b.results  # [1, 1]

    ``write_batch`` returns one Python value per operation: ``set`` gives
    ``True``/``False`` (applied; the previous value with ``get=True``),
    ``delete``/``exists`` 0 or 1, ``incr_by``/``hincr_by`` the new value,
    ``append`` the new length, ``hset``/``hdel`` the count, ``pexpire``/
    ``pexpire_at``/``persist`` a bool, ``get``/``hget`` bytes or None,
    ``pttl`` milliseconds (-2 missing, -1 no expiry), ``hlen`` the count.
    The batch is emptied by each run (also a failed one) and can be reused.
    One thread at a time.
    """

    def __init__(self, engine: Optional["Engine"] = None) -> None:
        out = _lib.BatchP()
        _lib.check(lib.ringkv_batch_new(byref(out)))
        self._h: Any = out
        self._engine = engine
        self._conv: List[Callable[[Any], Any]] = []
        self.results: Optional[List[Any]] = None

    # -- plumbing --

    def _handle(self) -> Any:
        h = self._h
        if h is None:
            _closed("batch")
        return h

    def _add(self, status: int, conv: Callable[[Any], Any]) -> "Batch":
        if status:
            raise_status(status)
        self._conv.append(conv)
        return self

    def _take_converters(self) -> List[Callable[[Any], Any]]:
        conv, self._conv = self._conv, []
        return conv

    def __len__(self) -> int:
        out = c_size_t(0)
        _lib.check(lib.ringkv_batch_len(self._handle(), byref(out)))
        return out.value

    def execute(self) -> List[Any]:
        """Runs the batch on its engine; returns the replies."""
        if self._engine is None:
            raise InvalidArgument("ringkv: this batch has no engine: use engine.write_batch(batch)")
        self.results = self._engine.write_batch(self)
        return self.results

    def close(self) -> None:
        """Frees the batch (idempotent); pending operations are dropped."""
        h, self._h = self._h, None
        self._conv = []
        if h is not None:
            lib.ringkv_batch_free(h)

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None and self._h is not None and self._conv:
                self.execute()
        finally:
            self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- operations --

    def set(
        self,
        key: KeyLike,
        value: ValueLike,
        *,
        nx: bool = False,
        xx: bool = False,
        ex: Any = None,
        px: Any = None,
        exat: Any = None,
        pxat: Any = None,
        keepttl: bool = False,
        get: bool = False,
    ) -> "Batch":
        h = self._handle()
        k, v = _b(key), _b(value)
        if not (nx or xx or get or keepttl) and ex is None and px is None and exat is None and pxat is None:
            return self._add(lib.ringkv_batch_set(h, k, len(k), v, len(v)), _reply_set)
        cond = _set_condition(nx, xx)
        kind, n = _set_expiry(ex, px, exat, pxat, keepttl)
        st = lib.ringkv_batch_set_with(h, k, len(k), v, len(v), cond, kind, n, bool(get))
        return self._add(st, _reply_set_get if get else _reply_set)

    def delete(self, key: KeyLike) -> "Batch":
        k = _b(key)
        return self._add(lib.ringkv_batch_del(self._handle(), k, len(k)), _reply_int)

    def incr_by(self, key: KeyLike, delta: int = 1) -> "Batch":
        k = _b(key)
        d = _int(delta, "delta")
        return self._add(lib.ringkv_batch_incr_by(self._handle(), k, len(k), d), _reply_int)

    def incr(self, key: KeyLike) -> "Batch":
        return self.incr_by(key, 1)

    def decr_by(self, key: KeyLike, delta: int = 1) -> "Batch":
        d = _int(delta, "delta", _I64_MIN + 1)
        return self.incr_by(key, -d)

    def decr(self, key: KeyLike) -> "Batch":
        return self.incr_by(key, -1)

    def append(self, key: KeyLike, value: ValueLike) -> "Batch":
        k, v = _b(key), _b(value)
        return self._add(lib.ringkv_batch_append(self._handle(), k, len(k), v, len(v)), _reply_int)

    def pexpire(self, key: KeyLike, millis: Any) -> "Batch":
        k = _b(key)
        ms = _millis(millis, "millis")
        return self._add(lib.ringkv_batch_pexpire(self._handle(), k, len(k), ms), _reply_bool)

    def expire(self, key: KeyLike, seconds: Any) -> "Batch":
        s = _seconds(seconds, "seconds")
        if not -(_I64_MAX // 1000) <= s <= _I64_MAX // 1000:
            raise InvalidExpire("ERR invalid expire time")
        return self.pexpire(key, s * 1000)

    def pexpire_at(self, key: KeyLike, unix_millis: Any) -> "Batch":
        k = _b(key)
        ms = _unix_millis(unix_millis, "unix_millis")
        return self._add(lib.ringkv_batch_pexpire_at(self._handle(), k, len(k), ms), _reply_bool)

    def persist(self, key: KeyLike) -> "Batch":
        k = _b(key)
        return self._add(lib.ringkv_batch_persist(self._handle(), k, len(k)), _reply_bool)

    def hset(self, key: KeyLike, mapping: Any, value: Any = _MISSING) -> "Batch":
        k = _b(key)
        flat = _pairs(mapping) if value is _MISSING else [mapping, value]
        joined, lens, n = _join(flat)
        return self._add(lib.ringkv_batch_hset(self._handle(), k, len(k), joined, lens, n), _reply_int)

    def hdel(self, key: KeyLike, *fields: KeyLike) -> "Batch":
        k = _b(key)
        joined, lens, n = _join(fields)
        return self._add(lib.ringkv_batch_hdel(self._handle(), k, len(k), joined, lens, n), _reply_int)

    def hincr_by(self, key: KeyLike, field: KeyLike, delta: int = 1) -> "Batch":
        k, f = _b(key), _b(field)
        d = _int(delta, "delta")
        return self._add(
            lib.ringkv_batch_hincr_by(self._handle(), k, len(k), f, len(f), d), _reply_int
        )

    def get(self, key: KeyLike) -> "Batch":
        k = _b(key)
        return self._add(lib.ringkv_batch_get(self._handle(), k, len(k)), _reply_value)

    def hget(self, key: KeyLike, field: KeyLike) -> "Batch":
        k, f = _b(key), _b(field)
        return self._add(lib.ringkv_batch_hget(self._handle(), k, len(k), f, len(f)), _reply_value)

    def exists(self, key: KeyLike) -> "Batch":
        k = _b(key)
        return self._add(lib.ringkv_batch_exists(self._handle(), k, len(k)), _reply_int)

    def pttl(self, key: KeyLike) -> "Batch":
        """Reply: the remaining time in milliseconds (-2 missing, -1 no expiry)."""
        k = _b(key)
        return self._add(lib.ringkv_batch_ttl(self._handle(), k, len(k)), _reply_int)

    def hlen(self, key: KeyLike) -> "Batch":
        k = _b(key)
        return self._add(lib.ringkv_batch_hlen(self._handle(), k, len(k)), _reply_int)

    def type(self, key: KeyLike) -> "Batch":
        """Reply: "none", "string" or "hash"."""
        k = _b(key)
        return self._add(
            lib.ringkv_batch_type(self._handle(), k, len(k)), lambda r: _TYPE_NAMES[int(r.integer)]
        )

    def hexists(self, key: KeyLike, field: KeyLike) -> "Batch":
        k, f = _b(key), _b(field)
        return self._add(
            lib.ringkv_batch_hexists(self._handle(), k, len(k), f, len(f)), _reply_bool
        )


# ---- the engine ----


class Engine:
    """An open ringkv engine (in memory, or on a data directory)."""

    def __init__(self, handle: Any, dir: Optional[str] = None) -> None:
        # Use Engine.open(); this wraps a handle from ringkv_engine_open.
        self._h: Any = handle
        self._dir = dir
        self._close_lock = threading.Lock()
        self._children: "weakref.WeakSet[Any]" = weakref.WeakSet()

    @classmethod
    def open(
        cls,
        dir: Any = None,
        config: Union[None, str, Mapping[str, Any]] = None,
        anonymous_log: bool = False,
    ) -> "Engine":
        """Opens an engine: in memory when ``dir`` is None, else on that data
        directory (created if missing, recovered if not).  ``config`` is the
        engine Config as a dict (or JSON text), e.g.
        ``{"maxmemory": 1 << 20, "maxmemory_policy": "allkeys-lru",
        "log": {"capacity": 4 << 20}}``.  ``anonymous_log`` gives an
        in-memory engine a ring log (to serve followers and read offsets)."""
        d = None if dir is None else _path(dir)
        if config is None:
            cfg = None
        elif isinstance(config, (str, bytes)):
            cfg = config.encode("utf-8") if isinstance(config, str) else config
        else:
            cfg = json.dumps(dict(config)).encode("utf-8")
        flags = _lib.OPEN_ANONYMOUS_LOG if anonymous_log else _lib.OPEN_DEFAULT
        out = _lib.EngineP()
        _lib.check(lib.ringkv_engine_open(d, cfg, flags, byref(out)))
        return cls(out, None if dir is None else str(dir))

    # -- lifetime --

    @property
    def closed(self) -> bool:
        return self._h is None

    def _handle(self) -> Any:
        h = self._h
        if h is None:
            _closed()
        return h

    def close(self) -> None:
        """Frees the engine exactly once (later calls on it raise InvalidArgument;
        close() itself is idempotent).  Scan iterators, primaries and followers
        made from it are closed first.  Saves nothing: call save() first if
        wanted.  Must not race with other calls on this engine."""
        with self._close_lock:
            h = self._h
            if h is None:
                return
            for child in list(self._children):
                try:
                    child._engine_closing()
                except Exception:
                    pass
            self._h = None
            lib.ringkv_engine_free(h)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        where = self._dir if self._dir is not None else "memory"
        state = "closed" if self._h is None else "open"
        return f"<ringkv.Engine {where} {state}>"

    # -- call helpers --

    def _buf(self, fn: Callable[..., int], *args: Any) -> Optional[bytes]:
        out = Buf()
        try:
            st = fn(self._handle(), *args, byref(out))
            if st:
                raise_status(st)
            return _buf_value(out)
        finally:
            _buf_free(byref(out))

    def _array(self, fn: Callable[..., int], *args: Any) -> List[Optional[bytes]]:
        out = BufArray()
        try:
            st = fn(self._handle(), *args, byref(out))
            if st:
                raise_status(st)
            return _array_values(out)
        finally:
            _buf_array_free(byref(out))

    def _scalar(self, fn: Callable[..., int], ctype: Any, *args: Any) -> Any:
        out = ctype()
        st = fn(self._handle(), *args, byref(out))
        if st:
            raise_status(st)
        return out.value

    def _status(self, fn: Callable[..., int], *args: Any) -> None:
        st = fn(self._handle(), *args)
        if st:
            raise_status(st)

    # -- strings --

    def get(self, key: KeyLike) -> Optional[bytes]:
        """GET: the value, or None."""
        h = self._h
        if h is None:
            _closed()
        k = key if type(key) is bytes else _b(key)
        out = Buf()
        try:
            st = _get(h, k, len(k), byref(out))
            if st:
                raise_status(st)
            p = out.ptr
            if not p:
                return None
            return ctypes.string_at(p, out.len)
        finally:
            _buf_free(byref(out))

    def set(
        self,
        key: KeyLike,
        value: ValueLike,
        *,
        nx: bool = False,
        xx: bool = False,
        ex: Any = None,
        px: Any = None,
        exat: Any = None,
        pxat: Any = None,
        keepttl: bool = False,
        get: bool = False,
    ) -> Union[bool, Optional[bytes]]:
        """SET with Redis' options.  Returns True if written (False when nx/xx
        prevented it); with ``get=True`` returns the previous value instead."""
        h = self._h
        if h is None:
            _closed()
        k = key if type(key) is bytes else _b(key)
        v = value if type(value) is bytes else _b(value)
        if not (nx or xx or get or keepttl) and ex is None and px is None and exat is None and pxat is None:
            st = _set(h, k, len(k), v, len(v))
            if st:
                raise_status(st)
            return True
        cond = _set_condition(nx, xx)
        kind, n = _set_expiry(ex, px, exat, pxat, keepttl)
        applied = c_bool(False)
        prev = Buf()
        try:
            st = _set_with(h, k, len(k), v, len(v), cond, kind, n, bool(get), byref(applied), byref(prev))
            if st:
                raise_status(st)
            if get:
                return _buf_value(prev)
            return applied.value
        finally:
            _buf_free(byref(prev))

    def incr_by(self, key: KeyLike, delta: int) -> int:
        """INCRBY: the new value."""
        k = _b(key)
        return self._scalar(_incr_by, c_int64, k, len(k), _int(delta, "delta"))

    def decr_by(self, key: KeyLike, delta: int) -> int:
        """DECRBY: the new value."""
        d = _int(delta, "delta", _I64_MIN + 1)
        return self.incr_by(key, -d)

    def incr(self, key: KeyLike) -> int:
        return self.incr_by(key, 1)

    def decr(self, key: KeyLike) -> int:
        return self.incr_by(key, -1)

    def incr_by_float(self, key: KeyLike, delta: float) -> float:
        """INCRBYFLOAT: the new value (the stored text is Redis'; see get())."""
        k = _b(key)
        out = self._buf(lib.ringkv_incr_by_float, k, len(k), float(delta))
        return float(out)  # type: ignore[arg-type]

    def append(self, key: KeyLike, value: ValueLike) -> int:
        """APPEND: the new length."""
        k, v = _b(key), _b(value)
        return self._scalar(lib.ringkv_append, c_size_t, k, len(k), v, len(v))

    def getdel(self, key: KeyLike) -> Optional[bytes]:
        """GETDEL: the value (now deleted), or None."""
        k = _b(key)
        return self._buf(lib.ringkv_getdel, k, len(k))

    def getex(
        self,
        key: KeyLike,
        *,
        ex: Any = None,
        px: Any = None,
        exat: Any = None,
        pxat: Any = None,
        persist: bool = False,
    ) -> Optional[bytes]:
        """GETEX: the value, setting (ex/px/exat/pxat) or removing (persist) its TTL."""
        if persist:
            if any(v is not None for v in (ex, px, exat, pxat)):
                raise InvalidArgument("ringkv: persist excludes ex, px, exat, pxat")
            kind, n = _lib.EXPIRY_PERSIST, 0
        else:
            kind, n = _set_expiry(ex, px, exat, pxat, False)
        k = _b(key)
        return self._buf(lib.ringkv_getex, k, len(k), kind, n)

    def setrange(self, key: KeyLike, offset: int, value: ValueLike) -> int:
        """SETRANGE: the new length."""
        k, v = _b(key), _b(value)
        off = _int(offset, "offset", 0, (1 << 63) - 1)
        return self._scalar(lib.ringkv_setrange, c_size_t, k, len(k), off, v, len(v))

    def mget(self, keys: Iterable[KeyLike]) -> List[Optional[bytes]]:
        """MGET: one value (or None) per key."""
        joined, lens, n = _join(keys)
        return self._array(lib.ringkv_mget, joined, lens, n)

    def mset(self, mapping: Any) -> None:
        """MSET from a mapping or an iterable of (key, value) pairs."""
        joined, lens, n = _join(_pairs(mapping))
        self._status(lib.ringkv_mset, joined, lens, n)

    def msetnx(self, mapping: Any) -> bool:
        """MSETNX: True if every key was absent and all were set."""
        joined, lens, n = _join(_pairs(mapping))
        return self._scalar(lib.ringkv_msetnx, c_bool, joined, lens, n)

    # -- keys --

    def delete(self, *keys: KeyLike) -> int:
        """DEL: how many of the keys existed."""
        joined, lens, n = _join(keys)
        return self._scalar(lib.ringkv_del, c_uint64, joined, lens, n)

    def exists(self, *keys: KeyLike) -> int:
        """EXISTS: how many of the keys exist (a key given twice counts twice)."""
        joined, lens, n = _join(keys)
        return self._scalar(lib.ringkv_exists, c_uint64, joined, lens, n)

    def type(self, key: KeyLike) -> str:
        """TYPE: 'none', 'string' or 'hash'."""
        k = _b(key)
        t = self._scalar(lib.ringkv_type, c_int32, k, len(k))
        return _TYPE_NAMES.get(t, f"unknown({t})")

    def expire(self, key: KeyLike, seconds: Any, condition: Optional[str] = None) -> bool:
        """EXPIRE [NX|XX|GT|LT]: True if the TTL was set."""
        s = _seconds(seconds, "seconds")
        if condition is None:
            k = _b(key)
            return self._scalar(lib.ringkv_expire, c_bool, k, len(k), s)
        if not -(_I64_MAX // 1000) <= s <= _I64_MAX // 1000:
            raise InvalidExpire("ERR invalid expire time")
        return self.pexpire(key, s * 1000, condition)

    def pexpire(self, key: KeyLike, millis: Any, condition: Optional[str] = None) -> bool:
        """PEXPIRE [NX|XX|GT|LT]: True if the TTL was set."""
        ms = _millis(millis, "millis")
        if condition is None:
            k = _b(key)
            return self._scalar(lib.ringkv_pexpire, c_bool, k, len(k), ms)
        # The C API has a condition only on the absolute form.
        at = int(time.time() * 1000) + ms
        if not _I64_MIN <= at <= _I64_MAX:
            raise InvalidExpire("ERR invalid expire time")
        return self.pexpire_at(key, at, condition)

    def expire_at(self, key: KeyLike, unix_seconds: Any, condition: Optional[str] = None) -> bool:
        """EXPIREAT [NX|XX|GT|LT]: True if the TTL was set."""
        s = _unix_seconds(unix_seconds, "unix_seconds")
        if condition is None:
            k = _b(key)
            return self._scalar(lib.ringkv_expire_at, c_bool, k, len(k), s)
        if not -(_I64_MAX // 1000) <= s <= _I64_MAX // 1000:
            raise InvalidExpire("ERR invalid expire time")
        return self.pexpire_at(key, s * 1000, condition)

    def pexpire_at(self, key: KeyLike, unix_millis: Any, condition: Optional[str] = None) -> bool:
        """PEXPIREAT [NX|XX|GT|LT]: True if the TTL was set."""
        ms = _unix_millis(unix_millis, "unix_millis")
        k = _b(key)
        if condition is None:
            return self._scalar(lib.ringkv_pexpire_at, c_bool, k, len(k), ms)
        cond = _expire_condition(condition)
        return self._scalar(lib.ringkv_pexpire_at_if, c_bool, k, len(k), ms, cond)

    def ttl(self, key: KeyLike) -> int:
        """TTL in seconds (-2 missing, -1 no expiry)."""
        k = _b(key)
        return self._scalar(lib.ringkv_ttl, c_int64, k, len(k))

    def pttl(self, key: KeyLike) -> int:
        """PTTL in milliseconds (-2 missing, -1 no expiry)."""
        k = _b(key)
        return self._scalar(lib.ringkv_pttl, c_int64, k, len(k))

    def pexpire_time(self, key: KeyLike) -> int:
        """PEXPIRETIME: unix ms of the expiry (-2 missing, -1 no expiry)."""
        k = _b(key)
        return self._scalar(lib.ringkv_pexpire_time, c_int64, k, len(k))

    def expire_time(self, key: KeyLike) -> int:
        """EXPIRETIME: unix seconds of the expiry (-2 missing, -1 no expiry)."""
        ms = self.pexpire_time(key)
        return ms if ms < 0 else ms // 1000

    def persist(self, key: KeyLike) -> bool:
        """PERSIST: True if a TTL was removed."""
        k = _b(key)
        return self._scalar(lib.ringkv_persist, c_bool, k, len(k))

    def rename(self, src: KeyLike, dst: KeyLike) -> None:
        """RENAME (NoSuchKey if src is missing)."""
        a, b = _b(src), _b(dst)
        self._status(lib.ringkv_rename, a, len(a), b, len(b))

    def rename_nx(self, src: KeyLike, dst: KeyLike) -> bool:
        """RENAMENX: True if renamed (dst was absent)."""
        a, b = _b(src), _b(dst)
        return self._scalar(lib.ringkv_rename_nx, c_bool, a, len(a), b, len(b))

    def copy(self, src: KeyLike, dst: KeyLike, replace: bool = False) -> bool:
        """COPY [REPLACE]: True if copied."""
        a, b = _b(src), _b(dst)
        return self._scalar(lib.ringkv_copy, c_bool, a, len(a), b, len(b), bool(replace))

    def random_key(self) -> Optional[bytes]:
        """RANDOMKEY: a key, or None when empty."""
        return self._buf(lib.ringkv_random_key)

    def dbsize(self) -> int:
        """DBSIZE."""
        return self._scalar(lib.ringkv_dbsize, c_uint64)

    def flush(self) -> None:
        """FLUSHALL."""
        self._status(lib.ringkv_flush)

    # -- hashes --

    def hset(self, key: KeyLike, mapping: Any, value: Any = _MISSING) -> int:
        """HSET key {field: value, ...} (or pairs, or hset(key, field, value)):
        how many fields were added."""
        h = self._h
        if h is None:
            _closed()
        k = _b(key)
        out = c_size_t(0)
        if value is not _MISSING:
            # One field: the entry point without a lengths array.
            f, v = _b(mapping), _b(value)
            st = lib.ringkv_hset_field(h, k, len(k), f, len(f), v, len(v), byref(out))
            if st:
                raise_status(st)
            return out.value
        flat = _pairs(mapping)
        joined, lens, n = _join(flat)
        st = _hset(h, k, len(k), joined, lens, n, byref(out))
        if st:
            raise_status(st)
        return out.value

    def hsetnx(self, key: KeyLike, field: KeyLike, value: ValueLike) -> bool:
        """HSETNX: True if the field was absent and is now set."""
        k, f, v = _b(key), _b(field), _b(value)
        return self._scalar(lib.ringkv_hsetnx, c_bool, k, len(k), f, len(f), v, len(v))

    def hget(self, key: KeyLike, field: KeyLike) -> Optional[bytes]:
        """HGET: the value, or None."""
        k, f = _b(key), _b(field)
        return self._buf(_hget, k, len(k), f, len(f))

    def hmget(self, key: KeyLike, fields: Iterable[KeyLike]) -> List[Optional[bytes]]:
        """HMGET: one value (or None) per field."""
        k = _b(key)
        joined, lens, n = _join(fields)
        return self._array(lib.ringkv_hmget, k, len(k), joined, lens, n)

    def hdel(self, key: KeyLike, *fields: KeyLike) -> int:
        """HDEL: how many fields were removed."""
        k = _b(key)
        joined, lens, n = _join(fields)
        return self._scalar(lib.ringkv_hdel, c_size_t, k, len(k), joined, lens, n)

    def hlen(self, key: KeyLike) -> int:
        """HLEN."""
        k = _b(key)
        return self._scalar(lib.ringkv_hlen, c_size_t, k, len(k))

    def hexists(self, key: KeyLike, field: KeyLike) -> bool:
        """HEXISTS."""
        k, f = _b(key), _b(field)
        return self._scalar(lib.ringkv_hexists, c_bool, k, len(k), f, len(f))

    def hincr_by(self, key: KeyLike, field: KeyLike, delta: int) -> int:
        """HINCRBY: the new value."""
        k, f = _b(key), _b(field)
        return self._scalar(lib.ringkv_hincr_by, c_int64, k, len(k), f, len(f), _int(delta, "delta"))

    def hincr_by_float(self, key: KeyLike, field: KeyLike, delta: float) -> float:
        """HINCRBYFLOAT: the new value."""
        k, f = _b(key), _b(field)
        out = self._buf(lib.ringkv_hincr_by_float, k, len(k), f, len(f), float(delta))
        return float(out)  # type: ignore[arg-type]

    def hgetall(self, key: KeyLike) -> Dict[bytes, bytes]:
        """HGETALL as a dict."""
        k = _b(key)
        return _to_dict(self._array(lib.ringkv_hgetall, k, len(k)))

    def hkeys(self, key: KeyLike) -> List[bytes]:
        """HKEYS."""
        k = _b(key)
        return self._array(lib.ringkv_hkeys, k, len(k))  # type: ignore[return-value]

    def hvals(self, key: KeyLike) -> List[bytes]:
        """HVALS."""
        k = _b(key)
        return self._array(lib.ringkv_hvals, k, len(k))  # type: ignore[return-value]

    def hdrain(self, key: KeyLike, count: int) -> Dict[bytes, bytes]:
        """HDRAIN: removes and returns up to ``count`` fields atomically (empty
        dict when the hash is gone)."""
        h = self._h
        if h is None:
            _closed()
        k = _b(key)
        n = _int(count, "count", 0, (1 << 63) - 1)
        out = BufArray()
        try:
            st = _hdrain(h, k, len(k), n, byref(out))
            if st:
                raise_status(st)
            return _to_dict(_array_values(out))
        finally:
            _buf_array_free(byref(out))

    def hrandfield(self, key: KeyLike, count: Optional[int] = None, withvalues: bool = False) -> Any:
        """HRANDFIELD.  Without ``count``: one random field (or None).  With
        ``count``: a list of fields (count > 0: distinct, up to count;
        count < 0: exactly -count, may repeat), or of (field, value) tuples
        with ``withvalues``."""
        k = _b(key)
        if count is None:
            items = self._array(lib.ringkv_hrandfield, k, len(k), 1)
            return items[0] if items else None
        c = _int(count, "count")
        pairs = _to_pairs(self._array(lib.ringkv_hrandfield, k, len(k), c))
        if withvalues:
            return pairs
        return [f for f, _ in pairs]

    # -- scans --

    def scan(
        self, match: Optional[KeyLike] = None, count: int = 10, type: Optional[str] = None
    ) -> ScanIterator:
        """SCAN [MATCH pattern] [COUNT n] [TYPE string|hash]: an iterator of keys
        (SCAN's guarantees: every key present for the whole scan is returned)."""
        try:
            tf = _TYPE_FILTERS[type]
        except KeyError:
            raise InvalidArgument(f"ringkv: scan type must be None, 'string' or 'hash', not {type!r}") from None
        p = b"" if match is None else _b(match)
        n = _int(count, "count", 0, (1 << 63) - 1)
        out = _lib.ScanCursorP()
        _lib.check(lib.ringkv_scan_cursor_new(self._handle(), p or None, len(p), n, tf, byref(out)))
        return ScanIterator(self, out, lib.ringkv_scan_cursor_next, lib.ringkv_scan_cursor_free, list)

    def hscan(
        self, key: KeyLike, match: Optional[KeyLike] = None, count: int = 10, novalues: bool = False
    ) -> ScanIterator:
        """HSCAN: an iterator of (field, value) tuples, or of fields with ``novalues``."""
        k = _b(key)
        p = b"" if match is None else _b(match)
        n = _int(count, "count", 0, (1 << 63) - 1)
        out = _lib.HScanCursorP()
        _lib.check(
            lib.ringkv_hscan_cursor_new(self._handle(), k, len(k), p or None, len(p), n, bool(novalues), byref(out))
        )
        convert = list if novalues else _to_pairs
        return ScanIterator(self, out, lib.ringkv_hscan_cursor_next, lib.ringkv_hscan_cursor_free, convert)

    def drain(self, key: KeyLike, batch: int = 500) -> Iterator[Dict[bytes, bytes]]:
        """Yields HDRAIN pages of up to ``batch`` fields until the hash is empty.
        Each field is returned exactly once, also with concurrent drainers."""
        n = _int(batch, "batch", 1, (1 << 63) - 1)
        while True:
            page = self.hdrain(key, n)
            if not page:
                return
            yield page

    # -- batches --

    def batch(self) -> Batch:
        """A new write batch bound to this engine (see Batch)."""
        return Batch(self)

    def write_batch(self, batch: Batch) -> List[Any]:
        """Runs every operation of ``batch`` atomically (all or none); returns one
        Python value per operation.  The batch is emptied either way."""
        h = self._handle()
        bh = batch._handle()
        out = ReplyArray()
        try:
            st = lib.ringkv_write_batch(h, bh, byref(out))
            conv = batch._take_converters()
            if st:
                raise_status(st)
            n = out.len
            if n != len(conv):
                conv = [_reply_generic] * n
            items = out.ptr
            return [conv[i](items[i]) for i in range(n)]
        finally:
            _reply_array_free(byref(out))

    # -- persistence, stats, offsets --

    def stats(self) -> Dict[str, Any]:
        """The engine's Stats as a dict (keys, used_memory, commands, log, snapshot...)."""
        out = self._buf(lib.ringkv_stats_json)
        return json.loads(out or b"{}")

    def save(self) -> None:
        """A blocking snapshot (data directory only)."""
        self._status(lib.ringkv_save)

    def bgsave(self) -> bool:
        """Starts a background snapshot; False if one is running or nothing to do."""
        return self._scalar(lib.ringkv_bgsave, c_bool)

    def sync(self) -> None:
        """Flushes the log to disk."""
        self._status(lib.ringkv_sync)

    def last_write_offset(self) -> Optional[int]:
        """The log offset just after this thread's last write to this engine, or None."""
        off = c_uint64(0)
        has = c_bool(False)
        st = lib.ringkv_last_write_offset(self._handle(), byref(off), byref(has))
        if st:
            raise_status(st)
        return off.value if has.value else None

    def applied_offset(self) -> int:
        """The log offset applied (a follower's replication progress)."""
        return self._scalar(lib.ringkv_applied_offset, c_uint64)

    def wait_applied(self, offset: int, timeout_ms: int) -> bool:
        """Waits at most timeout_ms until ``offset`` is applied; False on timeout."""
        off = _int(offset, "offset", 0, _U64_MAX)
        t = _int(timeout_ms, "timeout_ms", 0, _U64_MAX)
        return self._scalar(lib.ringkv_wait_applied, c_bool, off, t)

    def role(self) -> str:
        """'primary' or 'follower'."""
        r = self._scalar(lib.ringkv_role, c_int32)
        return {0: "primary", 1: "follower"}.get(r, f"unknown({r})")
