<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** Invalid expire time (`RINGKV_INVALID_EXPIRE`). */
final class InvalidExpireException extends RingkvException
{
}
