<?php

declare(strict_types=1);

namespace Ringkv;

use FFI as PhpFfi;
use FFI\CData;
use Ringkv\Exception as E;

/**
 * Access to the C library (internal to this package).
 *
 * One \FFI instance per process: the preloaded scope "RINGKV" when
 * opcache.preload ran preload.php, else FFI::cdef() over ffi/include/ringkv_php.h
 * and the library named by env RINGKV_LIB (default "libringkv.so.0", found by
 * the dynamic loader, e.g. through LD_LIBRARY_PATH).
 *
 * Also the shared helpers: status codes to exceptions, ringkv_buf and
 * ringkv_buf_array to PHP strings (always freed), and lists of byte strings
 * to the C convention (one concatenation plus a size_t[n] lengths array).
 *
 * @internal
 */
final class Ffi
{
    /** The scope name of ringkv_php.h's FFI_SCOPE. */
    public const SCOPE = 'RINGKV';

    /** The default library name (ringkv_php.h's FFI_LIB). */
    public const DEFAULT_LIB = 'libringkv.so.0';

    private static ?PhpFfi $ffi = null;

    /** @var 'scope'|'cdef'|null */
    private static ?string $mode = null;

    private static ?string $library = null;

    /** @var array<int, class-string<E\RingkvException>> */
    private const EXCEPTIONS = [
        Status::INVALID_ARGUMENT => E\InvalidArgumentException::class,
        Status::WRONG_TYPE => E\WrongTypeException::class,
        Status::NOT_AN_INTEGER => E\NotAnIntegerException::class,
        Status::NOT_A_FLOAT => E\NotAFloatException::class,
        Status::OVERFLOW => E\OverflowException::class,
        Status::INVALID_EXPIRE => E\InvalidExpireException::class,
        Status::NO_SUCH_KEY => E\NoSuchKeyException::class,
        Status::OUT_OF_MEMORY => E\OutOfMemoryException::class,
        Status::READ_ONLY => E\ReadOnlyException::class,
        Status::NO_REPLICAS => E\NoReplicasException::class,
        Status::BUSY => E\BusyException::class,
        Status::IO => E\IoException::class,
        Status::CORRUPT => E\CorruptException::class,
        Status::CONFIG => E\ConfigException::class,
        Status::REPLICATION => E\ReplicationException::class,
        Status::TIMEOUT => E\TimeoutException::class,
        Status::PANIC => E\PanicException::class,
        Status::INTERNAL => E\InternalException::class,
    ];

    private function __construct()
    {
    }

    /** The process-wide \FFI instance (loaded on first use). */
    public static function get(): PhpFfi
    {
        return self::$ffi ??= self::load();
    }

    /**
     * How the instance was obtained: "scope" (preloaded with FFI::load through
     * opcache.preload) or "cdef" (FFI::cdef at run time).
     */
    public static function mode(): string
    {
        self::get();
        return (string) self::$mode;
    }

    /** The library path given to FFI::cdef, or null in "scope" mode. */
    public static function library(): ?string
    {
        self::get();
        return self::$library;
    }

    /** Path of the PHP-loadable header (env RINGKV_HEADER, else ffi/include/ringkv_php.h). */
    public static function headerPath(): string
    {
        $env = getenv('RINGKV_HEADER');
        if (is_string($env) && $env !== '') {
            return $env;
        }
        return dirname(__DIR__, 2) . '/include/ringkv_php.h';
    }

    /** The library's version string (ringkv_version). */
    public static function version(): string
    {
        // FFI returns a `const char *` result as a PHP string already.
        $v = self::get()->ringkv_version();
        return is_string($v) ? $v : PhpFfi::string($v);
    }

    private static function load(): PhpFfi
    {
        try {
            $ffi = PhpFfi::scope(self::SCOPE);
            self::$mode = 'scope';
            self::$library = null;
            return $ffi;
        } catch (\FFI\Exception) {
            // Not preloaded: declare it ourselves.
        }
        $header = self::headerPath();
        $code = @file_get_contents($header);
        if ($code === false) {
            throw new \RuntimeException("ringkv: cannot read the C header {$header}");
        }
        // FFI::cdef() takes no preprocessor lines (FFI_SCOPE / FFI_LIB are for FFI::load()).
        $code = (string) preg_replace('/^[ \t]*#.*$/m', '', $code);
        $lib = getenv('RINGKV_LIB');
        $lib = is_string($lib) && $lib !== '' ? $lib : self::DEFAULT_LIB;
        $ffi = PhpFfi::cdef($code, $lib);
        self::$mode = 'cdef';
        self::$library = $lib;
        return $ffi;
    }

