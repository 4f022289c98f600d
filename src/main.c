/* main.c: sam2amg's entry point; dispatches to the subcommands in cli.h.
 * First of all it lets blas.c choose and check the BLAS kernel, which may
 * re-run the program once with OPENBLAS_CORETYPE set (so nothing may come
 * before it that a re-run would repeat or undo). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "serve.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} commands[] = {
    {"run", cmd_run, "process manifests of images into an SQLite database (resumable)"},
    {"status", cmd_status, "counts per status, throughput, ETA and the last errors of a database"},
    {"export", cmd_export, "write SA-1B JSON, COCO JSON or PNG overlays from a database"},
    {"serve", cmd_serve, "a local web page to review a database: runs, images, masks"},
    {"sql", cmd_sql, "run SQL on a database with the rle_* functions registered"},
    {"merge", cmd_merge, "merge the shard databases of run --shard K/N into one (idempotent)"},
    {"generate", cmd_generate, "automatic mask generation for images, to JSON or PNG"},
    {"predict", cmd_predict, "masks from point and box prompts (interactive path)"},
    {"dump", cmd_dump, "write the model's intermediate tensors (parity checks)"},
    {"models", cmd_models, "checkpoints found offline (model dirs, Hugging Face cache)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: sam2amg COMMAND [options]   (sam2amg COMMAND --help for details)\n\n"
               "SAM 2.1 automatic mask generation, as a batch job runner.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].what);
}

int main(int argc, char **argv) {
    blas_startup(argv);
    /* over a file size limit (ulimit -f), write(2) fails with EFBIG and the
     * output's temporary file is removed, instead of SIGXFSZ killing us
     * with the temporary file left behind */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sam2amg %s\n%s\n", SAM2AMG_VERSION, blas_describe());
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "sam2amg: unknown command '%s' (see 'sam2amg --help')\n", argv[1]);
    return EXIT_USAGE;
}
