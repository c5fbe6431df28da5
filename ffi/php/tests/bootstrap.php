<?php

/**
 * PHPUnit bootstrap: a hand-written PSR-4 autoloader (no composer install
 * offline) for Ringkv\ => src/ and Ringkv\Tests\ => tests/.
 */

declare(strict_types=1);

if (!extension_loaded('ffi')) {
    fwrite(STDERR, "ringkv tests: the FFI extension is not loaded\n");
    exit(1);
}

spl_autoload_register(static function (string $class): void {
    static $prefixes = [
        'Ringkv\\Tests\\' => __DIR__ . '/',
        'Ringkv\\' => __DIR__ . '/../src/',
    ];
    foreach ($prefixes as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});
