<?php

declare(strict_types=1);

namespace Ringkv;

use FFI as PhpFfi;
use FFI\CData;

/**
 * Serves an engine's log to followers (QUIC with mutual TLS).
 *
 * Stops serving on close() / destruction, and when its engine is closed.
 */
final class Primary
{
    private PhpFfi $ffi;

    private ?CData $handle;

    /** Kept so the engine outlives this primary. */
    private ?Engine $engine;

    private function __construct(PhpFfi $ffi, CData $handle, Engine $engine)
    {
        $this->ffi = $ffi;
        $this->handle = $handle;
        $this->engine = $engine;
    }

    /**
     * Starts serving $engine's log (the engine needs a log: a data directory or
     * Engine::open(anonymousLog: true)).
     *
     * @param string $listen e.g. "127.0.0.1:0" (0 picks a free port, see port()).
     * @param string $cert PEM certificate path of the server.
     * @param string $key PEM private key path of the server.
     * @param string $ca PEM path of the CA the followers' client certificates must chain to.
     * @throws Exception\RingkvException ReplicationException when it cannot listen, ...
     */
    public static function start(Engine $engine, string $listen, string $cert, string $key, string $ca): self
    {
        $ffi = Ffi::get();
        $out = $ffi->new('ringkv_primary*');
        Ffi::check($ffi->ringkv_primary_start(
            $engine->handle(),
            Ffi::cString($listen, 'listen'),
            Ffi::cString($cert, 'cert'),
            Ffi::cString($key, 'key'),
            Ffi::cString($ca, 'ca'),
            PhpFfi::addr($out),
        ));
        $primary = new self($ffi, $out, $engine);
        $engine->addDependent($primary);
        return $primary;
    }

    /** The UDP port it listens on. */
    public function port(): int
    {
        $out = $this->ffi->new('uint16_t');
        Ffi::check($this->ffi->ringkv_primary_port($this->handle, PhpFfi::addr($out)));
        return $out->cdata;
    }

    /**
     * Waits at most $timeoutMs until $n followers acked applying $offset
     * (Redis WAIT): how many did.
     */
    public function waitForFollowers(int $offset, int $n, int $timeoutMs): int
    {
        if ($offset < 0 || $n < 0 || $timeoutMs < 0) {
            throw Ffi::argumentError('offset, n and timeout must not be negative');
        }
        $out = $this->ffi->new('size_t');
        Ffi::check($this->ffi->ringkv_primary_wait_for_followers($this->handle, $offset, $n, $timeoutMs, PhpFfi::addr($out)));
        return $out->cdata;
    }

    /**
     * The primary's replication stats.
     *
     * @return array<string, mixed>
     */
    public function stats(): array
    {
        $buf = $this->ffi->new('ringkv_buf');
        Ffi::check($this->ffi->ringkv_primary_stats_json($this->handle, PhpFfi::addr($buf)));
        return json_decode((string) Ffi::takeBuf($this->ffi, $buf), true, 512, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
    }

    /** Stops serving (idempotent). */
    public function close(): void
    {
        if ($this->handle !== null) {
            $handle = $this->handle;
            $this->handle = null;
            $this->ffi->ringkv_primary_free($handle);
        }
        $this->engine = null;
    }

    public function __destruct()
    {
        $this->close();
    }
}
