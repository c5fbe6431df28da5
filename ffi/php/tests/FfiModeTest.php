<?php

declare(strict_types=1);

namespace Ringkv\Tests;

use Ringkv\Engine;
use Ringkv\Ffi;

/**
 * Which way the C declarations were loaded. run-tests.sh sets
 * RINGKV_EXPECT_PRELOAD=1 under opcache.preload (FFI::scope must be used) and
 * RINGKV_EXPECT_PRELOAD=0 in plain CLI mode (FFI::cdef).
 */
final class FfiModeTest extends TestCase
{
    public function testModeMatchesExpectation(): void
    {
        $mode = Ffi::mode();
        $this->assertContains($mode, ['scope', 'cdef']);
        $this->assertSame(Ffi::get(), Ffi::get(), 'one FFI instance per process');
        $expect = getenv('RINGKV_EXPECT_PRELOAD');
        if ($expect === '1') {
            $this->assertSame('scope', $mode);
            $this->assertNull(Ffi::library());
            $this->assertInstanceOf(\FFI::class, \FFI::scope(Ffi::SCOPE));
        } elseif ($expect === '0') {
            $this->assertSame('cdef', $mode);
            $lib = getenv('RINGKV_LIB');
            $this->assertSame(is_string($lib) && $lib !== '' ? $lib : Ffi::DEFAULT_LIB, Ffi::library());
        }
        // Either way the library answers.
        $e = Engine::open();
        $e->set('mode', $mode);
        $this->assertSame($mode, $e->get('mode'));
        $e->close();
    }

    public function testPhpHeaderHasTheLoadDefines(): void
    {
        $header = (string) file_get_contents(Ffi::headerPath());
        $this->assertMatchesRegularExpression('/^#define FFI_SCOPE "RINGKV"$/m', $header);
        $this->assertMatchesRegularExpression('/^#define FFI_LIB "libringkv\.so\.0"$/m', $header);
        $this->assertDoesNotMatchRegularExpression('/^\s*#\s*include/m', $header);
        $this->assertStringNotContainsString('extern "C"', $header);
    }
}
