<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** A bug: the library caught a panic (`RINGKV_PANIC`). */
final class PanicException extends RingkvException
{
}
