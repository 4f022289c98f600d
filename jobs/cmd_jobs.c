/* jobs/cmd_jobs.c: placeholder until the module lands (replaced by its owner). */
#include <stdio.h>
#include "cli.h"
int cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "sam2amg run: not implemented yet\n");
    return EXIT_USAGE;
}
int cmd_status(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "sam2amg status: not implemented yet\n");
    return EXIT_USAGE;
}
int cmd_export(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "sam2amg export: not implemented yet\n");
    return EXIT_USAGE;
}
int cmd_sql(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "sam2amg sql: not implemented yet\n");
    return EXIT_USAGE;
}
