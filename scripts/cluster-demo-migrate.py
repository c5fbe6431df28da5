"""The slot-migration phase of scripts/cluster-demo.sh: redis-py's
RedisCluster, unchanged, writes TTL'd session tokens (unique keys) and
INCRs counters from two threads while `ringkv-cluster move-slots` moves a
slot range (with its keys) from one shard to another. Then every
acknowledged token is read back, every counter must equal the INCRs
acknowledged, and the hand-over's pause is printed as the tool reports it.
Exits 1 if an acknowledged write is missing.

Usage: cluster-demo-migrate.py STARTUP_PORT ETCD_URL TOOL SLOTS TO_SHARD
Env: DEMO_MIGRATE_BEFORE / DEMO_MIGRATE_AFTER (s of load around the move,
default 2 / 2)."""

import os
import subprocess
import sys
import threading
import time

from redis.cluster import RedisCluster

port, etcd, tool, slots, to = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
BEFORE = float(os.environ.get("DEMO_MIGRATE_BEFORE", "2"))
AFTER = float(os.environ.get("DEMO_MIGRATE_AFTER", "2"))
lo, hi = (int(s) for s in slots.split("-"))


def client():
    return RedisCluster(host="127.0.0.1", port=port, decode_responses=True,
                        socket_timeout=2.0, socket_connect_timeout=0.5)


rc0 = client()
keys = [k for k in (f"tok:{i}" for i in range(200_000)) if lo <= rc0.keyslot(k) <= hi]
counters = [k for k in (f"hits:{i}" for i in range(20_000)) if lo <= rc0.keyslot(k) <= hi][:8]
assert keys and counters, "no keys in the moving slots"
for c in counters:
    rc0.delete(c)

lock = threading.Lock()
acked = []
incrs = {c: 0 for c in counters}
slowest = [0.0]
errors = {}
stop = threading.Event()


def writer(t):
    rc = client()
    i = t
    while not stop.is_set():
        key = keys[i % len(keys)] + f":{i}"
        counter = counters[i % len(counters)]
        i += 2
        try:
            began = time.monotonic()
            assert rc.set(key, f"session-{i}", ex=3600) is True
            rc.incr(counter)
            took = time.monotonic() - began
            with lock:
                acked.append(key)
                incrs[counter] += 1
                slowest[0] = max(slowest[0], took)
        except Exception as e:  # noqa: BLE001 - a failed write is data
            with lock:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            time.sleep(0.01)


threads = [threading.Thread(target=writer, args=(t,)) for t in range(2)]
for th in threads:
    th.start()
time.sleep(BEFORE)
began = time.monotonic()
moved = subprocess.run([tool, "--etcd", etcd, "move-slots", "--slots", slots, "--to", to],
                       capture_output=True, text=True, timeout=300)
took = time.monotonic() - began
time.sleep(AFTER)
stop.set()
for th in threads:
    th.join()
if moved.returncode != 0:
    sys.exit(f"move-slots failed: {moved.stdout}{moved.stderr}")
for line in moved.stdout.splitlines():
    if "handed over" in line:
        print(line)
print(f"move-slots took {took:.2f} s; writes acknowledged: {len(acked)} SET + {sum(incrs.values())} INCR; "
      f"slowest SET+INCR pair {slowest[0] * 1000:.1f} ms; failed attempts: {errors}")

rc = client()
lost = sum(1 for key in acked if rc.exists(key) != 1)
wrong = [c for c in counters if int(rc.get(c) or 0) != incrs[c]]
owner = rc.get_node_from_key(keys[0]).port
print(f"after the move: slots {slots} served by port {owner}; acknowledged and lost: {lost} of {len(acked)} tokens, "
      f"{len(wrong)} of {len(counters)} counters off")
sys.exit(1 if lost or wrong else 0)
