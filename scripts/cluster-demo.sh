#!/usr/bin/env bash
# The cluster demo (issue 14, item 8): etcd, a 3-shard slot map made by
# ringkv-cluster, three shards of a ringkv-primary and a ringkv-follower
# each (failover through etcd and cluster mode), a load of TTL'd session
# tokens through redis-py's RedisCluster (every other write with WAIT 1),
# a SIGKILL of one primary, and then: the failover time (first failed
# write -> first successful write on that shard) and the acknowledged
# writes lost, with and without WAIT; then slots 0-999 move from shard-0
# to shard-2 with their keys (ringkv-cluster move-slots) under a second
# RedisCluster load, with the hand-over's pause and the acknowledged writes
# lost (scripts/cluster-demo-migrate.py). Everything on 127.0.0.1 in a temp
# dir; a trap kills every process it started. About 25-45 s.
#
#   RINGKV_BIN_DIR   where ringkv-primary/-follower/-cluster are
#                    (default target/release, built when missing)
#   DEMO_BEFORE / DEMO_AFTER / DEMO_LIMIT   see scripts/cluster-demo-load.py
#   DEMO_MIGRATE_BEFORE / DEMO_MIGRATE_AFTER  see scripts/cluster-demo-migrate.py
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${RINGKV_BIN_DIR:-target/release}"
if [ ! -x "$bin/ringkv-primary" ] || [ ! -x "$bin/ringkv-follower" ] || [ ! -x "$bin/ringkv-cluster" ]; then
    [ "$bin" = target/release ] || { echo "no ringkv binaries in $bin" >&2; exit 1; }
    echo "== building the release binaries"
    cargo build --release -p ringkv-examples --bins
fi
command -v etcd >/dev/null 2>&1 || {
    echo "== installing etcd-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq etcd-server >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq etcd-server >/dev/null; }
}
venv="target/py-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import redis" 2>/dev/null; then
    echo "== preparing $venv with redis-py"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q redis pytest
fi
py="$PWD/$venv/bin/python"
bin="$(cd "$bin" && pwd)"

work="$(mktemp -d -t ringkv-cluster-demo.XXXXXX)"
pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for _ in $(seq 1 50); do  # bounded: until every one is gone
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    if [ "$rc" -ne 0 ]; then
        echo "== the demo failed (exit $rc); last lines of each log:" >&2
        for f in "$work"/*.log; do echo "-- $f" >&2; tail -n 5 "$f" >&2 || true; done
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Free ports: 2 for etcd, 6 RESP (TCP), 6 replication (UDP, QUIC).
read -r -a ports <<<"$("$py" - <<'PY'
import socket
held = []
for kind in [socket.SOCK_STREAM] * 8 + [socket.SOCK_DGRAM] * 6:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
)"
etcd_url="http://127.0.0.1:${ports[0]}"
peer="http://127.0.0.1:${ports[1]}"
resp=("${ports[@]:2:6}")  # shard i: primary resp[i], follower resp[i+3]
repl=("${ports[@]:8:6}")

wait_port() {  # bounded: until 127.0.0.1:$1 accepts
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

echo "== etcd on $etcd_url"
etcd --name demo --data-dir "$work/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "demo=$peer" --log-level warn >"$work/etcd.log" 2>&1 &
pids+=($!)
disown "$!"
wait_port "${ports[0]}"

echo "== the slot map (ringkv-cluster create)"
create=(--etcd "$etcd_url" create)
for i in 0 1 2; do
    create+=(--primary "p$i@127.0.0.1:${resp[$i]}" --replica "shard-$i=f$i@127.0.0.1:${resp[$((i + 3))]}")
done
"$bin/ringkv-cluster" "${create[@]}"

node() {  # node BIN ID SHARD RESP REPL [--primary ADDR]
    local b=$1 id=$2 shard=$3 port=$4 rl=$5
    shift 5
    mkdir -p "$work/$id"
    (cd "$work/$id" && RUST_LOG=warn exec "$bin/$b" --port "$port" --repl-listen "127.0.0.1:$rl" \
        --etcd "$etcd_url" --shard "$shard" --node-id "$id" --dir "$work/$id/data" \
        --tls-dir "$work/tls-$shard" --no-save-on-exit \
        --cluster-enabled --cluster-node-id "$id" --cluster-etcd "$etcd_url" "$@" \
        >"$work/$id.log" 2>&1) &
    pids+=($!)
    disown "$!"  # no job report when the demo kills it
}
echo "== three shards: a primary and a follower each"
for i in 0 1 2; do
    node ringkv-primary "p$i" "shard-$i" "${resp[$i]}" "${repl[$i]}"
done
primary_pids=("${pids[@]:1:3}")
for i in 0 1 2; do wait_port "${resp[$i]}"; done
for i in 0 1 2; do
    node ringkv-follower "f$i" "shard-$i" "${resp[$((i + 3))]}" "${repl[$((i + 3))]}" \
        --primary "127.0.0.1:${repl[$i]}"
done
for i in 0 1 2; do wait_port "${resp[$((i + 3))]}"; done

echo "== load through RedisCluster; then SIGKILL of shard-1's primary"
"$py" scripts/cluster-demo-load.py "${resp[0]}" "${primary_pids[1]}" "${resp[1]}"
echo "== slots 0-999 move from shard-0 to shard-2 with their keys, under load"
"$py" scripts/cluster-demo-migrate.py "${resp[0]}" "$etcd_url" "$bin/ringkv-cluster" 0-999 shard-2
echo "== after the failover and the move: CLUSTER NODES on p0"
redis-cli -p "${resp[0]}" cluster nodes 2>/dev/null | awk '{print $1, $2, $3, $4, $9}' | sort || true
