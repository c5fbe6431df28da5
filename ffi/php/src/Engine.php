<?php

declare(strict_types=1);

namespace Ringkv;

use FFI as PhpFfi;
use FFI\CData;
use FFI\CType;
use Ringkv\Exception\RingkvException;

/**
 * A ringkv engine: an in-memory keyspace of strings and hashes, optionally
 * backed by a data directory (ring log + snapshots).
 *
 * Keys, fields and values are binary-safe PHP strings. Every method throws a
 * {@see RingkvException} subclass on failure (WrongTypeException for WRONGTYPE,
 * ...) with the library's message. After close() every call throws
 * InvalidArgumentException (the library refuses the NULL handle).
 */
final class Engine
{
    private const KEY_TYPES = [0 => 'none', 1 => 'string', 2 => 'hash'];

    private PhpFfi $ffi;

    /** The ringkv_engine*, null once closed. */
    private ?CData $handle;

    private CType $tBuf;
    private CType $tArr;
    private CType $tBool;
    private CType $tI64;
    private CType $tU64;
    private CType $tSize;

    /**
     * Scan cursors not freed yet: id => [free function, ringkv_*_cursor*].
     * close() frees them before the engine.
     *
     * @var array<int, array{0: string, 1: CData}>
     */
    private array $cursors = [];

    private int $nextCursor = 0;

    /**
     * Primaries and followers started on this engine: close() stops them first.
     *
     * @var \WeakMap<object, true>
     */
    private \WeakMap $dependents;

    private function __construct(PhpFfi $ffi, CData $handle)
    {
        $this->ffi = $ffi;
        $this->handle = $handle;
        $this->tBuf = $ffi->type('ringkv_buf');
        $this->tArr = $ffi->type('ringkv_buf_array');
        $this->tBool = $ffi->type('bool');
        $this->tI64 = $ffi->type('int64_t');
        $this->tU64 = $ffi->type('uint64_t');
        $this->tSize = $ffi->type('size_t');
        $this->dependents = new \WeakMap();
    }

