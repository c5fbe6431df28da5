<?php

declare(strict_types=1);

namespace Ringkv\Tests;

use FFI;
use Ringkv\Engine;
use Ringkv\Exception as E;
use Ringkv\Ffi as RingkvFfi;
use Ringkv\Status;

final class ErrorsTest extends TestCase
{
    public function testEveryStatusHasItsException(): void
    {
        $map = [
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
        $this->assertCount(18, $map);
        foreach ($map as $status => $class) {
            $ex = RingkvFfi::exception($status, "message {$status}");
            $this->assertSame($class, get_class($ex));
            $this->assertInstanceOf(E\RingkvException::class, $ex);
            $this->assertInstanceOf(\RuntimeException::class, $ex);
            $this->assertSame($status, $ex->getStatus());
            $this->assertSame("message {$status}", $ex->getMessage());
        }
        $this->assertInstanceOf(E\InternalException::class, RingkvFfi::exception(99, 'x'));
        RingkvFfi::check(Status::OK);
    }

    public function testMessageComesFromTheLibrary(): void
    {
        $e = $this->engine();
        $e->hSet('h', ['f' => 'v']);
        $ex = $this->assertThrows(E\WrongTypeException::class, fn () => $e->get('h'));
        $this->assertSame(RingkvFfi::lastError(), $ex->getMessage());
        $this->assertStringStartsWith('WRONGTYPE', $ex->getMessage());
        $e->set('s', 'x');
        $ex = $this->assertThrows(E\NotAnIntegerException::class, fn () => $e->incrBy('s', 2));
        $this->assertSame(Status::NOT_AN_INTEGER, $ex->getStatus());
        $this->assertSame(RingkvFfi::lastError(), $ex->getMessage());
    }

    public function testClosedEngineThrowsInvalidArgument(): void
    {
        $e = Engine::open();
        $e->set('k', 'v');
        $this->assertFalse($e->isClosed());
        $e->close();
        $e->close(); // idempotent
        $this->assertTrue($e->isClosed());
        $calls = [
            fn () => $e->get('k'),
            fn () => $e->set('k', 'v'),
            fn () => $e->set('k', 'v', ex: 10),
            fn () => $e->del('k'),
            fn () => $e->hSet('h', ['f' => 'v']),
            fn () => $e->hGetAll('h'),
            fn () => $e->dbSize(),
            fn () => $e->stats(),
            fn () => $e->role(),
            fn () => iterator_to_array($e->scan()),
            fn () => iterator_to_array($e->hScan('h')),
            fn () => $e->writeBatch($e->batch()->set('a', 'b')),
        ];
        foreach ($calls as $fn) {
            $ex = $this->assertThrows(E\InvalidArgumentException::class, $fn);
            $this->assertSame(Status::INVALID_ARGUMENT, $ex->getStatus());
            $this->assertNotSame('', $ex->getMessage());
            $this->assertStringNotContainsString('ringkv status', $ex->getMessage(), 'the library gave no message');
        }
    }

    public function testFreedHandleIsDetected(): void
    {
        $ffi = RingkvFfi::get();
        $out = $ffi->new('ringkv_engine*');
        $this->assertSame(0, $ffi->ringkv_engine_open(null, null, 0, FFI::addr($out)));
        $count = $ffi->new('uint64_t');
        $this->assertSame(0, $ffi->ringkv_dbsize($out, FFI::addr($count)));
        $ffi->ringkv_engine_free($out);
        // The same (now freed) pointer again: detected, no crash.
        $status = $ffi->ringkv_dbsize($out, FFI::addr($count));
        $this->assertSame(Status::INVALID_ARGUMENT, $status);
        $this->assertNotSame('', RingkvFfi::lastError());
        $buf = $ffi->new('ringkv_buf');
        $this->assertSame(Status::INVALID_ARGUMENT, $ffi->ringkv_get($out, 'k', 1, FFI::addr($buf)));
        $this->assertNull($buf->ptr);
        $ffi->ringkv_buf_free(FFI::addr($buf)); // safe on nil
    }

    public function testNullBufferWithLength(): void
    {
        $e = $this->engine();
        $ffi = RingkvFfi::get();
        $this->assertSame(Status::INVALID_ARGUMENT, $ffi->ringkv_set($e->handle(), null, 3, 'v', 1));
        $this->assertSame(Status::OK, $ffi->ringkv_set($e->handle(), null, 0, 'v', 1));
        $this->assertSame('v', $e->get(''));
    }

    public function testBadEnumIsRefusedByTheLibrary(): void
    {
        $e = $this->engine();
        $ffi = RingkvFfi::get();
        $applied = $ffi->new('bool');
        $st = $ffi->ringkv_set_with($e->handle(), 'k', 1, 'v', 1, 9, 0, 0, false, FFI::addr($applied), null);
        $this->assertSame(Status::INVALID_ARGUMENT, $st);
        $st = $ffi->ringkv_pexpire_at_if($e->handle(), 'k', 1, self::nowMs() + 1000, 42, FFI::addr($applied));
        $this->assertSame(Status::INVALID_ARGUMENT, $st);
        $this->assertNull($e->get('k'));
    }

    public function testConfigErrors(): void
    {
        $this->assertThrows(E\ConfigException::class, fn () => Engine::open(null, ['no_such_option' => 1]));
        $this->assertThrows(E\ConfigException::class, fn () => Engine::open(null, ['maxmemory_policy' => 'bogus']));
        $this->assertThrows(E\InvalidArgumentException::class, fn () => Engine::open("/tmp/a\0b"));
        $e = $this->engine(null, ['maxmemory' => 1 << 30, 'maxmemory_policy' => 'allkeys-lru']);
        $this->assertSame(1 << 30, $e->stats()['maxmemory']);
    }

    public function testDataDirectoryIsLocked(): void
    {
        $dir = $this->tempDir();
        $e = $this->engine($dir, self::SMALL_LOG);
        $ex = $this->assertThrows(E\BusyException::class, fn () => Engine::open($dir, self::SMALL_LOG));
        $this->assertSame(Status::BUSY, $ex->getStatus());
        $e->close();
        $again = $this->engine($dir, self::SMALL_LOG);
        $this->assertSame('primary', $again->role());
    }

    public function testOutOfMemoryUnderNoeviction(): void
    {
        $e = $this->engine(null, ['maxmemory' => 1 << 20, 'maxmemory_policy' => 'noeviction']);
        $value = str_repeat('x', 1000);
        $written = 0;
        $ex = null;
        for ($i = 0; $i < 10_000; $i++) {
            try {
                $e->set("k{$i}", $value);
                $written++;
            } catch (E\OutOfMemoryException $caught) {
                $ex = $caught;
                break;
            }
        }
        $this->assertNotNull($ex, 'maxmemory was never reached');
        $this->assertSame(Status::OUT_OF_MEMORY, $ex->getStatus());
        $this->assertStringContainsStringIgnoringCase('OOM', $ex->getMessage());
        $this->assertGreaterThan(100, $written);
        // Reads and deletes still work.
        $this->assertSame($value, $e->get('k0'));
        $this->assertSame(1, $e->del('k0'));
    }
}
