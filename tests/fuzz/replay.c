/* replay.c: main() for a fuzz target built without libFuzzer.
 *
 * `replay_fuzz_X FILE|DIR...` feeds every file (directories: their regular
 * files in name order, not recursive) to LLVMFuzzerTestOneInput once, as
 * libFuzzer does when it is given a crash input. tests/test_fuzz_corpus.sh
 * runs it over tests/fuzz/corpus/<target>/ and the fixture seeds on every
 * `make test`, so a crash once found stays fixed without clang. The file
 * being fed is named on stderr before it runs: after a crash the last such
 * line says which input it was. Prints "replayed N inputs"; exit 0, or 2
 * when a path cannot be read.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static long replayed;

/* replay_file: read path whole and run the target on it; -1 if unreadable. */
static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    CHECK(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            buf = realloc(buf, cap *= 2);
            CHECK(buf);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return -1;
    }
    fprintf(stderr, "replay %s (%zu bytes)\n", path, n);
    /* an exact-size copy, so ASan sees reads past the input */
    uint8_t *exact = malloc(n ? n : 1);
    CHECK(exact);
    if (n) memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    replayed++;
    return 0;
}

static int cmp_names(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv) {
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "%s: cannot stat\n", argv[i]);
            rc = 2;
            continue;
        }
        if (!S_ISDIR(sb.st_mode)) {
            if (replay_file(argv[i])) fprintf(stderr, "%s: cannot read\n", argv[i]), rc = 2;
            continue;
        }
        struct dirent **ents = NULL;
        int n = scandir(argv[i], &ents, NULL, cmp_names);
        if (n < 0) {
            fprintf(stderr, "%s: cannot read directory\n", argv[i]);
            rc = 2;
            continue;
        }
        for (int k = 0; k < n; k++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], ents[k]->d_name);
            if (ents[k]->d_name[0] != '.' && stat(p, &sb) == 0 && S_ISREG(sb.st_mode) &&
                replay_file(p))
                fprintf(stderr, "%s: cannot read\n", p), rc = 2;
            free(ents[k]);
        }
        free(ents);
    }
    printf("replayed %ld inputs\n", replayed);
    return rc;
}
