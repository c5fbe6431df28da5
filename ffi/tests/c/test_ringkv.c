/*
 * C test of libringkv's API (ffi/include/ringkv.h): every function group,
 * the status codes, the out-parameter contract, handles, threads and
 * replication in one process. Run by ffi/tests/c/run.sh under
 * ASan+UBSan and under valgrind.
 *
 * Exit status 0 when every check passed; on the first failure it prints
 * file:line, the check and ringkv_last_error, and exits 1.
 */
#define _XOPEN_SOURCE 700

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ringkv.h"

/* ------------------------------------------------------------------ */
/* checks                                                               */

static int checks;

static void fail_at(const char *file, int line, const char *what, const char *extra) {
    char msg[1024];
    size_t n = 0;
    msg[0] = '\0';
    ringkv_last_error(msg, sizeof msg, &n);
    fprintf(stderr, "%s:%d: FAILED: %s%s%s\n  ringkv_last_error: %s\n", file, line, what, extra ? " " : "",
            extra ? extra : "", n ? msg : "(none)");
    exit(1);
}

#define ASSERT(cond)                                                                    \
    do {                                                                                \
        checks++;                                                                       \
        if (!(cond))                                                                    \
            fail_at(__FILE__, __LINE__, #cond, NULL);                                   \
    } while (0)

/* The call returns `want`; a failure status also leaves a message. */
#define EXPECT(call, want)                                                              \
    do {                                                                                \
        checks++;                                                                       \
        ringkv_status got_ = (call);                                                    \
        if (got_ != (want)) {                                                           \
            char extra_[96];                                                            \
            snprintf(extra_, sizeof extra_, "(status %d, expected %d)", (int)got_,      \
                     (int)(want));                                                      \
            fail_at(__FILE__, __LINE__, #call, extra_);                                 \
        }                                                                               \
        if ((want) != RINGKV_OK) {                                                      \
            size_t len_ = 0;                                                            \
            if (ringkv_last_error(NULL, 0, &len_) != RINGKV_OK || len_ == 0)            \
                fail_at(__FILE__, __LINE__, #call, "(failed without a message)");       \
        }                                                                               \
    } while (0)

#define OK(call) EXPECT(call, RINGKV_OK)

/* (pointer, length) of a string literal. */
#define S(lit) (lit), (sizeof(lit) - 1)

/* Sentinels that a failing call must leave alone. */
#define SENTINEL_PTR ((void *)(uintptr_t)0x5a5a5a50u)
#define SENTINEL_LEN ((size_t)0x5a5a5a5a)
#define SENTINEL_I64 ((int64_t)0x5a5a5a5a5a5a5a5aLL)
#define SENTINEL_U64 ((uint64_t)0xa5a5a5a5a5a5a5a5ULL)

/* bools are checked byte-wise: a sentinel byte in a bool must not be loaded as a bool. */
static void bool_fill(bool *b) { memset(b, 0x5a, sizeof *b); }
static int bool_untouched(const bool *b) {
    unsigned char c;
    memcpy(&c, b, 1);
    return c == 0x5a;
}

static ringkv_buf buf_sentinel(void) { return (ringkv_buf){.ptr = SENTINEL_PTR, .len = SENTINEL_LEN}; }
static int buf_untouched(ringkv_buf b) { return b.ptr == SENTINEL_PTR && b.len == SENTINEL_LEN; }
static ringkv_buf_array array_sentinel(void) {
    return (ringkv_buf_array){.ptr = SENTINEL_PTR, .len = SENTINEL_LEN};
}
static int array_untouched(ringkv_buf_array a) { return a.ptr == SENTINEL_PTR && a.len == SENTINEL_LEN; }

static int buf_is(ringkv_buf b, const void *p, size_t n) {
    return b.ptr != NULL && b.len == n && (n == 0 || memcmp(b.ptr, p, n) == 0);
}
#define BUF_IS(b, lit) buf_is((b), S(lit))

/* Whether the bytes of b contain the string s. */
static int contains(ringkv_buf b, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; b.ptr != NULL && i + n <= b.len; i++)
        if (memcmp(b.ptr + i, s, n) == 0)
            return 1;
    return 0;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ */
/* lists of byte strings: one buffer and the lengths                    */

typedef struct {
    char *bytes;
    size_t *lens;
    size_t n, used, bytes_cap, lens_cap;
} strlist;

static void sl_push(strlist *l, const void *s, size_t len) {
    if (l->used + len > l->bytes_cap) {
        l->bytes_cap = (l->used + len) * 2 + 64;
        l->bytes = realloc(l->bytes, l->bytes_cap);
        ASSERT(l->bytes != NULL);
    }
    if (l->n == l->lens_cap) {
        l->lens_cap = l->lens_cap * 2 + 16;
        l->lens = realloc(l->lens, l->lens_cap * sizeof *l->lens);
        ASSERT(l->lens != NULL);
    }
    if (len)
        memcpy(l->bytes + l->used, s, len);
    l->used += len;
    l->lens[l->n++] = len;
}
static void sl_str(strlist *l, const char *s) { sl_push(l, s, strlen(s)); }
static void sl_free(strlist *l) {
    free(l->bytes);
    free(l->lens);
    memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------------ */
/* files                                                                */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}
static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char *make_tmp_dir(const char *what) {
    char tmpl[128];
    snprintf(tmpl, sizeof tmpl, "/tmp/ringkv-ctest-%s-XXXXXX", what);
    char *d = mkdtemp(tmpl);
    ASSERT(d != NULL);
    char *copy = strdup(d);
    ASSERT(copy != NULL);
    return copy;
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    ASSERT(p != NULL);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Data-directory engines in the test use a small ring log. */
#define SMALL_LOG "{\"log\":{\"capacity\":4194304}}"

static ringkv_engine *open_memory(const char *config) {
    ringkv_engine *e = NULL;
    OK(ringkv_engine_open(NULL, config, RINGKV_OPEN_DEFAULT, &e));
    ASSERT(e != NULL);
    return e;
}

/* ------------------------------------------------------------------ */
/* library: version, last error, frees                                  */

static void *fresh_thread_errors(void *arg) {
    const char *main_msg = arg;
    size_t n = 99;
    char buf[64] = "xxxx";
    /* A thread that never failed has no message. */
    OK(ringkv_last_error(NULL, 0, &n));
    ASSERT(n == 0);
    OK(ringkv_last_error(buf, sizeof buf, &n));
    ASSERT(n == 0 && buf[0] == '\0');
    /* Its own failure... */
    int64_t v;
    EXPECT(ringkv_incr_by(NULL, S("k"), 1, &v), RINGKV_INVALID_ARGUMENT);
    OK(ringkv_last_error(NULL, 0, &n));
    ASSERT(n > 0);
    char *mine = malloc(n + 1);
    ASSERT(mine != NULL);
    OK(ringkv_last_error(mine, n + 1, &n));
    /* ...is not the main thread's (which failed on ringkv_get with a NULL key). */
    ASSERT(strcmp(mine, main_msg) != 0 || strlen(main_msg) == 0);
    free(mine);
    return NULL;
}

static void test_library(void) {
    const char *v = ringkv_version();
    ASSERT(v != NULL && v[0] != '\0');
    ASSERT(ringkv_version() == v || strcmp(ringkv_version(), v) == 0);

    /* A failure leaves a message. */
    ringkv_engine *e = open_memory(NULL);
    ringkv_buf b = buf_sentinel();
    EXPECT(ringkv_get(e, NULL, 3, &b), RINGKV_INVALID_ARGUMENT);
    ASSERT(buf_untouched(b));

    /* Length query: buf NULL, len 0. */
    size_t full = 0;
    OK(ringkv_last_error(NULL, 0, &full));
    ASSERT(full > 4);
    char *msg = malloc(full + 1);
    ASSERT(msg != NULL);
    size_t w = 0;
    OK(ringkv_last_error(msg, full + 1, &w));
    ASSERT(w == full && strlen(msg) == full);
    /* A larger buffer: the same. */
    char big[4096];
    OK(ringkv_last_error(big, sizeof big, &w));
    ASSERT(w == full && strcmp(big, msg) == 0);

    /* Truncation: len-1 bytes and a NUL; written is still the full length. */
    char small[5];
    memset(small, '#', sizeof small);
    OK(ringkv_last_error(small, sizeof small, &w));
    ASSERT(w == full);
    ASSERT(small[4] == '\0' && memcmp(small, msg, 4) == 0);
    char one[1] = {'#'};
    OK(ringkv_last_error(one, 1, &w));
    ASSERT(w == full && one[0] == '\0');
    /* Buffer of exactly the message length: one byte is cut. */
    char *exact = malloc(full);
    ASSERT(exact != NULL);
    OK(ringkv_last_error(exact, full, &w));
    ASSERT(w == full && strlen(exact) == full - 1 && memcmp(exact, msg, full - 1) == 0);
    free(exact);

    /* Reading it does not clear it; a later success does not either. */
    OK(ringkv_last_error(NULL, 0, &w));
    ASSERT(w == full);
    OK(ringkv_set(e, S("k"), S("v")));
    OK(ringkv_last_error(NULL, 0, &w));
    ASSERT(w == full);

    /* Messages are per thread. */
    pthread_t t;
    ASSERT(pthread_create(&t, NULL, fresh_thread_errors, msg) == 0);
    ASSERT(pthread_join(t, NULL) == 0);
    OK(ringkv_last_error(big, sizeof big, &w));
    ASSERT(w == full && strcmp(big, msg) == 0);
    free(msg);

    /* A NULL buffer with a non-zero length is refused. */
    w = SENTINEL_LEN;
    ASSERT(ringkv_last_error(NULL, 10, &w) == RINGKV_INVALID_ARGUMENT);
    ASSERT(w == SENTINEL_LEN);

    /* Frees of nil / empty / NULL things are no-ops, and free sets to nil. */
    ringkv_buf nil = {NULL, 0};
    ringkv_buf_free(&nil);
    ringkv_buf_free(NULL);
    ringkv_buf_array empty = {NULL, 0};
    ringkv_buf_array_free(&empty);
    ringkv_buf_array_free(NULL);
    ringkv_reply_array no_replies = {NULL, 0};
    ringkv_reply_array_free(&no_replies);
    ringkv_reply_array_free(NULL);
    OK(ringkv_get(e, S("k"), &b));
    ASSERT(BUF_IS(b, "v"));
    ringkv_buf_free(&b);
    ASSERT(b.ptr == NULL && b.len == 0);
    ringkv_buf_free(&b); /* twice: no-op */
    ringkv_engine_free(NULL);
    ringkv_scan_cursor_free(NULL);
    ringkv_hscan_cursor_free(NULL);
    ringkv_batch_free(NULL);
    ringkv_primary_free(NULL);
    ringkv_follower_free(NULL);
    ringkv_engine_free(e);
}

/* ------------------------------------------------------------------ */
/* strings                                                              */

static void test_strings(void) {
    ringkv_engine *e = open_memory("");
    ringkv_buf b = buf_sentinel();

    /* nil vs empty string */
    OK(ringkv_get(e, S("missing"), &b));
    ASSERT(b.ptr == NULL && b.len == 0);
    OK(ringkv_set(e, S("empty"), NULL, 0));
    OK(ringkv_set(e, S("empty2"), "", 0));
    b = buf_sentinel();
    OK(ringkv_get(e, S("empty"), &b));
    ASSERT(b.ptr != NULL && b.ptr != SENTINEL_PTR && b.len == 0);
    ringkv_buf_free(&b);
    ASSERT(b.ptr == NULL);
    OK(ringkv_get(e, S("empty2"), &b));
    ASSERT(b.ptr != NULL && b.len == 0);
    ringkv_buf_free(&b);
    int32_t type = -1;
    OK(ringkv_type(e, S("empty"), &type));
    ASSERT(type == RINGKV_TYPE_STRING);

    /* binary keys and values with NUL bytes */
    OK(ringkv_set(e, S("a\0b"), S("one")));
    OK(ringkv_set(e, S("a\0c"), S("two")));
    OK(ringkv_set(e, S("a"), S("three")));
    OK(ringkv_set(e, S("\0"), S("nul\0value\0")));
    OK(ringkv_set(e, NULL, 0, S("empty key")));
    OK(ringkv_get(e, S("a\0b"), &b));
    ASSERT(BUF_IS(b, "one"));
    ringkv_buf_free(&b);
    OK(ringkv_get(e, S("a\0c"), &b));
    ASSERT(BUF_IS(b, "two"));
    ringkv_buf_free(&b);
    OK(ringkv_get(e, S("a"), &b));
    ASSERT(BUF_IS(b, "three"));
    ringkv_buf_free(&b);
    OK(ringkv_get(e, S("\0"), &b));
    ASSERT(BUF_IS(b, "nul\0value\0"));
    ringkv_buf_free(&b);
    OK(ringkv_get(e, "", 0, &b));
    ASSERT(BUF_IS(b, "empty key"));
    ringkv_buf_free(&b);
    OK(ringkv_get(e, S("a\0"), &b));
    ASSERT(b.ptr == NULL);

    /* set_with: NX / XX / GET */
    bool applied = true;
    ringkv_buf prev = buf_sentinel();
    OK(ringkv_set_with(e, S("sw"), S("1"), RINGKV_SET_XX, RINGKV_EXPIRY_NONE, 0, true, &applied, &prev));
    ASSERT(!applied && prev.ptr == NULL);
    OK(ringkv_set_with(e, S("sw"), S("1"), RINGKV_SET_NX, RINGKV_EXPIRY_NONE, 0, false, &applied, NULL));
    ASSERT(applied);
    OK(ringkv_set_with(e, S("sw"), S("2"), RINGKV_SET_NX, RINGKV_EXPIRY_NONE, 0, true, &applied, &prev));
    ASSERT(!applied && BUF_IS(prev, "1"));
    ringkv_buf_free(&prev);
    OK(ringkv_set_with(e, S("sw"), S("3"), RINGKV_SET_XX, RINGKV_EXPIRY_NONE, 0, true, &applied, &prev));
    ASSERT(applied && BUF_IS(prev, "1"));
    ringkv_buf_free(&prev);
    OK(ringkv_set_with(e, S("sw"), S("4"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_NONE, 0, true, &applied, &prev));
    ASSERT(applied && BUF_IS(prev, "3"));
    ringkv_buf_free(&prev);

    /* expiry kinds */
    int64_t ttl = 0, pttl = 0, at = 0;
    OK(ringkv_set_with(e, S("ex"), S("v"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_SECONDS, 100, false, &applied, NULL));
    OK(ringkv_ttl(e, S("ex"), &ttl));
    ASSERT(ttl >= 99 && ttl <= 100);
    OK(ringkv_set_with(e, S("ex"), S("w"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_KEEP, 0, false, &applied, NULL));
    OK(ringkv_ttl(e, S("ex"), &ttl));
    ASSERT(ttl >= 99 && ttl <= 100);
    OK(ringkv_set_with(e, S("ex"), S("x"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_NONE, 0, false, &applied, NULL));
    OK(ringkv_ttl(e, S("ex"), &ttl));
    ASSERT(ttl == -1);
    OK(ringkv_set_with(e, S("px"), S("v"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_MILLIS, 50000, false, &applied, NULL));
    OK(ringkv_pttl(e, S("px"), &pttl));
    ASSERT(pttl > 45000 && pttl <= 50000);
    int64_t when = now_ms() + 3600 * 1000;
    OK(ringkv_set_with(e, S("pxat"), S("v"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_AT_MILLIS, (uint64_t)when, false,
                       &applied, NULL));
    OK(ringkv_pexpire_time(e, S("pxat"), &at));
    ASSERT(at == when);
    OK(ringkv_set_with(e, S("exat"), S("v"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_AT_SECONDS, (uint64_t)(when / 1000),
                       false, &applied, NULL));
    OK(ringkv_pexpire_time(e, S("exat"), &at));
    ASSERT(at == when / 1000 * 1000);
    /* A short PX really expires. */
    OK(ringkv_set_with(e, S("short"), S("v"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_MILLIS, 30, false, &applied, NULL));
    sleep_ms(80);
    OK(ringkv_get(e, S("short"), &b));
    ASSERT(b.ptr == NULL);

    /* counters */
    int64_t n = 0;
    OK(ringkv_incr_by(e, S("cnt"), 5, &n));
    ASSERT(n == 5);
    OK(ringkv_incr_by(e, S("cnt"), -7, &n));
    ASSERT(n == -2);
    OK(ringkv_get(e, S("cnt"), &b));
    ASSERT(BUF_IS(b, "-2"));
    ringkv_buf_free(&b);
    OK(ringkv_set(e, S("f"), S("10")));
    OK(ringkv_incr_by_float(e, S("f"), 0.5, &b));
    ASSERT(BUF_IS(b, "10.5"));
    ringkv_buf_free(&b);
    OK(ringkv_incr_by_float(e, S("fnew"), 2.25, &b));
    ASSERT(BUF_IS(b, "2.25"));
    ringkv_buf_free(&b);

    /* append / setrange / getdel / getex */
    size_t len = 0;
    OK(ringkv_append(e, S("ap"), S("Hello"), &len));
    ASSERT(len == 5);
    OK(ringkv_append(e, S("ap"), S(" World"), &len));
    ASSERT(len == 11);
    OK(ringkv_setrange(e, S("ap"), 6, S("Redis"), &len));
    ASSERT(len == 11);
    OK(ringkv_get(e, S("ap"), &b));
    ASSERT(BUF_IS(b, "Hello Redis"));
    ringkv_buf_free(&b);
    OK(ringkv_setrange(e, S("sr"), 3, S("ab"), &len));
    ASSERT(len == 5);
    OK(ringkv_get(e, S("sr"), &b));
    ASSERT(BUF_IS(b, "\0\0\0ab"));
    ringkv_buf_free(&b);
    OK(ringkv_getdel(e, S("sr"), &b));
    ASSERT(BUF_IS(b, "\0\0\0ab"));
    ringkv_buf_free(&b);
    OK(ringkv_getdel(e, S("sr"), &b));
    ASSERT(b.ptr == NULL);
    OK(ringkv_getex(e, S("ap"), RINGKV_EXPIRY_SECONDS, 50, &b));
    ASSERT(BUF_IS(b, "Hello Redis"));
    ringkv_buf_free(&b);
    OK(ringkv_ttl(e, S("ap"), &ttl));
    ASSERT(ttl >= 49 && ttl <= 50);
    OK(ringkv_getex(e, S("ap"), RINGKV_EXPIRY_NONE, 0, &b)); /* keeps the TTL */
    ringkv_buf_free(&b);
    OK(ringkv_ttl(e, S("ap"), &ttl));
    ASSERT(ttl >= 49 && ttl <= 50);
    OK(ringkv_getex(e, S("ap"), RINGKV_EXPIRY_PERSIST, 0, &b));
    ASSERT(BUF_IS(b, "Hello Redis"));
    ringkv_buf_free(&b);
    OK(ringkv_ttl(e, S("ap"), &ttl));
    ASSERT(ttl == -1);
    OK(ringkv_getex(e, S("nokey"), RINGKV_EXPIRY_MILLIS, 1000, &b));
    ASSERT(b.ptr == NULL);

    /* mset / mget with nil entries / msetnx */
    strlist kv = {0};
    sl_push(&kv, S("m\0a"));
    sl_str(&kv, "A");
    sl_str(&kv, "m:b");
    sl_push(&kv, "", 0);
    OK(ringkv_mset(e, kv.bytes, kv.lens, kv.n));
    sl_free(&kv);
    strlist keys = {0};
    sl_push(&keys, S("m\0a"));
    sl_str(&keys, "m:missing");
    sl_str(&keys, "m:b");
    sl_push(&keys, S("a\0b"));
    ringkv_buf_array arr = array_sentinel();
    OK(ringkv_mget(e, keys.bytes, keys.lens, keys.n, &arr));
    ASSERT(arr.len == 4);
    ASSERT(BUF_IS(arr.ptr[0], "A"));
    ASSERT(arr.ptr[1].ptr == NULL && arr.ptr[1].len == 0);
    ASSERT(arr.ptr[2].ptr != NULL && arr.ptr[2].len == 0);
    ASSERT(BUF_IS(arr.ptr[3], "one"));
    ringkv_buf_array_free(&arr);
    ASSERT(arr.ptr == NULL && arr.len == 0);
    sl_free(&keys);
    strlist nx = {0};
    sl_str(&nx, "m:new");
    sl_str(&nx, "N");
    sl_str(&nx, "m:b");
    sl_str(&nx, "B");
    applied = true;
    OK(ringkv_msetnx(e, nx.bytes, nx.lens, nx.n, &applied));
    ASSERT(!applied);
    OK(ringkv_get(e, S("m:new"), &b));
    ASSERT(b.ptr == NULL);
    sl_free(&nx);
    sl_str(&nx, "m:new");
    sl_str(&nx, "N");
    sl_str(&nx, "m:new2");
    sl_str(&nx, "N2");
    OK(ringkv_msetnx(e, nx.bytes, nx.lens, nx.n, &applied));
    ASSERT(applied);
    sl_free(&nx);
    OK(ringkv_get(e, S("m:new2"), &b));
    ASSERT(BUF_IS(b, "N2"));
    ringkv_buf_free(&b);
    ringkv_engine_free(e);
}

/* ------------------------------------------------------------------ */
/* keys                                                                 */

static uint64_t exists1(const ringkv_engine *e, const char *key, size_t len) {
    uint64_t n = SENTINEL_U64;
    OK(ringkv_exists(e, key, &len, 1, &n));
    return n;
}

static void test_keys(void) {
    ringkv_engine *e = open_memory(NULL);
    ringkv_buf b;
    bool applied = false;
    uint64_t count = 0;

    ringkv_buf rk = buf_sentinel();
    OK(ringkv_random_key(e, &rk));
    ASSERT(rk.ptr == NULL);
    OK(ringkv_dbsize(e, &count));
    ASSERT(count == 0);

    OK(ringkv_set(e, S("k1"), S("v1")));
    OK(ringkv_set(e, S("k2"), S("v2")));
    OK(ringkv_set(e, S("k\0 3"), S("v3")));
    const char h_pairs[] = "fv";
    const size_t h_lens[] = {1, 1};
    size_t added = 0;
    OK(ringkv_hset(e, S("h"), h_pairs, h_lens, 2, &added));
    OK(ringkv_dbsize(e, &count));
    ASSERT(count == 4);
    OK(ringkv_random_key(e, &rk));
    ASSERT(rk.ptr != NULL);
    ASSERT(BUF_IS(rk, "k1") || BUF_IS(rk, "k2") || BUF_IS(rk, "k\0 3") || BUF_IS(rk, "h"));
    ringkv_buf_free(&rk);

    /* exists counts a key named twice twice */
    strlist l = {0};
    sl_str(&l, "k1");
    sl_str(&l, "k1");
    sl_str(&l, "nope");
    sl_push(&l, S("k\0 3"));
    OK(ringkv_exists(e, l.bytes, l.lens, l.n, &count));
    ASSERT(count == 3);
    sl_free(&l);

    int32_t t = -1;
    OK(ringkv_type(e, S("k1"), &t));
    ASSERT(t == RINGKV_TYPE_STRING);
    OK(ringkv_type(e, S("h"), &t));
    ASSERT(t == RINGKV_TYPE_HASH);
    OK(ringkv_type(e, S("none"), &t));
    ASSERT(t == RINGKV_TYPE_NONE);

    /* TTLs */
    int64_t ttl = 0, pttl = 0, at = 0;
    OK(ringkv_ttl(e, S("none"), &ttl));
    ASSERT(ttl == -2);
    OK(ringkv_pttl(e, S("none"), &pttl));
    ASSERT(pttl == -2);
    OK(ringkv_pexpire_time(e, S("none"), &at));
    ASSERT(at == -2);
    OK(ringkv_ttl(e, S("k1"), &ttl));
    ASSERT(ttl == -1);
    OK(ringkv_pttl(e, S("k1"), &pttl));
    ASSERT(pttl == -1);
    OK(ringkv_pexpire_time(e, S("k1"), &at));
    ASSERT(at == -1);
    OK(ringkv_expire(e, S("none"), 10, &applied));
    ASSERT(!applied);
    OK(ringkv_expire(e, S("k1"), 100, &applied));
    ASSERT(applied);
    OK(ringkv_ttl(e, S("k1"), &ttl));
    ASSERT(ttl >= 99 && ttl <= 100);
    OK(ringkv_pexpire(e, S("k1"), 20000, &applied));
    ASSERT(applied);
    OK(ringkv_pttl(e, S("k1"), &pttl));
    ASSERT(pttl > 15000 && pttl <= 20000);
    int64_t when = now_ms() + 7200 * 1000;
    OK(ringkv_expire_at(e, S("k1"), when / 1000, &applied));
    ASSERT(applied);
    OK(ringkv_pexpire_time(e, S("k1"), &at));
    ASSERT(at == when / 1000 * 1000);
    OK(ringkv_pexpire_at(e, S("k1"), when, &applied));
    OK(ringkv_pexpire_time(e, S("k1"), &at));
    ASSERT(applied && at == when);
    /* conditions */
    OK(ringkv_pexpire_at_if(e, S("k1"), when + 1000, RINGKV_EXPIRE_NX, &applied));
    ASSERT(!applied);
    OK(ringkv_pexpire_at_if(e, S("k1"), when - 1000, RINGKV_EXPIRE_GT, &applied));
    ASSERT(!applied);
    OK(ringkv_pexpire_at_if(e, S("k1"), when + 1000, RINGKV_EXPIRE_GT, &applied));
    ASSERT(applied);
    OK(ringkv_pexpire_at_if(e, S("k1"), when + 5000, RINGKV_EXPIRE_LT, &applied));
    ASSERT(!applied);
    OK(ringkv_pexpire_at_if(e, S("k1"), when, RINGKV_EXPIRE_LT, &applied));
    ASSERT(applied);
    OK(ringkv_pexpire_time(e, S("k1"), &at));
    ASSERT(at == when);
    OK(ringkv_pexpire_at_if(e, S("k2"), when, RINGKV_EXPIRE_XX, &applied));
    ASSERT(!applied);
    OK(ringkv_pexpire_at_if(e, S("k2"), when, RINGKV_EXPIRE_NX, &applied));
    ASSERT(applied);
    OK(ringkv_pexpire_at_if(e, S("k2"), when + 1, RINGKV_EXPIRE_ALWAYS, &applied));
    ASSERT(applied);
    OK(ringkv_persist(e, S("k2"), &applied));
    ASSERT(applied);
    OK(ringkv_persist(e, S("k2"), &applied));
    ASSERT(!applied);
    OK(ringkv_ttl(e, S("k2"), &ttl));
    ASSERT(ttl == -1);
    /* an expiry in the past deletes */
    OK(ringkv_set(e, S("gone"), S("x")));
    OK(ringkv_pexpire_at(e, S("gone"), 1000, &applied));
    ASSERT(applied && exists1(e, S("gone")) == 0);

    /* rename / rename_nx / copy */
    OK(ringkv_rename(e, S("k2"), S("k2b")));
    ASSERT(exists1(e, S("k2")) == 0 && exists1(e, S("k2b")) == 1);
    OK(ringkv_rename_nx(e, S("k2b"), S("k1"), &applied));
    ASSERT(!applied);
    OK(ringkv_rename_nx(e, S("k2b"), S("k2"), &applied));
    ASSERT(applied);
    bool copied = true;
    OK(ringkv_copy(e, S("k2"), S("k1"), false, &copied));
    ASSERT(!copied);
    OK(ringkv_copy(e, S("k2"), S("k1"), true, &copied));
    ASSERT(copied);
    OK(ringkv_get(e, S("k1"), &b));
    ASSERT(BUF_IS(b, "v2"));
    ringkv_buf_free(&b);
    OK(ringkv_ttl(e, S("k1"), &ttl));
    ASSERT(ttl == -1);
    OK(ringkv_copy(e, S("h"), S("h2"), false, &copied));
    ASSERT(copied);
    OK(ringkv_hget(e, S("h2"), S("f"), &b));
    ASSERT(BUF_IS(b, "v"));
    ringkv_buf_free(&b);

    /* del */
    strlist d = {0};
    sl_str(&d, "k1");
    sl_str(&d, "nope");
    sl_str(&d, "h2");
    sl_push(&d, S("k\0 3"));
    uint64_t deleted = SENTINEL_U64;
    OK(ringkv_del(e, d.bytes, d.lens, d.n, &deleted));
    ASSERT(deleted == 3);
    OK(ringkv_del(e, d.bytes, d.lens, d.n, &deleted));
    ASSERT(deleted == 0);
    sl_free(&d);
    OK(ringkv_dbsize(e, &count));
    ASSERT(count == 2); /* k2, h */

    OK(ringkv_flush(e));
    OK(ringkv_dbsize(e, &count));
    ASSERT(count == 0);
    ringkv_engine_free(e);
}

/* ------------------------------------------------------------------ */
/* hashes                                                               */

/* The index of field "f%03d" in a flattened pairs or fields array, checked. */
static int field_index(ringkv_buf f) {
    if (f.ptr == NULL || f.len != 4 || f.ptr[0] != 'f')
        return -1;
    int v = 0;
    for (int i = 1; i < 4; i++) {
        if (f.ptr[i] < '0' || f.ptr[i] > '9')
            return -1;
        v = v * 10 + (f.ptr[i] - '0');
    }
    return v;
}
static int value_matches(ringkv_buf field, ringkv_buf value) {
    /* field "fNNN" has value "vNNN" */
    return value.ptr != NULL && value.len == 4 && value.ptr[0] == 'v' && memcmp(value.ptr + 1, field.ptr + 1, 3) == 0;
}

static void fill_hash(const ringkv_engine *e, const char *key, size_t key_len, int n) {
    strlist p = {0};
    char f[16], v[16];
    for (int i = 0; i < n; i++) {
        snprintf(f, sizeof f, "f%03d", i);
        snprintf(v, sizeof v, "v%03d", i);
        sl_str(&p, f);
        sl_str(&p, v);
    }
    size_t added = 0;
    OK(ringkv_hset(e, key, key_len, p.bytes, p.lens, p.n, &added));
    ASSERT(added == (size_t)n);
    sl_free(&p);
}

static void test_hashes(void) {
    ringkv_engine *e = open_memory(NULL);
    ringkv_buf b;
    ringkv_buf_array arr;
    size_t n = 0;
    bool yes = false;

    strlist p = {0};
    sl_str(&p, "name");
    sl_str(&p, "ringkv");
    sl_push(&p, S("bin\0field"));
    sl_push(&p, S("bin\0value"));
    sl_str(&p, "empty");
    sl_push(&p, "", 0);
    sl_str(&p, "name"); /* the same field twice: counted once, the last value wins */
    sl_str(&p, "RINGKV");
    OK(ringkv_hset(e, S("h"), p.bytes, p.lens, p.n, &n));
    ASSERT(n == 3);
    sl_free(&p);
    sl_str(&p, "name");
    sl_str(&p, "x");
    sl_str(&p, "new");
    sl_str(&p, "y");
    OK(ringkv_hset(e, S("h"), p.bytes, p.lens, p.n, &n));
    ASSERT(n == 1);
    sl_free(&p);
    OK(ringkv_hlen(e, S("h"), &n));
    ASSERT(n == 4);
    /* one field without a lengths array: 1 when new, 0 when overwritten */
    OK(ringkv_hset_field(e, S("h"), S("one"), S("1"), &n));
    ASSERT(n == 1);
    OK(ringkv_hset_field(e, S("h"), S("one"), S("2"), &n));
    ASSERT(n == 0);
    n = 77;
    EXPECT(ringkv_hset_field(e, S("h"), NULL, 3, S("v"), &n), RINGKV_INVALID_ARGUMENT);
    ASSERT(n == 77);
    OK(ringkv_set(e, S("a-string"), S("x")));
    EXPECT(ringkv_hset_field(e, S("a-string"), S("f"), S("v"), &n), RINGKV_WRONG_TYPE);
    {
        uint64_t gone;
        OK(ringkv_del(e, "a-string", (size_t[]){8}, 1, &gone));
        ASSERT(gone == 1);
    }
    {
        ringkv_buf one;
        OK(ringkv_hget(e, S("h"), S("one"), &one));
        ASSERT(BUF_IS(one, "2"));
        ringkv_buf_free(&one);
    }
    OK(ringkv_hdel(e, S("h"), "one", (size_t[]){3}, 1, &n));
    ASSERT(n == 1);
    OK(ringkv_hlen(e, S("nohash"), &n));
    ASSERT(n == 0);

    OK(ringkv_hget(e, S("h"), S("name"), &b));
    ASSERT(BUF_IS(b, "x"));
    ringkv_buf_free(&b);
    OK(ringkv_hget(e, S("h"), S("bin\0field"), &b));
    ASSERT(BUF_IS(b, "bin\0value"));
    ringkv_buf_free(&b);
    OK(ringkv_hget(e, S("h"), S("empty"), &b));
    ASSERT(b.ptr != NULL && b.len == 0);
    ringkv_buf_free(&b);
    OK(ringkv_hget(e, S("h"), S("bin"), &b));
    ASSERT(b.ptr == NULL);
    OK(ringkv_hget(e, S("nohash"), S("name"), &b));
    ASSERT(b.ptr == NULL);

    OK(ringkv_hsetnx(e, S("h"), S("name"), S("z"), &yes));
    ASSERT(!yes);
    OK(ringkv_hsetnx(e, S("h"), S("nx"), S("z"), &yes));
    ASSERT(yes);
    OK(ringkv_hexists(e, S("h"), S("nx"), &yes));
    ASSERT(yes);
    OK(ringkv_hexists(e, S("h"), S("nx2"), &yes));
    ASSERT(!yes);
    OK(ringkv_hexists(e, S("nohash"), S("nx"), &yes));
    ASSERT(!yes);

    /* hmget with nil entries */
    sl_str(&p, "name");
    sl_str(&p, "missing");
    sl_str(&p, "empty");
    sl_push(&p, S("bin\0field"));
    arr = array_sentinel();
    OK(ringkv_hmget(e, S("h"), p.bytes, p.lens, p.n, &arr));
    ASSERT(arr.len == 4);
    ASSERT(BUF_IS(arr.ptr[0], "x"));
    ASSERT(arr.ptr[1].ptr == NULL);
    ASSERT(arr.ptr[2].ptr != NULL && arr.ptr[2].len == 0);
    ASSERT(BUF_IS(arr.ptr[3], "bin\0value"));
    ringkv_buf_array_free(&arr);
    OK(ringkv_hmget(e, S("nohash"), p.bytes, p.lens, p.n, &arr));
    ASSERT(arr.len == 4);
    for (size_t i = 0; i < arr.len; i++)
        ASSERT(arr.ptr[i].ptr == NULL);
    ringkv_buf_array_free(&arr);

    /* hincr_by / hincr_by_float */
    int64_t v = 0;
    OK(ringkv_hincr_by(e, S("h"), S("cnt"), 10, &v));
    ASSERT(v == 10);
    OK(ringkv_hincr_by(e, S("h"), S("cnt"), -3, &v));
    ASSERT(v == 7);
    OK(ringkv_hincr_by_float(e, S("h"), S("fl"), 1.5, &b));
    ASSERT(BUF_IS(b, "1.5"));
    ringkv_buf_free(&b);
    OK(ringkv_hincr_by_float(e, S("h"), S("fl"), 0.25, &b));
    ASSERT(BUF_IS(b, "1.75"));
    ringkv_buf_free(&b);

    /* hdel */
    sl_free(&p);
    sl_str(&p, "nx");
    sl_str(&p, "nx");
    sl_str(&p, "none");
    sl_str(&p, "new");
    OK(ringkv_hdel(e, S("h"), p.bytes, p.lens, p.n, &n));
    ASSERT(n == 2);
    sl_free(&p);
    /* h: name=x, bin\0field=bin\0value, empty="", cnt=7, fl=1.75 */

    /* hgetall: flattened pairs */
    OK(ringkv_hgetall(e, S("h"), &arr));
    ASSERT(arr.len == 10);
    int seen = 0;
    for (size_t i = 0; i + 1 < arr.len; i += 2) {
        ringkv_buf f = arr.ptr[i], val = arr.ptr[i + 1];
        if (BUF_IS(f, "name"))
            { ASSERT(BUF_IS(val, "x")); seen |= 1; }
        else if (BUF_IS(f, "bin\0field"))
            { ASSERT(BUF_IS(val, "bin\0value")); seen |= 2; }
        else if (BUF_IS(f, "empty"))
            { ASSERT(val.ptr != NULL && val.len == 0); seen |= 4; }
        else if (BUF_IS(f, "cnt"))
            { ASSERT(BUF_IS(val, "7")); seen |= 8; }
        else if (BUF_IS(f, "fl"))
            { ASSERT(BUF_IS(val, "1.75")); seen |= 16; }
        else
            ASSERT(!"unexpected field");
    }
    ASSERT(seen == 31);
    ringkv_buf_array_free(&arr);
    OK(ringkv_hgetall(e, S("nohash"), &arr));
    ASSERT(arr.len == 0);
    ringkv_buf_array_free(&arr);

    /* hkeys / hvals: same order as each other? Not promised; check as sets. */
    OK(ringkv_hkeys(e, S("h"), &arr));
    ASSERT(arr.len == 5);
    seen = 0;
    for (size_t i = 0; i < arr.len; i++) {
        if (BUF_IS(arr.ptr[i], "name")) seen |= 1;
        if (BUF_IS(arr.ptr[i], "bin\0field")) seen |= 2;
        if (BUF_IS(arr.ptr[i], "empty")) seen |= 4;
        if (BUF_IS(arr.ptr[i], "cnt")) seen |= 8;
        if (BUF_IS(arr.ptr[i], "fl")) seen |= 16;
    }
    ASSERT(seen == 31);
    ringkv_buf_array_free(&arr);
    OK(ringkv_hvals(e, S("h"), &arr));
    ASSERT(arr.len == 5);
    seen = 0;
    for (size_t i = 0; i < arr.len; i++) {
        if (BUF_IS(arr.ptr[i], "x")) seen |= 1;
        if (BUF_IS(arr.ptr[i], "bin\0value")) seen |= 2;
        if (arr.ptr[i].ptr != NULL && arr.ptr[i].len == 0) seen |= 4;
        if (BUF_IS(arr.ptr[i], "7")) seen |= 8;
        if (BUF_IS(arr.ptr[i], "1.75")) seen |= 16;
    }
    ASSERT(seen == 31);
    ringkv_buf_array_free(&arr);

    /* hrandfield: pairs; count > 0 distinct, count < 0 exactly -count */
    fill_hash(e, S("r"), 20);
    OK(ringkv_hrandfield(e, S("r"), 5, &arr));
    ASSERT(arr.len == 10);
    int hits[20] = {0};
    for (size_t i = 0; i < arr.len; i += 2) {
        int idx = field_index(arr.ptr[i]);
        ASSERT(idx >= 0 && idx < 20 && value_matches(arr.ptr[i], arr.ptr[i + 1]));
        ASSERT(hits[idx]++ == 0);
    }
    ringkv_buf_array_free(&arr);
    OK(ringkv_hrandfield(e, S("r"), 50, &arr));
    ASSERT(arr.len == 40);
    ringkv_buf_array_free(&arr);
    OK(ringkv_hrandfield(e, S("r"), -30, &arr));
    ASSERT(arr.len == 60);
    for (size_t i = 0; i < arr.len; i += 2)
        ASSERT(field_index(arr.ptr[i]) >= 0 && value_matches(arr.ptr[i], arr.ptr[i + 1]));
    ringkv_buf_array_free(&arr);
    OK(ringkv_hrandfield(e, S("nohash"), 3, &arr));
    ASSERT(arr.len == 0);
    ringkv_buf_array_free(&arr);

    /* hdrain: removes atomically, in pages, until the hash is gone */
    fill_hash(e, S("drain"), 25);
    int drained[25] = {0};
    size_t total = 0, pages = 0;
    for (;;) {
        OK(ringkv_hdrain(e, S("drain"), 10, &arr));
        ASSERT(arr.len % 2 == 0 && arr.len <= 20);
        for (size_t i = 0; i < arr.len; i += 2) {
            int idx = field_index(arr.ptr[i]);
            ASSERT(idx >= 0 && idx < 25 && value_matches(arr.ptr[i], arr.ptr[i + 1]));
            ASSERT(drained[idx]++ == 0);
        }
        total += arr.len / 2;
        size_t page = arr.len;
        ringkv_buf_array_free(&arr);
        if (page == 0)
            break;
        pages++;
        ASSERT(pages <= 3);
        OK(ringkv_hlen(e, S("drain"), &n));
        ASSERT(n == 25 - total);
    }
    ASSERT(total == 25 && pages == 3);
    ASSERT(exists1(e, S("drain")) == 0);
    ringkv_engine_free(e);
}

/* ------------------------------------------------------------------ */
/* status codes from input, out-parameters untouched on failure         */

static void test_errors(void) {
    ringkv_engine *e = open_memory(NULL);
    ringkv_buf b;
    ringkv_buf_array arr;
    int64_t i64;
    uint64_t u64;
    size_t sz;
    int32_t i32;
    bool flag;

    OK(ringkv_set(e, S("str"), S("abc")));
    OK(ringkv_set(e, S("num"), S("10")));
    OK(ringkv_set(e, S("max"), S("9223372036854775807")));
    OK(ringkv_set(e, S("huge"), S("1e308")));
    const char hp[] = "fv";
    const size_t hl[] = {1, 1};
    OK(ringkv_hset(e, S("hash"), hp, hl, 2, &sz));
    OK(ringkv_hset(e, S("hash"), "nabc", (const size_t[]){1, 3}, 2, &sz));

    /* WRONG_TYPE */
    b = buf_sentinel();
    EXPECT(ringkv_get(e, S("hash"), &b), RINGKV_WRONG_TYPE);
    ASSERT(buf_untouched(b));
    b = buf_sentinel();
    EXPECT(ringkv_hget(e, S("str"), S("f"), &b), RINGKV_WRONG_TYPE);
    ASSERT(buf_untouched(b));
    sz = SENTINEL_LEN;
    EXPECT(ringkv_hlen(e, S("str"), &sz), RINGKV_WRONG_TYPE);
    ASSERT(sz == SENTINEL_LEN);
    arr = array_sentinel();
    EXPECT(ringkv_hgetall(e, S("str"), &arr), RINGKV_WRONG_TYPE);
    ASSERT(array_untouched(arr));
    arr = array_sentinel();
    EXPECT(ringkv_hdrain(e, S("str"), 10, &arr), RINGKV_WRONG_TYPE);
    ASSERT(array_untouched(arr));
    arr = array_sentinel();
    EXPECT(ringkv_hmget(e, S("str"), hp, hl, 1, &arr), RINGKV_WRONG_TYPE);
    ASSERT(array_untouched(arr));
    sz = SENTINEL_LEN;
    EXPECT(ringkv_append(e, S("hash"), S("x"), &sz), RINGKV_WRONG_TYPE);
    ASSERT(sz == SENTINEL_LEN);
    i64 = SENTINEL_I64;
    EXPECT(ringkv_incr_by(e, S("hash"), 1, &i64), RINGKV_WRONG_TYPE);
    ASSERT(i64 == SENTINEL_I64);
    sz = SENTINEL_LEN;
    EXPECT(ringkv_hset(e, S("str"), hp, hl, 2, &sz), RINGKV_WRONG_TYPE);
    ASSERT(sz == SENTINEL_LEN);
    /* ...and a successful mget of a hash key is a nil entry, not an error */
    arr = array_sentinel();
    OK(ringkv_mget(e, "hash", (const size_t[]){4}, 1, &arr));
    ASSERT(arr.len == 1 && arr.ptr[0].ptr == NULL);
    ringkv_buf_array_free(&arr);

    /* NOT_AN_INTEGER */
    i64 = SENTINEL_I64;
    EXPECT(ringkv_incr_by(e, S("str"), 1, &i64), RINGKV_NOT_AN_INTEGER);
    ASSERT(i64 == SENTINEL_I64);
    i64 = SENTINEL_I64;
    EXPECT(ringkv_hincr_by(e, S("hash"), S("n"), 1, &i64), RINGKV_NOT_AN_INTEGER);
    ASSERT(i64 == SENTINEL_I64);

    /* NOT_A_FLOAT: not a number, or an infinite result */
    b = buf_sentinel();
    EXPECT(ringkv_incr_by_float(e, S("str"), 1.0, &b), RINGKV_NOT_A_FLOAT);
    ASSERT(buf_untouched(b));
    EXPECT(ringkv_incr_by_float(e, S("huge"), 1e308, &b), RINGKV_NOT_A_FLOAT);
    ASSERT(buf_untouched(b));
    EXPECT(ringkv_hincr_by_float(e, S("hash"), S("n"), 1.0, &b), RINGKV_NOT_A_FLOAT);
    ASSERT(buf_untouched(b));
    OK(ringkv_get(e, S("huge"), &b));
    ASSERT(BUF_IS(b, "1e308"));
    ringkv_buf_free(&b);

    /* OVERFLOW */
    i64 = SENTINEL_I64;
    EXPECT(ringkv_incr_by(e, S("max"), 1, &i64), RINGKV_OVERFLOW);
    ASSERT(i64 == SENTINEL_I64);
    EXPECT(ringkv_incr_by(e, S("num"), INT64_MAX, &i64), RINGKV_OVERFLOW);
    OK(ringkv_incr_by(e, S("num"), INT64_MAX - 10, &i64));
    ASSERT(i64 == INT64_MAX);
    ASSERT(i64 != SENTINEL_I64);

    /* INVALID_EXPIRE */
    bool_fill(&flag);
    b = buf_sentinel();
    EXPECT(ringkv_set_with(e, S("exp"), S("v"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_SECONDS, 0, true, &flag, &b),
           RINGKV_INVALID_EXPIRE);
    ASSERT(bool_untouched(&flag) && buf_untouched(b));
    EXPECT(ringkv_set_with(e, S("exp"), S("v"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_MILLIS, 0, false, &flag, NULL),
           RINGKV_INVALID_EXPIRE);
    EXPECT(ringkv_set_with(e, S("exp"), S("v"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_SECONDS, UINT64_MAX / 2, false,
                           &flag, NULL),
           RINGKV_INVALID_EXPIRE);
    ASSERT(exists1(e, S("exp")) == 0);
    EXPECT(ringkv_expire(e, S("str"), INT64_MAX, &flag), RINGKV_INVALID_EXPIRE);
    EXPECT(ringkv_pexpire(e, S("str"), INT64_MAX, &flag), RINGKV_INVALID_EXPIRE);
    EXPECT(ringkv_expire_at(e, S("str"), INT64_MAX / 10, &flag), RINGKV_INVALID_EXPIRE);
    ASSERT(bool_untouched(&flag));
    EXPECT(ringkv_getex(e, S("str"), RINGKV_EXPIRY_SECONDS, 0, &b), RINGKV_INVALID_EXPIRE);
    ASSERT(buf_untouched(b));
    OK(ringkv_ttl(e, S("str"), &i64));
    ASSERT(i64 == -1);

    /* NO_SUCH_KEY */
    EXPECT(ringkv_rename(e, S("missing"), S("x")), RINGKV_NO_SUCH_KEY);
    bool_fill(&flag);
    EXPECT(ringkv_rename_nx(e, S("missing"), S("x"), &flag), RINGKV_NO_SUCH_KEY);
    ASSERT(bool_untouched(&flag));

    /* INVALID_ARGUMENT: NULL engine */
    b = buf_sentinel();
    EXPECT(ringkv_get(NULL, S("k"), &b), RINGKV_INVALID_ARGUMENT);
    ASSERT(buf_untouched(b));
    EXPECT(ringkv_set(NULL, S("k"), S("v")), RINGKV_INVALID_ARGUMENT);
    u64 = SENTINEL_U64;
    EXPECT(ringkv_dbsize(NULL, &u64), RINGKV_INVALID_ARGUMENT);
    ASSERT(u64 == SENTINEL_U64);
    i32 = 0x5a5a5a5a;
    EXPECT(ringkv_type(NULL, S("k"), &i32), RINGKV_INVALID_ARGUMENT);
    ASSERT(i32 == 0x5a5a5a5a);
    EXPECT(ringkv_flush(NULL), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_stats_json(NULL, &b), RINGKV_INVALID_ARGUMENT);
    ASSERT(buf_untouched(b));
    u64 = SENTINEL_U64;
    bool_fill(&flag);
    EXPECT(ringkv_last_write_offset(NULL, &u64, &flag), RINGKV_INVALID_ARGUMENT);
    ASSERT(u64 == SENTINEL_U64 && bool_untouched(&flag));
    EXPECT(ringkv_write_batch(NULL, NULL, NULL), RINGKV_INVALID_ARGUMENT);
    ringkv_scan_cursor *sc = SENTINEL_PTR;
    EXPECT(ringkv_scan_cursor_new(NULL, NULL, 0, 0, RINGKV_TYPE_NONE, &sc), RINGKV_INVALID_ARGUMENT);
    ASSERT(sc == SENTINEL_PTR);
    EXPECT(ringkv_scan_cursor_next(NULL, &arr, &flag), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_batch_len(NULL, &sz), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_batch_set(NULL, S("k"), S("v")), RINGKV_INVALID_ARGUMENT);
    uint16_t port = 0x5a5a;
    EXPECT(ringkv_primary_port(NULL, &port), RINGKV_INVALID_ARGUMENT);
    ASSERT(port == 0x5a5a);
    EXPECT(ringkv_follower_promote(NULL), RINGKV_INVALID_ARGUMENT);

    /* NULL key / value / field with a non-zero length */
    b = buf_sentinel();
    EXPECT(ringkv_get(e, NULL, 3, &b), RINGKV_INVALID_ARGUMENT);
    ASSERT(buf_untouched(b));
    EXPECT(ringkv_set(e, NULL, 1, S("v")), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_set(e, S("k"), NULL, 2), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_hget(e, S("hash"), NULL, 1, &b), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_rename(e, S("str"), NULL, 5), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_scan_cursor_new(e, NULL, 4, 0, RINGKV_TYPE_NONE, &sc), RINGKV_INVALID_ARGUMENT);
    ASSERT(sc == SENTINEL_PTR);
    ASSERT(exists1(e, S("k")) == 0);
    /* NULL lists */
    EXPECT(ringkv_del(e, NULL, hl, 1, &u64), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_del(e, "k", NULL, 1, &u64), RINGKV_INVALID_ARGUMENT);
    ASSERT(u64 == SENTINEL_U64);

    /* NULL out-parameters; the call must not have had an effect either */
    EXPECT(ringkv_get(e, S("str"), NULL), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_incr_by(e, S("nullout"), 1, NULL), RINGKV_INVALID_ARGUMENT);
    ASSERT(exists1(e, S("nullout")) == 0);
    EXPECT(ringkv_append(e, S("nullout"), S("x"), NULL), RINGKV_INVALID_ARGUMENT);
    ASSERT(exists1(e, S("nullout")) == 0);
    EXPECT(ringkv_hset(e, S("nullout"), hp, hl, 2, NULL), RINGKV_INVALID_ARGUMENT);
    ASSERT(exists1(e, S("nullout")) == 0);
    EXPECT(ringkv_hdrain(e, S("hash"), 10, NULL), RINGKV_INVALID_ARGUMENT);
    OK(ringkv_hlen(e, S("hash"), &sz));
    ASSERT(sz == 2);
    EXPECT(ringkv_getdel(e, S("str"), NULL), RINGKV_INVALID_ARGUMENT);
    ASSERT(exists1(e, S("str")) == 1);
    EXPECT(ringkv_set_with(e, S("nullout"), S("v"), RINGKV_SET_NX, RINGKV_EXPIRY_NONE, 0, false, NULL, NULL),
           RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_set_with(e, S("nullout"), S("v"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_NONE, 0, true, &flag, NULL),
           RINGKV_INVALID_ARGUMENT);
    ASSERT(exists1(e, S("nullout")) == 0);
    EXPECT(ringkv_del(e, "str", (const size_t[]){3}, 1, NULL), RINGKV_INVALID_ARGUMENT);
    ASSERT(exists1(e, S("str")) == 1);
    EXPECT(ringkv_dbsize(e, NULL), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_type(e, S("str"), NULL), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_stats_json(e, NULL), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_scan_cursor_new(e, NULL, 0, 0, RINGKV_TYPE_NONE, NULL), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_batch_new(NULL), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_engine_open(NULL, NULL, 0, NULL), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_last_write_offset(e, &u64, NULL), RINGKV_INVALID_ARGUMENT);

    /* out-of-range enum integers */
    bool_fill(&flag);
    b = buf_sentinel();
    EXPECT(ringkv_set_with(e, S("enum"), S("v"), 7, RINGKV_EXPIRY_NONE, 0, true, &flag, &b),
           RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_set_with(e, S("enum"), S("v"), -1, RINGKV_EXPIRY_NONE, 0, true, &flag, &b),
           RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_set_with(e, S("enum"), S("v"), RINGKV_SET_ALWAYS, 99, 5, true, &flag, &b),
           RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_set_with(e, S("enum"), S("v"), RINGKV_SET_ALWAYS, -3, 5, true, &flag, &b),
           RINGKV_INVALID_ARGUMENT);
    /* PERSIST is for getex only */
    EXPECT(ringkv_set_with(e, S("enum"), S("v"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_PERSIST, 0, true, &flag, &b),
           RINGKV_INVALID_ARGUMENT);
    ASSERT(bool_untouched(&flag) && buf_untouched(b));
    ASSERT(exists1(e, S("enum")) == 0);
    EXPECT(ringkv_getex(e, S("str"), 99, 5, &b), RINGKV_INVALID_ARGUMENT);
    ASSERT(buf_untouched(b));
    EXPECT(ringkv_pexpire_at_if(e, S("str"), now_ms() + 100000, 7, &flag), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_pexpire_at_if(e, S("str"), now_ms() + 100000, 5, &flag), RINGKV_INVALID_ARGUMENT);
    ASSERT(bool_untouched(&flag));
    OK(ringkv_ttl(e, S("str"), &i64));
    ASSERT(i64 == -1);
    sc = SENTINEL_PTR;
    EXPECT(ringkv_scan_cursor_new(e, NULL, 0, 0, 5, &sc), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_scan_cursor_new(e, NULL, 0, 0, -1, &sc), RINGKV_INVALID_ARGUMENT);
    ASSERT(sc == SENTINEL_PTR);

    /* odd pair counts */
    const char pairs3[] = "abc";
    const size_t lens3[] = {1, 1, 1};
    EXPECT(ringkv_mset(e, pairs3, lens3, 3), RINGKV_INVALID_ARGUMENT);
    bool_fill(&flag);
    EXPECT(ringkv_msetnx(e, pairs3, lens3, 1, &flag), RINGKV_INVALID_ARGUMENT);
    ASSERT(bool_untouched(&flag));
    sz = SENTINEL_LEN;
    EXPECT(ringkv_hset(e, S("oddh"), pairs3, lens3, 3, &sz), RINGKV_INVALID_ARGUMENT);
    ASSERT(sz == SENTINEL_LEN);
    ASSERT(exists1(e, S("a")) == 0 && exists1(e, S("oddh")) == 0);

    /* a lens array whose sum overflows size_t */
    const size_t lens_ovf[] = {SIZE_MAX, 2};
    const size_t lens_ovf3[] = {1, SIZE_MAX - 1, 5};
    arr = array_sentinel();
    EXPECT(ringkv_mget(e, "abcd", lens_ovf, 2, &arr), RINGKV_INVALID_ARGUMENT);
    ASSERT(array_untouched(arr));
    u64 = SENTINEL_U64;
    EXPECT(ringkv_del(e, "abcd", lens_ovf, 2, &u64), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_exists(e, "abcdefg", lens_ovf3, 3, &u64), RINGKV_INVALID_ARGUMENT);
    ASSERT(u64 == SENTINEL_U64);
    EXPECT(ringkv_mset(e, "abcd", lens_ovf, 2), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_hset(e, S("ovf"), "abcd", lens_ovf, 2, &sz), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_hmget(e, S("hash"), "abcd", lens_ovf, 2, &arr), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_hdel(e, S("hash"), "abcdefg", lens_ovf3, 3, &sz), RINGKV_INVALID_ARGUMENT);
    ASSERT(array_untouched(arr) && sz == SENTINEL_LEN);

    /* key / value over the configured limits */
    ringkv_engine *lim = open_memory("{\"max_key_len\":8,\"max_value_len\":16}");
    OK(ringkv_set(lim, S("12345678"), S("0123456789abcdef")));
    EXPECT(ringkv_set(lim, S("123456789"), S("v")), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_set(lim, S("k"), S("0123456789abcdefg")), RINGKV_INVALID_ARGUMENT);
    sz = SENTINEL_LEN;
    EXPECT(ringkv_append(lim, S("12345678"), S("x"), &sz), RINGKV_INVALID_ARGUMENT);
    ASSERT(sz == SENTINEL_LEN);
    ringkv_engine_free(lim);

    /* OUT_OF_MEMORY with maxmemory 1 (noeviction): writes refused, reads work */
    ringkv_engine *oom = open_memory("{\"maxmemory\":1}");
    ringkv_status st = RINGKV_OK;
    int writes = 0;
    for (; writes < 100 && st == RINGKV_OK; writes++) {
        char key[16];
        snprintf(key, sizeof key, "key%d", writes);
        st = ringkv_set(oom, key, strlen(key), S("some value that takes memory"));
    }
    ASSERT(st == RINGKV_OUT_OF_MEMORY);
    EXPECT(ringkv_set(oom, S("another"), S("v")), RINGKV_OUT_OF_MEMORY);
    i64 = SENTINEL_I64;
    EXPECT(ringkv_incr_by(oom, S("counter"), 1, &i64), RINGKV_OUT_OF_MEMORY);
    ASSERT(i64 == SENTINEL_I64);
    OK(ringkv_get(oom, S("another"), &b));
    ASSERT(b.ptr == NULL);
    ringkv_engine_free(oom);

    /* CONFIG: bad JSON, unknown field, invalid value; out untouched */
    ringkv_engine *bad = SENTINEL_PTR;
    EXPECT(ringkv_engine_open(NULL, "{not json", 0, &bad), RINGKV_CONFIG);
    EXPECT(ringkv_engine_open(NULL, "{\"no_such_setting\":1}", 0, &bad), RINGKV_CONFIG);
    EXPECT(ringkv_engine_open(NULL, "{\"maxmemory\":\"lots\"}", 0, &bad), RINGKV_CONFIG);
    EXPECT(ringkv_engine_open(NULL, "{\"shards\":3}", 0, &bad), RINGKV_CONFIG);
    ASSERT(bad == SENTINEL_PTR);
    /* unknown open flags */
    EXPECT(ringkv_engine_open(NULL, NULL, 0x80, &bad), RINGKV_INVALID_ARGUMENT);
    ASSERT(bad == SENTINEL_PTR);

    /* a freed engine handle used again is detected (before any new engine reuses its memory) */
    ringkv_engine *gone = open_memory(NULL);
    OK(ringkv_set(gone, S("k"), S("v")));
    ringkv_engine_free(gone);
    b = buf_sentinel();
    EXPECT(ringkv_get(gone, S("k"), &b), RINGKV_INVALID_ARGUMENT);
    ASSERT(buf_untouched(b));
    EXPECT(ringkv_set(gone, S("k"), S("v")), RINGKV_INVALID_ARGUMENT);
    u64 = SENTINEL_U64;
    EXPECT(ringkv_dbsize(gone, &u64), RINGKV_INVALID_ARGUMENT);
    ASSERT(u64 == SENTINEL_U64);
    ringkv_engine_free(gone); /* a second free is detected too: a no-op */

    /* a freed cursor / batch used again */
    ringkv_scan_cursor *c = NULL;
    OK(ringkv_scan_cursor_new(e, NULL, 0, 0, RINGKV_TYPE_NONE, &c));
    ringkv_scan_cursor_free(c);
    arr = array_sentinel();
    bool_fill(&flag);
    EXPECT(ringkv_scan_cursor_next(c, &arr, &flag), RINGKV_INVALID_ARGUMENT);
    ASSERT(array_untouched(arr) && bool_untouched(&flag));
    ringkv_scan_cursor_free(c);
    ringkv_hscan_cursor *hc = NULL;
    OK(ringkv_hscan_cursor_new(e, S("hash"), NULL, 0, 0, false, &hc));
    ringkv_hscan_cursor_free(hc);
    EXPECT(ringkv_hscan_cursor_next(hc, &arr, &flag), RINGKV_INVALID_ARGUMENT);
    ASSERT(array_untouched(arr) && bool_untouched(&flag));
    ringkv_hscan_cursor_free(hc);
    ringkv_batch *bt = NULL;
    OK(ringkv_batch_new(&bt));
    OK(ringkv_batch_set(bt, S("k"), S("v")));
    ringkv_batch_free(bt);
    sz = SENTINEL_LEN;
    EXPECT(ringkv_batch_len(bt, &sz), RINGKV_INVALID_ARGUMENT);
    ASSERT(sz == SENTINEL_LEN);
    EXPECT(ringkv_batch_set(bt, S("k"), S("v")), RINGKV_INVALID_ARGUMENT);
    ringkv_reply_array ra = {.ptr = SENTINEL_PTR, .len = SENTINEL_LEN};
    EXPECT(ringkv_write_batch(e, bt, &ra), RINGKV_INVALID_ARGUMENT);
    ASSERT(ra.ptr == SENTINEL_PTR && ra.len == SENTINEL_LEN);
    ringkv_batch_free(bt);
    ASSERT(exists1(e, S("k")) == 0);
    /* a handle of the wrong kind */
    OK(ringkv_batch_new(&bt));
    EXPECT(ringkv_dbsize((const ringkv_engine *)(const void *)bt, &u64), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_batch_len((const ringkv_batch *)(const void *)e, &sz), RINGKV_INVALID_ARGUMENT);
    ASSERT(u64 == SENTINEL_U64 && sz == SENTINEL_LEN);
    ringkv_batch_free(bt);

    /* hdrain with count 0 is refused */
    arr = array_sentinel();
    ASSERT(ringkv_hdrain(e, S("hash"), 0, &arr) != RINGKV_OK);
    ASSERT(array_untouched(arr));

    /* a follower on an engine without a log, a primary without a log: refused */
    ringkv_primary *pr = SENTINEL_PTR;
    ASSERT(ringkv_primary_start(e, "127.0.0.1:0", "/nonexistent/c.pem", "/nonexistent/c.key", "/nonexistent/ca.pem",
                                &pr) != RINGKV_OK);
    ASSERT(pr == SENTINEL_PTR);
    ringkv_engine_free(e);
}

/* ------------------------------------------------------------------ */
/* scans                                                                */

enum { N_USER = 500, N_SESSION = 300, N_HASH = 200, N_KEYS = N_USER + N_SESSION + N_HASH + 1 };

/* Key -> index in [0, N_KEYS), or -1. */
static int key_index(ringkv_buf k) {
    static const struct {
        const char *prefix;
        int base, n;
    } kinds[] = {{"user:", 0, N_USER}, {"session:", N_USER, N_SESSION}, {"hash:", N_USER + N_SESSION, N_HASH}};
    if (buf_is(k, S("bin\0key")))
        return N_KEYS - 1;
    for (size_t i = 0; i < 3; i++) {
        size_t pl = strlen(kinds[i].prefix);
        if (k.ptr == NULL || k.len != pl + 4 || memcmp(k.ptr, kinds[i].prefix, pl) != 0)
            continue;
        int v = 0;
        for (size_t j = pl; j < k.len; j++) {
            if (k.ptr[j] < '0' || k.ptr[j] > '9')
                return -1;
            v = v * 10 + (k.ptr[j] - '0');
        }
        return v < kinds[i].n ? kinds[i].base + v : -1;
    }
    return -1;
}

/* Runs a whole SCAN; counts[i] = times key i was returned. Returns keys returned. */
static size_t scan_all(const ringkv_engine *e, const char *pattern, size_t count, int32_t type, int *counts) {
    memset(counts, 0, N_KEYS * sizeof *counts);
    ringkv_scan_cursor *c = NULL;
    OK(ringkv_scan_cursor_new(e, pattern, pattern ? strlen(pattern) : 0, count, type, &c));
    bool done = false;
    size_t total = 0;
    for (int calls = 0; !done; calls++) {
        ASSERT(calls < 100000);
        ringkv_buf_array keys = array_sentinel();
        OK(ringkv_scan_cursor_next(c, &keys, &done));
        ASSERT(!array_untouched(keys));
        for (size_t i = 0; i < keys.len; i++) {
            int idx = key_index(keys.ptr[i]);
            ASSERT(idx >= 0);
            counts[idx]++;
        }
        total += keys.len;
        ringkv_buf_array_free(&keys);
    }
    ringkv_scan_cursor_free(c);
    return total;
}

/* Every key in [lo, hi) exactly once, every other key never. */
static int exactly_once(const int *counts, int lo, int hi) {
    for (int i = 0; i < N_KEYS; i++)
        if (counts[i] != (i >= lo && i < hi)) {
            fprintf(stderr, "key %d returned %d times\n", i, counts[i]);
            return 0;
        }
    return 1;
}

/* Waits (bounded) until no shard is rehashing, so that a scan returns no duplicates. */
static void wait_rehash_done(const ringkv_engine *e) {
    uint64_t deadline = mono_ms() + 20000;
    for (;;) {
        ringkv_buf json = {0};
        OK(ringkv_stats_json(e, &json));
        char *text = strndup((const char *)json.ptr, json.len);
        ringkv_buf_free(&json);
        ASSERT(text != NULL);
        const char *p = strstr(text, "\"rehashing_shards\":");
        ASSERT(p != NULL);
        int idle = strncmp(p, "\"rehashing_shards\":0", 20) == 0 && (p[20] == ',' || p[20] == '}');
        free(text);
        if (idle)
            return;
        ASSERT(mono_ms() < deadline);
        sleep_ms(20);
    }
}

static void test_scan(void) {
    ringkv_engine *e = open_memory(NULL);
    char key[32];
    for (int i = 0; i < N_USER; i++) {
        snprintf(key, sizeof key, "user:%04d", i);
        OK(ringkv_set(e, key, strlen(key), S("u")));
    }
    for (int i = 0; i < N_SESSION; i++) {
        snprintf(key, sizeof key, "session:%04d", i);
        bool applied = false;
        OK(ringkv_set_with(e, key, strlen(key), S("tok"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_SECONDS, 3600, false,
                           &applied, NULL));
    }
    for (int i = 0; i < N_HASH; i++) {
        snprintf(key, sizeof key, "hash:%04d", i);
        size_t added;
        OK(ringkv_hset(e, key, strlen(key), "fv", (const size_t[]){1, 1}, 2, &added));
    }
    OK(ringkv_set(e, S("bin\0key"), S("b")));
    uint64_t dbsize = 0;
    OK(ringkv_dbsize(e, &dbsize));
    ASSERT(dbsize == N_KEYS);
    wait_rehash_done(e);

    static int counts[N_KEYS];
    const size_t page_sizes[] = {0, 1, 7, 100, 5000};
    for (size_t i = 0; i < sizeof page_sizes / sizeof page_sizes[0]; i++) {
        size_t count = page_sizes[i];
        ASSERT(scan_all(e, NULL, count, RINGKV_TYPE_NONE, counts) == N_KEYS);
        ASSERT(exactly_once(counts, 0, N_KEYS));
        ASSERT(scan_all(e, "session:*", count, RINGKV_TYPE_NONE, counts) == N_SESSION);
        ASSERT(exactly_once(counts, N_USER, N_USER + N_SESSION));
    }
    ASSERT(scan_all(e, "", 10, RINGKV_TYPE_NONE, counts) == N_KEYS);
    ASSERT(exactly_once(counts, 0, N_KEYS));
    ASSERT(scan_all(e, NULL, 50, RINGKV_TYPE_HASH, counts) == N_HASH);
    ASSERT(exactly_once(counts, N_USER + N_SESSION, N_USER + N_SESSION + N_HASH));
    ASSERT(scan_all(e, NULL, 50, RINGKV_TYPE_STRING, counts) == N_USER + N_SESSION + 1);
    for (int i = 0; i < N_KEYS; i++)
        ASSERT(counts[i] == (i < N_USER + N_SESSION || i == N_KEYS - 1));
    ASSERT(scan_all(e, "hash:00[0-4]?", 20, RINGKV_TYPE_HASH, counts) == 50);
    ASSERT(exactly_once(counts, N_USER + N_SESSION, N_USER + N_SESSION + 50));
    ASSERT(scan_all(e, "user:*", 20, RINGKV_TYPE_HASH, counts) == 0);
    ASSERT(scan_all(e, "nothing*", 20, RINGKV_TYPE_NONE, counts) == 0);
    ASSERT(scan_all(e, "user:0042", 20, RINGKV_TYPE_STRING, counts) == 1 && counts[42] == 1);
    /* a pattern with a NUL byte */
    {
        ringkv_scan_cursor *c = NULL;
        OK(ringkv_scan_cursor_new(e, S("bin\0*"), 0, RINGKV_TYPE_NONE, &c));
        bool done = false;
        size_t found = 0;
        for (int calls = 0; !done; calls++) {
            ASSERT(calls < 100000);
            ringkv_buf_array keys = {0};
            OK(ringkv_scan_cursor_next(c, &keys, &done));
            for (size_t i = 0; i < keys.len; i++)
                ASSERT(buf_is(keys.ptr[i], S("bin\0key")));
            found += keys.len;
            ringkv_buf_array_free(&keys);
        }
        ringkv_scan_cursor_free(c);
        ASSERT(found == 1);
    }

    /* hscan: with and without values, with MATCH */
    fill_hash(e, S("big"), 300);
    for (int pass = 0; pass < 4; pass++) {
        bool novalues = pass & 1;
        const char *pattern = pass & 2 ? "f1*" : NULL;
        int hits[300] = {0};
        ringkv_hscan_cursor *c = NULL;
        OK(ringkv_hscan_cursor_new(e, S("big"), pattern, pattern ? strlen(pattern) : 0, 25, novalues, &c));
        bool done = false;
        size_t found = 0;
        for (int calls = 0; !done; calls++) {
            ASSERT(calls < 100000);
            ringkv_buf_array items = array_sentinel();
            OK(ringkv_hscan_cursor_next(c, &items, &done));
            size_t step = novalues ? 1 : 2;
            ASSERT(items.len % step == 0);
            for (size_t i = 0; i < items.len; i += step) {
                int idx = field_index(items.ptr[i]);
                ASSERT(idx >= 0 && idx < 300);
                if (!novalues)
                    ASSERT(value_matches(items.ptr[i], items.ptr[i + 1]));
                hits[idx]++;
                found++;
            }
            ringkv_buf_array_free(&items);
        }
        ringkv_hscan_cursor_free(c);
        for (int i = 0; i < 300; i++)
            ASSERT(hits[i] == (pattern == NULL || (i >= 100 && i < 200)));
        ASSERT(found == (pattern ? 100u : 300u));
    }
    /* hscan of a missing key: done, nothing */
    {
        ringkv_hscan_cursor *c = NULL;
        OK(ringkv_hscan_cursor_new(e, S("nohash"), NULL, 0, 0, false, &c));
        bool done = false;
        for (int calls = 0; !done; calls++) {
            ASSERT(calls < 10);
            ringkv_buf_array items = {0};
            OK(ringkv_hscan_cursor_next(c, &items, &done));
            ASSERT(items.len == 0);
            ringkv_buf_array_free(&items);
        }
        ringkv_hscan_cursor_free(c);
    }
    /* hscan of a string: WRONG_TYPE when created or on the first page */
    {
        ringkv_hscan_cursor *c = SENTINEL_PTR;
        ringkv_status st = ringkv_hscan_cursor_new(e, S("user:0001"), NULL, 0, 0, false, &c);
        if (st == RINGKV_OK) {
            ringkv_buf_array items = array_sentinel();
            bool done;
            EXPECT(ringkv_hscan_cursor_next(c, &items, &done), RINGKV_WRONG_TYPE);
            ASSERT(array_untouched(items));
            ringkv_hscan_cursor_free(c);
        } else {
            ASSERT(st == RINGKV_WRONG_TYPE && c == SENTINEL_PTR);
        }
    }
    ringkv_engine_free(e);
}

/* ------------------------------------------------------------------ */
/* write batches                                                        */

static void test_batch(void) {
    ringkv_engine *e = open_memory(NULL);
    ringkv_buf b;
    OK(ringkv_set(e, S("b:exists"), S("1")));

    ringkv_batch *bt = NULL;
    OK(ringkv_batch_new(&bt));
    size_t len = SENTINEL_LEN;
    OK(ringkv_batch_len(bt, &len));
    ASSERT(len == 0);
    int64_t in_an_hour = now_ms() + 3600 * 1000;
    const char hp[] = "f1af2b";
    const size_t hl[] = {2, 1, 2, 1};
    const char hd[] = "f2zz";
    const size_t hdl[] = {2, 2};
    OK(ringkv_batch_set(bt, S("b:k"), S("v")));                                                       /* 0 */
    OK(ringkv_batch_set_with(bt, S("b:k"), S("v2"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_NONE, 0, true)); /* 1 */
    OK(ringkv_batch_set_with(bt, S("b:k"), S("v3"), RINGKV_SET_NX, RINGKV_EXPIRY_NONE, 0, false));    /* 2 */
    OK(ringkv_batch_get(bt, S("b:k")));                                                               /* 3 */
    OK(ringkv_batch_incr_by(bt, S("b:n"), 5));                                                        /* 4 */
    OK(ringkv_batch_incr_by(bt, S("b:n"), -2));                                                       /* 5 */
    OK(ringkv_batch_append(bt, S("b:k"), S("!")));                                                    /* 6 */
    OK(ringkv_batch_hset(bt, S("b:h"), hp, hl, 4));                                                   /* 7 */
    OK(ringkv_batch_hincr_by(bt, S("b:h"), S("cnt"), 7));                                             /* 8 */
    OK(ringkv_batch_hget(bt, S("b:h"), S("f1")));                                                     /* 9 */
    OK(ringkv_batch_hget(bt, S("b:h"), S("nope")));                                                   /* 10 */
    OK(ringkv_batch_hlen(bt, S("b:h")));                                                              /* 11 */
    OK(ringkv_batch_hdel(bt, S("b:h"), hd, hdl, 2));                                                  /* 12 */
    OK(ringkv_batch_exists(bt, S("b:exists")));                                                       /* 13 */
    OK(ringkv_batch_exists(bt, S("b:nope")));                                                         /* 14 */
    OK(ringkv_batch_pexpire(bt, S("b:k"), 100000));                                                   /* 15 */
    OK(ringkv_batch_ttl(bt, S("b:k")));                                                               /* 16 */
    OK(ringkv_batch_persist(bt, S("b:k")));                                                           /* 17 */
    OK(ringkv_batch_ttl(bt, S("b:k")));                                                               /* 18 */
    OK(ringkv_batch_ttl(bt, S("b:missing")));                                                         /* 19 */
    OK(ringkv_batch_pexpire_at(bt, S("b:n"), in_an_hour));                                            /* 20 */
    OK(ringkv_batch_del(bt, S("b:exists")));                                                          /* 21 */
    OK(ringkv_batch_get(bt, S("b:exists")));                                                          /* 22 */
    OK(ringkv_batch_set_with(bt, S("b:px"), NULL, 0, RINGKV_SET_XX, RINGKV_EXPIRY_MILLIS, 5000, true)); /* 23 */
    OK(ringkv_batch_len(bt, &len));
    ASSERT(len == 24);

    ringkv_reply_array r = {.ptr = SENTINEL_PTR, .len = SENTINEL_LEN};
    OK(ringkv_write_batch(e, bt, &r));
    ASSERT(r.len == 24 && r.ptr != SENTINEL_PTR);
#define REPLY_INT(i, v) ASSERT(r.ptr[i].kind == RINGKV_REPLY_INT && r.ptr[i].integer == (v))
    ASSERT(r.ptr[0].kind == RINGKV_REPLY_SET && r.ptr[0].integer == 1);
    ASSERT(r.ptr[1].kind == RINGKV_REPLY_SET && r.ptr[1].integer == 1 && BUF_IS(r.ptr[1].value, "v"));
    ASSERT(r.ptr[2].kind == RINGKV_REPLY_SET && r.ptr[2].integer == 0);
    ASSERT(r.ptr[3].kind == RINGKV_REPLY_VALUE && BUF_IS(r.ptr[3].value, "v2"));
    REPLY_INT(4, 5);
    REPLY_INT(5, 3);
    REPLY_INT(6, 3);
    REPLY_INT(7, 2);
    REPLY_INT(8, 7);
    ASSERT(r.ptr[9].kind == RINGKV_REPLY_VALUE && BUF_IS(r.ptr[9].value, "a"));
    ASSERT(r.ptr[10].kind == RINGKV_REPLY_VALUE && r.ptr[10].value.ptr == NULL);
    REPLY_INT(11, 3);
    REPLY_INT(12, 1);
    REPLY_INT(13, 1);
    REPLY_INT(14, 0);
    REPLY_INT(15, 1);
    ASSERT(r.ptr[16].kind == RINGKV_REPLY_INT && r.ptr[16].integer > 90000 && r.ptr[16].integer <= 100000);
    REPLY_INT(17, 1);
    REPLY_INT(18, -1);
    REPLY_INT(19, -2);
    REPLY_INT(20, 1);
    REPLY_INT(21, 1);
    ASSERT(r.ptr[22].kind == RINGKV_REPLY_VALUE && r.ptr[22].value.ptr == NULL);
    ASSERT(r.ptr[23].kind == RINGKV_REPLY_SET && r.ptr[23].integer == 0 && r.ptr[23].value.ptr == NULL);
#undef REPLY_INT
    ringkv_reply_array_free(&r);
    ASSERT(r.ptr == NULL && r.len == 0);
    OK(ringkv_batch_len(bt, &len));
    ASSERT(len == 0);

    /* the engine holds the batch's effects */
    OK(ringkv_get(e, S("b:k"), &b));
    ASSERT(BUF_IS(b, "v2!"));
    ringkv_buf_free(&b);
    int64_t ms = 0;
    OK(ringkv_pexpire_time(e, S("b:n"), &ms));
    ASSERT(ms == in_an_hour);
    OK(ringkv_hget(e, S("b:h"), S("cnt"), &b));
    ASSERT(BUF_IS(b, "7"));
    ringkv_buf_free(&b);
    ASSERT(exists1(e, S("b:exists")) == 0);

    /* atomicity: a failing operation applies nothing, replies untouched, batch emptied */
    OK(ringkv_batch_set(bt, S("b:new1"), S("x")));
    OK(ringkv_batch_hset(bt, S("b:new2"), hp, hl, 2));
    OK(ringkv_batch_del(bt, S("b:h")));
    OK(ringkv_batch_incr_by(bt, S("b:k"), 1)); /* "v2!" is not an integer */
    OK(ringkv_batch_set(bt, S("b:new3"), S("x")));
    r = (ringkv_reply_array){.ptr = SENTINEL_PTR, .len = SENTINEL_LEN};
    EXPECT(ringkv_write_batch(e, bt, &r), RINGKV_NOT_AN_INTEGER);
    ASSERT(r.ptr == SENTINEL_PTR && r.len == SENTINEL_LEN);
    ASSERT(exists1(e, S("b:new1")) == 0 && exists1(e, S("b:new2")) == 0 && exists1(e, S("b:new3")) == 0);
    ASSERT(exists1(e, S("b:h")) == 1);
    OK(ringkv_batch_len(bt, &len));
    ASSERT(len == 0);
    OK(ringkv_batch_set(bt, S("b:new1"), S("x")));
    OK(ringkv_batch_hget(bt, S("b:k"), S("f"))); /* WRONGTYPE */
    EXPECT(ringkv_write_batch(e, bt, &r), RINGKV_WRONG_TYPE);
    ASSERT(r.ptr == SENTINEL_PTR && r.len == SENTINEL_LEN);
    ASSERT(exists1(e, S("b:new1")) == 0);
    OK(ringkv_batch_set_with(bt, S("b:new1"), S("x"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_SECONDS, 0, false));
    EXPECT(ringkv_write_batch(e, bt, &r), RINGKV_INVALID_EXPIRE);
    ASSERT(r.ptr == SENTINEL_PTR && exists1(e, S("b:new1")) == 0);

    /* reuse after failure; an empty batch */
    OK(ringkv_batch_set(bt, S("b:after"), S("1")));
    OK(ringkv_write_batch(e, bt, &r));
    ASSERT(r.len == 1 && r.ptr[0].kind == RINGKV_REPLY_SET && r.ptr[0].integer == 1);
    ringkv_reply_array_free(&r);
    ASSERT(exists1(e, S("b:after")) == 1);
    r = (ringkv_reply_array){.ptr = SENTINEL_PTR, .len = SENTINEL_LEN};
    OK(ringkv_write_batch(e, bt, &r));
    ASSERT(r.len == 0);
    ringkv_reply_array_free(&r);

    /* bad arguments when adding: the batch is unchanged */
    EXPECT(ringkv_batch_set(bt, NULL, 1, S("v")), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_batch_set_with(bt, S("k"), S("v"), 7, RINGKV_EXPIRY_NONE, 0, false), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_batch_set_with(bt, S("k"), S("v"), RINGKV_SET_ALWAYS, 99, 0, false), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_batch_hset(bt, S("k"), "abc", (const size_t[]){1, 1, 1}, 3), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_batch_hset(bt, S("k"), "ab", (const size_t[]){SIZE_MAX, 2}, 2), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_batch_hdel(bt, S("k"), "ab", (const size_t[]){1, SIZE_MAX}, 2), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_batch_hget(bt, S("k"), NULL, 3), RINGKV_INVALID_ARGUMENT);
    OK(ringkv_batch_len(bt, &len));
    ASSERT(len == 0);
    EXPECT(ringkv_batch_len(bt, NULL), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_write_batch(e, NULL, &r), RINGKV_INVALID_ARGUMENT);

    ringkv_batch_free(bt);
    ringkv_engine_free(e);
}

/* ------------------------------------------------------------------ */
/* data directory: reopen, save, BUSY, IO, CORRUPT                      */

static void wait_no_snapshot(const ringkv_engine *e) {
    uint64_t deadline = mono_ms() + 30000;
    for (;;) {
        ringkv_buf json = {0};
        OK(ringkv_stats_json(e, &json));
        char *text = strndup((const char *)json.ptr, json.len);
        ringkv_buf_free(&json);
        ASSERT(text != NULL);
        int busy = strstr(text, "\"in_progress\":true") != NULL;
        free(text);
        if (!busy)
            return;
        ASSERT(mono_ms() < deadline);
        sleep_ms(20);
    }
}

static void test_persistence(void) {
    char *dir = make_tmp_dir("data");
    ringkv_engine *e = NULL;
    ringkv_buf b;
    OK(ringkv_engine_open(dir, SMALL_LOG, RINGKV_OPEN_DEFAULT, &e));
    OK(ringkv_set(e, S("p:str"), S("hello\0world")));
    size_t added;
    OK(ringkv_hset(e, S("p:h"), "fv", (const size_t[]){1, 1}, 2, &added));
    bool applied;
    OK(ringkv_set_with(e, S("p:ttl"), S("t"), RINGKV_SET_ALWAYS, RINGKV_EXPIRY_SECONDS, 1000, false, &applied, NULL));
    int64_t n;
    OK(ringkv_incr_by(e, S("p:n"), 42, &n));
    uint64_t off = 0;
    bool has = false;
    OK(ringkv_last_write_offset(e, &off, &has));
    ASSERT(has && off > 0);
    uint64_t applied_off = 0;
    OK(ringkv_applied_offset(e, &applied_off));
    ASSERT(applied_off >= off);
    int32_t role = -1;
    OK(ringkv_role(e, &role));
    ASSERT(role == 0);
    OK(ringkv_sync(e));

    /* the directory is locked while open */
    ringkv_engine *second = SENTINEL_PTR;
    EXPECT(ringkv_engine_open(dir, SMALL_LOG, RINGKV_OPEN_DEFAULT, &second), RINGKV_BUSY);
    ASSERT(second == SENTINEL_PTR);
    ringkv_engine_free(e);

    /* reopen: the log replays */
    OK(ringkv_engine_open(dir, SMALL_LOG, RINGKV_OPEN_DEFAULT, &e));
    OK(ringkv_get(e, S("p:str"), &b));
    ASSERT(BUF_IS(b, "hello\0world"));
    ringkv_buf_free(&b);
    OK(ringkv_hget(e, S("p:h"), S("f"), &b));
    ASSERT(BUF_IS(b, "v"));
    ringkv_buf_free(&b);
    OK(ringkv_ttl(e, S("p:ttl"), &n));
    ASSERT(n > 900 && n <= 1000);
    OK(ringkv_incr_by(e, S("p:n"), 1, &n));
    ASSERT(n == 43);

    /* a snapshot, then more writes, reopen */
    OK(ringkv_save(e));
    OK(ringkv_set(e, S("p:after"), S("1")));
    OK(ringkv_set(e, S("p:after2"), S("2")));
    bool started = false;
    OK(ringkv_bgsave(e, &started));
    /* Freeing the engine while a background save runs: the free waits for it
     * and releases the data directory, so it can be reopened at once. */
    ringkv_engine_free(e);
    OK(ringkv_engine_open(dir, SMALL_LOG, RINGKV_OPEN_DEFAULT, &e));
    uint64_t size = 0;
    OK(ringkv_dbsize(e, &size));
    ASSERT(size == 6);
    OK(ringkv_get(e, S("p:after2"), &b));
    ASSERT(BUF_IS(b, "2"));
    ringkv_buf_free(&b);
    OK(ringkv_get(e, S("p:n"), &b));
    ASSERT(BUF_IS(b, "43"));
    ringkv_buf_free(&b);
    OK(ringkv_bgsave(e, &started));
    wait_no_snapshot(e);
    ringkv_engine_free(e);

    /* an in-memory engine has nothing to save to */
    ringkv_engine *mem = open_memory(NULL);
    ASSERT(ringkv_save(mem) != RINGKV_OK);
    ringkv_engine_free(mem);

    /* IO: the data directory is a regular file */
    char *file = path_in(dir, "not-a-dir");
    FILE *f = fopen(file, "w");
    ASSERT(f != NULL);
    fputs("x", f);
    fclose(f);
    ringkv_engine *bad = SENTINEL_PTR;
    EXPECT(ringkv_engine_open(file, SMALL_LOG, RINGKV_OPEN_DEFAULT, &bad), RINGKV_IO);
    ASSERT(bad == SENTINEL_PTR);
    free(file);

    /* CORRUPT: both ring header slots overwritten */
    char *ring = path_in(dir, "ring.log");
    int fd = open(ring, O_WRONLY);
    ASSERT(fd >= 0);
    char junk[4096];
    memset(junk, 'Z', sizeof junk);
    ASSERT(pwrite(fd, junk, sizeof junk, 0) == (ssize_t)sizeof junk);
    close(fd);
    free(ring);
    EXPECT(ringkv_engine_open(dir, SMALL_LOG, RINGKV_OPEN_DEFAULT, &bad), RINGKV_CORRUPT);
    ASSERT(bad == SENTINEL_PTR);

    rm_tree(dir);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* replication in one process                                           */

static void *offset_on_fresh_thread(void *arg) {
    const ringkv_engine *e = arg;
    uint64_t off = SENTINEL_U64;
    bool has = true;
    OK(ringkv_last_write_offset(e, &off, &has));
    ASSERT(!has);
    return NULL;
}

static void test_replication(void) {
    char *certs = make_tmp_dir("certs");
    char *fdir = make_tmp_dir("follower");
    OK(ringkv_dev_certs(certs));
    char *ca = path_in(certs, "ca.pem");
    char *scert = path_in(certs, "server.pem"), *skey = path_in(certs, "server.key");
    char *ccert = path_in(certs, "client.pem"), *ckey = path_in(certs, "client.key");
    ringkv_buf b;

    /* The primary: an in-memory engine with an in-memory ring log. */
    ringkv_engine *pe = NULL;
    OK(ringkv_engine_open(NULL, SMALL_LOG, RINGKV_OPEN_ANONYMOUS_LOG, &pe));
    OK(ringkv_set(pe, S("before"), S("sync")));
    ringkv_primary *p = NULL;
    OK(ringkv_primary_start(pe, "127.0.0.1:0", scert, skey, ca, &p));
    uint16_t port = 0;
    OK(ringkv_primary_port(p, &port));
    ASSERT(port != 0);
    /* a plain in-memory engine cannot serve */
    ringkv_engine *nolog = open_memory(NULL);
    ringkv_primary *p2 = SENTINEL_PTR;
    ASSERT(ringkv_primary_start(nolog, "127.0.0.1:0", scert, skey, ca, &p2) != RINGKV_OK);
    ASSERT(p2 == SENTINEL_PTR);
    /* bad certificate paths */
    ASSERT(ringkv_primary_start(pe, "127.0.0.1:0", "/nonexistent.pem", skey, ca, &p2) != RINGKV_OK);
    ASSERT(p2 == SENTINEL_PTR);
    EXPECT(ringkv_primary_start(pe, "127.0.0.1:0", NULL, skey, ca, &p2), RINGKV_INVALID_ARGUMENT);
    EXPECT(ringkv_primary_start(pe, "127.0.0.1:0", scert, skey, ca, NULL), RINGKV_INVALID_ARGUMENT);
    ASSERT(p2 == SENTINEL_PTR);

    ringkv_engine *fe = NULL;
    OK(ringkv_engine_open(fdir, SMALL_LOG, RINGKV_OPEN_DEFAULT, &fe));
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    ringkv_follower *f = NULL;
    ringkv_follower *f2 = SENTINEL_PTR;
    ASSERT(ringkv_follower_start(nolog, addr, "localhost", ccert, ckey, ca, &f2) != RINGKV_OK);
    ASSERT(f2 == SENTINEL_PTR);
    ringkv_engine_free(nolog);
    OK(ringkv_follower_start(fe, addr, "localhost", ccert, ckey, ca, &f));
    int32_t role = -1;
    OK(ringkv_role(fe, &role));
    ASSERT(role == 1);
    OK(ringkv_role(pe, &role));
    ASSERT(role == 0);

    /* a write on the primary reaches the follower */
    OK(ringkv_set(pe, S("rep:k"), S("v1")));
    size_t added;
    OK(ringkv_hset(pe, S("rep:h"), "fv", (const size_t[]){1, 1}, 2, &added));
    uint64_t off = 0;
    bool has = false;
    OK(ringkv_last_write_offset(pe, &off, &has));
    ASSERT(has && off > 0);
    pthread_t t;
    ASSERT(pthread_create(&t, NULL, offset_on_fresh_thread, pe) == 0);
    ASSERT(pthread_join(t, NULL) == 0);
    bool reached = false;
    OK(ringkv_wait_applied(fe, off, 30000, &reached));
    ASSERT(reached);
    uint64_t applied = 0;
    OK(ringkv_applied_offset(fe, &applied));
    ASSERT(applied >= off);
    OK(ringkv_get(fe, S("rep:k"), &b));
    ASSERT(BUF_IS(b, "v1"));
    ringkv_buf_free(&b);
    OK(ringkv_get(fe, S("before"), &b));
    ASSERT(BUF_IS(b, "sync"));
    ringkv_buf_free(&b);
    OK(ringkv_hget(fe, S("rep:h"), S("f"), &b));
    ASSERT(BUF_IS(b, "v"));
    ringkv_buf_free(&b);
    size_t acked = 0;
    OK(ringkv_primary_wait_for_followers(p, off, 1, 30000, &acked));
    ASSERT(acked == 1);
    /* a wait that cannot be met times out, bounded */
    uint64_t t0 = mono_ms();
    OK(ringkv_primary_wait_for_followers(p, off, 2, 200, &acked));
    ASSERT(acked == 1 && mono_ms() - t0 < 10000);
    t0 = mono_ms();
    OK(ringkv_wait_applied(fe, off + 1000000, 200, &reached));
    ASSERT(!reached && mono_ms() - t0 >= 150 && mono_ms() - t0 < 10000);

    /* the follower is read-only */
    EXPECT(ringkv_set(fe, S("rep:k"), S("mine")), RINGKV_READ_ONLY);
    int64_t n = SENTINEL_I64;
    EXPECT(ringkv_incr_by(fe, S("rep:n"), 1, &n), RINGKV_READ_ONLY);
    ASSERT(n == SENTINEL_I64);
    ringkv_batch *bt = NULL;
    OK(ringkv_batch_new(&bt));
    OK(ringkv_batch_set(bt, S("rep:k"), S("mine")));
    ringkv_reply_array r = {.ptr = SENTINEL_PTR, .len = SENTINEL_LEN};
    EXPECT(ringkv_write_batch(fe, bt, &r), RINGKV_READ_ONLY);
    ASSERT(r.ptr == SENTINEL_PTR && r.len == SENTINEL_LEN);
    OK(ringkv_get(fe, S("rep:k"), &b));
    ASSERT(BUF_IS(b, "v1"));
    ringkv_buf_free(&b);

    ringkv_buf json = {0};
    OK(ringkv_follower_state_json(f, &json));
    ASSERT(json.ptr != NULL && json.len > 2 && contains(json, "master_link_status"));
    ringkv_buf_free(&json);
    OK(ringkv_primary_stats_json(p, &json));
    ASSERT(json.ptr != NULL && json.len > 2 && json.ptr[0] == '{');
    ringkv_buf_free(&json);

    /* promote: the follower's engine becomes a writable primary, keeping the data */
    OK(ringkv_set(pe, S("rep:last"), S("x")));
    OK(ringkv_last_write_offset(pe, &off, &has));
    OK(ringkv_wait_applied(fe, off, 30000, &reached));
    ASSERT(reached);
    OK(ringkv_follower_promote(f));
    OK(ringkv_role(fe, &role));
    ASSERT(role == 0);
    size_t blen = SENTINEL_LEN;
    OK(ringkv_batch_len(bt, &blen));
    ASSERT(blen == 0); /* emptied by the refused write */
    OK(ringkv_batch_set(bt, S("rep:k"), S("mine")));
    OK(ringkv_write_batch(fe, bt, &r));
    ASSERT(r.len == 1);
    ringkv_reply_array_free(&r);
    OK(ringkv_get(fe, S("rep:k"), &b));
    ASSERT(BUF_IS(b, "mine"));
    ringkv_buf_free(&b);
    OK(ringkv_get(fe, S("rep:last"), &b));
    ASSERT(BUF_IS(b, "x"));
    ringkv_buf_free(&b);
    uint64_t foff = 0;
    OK(ringkv_last_write_offset(fe, &foff, &has));
    ASSERT(has && foff > off);
    /* the spent follower handle */
    json = buf_sentinel();
    EXPECT(ringkv_follower_state_json(f, &json), RINGKV_INVALID_ARGUMENT);
    ASSERT(buf_untouched(json));
    EXPECT(ringkv_follower_promote(f), RINGKV_INVALID_ARGUMENT);
    /* the primary is not changed by the promotion */
    OK(ringkv_get(pe, S("rep:k"), &b));
    ASSERT(BUF_IS(b, "v1"));
    ringkv_buf_free(&b);

    ringkv_batch_free(bt);
    ringkv_follower_free(f);
    ringkv_engine_free(fe);
    ringkv_primary_free(p);
    ringkv_engine_free(pe);

    /* The promoted directory reopens as a primary with its data. */
    OK(ringkv_engine_open(fdir, SMALL_LOG, RINGKV_OPEN_DEFAULT, &fe));
    OK(ringkv_get(fe, S("rep:k"), &b));
    ASSERT(BUF_IS(b, "mine"));
    ringkv_buf_free(&b);
    ringkv_engine_free(fe);

    free(ca), free(scert), free(skey), free(ccert), free(ckey);
    rm_tree(fdir);
    rm_tree(certs);
    free(fdir);
    free(certs);
}

/* ------------------------------------------------------------------ */
/* threads                                                              */

enum { THREADS = 4, INCRS = 5000 };

struct worker {
    const ringkv_engine *e;
    int id;
    int64_t last_seen;
};

static void *incr_worker(void *arg) {
    struct worker *w = arg;
    int64_t v = 0, prev = 0;
    char own[16];
    snprintf(own, sizeof own, "own:%d", w->id);
    for (int i = 0; i < INCRS; i++) {
        OK(ringkv_incr_by(w->e, S("shared"), 1, &v));
        ASSERT(v > prev); /* this thread's increments are ordered */
        prev = v;
        int64_t o = 0;
        OK(ringkv_incr_by(w->e, own, strlen(own), w->id + 1, &o));
        ASSERT(o == (int64_t)(i + 1) * (w->id + 1));
        if (i % 64 == 0) {
            ringkv_buf b = {0};
            OK(ringkv_get(w->e, S("shared"), &b));
            ASSERT(b.ptr != NULL && b.len > 0);
            ringkv_buf_free(&b);
        }
    }
    w->last_seen = v;
    return NULL;
}

static void test_threads(void) {
    ringkv_engine *e = open_memory(NULL);
    pthread_t t[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.e = e, .id = i};
        ASSERT(pthread_create(&t[i], NULL, incr_worker, &w[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++)
        ASSERT(pthread_join(t[i], NULL) == 0);
    ringkv_buf b = {0};
    OK(ringkv_get(e, S("shared"), &b));
    char want[32];
    snprintf(want, sizeof want, "%d", THREADS * INCRS);
    ASSERT(buf_is(b, want, strlen(want)));
    ringkv_buf_free(&b);
    int max_seen = 0;
    for (int i = 0; i < THREADS; i++) {
        if (w[i].last_seen > max_seen)
            max_seen = (int)w[i].last_seen;
        char own[16];
        snprintf(own, sizeof own, "own:%d", i);
        int64_t v = 0;
        OK(ringkv_incr_by(e, own, strlen(own), 0, &v));
        ASSERT(v == (int64_t)INCRS * (i + 1));
    }
    ASSERT(max_seen == THREADS * INCRS);
    ringkv_engine_free(e);
}

/* ------------------------------------------------------------------ */

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    static const struct {
        const char *name;
        void (*run)(void);
    } tests[] = {
        {"library", test_library},         {"strings", test_strings}, {"keys", test_keys},
        {"hashes", test_hashes},           {"errors", test_errors},   {"scan", test_scan},
        {"batch", test_batch},             {"persistence", test_persistence},
        {"replication", test_replication}, {"threads", test_threads},
    };
    printf("ringkv %s C test\n", ringkv_version());
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        uint64_t t0 = mono_ms();
        int before = checks;
        tests[i].run();
        printf("  ok  %-12s %5d checks  %6" PRIu64 " ms\n", tests[i].name, checks - before, mono_ms() - t0);
    }
    printf("all %d checks passed\n", checks);
    return 0;
}
