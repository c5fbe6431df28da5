<?php

declare(strict_types=1);

namespace Ringkv\Tests;

final class BinaryTest extends TestCase
{
    public function testNulBytesInKeysValuesAndFields(): void
    {
        $e = $this->engine();
        $k1 = "a\0b";
        $k2 = "a\0c";
        $v = "\0\x01\x02\xff\0";
        $e->set($k1, $v);
        $e->set($k2, 'other');
        $this->assertSame($v, $e->get($k1));
        $this->assertSame('other', $e->get($k2));
        $this->assertNull($e->get('a'));
        $this->assertSame(2, $e->dbSize());
        $this->assertSame([$v, 'other', null], $e->mGet([$k1, $k2, "a\0"]));
        $this->assertSame(7, $e->append($k1, "\0\0"));
        $this->assertSame($v . "\0\0", $e->getDel($k1));

        $e->mSet(["\0" => "\0", "\0\0" => '']);
        $this->assertSame(["\0", ''], $e->mGet(["\0", "\0\0"]));

        $fields = ["f\0one" => "v\0" . str_repeat("\0", 10), "f\0two" => '', "\0" => "\xff"];
        $this->assertSame(3, $e->hSet("h\0", $fields));
        $this->assertSame($fields["f\0one"], $e->hGet("h\0", "f\0one"));
        $this->assertNull($e->hGet("h\0", 'f'));
        $all = $e->hGetAll("h\0");
        ksort($all);
        $sorted = $fields;
        ksort($sorted);
        $this->assertSame($sorted, $all);
        $this->assertSame(["\0" => "\xff", 'nope' => null], $e->hMGet("h\0", ["\0", 'nope']));
        $scanned = iterator_to_array($e->hScan("h\0"));
        ksort($scanned);
        $this->assertSame($sorted, $scanned);
        $this->assertContains("h\0", iterator_to_array($e->scan("h*"), false));
        $this->assertSame('hash', $e->type("h\0"));
        $this->assertSame('none', $e->type('h'));
        $drained = $e->hDrain("h\0", 10);
        ksort($drained);
        $this->assertSame($sorted, $drained);
    }

    public function testAllByteValues(): void
    {
        $e = $this->engine();
        $all = '';
        for ($i = 0; $i < 256; $i++) {
            $all .= chr($i);
        }
        $e->set($all, $all);
        $this->assertSame($all, $e->get($all));
        $b = $e->batch()->set("x\0y", $all)->get("x\0y")->hSet("b\0", ["\0" => $all])->hGet("b\0", "\0");
        $this->assertSame([true, $all, 1, $all], $e->writeBatch($b));
        $e->rename($all, "r\0");
        $this->assertSame($all, $e->get("r\0"));
        $this->assertContains($e->randomKey(), ["r\0", "x\0y", "b\0"]);
    }
}
