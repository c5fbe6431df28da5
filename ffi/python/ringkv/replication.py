"""Replication over QUIC with mutual TLS (libringkv's primary/follower handles).

    certs = dev_certs(tmpdir)                       # development CA + certificates
    with Primary.start(primary_engine, "127.0.0.1:0",
                       certs.server_cert, certs.server_key, certs.ca) as p:
        with Follower.start(follower_engine, f"127.0.0.1:{p.port}", "localhost",
                            certs.client_cert, certs.client_key, certs.ca) as f:
            primary_engine.set("k", "v")
            follower_engine.wait_applied(primary_engine.last_write_offset(), 10_000)
"""

from __future__ import annotations

import json
import os
import threading
from ctypes import byref, c_size_t, c_uint16
from dataclasses import dataclass
from typing import Any, Dict

from . import _lib
from ._lib import Buf, lib, raise_status
from .engine import Engine
from .errors import InvalidArgument

__all__ = ["Primary", "Follower", "DevCerts", "dev_certs"]


def _path(p: Any) -> bytes:
    return os.fsencode(p)


@dataclass(frozen=True)
class DevCerts:
    """Paths of the files written by :func:`dev_certs`."""

    dir: str
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def dev_certs(dir: Any) -> DevCerts:
    """Writes a development CA and certificates into ``dir`` (ca.pem,
    server.pem/server.key for "localhost" and 127.0.0.1, client.pem/client.key).
    For tests and demos only."""
    d = os.fspath(dir)
    _lib.check(lib.ringkv_dev_certs(_path(d)))
    j = os.path.join
    return DevCerts(
        dir=d,
        ca=j(d, "ca.pem"),
        server_cert=j(d, "server.pem"),
        server_key=j(d, "server.key"),
        client_cert=j(d, "client.pem"),
        client_key=j(d, "client.key"),
    )


def _json_buf(fn: Any, handle: Any) -> Dict[str, Any]:
    out = Buf()
    try:
        st = fn(handle, byref(out))
        if st:
            raise_status(st)
        data = _lib.buf_value(out)
    finally:
        lib.ringkv_buf_free(byref(out))
    return json.loads(data or b"{}")


class _Handle:
    _what = "handle"

    def __init__(self, engine: Engine, handle: Any) -> None:
        self._engine = engine
        self._h: Any = handle
        self._lock = threading.Lock()
        engine._children.add(self)

    @property
    def closed(self) -> bool:
        return self._h is None

    def _handle(self) -> Any:
        h = self._h
        if h is None:
            raise InvalidArgument(f"ringkv: the {self._what} is closed")
        return h

    def _free(self, h: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        """Stops and frees the handle (idempotent)."""
        with self._lock:
            h, self._h = self._h, None
            if h is not None:
                self._free(h)

    def _engine_closing(self) -> None:
        self.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class Primary(_Handle):
    """Serves an engine's log to followers until closed."""

    _what = "primary"

    @classmethod
    def start(cls, engine: Engine, listen: str, cert: Any, key: Any, ca: Any) -> "Primary":
        """Serves ``engine`` (which needs a log: a data directory or
        ``anonymous_log=True``) on ``listen`` ("127.0.0.1:0" picks a port),
        with this server certificate/key and the CA that signs followers'
        client certificates."""
        out = _lib.PrimaryP()
        st = lib.ringkv_primary_start(
            engine._handle(), listen.encode("utf-8"), _path(cert), _path(key), _path(ca), byref(out)
        )
        if st:
            raise_status(st)
        return cls(engine, out)

    def _free(self, h: Any) -> None:
        lib.ringkv_primary_free(h)

    @property
    def port(self) -> int:
        """The UDP port served."""
        out = c_uint16(0)
        st = lib.ringkv_primary_port(self._handle(), byref(out))
        if st:
            raise_status(st)
        return out.value

    def wait_for_followers(self, offset: int, n: int = 1, timeout_ms: int = 10_000) -> int:
        """Blocks until ``n`` followers acked applying ``offset`` or the timeout
        passes; returns how many did."""
        out = c_size_t(0)
        st = lib.ringkv_primary_wait_for_followers(self._handle(), offset, n, timeout_ms, byref(out))
        if st:
            raise_status(st)
        return out.value

    def stats(self) -> Dict[str, Any]:
        """The primary's replication stats."""
        return _json_buf(lib.ringkv_primary_stats_json, self._handle())


class Follower(_Handle):
    """Makes an engine follow a primary until closed or promoted."""

    _what = "follower"

    @classmethod
    def start(
        cls,
        engine: Engine,
        primary_addr: str,
        server_name: str,
        cert: Any,
        key: Any,
        ca: Any,
    ) -> "Follower":
        """Makes ``engine`` (with a data directory) a follower of
        ``primary_addr`` ("127.0.0.1:7379"); ``server_name`` is the name on the
        primary's certificate ("localhost").  The engine stays usable for reads."""
        out = _lib.FollowerP()
        st = lib.ringkv_follower_start(
            engine._handle(),
            primary_addr.encode("utf-8"),
            server_name.encode("utf-8"),
            _path(cert),
            _path(key),
            _path(ca),
            byref(out),
        )
        if st:
            raise_status(st)
        return cls(engine, out)

    def _free(self, h: Any) -> None:
        lib.ringkv_follower_free(h)

    def state(self) -> Dict[str, Any]:
        """ReplicaInfo: master_link_status, slave_repl_offset, lag_bytes, ..."""
        return _json_buf(lib.ringkv_follower_state_json, self._handle())

    def promote(self) -> None:
        """Stops following and makes the engine a primary (keeping offsets).
        The follower is then spent and freed."""
        with self._lock:
            h = self._h
            if h is None:
                raise InvalidArgument("ringkv: the follower is closed")
            st = lib.ringkv_follower_promote(h)
            if st:
                raise_status(st)
            self._h = None
            lib.ringkv_follower_free(h)
