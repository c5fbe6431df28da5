/*
 * ringkv from C: a tour of the C API.
 *
 *   gcc -std=c11 -Wall -I ffi/include ffi/examples/ringkv_example.c \
 *       -L target/debug -lringkv -Wl,-rpath,target/debug -pthread -o ringkv_example
 *   ./ringkv_example [data-dir]
 *
 * With no argument the data directory is a fresh temporary one, removed at
 * the end. The program opens an engine, uses strings, expiry, counters,
 * hashes, scans and write batches, prints the engine's statistics, then
 * replicates to a second engine in the same process over QUIC with
 * development certificates. It exits 0 when everything worked.
 */
#define _XOPEN_SOURCE 700

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringkv.h"

/* Every ringkv call returns a status; on failure say which call failed and why. */
#define CHECK(call)                                                                     \
    do {                                                                                \
        ringkv_status check_status_ = (call);                                           \
        if (check_status_ != RINGKV_OK) {                                               \
            char check_msg_[1024];                                                      \
            size_t check_len_ = 0;                                                      \
            ringkv_last_error(check_msg_, sizeof check_msg_, &check_len_);              \
            fprintf(stderr, "%s:%d: %s failed (status %d): %s\n", __FILE__, __LINE__,   \
                    #call, (int)check_status_, check_msg_);                             \
            exit(EXIT_FAILURE);                                                         \
        }                                                                               \
    } while (0)

/* A condition that must hold (not a ringkv failure). */
#define REQUIRE(cond)                                                                   \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);         \
            exit(EXIT_FAILURE);                                                         \
        }                                                                               \
    } while (0)

/* Keys and values are (pointer, length) pairs; string literals are the common case. */
#define S(lit) (lit), (sizeof(lit) - 1)

/* Prints a value: nil, or the bytes quoted. */
static void print_buf(const char *label, ringkv_buf b) {
    if (b.ptr == NULL)
        printf("%s: (nil)\n", label);
    else
        printf("%s: \"%.*s\"\n", label, (int)b.len, (const char *)b.ptr);
}

/*
 * Lists of byte strings are passed as one concatenated buffer plus an array
 * of lengths. This little builder collects them.
 */
typedef struct {
    char *bytes;
    size_t *lens;
    size_t n, used, bytes_cap, lens_cap;
} strlist;

static void strlist_push(strlist *l, const char *s, size_t len) {
    if (l->used + len > l->bytes_cap) {
        l->bytes_cap = (l->used + len) * 2 + 64;
        l->bytes = realloc(l->bytes, l->bytes_cap);
        REQUIRE(l->bytes != NULL);
    }
    if (l->n == l->lens_cap) {
        l->lens_cap = l->lens_cap * 2 + 16;
        l->lens = realloc(l->lens, l->lens_cap * sizeof *l->lens);
        REQUIRE(l->lens != NULL);
    }
    memcpy(l->bytes + l->used, s, len);
    l->used += len;
    l->lens[l->n++] = len;
}

static void strlist_push_str(strlist *l, const char *s) { strlist_push(l, s, strlen(s)); }

