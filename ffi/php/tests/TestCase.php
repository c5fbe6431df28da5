<?php

declare(strict_types=1);

namespace Ringkv\Tests;

use Ringkv\Engine;

/**
 * Shared helpers: temporary directories removed after each test, engines
 * closed after each test.
 */
abstract class TestCase extends \PHPUnit\Framework\TestCase
{
    /** Small ring log so data directories stay small. */
    protected const SMALL_LOG = ['log' => ['capacity' => 8 * 1024 * 1024]];

    /** @var list<string> */
    private array $tempDirs = [];

    /** @var list<Engine> */
    private array $engines = [];

    protected function tearDown(): void
    {
        foreach (array_reverse($this->engines) as $engine) {
            $engine->close();
        }
        $this->engines = [];
        gc_collect_cycles();
        foreach ($this->tempDirs as $dir) {
            self::removeTree($dir);
        }
        $this->tempDirs = [];
    }

    /** A fresh in-memory engine, closed after the test. */
    protected function engine(?string $dir = null, array $config = [], bool $anonymousLog = false): Engine
    {
        $engine = Engine::open($dir, $config, $anonymousLog);
        $this->engines[] = $engine;
        return $engine;
    }

    /**
     * Opens $dir again right away: freeing an engine waits for its background
     * save (a BGSAVE, or a follower's snapshot after a full sync), so the
     * directory's lock is free once close() returns.
     */
    protected function reopen(string $dir, array $config = self::SMALL_LOG): Engine
    {
        return $this->engine($dir, $config);
    }

    /** A new empty directory, removed after the test. */
    protected function tempDir(string $name = 'ringkv'): string
    {
        $dir = sys_get_temp_dir() . '/' . $name . '-php-' . bin2hex(random_bytes(6));
        if (!mkdir($dir, 0700)) {
            throw new \RuntimeException("cannot create {$dir}");
        }
        $this->tempDirs[] = $dir;
        return $dir;
    }

    /**
     * Removes $dir. Retries for at most 5 s: a follower's background work
     * (snapshot after a full sync) may still be changing its data directory
     * just after the engine was freed (see the report on ringkv_follower_free).
     */
    protected static function removeTree(string $dir): void
    {
        $deadline = hrtime(true) + 5_000_000_000;
        while (is_dir($dir)) {
            try {
                $it = new \RecursiveIteratorIterator(
                    new \RecursiveDirectoryIterator($dir, \FilesystemIterator::SKIP_DOTS),
                    \RecursiveIteratorIterator::CHILD_FIRST,
                );
                foreach ($it as $file) {
                    $path = $file->getPathname();
                    $file->isDir() && !$file->isLink() ? @rmdir($path) : @unlink($path);
                }
            } catch (\UnexpectedValueException) {
                // A subdirectory vanished while listing: try again.
            }
            if (@rmdir($dir) || hrtime(true) > $deadline) {
                break;
            }
            usleep(20_000);
        }
    }

    /** Current unix time in milliseconds. */
    protected static function nowMs(): int
    {
        return (int) floor(microtime(true) * 1000);
    }

    /**
     * Polls $condition every 10 ms for at most $timeoutMs.
     */
    protected static function waitUntil(callable $condition, int $timeoutMs): bool
    {
        $deadline = hrtime(true) + $timeoutMs * 1_000_000;
        do {
            if ($condition()) {
                return true;
            }
            usleep(10_000);
        } while (hrtime(true) < $deadline);
        return (bool) $condition();
    }

    /**
     * Asserts that $fn throws $class (with the message containing $messagePart, case-insensitive).
     *
     * @param class-string<\Throwable> $class
     */
    protected function assertThrows(string $class, callable $fn, ?string $messagePart = null): \Throwable
    {
        try {
            $fn();
        } catch (\Throwable $e) {
            $this->assertInstanceOf($class, $e, 'got ' . get_class($e) . ': ' . $e->getMessage());
            if ($messagePart !== null) {
                $this->assertStringContainsStringIgnoringCase($messagePart, $e->getMessage());
            }
            return $e;
        }
        $this->fail("expected {$class}, nothing was thrown");
    }
}
