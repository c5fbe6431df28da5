"""Exceptions raised by the ringkv binding.

Every failure of a library call raises a subclass of :class:`RingkvError`
chosen by the call's ``ringkv_status``; the message is the library's
``ringkv_last_error`` text for the calling thread (for example
``"WRONGTYPE Operation against a key holding the wrong kind of value"``).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "RingkvError",
    "InvalidArgument",
    "WrongType",
    "NotAnInteger",
    "NotAFloat",
    "Overflow",
    "InvalidExpire",
    "NoSuchKey",
    "OutOfMemory",
    "ReadOnly",
    "NoReplicas",
    "Busy",
    "RingkvIOError",
    "Corrupt",
    "ConfigError",
    "ReplicationError",
    "RingkvTimeout",
    "Panic",
    "Internal",
    "error_for_status",
]


class RingkvError(Exception):
    """Base class of every ringkv error; ``status`` is the ``ringkv_status`` code."""

    status: Optional[int] = None

    def __init__(self, message: str = "", status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"


class InvalidArgument(RingkvError):
    """NULL or freed handle, bad option, key/value too large (RINGKV_INVALID_ARGUMENT)."""

    status = 1


class WrongType(RingkvError):
    """WRONGTYPE: the key holds the other kind of value (RINGKV_WRONG_TYPE)."""

    status = 2


class NotAnInteger(RingkvError):
    """The value is not a 64-bit integer (RINGKV_NOT_AN_INTEGER)."""

    status = 3


class NotAFloat(RingkvError):
    """The value is not a float, or the result would be NaN/Infinity (RINGKV_NOT_A_FLOAT)."""

    status = 4


class Overflow(RingkvError):
    """An integer increment would overflow (RINGKV_OVERFLOW)."""

    status = 5


class InvalidExpire(RingkvError):
    """An expire time is out of range (RINGKV_INVALID_EXPIRE)."""

    status = 6


class NoSuchKey(RingkvError):
    """RENAME/COPY of a missing key (RINGKV_NO_SUCH_KEY)."""

    status = 7


class OutOfMemory(RingkvError):
    """maxmemory reached under noeviction (RINGKV_OUT_OF_MEMORY)."""

    status = 8


class ReadOnly(RingkvError):
    """A write on a follower (RINGKV_READ_ONLY)."""

    status = 9


class NoReplicas(RingkvError):
    """The write gate refused the write (RINGKV_NO_REPLICAS)."""

    status = 10


class Busy(RingkvError):
    """A snapshot is already running, the data directory is locked, or the ring log is being reset by a full sync (RINGKV_BUSY): retry later."""

    status = 11


class RingkvIOError(RingkvError):
    """An I/O error, e.g. a full disk (RINGKV_IO)."""

    status = 12


class Corrupt(RingkvError):
    """The data directory, log or snapshot is damaged (RINGKV_CORRUPT)."""

    status = 13


class ConfigError(RingkvError):
    """Bad configuration JSON (RINGKV_CONFIG)."""

    status = 14


class ReplicationError(RingkvError):
    """Replication, TLS or connection failure (RINGKV_REPLICATION)."""

    status = 15


class RingkvTimeout(RingkvError):
    """A bounded wait ran out (RINGKV_TIMEOUT)."""

    status = 16


class Panic(RingkvError):
    """The library caught a panic: a bug in ringkv (RINGKV_PANIC)."""

    status = 17


class Internal(RingkvError):
    """Any other failure (RINGKV_INTERNAL)."""

    status = 18


_BY_STATUS: Dict[int, Type[RingkvError]] = {
    cls.status: cls  # type: ignore[misc]
    for cls in (
        InvalidArgument,
        WrongType,
        NotAnInteger,
        NotAFloat,
        Overflow,
        InvalidExpire,
        NoSuchKey,
        OutOfMemory,
        ReadOnly,
        NoReplicas,
        Busy,
        RingkvIOError,
        Corrupt,
        ConfigError,
        ReplicationError,
        RingkvTimeout,
        Panic,
        Internal,
    )
}


def error_for_status(status: int, message: str) -> RingkvError:
    """The exception for a non-zero ``ringkv_status`` (unknown codes give a plain RingkvError)."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        return RingkvError(message or f"ringkv status {status}", status)
    return cls(message or f"ringkv status {status}")
