<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** The value is not an integer or out of range (`RINGKV_NOT_AN_INTEGER`). */
final class NotAnIntegerException extends RingkvException
{
}
