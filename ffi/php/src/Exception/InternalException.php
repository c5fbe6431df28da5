<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** Any other library error (`RINGKV_INTERNAL`). */
final class InternalException extends RingkvException
{
}