    /**
     * This thread's last error message (ringkv_last_error), "" when none.
     */
    public static function lastError(): string
    {
        $ffi = self::get();
        $written = $ffi->new('size_t');
        if ($ffi->ringkv_last_error(null, 0, PhpFfi::addr($written)) !== Status::OK) {
            return '';
        }
        $len = (int) $written->cdata;
        if ($len === 0) {
            return '';
        }
        $buf = $ffi->new('char[' . ($len + 1) . ']');
        if ($ffi->ringkv_last_error($buf, $len + 1, PhpFfi::addr($written)) !== Status::OK) {
            return '';
        }
        return PhpFfi::string($buf, min($len, (int) $written->cdata));
    }

    /**
     * The exception for a failed call's status, with the library's message.
     */
    public static function exception(int $status, ?string $message = null): E\RingkvException
    {
        $message ??= self::lastError();
        $class = self::EXCEPTIONS[$status] ?? E\InternalException::class;
        if ($message === '') {
            $message = "ringkv status {$status}";
        }
        return new $class($message, $status);
    }

    /**
     * Throws the mapped exception unless $status is RINGKV_OK.
     *
     * @throws E\RingkvException
     */
    public static function check(int $status): void
    {
        if ($status !== Status::OK) {
            throw self::exception($status);
        }
    }

    /** An exception raised by the binding itself (argument checks), same classes as the library's. */
    public static function argumentError(string $message, int $status = Status::INVALID_ARGUMENT): E\RingkvException
    {
        return self::exception($status, $message);
    }

    /**
     * Reads a ringkv_buf (null for nil) and frees it.
     */
    public static function takeBuf(PhpFfi $ffi, CData $buf): ?string
    {
        try {
            $ptr = $buf->ptr;
            return $ptr === null ? null : PhpFfi::string($ptr, $buf->len);
        } finally {
            $ffi->ringkv_buf_free(PhpFfi::addr($buf));
        }
    }

    /**
     * Reads a ringkv_buf_array (null entries for nil) and frees it.
     *
     * @return list<?string>
     */
    public static function takeArray(PhpFfi $ffi, CData $arr): array
    {
        try {
            $out = [];
            $n = $arr->len;
            if ($n > 0) {
                $items = $arr->ptr;
                for ($i = 0; $i < $n; $i++) {
                    $item = $items[$i];
                    $ptr = $item->ptr;
                    $out[] = $ptr === null ? null : PhpFfi::string($ptr, $item->len);
                }
            }
            return $out;
        } finally {
            $ffi->ringkv_buf_array_free(PhpFfi::addr($arr));
        }
    }

    /**
     * Reads a flattened pair ringkv_buf_array as field => value, and frees it.
     *
     * @return array<string, string>
     */
    public static function takePairs(PhpFfi $ffi, CData $arr): array
    {
        try {
            $out = [];
            $n = $arr->len;
            if ($n > 1) {
                $items = $arr->ptr;
                for ($i = 0; $i + 1 < $n; $i += 2) {
                    $f = $items[$i];
                    $v = $items[$i + 1];
                    $fp = $f->ptr;
                    $vp = $v->ptr;
                    $out[$fp === null ? '' : PhpFfi::string($fp, $f->len)] = $vp === null ? '' : PhpFfi::string($vp, $v->len);
                }
            }
            return $out;
        } finally {
            $ffi->ringkv_buf_array_free(PhpFfi::addr($arr));
        }
    }

    /**
     * A list of byte strings in the C convention: [concatenation, size_t[n] or null, n].
     *
     * @param array<array-key, string> $strings
     * @return array{0: string, 1: ?CData, 2: int}
     */
    public static function packList(PhpFfi $ffi, array $strings): array
    {
        $n = count($strings);
        if ($n === 0) {
            return ['', null, 0];
        }
        $lens = $ffi->new("size_t[{$n}]");
        $i = 0;
        foreach ($strings as $s) {
            $lens[$i++] = strlen($s);
        }
        return [implode('', $strings), $lens, $n];
    }

    /**
     * An assoc array as flattened pairs (field, value, ...) in the C convention.
     *
     * @param array<array-key, string|int|float> $pairs
     * @return array{0: string, 1: ?CData, 2: int}
     */
    public static function packPairs(PhpFfi $ffi, array $pairs): array
    {
        $n = 2 * count($pairs);
        if ($n === 0) {
            return ['', null, 0];
        }
        $lens = $ffi->new("size_t[{$n}]");
        $joined = '';
        $i = 0;
        foreach ($pairs as $field => $value) {
            $field = (string) $field;
            $value = (string) $value;
            $lens[$i++] = strlen($field);
            $lens[$i++] = strlen($value);
            $joined .= $field . $value;
        }
        return [$joined, $lens, $n];
    }

    /**
     * Checks a string passed as a NUL-terminated C string (paths, addresses, JSON).
     */
    public static function cString(string $s, string $what): string
    {
        if (str_contains($s, "\0")) {
            throw self::argumentError("{$what} must not contain a NUL byte");
        }
        return $s;
    }
}
