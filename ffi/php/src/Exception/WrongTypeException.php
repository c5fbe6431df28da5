<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** Operation against a key holding the wrong kind of value (WRONGTYPE) (`RINGKV_WRONG_TYPE`). */
final class WrongTypeException extends RingkvException
{
}
