/* src/cmd_predict.c: placeholder until the module lands (replaced by its owner). */
#include <stdio.h>
#include "cli.h"
int cmd_predict(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "sam2amg predict: not implemented yet\n");
    return EXIT_USAGE;
}
