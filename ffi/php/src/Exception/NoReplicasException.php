<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** The write gate refused the write (not enough replicas) (`RINGKV_NO_REPLICAS`). */
final class NoReplicasException extends RingkvException
{
}
