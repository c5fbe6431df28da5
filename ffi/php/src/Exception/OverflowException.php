<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** Increment or decrement would overflow (`RINGKV_OVERFLOW`). */
final class OverflowException extends RingkvException
{
}
