<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** Write on a follower (`RINGKV_READ_ONLY`). */
final class ReadOnlyException extends RingkvException
{
}
