<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** I/O error (e.g. a full disk) (`RINGKV_IO`). */
final class IoException extends RingkvException
{
}
