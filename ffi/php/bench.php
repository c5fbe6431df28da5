<?php

/**
 * Per-call throughput and latency of the ringkv PHP binding (FFI, in-memory
 * engine, same process) beside phpredis talking to a redis-server on loopback.
 *
 *   LD_LIBRARY_PATH=target/debug php -d ffi.enable=1 ffi/php/bench.php [REDIS_PORT]
 *
 * Without REDIS_PORT it starts `redis-server --port <free port> --save '' --appendonly no`
 * on 127.0.0.1 and stops it at the end. With a port it uses that server, touching
 * only keys under "ringkv-bench:<pid>:" and deleting them at the end.
 *
 * Env: BENCH_N (default 200000) calls for GET, SET and HSET; BENCH_DRAIN_N
 * (default BENCH_N / 100) HDRAIN calls of 500 fields (the refill between
 * them is not timed). phpredis has no HDRAIN: its counterpart is one
 * EVALSHA of HRANDFIELD key 500 WITHVALUES + HDEL of those fields (atomic).
 *
 * Ops/s is calls / time spent in the calls; p50/p99 are per-call latencies.
 */

declare(strict_types=1);

use Ringkv\Engine;
use Ringkv\Ffi;

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'Ringkv\\')) {
        $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 7)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});

const DRAIN_FIELDS = 500;
const HASHES = 1000;

$n = max(1, (int) (getenv('BENCH_N') ?: 200_000));
$drainN = max(1, (int) (getenv('BENCH_DRAIN_N') ?: intdiv($n, 100)));
$port = isset($argv[1]) ? (int) $argv[1] : 0;

if (!extension_loaded('redis')) {
    fwrite(STDERR, "bench: the phpredis extension is missing (apt-get install php-redis)\n");
    exit(1);
}