    /**
     * Opens an engine.
     *
     * @param string|null $dir A data directory (created if missing), or null for an in-memory engine.
     * @param array<string, mixed> $config The engine Config, e.g.
     *        ['maxmemory' => 1048576, 'maxmemory_policy' => 'allkeys-lru', 'log' => ['durability' => 'everysec']].
     * @param bool $anonymousLog In-memory engine with an in-memory ring log (to serve followers / read offsets).
     * @throws RingkvException ConfigException for a bad config, BusyException when the directory is locked, ...
     */
    public static function open(?string $dir = null, array $config = [], bool $anonymousLog = false): self
    {
        $ffi = Ffi::get();
        $json = $config === [] ? null : json_encode($config, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
        if ($dir !== null) {
            Ffi::cString($dir, 'the data directory');
        }
        $out = $ffi->new('ringkv_engine*');
        Ffi::check($ffi->ringkv_engine_open($dir, $json, $anonymousLog ? 1 : 0, PhpFfi::addr($out)));
        return new self($ffi, $out);
    }

    /** The library version, e.g. "0.1.0". */
    public static function version(): string
    {
        return Ffi::version();
    }

    /**
     * Frees the engine (saves nothing: call save() first if wanted). Stops the
     * primaries/followers and frees the scan cursors still open on it. Idempotent.
     */
    public function close(): void
    {
        if ($this->handle === null) {
            return;
        }
        foreach ($this->dependents as $dependent => $_) {
            $dependent->close();
        }
        foreach ($this->cursors as [$free, $cursor]) {
            $this->ffi->$free($cursor);
        }
        $this->cursors = [];
        $handle = $this->handle;
        $this->handle = null;
        $this->ffi->ringkv_engine_free($handle);
    }

    public function __destruct()
    {
        $this->close();
    }

    /** Whether close() was called. */
    public function isClosed(): bool
    {
        return $this->handle === null;
    }

    /**
     * The raw ringkv_engine* (null when closed).
     *
     * @internal
     */
    public function handle(): ?CData
    {
        return $this->handle;
    }

    /**
     * Makes close() stop $dependent (a Primary or Follower) first.
     *
     * @internal
     */
    public function addDependent(object $dependent): void
    {
        $this->dependents[$dependent] = true;
    }

    // ---- strings ----

    /** GET: the value, or null when the key is missing. */
    public function get(string $key): ?string
    {
        $buf = $this->ffi->new($this->tBuf);
        $st = $this->ffi->ringkv_get($this->handle, $key, strlen($key), PhpFfi::addr($buf));
        if ($st !== 0) {
            throw Ffi::exception($st);
        }
        return Ffi::takeBuf($this->ffi, $buf);
    }

    /**
     * SET with Redis' options.
     *
     * @param bool $nx Only if the key does not exist.
     * @param bool $xx Only if the key exists.
     * @param int|null $ex Expire in seconds.
     * @param int|null $px Expire in milliseconds.
     * @param int|null $exat Expire at unix seconds.
     * @param int|null $pxat Expire at unix milliseconds.
     * @param bool $keepTtl Keep the key's TTL (else SET clears it).
     * @param bool $get Return the previous value.
     * @return bool|string|null Without $get: true when written, false when NX/XX prevented it.
     *         With $get: the previous value (null when there was none), like SET ... GET.
     */
    public function set(
        string $key,
        string $value,
        bool $nx = false,
        bool $xx = false,
        ?int $ex = null,
        ?int $px = null,
        ?int $exat = null,
        ?int $pxat = null,
        bool $keepTtl = false,
        bool $get = false,
    ): bool|string|null {
        if (!$nx && !$xx && !$get && !$keepTtl && $ex === null && $px === null && $exat === null && $pxat === null) {
            $st = $this->ffi->ringkv_set($this->handle, $key, strlen($key), $value, strlen($value));
            if ($st !== 0) {
                throw Ffi::exception($st);
            }
            return true;
        }
        $condition = Options::setCondition($nx, $xx);
        [$kind, $n] = Options::expiry('set', $ex, $px, $exat, $pxat, $keepTtl);
        $applied = $this->ffi->new($this->tBool);
        $previous = $this->ffi->new($this->tBuf);
        Ffi::check($this->ffi->ringkv_set_with(
            $this->handle,
            $key,
            strlen($key),
            $value,
            strlen($value),
            $condition,
            $kind,
            $n,
            $get,
            PhpFfi::addr($applied),
            $get ? PhpFfi::addr($previous) : null,
        ));
        if ($get) {
            return Ffi::takeBuf($this->ffi, $previous);
        }
        return (bool) $applied->cdata;
    }

    /** INCRBY: the new value. */
    public function incrBy(string $key, int $delta): int
    {
        $out = $this->ffi->new($this->tI64);
        Ffi::check($this->ffi->ringkv_incr_by($this->handle, $key, strlen($key), $delta, PhpFfi::addr($out)));
        return $out->cdata;
    }

    /** DECRBY: the new value. */
    public function decrBy(string $key, int $delta): int
    {
        if ($delta === PHP_INT_MIN) {
            throw Ffi::argumentError('decrement would overflow', Status::OVERFLOW);
        }
        return $this->incrBy($key, -$delta);
    }

    /** INCR: the new value. */
    public function incr(string $key): int
    {
        return $this->incrBy($key, 1);
    }

    /** DECR: the new value. */
    public function decr(string $key): int
    {
        return $this->incrBy($key, -1);
    }

    /** INCRBYFLOAT: the new value as Redis formats it. */
    public function incrByFloat(string $key, float $delta): string
    {
        $buf = $this->ffi->new($this->tBuf);
        Ffi::check($this->ffi->ringkv_incr_by_float($this->handle, $key, strlen($key), $delta, PhpFfi::addr($buf)));
        return (string) Ffi::takeBuf($this->ffi, $buf);
    }

    /** APPEND: the new length. */
    public function append(string $key, string $value): int
    {
        $out = $this->ffi->new($this->tSize);
        Ffi::check($this->ffi->ringkv_append($this->handle, $key, strlen($key), $value, strlen($value), PhpFfi::addr($out)));
        return $out->cdata;
    }

    /** GETDEL: the value (null when missing), and the key is deleted. */
    public function getDel(string $key): ?string
    {
        $buf = $this->ffi->new($this->tBuf);
        Ffi::check($this->ffi->ringkv_getdel($this->handle, $key, strlen($key), PhpFfi::addr($buf)));
        return Ffi::takeBuf($this->ffi, $buf);
    }

    /**
     * GETEX: the value (null when missing), changing its TTL as asked (nothing
     * given: TTL unchanged).
     */
    public function getEx(
        string $key,
        ?int $ex = null,
        ?int $px = null,
        ?int $exat = null,
        ?int $pxat = null,
        bool $persist = false,
    ): ?string {
        [$kind, $n] = Options::expiry('getex', $ex, $px, $exat, $pxat, false, $persist);
        $buf = $this->ffi->new($this->tBuf);
        Ffi::check($this->ffi->ringkv_getex($this->handle, $key, strlen($key), $kind, $n, PhpFfi::addr($buf)));
        return Ffi::takeBuf($this->ffi, $buf);
    }

    /** SETRANGE: the new length. */
    public function setRange(string $key, int $offset, string $value): int
    {
        if ($offset < 0) {
            throw Ffi::argumentError('offset is out of range');
        }
        $out = $this->ffi->new($this->tSize);
        Ffi::check($this->ffi->ringkv_setrange(
            $this->handle,
            $key,
            strlen($key),
            $offset,
            $value,
            strlen($value),
            PhpFfi::addr($out),
        ));
        return $out->cdata;
    }

    /**
     * MGET: the values in the order of $keys, null for a missing key (or a hash).
     *
     * @param list<string> $keys
     * @return list<?string>
     */
    public function mGet(array $keys): array
    {
        if ($keys === []) {
            return [];
        }
        [$joined, $lens, $n] = Ffi::packList($this->ffi, $keys);
        $arr = $this->ffi->new($this->tArr);
        Ffi::check($this->ffi->ringkv_mget($this->handle, $joined, $lens, $n, PhpFfi::addr($arr)));
        return Ffi::takeArray($this->ffi, $arr);
    }

    /**
     * MSET of key => value.
     *
     * @param array<array-key, string> $pairs
     */
    public function mSet(array $pairs): void
    {
        [$joined, $lens, $n] = Ffi::packPairs($this->ffi, $pairs);
        Ffi::check($this->ffi->ringkv_mset($this->handle, $joined, $lens, $n));
    }

    /**
     * MSETNX of key => value: true when written (no key existed).
     *
     * @param array<array-key, string> $pairs
     */
    public function mSetNx(array $pairs): bool
    {
        [$joined, $lens, $n] = Ffi::packPairs($this->ffi, $pairs);
        $out = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->ringkv_msetnx($this->handle, $joined, $lens, $n, PhpFfi::addr($out)));
        return (bool) $out->cdata;
    }

