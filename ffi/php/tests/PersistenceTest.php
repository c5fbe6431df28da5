<?php

declare(strict_types=1);

namespace Ringkv\Tests;

use Ringkv\Engine;
use Ringkv\Exception\RingkvException;

final class PersistenceTest extends TestCase
{
    public function testReopenedDirectoryKeepsItsData(): void
    {
        $dir = $this->tempDir();
        $e = Engine::open($dir, self::SMALL_LOG);
        $e->set('plain', 'value');
        $e->set("bin\0key", "bin\0value");
        $e->set('ttl', 'v', ex: 5000);
        $e->hSet('h', ['a' => '1', 'b' => '2']);
        $e->incrBy('counter', 41);
        $e->incr('counter');
        $e->sync();
        $e->close();

        $e = $this->engine($dir, self::SMALL_LOG);
        $this->assertSame('value', $e->get('plain'));
        $this->assertSame("bin\0value", $e->get("bin\0key"));
        $this->assertGreaterThan(4990, $e->ttl('ttl'));
        $this->assertSame(['a' => '1', 'b' => '2'], $e->hMGet('h', ['a', 'b']));
        $this->assertSame('42', $e->get('counter'));
        $this->assertSame(5, $e->dbSize());

        // After a snapshot, and more writes in the log.
        $e->save();
        $e->set('after-save', 'yes');
        $e->del('plain');
        $e->sync();
        $stats = $e->stats();
        $this->assertIsArray($stats['log']);
        $this->assertGreaterThan(0, $stats['log']['offset']);
        $this->assertArrayHasKey('snapshot', $stats);
        $e->close();

        $e = $this->engine($dir, self::SMALL_LOG);
        $this->assertNull($e->get('plain'));
        $this->assertSame('yes', $e->get('after-save'));
        $this->assertSame('42', $e->get('counter'));
        $this->assertSame(5, $e->dbSize());
    }

    public function testBgSaveAndOffsets(): void
    {
        $dir = $this->tempDir();
        $e = $this->engine($dir, self::SMALL_LOG);
        $this->assertNull($e->lastWriteOffset());
        $e->set('a', '1');
        $o1 = $e->lastWriteOffset();
        $this->assertIsInt($o1);
        $this->assertGreaterThan(0, $o1);
        $e->set('b', '2');
        $o2 = $e->lastWriteOffset();
        $this->assertGreaterThan($o1, $o2);
        $this->assertGreaterThanOrEqual($o2, $e->appliedOffset());
        $this->assertTrue($e->waitApplied($o2, 1000));
        $this->assertSame('primary', $e->role());
        $started = $e->bgSave();
        $this->assertIsBool($started);
        // Wait (bounded) for the background snapshot to finish: a blocking save then succeeds.
        $this->assertTrue(self::waitUntil(function () use ($e): bool {
            try {
                $e->save();
                return true;
            } catch (RingkvException) {
                return false;
            }
        }, 10_000));
        $e->close();
        $e = $this->reopen($dir);
        $this->assertSame(['1', '2'], $e->mGet(['a', 'b']));
    }

    public function testInMemoryEngines(): void
    {
        $mem = $this->engine();
        $mem->set('k', 'v');
        $this->assertArrayHasKey('keys', $mem->stats());
        $this->assertSame(1, $mem->stats()['keys']);
        $anon = $this->engine(null, [], true);
        $anon->set('k', 'v');
        $offset = $anon->lastWriteOffset();
        $this->assertIsInt($offset);
        $this->assertGreaterThan(0, $offset);
        $this->assertIsArray($anon->stats()['log']);
        $this->assertTrue($anon->waitApplied($offset, 1000));
    }
}
