"""The ctypes declarations against the real header, library loading, and
that every buffer the library returns is freed."""

import ctypes
import os
import re
from pathlib import Path

import pytest

import ringkv
from ringkv import WrongType, _lib

REPO = Path(__file__).resolve().parents[3]


def _header_path():
    env = os.environ.get("RINGKV_HEADER")
    if env:
        return Path(env)
    return REPO / "ffi" / "include" / "ringkv.h"


def _header_functions(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out = {}
    for m in re.finditer(r"([A-Za-z_][\w \*]*?)\b(ringkv_\w+)\s*\(([^;{]*?)\)\s*;", text):
        name, params = m.group(2), m.group(3).strip()
        if params in ("", "void"):
            out[name] = []
        else:
            out[name] = [p.strip() for p in params.split(",")]
        out[name] = (m.group(1).strip(), out[name])
    return out


def test_every_header_function_is_declared():
    path = _header_path()
    if not path.exists():
        pytest.skip(f"no header at {path}")
    funcs = _header_functions(path.read_text())
    assert len(funcs) > 90
    assert set(funcs) == set(_lib.SIGNATURES), (
        f"missing here: {sorted(set(funcs) - set(_lib.SIGNATURES))}, "
        f"not in the header: {sorted(set(_lib.SIGNATURES) - set(funcs))}"
    )
    for name, (ret, params) in funcs.items():
        restype, argtypes = _lib.SIGNATURES[name]
        assert len(argtypes) == len(params), f"{name}: {len(argtypes)} argtypes for {params}"
        assert (restype is None) == (ret.split()[-1] == "void" and "*" not in ret), name
        fn = getattr(_lib.lib, name)
        assert fn.argtypes is not None or not argtypes, name


def _c_type_size(decl):
    """Byte size of a C parameter type, for the scalar types the header uses."""
    decl = decl.replace("const ", "").strip()
    if "*" in decl:
        return ctypes.sizeof(ctypes.c_void_p)
    base = decl.split()[0]
    return {
        "bool": 1,
        "size_t": ctypes.sizeof(ctypes.c_size_t),
        "int32_t": 4,
        "uint32_t": 4,
        "int64_t": 8,
        "uint64_t": 8,
        "uint16_t": 2,
        "double": 8,
    }.get(base)


def test_argument_types_match_the_header():
    path = _header_path()
    if not path.exists():
        pytest.skip(f"no header at {path}")
    for name, (_, params) in _header_functions(path.read_text()).items():
        _, argtypes = _lib.SIGNATURES[name]
        for decl, t in zip(params, argtypes):
            size = _c_type_size(decl)
            if size is None:
                continue
            assert ctypes.sizeof(t) == size, f"{name}: {decl!r} declared as {t}"
            is_ptr = "*" in decl
            assert is_ptr == (t is ctypes.c_char_p or hasattr(t, "contents") or t is ctypes.c_void_p), (
                f"{name}: {decl!r} declared as {t}"
            )
            if "double" in decl:
                assert t is ctypes.c_double, name
            if decl.split()[0] == "bool" and not is_ptr:
                assert t is ctypes.c_bool, name


def test_struct_layouts_match_the_header():
    assert ctypes.sizeof(_lib.Buf) == 2 * ctypes.sizeof(ctypes.c_void_p)
    assert ctypes.sizeof(_lib.BufArray) == 2 * ctypes.sizeof(ctypes.c_void_p)
    assert _lib.Reply.integer.offset == 8 and _lib.Reply.value.offset == 16
    assert ctypes.sizeof(_lib.Reply) == 32


def test_version():
    v = ringkv.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", v), v


def test_library_path_honours_env():
    if os.environ.get("RINGKV_LIB"):
        assert ringkv.library_path == os.environ["RINGKV_LIB"]


def test_last_error_of_a_success_is_empty(engine):
    engine.set("k", "v")
    engine.get("k")
    assert isinstance(_lib.last_error(), str)


def test_long_error_message_is_complete():
    with pytest.raises(ringkv.ConfigError) as ei:
        ringkv.Engine.open(config={"x" * 3000: 1})
    assert "x" * 3000 in str(ei.value)


class _Counting:
    def __init__(self, real):
        self.real = real
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        return self.real(*args)


def test_buffers_freed_on_success_and_error_paths(engine, monkeypatch):
    import ringkv.engine as eng

    buf_free = _Counting(eng._buf_free)
    arr_free = _Counting(eng._buf_array_free)
    reply_free = _Counting(eng._reply_array_free)
    monkeypatch.setattr(eng, "_buf_free", buf_free)
    monkeypatch.setattr(eng, "_buf_array_free", arr_free)
    monkeypatch.setattr(eng, "_reply_array_free", reply_free)
    engine.set("s", "v")
    engine.hset("h", {"f": "v"})

    engine.get("s")
    engine.get("missing")
    with pytest.raises(WrongType):
        engine.get("h")
    engine.hget("h", "f")
    with pytest.raises(WrongType):
        engine.hget("s", "f")
    engine.set("s", "w", get=True)
    with pytest.raises(WrongType):
        engine.set("h", "w", get=True)
    engine.set("s", "x", ex=10)
    engine.stats()
    assert buf_free.calls == 9

    engine.mget(["s", "h"])
    engine.hgetall("h")
    with pytest.raises(WrongType):
        engine.hgetall("s")
    engine.hdrain("h", 10)
    with pytest.raises(WrongType):
        engine.hdrain("s", 10)
    assert arr_free.calls == 5

    engine.batch().get("s").execute()
    with pytest.raises(WrongType):
        engine.batch().hget("s", "f").execute()
    assert reply_free.calls == 2


def test_no_leak_in_a_loop(engine):
    """RSS stays flat over many buffer-returning calls (a leak of a 4 KiB
    value per call would add ~400 MB)."""

    def rss_kb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    if not os.path.exists("/proc/self/status"):
        pytest.skip("no /proc")
    val = b"v" * 4096
    engine.set("k", val)
    engine.hset("h", {f"f{i}": val for i in range(4)})
    for _ in range(2000):  # warm-up
        engine.get("k")
        engine.hgetall("h")
    before = rss_kb()
    for _ in range(50_000):
        engine.get("k")
        engine.hgetall("h")
    assert rss_kb() - before < 64 * 1024