    // ---- keys ----

    /** DEL: how many of the keys existed. */
    public function del(string ...$keys): int
    {
        if ($keys === []) {
            return 0;
        }
        [$joined, $lens, $n] = Ffi::packList($this->ffi, $keys);
        $out = $this->ffi->new($this->tU64);
        Ffi::check($this->ffi->ringkv_del($this->handle, $joined, $lens, $n, PhpFfi::addr($out)));
        return $out->cdata;
    }

    /** EXISTS: how many of the keys exist (a key given twice counts twice). */
    public function exists(string ...$keys): int
    {
        if ($keys === []) {
            return 0;
        }
        [$joined, $lens, $n] = Ffi::packList($this->ffi, $keys);
        $out = $this->ffi->new($this->tU64);
        Ffi::check($this->ffi->ringkv_exists($this->handle, $joined, $lens, $n, PhpFfi::addr($out)));
        return $out->cdata;
    }

    /** TYPE: "none", "string" or "hash". */
    public function type(string $key): string
    {
        $out = $this->ffi->new('int32_t');
        Ffi::check($this->ffi->ringkv_type($this->handle, $key, strlen($key), PhpFfi::addr($out)));
        return self::KEY_TYPES[$out->cdata] ?? 'unknown';
    }

    /**
     * EXPIRE key seconds [NX|XX|GT|LT]: true when the TTL was set (a time in
     * the past deletes the key).
     */
    public function expire(string $key, int $seconds, ?string $condition = null): bool
    {
        if ($condition === null) {
            return $this->boolCall('ringkv_expire', $key, $seconds);
        }
        return $this->expireAtIf($key, Options::absoluteMillis($seconds, 1000, true, 'expire'), $condition);
    }

