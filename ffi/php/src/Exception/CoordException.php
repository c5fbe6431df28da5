<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/**
 * etcd could not tell a shard's leader (`Ringkv\ShardLeader`): no endpoint
 * answered, or its answer was not a leader record. Not a library error, so
 * it carries no `ringkv_status`.
 */
final class CoordException extends \RuntimeException
{
}
