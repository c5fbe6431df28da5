<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** NULL or freed handle, bad option value, key/value too large, bad syntax (`RINGKV_INVALID_ARGUMENT`). */
final class InvalidArgumentException extends RingkvException
{
}
