<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** A bounded wait timed out (`RINGKV_TIMEOUT`). */
final class TimeoutException extends RingkvException
{
}
