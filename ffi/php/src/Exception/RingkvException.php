<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/**
 * Base class of every error reported by ringkv.
 *
 * The status is the library's `ringkv_status` code (also given as the
 * exception code); the message is the library's own (ringkv_last_error).
 */
class RingkvException extends \RuntimeException
{
    /**
     * @param string $message The library's message.
     * @param int $status The `ringkv_status` code.
     */
    public function __construct(string $message, private readonly int $status, ?\Throwable $previous = null)
    {
        parent::__construct($message, $status, $previous);
    }

    /** The `ringkv_status` code (RINGKV_INVALID_ARGUMENT = 1, ...). */
    public function getStatus(): int
    {
        return $this->status;
    }
}
