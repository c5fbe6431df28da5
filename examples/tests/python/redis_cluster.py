"""redis-py's RedisCluster, unchanged, against three ringkv-primary shards:
discovery from one startup node (CLUSTER SLOTS), keys spread over every
shard, hashtagged multi-key commands, a cross-slot MGET split by the
client, and a pipeline. Run by examples/tests/cluster.rs with one node's
port as the only argument; the Rust side then checks where every key
landed. Exits non-zero on the first failed check."""

import sys

from redis.cluster import RedisCluster

port = int(sys.argv[1])
rc = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)

nodes = rc.get_primaries()
assert len(nodes) == 3, nodes

keys = [f"py:{i}" for i in range(300)]
for k in keys:
    assert rc.set(k, f"value of {k}") is True
for k in keys:
    assert rc.get(k) == f"value of {k}", k
# The client splits a cross-slot MGET by slot.
assert rc.mget_nonatomic(keys[:50]) == [f"value of {k}" for k in keys[:50]]

# Keys with one hashtag share a slot: multi-key commands go through.
for i in range(20):
    tag = f"{{user{i}}}"
    assert rc.mset({f"{tag}:name": f"value of {tag}:name", f"{tag}:mail": f"value of {tag}:mail"}) is True
    assert rc.mget(f"{tag}:name", f"{tag}:mail") == [f"value of {tag}:name", f"value of {tag}:mail"]
    assert rc.keyslot(f"{tag}:name") == rc.cluster_keyslot(f"{tag}:mail")

pipe = rc.pipeline()
for k in keys[:100]:
    pipe.get(k)
assert pipe.execute() == [f"value of {k}" for k in keys[:100]]

# Each key's node (by the client's own slot table) counts it.
for k in keys[:30]:
    node = rc.get_node_from_key(k)
    slot = rc.keyslot(k)
    assert rc.cluster_countkeysinslot(slot) >= 1, k
    assert k in rc.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000, target_nodes=node), k

info = rc.cluster_info(target_nodes=RedisCluster.RANDOM)
assert info["cluster_state"] == "ok", info
print("redis-py RedisCluster: ok")
