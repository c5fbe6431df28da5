<?php

declare(strict_types=1);

namespace Ringkv\Tests;

use Ringkv\Exception as E;

final class HashesTest extends TestCase
{
    public function testHSetHGetHMGet(): void
    {
        $e = $this->engine();
        $this->assertSame(3, $e->hSet('h', ['a' => '1', 'b' => '2', 'c' => '3']));
        $this->assertSame(1, $e->hSet('h', ['a' => 'one', 'd' => '4']));
        $this->assertSame('one', $e->hGet('h', 'a'));
        $this->assertNull($e->hGet('h', 'zz'));
        $this->assertNull($e->hGet('missing', 'a'));
        $this->assertSame(['d' => '4', 'zz' => null, 'a' => 'one'], $e->hMGet('h', ['d', 'zz', 'a']));
        $this->assertSame(['a' => null], $e->hMGet('missing', ['a']));
        $this->assertSame([], $e->hMGet('h', []));
        // Int-like values and field names.
        $this->assertSame(1, $e->hSet('h', [7 => 42]));
        $this->assertSame('42', $e->hGet('h', '7'));
        // One field goes through ringkv_hset_field: 1 when new, 0 when overwritten.
        $this->assertSame(0, $e->hSet('h', ['a' => 'uno']));
        $this->assertSame('uno', $e->hGet('h', 'a'));
        $this->assertSame(1, $e->hSet('h', ["bin\0field" => "v\0"]));
        $this->assertSame("v\0", $e->hGet('h', "bin\0field"));
    }

    public function testHSetNxHExistsHLenHDel(): void
    {
        $e = $this->engine();
        $this->assertTrue($e->hSetNx('h', 'f', 'v'));
        $this->assertFalse($e->hSetNx('h', 'f', 'w'));
        $this->assertSame('v', $e->hGet('h', 'f'));
        $this->assertTrue($e->hExists('h', 'f'));
        $this->assertFalse($e->hExists('h', 'g'));
        $this->assertFalse($e->hExists('missing', 'g'));
        $e->hSet('h', ['g' => '1', 'i' => '2']);
        $this->assertSame(3, $e->hLen('h'));
        $this->assertSame(0, $e->hLen('missing'));
        $this->assertSame(2, $e->hDel('h', 'f', 'g', 'nope'));
        $this->assertSame(0, $e->hDel('h', 'f'));
        $this->assertSame(0, $e->hDel('h'));
        $this->assertSame(1, $e->hLen('h'));
        // The last field removed deletes the key.
        $this->assertSame(1, $e->hDel('h', 'i'));
        $this->assertSame('none', $e->type('h'));
        $this->assertSame(0, $e->hDel('missing', 'x'));
    }

    public function testHIncrBy(): void
    {
        $e = $this->engine();
        $this->assertSame(5, $e->hIncrBy('h', 'n', 5));
        $this->assertSame(2, $e->hIncrBy('h', 'n', -3));
        $this->assertSame('2', $e->hGet('h', 'n'));
        $this->assertSame('1.5', $e->hIncrByFloat('h', 'f', 1.5));
        $this->assertSame('4.5', $e->hIncrByFloat('h', 'n', 2.5));
        $e->hSet('h', ['s' => 'abc']);
        $this->assertThrows(E\NotAnIntegerException::class, fn () => $e->hIncrBy('h', 's', 1), 'not an integer');
        $this->assertThrows(E\NotAFloatException::class, fn () => $e->hIncrByFloat('h', 's', 1.0), 'float');
        $e->hSet('h', ['max' => (string) PHP_INT_MAX]);
        $this->assertThrows(E\OverflowException::class, fn () => $e->hIncrBy('h', 'max', 1), 'overflow');
    }

    public function testHGetAllKeysVals(): void
    {
        $e = $this->engine();
        $this->assertSame([], $e->hGetAll('missing'));
        $this->assertSame([], $e->hKeys('missing'));
        $this->assertSame([], $e->hVals('missing'));
        $fields = [];
        for ($i = 0; $i < 100; $i++) {
            $fields["f{$i}"] = "v{$i}";
        }
        $e->hSet('h', $fields);
        $all = $e->hGetAll('h');
        ksort($all, SORT_STRING);
        $expected = $fields;
        ksort($expected, SORT_STRING);
        $this->assertSame($expected, $all);
        $keys = $e->hKeys('h');
        $vals = $e->hVals('h');
        $this->assertCount(100, $keys);
        // HKEYS and HVALS come in the same order.
        $this->assertSame(array_map(fn ($k) => $fields[$k], $keys), $vals);
    }

    public function testHDrain(): void
    {
        $e = $this->engine();
        $this->assertSame([], $e->hDrain('missing', 10));
        $fields = [];
        for ($i = 0; $i < 25; $i++) {
            $fields["f{$i}"] = (string) $i;
        }
        $e->hSet('h', $fields);
        $first = $e->hDrain('h', 10);
        $this->assertCount(10, $first);
        $this->assertSame(15, $e->hLen('h'));
        foreach ($first as $f => $v) {
            $this->assertSame($fields[$f], $v);
            $this->assertFalse($e->hExists('h', $f));
        }
        $rest = $e->hDrain('h', 100);
        $this->assertCount(15, $rest);
        $this->assertSame([], array_intersect_key($first, $rest));
        $this->assertSame('none', $e->type('h'));
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $e->hDrain('h', -1));
    }

    public function testHRandField(): void
    {
        $e = $this->engine();
        $this->assertNull($e->hRandField('missing'));
        $this->assertSame([], $e->hRandField('missing', 3));
        $fields = ['a' => '1', 'b' => '2', 'c' => '3'];
        $e->hSet('h', $fields);
        $this->assertArrayHasKey($e->hRandField('h'), $fields);
        $two = $e->hRandField('h', 2);
        $this->assertCount(2, $two);
        $this->assertCount(2, array_unique($two));
        foreach ($two as $f) {
            $this->assertArrayHasKey($f, $fields);
        }
        // More than the hash holds: every field once.
        $all = $e->hRandField('h', 10);
        sort($all);
        $this->assertSame(['a', 'b', 'c'], $all);
        // Negative: exactly |count| fields, repeats allowed.
        $rep = $e->hRandField('h', -7);
        $this->assertCount(7, $rep);
        foreach ($rep as $f) {
            $this->assertArrayHasKey($f, $fields);
        }
        $with = $e->hRandField('h', 3, withValues: true);
        ksort($with);
        $this->assertSame($fields, $with);
        $this->assertSame(3, $e->hLen('h'));
    }

    public function testWrongType(): void
    {
        $e = $this->engine();
        $e->set('s', 'v');
        $e->hSet('h', ['f' => 'v']);
        $wrong = [
            fn () => $e->hSet('s', ['f' => 'v']),
            fn () => $e->hGet('s', 'f'),
            fn () => $e->hGetAll('s'),
            fn () => $e->hLen('s'),
            fn () => $e->hDrain('s', 1),
            fn () => $e->hIncrBy('s', 'f', 1),
            fn () => $e->get('h'),
            fn () => $e->append('h', 'x'),
            fn () => $e->incr('h'),
            fn () => $e->getDel('h'),
        ];
        foreach ($wrong as $fn) {
            $ex = $this->assertThrows(E\WrongTypeException::class, $fn, 'WRONGTYPE');
            $this->assertSame(2, $ex->getStatus());
            $this->assertSame(2, $ex->getCode());
        }
        $this->assertSame('v', $e->get('s'));
        $this->assertSame('v', $e->hGet('h', 'f'));
    }
}
