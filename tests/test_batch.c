/* test_batch.c: points_per_batch sized to memory (include/batch.h).
 *
 * decoder_arena_bytes, computed from the model dims alone, against the
 * arena the decoder really carves (micro checkpoint on the CPU, several
 * max_prompts, below and above the chunk size); batch_fit at the exact
 * boundaries of the large shape; batch_cap; batch_parse_limit's accepted
 * and refused spellings; batch_open_model on the CPU (auto = 64) and on a
 * CPU backend dressed as a device of a made-up size (its GPU path: the
 * batch that fits exactly, the limit, two workers, the refusals).
 */
#include <stdio.h>
#include <string.h>

#include "../src/decoder.h"
#include "amg.h"
#include "backend.h"
#include "batch.h"
#include "model.h"
#include "test.h"

static void test_arena_bytes(void) {
    sam2_config cfg;
    err_t err = {{0}};
    if (sam2_config_load(test_fixture("micro/meta.json"), &cfg, NULL, &err)) {
        TEST_CHECK(0, "micro config loads", "%s", err.msg);
        return;
    }
    backend_t *be = backend_cpu_create(1);
    const int ns[] = {1, 2, 3, 16, 64, 100};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        sam2_model *m = NULL;
        int rc = sam2_model_load(&m, &cfg, test_fixture("micro/weights.safetensors"), be, ns[i], &err);
        char name[96];
        snprintf(name, sizeof name, "decoder_arena_bytes(micro, %d) = the decoder's arena", ns[i]);
        size_t real = rc ? 0 : sam2_model_decoder_bytes(m), planned = decoder_arena_bytes(&cfg, ns[i], decoder_chunk_rows(be));
        TEST_CHECK(!rc && real == planned && real > 0, name, "rc %d (%s), arena %zu, computed %zu",
                   rc, err.msg, real, planned);
        sam2_model_free(m);
    }
    /* micro's image_size is small: the arena grows with every prompt here;
     * with large (S 1024) it stops at the chunk size: 65536 / 4096 = 16
     * prompts on the CPU, 524288 / 4096 = 128 on a device */
    const int64_t rc_cpu = decoder_chunk_rows(be), rc_dev = 524288;
    TEST_CHECK(rc_cpu == 65536, "decoder_chunk_rows(cpu) = 65536", "%lld", (long long)rc_cpu);
    TEST_CHECK(decoder_arena_bytes(&cfg, 100, rc_cpu) > decoder_arena_bytes(&cfg, 64, rc_cpu),
               "micro: the arena grows with the batch", "%zu vs %zu",
               decoder_arena_bytes(&cfg, 100, rc_cpu), decoder_arena_bytes(&cfg, 64, rc_cpu));
    sam2_config large;
    CHECK(sam2_config_builtin("large", &large, &err) == 0);
    TEST_CHECK(decoder_arena_bytes(&large, 16, rc_cpu) > decoder_arena_bytes(&large, 8, rc_cpu) &&
                   decoder_arena_bytes(&large, 1024, rc_cpu) == decoder_arena_bytes(&large, 16, rc_cpu),
               "large on the cpu: the arena grows up to a 16-prompt chunk, then stays",
               "%zu %zu %zu", decoder_arena_bytes(&large, 8, rc_cpu),
               decoder_arena_bytes(&large, 16, rc_cpu), decoder_arena_bytes(&large, 1024, rc_cpu));
    TEST_CHECK(decoder_arena_bytes(&large, 128, rc_dev) > decoder_arena_bytes(&large, 127, rc_dev) &&
                   decoder_arena_bytes(&large, 1024, rc_dev) == decoder_arena_bytes(&large, 128, rc_dev),
               "large on a device: the arena grows up to a 128-prompt chunk, then stays",
               "%zu %zu %zu", decoder_arena_bytes(&large, 127, rc_dev),
               decoder_arena_bytes(&large, 128, rc_dev), decoder_arena_bytes(&large, 1024, rc_dev));
    printf("# large: decoder arena %.0f MiB at a 128-prompt device chunk\n",
           decoder_arena_bytes(&large, 128, rc_dev) / 1048576.0);
    setenv("SAM2AMG_DECODER_ROWS", "4096", 1);
    TEST_CHECK(decoder_chunk_rows(be) == 4096, "SAM2AMG_DECODER_ROWS overrides the chunk", "%lld",
               (long long)decoder_chunk_rows(be));
    setenv("SAM2AMG_DECODER_ROWS", "0", 1);
    TEST_CHECK(decoder_chunk_rows(be) == 65536, "SAM2AMG_DECODER_ROWS=0 is ignored", "%lld",
               (long long)decoder_chunk_rows(be));
    unsetenv("SAM2AMG_DECODER_ROWS");
    be->destroy(be);
}

