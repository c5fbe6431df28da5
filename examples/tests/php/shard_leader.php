<?php
// Prints what Ringkv\ShardLeader::find answers for argv[2] through etcd at
// argv[1], as one JSON line (examples/tests/etcd.rs checks it):
// {"leader": {...}|null} or {"error": "..."}.
declare(strict_types=1);

require __DIR__ . '/../../../ffi/php/src/Exception/CoordException.php';
require __DIR__ . '/../../../ffi/php/src/ShardLeader.php';

try {
    $leader = Ringkv\ShardLeader::find($argv[1], $argv[2], 2.0);
    $out = ['leader' => $leader];
    if ($leader !== null) {
        $out['host_port'] = Ringkv\ShardLeader::hostPort($leader['resp']);
    }
} catch (Ringkv\Exception\CoordException $e) {
    $out = ['error' => $e->getMessage()];
}
echo json_encode($out), "\n";
