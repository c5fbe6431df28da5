<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** A snapshot is already in progress, the data directory is locked, or the ring log is being reset by a full sync (`RINGKV_BUSY`): retry later. */
final class BusyException extends RingkvException
{
}
