<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** The data directory, log or snapshot is damaged (`RINGKV_CORRUPT`). */
final class CorruptException extends RingkvException
{
}
