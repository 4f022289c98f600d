/* thread.h: starting a thread as an error, not an abort.
 *
 * pthread_create fails when the environment says no (a cgroup's pids.max,
 * RLIMIT_NPROC, no memory for a stack): not a bug, so not a CHECK. Callers
 * get the error number and report it as a run-level or creation error
 * ("cannot start thread: <strerror>"), after stopping what they started.
 */
#ifndef SAM2AMG_THREAD_H
#define SAM2AMG_THREAD_H

#include <pthread.h>

/* thread_start: pthread_create(th, NULL, fn, arg). 0, or the error number
 * (EAGAIN, ENOMEM, ...; *th is then unset and nothing runs).
 * Test-only: SAM2AMG_FAULT_THREAD=N makes the N-th thread_start of the
 * process fail with EAGAIN, as pids.max would (read once; unset costs a
 * load per call). */
int thread_start(pthread_t *th, void *(*fn)(void *), void *arg);

#endif
