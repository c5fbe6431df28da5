"""Loads libringkv and declares the C API (ffi/include/ringkv.h) for ctypes.

Every function of the header has its ``argtypes``/``restype`` declared here,
so a call with wrong arguments fails in Python (``ctypes.ArgumentError``)
instead of in C.  Handles are distinct opaque pointer types: an engine
cannot be passed where a batch is expected.

The library is found, in order:
1. ``$RINGKV_LIB`` (a path to the shared object), if set;
2. ``libringkv.so.0`` through the dynamic loader (LD_LIBRARY_PATH, ldconfig);
3. the repository's ``target/debug/libringkv.so`` (then ``target/release``),
   located relative to this package (``ffi/python/ringkv/``).
"""

from __future__ import annotations

import ctypes
import os
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_double,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
)
from pathlib import Path
from typing import List, Optional

from .errors import error_for_status

# ---- status codes and enums (ringkv.h) ----

OK = 0
INVALID_ARGUMENT = 1

TYPE_NONE, TYPE_STRING, TYPE_HASH = 0, 1, 2
SET_ALWAYS, SET_NX, SET_XX = 0, 1, 2
(
    EXPIRY_NONE,
    EXPIRY_KEEP,
    EXPIRY_PERSIST,
    EXPIRY_SECONDS,
    EXPIRY_MILLIS,
    EXPIRY_AT_SECONDS,
    EXPIRY_AT_MILLIS,
) = range(7)
EXPIRE_ALWAYS, EXPIRE_NX, EXPIRE_XX, EXPIRE_GT, EXPIRE_LT = range(5)
REPLY_INT, REPLY_VALUE, REPLY_SET = 0, 1, 2
OPEN_DEFAULT, OPEN_ANONYMOUS_LOG = 0, 1


# ---- types ----


class Buf(Structure):
    """ringkv_buf: library-owned bytes; ptr NULL = nil."""

    _fields_ = [("ptr", POINTER(c_uint8)), ("len", c_size_t)]


class BufArray(Structure):
    """ringkv_buf_array."""

    _fields_ = [("ptr", POINTER(Buf)), ("len", c_size_t)]


class Reply(Structure):
    """ringkv_reply (one batch operation's result)."""

    _fields_ = [("kind", c_int32), ("integer", c_int64), ("value", Buf)]


class ReplyArray(Structure):
    """ringkv_reply_array."""

    _fields_ = [("ptr", POINTER(Reply)), ("len", c_size_t)]


class _Opaque(Structure):
    _fields_: list = []


class _Engine(_Opaque):
    pass


class _ScanCursor(_Opaque):
    pass


class _HScanCursor(_Opaque):
    pass


class _Batch(_Opaque):
    pass


class _Primary(_Opaque):
    pass


class _Follower(_Opaque):
    pass


EngineP = POINTER(_Engine)
ScanCursorP = POINTER(_ScanCursor)
HScanCursorP = POINTER(_HScanCursor)
BatchP = POINTER(_Batch)
PrimaryP = POINTER(_Primary)
FollowerP = POINTER(_Follower)

_st = c_int  # ringkv_status
_sz = c_size_t
_str = c_char_p  # const char * (bytes, binary-safe with an explicit length)
_lens = POINTER(c_size_t)
_pbool = POINTER(c_bool)
_pi64 = POINTER(c_int64)
_pu64 = POINTER(c_uint64)
_psz = POINTER(c_size_t)
_pbuf = POINTER(Buf)
_parr = POINTER(BufArray)

# key / value: (ptr, len); list: (joined, lens, n)
_K = [_str, _sz]
_L = [_str, _lens, _sz]

