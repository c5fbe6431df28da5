<?php

declare(strict_types=1);

namespace Ringkv\Exception;

/** Bad configuration JSON (`RINGKV_CONFIG`). */
final class ConfigException extends RingkvException
{
}
