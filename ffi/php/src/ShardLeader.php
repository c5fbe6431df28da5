<?php

declare(strict_types=1);

namespace Ringkv;

use Ringkv\Exception\CoordException;

/**
 * Finds a shard's current primary through etcd, as ringkv's failover
 * coordinator publishes it (`/ringkv/shards/<shard>/leader`, a JSON record
 * bound to the primary's lease; its create revision is the shard's epoch).
 *
 * Plain PHP over etcd's v3 JSON gateway (`POST /v3/kv/range`), with a
 * deadline on every call: no extension beyond PHP's HTTP stream wrapper
 * (`allow_url_fopen`), and no FFI. A client that gets `READONLY` from the
 * node it wrote to looks the leader up again and reconnects:
 *
 * ```php
 * $leader = Ringkv\ShardLeader::find('http://127.0.0.1:2379', 'orders');
 * if ($leader === null) {
 *     // no primary right now (a failover in progress): retry shortly
 * } else {
 *     [$host, $port] = Ringkv\ShardLeader::hostPort($leader['resp']);
 *     $redis = new Redis();
 *     $redis->connect($host, $port);
 * }
 * ```
 */
final class ShardLeader
{
    /** Largest gateway answer read (a leader record is a few hundred bytes). */
    private const MAX_RESPONSE = 65536;

    private function __construct()
    {
    }

    /**
     * The shard's leader, or null when it has none (the key expired and no
     * follower has taken it yet).
     *
     * @param string $etcdUrls one or more etcd client URLs, comma-separated; tried in order
     * @param string $shard    the shard name the nodes were started with (`--shard`)
     * @param float  $timeout  seconds per etcd endpoint
     *
     * @return array{id: string, resp: string, repl: string, epoch: int}|null
     *
     * @throws CoordException when no endpoint answers, or it answers something that is not a leader record
     */
    public static function find(string $etcdUrls, string $shard, float $timeout = 1.0): ?array
    {
        if ($shard === '' || strpbrk($shard, "/\0") !== false) {
            throw new CoordException("invalid shard name '{$shard}'");
        }
        $key = "/ringkv/shards/{$shard}/leader";
        $body = json_encode(['key' => base64_encode($key)], JSON_THROW_ON_ERROR);
        $errors = [];
        foreach (explode(',', $etcdUrls) as $url) {
            $url = rtrim(trim($url), '/');
            if ($url === '') {
                continue;
            }
            $answer = self::post("{$url}/v3/kv/range", $body, $timeout, $error);
            if ($answer === null) {
                $errors[] = "{$url}: {$error}";
                continue;
            }
            return self::decode($answer);
        }
        throw new CoordException('no etcd endpoint answered: ' . ($errors === [] ? 'none given' : implode('; ', $errors)));
    }

    /**
     * Splits a `host:port` address (`[v6]:port` too) as the leader record
     * gives it, for `Redis::connect`.
     *
     * @return array{0: string, 1: int}
     *
     * @throws CoordException on an address without a valid port
     */
    public static function hostPort(string $addr): array
    {
        $colon = strrpos($addr, ':');
        $port = $colon === false ? '' : substr($addr, $colon + 1);
        if ($colon === false || $colon === 0 || !ctype_digit($port) || (int) $port < 1 || (int) $port > 65535) {
            throw new CoordException("not a host:port address: '{$addr}'");
        }
        return [trim(substr($addr, 0, $colon), '[]'), (int) $port];
    }

    /**
     * The leader from a range answer (null: no key).
     *
     * @return array{id: string, resp: string, repl: string, epoch: int}|null
     */
    private static function decode(string $answer): ?array
    {
        $range = json_decode($answer, true);
        if (!is_array($range) || !isset($range['header']) || !is_array($range['header'])) {
            throw new CoordException('etcd answered something that is not a range response');
        }
        $kvs = $range['kvs'] ?? [];
        if (!is_array($kvs) || $kvs === []) {
            return null;
        }
        $kv = $kvs[0];
        $value = is_array($kv) && is_string($kv['value'] ?? null) ? base64_decode($kv['value'], true) : false;
        $record = is_string($value) ? json_decode($value, true) : null;
        foreach (['id', 'resp', 'repl'] as $field) {
            if (!is_array($record) || !is_string($record[$field] ?? null)) {
                throw new CoordException("the leader key does not hold a leader record (no '{$field}')");
            }
        }
        $epoch = $kv['create_revision'] ?? null;
        // The gateway writes 64-bit integers as JSON strings.
        if (!(is_string($epoch) && ctype_digit($epoch)) && !is_int($epoch)) {
            throw new CoordException('the leader key has no create revision');
        }
        return ['id' => $record['id'], 'resp' => $record['resp'], 'repl' => $record['repl'], 'epoch' => (int) $epoch];
    }

    /** POSTs a JSON body; the answer's body, or null with $error set. */
    private static function post(string $url, string $body, float $timeout, ?string &$error): ?string
    {
        $context = stream_context_create([
            'http' => [
                'method' => 'POST',
                'header' => "Content-Type: application/json\r\nConnection: close\r\n",
                'content' => $body,
                'timeout' => $timeout,
                'ignore_errors' => true,
            ],
        ]);
        $error = null;
        set_error_handler(static function (int $no, string $message) use (&$error): bool {
            $error = $message;
            return true;
        });
        try {
            $stream = fopen($url, 'rb', false, $context);
            if ($stream === false) {
                $error ??= 'cannot connect';
                return null;
            }
            stream_set_timeout($stream, (int) ceil($timeout));
            $answer = stream_get_contents($stream, self::MAX_RESPONSE + 1);
            $meta = stream_get_meta_data($stream);
            fclose($stream);
        } finally {
            restore_error_handler();
        }
        if ($answer === false || ($meta['timed_out'] ?? false)) {
            $error ??= 'timed out';
            return null;
        }
        if (strlen($answer) > self::MAX_RESPONSE) {
            $error = 'answer over ' . self::MAX_RESPONSE . ' bytes';
            return null;
        }
        $status = $meta['wrapper_data'][0] ?? '';
        if (!is_string($status) || preg_match('#^HTTP/\S+ 200\b#', $status) !== 1) {
            $error = 'HTTP status ' . (is_string($status) ? $status : '?');
            return null;
        }
        return $answer;
    }
}
