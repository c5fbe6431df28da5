<?php

declare(strict_types=1);

namespace Ringkv;

use FFI as PhpFfi;
use FFI\CData;

/**
 * Makes an engine tail a primary. The engine stays usable for reads (writes
 * throw ReadOnlyException) until promote().
 *
 * Stops following on close() / destruction (the engine then stays a read-only
 * follower), and when its engine is closed.
 */
final class Follower
{
    private PhpFfi $ffi;

    private ?CData $handle;

    /** Kept so the engine outlives this follower. */
    private ?Engine $engine;

    private function __construct(PhpFfi $ffi, CData $handle, Engine $engine)
    {
        $this->ffi = $ffi;
        $this->handle = $handle;
        $this->engine = $engine;
    }

    /**
     * Starts following.
     *
     * @param Engine $engine An engine with a data directory.
     * @param string $primaryAddr e.g. "127.0.0.1:7379".
     * @param string $serverName The name on the primary's certificate, e.g. "localhost".
     * @param string $cert PEM client certificate path.
     * @param string $key PEM client private key path.
     * @param string $ca PEM path of the CA the primary's certificate must chain to.
     */
    public static function start(
        Engine $engine,
        string $primaryAddr,
        string $serverName,
        string $cert,
        string $key,
        string $ca,
    ): self {
        $ffi = Ffi::get();
        $out = $ffi->new('ringkv_follower*');
        Ffi::check($ffi->ringkv_follower_start(
            $engine->handle(),
            Ffi::cString($primaryAddr, 'primary address'),
            Ffi::cString($serverName, 'server name'),
            Ffi::cString($cert, 'cert'),
            Ffi::cString($key, 'key'),
            Ffi::cString($ca, 'ca'),
            PhpFfi::addr($out),
        ));
        $follower = new self($ffi, $out, $engine);
        $engine->addDependent($follower);
        return $follower;
    }

    /**
     * The replica's state: master_link_status ("up"/"down"), slave_repl_offset, lag_bytes, ...
     *
     * @return array<string, mixed>
     */
    public function state(): array
    {
        $buf = $this->ffi->new('ringkv_buf');
        Ffi::check($this->ffi->ringkv_follower_state_json($this->handle, PhpFfi::addr($buf)));
        return json_decode((string) Ffi::takeBuf($this->ffi, $buf), true, 512, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
    }

    /**
     * Stops following and makes the engine a primary (keeping its offsets).
     * This follower is then closed.
     */
    public function promote(): void
    {
        Ffi::check($this->ffi->ringkv_follower_promote($this->handle));
        $this->close();
    }

    /** Stops following (idempotent); the engine stays a read-only follower. */
    public function close(): void
    {
        if ($this->handle !== null) {
            $handle = $this->handle;
            $this->handle = null;
            $this->ffi->ringkv_follower_free($handle);
        }
        $this->engine = null;
    }

    public function __destruct()
    {
        $this->close();
    }
}
