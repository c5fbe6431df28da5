<?php

declare(strict_types=1);

namespace Ringkv\Tests;

use Ringkv\Engine;
use Ringkv\Exception as E;

final class StringsTest extends TestCase
{
    public function testVersion(): void
    {
        $this->assertMatchesRegularExpression('/^\d+\.\d+\.\d+/', Engine::version());
    }

    public function testGetSet(): void
    {
        $e = $this->engine();
        $this->assertNull($e->get('missing'));
        $this->assertTrue($e->set('k', 'v'));
        $this->assertSame('v', $e->get('k'));
        $this->assertTrue($e->set('k', 'v2'));
        $this->assertSame('v2', $e->get('k'));
        $this->assertTrue($e->set('empty', ''));
        $this->assertSame('', $e->get('empty'));
        $big = str_repeat('x', 1 << 20);
        $e->set('big', $big);
        $this->assertSame($big, $e->get('big'));
    }

    public function testSetNxXx(): void
    {
        $e = $this->engine();
        $this->assertFalse($e->set('k', 'a', xx: true));
        $this->assertNull($e->get('k'));
        $this->assertTrue($e->set('k', 'a', nx: true));
        $this->assertFalse($e->set('k', 'b', nx: true));
        $this->assertSame('a', $e->get('k'));
        $this->assertTrue($e->set('k', 'c', xx: true));
        $this->assertSame('c', $e->get('k'));
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $e->set('k', 'd', nx: true, xx: true), 'syntax');
    }

    public function testSetGetOption(): void
    {
        $e = $this->engine();
        $this->assertNull($e->set('k', 'a', get: true));
        $this->assertSame('a', $e->set('k', 'b', get: true));
        $this->assertSame('b', $e->get('k'));
        // NX + GET: not written, the old value comes back.
        $this->assertSame('b', $e->set('k', 'c', nx: true, get: true));
        $this->assertSame('b', $e->get('k'));
        $e->hSet('h', ['f' => 'v']);
        $this->assertThrows(E\WrongTypeException::class, fn () => $e->set('h', 'x', get: true), 'WRONGTYPE');
        $this->assertSame('hash', $e->type('h'));
    }

    public function testSetExpiryOptions(): void
    {
        $e = $this->engine();
        $e->set('ex', 'v', ex: 100);
        $this->assertGreaterThanOrEqual(99, $e->ttl('ex'));
        $this->assertLessThanOrEqual(100, $e->ttl('ex'));
        $e->set('px', 'v', px: 100_000);
        $this->assertGreaterThan(98_000, $e->pTtl('px'));
        $this->assertLessThanOrEqual(100_000, $e->pTtl('px'));
        $at = time() + 1000;
        $e->set('exat', 'v', exat: $at);
        $this->assertSame($at * 1000, $e->pExpireTime('exat'));
        $pxat = self::nowMs() + 500_000;
        $e->set('pxat', 'v', pxat: $pxat);
        $this->assertSame($pxat, $e->pExpireTime('pxat'));
        // A plain SET clears the TTL, KEEPTTL keeps it.
        $e->set('pxat', 'w', keepTtl: true);
        $this->assertSame($pxat, $e->pExpireTime('pxat'));
        $this->assertSame('w', $e->get('pxat'));
        $e->set('pxat', 'z');
        $this->assertSame(-1, $e->ttl('pxat'));
        // Errors.
        $this->assertThrows(E\InvalidExpireException::class, fn () => $e->set('k', 'v', ex: 0), 'invalid expire');
        $this->assertThrows(E\InvalidExpireException::class, fn () => $e->set('k', 'v', ex: -5), 'invalid expire');
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $e->set('k', 'v', ex: 1, px: 1000));
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $e->set('k', 'v', ex: 1, keepTtl: true));
        $this->assertNull($e->get('k'));
    }

    public function testIncrDecr(): void
    {
        $e = $this->engine();
        $this->assertSame(1, $e->incr('n'));
        $this->assertSame(11, $e->incrBy('n', 10));
        $this->assertSame(10, $e->decr('n'));
        $this->assertSame(-5, $e->decrBy('n', 15));
        $this->assertSame('-5', $e->get('n'));
        $e->set('max', (string) PHP_INT_MAX);
        $this->assertThrows(E\OverflowException::class, fn () => $e->incr('max'), 'overflow');
        $this->assertThrows(E\OverflowException::class, fn () => $e->decrBy('n', PHP_INT_MIN), 'overflow');
        $e->set('s', 'abc');
        $this->assertThrows(E\NotAnIntegerException::class, fn () => $e->incr('s'), 'not an integer');
        $this->assertSame('abc', $e->get('s'));
    }

    public function testIncrByFloat(): void
    {
        $e = $this->engine();
        $this->assertSame('10.5', $e->incrByFloat('f', 10.5));
        $this->assertSame('10.6', $e->incrByFloat('f', 0.1));
        $e->set('i', '3');
        $this->assertSame('5.5', $e->incrByFloat('i', 2.5));
        $this->assertSame('5', $e->incrByFloat('i', -0.5));
        $e->set('s', 'x');
        $this->assertThrows(E\NotAFloatException::class, fn () => $e->incrByFloat('s', 1.0), 'float');
        $this->assertThrows(E\NotAFloatException::class, fn () => $e->incrByFloat('f', INF));
        $this->assertSame('10.6', $e->get('f'));
    }

    public function testAppendGetDelSetRange(): void
    {
        $e = $this->engine();
        $this->assertSame(5, $e->append('a', 'hello'));
        $this->assertSame(11, $e->append('a', ' world'));
        $this->assertSame('hello world', $e->get('a'));
        $this->assertSame(11, $e->setRange('a', 6, 'WORLD'));
        $this->assertSame('hello WORLD', $e->get('a'));
        $this->assertSame(8, $e->setRange('pad', 5, 'abc'));
        $this->assertSame("\0\0\0\0\0abc", $e->get('pad'));
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $e->setRange('a', -1, 'x'), 'out of range');
        $this->assertSame('hello WORLD', $e->getDel('a'));
        $this->assertNull($e->get('a'));
        $this->assertNull($e->getDel('a'));
        $this->assertSame(0, $e->exists('a'));
    }

    public function testGetEx(): void
    {
        $e = $this->engine();
        $this->assertNull($e->getEx('missing', ex: 10));
        $e->set('k', 'v');
        $this->assertSame('v', $e->getEx('k'));
        $this->assertSame(-1, $e->ttl('k'));
        $this->assertSame('v', $e->getEx('k', ex: 50));
        $this->assertGreaterThanOrEqual(49, $e->ttl('k'));
        $this->assertSame('v', $e->getEx('k', px: 20_000));
        $this->assertLessThanOrEqual(20_000, $e->pTtl('k'));
        $this->assertGreaterThan(19_000, $e->pTtl('k'));
        $at = time() + 3000;
        $this->assertSame('v', $e->getEx('k', exat: $at));
        $this->assertSame($at * 1000, $e->pExpireTime('k'));
        $this->assertSame('v', $e->getEx('k', pxat: $at * 1000 + 7));
        $this->assertSame($at * 1000 + 7, $e->pExpireTime('k'));
        $this->assertSame('v', $e->getEx('k', persist: true));
        $this->assertSame(-1, $e->pTtl('k'));
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $e->getEx('k', ex: 1, persist: true));
        $this->assertThrows(E\InvalidExpireException::class, fn () => $e->getEx('k', ex: -1));
    }

    public function testMGetMSetMSetNx(): void
    {
        $e = $this->engine();
        $this->assertSame([], $e->mGet([]));
        $e->mSet(['a' => '1', 'b' => '2', 'c' => '']);
        $e->hSet('h', ['f' => 'v']);
        $this->assertSame(['1', null, '2', '', null], $e->mGet(['a', 'missing', 'b', 'c', 'h']));
        $this->assertFalse($e->mSetNx(['new' => 'x', 'a' => 'y']));
        $this->assertNull($e->get('new'));
        $this->assertSame('1', $e->get('a'));
        $this->assertTrue($e->mSetNx(['new' => 'x', 'new2' => 'y']));
        $this->assertSame(['x', 'y'], $e->mGet(['new', 'new2']));
        // Numeric string keys (PHP int array keys) are passed as strings.
        $e->mSet(['10' => 'ten', '11' => 'eleven']);
        $this->assertSame('ten', $e->get('10'));
        $this->assertSame(8, $e->dbSize());
    }
}
