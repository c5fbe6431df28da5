<?php

/**
 * opcache.preload script: declares the ringkv C API once per server as the
 * FFI scope "RINGKV" (Ringkv\Ffi then uses FFI::scope instead of FFI::cdef).
 *
 *   php -d ffi.enable=preload -d opcache.enable_cli=1 \
 *       -d opcache.preload=ffi/php/preload.php -d opcache.preload_user=root ...
 *
 * The library is found by the header's FFI_LIB ("libringkv.so.0") through the
 * dynamic loader (LD_LIBRARY_PATH or ldconfig). Env RINGKV_HEADER overrides the
 * header path (default ffi/include/ringkv_php.h).
 */

declare(strict_types=1);

$header = getenv('RINGKV_HEADER');
if (!is_string($header) || $header === '') {
    $header = dirname(__DIR__) . '/include/ringkv_php.h';
}
if (FFI::load($header) === null) {
    throw new RuntimeException("ringkv preload: FFI::load({$header}) failed");
}
