/* serve_stub.c: `sam2amg serve` for the GPU bundle's sam2amg only
 * (`make gpu-bundle`).
 *
 * The bundle's sam2amg exists to run jobs on a GPU machine that has none of
 * the build dependencies (issue 8's end-to-end run); src/serve.c needs
 * libmicrohttpd, which that machine lacks and the bundle does not carry, so
 * there `serve` says so (review the database on a machine with the normal
 * build).
 */
#include <stdio.h>

#include "cli.h"
#include "serve.h"

int cmd_serve(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "sam2amg serve: not in the GPU bundle (no libmicrohttpd); copy the database "
                    "to a machine with the normal build\n");
    return EXIT_USAGE;
}
