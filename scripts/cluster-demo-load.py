"""The load of scripts/cluster-demo.sh: redis-py's RedisCluster, unchanged,
writing TTL'd session tokens (unique keys) from two threads; every other
write is followed by `WAIT 1` on the same connection. After LOAD_BEFORE
seconds it SIGKILLs one shard's primary (pid given), keeps writing until
that shard has taken writes again for a while, then reads every
acknowledged key back and reports.

Usage: cluster-demo-load.py STARTUP_PORT VICTIM_PID VICTIM_PORT
Env: DEMO_BEFORE (s, default 5), DEMO_AFTER (s of writes after the
shard recovered, default 5), DEMO_LIMIT (s, the whole run's bound, 60)."""

import os
import signal
import sys
import threading
import time

from redis.cluster import RedisCluster

port, victim_pid, victim_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
BEFORE = float(os.environ.get("DEMO_BEFORE", "5"))
AFTER = float(os.environ.get("DEMO_AFTER", "5"))
LIMIT = float(os.environ.get("DEMO_LIMIT", "60"))
start = time.monotonic()


def client():
    return RedisCluster(
        host="127.0.0.1",
        port=port,
        decode_responses=True,
        socket_timeout=1.0,
        socket_connect_timeout=0.5,
    )


def wait_writable():
    """Bounded: until a key of every shard takes a write."""
    deadline = time.monotonic() + 30
    while True:
        try:
            rc = client()
            cache = rc.nodes_manager.slots_cache
            ranges = {slot: nodes[0].port for slot, nodes in cache.items()}
            if len(ranges) == 16384 and len(set(ranges.values())) == 3:
                for i in range(300):
                    rc.set(f"warmup:{i}", "1")
                return rc, ranges
        except Exception as e:  # noqa: BLE001 - any failure: retry, bounded
            last = e
        if time.monotonic() > deadline:
            sys.exit(f"the cluster did not take writes within 30 s: {last!r}")
        time.sleep(0.2)


rc0, ranges = wait_writable()
victim_slots = sorted(slot for slot, p in ranges.items() if p == victim_port)
assert victim_slots, (len(ranges), victim_port)
lo, hi = victim_slots[0], victim_slots[-1]


def on_victim(key):
    return lo <= rc0.keyslot(key) <= hi


lock = threading.Lock()
acks = []  # (key, waited: bool, replicas: int)
victim_events = []  # (time, ok: bool)
errors = {}
stop = threading.Event()


def writer(t):
    rc = client()
    i = 0
    while not stop.is_set() and time.monotonic() - start < LIMIT:
        key = f"session:{t}:{i}"
        wait = i % 2 == 1
        i += 1
        victim = on_victim(key)
        try:
            assert rc.set(key, f"token-{t}-{i}", ex=3600) is True
            replicas = 0
            if wait:
                node = rc.get_node_from_key(key)
                replicas = node.redis_connection.execute_command("WAIT", 1, 1000)
            now = time.monotonic()
            with lock:
                acks.append((key, wait, replicas))
                if victim:
                    victim_events.append((now, True))
        except Exception as e:  # noqa: BLE001 - a failed write is data
            now = time.monotonic()
            with lock:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                if victim:
                    victim_events.append((now, False))
            time.sleep(0.01)


threads = [threading.Thread(target=writer, args=(t,)) for t in range(2)]
for th in threads:
    th.start()
time.sleep(BEFORE)
killed = time.monotonic()
os.kill(victim_pid, signal.SIGKILL)
print(f"SIGKILL to the primary of slots {lo}-{hi} (pid {victim_pid}, port {victim_port}) after {BEFORE:.0f} s of load")

# Until the victim's shard has taken writes again for AFTER seconds.
recovered = None
while time.monotonic() - start < LIMIT:
    with lock:
        fails = [t for t, ok in victim_events if not ok and t >= killed]
        if fails:
            oks = [t for t, ok in victim_events if ok and t > fails[0]]
            if oks:
                recovered = (fails[0], oks[0])
    if recovered and time.monotonic() - recovered[1] >= AFTER:
        break
    time.sleep(0.1)
stop.set()
for th in threads:
    th.join()

print(f"writes acknowledged: {len(acks)} ({sum(1 for a in acks if a[1])} with WAIT 1); failed attempts: {errors}")
if recovered is None:
    print("the shard did NOT take writes again within the bound")
    sys.exit(1)
first_fail, first_ok = recovered
print(f"failover: first failed write {first_fail - killed:+.2f} s after the kill; "
      f"first successful write on that shard {first_ok - first_fail:.2f} s after the first failure "
      f"({first_ok - killed:.2f} s after the kill)")

# Read every acknowledged key back through a fresh client.
rc = client()
lost = {True: 0, False: 0}
lost_replicated = 0
total = {True: 0, False: 0}
for key, waited, replicas in acks:
    total[waited] += 1
    for attempt in range(5):
        try:
            present = rc.exists(key) == 1
            break
        except Exception:  # noqa: BLE001 - bounded retry
            time.sleep(0.2)
    else:
        sys.exit(f"cannot read {key} back")
    if not present:
        lost[waited] += 1
        if waited and replicas >= 1:
            lost_replicated += 1
replicated = sum(1 for _, waited, replicas in acks if waited and replicas >= 1)
print(f"acknowledged and lost: without WAIT {lost[False]} of {total[False]}; "
      f"with WAIT 1 {lost[True]} of {total[True]} "
      f"({lost_replicated} lost of the {replicated} whose WAIT counted a replica)")
sys.exit(1 if lost_replicated else 0)
