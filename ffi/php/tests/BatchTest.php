<?php

declare(strict_types=1);

namespace Ringkv\Tests;

use Ringkv\Batch;
use Ringkv\Exception as E;

final class BatchTest extends TestCase
{
    public function testRepliesAreMappedPerOperation(): void
    {
        $e = $this->engine();
        $e->set('old', 'was');
        $e->set('todel', 'x');
        $b = $e->batch();
        $this->assertInstanceOf(Batch::class, $b);
        $b->set('a', '1')
            ->setWith('old', 'now', get: true)
            ->setWith('a', 'nx', nx: true)
            ->setWith('ttl', 'v', px: 60_000)
            ->del('todel')
            ->del('nothere')
            ->incrBy('n', 5)
            ->append('a', '23')
            ->pExpire('a', 100_000)
            ->pExpireAt('old', self::nowMs() + 200_000)
            ->persist('old')
            ->hSet('h', ['f1' => 'v1', 'f2' => 'v2'])
            ->hDel('h', 'f2', 'nope')
            ->hIncrBy('h', 'c', 3)
            ->get('a')
            ->get('missing')
            ->hGet('h', 'f1')
            ->hGet('h', 'f2')
            ->exists('a')
            ->exists('todel')
            ->ttl('ttl')
            ->ttl('nokey')
            ->hLen('h');
        $this->assertSame(23, $b->len());
        $r = $e->writeBatch($b);
        $this->assertSame(0, $b->len());
        $this->assertCount(23, $r);
        [$set, $setGet, $setNx, $setPx, $del, $delMissing, $incr, $append, $pexpire, $pexpireAt, $persist,
            $hset, $hdel, $hincr, $get, $getMissing, $hget, $hgetMissing, $exists, $existsDel, $ttl, $ttlMissing,
            $hlen] = $r;
        $this->assertTrue($set);
        $this->assertSame('was', $setGet);
        $this->assertFalse($setNx);
        $this->assertTrue($setPx);
        $this->assertTrue($del);
        $this->assertFalse($delMissing);
        $this->assertSame(5, $incr);
        $this->assertSame(3, $append);
        $this->assertTrue($pexpire);
        $this->assertTrue($pexpireAt);
        $this->assertTrue($persist);
        $this->assertSame(2, $hset);
        $this->assertSame(1, $hdel);
        $this->assertSame(3, $hincr);
        $this->assertSame('123', $get);
        $this->assertNull($getMissing);
        $this->assertSame('v1', $hget);
        $this->assertNull($hgetMissing);
        $this->assertTrue($exists);
        $this->assertFalse($existsDel);
        $this->assertGreaterThan(59_000, $ttl);
        $this->assertLessThanOrEqual(60_000, $ttl);
        $this->assertSame(-2, $ttlMissing);
        $this->assertSame(2, $hlen);

        // Applied to the engine.
        $this->assertSame('123', $e->get('a'));
        $this->assertSame('now', $e->get('old'));
        $this->assertSame(-1, $e->ttl('old'));
        $this->assertGreaterThan(99, $e->ttl('a'));
        $this->assertSame(['f1' => 'v1', 'c' => '3'], $e->hMGet('h', ['f1', 'c']));
        $this->assertSame(0, $e->exists('todel'));

        // Reusable.
        $this->assertSame([true, '123'], $e->writeBatch($b->set('b', 'x')->get('a')));
        $this->assertSame([], $e->writeBatch($b));
    }

    public function testAllOrNothing(): void
    {
        $e = $this->engine();
        $e->set('s', 'text');
        $e->set('keep', 'old');
        $b = $e->batch()->set('keep', 'new')->incrBy('s', 1)->set('other', 'x');
        $this->assertThrows(E\NotAnIntegerException::class, fn () => $e->writeBatch($b), 'not an integer');
        $this->assertSame('old', $e->get('keep'));
        $this->assertNull($e->get('other'));
        $this->assertSame(0, $b->len());
        $b->hSet('s', ['f' => 'v']);
        $this->assertThrows(E\WrongTypeException::class, fn () => $e->writeBatch($b), 'WRONGTYPE');
        // Emptied on failure: the next run only has what was added after.
        $this->assertSame([true], $e->writeBatch($b->set('after', '1')));
    }

    public function testClosedBatchAndEngine(): void
    {
        $e = $this->engine();
        $b = $e->batch()->set('k', 'v');
        $other = $this->engine();
        $other->close();
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $other->writeBatch($b));
        // Refused before running: the batch keeps its operation.
        $this->assertSame(1, $b->len());
        $this->assertSame([true], $e->writeBatch($b));
        $b->close();
        $b->close();
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $b->set('k', 'v'));
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $e->writeBatch($b));
        $this->assertThrows(E\InvalidExpireException::class, fn () => $e->batch()->setWith('k', 'v', ex: -1));
    }
}
