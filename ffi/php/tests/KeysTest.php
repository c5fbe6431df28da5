<?php

declare(strict_types=1);

namespace Ringkv\Tests;

use Ringkv\Exception as E;

final class KeysTest extends TestCase
{
    public function testDelExistsType(): void
    {
        $e = $this->engine();
        $e->mSet(['a' => '1', 'b' => '2']);
        $e->hSet('h', ['f' => 'v']);
        $this->assertSame('string', $e->type('a'));
        $this->assertSame('hash', $e->type('h'));
        $this->assertSame('none', $e->type('zzz'));
        $this->assertSame(3, $e->exists('a', 'b', 'h', 'zzz'));
        $this->assertSame(2, $e->exists('a', 'a'));
        $this->assertSame(0, $e->exists());
        $this->assertSame(2, $e->del('a', 'h', 'zzz'));
        $this->assertSame(0, $e->del('a'));
        $this->assertSame(0, $e->del());
        $this->assertSame(1, $e->exists('a', 'b'));
        $this->assertSame(1, $e->dbSize());
    }

    public function testExpireFamily(): void
    {
        $e = $this->engine();
        $this->assertFalse($e->expire('missing', 10));
        $this->assertSame(-2, $e->ttl('missing'));
        $this->assertSame(-2, $e->pTtl('missing'));
        $this->assertSame(-2, $e->pExpireTime('missing'));
        $e->set('k', 'v');
        $this->assertSame(-1, $e->ttl('k'));
        $this->assertSame(-1, $e->pTtl('k'));
        $this->assertSame(-1, $e->pExpireTime('k'));

        $this->assertTrue($e->expire('k', 100));
        $this->assertContains($e->ttl('k'), [99, 100]);
        $this->assertTrue($e->pExpire('k', 50_000));
        $this->assertGreaterThan(49_000, $e->pTtl('k'));
        $this->assertLessThanOrEqual(50_000, $e->pTtl('k'));
        $at = time() + 777;
        $this->assertTrue($e->expireAt('k', $at));
        $this->assertSame($at * 1000, $e->pExpireTime('k'));
        $pat = self::nowMs() + 888_888;
        $this->assertTrue($e->pExpireAt('k', $pat));
        $this->assertSame($pat, $e->pExpireTime('k'));

        $this->assertTrue($e->persist('k'));
        $this->assertFalse($e->persist('k'));
        $this->assertFalse($e->persist('missing'));
        $this->assertSame(-1, $e->ttl('k'));

        // A time in the past deletes the key.
        $this->assertTrue($e->expireAt('k', time() - 10));
        $this->assertNull($e->get('k'));
        $this->assertSame(0, $e->exists('k'));
    }

    public function testExpireConditions(): void
    {
        $e = $this->engine();
        $e->set('k', 'v');
        // No TTL yet: XX and GT refuse (no TTL counts as infinite), NX and LT apply.
        $this->assertFalse($e->expire('k', 100, 'XX'));
        $this->assertFalse($e->expire('k', 100, 'gt'));
        $this->assertSame(-1, $e->ttl('k'));
        $this->assertTrue($e->expire('k', 100, 'NX'));
        $this->assertFalse($e->expire('k', 200, 'NX'));
        $this->assertTrue($e->expire('k', 200, 'XX'));
        $this->assertContains($e->ttl('k'), [199, 200]);
        $this->assertFalse($e->expire('k', 50, 'GT'));
        $this->assertTrue($e->expire('k', 300, 'GT'));
        $this->assertFalse($e->pExpire('k', 400_000, 'LT'));
        $this->assertTrue($e->pExpire('k', 100_000, 'LT'));
        $this->assertLessThanOrEqual(100_000, $e->pTtl('k'));
        $at = self::nowMs() + 50_000;
        $this->assertTrue($e->pExpireAt('k', $at, 'LT'));
        $this->assertSame($at, $e->pExpireTime('k'));
        $sec = time() + 60;
        $this->assertTrue($e->expireAt('k', $sec, 'GT'));
        $this->assertSame($sec * 1000, $e->pExpireTime('k'));
        $this->assertFalse($e->expire('missing', 10, 'NX'));
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $e->expire('k', 1, 'BOGUS'), 'condition');
        $this->assertThrows(E\InvalidExpireException::class, fn () => $e->expire('k', PHP_INT_MAX, 'XX'), 'invalid expire');
        $this->assertSame($sec * 1000, $e->pExpireTime('k'));
    }

    public function testRenameCopy(): void
    {
        $e = $this->engine();
        $e->set('a', '1', ex: 1000);
        $e->rename('a', 'b');
        $this->assertNull($e->get('a'));
        $this->assertSame('1', $e->get('b'));
        $this->assertGreaterThan(990, $e->ttl('b'));
        $this->assertThrows(E\NoSuchKeyException::class, fn () => $e->rename('a', 'c'), 'no such key');
        $e->set('c', '3');
        $this->assertFalse($e->renameNx('b', 'c'));
        $this->assertSame('3', $e->get('c'));
        $this->assertTrue($e->renameNx('b', 'd'));
        $this->assertSame('1', $e->get('d'));
        $this->assertThrows(E\NoSuchKeyException::class, fn () => $e->renameNx('b', 'x'));

        $this->assertFalse($e->copy('d', 'c'));
        $this->assertSame('3', $e->get('c'));
        $this->assertTrue($e->copy('d', 'c', replace: true));
        $this->assertSame('1', $e->get('c'));
        $this->assertTrue($e->copy('d', 'e'));
        $this->assertSame('1', $e->get('e'));
        $this->assertSame('1', $e->get('d'));
        $this->assertFalse($e->copy('missing', 'f'));
        $e->hSet('h', ['x' => '1', 'y' => '2']);
        $this->assertTrue($e->copy('h', 'h2'));
        $this->assertSame(['x' => '1', 'y' => '2'], self::sorted($e->hGetAll('h2')));
    }

    public function testRandomKeyDbSizeFlush(): void
    {
        $e = $this->engine();
        $this->assertNull($e->randomKey());
        $this->assertSame(0, $e->dbSize());
        $keys = [];
        for ($i = 0; $i < 50; $i++) {
            $keys["key:{$i}"] = (string) $i;
        }
        $e->mSet($keys);
        $this->assertSame(50, $e->dbSize());
        for ($i = 0; $i < 20; $i++) {
            $this->assertArrayHasKey((string) $e->randomKey(), $keys);
        }
        $e->flush();
        $this->assertSame(0, $e->dbSize());
        $this->assertNull($e->randomKey());
        $this->assertNull($e->get('key:1'));
    }

    /**
     * @param array<string, string> $a
     * @return array<string, string>
     */
    private static function sorted(array $a): array
    {
        ksort($a, SORT_STRING);
        return $a;
    }
}
