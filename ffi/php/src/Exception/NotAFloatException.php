<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** The value is not a valid float, or the increment would give NaN/Infinity (`RINGKV_NOT_A_FLOAT`). */
final class NotAFloatException extends RingkvException
{
}
