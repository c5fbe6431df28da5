"""A follower tailing a primary in the same process, over QUIC + mutual TLS
on loopback.  Every wait is bounded."""

import os
import tempfile
import time

import pytest

from ringkv import (
    ConfigError,
    Engine,
    Follower,
    InvalidArgument,
    Primary,
    ReadOnly,
    ReplicationError,
    dev_certs,
)

WAIT_MS = 10_000


@pytest.fixture
def certs():
    with tempfile.TemporaryDirectory(prefix="ringkv-certs-") as d:
        yield dev_certs(d)


@pytest.fixture
def pair(certs, small_config):
    """(primary engine, Primary, follower engine, Follower)."""
    with tempfile.TemporaryDirectory(prefix="ringkv-primary-") as pd, tempfile.TemporaryDirectory(
        prefix="ringkv-follower-"
    ) as fd:
        pe = Engine.open(pd, small_config)
        fe = Engine.open(fd, small_config)
        primary = Primary.start(pe, "127.0.0.1:0", certs.server_cert, certs.server_key, certs.ca)
        follower = Follower.start(
            fe, f"127.0.0.1:{primary.port}", "localhost", certs.client_cert, certs.client_key, certs.ca
        )
        try:
            yield pe, primary, fe, follower
        finally:
            follower.close()
            primary.close()
            fe.close()
            pe.close()


def test_dev_certs_files(certs):
    for p in (certs.ca, certs.server_cert, certs.server_key, certs.client_cert, certs.client_key):
        assert os.path.getsize(p) > 0
    with open(certs.ca) as f:
        assert "BEGIN CERTIFICATE" in f.read()


def test_follower_tails_primary(pair):
    pe, primary, fe, follower = pair
    assert primary.port > 0
    assert fe.role() == "follower"
    assert pe.role() == "primary"

    pe.set("k", "v")
    pe.set(b"bin\x00", b"\x00\xff")
    pe.hset("h", {"f": "1", "g": "2"})
    pe.set("ttl", "v", ex=3600)
    offset = pe.last_write_offset()
    assert offset is not None and offset > 0
    assert fe.wait_applied(offset, WAIT_MS) is True
    assert fe.applied_offset() >= offset
    assert fe.get("k") == b"v"
    assert fe.get(b"bin\x00") == b"\x00\xff"
    assert fe.hgetall("h") == {b"f": b"1", b"g": b"2"}
    assert 3500 < fe.ttl("ttl") <= 3600
    assert primary.wait_for_followers(offset, 1, WAIT_MS) == 1

    # deletes and drains replicate too
    pe.delete("k")
    assert pe.hdrain("h", 500) == {b"f": b"1", b"g": b"2"}
    offset = pe.last_write_offset()
    assert fe.wait_applied(offset, WAIT_MS) is True
    assert fe.get("k") is None
    assert fe.exists("h") == 0

    state = follower.state()
    assert state["slave_repl_offset"] >= offset
    assert "master_link_status" in state
    assert isinstance(primary.stats(), dict)


def test_write_on_follower_is_read_only(pair):
    pe, primary, fe, follower = pair
    pe.set("k", "v")
    assert fe.wait_applied(pe.last_write_offset(), WAIT_MS)
    with pytest.raises(ReadOnly) as ei:
        fe.set("k", "other")
    assert str(ei.value).startswith("READONLY")
    assert ei.value.status == 9
    for call in (
        lambda: fe.hset("h", {"f": "v"}),
        lambda: fe.incr("n"),
        lambda: fe.delete("k"),
        lambda: fe.hdrain("h", 10),
        lambda: fe.batch().set("a", "b").execute(),
    ):
        with pytest.raises(ReadOnly):
            call()
    assert fe.get("k") == b"v"  # reads still work


def test_promote_then_writes_succeed(pair):
    pe, primary, fe, follower = pair
    pe.set("k", "v1")
    offset = pe.last_write_offset()
    assert fe.wait_applied(offset, WAIT_MS)
    follower.promote()
    assert follower.closed
    assert fe.role() == "primary"
    assert fe.set("k", "v2") is True
    assert fe.get("k") == b"v2"
    assert fe.incr("n") == 1
    assert fe.last_write_offset() > offset  # offsets kept across the promotion
    with pytest.raises(InvalidArgument):
        follower.state()
    follower.close()  # idempotent after promote
    assert fe.set("k", "v3") is True  # the freed follower handle did not demote it


def test_many_writes_replicate(pair):
    pe, primary, fe, follower = pair
    for i in range(2000):
        pe.set(f"k{i}", f"v{i}")
    pe.hset("big", {f"f{i}": str(i) for i in range(1000)})
    assert fe.wait_applied(pe.last_write_offset(), WAIT_MS)
    assert fe.dbsize() == 2001
    assert fe.mget([f"k{i}" for i in range(0, 2000, 97)]) == [f"v{i}".encode() for i in range(0, 2000, 97)]
    assert fe.hlen("big") == 1000


def test_primary_from_anonymous_log(certs, data_dir, small_config):
    with Engine.open(anonymous_log=True) as pe, Engine.open(data_dir, small_config) as fe:
        with Primary.start(pe, "127.0.0.1:0", certs.server_cert, certs.server_key, certs.ca) as p:
            with Follower.start(
                fe, f"127.0.0.1:{p.port}", "localhost", certs.client_cert, certs.client_key, certs.ca
            ):
                pe.set("a", "1")
                assert fe.wait_applied(pe.last_write_offset(), WAIT_MS)
                assert fe.get("a") == b"1"
        assert p.closed
        with pytest.raises(InvalidArgument):
            _ = p.port


def test_primary_needs_a_log(certs):
    with Engine.open() as e:
        with pytest.raises(ConfigError) as ei:
            Primary.start(e, "127.0.0.1:0", certs.server_cert, certs.server_key, certs.ca)
        assert "ring log" in str(ei.value)


def test_bad_cert_path_fails(certs, data_dir, small_config):
    with Engine.open(data_dir, small_config) as e:
        with pytest.raises(ReplicationError) as ei:
            Primary.start(e, "127.0.0.1:0", "/nonexistent/server.pem", certs.server_key, certs.ca)
        assert str(ei.value)


def test_engine_close_closes_its_primary_and_follower(certs, small_config):
    with tempfile.TemporaryDirectory() as pd, tempfile.TemporaryDirectory() as fd:
        pe = Engine.open(pd, small_config)
        fe = Engine.open(fd, small_config)
        p = Primary.start(pe, "127.0.0.1:0", certs.server_cert, certs.server_key, certs.ca)
        f = Follower.start(fe, f"127.0.0.1:{p.port}", "localhost", certs.client_cert, certs.client_key, certs.ca)
        pe.set("a", "1")
        assert fe.wait_applied(pe.last_write_offset(), WAIT_MS)
        t0 = time.monotonic()
        fe.close()
        pe.close()
        assert f.closed and p.closed
        assert time.monotonic() - t0 < 30
