#!/usr/bin/env bash
# Builds and runs the C test (ffi/tests/c/test_ringkv.c) and the C example
# (ffi/examples/ringkv_example.c) against libringkv:
#   (a) with AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer on),
#       linked against the shared library;
#   (b) without sanitizers, under valgrind (definite leaks and memory errors fail);
#   (c) the example linked against the static library, and run once.
#
# Usage: ffi/tests/c/run.sh [LIB_DIR] [HEADER_DIR]
#   LIB_DIR     holds libringkv.so and libringkv.a (default: <repo>/target/debug)
#   HEADER_DIR  holds ringkv.h                     (default: <repo>/ffi/include)
# Build the library first: cargo build -p ringkv-ffi
# Exits non-zero on the first failure.
set -euo pipefail
set -E # the ERR trap below also fires inside functions

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
lib_dir="$(cd "${1:-$repo/target/debug}" && pwd)"
hdr_dir="$(cd "${2:-$repo/ffi/include}" && pwd)"
test_src="$here/test_ringkv.c"
example_src="$repo/ffi/examples/ringkv_example.c"

for f in "$lib_dir/libringkv.so" "$lib_dir/libringkv.a" "$hdr_dir/ringkv.h" "$test_src" "$example_src"; do
    if [[ ! -e "$f" ]]; then
        echo "run.sh: missing $f (build the library with: cargo build -p ringkv-ffi)" >&2
        exit 2
    fi
done

build="$(mktemp -d "${TMPDIR:-/tmp}/ringkv-ctest-build-XXXXXX")"
trap 'rm -rf "$build"' EXIT

cc="${CC:-gcc}"
common=(-std=c11 -Wall -Wextra -Werror -g -I"$hdr_dir")
shared=(-L"$lib_dir" -lringkv -Wl,-rpath,"$lib_dir" -pthread)

step() { printf '\n=== %s\n' "$*"; }
# Runs a command, printing it and how long it took.
timed() {
    printf '+ %s\n' "$*" >&2
    local start=$EPOCHREALTIME rc=0
    "$@" || rc=$?
    if ((rc != 0)); then
        echo "run.sh: FAILED (exit status $rc): $*" >&2
        exit "$rc"
    fi
    awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "  (%.1f s)\n", e - s }' >&2
}
trap 'echo "run.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------- (a) sanitizers
step "build with -fsanitize=address,undefined (shared library $lib_dir/libringkv.so)"
san=(-fsanitize=address,undefined -fno-omit-frame-pointer)
timed "$cc" "${common[@]}" "${san[@]}" "$test_src" -o "$build/test_asan" "${shared[@]}"
timed "$cc" "${common[@]}" "${san[@]}" "$example_src" -o "$build/example_asan" "${shared[@]}"

asan_env=(ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)
if [[ -s "$here/lsan.supp" ]]; then
    asan_env+=(LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=1")
fi
step "run the test under ASan+UBSan+LSan"
timed env "${asan_env[@]}" "$build/test_asan"
step "run the example under ASan+UBSan+LSan"
timed env "${asan_env[@]}" "$build/example_asan"

# ---------------------------------------------------------------- (b) valgrind
if ! command -v valgrind >/dev/null; then
    step "installing valgrind"
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq valgrind
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq valgrind
    fi
fi
step "build without sanitizers"
timed "$cc" "${common[@]}" "$test_src" -o "$build/test_plain" "${shared[@]}"
timed "$cc" "${common[@]}" "$example_src" -o "$build/example_plain" "${shared[@]}"

vg=(valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-fds=no --quiet)
if [[ -s "$here/valgrind.supp" ]]; then
    vg+=(--suppressions="$here/valgrind.supp")
fi
step "run the test under valgrind"
timed "${vg[@]}" "$build/test_plain"
step "run the example under valgrind"
timed "${vg[@]}" "$build/example_plain"

# ---------------------------------------------------------------- (c) static library
step "link the example against the static library $lib_dir/libringkv.a"
timed "$cc" "${common[@]}" "$example_src" "$lib_dir/libringkv.a" -lpthread -ldl -lm -o "$build/example_static"
if ldd "$build/example_static" | grep -q libringkv; then
    echo "run.sh: example_static is linked against the shared libringkv" >&2
    exit 1
fi
timed "$build/example_static" >"$build/example_static.out"
tail -n 1 "$build/example_static.out"

step "all C checks passed"