# name -> (restype, argtypes); one entry per function of ringkv.h.
SIGNATURES = {
    # library
    "ringkv_version": (c_char_p, []),
    "ringkv_last_error": (_st, [POINTER(c_char), _sz, _psz]),
    "ringkv_buf_free": (None, [_pbuf]),
    "ringkv_buf_array_free": (None, [_parr]),
    "ringkv_reply_array_free": (None, [POINTER(ReplyArray)]),
    # engine
    "ringkv_engine_open": (_st, [c_char_p, c_char_p, c_uint32, POINTER(EngineP)]),
    "ringkv_engine_free": (None, [EngineP]),
    # strings
    "ringkv_get": (_st, [EngineP, *_K, _pbuf]),
    "ringkv_set": (_st, [EngineP, *_K, *_K]),
    "ringkv_set_with": (
        _st,
        [EngineP, *_K, *_K, c_int32, c_int32, c_uint64, c_bool, _pbool, _pbuf],
    ),
    "ringkv_incr_by": (_st, [EngineP, *_K, c_int64, _pi64]),
    "ringkv_incr_by_float": (_st, [EngineP, *_K, c_double, _pbuf]),
    "ringkv_append": (_st, [EngineP, *_K, *_K, _psz]),
    "ringkv_getdel": (_st, [EngineP, *_K, _pbuf]),
    "ringkv_getex": (_st, [EngineP, *_K, c_int32, c_uint64, _pbuf]),
    "ringkv_setrange": (_st, [EngineP, *_K, _sz, *_K, _psz]),
    "ringkv_mget": (_st, [EngineP, *_L, _parr]),
    "ringkv_mset": (_st, [EngineP, *_L]),
    "ringkv_msetnx": (_st, [EngineP, *_L, _pbool]),
    # keys
    "ringkv_del": (_st, [EngineP, *_L, _pu64]),
    "ringkv_exists": (_st, [EngineP, *_L, _pu64]),
    "ringkv_type": (_st, [EngineP, *_K, POINTER(c_int32)]),
    "ringkv_expire": (_st, [EngineP, *_K, c_int64, _pbool]),
    "ringkv_pexpire": (_st, [EngineP, *_K, c_int64, _pbool]),
    "ringkv_expire_at": (_st, [EngineP, *_K, c_int64, _pbool]),
    "ringkv_pexpire_at": (_st, [EngineP, *_K, c_int64, _pbool]),
    "ringkv_pexpire_at_if": (_st, [EngineP, *_K, c_int64, c_int32, _pbool]),
    "ringkv_ttl": (_st, [EngineP, *_K, _pi64]),
    "ringkv_pttl": (_st, [EngineP, *_K, _pi64]),
    "ringkv_pexpire_time": (_st, [EngineP, *_K, _pi64]),
    "ringkv_persist": (_st, [EngineP, *_K, _pbool]),
    "ringkv_rename": (_st, [EngineP, *_K, *_K]),
    "ringkv_rename_nx": (_st, [EngineP, *_K, *_K, _pbool]),
    "ringkv_copy": (_st, [EngineP, *_K, *_K, c_bool, _pbool]),
    "ringkv_random_key": (_st, [EngineP, _pbuf]),
    "ringkv_dbsize": (_st, [EngineP, _pu64]),
    "ringkv_flush": (_st, [EngineP]),
    # hashes
    "ringkv_hset": (_st, [EngineP, *_K, *_L, _psz]),
    "ringkv_hset_field": (_st, [EngineP, *_K, *_K, *_K, _psz]),
    "ringkv_hsetnx": (_st, [EngineP, *_K, *_K, *_K, _pbool]),
    "ringkv_hget": (_st, [EngineP, *_K, *_K, _pbuf]),
    "ringkv_hmget": (_st, [EngineP, *_K, *_L, _parr]),
    "ringkv_hdel": (_st, [EngineP, *_K, *_L, _psz]),
    "ringkv_hlen": (_st, [EngineP, *_K, _psz]),
    "ringkv_hexists": (_st, [EngineP, *_K, *_K, _pbool]),
    "ringkv_hincr_by": (_st, [EngineP, *_K, *_K, c_int64, _pi64]),
    "ringkv_hincr_by_float": (_st, [EngineP, *_K, *_K, c_double, _pbuf]),
    "ringkv_hgetall": (_st, [EngineP, *_K, _parr]),
    "ringkv_hkeys": (_st, [EngineP, *_K, _parr]),
    "ringkv_hvals": (_st, [EngineP, *_K, _parr]),
    "ringkv_hdrain": (_st, [EngineP, *_K, _sz, _parr]),
    "ringkv_hrandfield": (_st, [EngineP, *_K, c_int64, _parr]),
    # scans
    "ringkv_scan_cursor_new": (
        _st,
        [EngineP, *_K, _sz, c_int32, POINTER(ScanCursorP)],
    ),
    "ringkv_scan_cursor_next": (_st, [ScanCursorP, _parr, _pbool]),
    "ringkv_scan_cursor_free": (None, [ScanCursorP]),
    "ringkv_hscan_cursor_new": (
        _st,
        [EngineP, *_K, *_K, _sz, c_bool, POINTER(HScanCursorP)],
    ),
    "ringkv_hscan_cursor_next": (_st, [HScanCursorP, _parr, _pbool]),
    "ringkv_hscan_cursor_free": (None, [HScanCursorP]),
    # batches
    "ringkv_batch_new": (_st, [POINTER(BatchP)]),
    "ringkv_batch_free": (None, [BatchP]),
    "ringkv_batch_len": (_st, [BatchP, _psz]),
    "ringkv_batch_set": (_st, [BatchP, *_K, *_K]),
    "ringkv_batch_set_with": (
        _st,
        [BatchP, *_K, *_K, c_int32, c_int32, c_uint64, c_bool],
    ),
    "ringkv_batch_del": (_st, [BatchP, *_K]),
    "ringkv_batch_incr_by": (_st, [BatchP, *_K, c_int64]),
    "ringkv_batch_append": (_st, [BatchP, *_K, *_K]),
    "ringkv_batch_pexpire": (_st, [BatchP, *_K, c_int64]),
    "ringkv_batch_pexpire_at": (_st, [BatchP, *_K, c_int64]),
    "ringkv_batch_persist": (_st, [BatchP, *_K]),
    "ringkv_batch_hset": (_st, [BatchP, *_K, *_L]),
    "ringkv_batch_hdel": (_st, [BatchP, *_K, *_L]),
    "ringkv_batch_hincr_by": (_st, [BatchP, *_K, *_K, c_int64]),
    "ringkv_batch_get": (_st, [BatchP, *_K]),
    "ringkv_batch_hget": (_st, [BatchP, *_K, *_K]),
    "ringkv_batch_exists": (_st, [BatchP, *_K]),
    "ringkv_batch_ttl": (_st, [BatchP, *_K]),
    "ringkv_batch_type": (_st, [BatchP, *_K]),
    "ringkv_batch_hexists": (_st, [BatchP, *_K, *_K]),
    "ringkv_batch_hlen": (_st, [BatchP, *_K]),
    "ringkv_write_batch": (_st, [EngineP, BatchP, POINTER(ReplyArray)]),
    # persistence, stats, read-after-write
    "ringkv_stats_json": (_st, [EngineP, _pbuf]),
    "ringkv_save": (_st, [EngineP]),
    "ringkv_bgsave": (_st, [EngineP, _pbool]),
    "ringkv_sync": (_st, [EngineP]),
    "ringkv_last_write_offset": (_st, [EngineP, _pu64, _pbool]),
    "ringkv_applied_offset": (_st, [EngineP, _pu64]),
    "ringkv_wait_applied": (_st, [EngineP, c_uint64, c_uint64, _pbool]),
    "ringkv_role": (_st, [EngineP, POINTER(c_int32)]),
    # replication
    "ringkv_dev_certs": (_st, [c_char_p]),
    "ringkv_primary_start": (
        _st,
        [EngineP, c_char_p, c_char_p, c_char_p, c_char_p, POINTER(PrimaryP)],
    ),
    "ringkv_primary_port": (_st, [PrimaryP, POINTER(c_uint16)]),
    "ringkv_primary_wait_for_followers": (
        _st,
        [PrimaryP, c_uint64, _sz, c_uint64, _psz],
    ),
    "ringkv_primary_stats_json": (_st, [PrimaryP, _pbuf]),
    "ringkv_primary_free": (None, [PrimaryP]),
    "ringkv_follower_start": (
        _st,
        [EngineP, c_char_p, c_char_p, c_char_p, c_char_p, c_char_p, POINTER(FollowerP)],
    ),
    "ringkv_follower_state_json": (_st, [FollowerP, _pbuf]),
    "ringkv_follower_promote": (_st, [FollowerP]),
    "ringkv_follower_free": (None, [FollowerP]),
}


