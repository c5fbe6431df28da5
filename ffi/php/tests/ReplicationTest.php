<?php

declare(strict_types=1);

namespace Ringkv\Tests;

use Ringkv\DevCerts;
use Ringkv\Exception as E;
use Ringkv\Follower;
use Ringkv\Primary;

/**
 * A follower tailing a primary in the same process, over QUIC + mutual TLS
 * on loopback with development certificates. Every wait is bounded.
 */
final class ReplicationTest extends TestCase
{
    private const WAIT_MS = 10_000;

    public function testFollowerTailsPrimaryThenIsPromoted(): void
    {
        $certs = $this->tempDir('ringkv-certs');
        DevCerts::write($certs);
        foreach (['ca.pem', 'server.pem', 'server.key', 'client.pem', 'client.key'] as $file) {
            $this->assertFileExists("{$certs}/{$file}");
        }

        $primaryEngine = $this->engine($this->tempDir('ringkv-primary'), self::SMALL_LOG);
        $primaryEngine->set('before', 'start'); // replicated by the initial sync
        $primary = Primary::start($primaryEngine, '127.0.0.1:0', "{$certs}/server.pem", "{$certs}/server.key", "{$certs}/ca.pem");
        $port = $primary->port();
        $this->assertGreaterThan(0, $port);
        $this->assertLessThan(65536, $port);

        $followerEngine = $this->engine($this->tempDir('ringkv-follower'), self::SMALL_LOG);
        $follower = Follower::start(
            $followerEngine,
            "127.0.0.1:{$port}",
            'localhost',
            "{$certs}/client.pem",
            "{$certs}/client.key",
            "{$certs}/ca.pem",
        );
        $this->assertSame('follower', $followerEngine->role());
        $this->assertSame('primary', $primaryEngine->role());

        // Write on the primary, read it back on the follower.
        $primaryEngine->set('greeting', "hello\0world");
        $primaryEngine->hSet('telemetry:a', ['cpu:1' => '10', 'mem:1' => '20']);
        $primaryEngine->set('session', 'tok', ex: 600);
        $offset = $primaryEngine->lastWriteOffset();
        $this->assertIsInt($offset);
        $this->assertTrue($followerEngine->waitApplied($offset, self::WAIT_MS), 'follower did not catch up');
        $this->assertGreaterThanOrEqual($offset, $followerEngine->appliedOffset());
        $this->assertSame('start', $followerEngine->get('before'));
        $this->assertSame("hello\0world", $followerEngine->get('greeting'));
        $this->assertSame(['cpu:1' => '10', 'mem:1' => '20'], $followerEngine->hMGet('telemetry:a', ['cpu:1', 'mem:1']));
        $this->assertGreaterThan(590, $followerEngine->ttl('session'));
        $this->assertSame(1, $primary->waitForFollowers($offset, 1, self::WAIT_MS));
        $this->assertSame(1, $primary->waitForFollowers($offset, 2, 200)); // only one: times out with 1

        $this->assertTrue(self::waitUntil(fn () => $follower->state()['master_link_status'] === 'up', self::WAIT_MS));
        $state = $follower->state();
        $this->assertGreaterThanOrEqual($offset, $state['slave_repl_offset']);
        $this->assertArrayHasKey('lag_bytes', $state);
        $this->assertSame(1, $state['full_syncs']);
        $stats = $primary->stats();
        $this->assertSame(1, $stats['connected_slaves']);
        $this->assertGreaterThanOrEqual($offset, $stats['master_repl_offset']);
        $this->assertCount(1, $stats['followers']);
        $this->assertGreaterThanOrEqual($offset, $stats['followers'][0]['applied']);
        // An offset the primary never wrote: waitApplied times out (bounded) with false.
        $t = hrtime(true);
        $this->assertFalse($followerEngine->waitApplied($offset + 1_000_000, 100));
        $this->assertGreaterThanOrEqual(90, (hrtime(true) - $t) / 1e6);

        // A follower refuses writes.
        $ex = $this->assertThrows(E\ReadOnlyException::class, fn () => $followerEngine->set('x', 'y'));
        $this->assertSame(9, $ex->getStatus());
        $this->assertStringContainsStringIgnoringCase('READONLY', $ex->getMessage());
        $this->assertThrows(E\ReadOnlyException::class, fn () => $followerEngine->hSet('h', ['f' => 'v']));
        $this->assertThrows(E\ReadOnlyException::class, fn () => $followerEngine->del('greeting'));
        $this->assertThrows(E\ReadOnlyException::class, fn () => $followerEngine->writeBatch($followerEngine->batch()->set('a', 'b')));
        $this->assertNull($followerEngine->get('x'));

        // Later writes keep flowing.
        for ($i = 0; $i < 100; $i++) {
            $primaryEngine->hIncrBy('counters', "c{$i}", $i);
        }
        $offset = $primaryEngine->lastWriteOffset();
        $this->assertTrue($followerEngine->waitApplied($offset, self::WAIT_MS));
        $this->assertSame(100, $followerEngine->hLen('counters'));
        $this->assertSame('99', $followerEngine->hGet('counters', 'c99'));

        // Promotion: the follower engine becomes a writable primary, keeping its data.
        $follower->promote();
        $this->assertSame('primary', $followerEngine->role());
        $this->assertTrue($followerEngine->set('x', 'y'));
        $this->assertSame('y', $followerEngine->get('x'));
        $this->assertSame("hello\0world", $followerEngine->get('greeting'));
        $this->assertGreaterThan($offset, (int) $followerEngine->lastWriteOffset());
        // The spent follower handle refuses further calls.
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $follower->state());
        $follower->close();

