<?php

declare(strict_types=1);

namespace Ringkv\Tests;

use Ringkv\Exception as E;

final class ScanTest extends TestCase
{
    public function testScanAllMatchAndType(): void
    {
        $e = $this->engine();
        $this->assertSame([], iterator_to_array($e->scan(), false));
        $strings = [];
        for ($i = 0; $i < 300; $i++) {
            $strings["user:{$i}"] = "u{$i}";
        }
        $e->mSet($strings);
        for ($i = 0; $i < 40; $i++) {
            $e->hSet("hash:{$i}", ['f' => 'v']);
        }
        $all = array_unique(iterator_to_array($e->scan(count: 7), false));
        $this->assertCount(340, $all);

        $users = array_unique(iterator_to_array($e->scan('user:*', 50), false));
        sort($users);
        $expected = array_keys($strings);
        sort($expected);
        $this->assertSame($expected, $users);

        $hashes = array_unique(iterator_to_array($e->scan(type: 'hash'), false));
        $this->assertCount(40, $hashes);
        foreach ($hashes as $k) {
            $this->assertStringStartsWith('hash:', $k);
        }
        $this->assertCount(300, array_unique(iterator_to_array($e->scan(null, 100, 'string'), false)));
        $this->assertSame([], iterator_to_array($e->scan('user:*', 10, 'hash'), false));
        $this->assertSame(['user:7'], iterator_to_array($e->scan('user:7'), false));
        $this->assertCount(10, array_unique(iterator_to_array($e->scan('user:1?'), false)));
        $this->assertThrows(E\InvalidArgumentException::class, fn () => iterator_to_array($e->scan(type: 'list')));
    }

    public function testScanEarlyBreakAndClose(): void
    {
        $e = $this->engine();
        for ($i = 0; $i < 100; $i++) {
            $e->set("k{$i}", 'v');
        }
        $seen = 0;
        foreach ($e->scan(count: 5) as $key) {
            if (++$seen === 3) {
                break; // the generator is destroyed: its finally frees the cursor
            }
        }
        $this->assertSame(3, $seen);
        // A scan left suspended while the engine closes: the engine frees its cursor,
        // and the generator then refuses to go on.
        $gen = $e->scan(count: 5);
        $this->assertIsString($gen->current());
        $e->close();
        $this->assertThrows(E\InvalidArgumentException::class, function () use ($gen): void {
            foreach ($gen as $_) {
                // drain it
            }
        });
        unset($gen);
    }

    public function testHScan(): void
    {
        $e = $this->engine();
        $this->assertSame([], iterator_to_array($e->hScan('missing')));
        $fields = [];
        for ($i = 0; $i < 200; $i++) {
            $fields["f:{$i}"] = "v{$i}";
        }
        $fields['other'] = 'o';
        $e->hSet('h', $fields);
        $got = iterator_to_array($e->hScan('h', count: 16));
        ksort($got, SORT_STRING);
        $expected = $fields;
        ksort($expected, SORT_STRING);
        $this->assertSame($expected, $got);

        $matched = iterator_to_array($e->hScan('h', 'f:1*'));
        $this->assertCount(111, $matched); // f:1, f:10-19, f:100-199
        foreach ($matched as $f => $v) {
            $this->assertSame($fields[$f], $v);
        }
        $names = array_unique(iterator_to_array($e->hScan('h', 'oth*', 10, noValues: true), false));
        $this->assertSame(['other'], $names);
        $all = array_unique(iterator_to_array($e->hScan('h', null, 50, true), false));
        $this->assertCount(201, $all);
        $e->set('s', 'v');
        $this->assertThrows(E\WrongTypeException::class, fn () => iterator_to_array($e->hScan('s')), 'WRONGTYPE');
    }

    public function testDrainGenerator(): void
    {
        $e = $this->engine();
        $this->assertSame([], iterator_to_array($e->drain('missing')));
        $fields = [];
        for ($i = 0; $i < 1234; $i++) {
            $fields["m{$i}"] = (string) $i;
        }
        $e->hSet('q', $fields);
        $sizes = [];
        $got = [];
        foreach ($e->drain('q', 500) as $batch) {
            $sizes[] = count($batch);
            foreach ($batch as $f => $v) {
                $this->assertArrayNotHasKey($f, $got);
                $got[$f] = $v;
            }
        }
        $this->assertSame([500, 500, 234], $sizes);
        ksort($got, SORT_NATURAL);
        $this->assertSame($fields, $got);
        $this->assertSame(0, $e->exists('q'));
        $this->assertThrows(E\InvalidArgumentException::class, fn () => iterator_to_array($e->drain('q', 0)));
    }
}