# ---- loading ----


def _candidates() -> List[str]:
    env = os.environ.get("RINGKV_LIB")
    if env:
        return [env]
    out = ["libringkv.so.0"]
    repo = Path(__file__).resolve().parents[3]  # ffi/python/ringkv/_lib.py -> repo
    for profile in ("debug", "release"):
        out.append(str(repo / "target" / profile / "libringkv.so"))
    return out


def _load() -> ctypes.CDLL:
    errors = []
    for cand in _candidates():
        try:
            # CDLL (not PyDLL): the GIL is released during each call, so
            # several Python threads can use one engine at once.
            return ctypes.CDLL(cand)
        except OSError as e:
            errors.append(f"{cand}: {e}")
    raise OSError(
        "cannot load libringkv (set RINGKV_LIB to the path of libringkv.so):\n  "
        + "\n  ".join(errors)
    )


def _declare(lib: ctypes.CDLL) -> None:
    missing = []
    for name, (restype, argtypes) in SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise OSError(f"{lib._name} lacks functions of ringkv.h: {', '.join(missing)}")


lib = _load()
_declare(lib)
path: str = lib._name


# ---- errors ----

_last_error = lib.ringkv_last_error


def last_error() -> str:
    """This thread's last error message from the library ('' when none)."""
    written = c_size_t(0)
    if _last_error(None, 0, ctypes.byref(written)) != OK:
        return ""
    n = written.value
    if n == 0:
        return ""
    buf = ctypes.create_string_buffer(n + 1)
    if _last_error(buf, n + 1, ctypes.byref(written)) != OK:
        return ""
    return buf.raw[: min(n, written.value)].decode("utf-8", errors="replace")


