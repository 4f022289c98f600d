/* cli.h: the subcommands of build/sam2amg and the flag helpers they share.
 *
 * Each command is `int cmd_NAME(int argc, char **argv)` with argv[0] the
 * command name; it returns the process exit status: 0 success, 1 a data
 * error (bad image, bad checkpoint: the message went to stderr), 2 a usage
 * error (bad flag or value), 3 some images of a run failed (run/generate),
 * 130 interrupted.
 */
#ifndef SAM2AMG_CLI_H
#define SAM2AMG_CLI_H

#include <stdint.h>

#define SAM2AMG_VERSION "0.1.0"

enum { EXIT_OK = 0, EXIT_DATA = 1, EXIT_USAGE = 2, EXIT_PARTIAL = 3, EXIT_INTERRUPTED = 130 };

int cmd_dump(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_sql(int argc, char **argv);

/* cli_usage_error: print "sam2amg CMD: MESSAGE" and a hint to --help on
 * stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Strict number parsing for flag values: the whole string must be a number
 * in [lo, hi]; otherwise a usage error naming the flag. 0 ok, -1 error
 * (message printed). */
int cli_parse_int(const char *cmd, const char *flag, const char *s, int64_t lo, int64_t hi,
                  int64_t *out);
int cli_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi,
                     double *out);

#endif
