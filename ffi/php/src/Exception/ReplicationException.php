<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** Replication, TLS or connection failure (`RINGKV_REPLICATION`). */
final class ReplicationException extends RingkvException
{
}