static void test_fit(void) {
    sam2_config large;
    err_t err = {{0}};
    CHECK(sam2_config_builtin("large", &large, &err) == 0);
    size_t per = batch_prompt_bytes(&large);
    TEST_CHECK(per == (3 * 256 * 256 + 3) * sizeof(float), "large: a prompt's outputs are 3 masks "
               "of 256x256 and 3 IoUs", "%zu", per);
    const int ns[] = {1, 7, 16, 17, 300, 1024};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        int n = ns[i];
        size_t need = decoder_arena_bytes(&large, n, 524288) + (size_t)n * per;
        char name[96];
        snprintf(name, sizeof name, "batch_fit: exactly the need of %d fits %d, a byte less %d", n,
                 n, n - 1);
        int a = batch_fit(&large, need, 4096, 524288), b = batch_fit(&large, need - 1, 4096, 524288);
        TEST_CHECK(a == n && b == n - 1, name, "got %d and %d", a, b);
    }
    TEST_CHECK(batch_fit(&large, (size_t)1 << 40, 1024, 524288) == 1024, "batch_fit: capped", "%d",
               batch_fit(&large, (size_t)1 << 40, 1024, 524288));
    TEST_CHECK(batch_fit(&large, 1000, 1024, 524288) == 0, "batch_fit: 0 when one prompt does not fit",
               "%d", batch_fit(&large, 1000, 1024, 524288));
    /* what auto gives on an 80 GB GPU with 60 GB left, for the record */
    printf("# large: decoder arena %.0f MiB at 128 prompts, %.2f MiB per prompt of outputs; "
           "60 GiB -> %d prompts\n", decoder_arena_bytes(&large, 128, 524288) / 1048576.0,
           per / 1048576.0, batch_fit(&large, (size_t)60 << 30, 4096, 524288));
    amg_params p;
    amg_params_default(&p);
    TEST_CHECK(batch_cap(&p) == 1024, "batch_cap: points_per_side 32 -> 1024", "%d", batch_cap(&p));
    p.points_per_side = 100;
    TEST_CHECK(batch_cap(&p) == BATCH_MAX, "batch_cap: at most BATCH_MAX", "%d", batch_cap(&p));
}

