/* src/cmd_dump.c: placeholder until the module lands (replaced by its owner). */
#include <stdio.h>
#include "cli.h"
int cmd_dump(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "sam2amg dump: not implemented yet\n");
    return EXIT_USAGE;
}
