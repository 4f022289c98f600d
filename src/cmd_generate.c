/* src/cmd_generate.c: placeholder until the module lands (replaced by its owner). */
#include <stdio.h>
#include "cli.h"
int cmd_generate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "sam2amg generate: not implemented yet\n");
    return EXIT_USAGE;
}
