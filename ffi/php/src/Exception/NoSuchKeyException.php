<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** Rename or copy of a missing key (`RINGKV_NO_SUCH_KEY`). */
final class NoSuchKeyException extends RingkvException
{
}
