<?php
// phpredis against ringkv: pconnect (and its reuse), hScan with
// SCAN_RETRY, and a follower's READONLY refusal as a PHP-FPM worker sees
// it. Run by examples/tests/clients.rs: php phpredis.php PRIMARY_PORT FOLLOWER_PORT.

function check($ok, $what) {
    if (!$ok) {
        fwrite(STDERR, "FAILED: $what\n");
        exit(1);
    }
}

$port = (int)$argv[1];
$followerPort = (int)$argv[2];

$r = new Redis();
check($r->pconnect('127.0.0.1', $port), 'pconnect');
check($r->set('session:1', 'token') === true, 'SET');
check($r->get('session:1') === 'token', 'GET');
check($r->incrBy('hits', 5) === 5, 'INCRBY');
check($r->setex('session:2', 60, 't2') === true, 'SETEX');
$ttl = $r->ttl('session:2');
check($ttl >= 59 && $ttl <= 60, "TTL $ttl");

$r->hMSet('telemetry:h1', ['cpu' => '0.5', 'mem' => '512', 'disk' => '7']);
$r->setOption(Redis::OPT_SCAN, Redis::SCAN_RETRY);
$it = null;
$seen = [];
while ($fields = $r->hScan('telemetry:h1', $it)) {
    foreach ($fields as $f => $v) {
        $seen[$f] = $v;
    }
}
ksort($seen);
check($seen === ['cpu' => '0.5', 'disk' => '7', 'mem' => '512'], 'hScan: ' . json_encode($seen));

// A second pconnect in the same process reuses the persistent connection.
$r2 = new Redis();
check($r2->pconnect('127.0.0.1', $port), 'pconnect again');
check($r2->get('session:1') === 'token', 'GET on the reused connection');

// The follower: reads, and READONLY for writes.
$f = new Redis();
check($f->connect('127.0.0.1', $followerPort), 'connect to the follower');
for ($i = 0; $i < 200 && $f->get('session:1') !== 'token'; $i++) {
    usleep(25000);
}
check($f->get('session:1') === 'token', 'read on the follower');
$message = '';
try {
    $ok = $f->set('k', 'v');
    check($ok === false, 'a follower must refuse writes');
    $message = (string)$f->getLastError();
} catch (RedisException $e) {
    $message = $e->getMessage();
}
check(strpos($message, "READONLY You can't write against a read only replica.") !== false, "READONLY: $message");

echo "phpredis: all checks passed\n";
