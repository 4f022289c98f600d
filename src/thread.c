/* thread.c: thread_start (thread.h) and its fault hook, the one place that
 * counts the threads the runner and the CPU backend start, so a test can
 * fail any one of them (SQLite's faultsimStep, for pthread_create). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "thread.h"

static atomic_int fault_at = -1;   /* SAM2AMG_FAULT_THREAD; -1: not read yet, 0: off */
static atomic_int started;         /* thread_start calls so far, counted while armed */

int thread_start(pthread_t *th, void *(*fn)(void *), void *arg) {
    int n = atomic_load(&fault_at);
    if (n < 0) {   /* racing first calls read the same value */
        const char *e = getenv("SAM2AMG_FAULT_THREAD");
        n = e && atoi(e) > 0 ? atoi(e) : 0;
        atomic_store(&fault_at, n);
    }
    if (n > 0 && atomic_fetch_add(&started, 1) + 1 == n) return EAGAIN;
    return pthread_create(th, NULL, fn, arg);
}