def raise_status(status: int) -> None:
    """Raises the exception for a non-zero status, with the library's message."""
    raise error_for_status(status, last_error())


def check(status: int) -> None:
    """Raises unless status is RINGKV_OK."""
    if status:
        raise error_for_status(status, last_error())


# ---- buffers (always freed by the caller through these helpers) ----

_string_at = ctypes.string_at
_buf_free = lib.ringkv_buf_free
_buf_array_free = lib.ringkv_buf_array_free


def buf_value(b: Buf) -> Optional[bytes]:
    """The bytes of a ringkv_buf (None for nil), copied out."""
    ptr = b.ptr
    if not ptr:
        return None
    return _string_at(ptr, b.len) if b.len else b""


def take_buf(b: Buf) -> Optional[bytes]:
    """Copies a buf out and frees it."""
    try:
        return buf_value(b)
    finally:
        _buf_free(ctypes.byref(b))


def array_values(a: BufArray) -> List[Optional[bytes]]:
    """The items of a ringkv_buf_array, copied out (not freed)."""
    n = a.len
    if not n:
        return []
    items = a.ptr
    out: List[Optional[bytes]] = []
    append = out.append
    for i in range(n):
        b = items[i]
        p = b.ptr
        if not p:
            append(None)
        else:
            append(_string_at(p, b.len) if b.len else b"")
    return out


def take_array(a: BufArray) -> List[Optional[bytes]]:
    """Copies an array out and frees it."""
    try:
        return array_values(a)
    finally:
        _buf_array_free(ctypes.byref(a))


def version() -> str:
    """The library's version string."""
    v = lib.ringkv_version()
    return v.decode("utf-8", errors="replace") if v else ""
