"""Shared fixtures.  The package is imported from ffi/python/ (no install
needed); the library from $RINGKV_LIB or the repo's target/debug."""

import faulthandler
import os
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import ringkv  # noqa: E402

# No test may hang: a test still running after this many seconds dumps every
# thread's stack and ends the process (pytest then exits non-zero).
TEST_DEADLINE_S = int(os.environ.get("RINGKV_TEST_DEADLINE_S", "180"))

# Data-directory engines: a small ring (the default is 256 MiB per directory).
SMALL = {"shards": 4, "log": {"capacity": 8 << 20}}


@pytest.fixture(autouse=True)
def _deadline():
    faulthandler.dump_traceback_later(TEST_DEADLINE_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def engine():
    e = ringkv.Engine.open()
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="ringkv-py-") as d:
        yield d


@pytest.fixture
def small_config():
    return {"shards": 4, "log": {"capacity": 8 << 20}}
