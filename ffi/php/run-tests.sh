#!/usr/bin/env bash
# Runs the PHP binding's PHPUnit suite against a built libringkv, in each way
# the C declarations can be loaded:
#   1. cdef, library by path:   FFI::cdef(ringkv_php.h, $RINGKV_LIB)
#   2. cdef, library by name:   FFI::cdef(ringkv_php.h, "libringkv.so.0") via LD_LIBRARY_PATH
#   3. opcache.preload:         preload.php calls FFI::load(ringkv_php.h); Ringkv\Ffi uses FFI::scope("RINGKV")
#   4. ffi.preload:             the same scope declared by PHP's own ffi.preload ini setting
# Mode 3 as root: PHP demands opcache.preload_user there, and FFI::load() refuses to
# run under opcache.preload_user, so the run is done as the user "nobody" (setpriv).
#
# Usage: ffi/php/run-tests.sh [LIBDIR]   (default: <repo>/target/debug, holding libringkv.so.0)
# Build first: cargo build -p ringkv-ffi
# Exits non-zero when anything fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
libdir="${1:-$repo/target/debug}"
libdir="$(cd "$libdir" && pwd)"
header="$repo/ffi/include/ringkv_php.h"

# ---- tools ----
need=()
command -v php >/dev/null 2>&1 || need+=(php-cli)
command -v phpunit >/dev/null 2>&1 || need+=(phpunit)
# (php -m into a variable: `php -m | grep -q` can fail under pipefail when grep exits early)
modules="$(php -m 2>/dev/null || true)"
grep -qx redis <<<"$modules" || need+=(php-redis)
if ((${#need[@]})); then
    echo "run-tests: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${need[@]}"; then
        apt-get update -q
        apt-get install -y -q "${need[@]}"
    fi
fi
modules="$(php -m)"
grep -qx FFI <<<"$modules" || { echo "run-tests: PHP has no FFI extension" >&2; exit 1; }
grep -qx 'Zend OPcache' <<<"$modules" || { echo "run-tests: PHP has no OPcache (needed for the preload mode)" >&2; exit 1; }
phpunit="$(command -v phpunit)"
phpunit_version="$("$phpunit" --version)"
echo "run-tests: $(php -r 'echo "PHP ", PHP_VERSION;'), ${phpunit_version%%$'\n'*}"

# ---- library and header ----
[[ -e "$libdir/libringkv.so.0" ]] || {
    echo "run-tests: $libdir/libringkv.so.0 not found (cargo build -p ringkv-ffi)" >&2
    exit 1
}
[[ -f "$header" ]] || { echo "run-tests: $header not found (cargo build -p ringkv-ffi)" >&2; exit 1; }

failed=()
run_mode() { # name, then the command
    local name="$1"
    shift
    echo
    echo "=== PHPUnit, mode: $name ==="
    if timeout 900 "$@"; then
        echo "=== mode $name: OK ==="
    else
        echo "=== mode $name: FAILED ===" >&2
        failed+=("$name")
    fi
}

cd "$repo"

run_mode "cdef (RINGKV_LIB=$libdir/libringkv.so.0)" \
    env -u LD_LIBRARY_PATH RINGKV_EXPECT_PRELOAD=0 RINGKV_LIB="$libdir/libringkv.so.0" \
    php -d ffi.enable=1 "$phpunit" -c "$here/phpunit.xml"

run_mode "cdef (libringkv.so.0 through LD_LIBRARY_PATH)" \
    env -u RINGKV_LIB RINGKV_EXPECT_PRELOAD=0 LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    php -d ffi.enable=1 "$phpunit" -c "$here/phpunit.xml"

# opcache.preload: as root, run as nobody; over a copy readable to nobody when the
# work tree is not (or when RINGKV_PHP_STAGE=1).
preload_prefix=()
php_dir="$here"
stage=""
if [[ "$(id -u)" == 0 ]]; then
    preload_prefix=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    if [[ "${RINGKV_PHP_STAGE:-0}" == 1 ]] ||
        ! "${preload_prefix[@]}" test -r "$here/preload.php" -a -r "$header" -a -r "$libdir/libringkv.so.0" 2>/dev/null; then
        stage="$(mktemp -d /tmp/ringkv-php-preload.XXXXXX)"
        mkdir -p "$stage/ffi/include" "$stage/lib"
        cp -r "$here" "$stage/ffi/php"
        cp "$header" "$stage/ffi/include/"
        cp -L "$libdir/libringkv.so.0" "$stage/lib/"
        chmod -R a+rX "$stage"
        php_dir="$stage/ffi/php"
        libdir_preload="$stage/lib"
    fi
fi
libdir_preload="${libdir_preload:-$libdir}"
run_mode "opcache.preload (FFI::load in preload.php, FFI::scope)" \
    env -u RINGKV_LIB RINGKV_EXPECT_PRELOAD=1 LD_LIBRARY_PATH="$libdir_preload" \
    "${preload_prefix[@]}" \
    php -d ffi.enable=preload -d opcache.enable_cli=1 -d opcache.preload="$php_dir/preload.php" \
    "$phpunit" -c "$php_dir/phpunit.xml"
if [[ -n "$stage" ]]; then rm -rf "$stage"; fi

run_mode "ffi.preload (FFI::scope)" \
    env -u RINGKV_LIB RINGKV_EXPECT_PRELOAD=1 LD_LIBRARY_PATH="$libdir" \
    php -d ffi.enable=preload -d ffi.preload="$header" "$phpunit" -c "$here/phpunit.xml"

echo
if ((${#failed[@]})); then
    echo "run-tests: FAILED modes: ${failed[*]}" >&2
    exit 1
fi
echo "run-tests: all 4 modes passed"
