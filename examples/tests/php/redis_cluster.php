<?php
// phpredis' RedisCluster, unchanged, against three ringkv-primary shards:
// discovery from one seed (CLUSTER SLOTS), keys over every shard, MOVED
// handled by the client, hashtagged MSET/MGET. Run by
// examples/tests/cluster.rs: php redis_cluster.php SEED_PORT; the Rust side
// then checks where every key landed.

function check($ok, $what) {
    if (!$ok) {
        fwrite(STDERR, "FAILED: $what\n");
        exit(1);
    }
}

$port = (int)$argv[1];
$rc = new RedisCluster(null, ["127.0.0.1:$port"], 5, 5);
check(count($rc->_masters()) === 3, 'three masters');

for ($i = 0; $i < 300; $i++) {
    check($rc->set("php:$i", "value of php:$i") === true, "SET php:$i");
}
for ($i = 0; $i < 300; $i++) {
    check($rc->get("php:$i") === "value of php:$i", "GET php:$i");
}
// phpredis splits a cross-slot MGET by slot itself.
$want = [];
$keys = [];
for ($i = 0; $i < 40; $i++) {
    $keys[] = "php:$i";
    $want[] = "value of php:$i";
}
check($rc->mget($keys) === $want, 'MGET across slots');
// A hashtag keeps keys together: MSET/DEL in one slot, then removed again.
check($rc->mset(['{order7}:a' => '1', '{order7}:b' => '2']) === true, 'MSET one slot');
check($rc->del('{order7}:a', '{order7}:b') === 2, 'DEL one slot');
$slot = $rc->cluster("127.0.0.1:$port", 'KEYSLOT', 'php:0');
check(is_int($slot) && $slot >= 0 && $slot < 16384, "CLUSTER KEYSLOT $slot");
echo "phpredis RedisCluster: ok\n";
