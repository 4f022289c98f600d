/* test_batch.c: points_per_batch sized to memory (include/batch.h).
 *
 * decoder_arena_bytes, computed from the model dims alone, against the
 * arena the decoder really carves (micro checkpoint on the CPU, several
 * max_prompts, below and above the chunk size); batch_fit at the exact
 * boundaries of the large shape; batch_cap; batch_parse_limit's accepted
 * and refused spellings; batch_open_model on the CPU (auto = 64).
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
        size_t real = rc ? 0 : sam2_model_decoder_bytes(m), planned = decoder_arena_bytes(&cfg, ns[i]);
        TEST_CHECK(!rc && real == planned && real > 0, name, "rc %d (%s), arena %zu, computed %zu",
                   rc, err.msg, real, planned);
        sam2_model_free(m);
    }
    /* micro's image_size is small: the arena grows with every prompt here;
     * with large (S 1024) it stops at the chunk size (65536 / 4096 = 16) */
    TEST_CHECK(decoder_arena_bytes(&cfg, 100) > decoder_arena_bytes(&cfg, 64),
               "micro: the arena grows with the batch", "%zu vs %zu",
               decoder_arena_bytes(&cfg, 100), decoder_arena_bytes(&cfg, 64));
    sam2_config large;
    CHECK(sam2_config_builtin("large", &large, &err) == 0);
    TEST_CHECK(decoder_arena_bytes(&large, 16) > decoder_arena_bytes(&large, 8) &&
                   decoder_arena_bytes(&large, 1024) == decoder_arena_bytes(&large, 16),
               "large: the arena grows up to a 16-prompt chunk, then stays", "%zu %zu %zu",
               decoder_arena_bytes(&large, 8), decoder_arena_bytes(&large, 16),
               decoder_arena_bytes(&large, 1024));
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
        size_t need = decoder_arena_bytes(&large, n) + (size_t)n * per;
        char name[96];
        snprintf(name, sizeof name, "batch_fit: exactly the need of %d fits %d, a byte less %d", n,
                 n, n - 1);
        int a = batch_fit(&large, need, 4096), b = batch_fit(&large, need - 1, 4096);
        TEST_CHECK(a == n && b == n - 1, name, "got %d and %d", a, b);
    }
    TEST_CHECK(batch_fit(&large, (size_t)1 << 40, 1024) == 1024, "batch_fit: capped", "%d",
               batch_fit(&large, (size_t)1 << 40, 1024));
    TEST_CHECK(batch_fit(&large, 1000, 1024) == 0, "batch_fit: 0 when one prompt does not fit",
               "%d", batch_fit(&large, 1000, 1024));
    /* what auto gives on an 80 GB GPU with 60 GB left, for the record */
    printf("# large: decoder arena %.0f MiB at 16 prompts, %.2f MiB per prompt of outputs; "
           "60 GiB -> %d prompts\n", decoder_arena_bytes(&large, 16) / 1048576.0, per / 1048576.0,
           batch_fit(&large, (size_t)60 << 30, 4096));
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
                   decoder_arena_bytes(&cfg, BATCH_CPU_AUTO),
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

int main(void) {
    test_arena_bytes();
    test_fit();
    test_limit();
    test_open_cpu();
    return TEST_REPORT();
}
