#!/usr/bin/env python3
"""Where the threads of a running process wait: samples every thread's state
(/proc/PID/task/TID/stat), its wait channel and, in D state, the top of its
kernel stack, every millisecond for SECONDS, then prints per busy thread the
most common (state, where) pairs and its on-CPU and runnable-but-waiting
time from schedstat. A writer that is runnable but not running waits for a
CPU; one in D waits for I/O (page faults on a mapped file, writeback); one
in S on futex_do_wait waits for a lock or a condition variable.

Used for issue 13 item 5 (BENCHMARKS.md): run beside
`target/release/deps/snapshot-* --bench --keys 300000 --no-redis`.
Needs root for the kernel stacks.

    scripts/thread-states.py PID SECONDS
"""
import os, sys, time, collections
pid = sys.argv[1]; dur = float(sys.argv[2])
tally = collections.Counter(); per = collections.defaultdict(collections.Counter)
t0 = time.time(); n = 0
sched0 = {}
while time.time() - t0 < dur:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        break
    for tid in tids:
        try:
            st = open(f"/proc/{pid}/task/{tid}/stat").read()
            state = st[st.rfind(')')+2]
            if state in "DS":
                w = open(f"/proc/{pid}/task/{tid}/wchan").read().strip()
                if state == "D":
                    try:
                        stk = open(f"/proc/{pid}/task/{tid}/stack").read().split("\n")
                        w = w + " <" + " ".join(l.split()[-1].split('+')[0] for l in stk[:6] if l) + ">"
                    except Exception:
                        pass
                per[tid][(state, w)] += 1
            else:
                per[tid][(state, "")] += 1
            if tid not in sched0:
                sched0[tid] = open(f"/proc/{pid}/task/{tid}/schedstat").read().split()
        except (FileNotFoundError, ProcessLookupError):
            pass
    n += 1
    time.sleep(0.001)
for tid, c in per.items():
    try:
        s1 = open(f"/proc/{pid}/task/{tid}/schedstat").read().split()
        s0 = sched0[tid]
        run = (int(s1[0]) - int(s0[0])) / 1e9; wait = (int(s1[1]) - int(s0[1])) / 1e9
    except Exception:
        run = wait = -1
    tot = sum(c.values())
    if c[("R", "")] < tot * 0.3: continue
    print(f"thread {tid}: {tot} samples, on-cpu {run:.2f}s, runqueue-wait {wait:.2f}s")
    for k, v in c.most_common(8):
        print(f"   {v:6d} {k}")