static void test_limit(void) {
    static const struct { const char *s; int64_t bytes; double frac; } ok[] = {
        {"8G", 8LL << 30, 0}, {"8GiB", 8LL << 30, 0}, {"512M", 512LL << 20, 0},
        {"1048576", 1LL << 20, 0}, {"2T", 2LL << 40, 0}, {"64MB", 64LL << 20, 0},
        {"0.5", 0, 0.5}, {"1.0", 0, 1.0}, {".25", 0, 0.25},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        batch_limit l;
        err_t err = {{0}};
        int rc = batch_parse_limit(ok[i].s, &l, &err);
        char name[64];
        snprintf(name, sizeof name, "--gpu-memory-limit %s accepted", ok[i].s);
        TEST_CHECK(rc == 0 && l.bytes == ok[i].bytes && l.fraction == ok[i].frac, name,
                   "rc %d bytes %lld fraction %g: %s", rc, (long long)l.bytes, l.fraction, err.msg);
    }
    static const char *bad[] = {"", "abc", "0", "100", "0.0", "1.5", "-1", "8X", "8Gx", "G",
                                "0.5G", "99999999999999999999", "9000000000T", " 8G"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        batch_limit l;
        err_t err = {{0}};
        int rc = batch_parse_limit(bad[i], &l, &err);
        char name[64];
        snprintf(name, sizeof name, "--gpu-memory-limit '%s' refused", bad[i]);
        TEST_CHECK(rc == ERR_INVALID && strstr(err.msg, "--gpu-memory-limit") &&
                       !strchr(err.msg, '\n'), name, "rc %d: %s", rc, err.msg);
    }
    /* a number past 64 bits is too large, not "expected BYTES" */
    static const char *big[] = {"99999999999999999999", "18446744073709551616", "9000000000T",
                                "99999999999999999999999G"};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        batch_limit l;
        err_t err = {{0}};
        int rc = batch_parse_limit(big[i], &l, &err);
        char name[80];
        snprintf(name, sizeof name, "--gpu-memory-limit '%s': too large", big[i]);
        TEST_CHECK(rc == ERR_INVALID && strstr(err.msg, "too large"), name, "rc %d: %s", rc,
                   err.msg);
    }
    batch_limit half = {.fraction = 0.5}, eight = {.bytes = 8LL << 30};
    TEST_CHECK(batch_limit_bytes(&half, 1000) == 500 && batch_limit_bytes(&eight, (size_t)4 << 30) ==
                   (size_t)4 << 30 && batch_limit_bytes(NULL, 77) == 77,
               "batch_limit_bytes: fraction of total, bytes capped by total, none = total", "%s", "wrong");
}

static void test_open_cpu(void) {
    sam2_config cfg;
    err_t err = {{0}};
    CHECK(sam2_config_load(test_fixture("micro/meta.json"), &cfg, NULL, &err) == 0);
    backend_t *be = backend_cpu_create(1);
    sam2_model *m = NULL;
    int ppb = -1;
    char note[256];
    batch_limit none = {0};
    int rc = batch_open_model(be, &cfg, test_fixture("micro/weights.safetensors"), 0, 1024, &none,
                              1, 1, &m, &ppb, note, sizeof note, &err);
    TEST_CHECK(rc == 0 && ppb == BATCH_CPU_AUTO && m && sam2_model_decoder_bytes(m) ==
                   decoder_arena_bytes(&cfg, BATCH_CPU_AUTO, decoder_chunk_rows(be)),
               "batch_open_model on the CPU: auto = 64, the model planned for it", "rc %d ppb %d: %s",
               rc, ppb, err.msg);
    sam2_model_free(m);
    rc = batch_open_model(be, &cfg, test_fixture("micro/weights.safetensors"), 5, 1024, &none, 1,
                          1, &m, &ppb, note, sizeof note, &err);
    TEST_CHECK(rc == 0 && ppb == 5, "batch_open_model: a fixed batch is kept", "rc %d ppb %d", rc,
               ppb);
    sam2_model_free(m);
    be->destroy(be);
}

/* ---- auto on a device: the CPU backend dressed as one ----
 * A CPU backend whose alloc/free are counted against a made-up device of
 * fake_total bytes and which answers mem_info from that count, so that
 * batch_open_model takes its GPU path (measure, fit, reload) here. */
static size_t fake_total, fake_used;
static void *(*cpu_alloc)(backend_t *, size_t);
static void (*cpu_free)(backend_t *, void *);
static struct { void *p; size_t n; } fake_blocks[1024];

static void *fake_alloc(backend_t *be, size_t n) {
    if (fake_used + n > fake_total) return NULL;
    void *p = cpu_alloc(be, n);
    for (int i = 0; p && i < 1024; i++)
        if (!fake_blocks[i].p) {
            fake_blocks[i].p = p, fake_blocks[i].n = n, fake_used += n;
            return p;
        }
    CHECK(!p);
    return NULL;
}

