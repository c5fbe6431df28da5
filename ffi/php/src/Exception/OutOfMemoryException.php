<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** maxmemory reached under the noeviction policy (`RINGKV_OUT_OF_MEMORY`). */
final class OutOfMemoryException extends RingkvException
{
}