        $primary->close();
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $primary->port());
    }

    public function testFollowerFreedStaysReadOnly(): void
    {
        $certs = $this->tempDir('ringkv-certs');
        DevCerts::write($certs);
        $primaryEngine = $this->engine(null, [], true); // in-memory with an anonymous log
        $primary = Primary::start($primaryEngine, '127.0.0.1:0', "{$certs}/server.pem", "{$certs}/server.key", "{$certs}/ca.pem");
        $followerDir = $this->tempDir('ringkv-follower');
        $followerEngine = $this->engine($followerDir, self::SMALL_LOG);
        $follower = Follower::start($followerEngine, '127.0.0.1:' . $primary->port(), 'localhost', "{$certs}/client.pem", "{$certs}/client.key", "{$certs}/ca.pem");
        $primaryEngine->set('k', 'v');
        $this->assertTrue($followerEngine->waitApplied((int) $primaryEngine->lastWriteOffset(), self::WAIT_MS));
        $this->assertSame('v', $followerEngine->get('k'));
        $follower->close();
        $this->assertSame('v', $followerEngine->get('k'));
        $this->assertThrows(E\ReadOnlyException::class, fn () => $followerEngine->set('k', 'w'));
        // Closing an engine stops the primary started on it first.
        $primaryEngine->close();
        $this->assertThrows(E\InvalidArgumentException::class, fn () => $primary->port());

        // The follower's data directory, reopened at once, has the replicated data
        // (closing waited for the snapshot the full sync started).
        $followerEngine->close();
        $reopened = $this->reopen($followerDir);
        $this->assertSame('v', $reopened->get('k'));
    }

    public function testBadCertificatesAndEngines(): void
    {
        $certs = $this->tempDir('ringkv-certs');
        DevCerts::write($certs);
        $mem = $this->engine(); // no log: cannot serve
        $this->assertThrows(
            E\RingkvException::class,
            fn () => Primary::start($mem, '127.0.0.1:0', "{$certs}/server.pem", "{$certs}/server.key", "{$certs}/ca.pem"),
        );
        $withLog = $this->engine(null, [], true);
        $this->assertThrows(
            E\RingkvException::class,
            fn () => Primary::start($withLog, '127.0.0.1:0', "{$certs}/missing.pem", "{$certs}/server.key", "{$certs}/ca.pem"),
        );
    }
}
