<?php

declare(strict_types=1);

namespace Ringkv;

/**
 * Turns the named PHP options of SET / GETEX / EXPIRE into the library's
 * integer enums (ringkv_set_condition, ringkv_expiry, ringkv_expire_condition).
 *
 * @internal
 */
final class Options
{
    public const SET_ALWAYS = 0;
    public const SET_NX = 1;
    public const SET_XX = 2;

    public const EXPIRY_NONE = 0;
    public const EXPIRY_KEEP = 1;
    public const EXPIRY_PERSIST = 2;
    public const EXPIRY_SECONDS = 3;
    public const EXPIRY_MILLIS = 4;
    public const EXPIRY_AT_SECONDS = 5;
    public const EXPIRY_AT_MILLIS = 6;

    public const EXPIRE_CONDITIONS = ['NX' => 1, 'XX' => 2, 'GT' => 3, 'LT' => 4];

    private function __construct()
    {
    }

    /**
     * SET's condition.
     */
    public static function setCondition(bool $nx, bool $xx): int
    {
        if ($nx && $xx) {
            throw Ffi::argumentError('syntax error: NX and XX are exclusive');
        }
        return $nx ? self::SET_NX : ($xx ? self::SET_XX : self::SET_ALWAYS);
    }

    /**
     * The expiry kind and number of SET (keepTtl) or GETEX (persist).
     *
     * @return array{0: int, 1: int} [ringkv_expiry, number]
     */
    public static function expiry(
        string $command,
        ?int $ex,
        ?int $px,
        ?int $exat,
        ?int $pxat,
        bool $keepTtl = false,
        bool $persist = false,
    ): array {
        $chosen = [];
        if ($ex !== null) {
            $chosen[] = [self::EXPIRY_SECONDS, $ex];
        }
        if ($px !== null) {
            $chosen[] = [self::EXPIRY_MILLIS, $px];
        }
        if ($exat !== null) {
            $chosen[] = [self::EXPIRY_AT_SECONDS, $exat];
        }
        if ($pxat !== null) {
            $chosen[] = [self::EXPIRY_AT_MILLIS, $pxat];
        }
        if ($keepTtl) {
            $chosen[] = [self::EXPIRY_KEEP, 0];
        }
        if ($persist) {
            $chosen[] = [self::EXPIRY_PERSIST, 0];
        }
        if (count($chosen) > 1) {
            throw Ffi::argumentError("syntax error: at most one of EX, PX, EXAT, PXAT, KEEPTTL/PERSIST in '{$command}'");
        }
        if ($chosen === []) {
            return [self::EXPIRY_NONE, 0];
        }
        [$kind, $n] = $chosen[0];
        if ($n < 0) {
            // The C argument is unsigned: refuse here what Redis refuses.
            throw Ffi::argumentError("invalid expire time in '{$command}' command", Status::INVALID_EXPIRE);
        }
        return [$kind, $n];
    }

    /**
     * EXPIRE's condition: null (always), 'NX', 'XX', 'GT' or 'LT' (any case).
     */
    public static function expireCondition(?string $condition): int
    {
        if ($condition === null) {
            return 0;
        }
        $c = self::EXPIRE_CONDITIONS[strtoupper($condition)] ?? null;
        if ($c === null) {
            throw Ffi::argumentError("unsupported expire condition '{$condition}' (NX, XX, GT or LT)");
        }
        return $c;
    }

    /**
     * Unix milliseconds of now + $amount × $unitMs, refusing what does not fit an int64.
     */
    public static function absoluteMillis(int $amount, int $unitMs, bool $relative, string $command): int
    {
        $base = $relative ? (int) floor(microtime(true) * 1000) : 0;
        $limit = intdiv(PHP_INT_MAX - $base, $unitMs);
        if ($amount > $limit || $amount < -$limit) {
            throw Ffi::argumentError("invalid expire time in '{$command}' command", Status::INVALID_EXPIRE);
        }
        return $base + $amount * $unitMs;
    }

    /**
     * A SCAN type filter (ringkv_key_type): null (any), "string" or "hash".
     */
    public static function keyType(?string $type): int
    {
        return match ($type === null ? null : strtolower($type)) {
            null => 0,
            'string' => 1,
            'hash' => 2,
            default => throw Ffi::argumentError("unknown type name '{$type}' (string or hash)"),
        };
    }
}
