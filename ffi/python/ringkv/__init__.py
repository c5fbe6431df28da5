"""Python binding of ringkv, an embedded Redis-like storage engine (libringkv via ctypes)."""

from ._lib import path as library_path
from ._lib import version as _version
from .engine import Batch, Engine, ScanIterator
from .errors import (
    Busy,
    ConfigError,
    Corrupt,
    Internal,
    InvalidArgument,
    InvalidExpire,
    NoReplicas,
    NoSuchKey,
    NotAFloat,
    NotAnInteger,
    OutOfMemory,
    Overflow,
    Panic,
    ReadOnly,
    ReplicationError,
    RingkvError,
    RingkvIOError,
    RingkvTimeout,
    WrongType,
)
from .replication import DevCerts, Follower, Primary, dev_certs


def version() -> str:
    """The version of the loaded libringkv."""
    return _version()


__version__ = "0.1.0"

__all__ = [
    "Engine",
    "Batch",
    "ScanIterator",
    "Primary",
    "Follower",
    "DevCerts",
    "dev_certs",
    "version",
    "library_path",
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
]