    /** PEXPIRE key milliseconds [NX|XX|GT|LT]. */
    public function pExpire(string $key, int $millis, ?string $condition = null): bool
    {
        if ($condition === null) {
            return $this->boolCall('ringkv_pexpire', $key, $millis);
        }
        return $this->expireAtIf($key, Options::absoluteMillis($millis, 1, true, 'pexpire'), $condition);
    }

    /** EXPIREAT key unix-seconds [NX|XX|GT|LT]. */
    public function expireAt(string $key, int $unixSeconds, ?string $condition = null): bool
    {
        if ($condition === null) {
            return $this->boolCall('ringkv_expire_at', $key, $unixSeconds);
        }
        return $this->expireAtIf($key, Options::absoluteMillis($unixSeconds, 1000, false, 'expireat'), $condition);
    }

    /** PEXPIREAT key unix-milliseconds [NX|XX|GT|LT]. */
    public function pExpireAt(string $key, int $unixMillis, ?string $condition = null): bool
    {
        if ($condition === null) {
            return $this->boolCall('ringkv_pexpire_at', $key, $unixMillis);
        }
        return $this->expireAtIf($key, $unixMillis, $condition);
    }

    private function expireAtIf(string $key, int $unixMillis, string $condition): bool
    {
        $c = Options::expireCondition($condition);
        $out = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->ringkv_pexpire_at_if($this->handle, $key, strlen($key), $unixMillis, $c, PhpFfi::addr($out)));
        return (bool) $out->cdata;
    }

    private function boolCall(string $fn, string $key, int $arg): bool
    {
        $out = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->$fn($this->handle, $key, strlen($key), $arg, PhpFfi::addr($out)));
        return (bool) $out->cdata;
    }

    /** TTL in seconds: -2 missing key, -1 no expiry. */
    public function ttl(string $key): int
    {
        return $this->i64Call('ringkv_ttl', $key);
    }

    /** PTTL in milliseconds: -2 missing key, -1 no expiry. */
    public function pTtl(string $key): int
    {
        return $this->i64Call('ringkv_pttl', $key);
    }

    /** PEXPIRETIME in unix milliseconds: -2 missing key, -1 no expiry. */
    public function pExpireTime(string $key): int
    {
        return $this->i64Call('ringkv_pexpire_time', $key);
    }

    private function i64Call(string $fn, string $key): int
    {
        $out = $this->ffi->new($this->tI64);
        Ffi::check($this->ffi->$fn($this->handle, $key, strlen($key), PhpFfi::addr($out)));
        return $out->cdata;
    }

    /** PERSIST: true when a TTL was removed. */
    public function persist(string $key): bool
    {
        $out = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->ringkv_persist($this->handle, $key, strlen($key), PhpFfi::addr($out)));
        return (bool) $out->cdata;
    }

    /** RENAME (NoSuchKeyException when $from is missing). */
    public function rename(string $from, string $to): void
    {
        Ffi::check($this->ffi->ringkv_rename($this->handle, $from, strlen($from), $to, strlen($to)));
    }

    /** RENAMENX: false when $to exists. */
    public function renameNx(string $from, string $to): bool
    {
        $out = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->ringkv_rename_nx($this->handle, $from, strlen($from), $to, strlen($to), PhpFfi::addr($out)));
        return (bool) $out->cdata;
    }

    /** COPY src dst [REPLACE]: true when copied. */
    public function copy(string $src, string $dst, bool $replace = false): bool
    {
        $out = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->ringkv_copy($this->handle, $src, strlen($src), $dst, strlen($dst), $replace, PhpFfi::addr($out)));
        return (bool) $out->cdata;
    }

    /** RANDOMKEY: a key, or null when the engine is empty. */
    public function randomKey(): ?string
    {
        $buf = $this->ffi->new($this->tBuf);
        Ffi::check($this->ffi->ringkv_random_key($this->handle, PhpFfi::addr($buf)));
        return Ffi::takeBuf($this->ffi, $buf);
    }

    /** DBSIZE. */
    public function dbSize(): int
    {
        $out = $this->ffi->new($this->tU64);
        Ffi::check($this->ffi->ringkv_dbsize($this->handle, PhpFfi::addr($out)));
        return $out->cdata;
    }

    /** FLUSHALL. */
    public function flush(): void
    {
        Ffi::check($this->ffi->ringkv_flush($this->handle));
    }

    // ---- hashes ----

    /**
     * HSET key field value [field value ...]: how many fields were added.
     *
     * @param array<array-key, string|int|float> $fields field => value
     */
    public function hSet(string $key, array $fields): int
    {
        if (count($fields) === 1) {
            // One field: the entry point without a lengths array.
            $field = (string) array_key_first($fields);
            $value = (string) $fields[$field];
            $out = $this->ffi->new($this->tSize);
            Ffi::check($this->ffi->ringkv_hset_field(
                $this->handle,
                $key,
                strlen($key),
                $field,
                strlen($field),
                $value,
                strlen($value),
                PhpFfi::addr($out),
            ));
            return $out->cdata;
        }
        [$joined, $lens, $n] = Ffi::packPairs($this->ffi, $fields);
        $out = $this->ffi->new($this->tSize);
        Ffi::check($this->ffi->ringkv_hset($this->handle, $key, strlen($key), $joined, $lens, $n, PhpFfi::addr($out)));
        return $out->cdata;
    }

    /** HSETNX: true when the field was added. */
    public function hSetNx(string $key, string $field, string $value): bool
    {
        $out = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->ringkv_hsetnx(
            $this->handle,
            $key,
            strlen($key),
            $field,
            strlen($field),
            $value,
            strlen($value),
            PhpFfi::addr($out),
        ));
        return (bool) $out->cdata;
    }

    /** HGET: the value, or null when the key or field is missing. */
    public function hGet(string $key, string $field): ?string
    {
        $buf = $this->ffi->new($this->tBuf);
        $st = $this->ffi->ringkv_hget($this->handle, $key, strlen($key), $field, strlen($field), PhpFfi::addr($buf));
        if ($st !== 0) {
            throw Ffi::exception($st);
        }
        return Ffi::takeBuf($this->ffi, $buf);
    }

    /**
     * HMGET: field => value (null when missing), in the order of $fields.
     *
     * @param list<string> $fields
     * @return array<string, ?string>
     */
    public function hMGet(string $key, array $fields): array
    {
        if ($fields === []) {
            return [];
        }
        [$joined, $lens, $n] = Ffi::packList($this->ffi, $fields);
        $arr = $this->ffi->new($this->tArr);
        Ffi::check($this->ffi->ringkv_hmget($this->handle, $key, strlen($key), $joined, $lens, $n, PhpFfi::addr($arr)));
        $values = Ffi::takeArray($this->ffi, $arr);
        $out = [];
        foreach (array_values($fields) as $i => $field) {
            $out[$field] = $values[$i] ?? null;
        }
        return $out;
    }

    /** HDEL: how many fields were removed. */
    public function hDel(string $key, string ...$fields): int
    {
        if ($fields === []) {
            return 0;
        }
        [$joined, $lens, $n] = Ffi::packList($this->ffi, $fields);
        $out = $this->ffi->new($this->tSize);
        Ffi::check($this->ffi->ringkv_hdel($this->handle, $key, strlen($key), $joined, $lens, $n, PhpFfi::addr($out)));
        return $out->cdata;
    }

    /** HLEN. */
    public function hLen(string $key): int
    {
        $out = $this->ffi->new($this->tSize);
        Ffi::check($this->ffi->ringkv_hlen($this->handle, $key, strlen($key), PhpFfi::addr($out)));
        return $out->cdata;
    }

    /** HEXISTS. */
    public function hExists(string $key, string $field): bool
    {
        $out = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->ringkv_hexists($this->handle, $key, strlen($key), $field, strlen($field), PhpFfi::addr($out)));
        return (bool) $out->cdata;
    }

    /** HINCRBY: the new value. */
    public function hIncrBy(string $key, string $field, int $delta): int
    {
        $out = $this->ffi->new($this->tI64);
        Ffi::check($this->ffi->ringkv_hincr_by(
            $this->handle,
            $key,
            strlen($key),
            $field,
            strlen($field),
            $delta,
            PhpFfi::addr($out),
        ));
        return $out->cdata;
    }

    /** HINCRBYFLOAT: the new value as Redis formats it. */
    public function hIncrByFloat(string $key, string $field, float $delta): string
    {
        $buf = $this->ffi->new($this->tBuf);
        Ffi::check($this->ffi->ringkv_hincr_by_float(
            $this->handle,
            $key,
            strlen($key),
            $field,
            strlen($field),
            $delta,
            PhpFfi::addr($buf),
        ));
        return (string) Ffi::takeBuf($this->ffi, $buf);
    }

    /**
     * HGETALL: field => value ([] for a missing key).
     *
     * @return array<string, string>
     */
    public function hGetAll(string $key): array
    {
        return Ffi::takePairs($this->ffi, $this->keyArray('ringkv_hgetall', $key));
    }

    /**
     * HKEYS.
     *
     * @return list<string>
     */
    public function hKeys(string $key): array
    {
        /** @var list<string> */
        return Ffi::takeArray($this->ffi, $this->keyArray('ringkv_hkeys', $key));
    }

    /**
     * HVALS.
     *
     * @return list<string>
     */
    public function hVals(string $key): array
    {
        /** @var list<string> */
        return Ffi::takeArray($this->ffi, $this->keyArray('ringkv_hvals', $key));
    }

    private function keyArray(string $fn, string $key): CData
    {
        $arr = $this->ffi->new($this->tArr);
        Ffi::check($this->ffi->$fn($this->handle, $key, strlen($key), PhpFfi::addr($arr)));
        return $arr;
    }

    /**
     * HDRAIN key count: removes up to $count fields atomically and returns them
     * as field => value (the key is deleted when it becomes empty).
     *
     * @return array<string, string>
     */
    public function hDrain(string $key, int $count): array
    {
        if ($count < 0) {
            throw Ffi::argumentError('count must not be negative');
        }
        $arr = $this->ffi->new($this->tArr);
        Ffi::check($this->ffi->ringkv_hdrain($this->handle, $key, strlen($key), $count, PhpFfi::addr($arr)));
        return Ffi::takePairs($this->ffi, $arr);
    }

    /**
     * HRANDFIELD key [count [WITHVALUES]].
     *
     * Without $count: one random field, or null for a missing key. With $count
     * (Redis semantics: positive = distinct fields, negative = may repeat):
     * a list of fields, or with $withValues field => value (repeats collapse).
     *
     * @return string|null|list<string>|array<string, string>
     */
    public function hRandField(string $key, ?int $count = null, bool $withValues = false): string|array|null
    {
        $arr = $this->ffi->new($this->tArr);
        Ffi::check($this->ffi->ringkv_hrandfield($this->handle, $key, strlen($key), $count ?? 1, PhpFfi::addr($arr)));
        $items = Ffi::takeArray($this->ffi, $arr);
        if ($count === null) {
            return $items[0] ?? null;
        }
        $out = [];
        for ($i = 0, $n = count($items); $i + 1 < $n; $i += 2) {
            if ($withValues) {
                $out[(string) $items[$i]] = (string) $items[$i + 1];
            } else {
                $out[] = (string) $items[$i];
            }
        }
        return $out;
    }

    // ---- scans ----

    /**
     * SCAN: yields every key (matching the glob $match, of $type "string" or
     * "hash" when given) that exists for the whole scan, once or more (Redis
     * guarantees). The cursor is freed when the generator ends or is destroyed.
     *
     * @return \Generator<int, string>
     */
    public function scan(?string $match = null, int $count = 10, ?string $type = null): \Generator
    {
        $filter = Options::keyType($type);
        if ($count < 0) {
            throw Ffi::argumentError('count must not be negative');
        }
        $match ??= '';
        $out = $this->ffi->new('ringkv_scan_cursor*');
        Ffi::check($this->ffi->ringkv_scan_cursor_new(
            $this->handle,
            $match,
            strlen($match),
            $count,
            $filter,
            PhpFfi::addr($out),
        ));
        $id = $this->registerCursor('ringkv_scan_cursor_free', $out);
        try {
            $done = $this->ffi->new($this->tBool);
            do {
                $cursor = $this->liveCursor($id);
                $page = $this->ffi->new($this->tArr);
                Ffi::check($this->ffi->ringkv_scan_cursor_next($cursor, PhpFfi::addr($page), PhpFfi::addr($done)));
                foreach (Ffi::takeArray($this->ffi, $page) as $key) {
                    yield (string) $key;
                }
            } while (!$done->cdata);
        } finally {
            $this->freeCursor($id);
        }
    }

    /**
     * HSCAN: yields field => value of the hash (fields matching $match). With
     * $noValues (HSCAN NOVALUES) yields the fields as values (keys 0, 1, ...).
     *
     * @return \Generator<string|int, ?string>
     */
    public function hScan(string $key, ?string $match = null, int $count = 10, bool $noValues = false): \Generator
    {
        if ($count < 0) {
            throw Ffi::argumentError('count must not be negative');
        }
        $match ??= '';
        $out = $this->ffi->new('ringkv_hscan_cursor*');
        Ffi::check($this->ffi->ringkv_hscan_cursor_new(
            $this->handle,
            $key,
            strlen($key),
            $match,
            strlen($match),
            $count,
            $noValues,
            PhpFfi::addr($out),
        ));
        $id = $this->registerCursor('ringkv_hscan_cursor_free', $out);
        try {
            $done = $this->ffi->new($this->tBool);
            do {
                $cursor = $this->liveCursor($id);
                $page = $this->ffi->new($this->tArr);
                Ffi::check($this->ffi->ringkv_hscan_cursor_next($cursor, PhpFfi::addr($page), PhpFfi::addr($done)));
                $items = Ffi::takeArray($this->ffi, $page);
                if ($noValues) {
                    foreach ($items as $field) {
                        yield (string) $field;
                    }
                } else {
                    for ($i = 0, $n = count($items); $i + 1 < $n; $i += 2) {
                        yield (string) $items[$i] => (string) $items[$i + 1];
                    }
                }
            } while (!$done->cdata);
        } finally {
            $this->freeCursor($id);
        }
    }

    private function registerCursor(string $free, CData $cursor): int
    {
        $id = $this->nextCursor++;
        $this->cursors[$id] = [$free, $cursor];
        return $id;
    }

    private function liveCursor(int $id): CData
    {
        if (!isset($this->cursors[$id])) {
            throw Ffi::argumentError('the engine was closed during the scan');
        }
        return $this->cursors[$id][1];
    }

    private function freeCursor(int $id): void
    {
        if (isset($this->cursors[$id])) {
            [$free, $cursor] = $this->cursors[$id];
            unset($this->cursors[$id]);
            $this->ffi->$free($cursor);
        }
    }

    /**
     * Drains a hash: yields batches (field => value, at most $batch fields
     * each) from repeated HDRAIN until the hash is empty. Fields added while
     * draining are drained too.
     *
     * @return \Generator<int, array<string, string>>
     */
    public function drain(string $key, int $batch = 500): \Generator
    {
        if ($batch < 1) {
            throw Ffi::argumentError('batch must be at least 1');
        }
        while (true) {
            $fields = $this->hDrain($key, $batch);
            if ($fields === []) {
                return;
            }
            yield $fields;
        }
    }

    // ---- batches ----

    /** A new empty write batch (run it with writeBatch()). */
    public function batch(): Batch
    {
        return new Batch();
    }

    /**
     * Runs the batch atomically (all or none) and empties it. Returns one PHP
     * value per operation, in order: see {@see Batch} for each operation's reply.
     *
     * @return list<int|bool|string|null>
     */
    public function writeBatch(Batch $batch): array
    {
        $ops = $batch->takeOps();
        $replies = $this->ffi->new('ringkv_reply_array');
        $st = $this->ffi->ringkv_write_batch($this->handle, $batch->handle(), PhpFfi::addr($replies));
        if ($st !== 0) {
            $e = Ffi::exception($st);
            try {
                if ($batch->len() > 0) {
                    // Refused before it ran (e.g. a closed engine): the batch keeps its operations.
                    $batch->restoreOps($ops);
                }
            } catch (RingkvException) {
                // A closed batch: nothing to keep.
            }
            throw $e;
        }
        try {
            $out = [];
            $n = $replies->len;
            for ($i = 0; $i < $n; $i++) {
                $reply = $replies->ptr[$i];
                $op = $ops[$i] ?? 'int';
                $out[] = match ($reply->kind) {
                    Batch::REPLY_INT => $op === 'bool' ? $reply->integer !== 0 : $reply->integer,
                    Batch::REPLY_VALUE => $reply->value->ptr === null
                        ? null
                        : PhpFfi::string($reply->value->ptr, $reply->value->len),
                    Batch::REPLY_SET => $op === 'set_get'
                        ? ($reply->value->ptr === null ? null : PhpFfi::string($reply->value->ptr, $reply->value->len))
                        : $reply->integer === 1,
                    default => throw Ffi::argumentError("unknown batch reply kind {$reply->kind}", Status::INTERNAL),
                };
            }
            return $out;
        } finally {
            $this->ffi->ringkv_reply_array_free(PhpFfi::addr($replies));
        }
    }

    // ---- persistence, stats, read-after-write ----

    /**
     * The engine's Stats (keys, used_memory, commands, log, snapshot, ...).
     *
     * @return array<string, mixed>
     */
    public function stats(): array
    {
        $buf = $this->ffi->new($this->tBuf);
        Ffi::check($this->ffi->ringkv_stats_json($this->handle, PhpFfi::addr($buf)));
        return json_decode((string) Ffi::takeBuf($this->ffi, $buf), true, 512, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
    }

    /** SAVE: a blocking snapshot (engines with a data directory). */
    public function save(): void
    {
        Ffi::check($this->ffi->ringkv_save($this->handle));
    }

    /** BGSAVE: true when a snapshot started, false when one runs already or there is nothing to do. */
    public function bgSave(): bool
    {
        $out = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->ringkv_bgsave($this->handle, PhpFfi::addr($out)));
        return (bool) $out->cdata;
    }

    /** Flushes the log to disk. */
    public function sync(): void
    {
        Ffi::check($this->ffi->ringkv_sync($this->handle));
    }

    /**
     * The log offset just after this thread's last write to the engine (to
     * wait for followers with), or null when there was none.
     */
    public function lastWriteOffset(): ?int
    {
        $offset = $this->ffi->new($this->tU64);
        $has = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->ringkv_last_write_offset($this->handle, PhpFfi::addr($offset), PhpFfi::addr($has)));
        return $has->cdata ? $offset->cdata : null;
    }

    /** The log offset the engine has applied. */
    public function appliedOffset(): int
    {
        $out = $this->ffi->new($this->tU64);
        Ffi::check($this->ffi->ringkv_applied_offset($this->handle, PhpFfi::addr($out)));
        return $out->cdata;
    }

    /**
     * Waits at most $timeoutMs until the engine has applied $offset (read your
     * writes on a follower): false on timeout.
     */
    public function waitApplied(int $offset, int $timeoutMs): bool
    {
        if ($offset < 0 || $timeoutMs < 0) {
            throw Ffi::argumentError('offset and timeout must not be negative');
        }
        $out = $this->ffi->new($this->tBool);
        Ffi::check($this->ffi->ringkv_wait_applied($this->handle, $offset, $timeoutMs, PhpFfi::addr($out)));
        return (bool) $out->cdata;
    }

    /** "primary" or "follower". */
    public function role(): string
    {
        $out = $this->ffi->new('int32_t');
        Ffi::check($this->ffi->ringkv_role($this->handle, PhpFfi::addr($out)));
        return $out->cdata === 1 ? 'follower' : 'primary';
    }
}