// ---- redis-server ----
$server = null;
if ($port === 0) {
    $probe = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
    if ($probe === false) {
        fwrite(STDERR, "bench: no free port: {$errstr}\n");
        exit(1);
    }
    $port = (int) substr((string) strrchr((string) stream_socket_get_name($probe, false), ':'), 1);
    fclose($probe);
    $bin = trim((string) shell_exec('command -v redis-server'));
    if ($bin === '') {
        fwrite(STDERR, "bench: redis-server not found (apt-get install redis-server), or pass a port\n");
        exit(1);
    }
    $server = proc_open(
        [$bin, '--port', (string) $port, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']],
        $pipes,
    );
    if ($server === false) {
        fwrite(STDERR, "bench: cannot start redis-server\n");
        exit(1);
    }
    register_shutdown_function(static function () use ($server): void {
        proc_terminate($server, 15);
        $deadline = microtime(true) + 5;
        while (proc_get_status($server)['running'] && microtime(true) < $deadline) {
            usleep(20_000);
        }
        if (proc_get_status($server)['running']) {
            proc_terminate($server, 9);
        }
        proc_close($server);
    });
}

$redis = new Redis();
$deadline = microtime(true) + 5;
while (true) {
    try {
        if (@$redis->connect('127.0.0.1', $port, 1.0)) {
            $redis->ping();
            break;
        }
    } catch (RedisException $e) {
        // not up yet
    }
    if (microtime(true) > $deadline) {
        fwrite(STDERR, "bench: cannot connect to redis on 127.0.0.1:{$port}\n");
        exit(1);
    }
    usleep(50_000);
}
$prefix = $server === null ? 'ringkv-bench:' . getmypid() . ':' : '';

$engine = Engine::open();

// ---- helpers ----

/**
 * Times $n calls of $call($i) (plus untimed $setup($i) before each when given).
 *
 * @return array{ops: float, p50: float, p99: float} ops/s and µs
 */
function measure(int $n, callable $call, ?callable $setup = null): array
{
    $lat = [];
    $total = 0;
    for ($i = 0; $i < $n; $i++) {
        if ($setup !== null) {
            $setup($i);
        }
        $t = hrtime(true);
        $call($i);
        $d = hrtime(true) - $t;
        $lat[] = $d;
        $total += $d;
    }
    sort($lat);
    return [
        'ops' => $n / ($total / 1e9),
        'p50' => $lat[intdiv(50 * ($n - 1), 100)] / 1000,
        'p99' => $lat[intdiv(99 * ($n - 1), 100)] / 1000,
    ];
}

$value = str_repeat('v', 64);
$drainFields = [];
for ($i = 0; $i < DRAIN_FIELDS; $i++) {
    $drainFields["field:{$i}"] = "value:{$i}:" . str_repeat('x', 16);
}
$drainLua = <<<'LUA'
local kv = redis.call('HRANDFIELD', KEYS[1], ARGV[1], 'WITHVALUES')
local fields = {}
for i = 1, #kv, 2 do fields[#fields + 1] = kv[i] end
if #fields > 0 then redis.call('HDEL', KEYS[1], unpack(fields)) end
return kv
LUA;
$drainSha = $redis->script('load', $drainLua);
if (!is_string($drainSha)) {
    fwrite(STDERR, "bench: SCRIPT LOAD failed: " . $redis->getLastError() . "\n");
    exit(1);
}

$results = [];

// Warm up both sides a little.
for ($i = 0; $i < 1000; $i++) {
    $engine->set("warm:{$i}", $value);
    $engine->get("warm:{$i}");
    $redis->set("{$prefix}warm:{$i}", $value);
    $redis->get("{$prefix}warm:{$i}");
}

// SET
$results['SET']['ffi'] = measure($n, static fn (int $i) => $engine->set("key:{$i}", $value));
$results['SET']['redis'] = measure($n, static fn (int $i) => $redis->set("{$prefix}key:{$i}", $value));

// GET (hits, another order than written)
$stride = 7919; // a prime: visits every key once
$results['GET']['ffi'] = measure($n, static fn (int $i) => $engine->get('key:' . (($i * $stride) % $n)));
$results['GET']['redis'] = measure($n, static fn (int $i) => $redis->get("{$prefix}key:" . (($i * $stride) % $n)));
if ($engine->get('key:' . ($n - 1)) !== $value || $redis->get("{$prefix}key:" . ($n - 1)) !== $value) {
    fwrite(STDERR, "bench: GET check failed\n");
    exit(1);
}

// HSET: one field per call into HASHES hashes
$results['HSET']['ffi'] = measure($n, static fn (int $i) => $engine->hSet('hash:' . ($i % HASHES), ["f:{$i}" => $value]));
$results['HSET']['redis'] = measure($n, static fn (int $i) => $redis->hSet("{$prefix}hash:" . ($i % HASHES), "f:{$i}", $value));

// HDRAIN of 500 fields (refill untimed)
$drained = 0;
$results['HDRAIN 500']['ffi'] = measure(
    $drainN,
    static function () use ($engine, &$drained): void {
        $drained += count($engine->hDrain('drain', DRAIN_FIELDS));
    },
    static fn () => $engine->hSet('drain', $drainFields),
);
$ffiDrained = $drained;
$drained = 0;
$results['HDRAIN 500']['redis'] = measure(
    $drainN,
    static function () use ($redis, $drainSha, $prefix, &$drained): void {
        $drained += intdiv(count($redis->evalSha($drainSha, ["{$prefix}drain", DRAIN_FIELDS], 1)), 2);
    },
    static fn () => $redis->hMSet("{$prefix}drain", $drainFields),
);
if ($ffiDrained !== $drainN * DRAIN_FIELDS || $drained !== $drainN * DRAIN_FIELDS) {
    fwrite(STDERR, "bench: HDRAIN check failed ({$ffiDrained} / {$drained} fields)\n");
    exit(1);
}

// ---- report ----
$info = $redis->info('server');
printf(
    "ringkv %s (PHP FFI, %s mode, in-memory engine) vs phpredis %s -> redis-server %s on 127.0.0.1:%d\n",
    Engine::version(),
    Ffi::mode(),
    phpversion('redis'),
    $info['redis_version'] ?? '?',
    $port,
);
printf("PHP %s, N = %d (GET/SET/HSET), %d HDRAIN calls of %d fields, 64-byte values\n\n", PHP_VERSION, $n, $drainN, DRAIN_FIELDS);
$line = "%-11s %12s %9s %9s   %12s %9s %9s   %9s\n";
printf($line, 'op', 'FFI ops/s', 'p50 µs', 'p99 µs', 'redis ops/s', 'p50 µs', 'p99 µs', 'FFI/redis');
foreach ($results as $op => $r) {
    printf(
        $line,
        $op,
        number_format($r['ffi']['ops'], 0, '.', ''),
        number_format($r['ffi']['p50'], 2),
        number_format($r['ffi']['p99'], 2),
        number_format($r['redis']['ops'], 0, '.', ''),
        number_format($r['redis']['p50'], 2),
        number_format($r['redis']['p99'], 2),
        number_format($r['ffi']['ops'] / $r['redis']['ops'], 1) . 'x',
    );
}

// ---- cleanup of a server we did not start ----
if ($server === null) {
    $keys = ["{$prefix}drain"];
    for ($i = 0; $i < 1000; $i++) {
        $keys[] = "{$prefix}warm:{$i}";
    }
    for ($i = 0; $i < HASHES; $i++) {
        $keys[] = "{$prefix}hash:{$i}";
    }
    for ($i = 0; $i < $n; $i++) {
        $keys[] = "{$prefix}key:{$i}";
    }
    foreach (array_chunk($keys, 1000) as $chunk) {
        $redis->unlink($chunk);
    }
}
$redis->close();
$engine->close();