static void strlist_free(strlist *l) {
    free(l->bytes);
    free(l->lens);
    memset(l, 0, sizeof *l);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* rm -rf */
static void remove_tree(const char *dir) {
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        perror(dir);
}

static void strings_and_expiry(const ringkv_engine *db) {
    printf("\n== strings ==\n");
    CHECK(ringkv_set(db, S("greeting"), S("hello, world")));

    ringkv_buf value = {0};
    CHECK(ringkv_get(db, S("greeting"), &value));
    print_buf("GET greeting", value);
    ringkv_buf_free(&value); /* every returned buffer is freed by the library */

    CHECK(ringkv_get(db, S("no-such-key"), &value));
    print_buf("GET no-such-key", value); /* ptr == NULL: nil */
    ringkv_buf_free(&value);              /* safe on nil */

    /* A session token that expires in an hour (SET ... EX 3600). */
    bool applied = false;
    CHECK(ringkv_set_with(db, S("session:alice"), S("token-7f3a9c"), RINGKV_SET_ALWAYS,
                          RINGKV_EXPIRY_SECONDS, 3600, false, &applied, NULL));
    CHECK(ringkv_set_with(db, S("session:bob"), S("token-22b0e1"), RINGKV_SET_ALWAYS,
                          RINGKV_EXPIRY_SECONDS, 3600, false, &applied, NULL));
    int64_t ttl = 0;
    CHECK(ringkv_ttl(db, S("session:alice"), &ttl));
    printf("TTL session:alice = %" PRId64 " s\n", ttl);

    /* SET NX does not overwrite an existing key; GET returns the previous value. */
    ringkv_buf previous = {0};
    CHECK(ringkv_set_with(db, S("session:alice"), S("stolen"), RINGKV_SET_NX, RINGKV_EXPIRY_KEEP, 0, true,
                          &applied, &previous));
    printf("SET session:alice NX applied = %s\n", applied ? "yes" : "no");
    print_buf("  previous value", previous);
    ringkv_buf_free(&previous);

    printf("\n== counters ==\n");
    int64_t views = 0, bytes = 0;
    for (int i = 0; i < 3; i++)
        CHECK(ringkv_incr_by(db, S("counter:page_views"), 1, &views));
    CHECK(ringkv_incr_by(db, S("counter:bytes_out"), 1500, &bytes));
    CHECK(ringkv_incr_by(db, S("counter:bytes_out"), 2596, &bytes));
    printf("page_views = %" PRId64 ", bytes_out = %" PRId64 "\n", views, bytes);

    /* Errors are statuses: INCRBY on a non-number. */
    ringkv_status st = ringkv_incr_by(db, S("greeting"), 1, &views);
    char msg[256];
    size_t msg_len = 0;
    ringkv_last_error(msg, sizeof msg, &msg_len);
    printf("INCRBY greeting -> status %d (%s)\n", (int)st, msg);
    REQUIRE(st == RINGKV_NOT_AN_INTEGER);
}

static void telemetry_hashes(const ringkv_engine *db) {
    printf("\n== hashes: telemetry buffered and drained ==\n");
    enum { SAMPLES = 1234 };
    strlist pairs = {0};
    char field[32], value[32];
    for (int i = 0; i < SAMPLES; i++) {
        snprintf(field, sizeof field, "sample:%05d", i);
        snprintf(value, sizeof value, "cpu=%d.%02d", i % 100, i % 97);
        strlist_push_str(&pairs, field);
        strlist_push_str(&pairs, value);
    }
    size_t added = 0;
    CHECK(ringkv_hset(db, S("telemetry:node1"), pairs.bytes, pairs.lens, pairs.n, &added));
    strlist_free(&pairs);
    size_t len = 0;
    CHECK(ringkv_hlen(db, S("telemetry:node1"), &len));
    printf("HSET added %zu fields, HLEN = %zu\n", added, len);

    ringkv_buf cpu = {0};
    CHECK(ringkv_hget(db, S("telemetry:node1"), S("sample:00042"), &cpu));
    print_buf("HGET telemetry:node1 sample:00042", cpu);
    ringkv_buf_free(&cpu);

    /* A consumer takes up to 500 samples at a time until the hash is empty. */
    size_t total = 0;
    for (;;) {
        ringkv_buf_array batch = {0};
        CHECK(ringkv_hdrain(db, S("telemetry:node1"), 500, &batch));
        size_t n = batch.len / 2; /* items: field, value, field, value, ... */
        if (n > 0)
            printf("drained %zu samples, first %.*s = %.*s\n", n, (int)batch.ptr[0].len,
                   (const char *)batch.ptr[0].ptr, (int)batch.ptr[1].len, (const char *)batch.ptr[1].ptr);
        total += n;
        ringkv_buf_array_free(&batch);
        if (n == 0)
            break;
    }
    printf("drained %zu samples in total\n", total);
    REQUIRE(total == SAMPLES);
    const char key[] = "telemetry:node1";
    const size_t key_len = sizeof key - 1;
    uint64_t exists = 0;
    CHECK(ringkv_exists(db, key, &key_len, 1, &exists)); /* a list of one key */
    printf("EXISTS telemetry:node1 = %" PRIu64 " (an emptied hash is removed)\n", exists);
}

static void scan_sessions(const ringkv_engine *db) {
    printf("\n== SCAN MATCH session:* ==\n");
    ringkv_scan_cursor *cursor = NULL;
    CHECK(ringkv_scan_cursor_new(db, S("session:*"), 100, RINGKV_TYPE_NONE, &cursor));
    bool done = false;
    size_t found = 0;
    while (!done) {
        ringkv_buf_array keys = {0};
        CHECK(ringkv_scan_cursor_next(cursor, &keys, &done));
        for (size_t i = 0; i < keys.len; i++)
            printf("  %.*s\n", (int)keys.ptr[i].len, (const char *)keys.ptr[i].ptr);
        found += keys.len;
        ringkv_buf_array_free(&keys);
    }
    ringkv_scan_cursor_free(cursor);
    printf("%zu session keys\n", found);
}

static void write_batch(const ringkv_engine *db) {
    printf("\n== write batch (atomic) ==\n");
    ringkv_batch *batch = NULL;
    CHECK(ringkv_batch_new(&batch));
    CHECK(ringkv_batch_set(batch, S("order:1001"), S("pending")));
    CHECK(ringkv_batch_incr_by(batch, S("orders:count"), 1));
    const char items[] = "skuqty";
    const size_t item_lens[] = {3, 3};
    CHECK(ringkv_batch_hset(batch, S("order:1001:items"), items, item_lens, 2));
    CHECK(ringkv_batch_pexpire(batch, S("order:1001"), 86400000));
    CHECK(ringkv_batch_get(batch, S("order:1001")));
    CHECK(ringkv_batch_ttl(batch, S("order:1001")));
    CHECK(ringkv_batch_exists(batch, S("order:9999")));

    ringkv_reply_array replies = {0};
    CHECK(ringkv_write_batch(db, batch, &replies));
    static const char *const ops[] = {"SET", "INCRBY", "HSET", "PEXPIRE", "GET", "TTL(ms)", "EXISTS"};
    for (size_t i = 0; i < replies.len; i++) {
        const ringkv_reply *r = &replies.ptr[i];
        const char *op = i < sizeof ops / sizeof ops[0] ? ops[i] : "?";
        switch (r->kind) {
        case RINGKV_REPLY_INT:
            printf("  %-8s -> %" PRId64 "\n", op, r->integer);
            break;
        case RINGKV_REPLY_VALUE:
            if (r->value.ptr == NULL)
                printf("  %-8s -> (nil)\n", op);
            else
                printf("  %-8s -> \"%.*s\"\n", op, (int)r->value.len, (const char *)r->value.ptr);
            break;
        case RINGKV_REPLY_SET:
            printf("  %-8s -> %s\n", op, r->integer ? "OK" : "not applied");
            break;
        default:
            printf("  %-8s -> kind %d\n", op, (int)r->kind);
        }
    }
    REQUIRE(replies.len == 7);
    ringkv_reply_array_free(&replies);
    ringkv_batch_free(batch);
}

static void print_stats(const ringkv_engine *db) {
    printf("\n== stats ==\n");
    ringkv_buf json = {0};
    CHECK(ringkv_stats_json(db, &json));
    printf("%.*s\n", (int)json.len, (const char *)json.ptr); /* not NUL-terminated */
    ringkv_buf_free(&json);
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    REQUIRE(p != NULL);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void replication(const ringkv_engine *primary_db) {
    printf("\n== replication in one process ==\n");
    char certs[] = "/tmp/ringkv-example-certs-XXXXXX";
    char follower_dir[] = "/tmp/ringkv-example-follower-XXXXXX";
    REQUIRE(mkdtemp(certs) != NULL);
    REQUIRE(mkdtemp(follower_dir) != NULL);
    CHECK(ringkv_dev_certs(certs));
    char *ca = path_in(certs, "ca.pem");
    char *server_cert = path_in(certs, "server.pem"), *server_key = path_in(certs, "server.key");
    char *client_cert = path_in(certs, "client.pem"), *client_key = path_in(certs, "client.key");

    /* The primary serves its engine's log; port 0 picks a free port. */
    ringkv_primary *primary = NULL;
    CHECK(ringkv_primary_start(primary_db, "127.0.0.1:0", server_cert, server_key, ca, &primary));
    uint16_t port = 0;
    CHECK(ringkv_primary_port(primary, &port));
    printf("primary listening on 127.0.0.1:%u\n", (unsigned)port);

    /* The follower is a second engine with its own data directory. */
    ringkv_engine *replica_db = NULL;
    CHECK(ringkv_engine_open(follower_dir, "{\"log\":{\"capacity\":16777216}}", RINGKV_OPEN_DEFAULT, &replica_db));
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    ringkv_follower *follower = NULL;
    CHECK(ringkv_follower_start(replica_db, addr, "localhost", client_cert, client_key, ca, &follower));

    /* Write on the primary, then wait (bounded) until the follower applied it. */
    CHECK(ringkv_set(primary_db, S("config:feature_x"), S("enabled")));
    uint64_t offset = 0;
    bool has = false;
    CHECK(ringkv_last_write_offset(primary_db, &offset, &has));
    REQUIRE(has);
    bool reached = false;
    CHECK(ringkv_wait_applied(replica_db, offset, 15000, &reached));
    printf("write at offset %" PRIu64 " applied on the follower: %s\n", offset, reached ? "yes" : "no (timeout)");
    REQUIRE(reached);

    ringkv_buf value = {0};
    CHECK(ringkv_get(replica_db, S("config:feature_x"), &value));
    print_buf("follower GET config:feature_x", value);
    REQUIRE(value.ptr != NULL && value.len == 7 && memcmp(value.ptr, "enabled", 7) == 0);
    ringkv_buf_free(&value);
    CHECK(ringkv_get(replica_db, S("greeting"), &value)); /* earlier data came with the initial sync */
    print_buf("follower GET greeting", value);
    ringkv_buf_free(&value);

    ringkv_status st = ringkv_set(replica_db, S("config:feature_x"), S("disabled"));
    printf("SET on the follower -> status %d (RINGKV_READ_ONLY = %d)\n", (int)st, (int)RINGKV_READ_ONLY);
    REQUIRE(st == RINGKV_READ_ONLY);

    ringkv_buf state = {0};
    CHECK(ringkv_follower_state_json(follower, &state));
    printf("follower state: %.*s\n", (int)state.len, (const char *)state.ptr);
    ringkv_buf_free(&state);

    /* Free in order: the follower, its engine, the primary, (the primary's engine by the caller). */
    ringkv_follower_free(follower);
    ringkv_engine_free(replica_db);
    ringkv_primary_free(primary);
    free(ca), free(server_cert), free(server_key), free(client_cert), free(client_key);
    remove_tree(follower_dir);
    remove_tree(certs);
}

int main(int argc, char **argv) {
    printf("ringkv %s\n", ringkv_version());

    char tmp_dir[] = "/tmp/ringkv-example-XXXXXX";
    const char *dir = argc > 1 ? argv[1] : NULL;
    if (dir == NULL) {
        REQUIRE(mkdtemp(tmp_dir) != NULL);
        dir = tmp_dir;
    }
    printf("data directory: %s\n", dir);

    /* The configuration is the engine's Config as JSON (NULL for the defaults). */
    ringkv_engine *db = NULL;
    CHECK(ringkv_engine_open(dir, "{\"log\":{\"capacity\":16777216,\"durability\":\"everysec\"}}",
                             RINGKV_OPEN_DEFAULT, &db));

    strings_and_expiry(db);
    telemetry_hashes(db);
    scan_sessions(db);
    write_batch(db);
    print_stats(db);
    replication(db);

    CHECK(ringkv_sync(db));
    ringkv_engine_free(db);
    if (dir == tmp_dir)
        remove_tree(tmp_dir);
    printf("\ndone\n");
    return EXIT_SUCCESS;
}
