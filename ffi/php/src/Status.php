<?php

declare(strict_types=1);

namespace Ringkv;

/**
 * The library's `ringkv_status` codes (RingkvException::getStatus()).
 */
final class Status
{
    public const OK = 0;
    public const INVALID_ARGUMENT = 1;
    public const WRONG_TYPE = 2;
    public const NOT_AN_INTEGER = 3;
    public const NOT_A_FLOAT = 4;
    public const OVERFLOW = 5;
    public const INVALID_EXPIRE = 6;
    public const NO_SUCH_KEY = 7;
    public const OUT_OF_MEMORY = 8;
    public const READ_ONLY = 9;
    public const NO_REPLICAS = 10;
    public const BUSY = 11;
    public const IO = 12;
    public const CORRUPT = 13;
    public const CONFIG = 14;
    public const REPLICATION = 15;
    public const TIMEOUT = 16;
    public const PANIC = 17;
    public const INTERNAL = 18;

    private function __construct()
    {
    }
}
