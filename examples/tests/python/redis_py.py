"""redis-py against ringkv-primary: RESP3 (HELLO 3), CLIENT SETINFO (sent
by redis-py on connect), a pipeline, and a WATCH/MULTI retry loop raced by
threads. Run by examples/tests/clients.rs with the server's port as the
only argument; exits non-zero on the first failed check."""

import sys
import threading

import redis

port = int(sys.argv[1])

r2 = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
assert r2.ping() is True
r2.set("session:1", "token", ex=60)
assert r2.get("session:1") == "token"
assert 59 <= r2.ttl("session:1") <= 60

r3 = redis.Redis(host="127.0.0.1", port=port, protocol=3, decode_responses=True)
r3.hset("telemetry:h1", mapping={"cpu": "0.5", "mem": "512"})
assert r3.hgetall("telemetry:h1") == {"cpu": "0.5", "mem": "512"}, r3.hgetall("telemetry:h1")
info = r3.client_info()
assert info.get("lib-name", "").startswith("redis-py"), info
assert str(info.get("resp")) == "3", info

pipe = r2.pipeline(transaction=False)
for i in range(100):
    pipe.incr("counter")
results = pipe.execute()
assert results == list(range(1, 101)), results[:5]

# A transaction pipeline (MULTI/EXEC) and the optimistic-locking loop.
r2.set("balance", 1000)
def spend(times):
    c = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(times):
        while True:
            with c.pipeline() as p:
                try:
                    p.watch("balance")
                    current = int(p.get("balance"))
                    p.multi()
                    p.set("balance", current - 1)
                    p.incr("spent")
                    p.execute()
                    break
                except redis.WatchError:
                    continue

threads = [threading.Thread(target=spend, args=(50,)) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert int(r2.get("balance")) == 800, r2.get("balance")
assert int(r2.get("spent")) == 200, r2.get("spent")

try:
    r2.lpush("list", "x")
    raise AssertionError("LPUSH should fail")
except redis.ResponseError as e:
    assert "unknown command" in str(e), e

print("redis-py: all checks passed")