static void fake_free(backend_t *be, void *p) {
    for (int i = 0; p && i < 1024; i++)
        if (fake_blocks[i].p == p) {
            fake_used -= fake_blocks[i].n;
            fake_blocks[i].p = NULL;
        }
    cpu_free(be, p);
}

static int fake_mem_info(backend_t *be, size_t *free_bytes, size_t *total_bytes) {
    (void)be;
    *free_bytes = fake_total - fake_used;
    *total_bytes = fake_total;
    return 0;
}

/* open_fake: batch_open_model on a fake device of total bytes; the batch,
 * or a negative ERR_ (message in err) */
static int open_fake(backend_t *be, const sam2_config *cfg, size_t total, int want,
                     const batch_limit *lim, int share, int pending, size_t *model_used,
                     err_t *err) {
    fake_total = total;
    sam2_model *m = NULL;
    int ppb = 0;
    char note[256];
    int rc = batch_open_model(be, cfg, test_fixture("micro/weights.safetensors"), want, 4096, lim,
                              share, pending, &m, &ppb, note, sizeof note, err);
    if (model_used) *model_used = fake_used;
    if (!rc) printf("# %s\n", note);
    sam2_model_free(m);
    CHECK(fake_used == 0);
    return rc ? rc : ppb;
}

static void test_open_device(void) {
    sam2_config cfg;
    err_t err = {{0}};
    CHECK(sam2_config_load(test_fixture("micro/meta.json"), &cfg, NULL, &err) == 0);
    backend_t *be = backend_cpu_create(1);
    cpu_alloc = be->alloc, cpu_free = be->free;
    be->alloc = fake_alloc, be->free = fake_free, be->mem_info = fake_mem_info;
    batch_limit none = {0};
    size_t model1 = 0;   /* what the model takes loaded for one prompt */
    int n = open_fake(be, &cfg, (size_t)1 << 40, 1, &none, 1, 1, &model1, &err);
    TEST_CHECK(n == 1 && model1 > 0, "fake device: the model loads for one prompt", "%d: %s", n,
               err.msg);
    size_t pb = batch_prompt_bytes(&cfg), a1 = decoder_arena_bytes(&cfg, 1, decoder_chunk_rows(be));
    const int targets[] = {1, 5, 37, 300};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        int t = targets[i];
        /* room for exactly t prompts after the model and the headroom */
        size_t x = decoder_arena_bytes(&cfg, t, decoder_chunk_rows(be)) + (size_t)t * pb - a1;
        char name[128];
        snprintf(name, sizeof name, "auto on a device with room for exactly %d prompts: %d, a "
                 "byte less: %d", t, t, t - 1);
        int got = open_fake(be, &cfg, model1 + BATCH_HEADROOM + x, 0, &none, 1, 1, NULL, &err);
        int less = open_fake(be, &cfg, model1 + BATCH_HEADROOM + x - 1, 0, &none, 1, 1, NULL, &err);
        TEST_CHECK(got == t && (t == 1 ? less == ERR_NOMEM : less == t - 1), name,
                   "got %d and %d (%s)", got, less, err.msg);
        /* the same room given by --gpu-memory-limit on a big device */
        batch_limit lim = {.bytes = (int64_t)(model1 + x)};
        snprintf(name, sizeof name, "auto within --gpu-memory-limit of model + room for %d: %d", t, t);
        got = open_fake(be, &cfg, (size_t)1 << 40, 0, &lim, 1, 1, NULL, &err);
        TEST_CHECK(got == t, name, "got %d (%s)", got, err.msg);
    }
    /* two workers on the device, this one first: half of what is left */
    size_t x = 2 * (decoder_arena_bytes(&cfg, 40, decoder_chunk_rows(be)) + 40 * pb - a1);
    int two = open_fake(be, &cfg, model1 + BATCH_HEADROOM + x, 0, &none, 2, 2, NULL, &err);
    TEST_CHECK(two == 40, "auto, first of two workers on a device: half the room", "got %d (%s)",
               two, err.msg);
    int one = open_fake(be, &cfg, model1 + BATCH_HEADROOM + x, 0, &none, 2, 1, NULL, &err);
    TEST_CHECK(one > 40, "auto, the last of two workers: all that is left", "got %d", one);
    batch_limit small = {.bytes = (int64_t)model1 - 1};
    int rc = open_fake(be, &cfg, (size_t)1 << 40, 0, &small, 1, 1, NULL, &err);
    TEST_CHECK(rc == ERR_NOMEM && strstr(err.msg, "over the") && strstr(err.msg, "--gpu-memory-limit"),
               "a limit below the model: refused, naming --gpu-memory-limit", "%d: %s", rc, err.msg);
    rc = open_fake(be, &cfg, (size_t)1 << 40, 8, &small, 1, 1, NULL, &err);
    TEST_CHECK(rc == ERR_NOMEM, "a fixed batch over the limit: refused too", "%d: %s", rc, err.msg);
    /* a fixed batch whose decoder does not fit the device: the message says
     * which device and which flag (it was "decoder: cannot allocate N bytes
     * of activations" alone) */
    rc = open_fake(be, &cfg, model1 + decoder_arena_bytes(&cfg, 64, decoder_chunk_rows(be)) / 2, 64, &none, 1, 1, NULL,
                   &err);
    TEST_CHECK(rc == ERR_NOMEM && strstr(err.msg, "cpu: ") == err.msg &&
               strstr(err.msg, "--points-per-batch 64") && strstr(err.msg, "auto"),
               "a fixed batch over the device's memory: device, flag and auto named", "%d: %s",
               rc, err.msg);
    rc = open_fake(be, &cfg, model1 + BATCH_HEADROOM, 0, &none, 1, 1, NULL, &err);
    TEST_CHECK(rc == ERR_NOMEM && strstr(err.msg, "no room for a batch of one prompt"),
               "no room for one prompt: ERR_NOMEM saying so", "%d: %s", rc, err.msg);
    /* the free memory it names is over what one prompt needs: the message
     * must say what else it keeps free, or it reads as a contradiction */
    TEST_CHECK(rc == ERR_NOMEM && strstr(err.msg, "256 MiB kept free"),
               "no room for one prompt: the message names the 256 MiB headroom", "%s", err.msg);
    /* a device chunk (here a huge one, SAM2AMG_DECODER_ROWS) whose arena
     * does not fit: a fixed batch that fits with the CPU's chunk still
     * loads (decoder_init halves the chunk), where it failed before */
    {
        const int64_t big = (int64_t)1 << 22, small = 65536;   /* micro: HW 256 */
        const int n = 300;
        size_t a_big = decoder_arena_bytes(&cfg, n, big), a_small = decoder_arena_bytes(&cfg, n, small);
        size_t room = model1 - decoder_arena_bytes(&cfg, 1, small) + a_small + ((size_t)1 << 20);
        setenv("SAM2AMG_DECODER_ROWS", "4194304", 1);
        CHECK(decoder_chunk_rows(be) == big);
        rc = open_fake(be, &cfg, room, n, &none, 1, 1, NULL, &err);
        unsetenv("SAM2AMG_DECODER_ROWS");
        TEST_CHECK(a_big > a_small + ((size_t)2 << 20) && rc == n,
                   "a device chunk that does not fit: the decoder falls back to smaller chunks",
                   "arena %zu vs %zu, rc %d: %s", a_big, a_small, rc, err.msg);
    }
    be->alloc = cpu_alloc, be->free = cpu_free;
    be->destroy(be);
}

int main(void) {
    unsetenv("SAM2AMG_DECODER_ROWS");   /* the cases set it themselves */
    test_arena_bytes();
    test_fit();
    test_limit();
    test_open_cpu();
    test_open_device();
    return TEST_REPORT();
}
