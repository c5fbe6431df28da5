import threading

from ringkv import Engine

THREADS = 8
PER_THREAD = 5000


def _run(threads):
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        return run

    ts = [threading.Thread(target=wrap(t)) for t in threads]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
        assert not t.is_alive(), "a worker thread did not finish"
    assert not errors, errors


def test_concurrent_incr_by_is_exact(engine):
    barrier = threading.Barrier(THREADS)

    def worker(n):
        def run():
            barrier.wait(30)
            for _ in range(PER_THREAD):
                engine.incr_by("counter", n)

        return run

    _run([worker(i + 1) for i in range(THREADS)])
    expected = PER_THREAD * sum(range(1, THREADS + 1))
    assert engine.get("counter") == str(expected).encode()


def test_concurrent_hincr_and_mixed_ops(engine):
    barrier = threading.Barrier(THREADS)

    def worker(i):
        def run():
            barrier.wait(30)
            for j in range(2000):
                engine.hincr_by("stats", "hits", 1)
                engine.incr("total")
                engine.set(f"t{i}:{j % 50}", str(j))
                assert engine.get(f"t{i}:{j % 50}") == str(j).encode()

        return run

    _run([worker(i) for i in range(THREADS)])
    assert engine.hget("stats", "hits") == str(THREADS * 2000).encode()
    assert engine.get("total") == str(THREADS * 2000).encode()
    assert engine.dbsize() == 2 + THREADS * 50


def test_threads_on_a_data_dir_engine(data_dir, small_config):
    with Engine.open(data_dir, small_config) as e:
        _run([lambda: [e.incr("c") for _ in range(3000)] for _ in range(4)])
        assert e.get("c") == b"12000"
    with Engine.open(data_dir, small_config) as e:
        assert e.get("c") == b"12000"


def test_calls_release_the_gil(engine):
    """A blocking library call (wait_applied) lets other Python threads run."""
    with Engine.open(anonymous_log=True) as e:
        e.set("a", "1")
        far = e.last_write_offset() + 10**9
        ticks = []
        stop = threading.Event()

        def ticker():
            while not stop.is_set():
                ticks.append(1)
                stop.wait(0.01)

        t = threading.Thread(target=ticker)
        t.start()
        try:
            assert e.wait_applied(far, 300) is False
        finally:
            stop.set()
            t.join(10)
        assert len(ticks) >= 5
