<?php

declare(strict_types=1);

namespace Ringkv;

/**
 * Development TLS material for replication tests and demos (never production).
 */
final class DevCerts
{
    private function __construct()
    {
    }

    /**
     * Writes into $dir (created if missing): ca.pem, server.pem / server.key
     * (for "localhost" and 127.0.0.1), client.pem / client.key.
     */
    public static function write(string $dir): void
    {
        Ffi::cString($dir, 'the directory');
        if (!is_dir($dir) && !@mkdir($dir, 0700, true) && !is_dir($dir)) {
            throw new \RuntimeException("ringkv: cannot create {$dir}");
        }
        Ffi::check(Ffi::get()->ringkv_dev_certs($dir));
    }
}
