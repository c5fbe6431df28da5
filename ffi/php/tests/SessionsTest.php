<?php

declare(strict_types=1);

namespace Ringkv\Tests;

/**
 * Session tokens with a TTL: SET ... EX, sliding refresh, logout by an
 * expiry in the past, short-lived tokens expiring on their own.
 */
final class SessionsTest extends TestCase
{
    public function testTtlSessionTokens(): void
    {
        $e = $this->engine();
        $tokens = [];
        for ($i = 0; $i < 200; $i++) {
            $token = 'session:' . bin2hex(random_bytes(16));
            $tokens[$token] = json_encode(['user' => $i, 'roles' => ['reader']], JSON_THROW_ON_ERROR);
            $this->assertTrue($e->set($token, $tokens[$token], ex: 1800, nx: true));
        }
        foreach ($tokens as $token => $payload) {
            $ttl = $e->ttl($token);
            $this->assertGreaterThanOrEqual(1799, $ttl);
            $this->assertLessThanOrEqual(1800, $ttl);
            $pttl = $e->pTtl($token);
            $this->assertGreaterThan(1_795_000, $pttl);
            $this->assertLessThanOrEqual(1_800_000, $pttl);
            $this->assertSame($payload, $e->get($token));
        }
        $this->assertSame(200, $e->stats()['keys_with_expiry']);

        // Sliding refresh on read.
        $first = array_key_first($tokens);
        $this->assertSame($tokens[$first], $e->getEx($first, ex: 3600));
        $this->assertGreaterThanOrEqual(3599, $e->ttl($first));
        // A token may not be created twice.
        $this->assertFalse($e->set($first, 'hijack', nx: true, ex: 10));
        $this->assertSame($tokens[$first], $e->get($first));

        // Logout: an expiry in the past deletes the token at once.
        $logout = array_slice(array_keys($tokens), 0, 50);
        foreach ($logout as $token) {
            $this->assertTrue($e->pExpire($token, -1));
            $this->assertNull($e->get($token));
            $this->assertSame(-2, $e->ttl($token));
        }
        $this->assertSame(150, $e->dbSize());
        $this->assertSame(0, $e->exists(...$logout));

        // Short-lived tokens expire on their own (bounded wait).
        $e->set('session:short', 'x', px: 50);
        $e->set('session:shortat', 'y', pxat: self::nowMs() + 50);
        $this->assertTrue(self::waitUntil(
            fn () => $e->get('session:short') === null && $e->get('session:shortat') === null,
            3000,
        ));
        $this->assertSame(-2, $e->pTtl('session:short'));
        $this->assertSame(0, $e->exists('session:short', 'session:shortat'));
    }
}
