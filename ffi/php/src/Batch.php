<?php

declare(strict_types=1);

namespace Ringkv;

use FFI as PhpFfi;
use FFI\CData;

/**
 * A write batch: operations queued here run atomically (all or none) with
 * {@see Engine::writeBatch()}, which returns one reply per operation:
 *
 * - set(): true; setWith(): true/false (applied), or with get: the previous value (?string)
 * - del(), pExpire(), pExpireAt(), persist(), exists(): bool
 * - incrBy(), hIncrBy(): the new value; append(): the new length; hSet(): fields added;
 *   hDel(): fields removed; hLen(): the length (int)
 * - ttl(): milliseconds (int, -2 missing, -1 no expiry)
 * - get(), hGet(): ?string
 *
 * A batch is emptied by writeBatch (also when it fails) and can be reused.
 * Single-thread object. Adding methods return $this.
 */
final class Batch
{
    /** @internal ringkv_reply_kind */
    public const REPLY_INT = 0;
    /** @internal */
    public const REPLY_VALUE = 1;
    /** @internal */
    public const REPLY_SET = 2;

    private PhpFfi $ffi;

    private ?CData $handle;

    /**
     * How to map each operation's reply: 'int', 'bool', 'value', 'set', 'set_get'.
     *
     * @var list<string>
     */
    private array $ops = [];

    public function __construct()
    {
        $this->ffi = Ffi::get();
        $out = $this->ffi->new('ringkv_batch*');
        Ffi::check($this->ffi->ringkv_batch_new(PhpFfi::addr($out)));
        $this->handle = $out;
    }

    /** Frees the batch (idempotent). */
    public function close(): void
    {
        if ($this->handle !== null) {
            $handle = $this->handle;
            $this->handle = null;
            $this->ops = [];
            $this->ffi->ringkv_batch_free($handle);
        }
    }

    public function __destruct()
    {
        $this->close();
    }

    /** Number of queued operations (ringkv_batch_len). */
    public function len(): int
    {
        $out = $this->ffi->new('size_t');
        Ffi::check($this->ffi->ringkv_batch_len($this->handle, PhpFfi::addr($out)));
        return $out->cdata;
    }

    /** SET key value. */
    public function set(string $key, string $value): self
    {
        return $this->add('set', $this->ffi->ringkv_batch_set($this->handle, $key, strlen($key), $value, strlen($value)));
    }

    /** SET with options (see {@see Engine::set()}). */
    public function setWith(
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
    ): self {
        $condition = Options::setCondition($nx, $xx);
        [$kind, $n] = Options::expiry('set', $ex, $px, $exat, $pxat, $keepTtl);
        return $this->add($get ? 'set_get' : 'set', $this->ffi->ringkv_batch_set_with(
            $this->handle,
            $key,
            strlen($key),
            $value,
            strlen($value),
            $condition,
            $kind,
            $n,
            $get,
        ));
    }

    /** DEL key. */
    public function del(string $key): self
    {
        return $this->add('bool', $this->ffi->ringkv_batch_del($this->handle, $key, strlen($key)));
    }

    /** INCRBY key delta. */
    public function incrBy(string $key, int $delta): self
    {
        return $this->add('int', $this->ffi->ringkv_batch_incr_by($this->handle, $key, strlen($key), $delta));
    }

    /** APPEND key value. */
    public function append(string $key, string $value): self
    {
        return $this->add('int', $this->ffi->ringkv_batch_append($this->handle, $key, strlen($key), $value, strlen($value)));
    }

    /** PEXPIRE key milliseconds. */
    public function pExpire(string $key, int $millis): self
    {
        return $this->add('bool', $this->ffi->ringkv_batch_pexpire($this->handle, $key, strlen($key), $millis));
    }

    /** PEXPIREAT key unix-milliseconds. */
    public function pExpireAt(string $key, int $unixMillis): self
    {
        return $this->add('bool', $this->ffi->ringkv_batch_pexpire_at($this->handle, $key, strlen($key), $unixMillis));
    }

    /** PERSIST key. */
    public function persist(string $key): self
    {
        return $this->add('bool', $this->ffi->ringkv_batch_persist($this->handle, $key, strlen($key)));
    }

    /**
     * HSET key field value ...
     *
     * @param array<array-key, string|int|float> $fields field => value
     */
    public function hSet(string $key, array $fields): self
    {
        [$joined, $lens, $n] = Ffi::packPairs($this->ffi, $fields);
        return $this->add('int', $this->ffi->ringkv_batch_hset($this->handle, $key, strlen($key), $joined, $lens, $n));
    }

    /** HDEL key field ... */
    public function hDel(string $key, string ...$fields): self
    {
        [$joined, $lens, $n] = Ffi::packList($this->ffi, $fields);
        return $this->add('int', $this->ffi->ringkv_batch_hdel($this->handle, $key, strlen($key), $joined, $lens, $n));
    }

    /** HINCRBY key field delta. */
    public function hIncrBy(string $key, string $field, int $delta): self
    {
        return $this->add('int', $this->ffi->ringkv_batch_hincr_by(
            $this->handle,
            $key,
            strlen($key),
            $field,
            strlen($field),
            $delta,
        ));
    }

    /** GET key (read inside the batch, after the operations before it). */
    public function get(string $key): self
    {
        return $this->add('value', $this->ffi->ringkv_batch_get($this->handle, $key, strlen($key)));
    }

    /** HGET key field. */
    public function hGet(string $key, string $field): self
    {
        return $this->add('value', $this->ffi->ringkv_batch_hget($this->handle, $key, strlen($key), $field, strlen($field)));
    }

    /** EXISTS key. */
    public function exists(string $key): self
    {
        return $this->add('bool', $this->ffi->ringkv_batch_exists($this->handle, $key, strlen($key)));
    }

    /** PTTL key (the reply is in milliseconds). */
    public function ttl(string $key): self
    {
        return $this->add('int', $this->ffi->ringkv_batch_ttl($this->handle, $key, strlen($key)));
    }

    /** HLEN key. */
    public function hLen(string $key): self
    {
        return $this->add('int', $this->ffi->ringkv_batch_hlen($this->handle, $key, strlen($key)));
    }

    private function add(string $op, int $status): self
    {
        Ffi::check($status);
        $this->ops[] = $op;
        return $this;
    }

    /**
     * The raw ringkv_batch* (null when closed).
     *
     * @internal
     */
    public function handle(): ?CData
    {
        return $this->handle;
    }

    /**
     * Hands the queued operations' reply kinds to writeBatch and forgets them.
     *
     * @internal
     * @return list<string>
     */
    public function takeOps(): array
    {
        $ops = $this->ops;
        $this->ops = [];
        return $ops;
    }

    /**
     * @internal
     * @param list<string> $ops
     */
    public function restoreOps(array $ops): void
    {
        $this->ops = $ops;
    }
}
