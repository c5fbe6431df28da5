<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** A snapshot is already in progress, or the data directory is locked (`RINGKV_BUSY`). */
final class BusyException extends RingkvException
{
}
